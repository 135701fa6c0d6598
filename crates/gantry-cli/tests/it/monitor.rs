//! `gantry monitor` with tiny-lm servers as production (a degraded one made
//! with its fault flags), a real Prometheus scraping them, a real
//! Alertmanager (Debian's prometheus-alertmanager) delivering to a webhook,
//! and the fake GitHub API for the tracking issue.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    Prometheus, Server, Step, evaluate, free_port, github_outputs, production, wait_for,
};

/// A real Alertmanager delivering to a webhook that records what it gets.
struct Alertmanager {
    child: Child,
    url: String,
    webhook: gantry_test::EchoServer,
}

impl Alertmanager {
    fn start(step: &Step) -> Option<Alertmanager> {
        let binary = gantry_test::require_tool("prometheus-alertmanager")?;
        let webhook = gantry_test::EchoServer::start(|_| {
            gantry_test::EchoResponse::json(200, &serde_json::json!({}))
        });
        let config = step.write(
            "am.yml",
            &format!(
                "route:\n  receiver: hook\n  group_by: [alertname, model, environment]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: {}/hook\n        send_resolved: true\n",
                webhook.url()
            ),
        );
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", step.path("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("alertmanager");
        let url = format!("http://127.0.0.1:{port}");
        wait_for("alertmanager to be ready", Duration::from_secs(30), || {
            reqwest::blocking::get(format!("{url}/-/ready"))
                .is_ok_and(|response| response.status().is_success())
        });
        Some(Alertmanager {
            child,
            url,
            webhook,
        })
    }

    /// The alerts Alertmanager holds for model `tiny` that are active: (check, severity, version).
    fn active(&self) -> Vec<(String, String, String)> {
        let alerts: Value = reqwest::blocking::get(format!(
            "{}/api/v2/alerts?filter=model%3D%22tiny%22&active=true&silenced=false&inhibited=false",
            self.url
        ))
        .and_then(reqwest::blocking::Response::json)
        .expect("alerts");
        let mut active: Vec<(String, String, String)> = alerts
            .as_array()
            .expect("array")
            .iter()
            .filter(|alert| alert["status"]["state"] == "active")
            .map(|alert| {
                let label = |name: &str| alert["labels"][name].as_str().unwrap_or("").to_owned();
                (label("check"), label("severity"), label("version"))
            })
            .collect();
        active.sort();
        active
    }

    /// Statuses of the webhook deliveries so far (`firing`, `resolved`).
    fn deliveries(&self) -> Vec<Value> {
        self.webhook
            .requests()
            .iter()
            .filter_map(|request| serde_json::from_slice(&request.body).ok())
            .collect()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until Prometheus has scraped `requests` or more of `model`'s requests in the last minute.
fn scraped(prometheus: &Prometheus, model: &str, requests: f64) {
    let query = format!(
        "sum(increase(vllm:e2e_request_latency_seconds_count{{model_name=\"{model}\"}}[1m]))"
    );
    wait_for(
        "Prometheus to scrape the traffic",
        Duration::from_secs(30),
        || {
            reqwest::blocking::Client::new()
                .post(format!("{}/api/v1/query", prometheus.url))
                .form(&[("query", query.as_str())])
                .send()
                .and_then(reqwest::blocking::Response::json::<Value>)
                .ok()
                .and_then(|body| {
                    body["data"]["result"][0]["value"][1]
                        .as_str()
                        .map(str::to_owned)
                })
                .and_then(|value| value.parse::<f64>().ok())
                .is_some_and(|value| value >= requests)
        },
    );
}

fn monitor_args<'a>(endpoint: &'a str, prometheus: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "monitor",
        "--model",
        "tiny@production",
        "--endpoint",
        endpoint,
        "--prometheus",
        prometheus,
        "--window",
        "1m",
        "--trend-windows",
        "1",
        "--min-requests",
        "50",
        "--max-tokens",
        "16",
        "--publish",
        "summary",
    ];
    args.extend_from_slice(extra);
    args
}

fn report(step: &Step) -> Value {
    serde_json::from_str(&step.read(".gantry/monitor/monitor.json")).expect("monitor.json")
}

fn status(report: &Value, check: &str) -> String {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == check)
        .map_or_else(
            || format!("no check {check}"),
            |c| c["status"].as_str().unwrap_or("").to_owned(),
        )
}

