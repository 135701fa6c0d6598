//! `gantry deploy-canary --target kubernetes` against the recording fake
//! API server (`gantry_test::FakeKube`: server-side apply with field
//! managers, watches, the engines' controllers and traffic that follows
//! their weights) and a real Prometheus scraping that traffic. Set
//! `GANTRY_TEST_KUBECONFIG` to run the dry-run plans' objects against a
//! real cluster too (server-side dry run); never required.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use gantry_test::{Behavior, FakeKube};
use serde_json::{Value, json};

use crate::deploy::{alias_of, register, trained};
use crate::support::{Outcome, Prometheus, Step, wait_for};

const NS: &str = "ml";
const ROUTES: &str = "apis/gateway.networking.k8s.io/v1/httproutes";
const DEPLOYMENTS: &str = "apis/apps/v1/deployments";
const ISVCS: &str = "apis/serving.kserve.io/v1beta1/inferenceservices";
const ROLLOUTS: &str = "apis/argoproj.io/v1alpha1/rollouts";

/// A cluster, a registry with gated versions, Prometheus on the traffic.
struct Cluster {
    step: Step,
    kube: FakeKube,
    prometheus: Option<Prometheus>,
}

impl Cluster {
    fn new(versions: &[&str], prometheus: bool) -> Cluster {
        let step = Step::local();
        let kube = FakeKube::start();
        kube.kubeconfig(&step.path("kubeconfig"), NS);
        let base = trained(&step);
        for version in versions {
            register(&step, &base, version, true);
        }
        let prometheus = if prometheus {
            Prometheus::start(&step, &[&kube.metrics_target()])
        } else {
            None
        };
        if let Some(prometheus) = &prometheus {
            step.write(
                "analysis.toml",
                &format!(
                    "consecutive-error-limit = 10\n\n[prometheus]\nurl = \"{}\"\npreset = \"vllm\"\n",
                    prometheus.url
                ),
            );
        }
        Cluster {
            step,
            kube,
            prometheus,
        }
    }

    fn deploy(&self, extra: &[&str]) -> Outcome {
        let mut args = vec![
            "deploy-canary",
            "--target",
            "kubernetes",
            "--kubeconfig",
            "kubeconfig",
            "--step-duration",
            "3s",
            "--state-file",
            "rollout.json",
        ];
        if self.prometheus.is_some() {
            args.extend(["--analysis", "analysis.toml"]);
        }
        args.extend(extra);
        self.step.run(&args)
    }

    fn state(&self) -> Value {
        serde_json::from_str(&self.step.read("rollout.json")).expect("state")
    }

    fn alias(&self) -> String {
        alias_of(&self.step, "production").unwrap_or_default()
    }
}

/// The route a team wrote with kubectl: a Gateway parent, one rule.
fn route(backends: Value) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "chat", "namespace": NS},
        "spec": {
            "parentRefs": [{"name": "inference-gateway"}],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/v1"}}],
                "backendRefs": backends,
            }],
        },
    })
}

fn gateway_args() -> Vec<&'static str> {
    vec![
        "--k8s-engine",
        "gateway-api",
        "--http-route",
        "chat",
        "--server-image",
        "vllm/vllm-openai:v0.11.0",
        "--serve-command=--model {model_dir} --port {port} --served-model-name tiny",
        "--model-source",
        "pvc:models",
        "--health-timeout",
        "30s",
    ]
}

/// The route's backendRefs: (Service, weight).
fn weights(kube: &FakeKube) -> Vec<(String, i64)> {
    let route = kube.get(ROUTES, NS, "chat").expect("route");
    route["spec"]["rules"][0]["backendRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|reference| {
            (
                reference["name"].as_str().unwrap_or_default().to_owned(),
                reference["weight"].as_i64().unwrap_or(1),
            )
        })
        .collect()
}

