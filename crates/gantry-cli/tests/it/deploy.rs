//! `gantry router` and `gantry deploy-canary` with real tiny-lm servers as
//! stable and canary (their fault flags make bad canaries), the file
//! registry, a real Prometheus, and the fake GitHub API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Prometheus, Step, free_port, github_outputs, tiny_lm, train_tiny, wait_for};

/// Trains one tiny model; versions are copies of it with a different model
/// card, so every version behaves the same unless its serve command says otherwise.
pub(crate) fn trained(step: &Step) -> PathBuf {
    let model = train_tiny(step.directory.path(), 2, 4);
    step.write("gate.json", r#"{"verdict": "pass"}"#);
    model
}

/// Registers a copy of the base model as `version` (gated unless `gated` is false).
pub(crate) fn register(step: &Step, base: &Path, version: &str, gated: bool) {
    register_in(step, base, version, gated, "file:.gantry/registry");
}

/// [`register`] into `registry`.
fn register_in(step: &Step, base: &Path, version: &str, gated: bool, registry: &str) {
    let dir = step.path(&format!("model-{version}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    for entry in std::fs::read_dir(base).expect("base") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.join(entry.file_name())).expect("copy");
    }
    std::fs::write(dir.join("README.md"), format!("tiny {version}\n")).expect("card");
    let model_dir = dir.display().to_string();
    let mut args = vec![
        "register",
        "--model-dir",
        &model_dir,
        "--name",
        "tiny",
        "--version",
        version,
        "--registry",
        registry,
    ];
    if gated {
        args.extend(["--gate-report", "gate.json"]);
    }
    let registered = step.run(&args);
    assert_eq!(registered.code, 0, "{}", registered.transcript());
}

/// `gantry router` in the step's directory; stopped (with its servers) on drop.
struct RouterProcess {
    child: Child,
    state_dir: PathBuf,
    admin: String,
    /// Leave the model servers running on drop (for the next router to adopt).
    keep_servers: bool,
}

impl RouterProcess {
    fn start(step: &Step) -> RouterProcess {
        RouterProcess::start_on(step, free_port(), free_port())
    }

    fn start_on(step: &Step, data: u16, admin: u16) -> RouterProcess {
        let child = step.spawn(&[
            "router",
            "--listen",
            &format!("127.0.0.1:{data}"),
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--state-dir",
            "router",
            "--grace",
            "2s",
            "--stop-backends-on-exit",
        ]);
        let router = RouterProcess {
            child,
            state_dir: step.path("router"),
            admin: format!("http://127.0.0.1:{admin}"),
            keep_servers: false,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::blocking::get(format!("{}/health", router.admin)).is_err() {
            assert!(Instant::now() < deadline, "the router never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
        router
    }

    fn view(&self) -> Value {
        reqwest::blocking::get(format!("{}/v1/backends", self.admin))
            .and_then(reqwest::blocking::Response::json)
            .expect("the router answers")
    }

    fn weights(&self) -> Vec<(String, u64)> {
        self.view()["backends"]
            .as_array()
            .expect("backends")
            .iter()
            .map(|backend| {
                (
                    backend["version"].as_str().expect("version").to_owned(),
                    backend["weight"].as_u64().expect("weight"),
                )
            })
            .collect()
    }

    /// Kills the router with SIGKILL: its servers keep running, for the
    /// next router on the state directory to adopt.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.keep_servers = true;
    }

    /// The model servers the router's state names.
    fn server_pids(&self) -> Vec<u64> {
        let state: Value = std::fs::read_to_string(self.state_dir.join("router.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(Value::Null);
        state["backends"]
            .as_array()
            .map(|backends| {
                backends
                    .iter()
                    .filter_map(|backend| backend["pid"].as_u64())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for RouterProcess {
    fn drop(&mut self) {
        let pids = if self.keep_servers {
            Vec::new()
        } else {
            self.server_pids()
        };
        let _ = Command::new("kill")
            .args(["-s", "TERM", "--", &self.child.id().to_string()])
            .stderr(std::process::Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Whatever a killed router left behind.
        for pid in pids {
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn serve_command(extra: &str) -> String {
    format!(
        "{} serve --model {{model_dir}} --port {{port}} {extra}",
        tiny_lm().display()
    )
}

/// deploy-canary's arguments for a short rollout against `router`.
fn deploy_args<'a>(
    router: &'a RouterProcess,
    model: &'a str,
    serve: &'a str,
    rest: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "deploy-canary",
        "--model",
        model,
        "--router",
        &router.admin,
        "--serve-command",
        serve,
        "--smoke-traffic",
        "data/eval.jsonl",
        "--smoke-rps",
        "25",
        "--min-requests",
        "5",
        "--step-duration",
        "3s",
        "--lease",
        "20s",
        "--publish",
        "summary",
    ];
    args.extend_from_slice(rest);
    args
}

pub(crate) fn alias_of(step: &Step, alias: &str) -> Option<String> {
    let shown = step.run(&[
        "--format",
        "json",
        "registry",
        "show",
        &format!("tiny@{alias}"),
    ]);
    if shown.code != 0 {
        return None;
    }
    let manifest: Value = serde_json::from_str(&shown.stdout).expect("manifest");
    manifest["version"].as_str().map(str::to_owned)
}

fn state(step: &Step) -> Value {
    serde_json::from_str(&step.read(".gantry/deploy/rollout.json")).expect("rollout state")
}

#[test]
fn a_first_deploy_then_a_good_canary_are_promoted_and_recorded_as_github_deployments() {
    let forge = gantry_test::FakeForge::start();
    let mut step = Step::github();
    step.set("GITHUB_API_URL", forge.url())
        .set("GITHUB_TOKEN", "ghs_deploytoken")
        .set("GITHUB_REF", "refs/heads/main")
        .set("GITHUB_EVENT_NAME", "workflow_dispatch");
    let base = trained(&step);
    register(&step, &base, "0.1.0", true);
    let router = RouterProcess::start(&step);
    let serve = serve_command("");

    let first = step.run(&deploy_args(&router, "tiny@0.1.0", &serve, &[]));
    assert_eq!(first.code, 0, "{}", first.transcript());
    assert!(
        first.stderr.contains("first deploy of tiny@0.1.0"),
        "{}",
        first.transcript()
    );
    assert_eq!(alias_of(&step, "production").as_deref(), Some("0.1.0"));
    assert_eq!(router.weights(), [("0.1.0".to_owned(), 100)]);

    register(&step, &base, "0.1.1", true);
    let rollout = step.run(&deploy_args(
        &router,
        "tiny@0.1.1",
        &serve,
        &["--steps", "50", "--smoke-scorer", "contains"],
    ));
    assert_eq!(rollout.code, 0, "{}", rollout.transcript());
    let outputs = github_outputs(&step.read("github_output"));
    assert_eq!(outputs["outcome"], "promoted");
    assert_eq!(outputs["final-weight"], "100");
    assert_eq!(outputs["stable-version"], "0.1.1");
    assert_eq!(outputs["canary-version"], "0.1.1");
    assert!(
        outputs["deployment-id"].starts_with("tiny-0.1.1-"),
        "{outputs:?}"
    );
    assert_eq!(alias_of(&step, "production").as_deref(), Some("0.1.1"));
    assert_eq!(
        router.weights(),
        [("0.1.1".to_owned(), 100)],
        "the old stable is retired"
    );
    let rollout_state = state(&step);
    let windows = rollout_state["windows"].as_array().expect("windows");
    assert_eq!(windows.len(), 2, "50% then 100%: {rollout_state:#}");
    assert!(windows.iter().all(|window| window["outcome"] == "success"));
    assert!(windows[0]["canary"]["requests"].as_u64().expect("n") >= 5);
    assert!(windows[0]["stable"]["requests"].as_u64().expect("n") >= 5);
    // The smoke answers were scored per version, each against its item's
    // expected answer (same weights: no significant difference).
    let quality = windows[0]["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|check| check["name"] == "smoke-quality")
        .expect("a smoke-quality check");
    assert_eq!(quality["outcome"], "success", "{quality:#}");
    assert!(
        quality["canary"].is_number() && quality["stable"].is_number(),
        "{quality:#}"
    );

    // One GitHub deployment per rollout, with the digest, then success.
    let deployments = forge.deployments();
    assert_eq!(deployments.len(), 2, "{deployments:#?}");
    assert_eq!(deployments[1]["auto_merge"], false);
    assert_eq!(
        deployments[1]["payload"]["digest"],
        rollout_state["canary"]["digest"]
    );
    let statuses = forge.deployment_statuses();
    let last_id = rollout_state["deployments"]["github"]
        .as_u64()
        .expect("deployment id");
    let states: Vec<&str> = statuses
        .iter()
        .filter(|status| status["deployment_id"].as_u64() == Some(last_id))
        .map(|status| status["state"].as_str().expect("state"))
        .collect();
    assert_eq!(states.first(), Some(&"in_progress"));
    assert_eq!(states.last(), Some(&"success"));
    assert!(
        statuses.iter().any(|status| status["description"]
            .as_str()
            .is_some_and(|text| text.starts_with("50%, 1 of 1 windows ok"))),
        "{statuses:#?}"
    );
    let summary = step.read("step_summary");
    assert!(
        summary.contains("deploy-canary: tiny@0.1.1 promoted"),
        "{summary}"
    );
    assert!(
        summary.contains("### Windows: canary against stable"),
        "{summary}"
    );
    assert!(step.read(".gantry/deploy/timeline.svg").starts_with("<svg"));
    assert!(
        !summary.contains("ghs_deploytoken")
            && !step
                .read(".gantry/deploy/rollout.json")
                .contains("ghs_deploytoken")
    );

    // A pause step: the rollout stops there, traffic back on stable, until
    // a person promotes; resume alone does not pass it.
    register(&step, &base, "0.1.2", true);
    let paused = step.run(&deploy_args(
        &router,
        "tiny@0.1.2",
        &serve,
        &["--steps", "20,pause"],
    ));
    assert_eq!(paused.code, 0, "{}", paused.transcript());
    assert_eq!(
        github_outputs(&step.read("github_output"))["outcome"],
        "paused"
    );
    assert_eq!(
        router.weights(),
        [("0.1.1".to_owned(), 100), ("0.1.2".to_owned(), 0)]
    );
    let later = |action: &str| {
        step.run(&[
            "deploy-canary",
            "--action",
            action,
            "--router",
            &router.admin,
            "--serve-command",
            &serve,
            "--smoke-traffic",
            "data/eval.jsonl",
            "--smoke-rps",
            "25",
            "--min-requests",
            "5",
            "--step-duration",
            "3s",
            "--publish",
            "summary",
        ])
    };
    let resumed = later("resume");
    assert_eq!(resumed.code, 0, "{}", resumed.transcript());
    assert!(
        resumed.stderr.contains("it waits for --action promote"),
        "{}",
        resumed.transcript()
    );
    assert_eq!(state(&step)["phase"], "paused");
    // Meanwhile someone points production elsewhere: the promotion's
    // compare-and-swap refuses it, and nothing moves.
    let moved = step.run(&["registry", "alias", "tiny@0.1.0", "production"]);
    assert_eq!(moved.code, 0, "{}", moved.transcript());
    let promoted = later("promote");
    assert_eq!(promoted.code, 2, "{}", promoted.transcript());
    assert!(
        promoted
            .stderr
            .contains("promotion refused, nothing changed in the registry"),
        "{}",
        promoted.transcript()
    );
    assert_eq!(alias_of(&step, "production").as_deref(), Some("0.1.0"));
    let statuses = forge.deployment_statuses();
    assert_eq!(
        statuses.last().map(|status| status["state"].clone()),
        Some("error".into()),
        "{statuses:#?}"
    );
    let aborted = later("abort");
    assert_eq!(aborted.code, 0, "{}", aborted.transcript());
    assert_eq!(router.weights(), [("0.1.1".to_owned(), 100)]);
    assert_eq!(
        forge
            .deployment_statuses()
            .last()
            .map(|status| status["state"].clone()),
        Some("inactive".into())
    );
}

#[test]
fn bad_canaries_are_rolled_back_and_too_little_traffic_never_promotes() {
    let step = Step::local();
    let base = trained(&step);
    register(&step, &base, "0.1.0", true);
    let router = RouterProcess::start(&step);
    let clean = serve_command("");
    let first = step.run(&deploy_args(&router, "tiny@0.1.0", &clean, &[]));
    assert_eq!(first.code, 0, "{}", first.transcript());

    // 10% of requests fail.
    register(&step, &base, "0.1.1", true);
    let failing = serve_command("--inject-error-rate 0.1");
    let rolled = step.run(&deploy_args(
        &router,
        "tiny@0.1.1",
        &failing,
        &["--steps", "50"],
    ));
    assert_eq!(rolled.code, 1, "{}", rolled.transcript());
    assert!(
        rolled.stdout.contains("outcome=rolled-back"),
        "{}",
        rolled.transcript()
    );
    let reason = state(&step)["reason"].as_str().expect("reason").to_owned();
    assert!(reason.contains("error-rate: canary error rate"), "{reason}");
    assert_eq!(
        alias_of(&step, "production").as_deref(),
        Some("0.1.0"),
        "the alias stays"
    );
    assert_eq!(
        router.weights(),
        [("0.1.0".to_owned(), 100)],
        "the canary is stopped"
    );

    // 150 ms slower before its first token: the relative judge says no.
    register(&step, &base, "0.1.2", true);
    let slow = serve_command("--inject-latency-ms 150");
    let rolled = step.run(&deploy_args(
        &router,
        "tiny@0.1.2",
        &slow,
        &["--steps", "50"],
    ));
    assert_eq!(rolled.code, 1, "{}", rolled.transcript());
    let reason = state(&step)["reason"].as_str().expect("reason").to_owned();
    assert!(reason.contains("Mann–Whitney"), "{reason}");
    assert_eq!(alias_of(&step, "production").as_deref(), Some("0.1.0"));

    // Fewer requests than --min-requests: inconclusive windows pause the
    // rollout (traffic back on stable) and never promote.
    register(&step, &base, "0.1.3", true);
    let mut args = deploy_args(&router, "tiny@0.1.3", &clean, &["--steps", "50"]);
    let at = args
        .iter()
        .position(|arg| *arg == "--min-requests")
        .expect("flag")
        + 1;
    args[at] = "10000";
    let at = args
        .iter()
        .position(|arg| *arg == "--step-duration")
        .expect("flag")
        + 1;
    args[at] = "1s";
    let paused = step.run(&args);
    assert_eq!(paused.code, 1, "not a pass: {}", paused.transcript());
    assert!(
        paused.stdout.contains("outcome=paused"),
        "{}",
        paused.transcript()
    );
    let paused_state = state(&step);
    assert_eq!(
        paused_state["windows"].as_array().expect("windows").len(),
        3
    );
    assert!(
        paused_state["windows"]
            .as_array()
            .expect("windows")
            .iter()
            .all(|w| w["outcome"] == "inconclusive")
    );
    assert_eq!(alias_of(&step, "production").as_deref(), Some("0.1.0"));
    assert_eq!(
        router.weights(),
        [("0.1.0".to_owned(), 100), ("0.1.3".to_owned(), 0)]
    );
    // A second start of another version is refused while this one is open.
    register(&step, &base, "0.1.4", true);
    let refused = step.run(&deploy_args(&router, "tiny@0.1.4", &clean, &[]));
    assert_eq!(refused.code, 2, "{}", refused.transcript());
    assert!(
        refused.stderr.contains("is paused in"),
        "{}",
        refused.transcript()
    );
    let aborted = step.run(&[
        "deploy-canary",
        "--action",
        "abort",
        "--router",
        &router.admin,
    ]);
    assert_eq!(aborted.code, 0, "{}", aborted.transcript());
    assert!(
        aborted.stdout.contains("outcome=aborted"),
        "{}",
        aborted.transcript()
    );
    assert_eq!(router.weights(), [("0.1.0".to_owned(), 100)]);
}

#[test]
fn bad_input_is_refused_before_anything_serves() {
    let step = Step::local();
    let base = trained(&step);
    register(&step, &base, "0.1.0", false);
    let serve = serve_command("");
    let admin = format!("http://127.0.0.1:{}", free_port());
    let run = |model: &str, extra: &[&str]| {
        let mut args = vec![
            "deploy-canary",
            "--model",
            model,
            "--router",
            &admin,
            "--serve-command",
            &serve,
        ];
        args.extend_from_slice(extra);
        step.run(&args)
    };
    for (outcome, expected) in [
        (
            run("tiny@0.1.0", &[]),
            "has no evaluation gate in its lineage",
        ),
        (run("tiny@9.9.9", &[]), "--model tiny@9.9.9"),
        (
            run("tiny@0.1.0", &["--steps", "50,25"]),
            "weights must increase, but 25 follows 50",
        ),
        (run("tiny@0.1.0", &["--smoke-rps", "0"]), "--smoke-rps 0"),
    ] {
        assert_eq!(outcome.code, 2, "{}", outcome.transcript());
        assert!(
            outcome.stderr.contains(expected),
            "{expected}: {}",
            outcome.transcript()
        );
    }
    // A tampered blob: verification refuses the model before it is served.
    register(&step, &base, "0.1.1", true);
    let blobs = step.path(".gantry/registry/blobs");
    let weights = gantry_core::Digest::of_bytes(
        &std::fs::read(base.join("model.safetensors")).expect("read"),
    );
    let blob =
        find_file(&blobs, &weights.to_string().replace("sha256:", "")).expect("the weights' blob");
    let mut bytes = std::fs::read(&blob).expect("blob");
    bytes[100] ^= 1;
    std::fs::write(&blob, bytes).expect("tamper");
    let tampered = run("tiny@0.1.1", &[]);
    assert_eq!(tampered.code, 2, "{}", tampered.transcript());
    assert!(
        tampered.stderr.contains("failed verification"),
        "{}",
        tampered.transcript()
    );
    assert!(
        !step.path(".gantry/deploy/rollout.json").exists(),
        "no rollout was started"
    );
    // With nothing in progress, resume says so.
    let resumed = step.run(&["deploy-canary", "--action", "resume", "--router", &admin]);
    assert_eq!(resumed.code, 2);
    assert!(
        resumed.stderr.contains("no rollout in progress"),
        "{}",
        resumed.transcript()
    );
}

/// The file under `dir` whose name contains `name`.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        let found = if path.is_dir() {
            find_file(&path, name)
        } else {
            path.file_name()
                .is_some_and(|file| file.to_string_lossy().contains(name))
                .then(|| path.clone())
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Polls `check` until it holds.
#[test]
fn a_killed_controller_leaves_traffic_to_the_lease_and_resume_continues_after_a_router_restart() {
    let step = Step::local();
    let base = trained(&step);
    register(&step, &base, "0.1.0", true);
    let data_port = free_port();
    let admin_port = free_port();
    let mut router = RouterProcess::start_on(&step, data_port, admin_port);
    let serve = serve_command("");
    let first = step.run(&deploy_args(&router, "tiny@0.1.0", &serve, &[]));
    assert_eq!(first.code, 0, "{}", first.transcript());
    register(&step, &base, "0.1.1", true);

    let mut args = deploy_args(&router, "tiny@0.1.1", &serve, &["--steps", "25,50"]);
    for (flag, value) in [("--step-duration", "120s"), ("--lease", "2s")] {
        let at = args.iter().position(|arg| *arg == flag).expect("flag") + 1;
        args[at] = value;
    }
    let mut controller = step.spawn(&args);
    wait_for("the canary at 25%", Duration::from_secs(60), || {
        router.weights().contains(&("0.1.1".to_owned(), 25))
    });
    // A second controller on the same rollout is refused.
    let second = step.run(&args);
    assert_eq!(second.code, 2, "{}", second.transcript());
    assert!(
        second
            .stderr
            .contains("another deploy-canary controls this rollout"),
        "{}",
        second.transcript()
    );
    controller.kill().expect("SIGKILL");
    let _ = controller.wait();
    wait_for(
        "the lease to return traffic to stable",
        Duration::from_secs(15),
        || router.weights().contains(&("0.1.0".to_owned(), 100)),
    );
    let view = router.view();
    let reason = view["reverted"]["reason"]
        .as_str()
        .expect("reverted")
        .to_owned();
    assert!(
        reason.contains("tiny-0.1.1-"),
        "the holder is named: {reason}"
    );

    // The router dies too, and comes back with the same servers and weights.
    let pids_before = router.server_pids();
    router.kill();
    drop(router);
    let router = RouterProcess::start_on(&step, data_port, admin_port);
    wait_for("both servers adopted", Duration::from_secs(30), || {
        router.view()["backends"]
            .as_array()
            .is_some_and(|backends| {
                backends.len() == 2
                    && backends
                        .iter()
                        .all(|backend| backend["health"] == "healthy")
            })
    });
    assert_eq!(
        router.weights(),
        [("0.1.0".to_owned(), 100), ("0.1.1".to_owned(), 0)]
    );
    let mut pids_after = router.server_pids();
    let mut pids_before = pids_before;
    pids_before.sort_unstable();
    pids_after.sort_unstable();
    assert_eq!(
        pids_before, pids_after,
        "the running servers were adopted, not restarted"
    );

    // A server that dies is restarted by the router, with backoff.
    let stable_pid = router.view()["backends"][0]["pid"].as_u64().expect("pid");
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &stable_pid.to_string()])
        .status();
    wait_for(
        "the crashed server to be restarted",
        Duration::from_secs(30),
        || {
            let backend = &router.view()["backends"][0];
            backend["restarts"] == 1
                && backend["health"] == "healthy"
                && backend["pid"].as_u64() != Some(stable_pid)
        },
    );

    // resume continues from the saved step (25%) and promotes.
    let resumed = step.run(&[
        "deploy-canary",
        "--action",
        "resume",
        "--router",
        &router.admin,
        "--serve-command",
        &serve,
        "--smoke-traffic",
        "data/eval.jsonl",
        "--smoke-rps",
        "25",
        "--min-requests",
        "5",
        "--step-duration",
        "3s",
        "--publish",
        "summary",
    ]);
    assert_eq!(resumed.code, 0, "{}", resumed.transcript());
    let rollout = state(&step);
    assert_eq!(rollout["phase"], "promoted");
    let actions: Vec<&str> = rollout["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .map(|decision| decision["action"].as_str().expect("action"))
        .collect();
    let resumed_at = actions
        .iter()
        .position(|action| *action == "resume")
        .expect("resume");
    assert_eq!(actions[resumed_at + 1], "reconcile", "{actions:?}");
    let weights: Vec<u64> = rollout["windows"]
        .as_array()
        .expect("windows")
        .iter()
        .map(|window| window["weight"].as_u64().expect("weight"))
        .collect();
    assert_eq!(weights, [25, 50, 100], "resumed at the saved step");
    assert_eq!(alias_of(&step, "production").as_deref(), Some("0.1.1"));
}

/// A Prometheus scraping the router's `/metrics` every second.
#[test]
fn prometheus_stopped_mid_rollout_holds_the_weight_then_rolls_back() {
    let step = Step::local();
    let base = trained(&step);
    register(&step, &base, "0.1.0", true);
    let router = RouterProcess::start(&step);
    let Some(mut prometheus) =
        Prometheus::start(&step, &[router.admin.trim_start_matches("http://")])
    else {
        return;
    };
    let serve = serve_command("");
    let first = step.run(&deploy_args(&router, "tiny@0.1.0", &serve, &[]));
    assert_eq!(first.code, 0, "{}", first.transcript());
    register(&step, &base, "0.1.1", true);
    step.write(
        "analysis.toml",
        &format!(
            "consecutive-error-limit = 1\n\n[prometheus]\nurl = \"{}\"\n\n[[checks]]\nname = \"canary-healthy\"\nprovider = \"prometheus\"\nquery = 'max(gantry_router_backend_healthy{{version=\"{{{{ version }}}}\"}})'\nmin = 1\n\n[[checks]]\nname = \"router-probe\"\nprovider = \"http\"\nurl = \"{}/health?for={{{{ version }}}}\"\n",
            prometheus.url,
            router.admin
        ),
    );
    let mut controller = step.spawn(&deploy_args(
        &router,
        "tiny@0.1.1",
        &serve,
        &[
            "--steps",
            "10,20,30,40,50,60",
            "--analysis",
            "analysis.toml",
        ],
    ));
    wait_for(
        "a window judged with Prometheus",
        Duration::from_secs(60),
        || {
            std::fs::read_to_string(step.path(".gantry/deploy/rollout.json"))
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(&text).ok())
                .is_some_and(|rollout| {
                    rollout["windows"].as_array().is_some_and(|windows| {
                        windows.iter().any(|window| {
                            window["outcome"] == "success"
                                && window["checks"].as_array().is_some_and(|checks| {
                                    checks.iter().any(|check| check["name"] == "canary-healthy")
                                        && checks.iter().any(|check| {
                                            check["name"] == "router-probe"
                                                && check["outcome"] == "success"
                                                && check["reason"].as_str().is_some_and(|reason| {
                                                    reason
                                                        .contains("/health?for=0.1.1 answered 200")
                                                })
                                        })
                                })
                        })
                    })
                })
        },
    );
    prometheus.stop();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = controller.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the controller never gave up on Prometheus"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(1));
    let rollout = state(&step);
    assert_eq!(rollout["phase"], "rolled-back");
    let decisions = rollout["decisions"].as_array().expect("decisions");
    assert!(
        decisions.iter().any(|decision| decision["action"] == "hold"
            && decision["reason"]
                .as_str()
                .is_some_and(|reason| reason.contains("metric source error 1 of 1 tolerated"))),
        "{decisions:#?}"
    );
    let reason = rollout["reason"].as_str().expect("reason");
    assert!(
        reason.contains("metric source errors in 2 windows in a row"),
        "{reason}"
    );
    assert!(
        reason.contains("Prometheus at http://127.0.0.1:"),
        "the host is named: {reason}"
    );
    assert_eq!(router.weights(), [("0.1.0".to_owned(), 100)]);
    assert_eq!(alias_of(&step, "production").as_deref(), Some("0.1.0"));
}

#[test]
fn a_rollout_from_an_oci_registry_moves_the_alias_there() {
    let Some(server) = gantry_test::OciRegistryServer::start() else {
        return;
    };
    let mut step = Step::local();
    step.set("GANTRY_HTTP_BACKOFF_MS", "1")
        .set("GANTRY_REGISTRY_USERNAME", gantry_test::OCI_USER)
        .set("GANTRY_REGISTRY_PASSWORD", gantry_test::OCI_PASSWORD);
    let uri = format!("oci://{}/models", server.address);
    let base = trained(&step);
    register_in(&step, &base, "0.1.0", true, &uri);
    register_in(&step, &base, "0.1.1", true, &uri);
    let router = RouterProcess::start(&step);
    let serve = serve_command("");
    let first = step.run(&deploy_args(
        &router,
        "tiny@0.1.0",
        &serve,
        &["--registry", &uri],
    ));
    assert_eq!(first.code, 0, "{}", first.transcript());
    let rollout = step.run(&deploy_args(
        &router,
        "tiny@0.1.1",
        &serve,
        &["--registry", &uri, "--steps", "50"],
    ));
    assert_eq!(rollout.code, 0, "{}", rollout.transcript());
    assert!(
        rollout.stdout.contains("outcome=promoted"),
        "{}",
        rollout.transcript()
    );
    let shown = step.run(&[
        "--format",
        "json",
        "registry",
        "show",
        "tiny@production",
        "--registry",
        &uri,
    ]);
    assert_eq!(shown.code, 0, "{}", shown.transcript());
    let manifest: Value = serde_json::from_str(&shown.stdout).expect("manifest");
    assert_eq!(manifest["version"], "0.1.1");
    for text in [
        &rollout.stdout,
        &rollout.stderr,
        &step.read(".gantry/deploy/rollout.json"),
        &step.read(".gantry/deploy/report.md"),
    ] {
        assert!(!text.contains(gantry_test::OCI_PASSWORD));
    }
}

#[test]
fn blue_green_previews_the_new_version_with_smoke_traffic_then_switches_at_once() {
    // In a GitLab job without an `environment:` keyword, gantry records the
    // deployment through the API: running, then success.
    let forge = gantry_test::FakeForge::start();
    let mut step = Step::gitlab_merge_request(4);
    step.set("CI_API_V4_URL", &forge.gitlab_url())
        .set("GITLAB_TOKEN", "glpat-deploytoken0000000")
        .set("CI_COMMIT_REF_NAME", "main");
    let base = trained(&step);
    register(&step, &base, "0.1.0", true);
    register(&step, &base, "0.1.1", true);
    let router = RouterProcess::start(&step);
    let serve = serve_command("");
    let first = step.run(&deploy_args(&router, "tiny@0.1.0", &serve, &[]));
    assert_eq!(first.code, 0, "{}", first.transcript());
    let switched = step.run(&deploy_args(
        &router,
        "tiny@0.1.1",
        &serve,
        &["--strategy", "blue-green"],
    ));
    assert_eq!(switched.code, 0, "{}", switched.transcript());
    let rollout = state(&step);
    assert_eq!(rollout["phase"], "promoted");
    let windows = rollout["windows"].as_array().expect("windows");
    let weights: Vec<u64> = windows
        .iter()
        .map(|window| window["weight"].as_u64().expect("weight"))
        .collect();
    assert_eq!(
        weights,
        [0, 100],
        "a preview without users, then everything: {rollout:#}"
    );
    assert!(
        windows[0]["stable"].is_null(),
        "the preview is judged on its own"
    );
    assert!(windows[0]["canary"]["requests"].as_u64().expect("n") >= 5);
    assert_eq!(router.weights(), [("0.1.1".to_owned(), 100)]);
    assert_eq!(alias_of(&step, "production").as_deref(), Some("0.1.1"));
    let deployments = forge.deployments();
    assert_eq!(deployments.len(), 2, "{deployments:#?}");
    assert_eq!(deployments[1]["status"], "running");
    assert_eq!(deployments[1]["environment"], "production");
    let last_id = deployments[1]["id"].as_u64().expect("id");
    let statuses: Vec<String> = forge
        .deployment_statuses()
        .iter()
        .filter(|status| status["deployment_id"].as_u64() == Some(last_id))
        .map(|status| status["status"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        statuses.last().map(String::as_str),
        Some("success"),
        "{statuses:?}"
    );
    assert!(
        step.read("gantry.env")
            .contains("DEPLOY_CANARY_OUTCOME=promoted"),
        "{}",
        step.read("gantry.env")
    );
}

#[test]
fn a_cancelled_job_returns_traffic_to_stable_at_once() {
    let step = Step::local();
    let base = trained(&step);
    register(&step, &base, "0.1.0", true);
    register(&step, &base, "0.1.1", true);
    let router = RouterProcess::start(&step);
    let serve = serve_command("");
    let first = step.run(&deploy_args(&router, "tiny@0.1.0", &serve, &[]));
    assert_eq!(first.code, 0, "{}", first.transcript());
    let mut args = deploy_args(&router, "tiny@0.1.1", &serve, &["--steps", "25,50"]);
    // A long lease: only the cancel can return the traffic in time.
    for (flag, value) in [("--step-duration", "120s"), ("--lease", "10m")] {
        let at = args.iter().position(|arg| *arg == flag).expect("flag") + 1;
        args[at] = value;
    }
    let mut controller = step.spawn(&args);
    wait_for("the canary at 25%", Duration::from_secs(60), || {
        router.weights().contains(&("0.1.1".to_owned(), 25))
    });
    // A second controller with a state file of its own is refused: the
    // router's live lease names the rollout holding it. (Here, where the
    // lease is long: with a 2 s lease a loaded machine can let it lapse.)
    let mut elsewhere = args.clone();
    elsewhere.extend(["--state-file", "other/rollout.json"]);
    let other = step.run(&elsewhere);
    assert_eq!(other.code, 2, "{}", other.transcript());
    assert!(
        other
            .stderr
            .contains("already has a canary weight held by rollout tiny-0.1.1-"),
        "{}",
        other.transcript()
    );
    assert!(!step.path("other/rollout.json").exists());
    // What GitHub Actions sends a step when the run is cancelled.
    let _ = Command::new("kill")
        .args(["-s", "INT", "--", &controller.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while controller.try_wait().expect("wait").is_none() {
        assert!(
            Instant::now() < deadline,
            "the controller did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        router.weights(),
        [("0.1.0".to_owned(), 100)],
        "at once, not after the lease"
    );
    let rollout = state(&step);
    assert_eq!(rollout["phase"], "aborted");
    assert!(
        rollout["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("the job was cancelled")),
        "{rollout:#}"
    );
    assert_eq!(alias_of(&step, "production").as_deref(), Some("0.1.0"));
}