#[test]
fn a_week_healthy_then_failing_twice_then_healthy_again_opens_updates_and_closes_one_issue() {
    let mut step = Step::github();
    let model = production(&step);
    let good = Server::start(&model, "tiny", &[]);
    // The planted worse server: empty answers, and 300 ms before each.
    let bad = Server::start(
        &model,
        "tiny-bad",
        &["--inject-empty-rate", "1", "--inject-latency-ms", "300"],
    );
    // DCGM exporter's metrics for one GPU (no GPU here: its text format, served).
    let dcgm = gantry_test::EchoServer::start(|_| {
        let labels = r#"gpu="0",UUID="GPU-5fa3",pci_bus_id="00000000:00:04.0",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="gpu-1""#;
        gantry_test::EchoResponse {
            status: 200,
            headers: vec![(
                "content-type".to_owned(),
                "text/plain; version=0.0.4".to_owned(),
            )],
            body: format!(
                "# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_GPU_UTIL{{{labels}}} 55\n# TYPE DCGM_FI_DEV_FB_USED gauge\nDCGM_FI_DEV_FB_USED{{{labels}}} 60000\n# TYPE DCGM_FI_DEV_FB_FREE gauge\nDCGM_FI_DEV_FB_FREE{{{labels}}} 20000\n# TYPE DCGM_FI_DEV_FB_RESERVED gauge\nDCGM_FI_DEV_FB_RESERVED{{{labels}}} 500\n"
            ),
        }
    });
    let Some(prometheus) =
        Prometheus::start(&step, &[good.address(), bad.address(), dcgm.address()])
    else {
        return;
    };
    let Some(alertmanager) = Alertmanager::start(&step) else {
        return;
    };
    let forge = gantry_test::FakeForge::start();
    step.set("GITHUB_API_URL", forge.url())
        .set("GITHUB_TOKEN", "ghs_monitortoken");
    let good_endpoint = good.endpoint();
    let bad_endpoint = bad.endpoint();
    let am = alertmanager.url.clone();
    // Trends are queried and shown, but weeks a minute apart are too noisy to warn on.
    let common = [
        "--trend-tolerance",
        "100",
        "--traffic",
        "traffic.jsonl",
        "--alertmanager",
        am.as_str(),
        "--slo",
        "latency-p95=250ms",
        "--issue-labels",
        "gantry-monitor,model-quality",
        "--gpu-hour-cost",
        "2.50",
    ];

    // Week 1: healthy.
    evaluate(&step, &good_endpoint, "tiny", "traffic-1");
    scraped(&prometheus, "tiny", 250.0);
    // A few seconds of scrapes after the traffic: the window's chart has points to draw.
    std::thread::sleep(Duration::from_secs(3));
    let healthy = step.run(&monitor_args(&good_endpoint, &prometheus.url, &common));
    assert_eq!(healthy.code, 0, "{}", healthy.transcript());
    let week = report(&step);
    assert_eq!(week["health"], "healthy", "{}", healthy.transcript());
    for check in ["latency-p95", "ttft-p95", "error-rate", "drift-psi"] {
        assert_eq!(
            status(&week, check),
            "pass",
            "{check}: {}",
            healthy.transcript()
        );
    }
    assert!(
        status(&week, "quality-add-normalized_exact") == "pass",
        "{week}"
    );
    // One GPU, busy 55% of the time, at most 75% of its memory used.
    let value = |name: &str| {
        week["checks"]
            .as_array()
            .and_then(|checks| checks.iter().find(|check| check["name"] == name))
            .and_then(|check| check["value"].as_f64())
    };
    assert_eq!(status(&week, "gpu-utilization"), "pass", "{week}");
    assert_eq!(value("gpu-utilization"), Some(55.0));
    assert_eq!(status(&week, "gpu-memory-headroom"), "pass", "{week}");
    assert!((value("gpu-memory-headroom").unwrap_or(0.0) - 20500.0 / 80500.0).abs() < 1e-6);
    assert_eq!(status(&week, "cost-per-million-tokens"), "info", "{week}");
    assert!(
        value("cost-per-million-tokens").is_some_and(|cost| cost > 0.0),
        "{week}"
    );
    let window = step.read(".gantry/monitor/window-service.svg");
    assert!(window.contains("latency-p95 (ms)"), "{window}");
    assert!(forge.issues().is_empty(), "a healthy week opens no issue");
    assert!(
        alertmanager.active().is_empty(),
        "{:?}",
        alertmanager.active()
    );
    let outputs = github_outputs(&step.read("github_output"));
    assert_eq!(outputs["health"], "healthy");
    assert_eq!(outputs["verdict"], "pass");

    // Week 2: production is the degraded server — answers empty and slow.
    evaluate(&step, &bad_endpoint, "tiny-bad", "traffic-2");
    scraped(&prometheus, "tiny-bad", 250.0);
    let served = ["--served-model", "tiny-bad"];
    let args: Vec<&str> = monitor_args(&bad_endpoint, &prometheus.url, &common)
        .into_iter()
        .chain(served)
        .collect();
    let failing = step.run(&args);
    assert_eq!(failing.code, 1, "{}", failing.transcript());
    let week = report(&step);
    assert_eq!(week["health"], "failing");
    assert_eq!(
        status(&week, "quality-add-normalized_exact"),
        "fail",
        "{week}"
    );
    assert_eq!(status(&week, "latency-p95"), "fail", "{week}");
    let issues = forge.issues();
    assert_eq!(issues.len(), 1, "{issues:?}");
    let issue = &issues[0];
    assert!(issue.open);
    assert_eq!(issue.labels, ["gantry-monitor", "model-quality"]);
    assert!(
        issue
            .body
            .contains("<!-- gantry-monitor model=tiny env=production -->")
    );
    assert!(issue.body.contains("latency-p95") && issue.body.contains("is failing"));
    wait_for(
        "Alertmanager to hold the alerts",
        Duration::from_secs(10),
        || {
            alertmanager.active().contains(&(
                "latency-p95".to_owned(),
                "critical".to_owned(),
                "0.1.0".to_owned(),
            ))
        },
    );
    let active = alertmanager.active();
    assert!(
        active.contains(&(
            "quality-add-normalized_exact".to_owned(),
            "critical".to_owned(),
            "0.1.0".to_owned()
        )),
        "{active:?}"
    );
    // One severity per check: the other one is posted resolved.
    assert!(
        !active.contains(&(
            "latency-p95".to_owned(),
            "warning".to_owned(),
            "0.1.0".to_owned()
        )),
        "{active:?}"
    );
    wait_for(
        "the webhook to be notified",
        Duration::from_secs(15),
        || {
            alertmanager
                .deliveries()
                .iter()
                .any(|body| body["status"] == "firing")
        },
    );
    assert_eq!(
        github_outputs(&step.read("github_output"))["issue-url"],
        "https://github.test/org/models/issues/1"
    );

    // Week 3: still failing: the same issue, edited; no new comment for the same verdict.
    evaluate(&step, &bad_endpoint, "tiny-bad", "traffic-3");
    let again = step.run(&args);
    assert_eq!(again.code, 1, "{}", again.transcript());
    assert_eq!(forge.issues().len(), 1);
    assert!(forge.comments(1).is_empty(), "{:?}", forge.comments(1));

    // Week 4: healthy again: the issue is closed with a comment, the alerts resolve.
    evaluate(&step, &good_endpoint, "tiny", "traffic-4");
    scraped(&prometheus, "tiny", 250.0);
    let recovered = step.run(&monitor_args(&good_endpoint, &prometheus.url, &common));
    assert_eq!(recovered.code, 0, "{}", recovered.transcript());
    let issues = forge.issues();
    assert_eq!(issues.len(), 1);
    assert!(!issues[0].open, "closed when healthy");
    assert_eq!(issues[0].state_reason.as_deref(), Some("completed"));
    let comments = forge.comments(1);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].1.contains("Healthy again"), "{comments:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !alertmanager.active().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "still active: {:?}\n{}",
            alertmanager.active(),
            recovered.transcript()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for(
        "the webhook to hear they resolved",
        Duration::from_secs(15),
        || {
            alertmanager
                .deliveries()
                .iter()
                .any(|body| body["status"] == "resolved")
        },
    );

    // A read-only token cannot open the issue: the verdict stands, the
    // report is in the job summary, and the log says what permission is missing.
    step.set("GITHUB_TOKEN", gantry_test::READ_ONLY_TOKEN);
    let read_only = step.run(&args);
    assert_eq!(read_only.code, 1, "{}", read_only.transcript());
    assert!(
        read_only.transcript().contains("403") && read_only.transcript().contains("issues: write"),
        "{}",
        read_only.transcript()
    );
    assert!(!forge.issues()[0].open, "the closed issue stays closed");

    // Five weeks of history, and trend charts drawn from it.
    let history = step.read(".gantry/monitor/history.jsonl");
    assert_eq!(history.lines().count(), 5, "{history}");
    let chart = step.read(".gantry/monitor/trend-quality.svg");
    assert!(
        chart.starts_with("<svg") && chart.contains("polyline"),
        "{chart}"
    );
    let summary = step.read("step_summary");
    assert!(
        summary.contains("gantry monitor: tiny 0.1.0 in production is healthy"),
        "{summary}"
    );
    // monitor.json follows its published schema.
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let check = std::env::var_os("GANTRY_TOOLS_VENV")
        .map_or_else(|| root.join(".venv-tools"), std::path::PathBuf::from)
        .join("bin/check-jsonschema");
    if check.is_file() {
        let checked = Command::new(check)
            .arg("--schemafile")
            .arg(root.join("schemas/monitor.schema.json"))
            .arg(step.path(".gantry/monitor/monitor.json"))
            .output()
            .expect("check-jsonschema");
        assert!(
            checked.status.success(),
            "monitor.json against its schema: {}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        );
    } else {
        assert!(
            std::env::var_os("GANTRY_REQUIRE_SERVICES").is_none(),
            "check-jsonschema is required (GANTRY_REQUIRE_SERVICES is set): run `cargo xtask test`"
        );
    }
    // The token reached the forge only as a credential, never in a body.
    assert!(
        forge
            .requests()
            .iter()
            .all(|request| !request.body.to_string().contains("ghs_monitortoken"))
    );
}