fn deployments(kube: &FakeKube) -> Vec<String> {
    kube.list(DEPLOYMENTS, NS)
        .iter()
        .map(|deployment| {
            deployment["metadata"]["annotations"]["gantry.dev/version"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

fn service(version: &str) -> String {
    gantry_deploy::kubernetes::object_name("tiny", version)
}

fn decisions(state: &Value) -> Vec<String> {
    state["decisions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|decision| {
            format!(
                "{} {}",
                decision["action"].as_str().unwrap_or("?"),
                decision["weight"]
            )
        })
        .collect()
}

#[test]
fn gateway_api_rollouts_promote_roll_back_resume_and_respect_other_managers() {
    let cluster = Cluster::new(&["1.0.0", "1.1.0", "1.2.0", "1.3.0"], true);
    if cluster.prometheus.is_none() {
        return;
    }
    let kube = &cluster.kube;
    // kubectl created the route: it owns .spec.rules.
    kube.create(route(json!([])), "kubectl-client-side-apply");
    let mut args = gateway_args();
    args.extend(["--model", "tiny@1.0.0"]);

    // A conflict is reported before anything is created, and nothing is overwritten.
    let refused = cluster.deploy(&args);
    assert_eq!(refused.code, 2, "{}", refused.transcript());
    assert!(
        refused
            .stderr
            .contains(".spec.rules is owned by field manager \"kubectl-client-side-apply\"")
            && refused.stderr.contains("--k8s-force-conflicts"),
        "{}",
        refused.transcript()
    );
    assert!(weights(kube).is_empty());
    assert!(deployments(kube).is_empty(), "nothing created");

    // The first deploy takes the rules over once, on request.
    args.push("--k8s-force-conflicts");
    let first = cluster.deploy(&args);
    assert_eq!(first.code, 0, "{}", first.transcript());
    assert_eq!(weights(kube), vec![(service("1.0.0"), 100)]);
    assert_eq!(cluster.alias(), "1.0.0");
    let route = kube.get(ROUTES, NS, "chat").expect("route");
    let managers: Vec<&str> = route["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| !entry["fieldsV1"]["f:spec"]["f:rules"].is_null())
        .filter_map(|entry| entry["manager"].as_str())
        .collect();
    assert_eq!(managers, vec!["gantry"], "{route:#}");
    assert_eq!(
        route["spec"]["rules"][0]["matches"][0]["path"]["value"], "/v1",
        "the rest of the rule is kept"
    );
    // The pod reads the model from the PVC, not the registry.
    let deployment = kube
        .get(DEPLOYMENTS, NS, &service("1.0.0"))
        .expect("deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "models"
    );
    assert_eq!(pod["containers"][0]["args"][1], "/models/tiny/1.0.0");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);

    // A good canary, with the API server failing now and then: promoted.
    kube.fail_next("GET", "/httproutes/chat", 500, 2);
    kube.fail_next("PATCH", "/httproutes/chat", 429, 1);
    let mut good = gateway_args();
    good.extend(["--model", "tiny@1.1.0", "--steps", "50,100"]);
    let promoted = cluster.deploy(&good);
    assert_eq!(promoted.code, 0, "{}", promoted.transcript());
    let state = cluster.state();
    assert_eq!(state["phase"], "promoted", "{state:#}");
    assert!(
        decisions(&state).contains(&"set-weight 50".to_owned()),
        "{:?}",
        decisions(&state)
    );
    assert_eq!(weights(kube), vec![(service("1.1.0"), 100)]);
    assert_eq!(
        deployments(kube),
        vec!["1.1.0"],
        "the old stable is retired"
    );
    assert_eq!(cluster.alias(), "1.1.0");
    let (ok, failed) = kube.served("1.1.0");
    assert!(ok > 0.0 && failed == 0.0);
    let requests = kube.requests();
    assert!(requests.iter().any(|request| request.status == 500));
    assert!(requests.iter().any(|request| {
        request.method == "PATCH"
            && request
                .path
                .contains("/httproutes/chat?fieldManager=gantry")
            && request.content_type == "application/apply-patch+yaml"
            && request.status == 200
    }));
    assert!(
        requests
            .iter()
            .any(|request| request.path.contains("watch=true")
                && request.path.contains("allowWatchBookmarks=true")
                && request.path.contains("resourceVersion=")),
        "readiness is watched from a resourceVersion"
    );

    // A bad canary: its 5xx reach Prometheus at 25%, and it is rolled back.
    kube.behave(
        "1.2.0",
        Behavior {
            error_rate: 0.3,
            ..Behavior::default()
        },
    );
    let mut bad = gateway_args();
    bad.extend(["--model", "tiny@1.2.0", "--steps", "25,100"]);
    let rolled_back = cluster.deploy(&bad);
    assert_eq!(rolled_back.code, 1, "{}", rolled_back.transcript());
    let state = cluster.state();
    assert_eq!(state["phase"], "rolled-back", "{state:#}");
    assert!(
        state["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("error-rate"),
        "{state:#}"
    );
    assert_eq!(
        weights(kube),
        vec![(service("1.1.0"), 100)],
        "stable at 100%"
    );
    assert_eq!(deployments(kube), vec!["1.1.0"], "the canary is gone");
    assert_eq!(cluster.alias(), "1.1.0");
    assert!(
        kube.served("1.2.0").1 > 0.0,
        "the bad version did get traffic"
    );

    // The controller killed mid-rollout, then resumed: it goes on from the
    // saved step and promotes.
    let mut slow = gateway_args();
    slow.extend(["--model", "tiny@1.3.0", "--steps", "20,60,100"]);
    let mut spawned: Vec<&str> = vec![
        "deploy-canary",
        "--target",
        "kubernetes",
        "--kubeconfig",
        "kubeconfig",
        "--step-duration",
        "3s",
        "--state-file",
        "rollout.json",
        "--analysis",
        "analysis.toml",
    ];
    spawned.extend(&slow);
    let mut child = cluster.step.spawn(&spawned);
    wait_for("the canary at 20%", Duration::from_secs(60), || {
        weights(kube).contains(&(service("1.3.0"), 20))
    });
    child.kill().expect("kill");
    let _ = child.wait();
    assert_eq!(cluster.state()["phase"], "progressing");
    let resumed = cluster.deploy(&[
        "--action",
        "resume",
        "--k8s-engine",
        "gateway-api",
        "--http-route",
        "chat",
        "--server-image",
        "vllm/vllm-openai:v0.11.0",
        "--model-source",
        "pvc:models",
    ]);
    assert_eq!(resumed.code, 0, "{}", resumed.transcript());
    let state = cluster.state();
    assert_eq!(state["phase"], "promoted", "{state:#}");
    assert!(
        decisions(&state)
            .iter()
            .any(|decision| decision.starts_with("resume"))
    );
    assert_eq!(weights(kube), vec![(service("1.3.0"), 100)]);
    assert_eq!(cluster.alias(), "1.3.0");
}

#[test]
fn kserve_steps_canary_traffic_percent_promotes_by_removing_it_and_rolls_back_with_zero() {
    let cluster = Cluster::new(&["1.0.0", "1.1.0", "1.2.0", "1.3.0"], true);
    let Some(prometheus) = &cluster.prometheus else {
        return;
    };
    let kube = &cluster.kube;
    cluster.step.write(
        "analysis.toml",
        &format!(
            "consecutive-error-limit = 10\n\n[prometheus]\nurl = \"{}\"\npreset = \"kserve\"\n",
            prometheus.url
        ),
    );
    let args = |model: &'static str, steps: &'static str| {
        vec![
            "--k8s-engine",
            "kserve",
            "--inference-service",
            "chat",
            "--storage-uri",
            "oci://registry.example/models/{name}:{version}",
            "--model",
            model,
            "--steps",
            steps,
            "--health-timeout",
            "30s",
        ]
    };
    let first = cluster.deploy(&args("tiny@1.0.0", "100"));
    assert_eq!(first.code, 0, "{}", first.transcript());
    let isvc = kube.get(ISVCS, NS, "chat").expect("isvc");
    assert_eq!(
        isvc["spec"]["predictor"]["model"]["storageUri"],
        "oci://registry.example/models/tiny:1.0.0"
    );
    assert!(isvc["spec"]["predictor"]["canaryTrafficPercent"].is_null());
    assert_eq!(cluster.alias(), "1.0.0");

    let good = cluster.deploy(&args("tiny@1.1.0", "30,100"));
    assert_eq!(good.code, 0, "{}", good.transcript());
    let state = cluster.state();
    assert_eq!(state["phase"], "promoted", "{state:#}");
    assert!(
        decisions(&state).contains(&"set-weight 30".to_owned()),
        "{:?}",
        decisions(&state)
    );
    let isvc = kube.get(ISVCS, NS, "chat").expect("isvc");
    assert!(
        isvc["spec"]["predictor"]["canaryTrafficPercent"].is_null(),
        "promoted by removing the field: {isvc:#}"
    );
    assert_eq!(
        isvc["metadata"]["annotations"]["gantry.dev/version"],
        "1.1.0"
    );
    assert_eq!(
        isvc["status"]["components"]["predictor"]["traffic"][0]["percent"],
        100
    );
    assert_eq!(cluster.alias(), "1.1.0");

    kube.behave(
        "1.2.0",
        Behavior {
            error_rate: 0.4,
            ..Behavior::default()
        },
    );
    let bad = cluster.deploy(&args("tiny@1.2.0", "40,100"));
    assert_eq!(bad.code, 1, "{}", bad.transcript());
    let isvc = kube.get(ISVCS, NS, "chat").expect("isvc");
    assert_eq!(
        isvc["spec"]["predictor"]["canaryTrafficPercent"], 0,
        "rolled back with 0: {isvc:#}"
    );
    let traffic = &isvc["status"]["components"]["predictor"]["traffic"];
    assert_eq!(
        traffic[1]["percent"], 100,
        "the previous revision has it all: {traffic:#}"
    );
    assert_eq!(cluster.alias(), "1.1.0");

    // Killed at 20%, resumed: it goes on from the saved step.
    let mut spawned = vec![
        "deploy-canary",
        "--target",
        "kubernetes",
        "--kubeconfig",
        "kubeconfig",
        "--step-duration",
        "3s",
        "--state-file",
        "rollout.json",
        "--analysis",
        "analysis.toml",
    ];
    spawned.extend(args("tiny@1.3.0", "20,60,100"));
    let mut child = cluster.step.spawn(&spawned);
    wait_for("the canary at 20%", Duration::from_secs(60), || {
        kube.get(ISVCS, NS, "chat")
            .is_some_and(|isvc| isvc["spec"]["predictor"]["canaryTrafficPercent"] == 20)
    });
    child.kill().expect("kill");
    let _ = child.wait();
    let resumed = cluster.deploy(&[
        "--k8s-engine",
        "kserve",
        "--inference-service",
        "chat",
        "--storage-uri",
        "oci://registry.example/models/{name}:{version}",
        "--action",
        "resume",
    ]);
    assert_eq!(resumed.code, 0, "{}", resumed.transcript());
    assert_eq!(cluster.state()["phase"], "promoted");
    let isvc = kube.get(ISVCS, NS, "chat").expect("isvc");
    assert!(
        isvc["spec"]["predictor"]["canaryTrafficPercent"].is_null(),
        "{isvc:#}"
    );
    assert_eq!(cluster.alias(), "1.3.0");

    // Someone else owns the predictor now: reported, not overwritten.
    kube.edit(ISVCS, NS, "chat", "argocd-controller", |isvc| {
        isvc["spec"]["predictor"]["minReplicas"] = json!(2);
    });
    let before = kube.get(ISVCS, NS, "chat").expect("isvc")["spec"].clone();
    let refused = cluster.deploy(&args("tiny@1.2.0", "40,100"));
    assert_eq!(refused.code, 2, "{}", refused.transcript());
    assert!(
        refused.stderr.contains("argocd-controller"),
        "{}",
        refused.transcript()
    );
    assert_eq!(kube.get(ISVCS, NS, "chat").expect("isvc")["spec"], before);
}

/// The Rollout a team runs: Argo steps the traffic and runs the analysis.
fn rollout() -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": "chat", "namespace": NS},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "chat"}},
            "template": {
                "metadata": {"labels": {"app": "chat"}},
                "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai:v0.11.0"}]},
            },
            "strategy": {"canary": {"steps": [
                {"setWeight": 20},
                {"analysis": {"templates": [{"templateName": "error-rate"}]}},
                {"pause": {}},
                {"setWeight": 60},
                {"pause": {"duration": "1s"}},
            ]}},
        },
    })
}

