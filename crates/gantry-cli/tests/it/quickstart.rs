//! `gantry quickstart`: the whole documented workflow on the bundled tiny-lm,
//! and the chain of files it leaves behind.

use std::path::Path;

use serde_json::Value;

use crate::support::{Step, sha256};

fn read_json(dir: &Path, path: &str) -> Value {
    let text =
        std::fs::read_to_string(dir.join(path)).unwrap_or_else(|error| panic!("{path}: {error}"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{path}: {error}"))
}

#[test]
fn the_quickstart_runs_every_stage_and_its_artifacts_chain() {
    let step = Step::local();
    let outcome = step.run(&[
        "--format",
        "json",
        "quickstart",
        "--dir",
        "qs",
        "--steps",
        "150",
        "--step-duration",
        "6s",
    ]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    let dir = step.path("qs");
    let record: Value = serde_json::from_str(&outcome.stdout).expect("one JSON document");
    assert_eq!(record, read_json(&dir, "quickstart.json"));

    // Every stage narrated, in order, with the command it ran.
    let mut at = 0;
    for stage in [
        "[1/12] data",
        "[2/12] validate-data",
        "[3/12] train baseline",
        "[4/12] eval baseline",
        "[5/12] register + deploy baseline",
        "[6/12] train candidate",
        "[7/12] eval candidate",
        "[8/12] eval-gate candidate",
        "[9/12] eval-gate worse candidate",
        "[10/12] register candidate",
        "[11/12] deploy-canary",
        "[12/12] promote",
    ] {
        let found = outcome.stderr[at..]
            .find(stage)
            .unwrap_or_else(|| panic!("{stage} missing or out of order:\n{}", outcome.stderr));
        at += found;
    }
    assert!(
        outcome
            .stderr
            .contains("$ gantry eval-gate --ci local --baseline registry:tiny@production"),
        "{}",
        outcome.stderr
    );

    // validate-data: the data lock, drift measured against last week's summary.
    let report = read_json(&dir, ".gantry/validate-data/v2/report.json");
    assert_ne!(report["verdict"], "fail", "{report:#}");
    let lock = read_json(&dir, ".gantry/validate-data/v2/data.lock");
    let dataset_digest = lock["dataset_digest"].as_str().expect("dataset digest");
    assert_eq!(record["data"]["dataset_digest"], dataset_digest);
    assert_eq!(record["data"]["drift"], "pass", "{record:#}");

    // train: one crash, one resume from a checkpoint, on the locked data.
    let run = read_json(&dir, ".gantry/train/candidate/run.json");
    assert_eq!(run["status"], "succeeded", "{run:#}");
    let attempts = run["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{run:#}");
    assert_eq!(attempts[0]["outcome"], "failed", "{run:#}");
    assert!(
        attempts[1]["resumed_from"]
            .as_str()
            .is_some_and(|from| from.ends_with("checkpoint-50")),
        "{run:#}"
    );
    assert_eq!(run["data"]["dataset_digest"], dataset_digest, "{run:#}");

    // eval-gate: the candidate passes, the worse one fails.
    let gate = read_json(&dir, ".gantry/eval-gate/candidate/gate.json");
    assert!(
        gate["verdict"] == "pass" || gate["verdict"] == "warn",
        "{gate:#}"
    );
    assert_eq!(
        gate["baseline"]["registered"]["version"], "1.0.0",
        "{:#}",
        gate["baseline"]
    );
    let worse = read_json(&dir, ".gantry/eval-gate/worse/gate.json");
    assert_eq!(worse["verdict"], "fail");
    assert!(worse["regressions"].as_u64().is_some_and(|n| n > 0));
    assert!(outcome.stderr.contains("Δ (90% CI)"), "{}", outcome.stderr);

    // register: the manifest's lineage names exactly these files.
    let lineage = &record["model_candidate"]["lineage"];
    assert_eq!(lineage["data"]["dataset_digest"], dataset_digest);
    assert_eq!(
        lineage["data"]["document"]["digest"],
        sha256(&dir.join(".gantry/validate-data/v2/data.lock"))
    );
    assert_eq!(
        lineage["run"]["document"]["digest"],
        sha256(&dir.join(".gantry/train/candidate/run.json"))
    );
    assert_eq!(
        lineage["gate"]["document"]["digest"],
        sha256(&dir.join(".gantry/eval-gate/candidate/gate.json"))
    );
    assert_eq!(
        lineage["evaluation"]["digest"],
        sha256(&dir.join(".gantry/eval/candidate/results.jsonl"))
    );

    // deploy: promoted, the alias moved, all traffic on the candidate.
    assert_eq!(record["deploy"]["phase"], "promoted", "{record:#}");
    assert_eq!(record["deploy"]["production"], "1.1.0");
    assert_eq!(
        record["deploy"]["router_weights"],
        serde_json::json!({ "1.1.0": 100 })
    );
    let state = read_json(&dir, ".gantry/deploy/rollout.json");
    assert_eq!(
        state["canary"]["digest"], record["model_candidate"]["digest"],
        "{state:#}"
    );
    let in_dir = |args: &[&str]| {
        let mut all = vec!["--ci", "local"];
        all.extend(args);
        let mut command = assert_cmd::Command::cargo_bin("gantry").expect("gantry");
        let output = command
            .current_dir(&dir)
            .args(&all)
            .output()
            .expect("gantry");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, shown) = in_dir(&["--format", "json", "registry", "show", "tiny@production"]);
    assert_eq!(code, Some(0), "{shown}");
    let shown: Value = serde_json::from_str(&shown).expect("JSON");
    assert_eq!(shown["version"], "1.1.0");
    let (code, verified) = in_dir(&["registry", "verify", "tiny@production"]);
    assert_eq!(code, Some(0), "{verified}");

    // Nothing left running: the router and its model servers are gone.
    let router: Value = read_json(&dir, ".gantry/router/router.json");
    for backend in router["backends"].as_array().into_iter().flatten() {
        if let Some(pid) = backend["pid"].as_u64() {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|stat| stat.contains(") Z ")),
                "model server {pid} still runs"
            );
        }
    }
}

#[test]
fn the_quickstart_refuses_a_directory_with_something_in_it() {
    let step = Step::local();
    std::fs::create_dir(step.path("taken")).expect("mkdir");
    step.write("taken/notes.txt", "mine\n");
    let outcome = step.run(&["quickstart", "--dir", "taken"]);
    assert_eq!(outcome.code, 2, "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("--dir taken: not empty"),
        "{}",
        outcome.transcript()
    );
    assert_eq!(step.read("taken/notes.txt"), "mine\n");
    let outcome = step.run(&["quickstart", "--dir", "new", "--steps", "5"]);
    assert_eq!(outcome.code, 2, "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("--steps 5"),
        "{}",
        outcome.transcript()
    );
}

#[test]
fn the_bundled_example_is_tiny_lm() {
    let step = Step::local();
    let outcome = step.run(&["tiny-lm", "--help"]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    assert!(
        outcome.stdout.contains("gen-data"),
        "{}",
        outcome.transcript()
    );
    let outcome = step.run(&["tiny-lm", "gen-data", "--out", "data"]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    assert_eq!(step.read("data/train.jsonl").lines().count(), 1500);
    assert_eq!(step.read("data/eval.jsonl").lines().count(), 259);
    let outcome = step.run(&["tiny-lm", "train", "--steps", "0"]);
    assert_eq!(outcome.code, 2, "{}", outcome.transcript());
}

#[test]
fn a_cancelled_quickstart_stops_its_stage_its_router_and_its_model_servers() {
    let step = Step::local();
    let mut child = step.spawn(&["quickstart", "--dir", "qs", "--steps", "12"]);
    // Once the baseline serves behind the router, cancel during the next stage.
    let router = step.path("qs/.gantry/router/router.json");
    let serving = || -> Vec<u64> {
        std::fs::read_to_string(&router)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|state| {
                state["backends"].as_array().map(|backends| {
                    backends
                        .iter()
                        .filter_map(|backend| backend["pid"].as_u64())
                        .collect()
                })
            })
            .unwrap_or_default()
    };
    crate::support::wait_for(
        "the baseline behind the router",
        std::time::Duration::from_secs(300),
        || !serving().is_empty() && step.path("qs/.gantry/train/candidate").exists(),
    );
    let servers = serving();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let started = std::time::Instant::now();
    let output = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(90),
            "the quickstart did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(output.code(), Some(2));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(
        stderr.contains("stopped by a signal during stage"),
        "{stderr}"
    );
    let running = |pid: u64| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z "))
    };
    crate::support::wait_for(
        "the model servers to stop",
        std::time::Duration::from_secs(30),
        || servers.iter().all(|pid| !running(*pid)),
    );
}