#[test]
fn sources_that_fail_say_so_and_bad_input_is_refused_by_name() {
    let mut step = Step::local();
    step.set("GANTRY_HTTP_BACKOFF_MS", "1");
    let model = production(&step);
    let good = Server::start(&model, "tiny", &[]);
    let endpoint = good.endpoint();

    // Prometheus down: the service checks error and say where; quality and
    // drift still report; exit 2 (a blind monitor is not a healthy one).
    let closed = format!("http://127.0.0.1:{}", free_port());
    let blind = step.run(&monitor_args(
        &endpoint,
        &closed,
        &["--traffic", "traffic.jsonl"],
    ));
    assert_eq!(blind.code, 2, "{}", blind.transcript());
    let week = report(&step);
    assert_eq!(status(&week, "latency-p95"), "error");
    let reason = week["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|check| check["name"] == "latency-p95"))
        .and_then(|check| check["reason"].as_str())
        .unwrap_or_default()
        .to_owned();
    assert!(
        reason.contains(&closed) && reason.contains("did not answer"),
        "{reason}"
    );
    assert_eq!(
        status(&week, "quality-add-normalized_exact"),
        "pass",
        "{week}"
    );
    assert_eq!(status(&week, "drift-psi"), "pass", "{week}");
    assert_eq!(week["health"], "degraded");

    // A PromQL that returns nothing is inconclusive, never a pass; a
    // shifted sample of prompts drifts.
    if let Some(prometheus) = Prometheus::start(&step, &[good.address()]) {
        let quiet = step.run(&monitor_args(
            &endpoint,
            &prometheus.url,
            &[
                "--selector",
                "model_name=\"nobody\"",
                "--traffic",
                "shifted.jsonl",
            ],
        ));
        assert_eq!(quiet.code, 1, "{}", quiet.transcript());
        let week = report(&step);
        assert_eq!(status(&week, "latency-p95"), "inconclusive", "{week}");
        assert_eq!(status(&week, "drift-psi"), "fail", "{week}");
        assert_eq!(week["health"], "failing");
    }

    // An unreachable endpoint: retried, then named.
    let gone = format!("http://127.0.0.1:{}/v1", free_port());
    let unreachable = step.run(&[
        "monitor",
        "--model",
        "tiny@production",
        "--endpoint",
        &gone,
        "--publish",
        "summary",
    ]);
    assert_eq!(unreachable.code, 2, "{}", unreachable.transcript());
    assert!(
        unreachable.stderr.contains(&gone)
            && unreachable.stderr.contains("Connection refused")
            && unreachable.stderr.contains("after 4 attempts"),
        "{}",
        unreachable.transcript()
    );

    // An eval set other than the registered one is refused: not comparable.
    let eval = step.read("data/eval.jsonl");
    let other: Vec<&str> = eval.lines().skip(1).collect();
    step.write("other-eval.jsonl", &(other.join("\n") + "\n"));
    let refused = step.run(&[
        "monitor",
        "--model",
        "tiny@production",
        "--endpoint",
        &endpoint,
        "--eval-set",
        "other-eval.jsonl",
        "--publish",
        "summary",
    ]);
    assert_eq!(refused.code, 2, "{}", refused.transcript());
    assert!(
        refused.stderr.contains("not the eval set") && refused.stderr.contains("not comparable"),
        "{}",
        refused.transcript()
    );

    // A malformed traffic file: parse findings by file and line.
    let mut traffic = step.read("traffic.jsonl");
    traffic.push_str("{\"messages\": [\n");
    step.write("broken.jsonl", &traffic);
    let broken = step.run(&[
        "monitor",
        "--model",
        "tiny@production",
        "--traffic",
        "broken.jsonl",
        "--publish",
        "summary",
    ]);
    assert_eq!(broken.code, 0, "{}", broken.transcript());
    let week = report(&step);
    let parse = week["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|check| check["name"] == "traffic-parse"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(parse["status"], "warn", "{week}");
    assert!(
        parse["details"][0]
            .as_str()
            .unwrap_or("")
            .contains("broken.jsonl:301"),
        "{parse}"
    );

    // A version registered without an evaluation: say how to register one.
    let registered = step.run(&[
        "register",
        "--model-dir",
        "model",
        "--name",
        "bare",
        "--alias",
        "production",
    ]);
    assert_eq!(registered.code, 0, "{}", registered.transcript());
    let bare = step.run(&[
        "monitor",
        "--model",
        "bare@production",
        "--endpoint",
        &endpoint,
        "--publish",
        "summary",
    ]);
    assert_eq!(bare.code, 2, "{}", bare.transcript());
    assert!(
        bare.stderr.contains("--eval-results"),
        "{}",
        bare.transcript()
    );

    // An alias that does not exist is an error before anything runs.
    let missing = step.run(&["monitor", "--model", "tiny@staging"]);
    assert_eq!(missing.code, 2, "{}", missing.transcript());
    assert!(
        missing.stderr.contains("staging"),
        "{}",
        missing.transcript()
    );
}

#[test]
fn rules_pass_promtool_and_the_dashboard_is_grafana_json() {
    let step = Step::local();
    let rendered = step.run(&[
        "monitor",
        "rules",
        "--model",
        "tiny",
        "--metrics",
        "vllm",
        "--selector",
        "model_name=\"tiny\"",
        "--slo",
        "latency-p95=2s",
        "--slo",
        "tokens-per-second=5",
        "--out",
        "rules",
    ]);
    assert_eq!(rendered.code, 0, "{}", rendered.transcript());
    let dashboard: Value =
        serde_json::from_str(&step.read("rules/grafana-dashboard.json")).expect("JSON");
    assert_eq!(dashboard["schemaVersion"], 39);
    assert!(
        dashboard["panels"]
            .as_array()
            .is_some_and(|panels| panels.len() >= 7)
    );
    let rules = step.read("rules/gantry-monitor.rules.yml");
    assert!(
        rules.contains("GantryTokensPerSecond") && rules.contains("< 5"),
        "{rules}"
    );
    let Some(promtool) = gantry_test::require_tool("promtool") else {
        return;
    };
    let checked = Command::new(promtool)
        .args(["check", "rules"])
        .arg(step.path("rules/gantry-monitor.rules.yml"))
        .output()
        .expect("promtool");
    assert!(
        checked.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let output = String::from_utf8_lossy(&checked.stdout);
    assert!(output.contains("SUCCESS: 4 rules found"), "{output}");
}