#[test]
fn argo_rollouts_is_followed_promoted_past_its_pause_and_its_abort_keeps_the_alias() {
    let cluster = Cluster::new(&["1.0.0", "1.1.0", "1.2.0"], false);
    let kube = &cluster.kube;
    kube.create(rollout(), "argocd-controller");
    let set = cluster
        .step
        .run(&["registry", "alias", "tiny@1.0.0", "production"]);
    assert_eq!(set.code, 0, "{}", set.transcript());
    let args = |action: &'static str, model: &'static str| {
        vec![
            "--k8s-engine",
            "argo-rollouts",
            "--argo-rollout",
            "chat",
            "--action",
            action,
            "--model",
            model,
        ]
    };
    let paused = cluster.deploy(&args("start", "tiny@1.1.0"));
    assert_eq!(
        paused.code,
        0,
        "a pause step is a pause as asked: {}",
        paused.transcript()
    );
    let state = cluster.state();
    assert_eq!(state["phase"], "paused", "{state:#}");
    assert_eq!(state["steps"].as_array().map(Vec::len), Some(5));
    let notes = decisions(&state);
    assert!(notes.contains(&"set-weight 20".to_owned()), "{notes:?}");
    assert!(
        state["windows"][0]["checks"][0]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("Successful"),
        "the AnalysisRun is mirrored: {state:#}"
    );
    let live = kube.get(ROLLOUTS, NS, "chat").expect("rollout");
    let annotations = &live["spec"]["template"]["metadata"]["annotations"];
    assert!(
        annotations["gantry.dev/model"]
            .as_str()
            .unwrap_or_default()
            .starts_with("tiny@sha256:")
    );
    assert_eq!(cluster.alias(), "1.0.0", "not moved while paused");

    let promoted = cluster.deploy(&args("promote", "tiny@1.1.0"));
    assert_eq!(promoted.code, 0, "{}", promoted.transcript());
    assert_eq!(cluster.state()["phase"], "promoted");
    assert_eq!(cluster.alias(), "1.1.0");
    let live = kube.get(ROLLOUTS, NS, "chat").expect("rollout");
    assert_eq!(live["status"]["phase"], "Healthy");
    assert!(
        kube.requests()
            .iter()
            .any(|request| request.path.contains("/rollouts/chat/status?")
                && request.content_type == "application/merge-patch+json")
    );

    // The analysis fails for a bad version: Argo aborts, the alias stays.
    kube.behave(
        "1.2.0",
        Behavior {
            error_rate: 0.5,
            ..Behavior::default()
        },
    );
    let aborted = cluster.deploy(&args("start", "tiny@1.2.0"));
    assert_eq!(aborted.code, 1, "{}", aborted.transcript());
    let state = cluster.state();
    assert_eq!(state["phase"], "rolled-back", "{state:#}");
    assert!(
        state["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("assessed Failed"),
        "{state:#}"
    );
    assert_eq!(cluster.alias(), "1.1.0");

    // Another manager set gantry's annotation: a conflict, reported before
    // any rollout is recorded, and the Rollout is left as it was.
    kube.edit(ROLLOUTS, NS, "chat", "argocd-controller", |rollout| {
        rollout["spec"]["template"]["metadata"]["annotations"]["gantry.dev/model"] =
            json!("tiny@sha256:pinned-in-git");
    });
    let before = kube.get(ROLLOUTS, NS, "chat").expect("rollout")["spec"].clone();
    let refused = cluster.deploy(&args("start", "tiny@1.2.0"));
    assert_eq!(refused.code, 2, "{}", refused.transcript());
    assert!(
        refused
            .stderr
            .contains("another field manager owns what gantry must write")
            && refused.stderr.contains("argocd-controller"),
        "{}",
        refused.transcript()
    );
    assert_eq!(
        kube.get(ROLLOUTS, NS, "chat").expect("rollout")["spec"],
        before
    );
    assert_eq!(
        cluster.state()["phase"],
        "rolled-back",
        "the last rollout's state is untouched"
    );
}

#[test]
fn argo_rollouts_follower_killed_and_resumed_promotes() {
    let cluster = Cluster::new(&["1.0.0", "1.1.0"], false);
    let kube = &cluster.kube;
    let mut slow = rollout();
    slow["spec"]["strategy"]["canary"]["steps"] = json!([
        {"setWeight": 20}, {"pause": {"duration": "3s"}}, {"setWeight": 50}, {"pause": {"duration": "1s"}}
    ]);
    kube.create(slow, "kubectl-client-side-apply");
    let set = cluster
        .step
        .run(&["registry", "alias", "tiny@1.0.0", "production"]);
    assert_eq!(set.code, 0, "{}", set.transcript());
    let mut child = cluster.step.spawn(&[
        "deploy-canary",
        "--target",
        "kubernetes",
        "--kubeconfig",
        "kubeconfig",
        "--state-file",
        "rollout.json",
        "--k8s-engine",
        "argo-rollouts",
        "--argo-rollout",
        "chat",
        "--model",
        "tiny@1.1.0",
    ]);
    wait_for("the follower to see 20%", Duration::from_secs(60), || {
        std::fs::read_to_string(cluster.step.path("rollout.json"))
            .is_ok_and(|text| text.contains("\"set-weight\""))
    });
    child.kill().expect("kill");
    let _ = child.wait();
    let resumed = cluster.deploy(&[
        "--k8s-engine",
        "argo-rollouts",
        "--argo-rollout",
        "chat",
        "--action",
        "resume",
    ]);
    assert_eq!(resumed.code, 0, "{}", resumed.transcript());
    assert_eq!(cluster.state()["phase"], "promoted");
    assert_eq!(cluster.alias(), "1.1.0");
    // Status reads the state file alone: no engine flags, no cluster.
    let status = cluster.step.run(&[
        "deploy-canary",
        "--target",
        "kubernetes",
        "--action",
        "status",
        "--state-file",
        "rollout.json",
    ]);
    assert_eq!(status.code, 0, "{}", status.transcript());
    assert!(
        status.stderr.contains("promoted tiny@1.1.0"),
        "{}",
        status.transcript()
    );
}

#[test]
fn bad_cluster_input_is_one_plain_message_and_nothing_is_left_serving() {
    let cluster = Cluster::new(&["1.0.0", "1.1.0"], false);
    let kube = &cluster.kube;
    cluster.step.write(
        "analysis.toml",
        "[prometheus]\nurl = \"http://127.0.0.1:9\"\npreset = \"vllm\"\n",
    );
    let run = |extra: &[&str]| {
        let mut args = vec![
            "deploy-canary",
            "--target",
            "kubernetes",
            "--state-file",
            "rollout.json",
            "--analysis",
            "analysis.toml",
        ];
        args.extend(extra);
        cluster.step.run(&args)
    };
    let gateway = |model: &'static str| {
        let mut args = vec!["--kubeconfig", "kubeconfig", "--model", model];
        args.extend(gateway_args());
        args
    };
    let expect = |outcome: Outcome, needle: &str| {
        assert_eq!(outcome.code, 2, "{}", outcome.transcript());
        assert!(
            outcome.stderr.contains(needle),
            "wanted {needle:?} in {}",
            outcome.transcript()
        );
        assert!(
            !outcome.stderr.contains("panicked"),
            "{}",
            outcome.transcript()
        );
        assert!(!outcome.stderr.contains(gantry_test::KUBE_TOKEN));
    };

    // No kubeconfig at all (no KUBECONFIG, no HOME, not in a pod).
    let mut none = gateway_args();
    none.extend(["--model", "tiny@1.0.0"]);
    expect(run(&none), "no kubeconfig: give --kubeconfig FILE");
    // A context the kubeconfig does not have.
    let mut context = gateway("tiny@1.0.0");
    context.extend(["--kube-context", "prod-eu"]);
    expect(run(&context), "has no such context; it has fake, elsewhere");
    // A token the cluster does not take.
    let mut stranger = gateway("tiny@1.0.0");
    stranger.extend(["--kube-context", "elsewhere", "--namespace", NS]);
    expect(run(&stranger), "credentials were not accepted");
    // The HTTPRoute does not exist.
    expect(
        run(&gateway("tiny@1.0.0")),
        "HTTPRoute chat was not found in namespace ml",
    );
    // Gateway API CRDs absent.
    kube.uninstall("apis/gateway.networking.k8s.io/v1");
    expect(
        run(&gateway("tiny@1.0.0")),
        "does not serve HTTPRoute (gateway.networking.k8s.io/v1): the CRD is not installed",
    );
    // KServe absent.
    let kserve = [
        "--kubeconfig",
        "kubeconfig",
        "--model",
        "tiny@1.0.0",
        "--k8s-engine",
        "kserve",
        "--storage-uri",
        "s3://models/{name}/{version}",
    ];
    kube.uninstall("apis/serving.kserve.io/v1beta1");
    expect(
        run(&kserve),
        "does not serve InferenceService (serving.kserve.io/v1beta1): the CRD is not installed; install KServe first",
    );
    // Argo Rollouts absent.
    kube.uninstall("apis/argoproj.io/v1alpha1");
    expect(
        run(&[
            "--kubeconfig",
            "kubeconfig",
            "--model",
            "tiny@1.0.0",
            "--k8s-engine",
            "argo-rollouts",
            "--argo-rollout",
            "chat",
        ]),
        "install Argo Rollouts first",
    );

    // A namespace the token cannot write: nothing is half-applied.
    let fresh = FakeKube::start();
    fresh.kubeconfig(&cluster.step.path("kubeconfig"), NS);
    fresh.create(route(json!([])), "gantry");
    fresh.forbid("patch", "deployments", NS);
    expect(
        run(&gateway("tiny@1.0.0")),
        "forbidden: gantry may not patch deployments.apps in namespace ml",
    );
    assert!(fresh.list(DEPLOYMENTS, NS).is_empty());

    // A route that does not carry the stable version's Service: the canary
    // is stopped again and stable is not touched.
    let other = FakeKube::start();
    other.kubeconfig(&cluster.step.path("kubeconfig"), NS);
    other.create(
        route(json!([{"name": "someone-else", "port": 8000}, {"name": "more", "port": 8000}])),
        "gantry",
    );
    let set = cluster
        .step
        .run(&["registry", "alias", "tiny@1.0.0", "production"]);
    assert_eq!(set.code, 0, "{}", set.transcript());
    other.create(
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": service("1.0.0"), "namespace": NS,
            "labels": {"app.kubernetes.io/name": "tiny", "app.kubernetes.io/managed-by": "gantry"},
            "annotations": {"gantry.dev/version": "1.0.0"}}, "spec": {"replicas": 1}}),
        "gantry",
    );
    let outcome = run(&gateway("tiny@1.1.0"));
    expect(
        outcome,
        &format!("does not reference the stable Service {}", service("1.0.0")),
    );
    let left: Vec<String> = other
        .list(DEPLOYMENTS, NS)
        .iter()
        .filter_map(|deployment| deployment["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(left, vec![service("1.0.0")], "the canary was stopped");
    assert_eq!(cluster.state()["phase"], "rolled-back");
}

#[test]
fn dry_run_prints_every_engine_s_manifests_and_patches_without_a_cluster() {
    let step = Step::local();
    let base = trained(&step);
    register(&step, &base, "1.0.0", true);
    register(&step, &base, "1.1.0", true);
    let set = step.run(&["registry", "alias", "tiny@1.0.0", "production"]);
    assert_eq!(set.code, 0, "{}", set.transcript());
    let plan = step.run(&[
        "deploy-canary",
        "--target",
        "kubernetes",
        "--dry-run",
        "--namespace",
        NS,
        "--model",
        "tiny@1.1.0",
        "--k8s-engine",
        "gateway-api",
        "--http-route",
        "chat",
        "--server-image",
        "vllm/vllm-openai:v0.11.0",
        "--serve-command=--model {model_dir}",
        "--model-source",
        "pvc:models",
        "--steps",
        "10,pause,50,100",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.transcript());
    assert!(plan.stdout.contains("nothing was sent"), "{}", plan.stdout);
    assert!(plan.stdout.contains(&format!(
        "/apis/apps/v1/namespaces/ml/deployments/{}?fieldManager=gantry&force=true",
        service("1.1.0")
    )));
    assert!(plan.stdout.contains("step 1: canary at 10%"));
    assert!(plan.stdout.contains("step 2: pause"));
    let documents: Vec<Value> = plan
        .stdout
        .split("---\n")
        .skip(1)
        .map(|document| serde_norway::from_str(document).expect("yaml"))
        .collect();
    let deployment: k8s_openapi::api::apps::v1::Deployment =
        serde_json::from_value(documents[0].clone()).expect("a typed Deployment");
    assert_eq!(deployment.metadata.namespace.as_deref(), Some(NS));
    let json_plan = step.run(&[
        "deploy-canary",
        "--target",
        "kubernetes",
        "--dry-run",
        "--format",
        "json",
        "--model",
        "tiny@1.1.0",
        "--k8s-engine",
        "kserve",
        "--storage-uri",
        "s3://models/{name}/{version}",
        "--steps",
        "25,100",
    ]);
    assert_eq!(json_plan.code, 0, "{}", json_plan.transcript());
    let parsed: Value = serde_json::from_str(&json_plan.stdout).expect("json");
    let bodies: Vec<&Value> = parsed["requests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("body"))
        .collect();
    assert_eq!(bodies[0]["spec"]["predictor"]["canaryTrafficPercent"], 0);
    assert_eq!(bodies[1]["spec"]["predictor"]["canaryTrafficPercent"], 25);
    assert!(
        bodies[2]["spec"]["predictor"]["canaryTrafficPercent"].is_null(),
        "promote removes it"
    );
    assert_eq!(
        bodies[0]["spec"]["predictor"]["model"]["storageUri"],
        "s3://models/tiny/1.1.0"
    );
    let argo = step.run(&[
        "deploy-canary",
        "--target",
        "kubernetes",
        "--dry-run",
        "--model",
        "tiny@1.1.0",
        "--k8s-engine",
        "argo-rollouts",
        "--argo-rollout",
        "chat",
    ]);
    assert_eq!(argo.code, 0, "{}", argo.transcript());
    assert!(
        argo.stdout.contains("gantry.dev/model: tiny@sha256:"),
        "{}",
        argo.stdout
    );
    assert!(argo.stdout.contains("abort: true"));
    // A file registry cannot be pulled from inside a cluster.
    let unreachable = step.run(&[
        "deploy-canary",
        "--target",
        "kubernetes",
        "--dry-run",
        "--model",
        "tiny@1.1.0",
        "--http-route",
        "chat",
        "--server-image",
        "x",
    ]);
    assert_eq!(unreachable.code, 2, "{}", unreachable.transcript());
    assert!(
        unreachable.stderr.contains("out of the cluster's reach"),
        "{}",
        unreachable.transcript()
    );
}

fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A tool the schema checks need: skipped when absent, unless
/// GANTRY_REQUIRE_SERVICES says every test must run.
fn required(path: PathBuf, what: &str) -> Option<PathBuf> {
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("GANTRY_REQUIRE_SERVICES").is_none(),
        "{what} is not installed at {} (cargo xtask test installs it)",
        path.display()
    );
    None
}

/// JSON merge patch (RFC 7386): what the object looks like once a partial
/// apply lands on the user's own.
fn merged(mut base: Value, patch: &Value) -> Value {
    match (base.as_object_mut(), patch.as_object()) {
        (Some(map), Some(patch)) => {
            for (key, value) in patch {
                let slot = map.entry(key.clone()).or_insert(Value::Null);
                *slot = merged(slot.take(), value);
            }
            base
        }
        _ => patch.clone(),
    }
}

#[test]
fn rendered_objects_validate_against_the_upstream_schemas() {
    let root = repository_root();
    let modules = std::env::var_os("GANTRY_NODE_MODULES")
        .map_or_else(|| root.join("node_modules"), PathBuf::from);
    let Some(_) = required(
        modules.join("@kubernetes-models/argo-rollouts/package.json"),
        "the kubernetes-models npm packages",
    ) else {
        return;
    };
    let kserve = std::env::var_os("GANTRY_KSERVE_VENV")
        .map_or_else(|| root.join(".venv-kserve"), PathBuf::from);
    let Some(python) = required(kserve.join("bin/python"), "the KServe SDK (.venv-kserve)") else {
        return;
    };
    let step = Step::local();
    let base = trained(&step);
    register(&step, &base, "1.0.0", true);
    register(&step, &base, "1.1.0", true);
    let set = step.run(&["registry", "alias", "tiny@1.0.0", "production"]);
    assert_eq!(set.code, 0, "{}", set.transcript());
    let plan = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec![
            "deploy-canary",
            "--target",
            "kubernetes",
            "--dry-run",
            "--format",
            "json",
            "--namespace",
            NS,
            "--model",
            "tiny@1.1.0",
            "--steps",
            "10,pause,50,100",
        ];
        args.extend(extra);
        let planned = step.run(&args);
        assert_eq!(planned.code, 0, "{}", planned.transcript());
        let parsed: Value = serde_json::from_str(&planned.stdout).expect("plan");
        parsed["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|request| request.get("body").cloned())
            .collect()
    };
    let mut kubernetes = Vec::new();
    for source in [
        "pvc:models",
        "image:registry.example/models/{name}@{digest}",
    ] {
        let source = format!("--model-source={source}");
        let bodies = plan(&[
            "--k8s-engine",
            "gateway-api",
            "--http-route",
            "chat",
            "--server-image",
            "vllm/vllm-openai:v0.11.0",
            "--serve-command=--model {model_dir} --port {port}",
            "--gpus-per-replica",
            "1",
            &source,
        ]);
        for body in bodies {
            // A route apply lands on the user's route (its parentRefs).
            if body["kind"] == "HTTPRoute" {
                kubernetes.push(merged(route(json!([])), &body));
            } else {
                kubernetes.push(body);
            }
        }
    }
    for body in plan(&["--k8s-engine", "argo-rollouts", "--argo-rollout", "chat"]) {
        if body.get("kind").is_some() {
            kubernetes.push(merged(rollout(), &body));
        }
    }
    let kinds: BTreeSet<String> = kubernetes
        .iter()
        .map(|object| object["kind"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "Deployment".into(),
            "Service".into(),
            "HTTPRoute".into(),
            "Rollout".into()
        ])
    );
    let validate = |objects: &[Value]| {
        let file = step.path("objects.json");
        std::fs::write(&file, serde_json::to_vec(objects).expect("json")).expect("write");
        let output = std::process::Command::new("node")
            .arg(root.join("crates/gantry-cli/tests/it/tools/k8s_models.mjs"))
            .arg(&file)
            .env("GANTRY_NODE_MODULES", &modules)
            .output()
            .expect("node");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (code, text) = validate(&kubernetes);
    assert_eq!(code, Some(0), "{} objects: {text}", kubernetes.len());
    // The check can fail: a weight out of the Gateway API's range.
    let mut broken = kubernetes
        .iter()
        .find(|object| object["kind"] == "HTTPRoute")
        .cloned()
        .expect("a route");
    broken["spec"]["rules"][0]["backendRefs"][0]["weight"] = json!(2_000_000);
    let (code, text) = validate(&[broken]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("weight must be <= 1000000"), "{text}");

    let isvcs = plan(&[
        "--k8s-engine",
        "kserve",
        "--storage-uri",
        "oci://registry.example/models/{name}:{version}",
        "--serving-runtime",
        "kserve-huggingfaceserver",
    ]);
    assert!(isvcs.len() >= 4, "{isvcs:#?}");
    let check = |objects: &[Value]| {
        let file = step.path("isvcs.json");
        std::fs::write(&file, serde_json::to_vec(objects).expect("json")).expect("write");
        let output = std::process::Command::new(&python)
            .arg(root.join("crates/gantry-cli/tests/it/tools/kserve_models.py"))
            .arg(&file)
            .output()
            .expect("python");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    let (code, text) = check(&isvcs);
    assert_eq!(code, Some(0), "{text}");
    let mut misspelt = isvcs[1].clone();
    misspelt["spec"]["predictor"]["canaryTraficPercent"] = json!(10);
    let (code, text) = check(&[misspelt]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("canaryTraficPercent: not a field of V1beta1PredictorSpec"),
        "{text}"
    );
}

/// With `GANTRY_TEST_KUBECONFIG`, the rendered objects go to a real API
/// server in a server-side dry run (nothing is created there): its own
/// schemas and admission say whether they would be accepted. Skipped
/// without it; `GANTRY_REQUIRE_SERVICES` does not require a cluster.
#[test]
fn a_real_cluster_accepts_the_rendered_objects_in_a_server_side_dry_run() {
    let Some(kubeconfig) = std::env::var_os("GANTRY_TEST_KUBECONFIG") else {
        return;
    };
    let namespace = std::env::var("GANTRY_TEST_NAMESPACE").unwrap_or_else(|_| "default".to_owned());
    let step = Step::local();
    let base = trained(&step);
    register(&step, &base, "1.0.0", true);
    register(&step, &base, "1.1.0", true);
    let set = step.run(&["registry", "alias", "tiny@1.0.0", "production"]);
    assert_eq!(set.code, 0, "{}", set.transcript());
    let engines: [&[&str]; 3] = [
        &[
            "--k8s-engine",
            "gateway-api",
            "--http-route",
            "chat",
            "--server-image",
            "vllm/vllm-openai:v0.11.0",
            "--model-source",
            "pvc:models",
        ],
        &[
            "--k8s-engine",
            "kserve",
            "--storage-uri",
            "s3://models/{name}/{version}",
        ],
        &["--k8s-engine", "argo-rollouts", "--argo-rollout", "chat"],
    ];
    let kubectl = |args: &[&str], input: Option<&str>| {
        let mut command = std::process::Command::new("kubectl");
        command.env("KUBECONFIG", &kubeconfig).args(args);
        if input.is_some() {
            command.stdin(std::process::Stdio::piped());
        }
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command
            .spawn()
            .expect("kubectl (install it to test against a real cluster)");
        if let Some(input) = input {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write");
        }
        let output = child.wait_with_output().expect("kubectl");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned()
                + &String::from_utf8_lossy(&output.stderr),
        )
    };
    for engine in engines {
        let mut args = vec![
            "deploy-canary",
            "--target",
            "kubernetes",
            "--dry-run",
            "--format",
            "json",
            "--namespace",
            namespace.as_str(),
            "--model",
            "tiny@1.1.0",
        ];
        args.extend(engine);
        let planned = step.run(&args);
        assert_eq!(planned.code, 0, "{}", planned.transcript());
        let plan: Value = serde_json::from_str(&planned.stdout).expect("plan");
        for body in plan["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|request| request.get("body"))
        {
            let Some(kind) = body["kind"].as_str() else {
                continue; // a merge patch, not an object
            };
            let object = match kind {
                "HTTPRoute" => merged(route(json!([])), body),
                "Rollout" => merged(rollout(), body),
                _ => body.clone(),
            };
            let mut object = object;
            object["metadata"]["namespace"] = json!(namespace);
            let api_version = body["apiVersion"].as_str().unwrap_or_default();
            let group = api_version.split_once('/').map_or("", |(group, _)| group);
            let (listed, names) =
                kubectl(&["api-resources", "--api-group", group, "-o", "name"], None);
            let served = listed
                && names.lines().any(|name| {
                    name.split('.').next() == Some(&format!("{}s", kind.to_lowercase()))
                });
            if !served {
                // The CRD is not installed there: nothing to check it against.
                continue;
            }
            let (ok, text) = kubectl(
                &[
                    "apply",
                    "--server-side",
                    "--dry-run=server",
                    "--field-manager=gantry",
                    "--force-conflicts",
                    "-f",
                    "-",
                ],
                Some(&object.to_string()),
            );
            assert!(ok, "{kind}: {text}");
        }
    }
}
