//! `gantry train` running tiny-lm: kills, cancels, corrupt checkpoints,
//! GPU contention on a fake two-GPU host, MLflow tracking, bad input.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Step, github_outputs, sha256, tiny_lm};

const STEPS: &str = "60";
const CHECKPOINT_EVERY: &str = "10";

/// tiny-lm's data and the weights of an uninterrupted run, made once.
struct Reference {
    _directory: tempfile::TempDir,
    data: PathBuf,
    weights_sha256: String,
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let directory = tempfile::tempdir().expect("tempdir");
        let data = directory.path().join("data");
        let status = Command::new(tiny_lm())
            .args(["gen-data", "--train-records", "2000", "--out"])
            .arg(&data)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("tiny-lm gen-data");
        assert!(status.success());
        let output = directory.path().join("model");
        let status = Command::new(tiny_lm())
            .args([
                "train",
                "--steps",
                STEPS,
                "--checkpoint-every",
                CHECKPOINT_EVERY,
            ])
            .arg("--data")
            .arg(data.join("train.jsonl"))
            .arg("--output-dir")
            .arg(&output)
            .arg("--checkpoint-dir")
            .arg(directory.path().join("checkpoints"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("tiny-lm train");
        assert!(status.success());
        let weights_sha256 = sha256(&output.join("model.safetensors"));
        Reference {
            _directory: directory,
            data,
            weights_sha256,
        }
    })
}

/// `gantry train` arguments that train tiny-lm like the reference run.
fn train_args(extra: &[&str]) -> Vec<String> {
    let data = reference().data.join("train.jsonl");
    let mut args: Vec<String> = ["train", "--gpus", "none"]
        .iter()
        .chain(extra)
        .map(|arg| (*arg).to_owned())
        .collect();
    args.push("--".to_owned());
    args.push(tiny_lm().display().to_string());
    args.extend(
        [
            "train",
            "--steps",
            STEPS,
            "--checkpoint-every",
            CHECKPOINT_EVERY,
            "--data",
        ]
        .iter()
        .map(|arg| (*arg).to_owned()),
    );
    args.push(data.display().to_string());
    args
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn record(step: &Step, run_dir: &str) -> Value {
    let text = step.read(&format!("{run_dir}/run.json"));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("run.json: {error}: {text}"))
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pids whose parent is `parent` (from /proc).
fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces and parentheses.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|ppid| ppid.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

fn finish(child: std::process::Child) -> (i32, String) {
    let output = child.wait_with_output().expect("wait for gantry");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_killed_trainer_resumes_from_its_newest_good_checkpoint_with_the_same_weights() {
    let reference = reference();
    let step = Step::local();
    let args = train_args(&["--max-restarts", "2", "--restart-backoff", "1s"]);
    let gantry = step.spawn(&as_strs(&args));
    let checkpoints = step.path(".gantry/train/checkpoints");
    wait_for("checkpoint-30", Duration::from_secs(300), || {
        checkpoints.join("checkpoint-30").is_dir()
    });
    let trainers = children_of(gantry.id());
    assert_eq!(trainers.len(), 1, "one trainer: {trainers:?}");
    signal(trainers[0], "KILL");
    // The newest checkpoint is damaged before gantry looks (after its
    // one-second backoff): the restart must fall back to checkpoint-20.
    let weights = checkpoints.join("checkpoint-30/model.safetensors");
    let bytes = std::fs::read(&weights).expect("checkpoint weights");
    std::fs::write(&weights, &bytes[..bytes.len() - 100]).expect("truncate");
    let (code, stderr) = finish(gantry);
    assert_eq!(code, 0, "{stderr}");

    let run = record(&step, ".gantry/train");
    assert_eq!(run["status"], "succeeded");
    let attempts = run["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{run:#}");
    assert_eq!(attempts[0]["outcome"], "failed");
    assert_eq!(attempts[0]["signal"], "SIGKILL");
    assert!(
        attempts[1]["resumed_from"]
            .as_str()
            .is_some_and(|path| path.ends_with("checkpoint-20")),
        "{run:#}"
    );
    let warnings = run["warnings"].to_string();
    assert!(
        warnings.contains("passing over checkpoint") && warnings.contains("checkpoint-30"),
        "{warnings}"
    );
    assert!(stderr.contains("passing over checkpoint"), "{stderr}");
    let weights = sha256(&step.path(".gantry/train/output/model.safetensors"));
    assert_eq!(weights, reference.weights_sha256, "resumed weights differ");
    let output = run["outputs"]
        .as_array()
        .and_then(|outputs| {
            outputs
                .iter()
                .find(|output| output["path"] == "model.safetensors")
        })
        .expect("model.safetensors in outputs");
    assert_eq!(output["sha256"], reference.weights_sha256);
    // The metrics of the abandoned steps 21-30 were replaced by the resumed ones.
    assert_eq!(run["metrics"]["final"]["loss"]["step"], 60);
    assert!(
        std::fs::read_to_string(step.path(".gantry/train/metrics.svg"))
            .expect("metrics.svg")
            .starts_with("<svg")
    );
}

#[test]
fn a_cancelled_job_checkpoints_and_the_next_job_resumes_it() {
    let reference = reference();
    let step = Step::github();
    let args = train_args(&["--grace-period", "60s"]);
    let gantry = step.spawn(&as_strs(&args));
    let checkpoints = step.path(".gantry/train/checkpoints");
    wait_for("checkpoint-20", Duration::from_secs(300), || {
        checkpoints.join("checkpoint-20").is_dir()
    });
    signal(gantry.id(), "TERM");
    let (code, stderr) = finish(gantry);
    assert_eq!(code, 1, "a cancelled run is not a pass: {stderr}");
    let run = record(&step, ".gantry/train");
    assert_eq!(run["status"], "cancelled", "{run:#}");
    let attempt = &run["attempts"][0];
    assert_eq!(attempt["outcome"], "cancelled");
    assert_eq!(
        attempt["exit_code"], 143,
        "tiny-lm checkpoints and exits 143"
    );
    assert!(
        attempt["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("within the grace period")),
        "{attempt}"
    );
    let outputs = github_outputs(&step.read("github_output"));
    assert_eq!(outputs["status"], "cancelled");
    let last = outputs["checkpoint"].clone();
    assert!(
        step.path(&last).join("trainer_state.json").is_file(),
        "{last}"
    );

    // A re-run of the job on the same runner picks the run up where it stopped.
    let again = step.run(&as_strs(&train_args(&[])));
    assert_eq!(again.code, 0, "{}", again.transcript());
    let run = record(&step, ".gantry/train");
    assert_eq!(run["attempts"][0]["resumed_from"], last.as_str());
    assert_eq!(
        sha256(&step.path(".gantry/train/output/model.safetensors")),
        reference.weights_sha256
    );
    let summary = step.read("step_summary");
    assert!(
        summary.contains("| attempt |") && summary.contains("`loss`"),
        "{summary}"
    );
    assert!(summary.contains('▁'), "a sparkline: {summary}");
}

#[test]
fn a_trainer_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let step = Step::local();
    let started = Instant::now();
    let outcome = step.run(&[
        "train",
        "--gpus",
        "none",
        "--timeout",
        "1s",
        "--grace-period",
        "1s",
        "--shell",
        "--command",
        "trap '' TERM; sleep 60",
    ]);
    assert_eq!(outcome.code, 1, "{}", outcome.transcript());
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "sleep 60 was not killed"
    );
    let run = record(&step, ".gantry/train");
    assert_eq!(run["status"], "timed_out");
    assert_eq!(run["attempts"][0]["outcome"], "timed_out");
    assert_eq!(run["attempts"][0]["signal"], "SIGKILL");
    assert!(
        run["attempts"][0]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("killed after the grace period")),
        "{run:#}"
    );
    assert!(
        outcome
            .stderr
            .contains("did not stop within the grace period")
    );
}

/// A fake `nvidia-smi` reporting two idle H100s, first on PATH.
fn two_gpu_host(step: &mut Step) {
    let bin = step.path("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let script = r#"#!/bin/sh
case "$1" in
  --query-gpu=*)
    echo "0, GPU-aaaaaaaa-0000-0000-0000-000000000000, NVIDIA H100 80GB HBM3, 81559, 2, 550.54.15"
    echo "1, GPU-bbbbbbbb-1111-1111-1111-111111111111, NVIDIA H100 80GB HBM3, 81559, 2, 550.54.15" ;;
  --query-compute-apps=*) ;;
  *) echo "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4 |" ;;
esac
"#;
    let path = bin.join("nvidia-smi");
    std::fs::write(&path, script).expect("fake nvidia-smi");
    let status = Command::new("chmod")
        .arg("+x")
        .arg(&path)
        .status()
        .expect("chmod");
    assert!(status.success());
    let search = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    step.set("PATH", &search);
}

#[test]
fn jobs_on_a_two_gpu_host_never_share_a_gpu_and_a_waiting_job_starts_when_one_frees() {
    let mut step = Step::local();
    two_gpu_host(&mut step);
    let locks = step.path("locks");
    let log = step.path("gpu.log");
    let command = format!(
        "echo \"$CUDA_VISIBLE_DEVICES start $(date +%s%N)\" >> {log}; sleep 1; echo \"$CUDA_VISIBLE_DEVICES end $(date +%s%N)\" >> {log}",
        log = log.display()
    );
    let jobs: Vec<std::process::Child> = (0..3)
        .map(|job| {
            step.spawn(&[
                "train",
                "--gpus",
                "1",
                "--wait-for-gpus",
                "2m",
                "--lock-dir",
                locks.to_str().expect("utf8"),
                "--run-dir",
                &format!("run-{job}"),
                "--shell",
                "--command",
                &command,
            ])
        })
        .collect();
    for job in jobs {
        let (code, stderr) = finish(job);
        assert_eq!(code, 0, "{stderr}");
    }
    let text = std::fs::read_to_string(&log).expect("gpu.log");
    let mut spans: std::collections::BTreeMap<String, Vec<(u128, u128)>> = Default::default();
    let mut open: std::collections::BTreeMap<String, u128> = Default::default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [gpu, event, time] = fields.as_slice() else {
            panic!("odd line {line:?}");
        };
        let time: u128 = time.parse().expect("nanoseconds");
        if *event == "start" {
            assert!(
                open.insert((*gpu).to_owned(), time).is_none(),
                "two jobs on {gpu}: {text}"
            );
        } else {
            let start = open.remove(*gpu).expect("end without start");
            spans
                .entry((*gpu).to_owned())
                .or_default()
                .push((start, time));
        }
    }
    assert_eq!(spans.values().map(Vec::len).sum::<usize>(), 3, "{text}");
    assert!(
        spans.keys().all(|gpu| gpu.starts_with("GPU-")),
        "UUIDs: {text}"
    );
    // Two GPUs, three jobs: one job waited for another to finish.
    let all: Vec<(u128, u128)> = spans.values().flatten().copied().collect();
    assert!(
        all.iter()
            .any(|(start, _)| all.iter().any(|(_, end)| end < start)),
        "no job waited: {text}"
    );
    let run = record(&step, "run-0");
    assert_eq!(run["environment"]["gpus"].as_array().map(Vec::len), Some(1));
    assert_eq!(run["environment"]["cuda_version"], "12.4");
    assert_eq!(run["environment"]["driver_version"], "550.54.15");
}

#[test]
fn killing_gantry_frees_its_gpus_at_once() {
    let mut step = Step::local();
    two_gpu_host(&mut step);
    let locks = step.path("locks");
    let pid_file = step.path("sleeper.pid");
    let holder = step.spawn(&[
        "train",
        "--gpus",
        "all",
        "--lock-dir",
        locks.to_str().expect("utf8"),
        "--run-dir",
        "first",
        "--shell",
        "--command",
        &format!("echo $$ > {}; exec sleep 60", pid_file.display()),
    ]);
    wait_for("the trainer", Duration::from_secs(60), || {
        std::fs::read_to_string(&pid_file).is_ok_and(|pid| pid.ends_with('\n'))
    });
    let busy = step.run(&[
        "train",
        "--gpus",
        "1",
        "--lock-dir",
        locks.to_str().expect("utf8"),
        "--run-dir",
        "second",
        "--command",
        "true",
    ]);
    assert_eq!(busy.code, 2, "{}", busy.transcript());
    assert!(
        busy.stderr.contains("pass --wait-for-gpus"),
        "{}",
        busy.stderr
    );
    // A job waiting for GPUs that is cancelled simply ends.
    let mut waiter = step.spawn(&[
        "train",
        "--gpus",
        "1",
        "--wait-for-gpus",
        "10m",
        "--lock-dir",
        locks.to_str().expect("utf8"),
        "--run-dir",
        "waiting",
        "--command",
        "true",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    signal(waiter.id(), "TERM");
    wait_for("the waiting job to end", Duration::from_secs(60), || {
        waiter.try_wait().is_ok_and(|status| status.is_some())
    });
    assert!(!step.path("waiting/run.json").exists());
    signal(holder.id(), "KILL");
    let after = step.run(&[
        "train",
        "--gpus",
        "2",
        "--lock-dir",
        locks.to_str().expect("utf8"),
        "--run-dir",
        "third",
        "--command",
        "true",
    ]);
    // The orphaned sleeper holds gantry's stderr open: it goes first.
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = Command::new("kill").args(["-KILL", pid.trim()]).status();
    }
    let _ = finish(holder);
    assert_eq!(after.code, 0, "{}", after.transcript());
    let run = record(&step, "third");
    assert_eq!(run["environment"]["gpus"].as_array().map(Vec::len), Some(2));
}

#[test]
fn metrics_problems_are_warnings_with_file_and_line() {
    let step = Step::local();
    let script = r#"
printf '{"step":1,"loss":2.0}\nnot json\n{"step":2,"loss":1.5,"accuracy":0.5}\n' >> "$GANTRY_METRICS_FILE"
echo weights > "$GANTRY_OUTPUT_DIR/model.bin"
"#;
    let outcome = step.run(&["train", "--gpus", "none", "--shell", "--command", script]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("metrics.jsonl:2: not JSON"),
        "{}",
        outcome.stderr
    );
    let run = record(&step, ".gantry/train");
    assert_eq!(run["metrics"]["lines"], 3);
    assert_eq!(run["metrics"]["malformed"], 1);
    assert_eq!(run["metrics"]["best"]["accuracy"]["value"], 0.5);
    assert!(
        outcome
            .stdout
            .contains(r#"final-metrics={"accuracy":0.5,"loss":1.5}"#),
        "{}",
        outcome.stdout
    );
    assert_eq!(run["outputs"][0]["path"], "model.bin");

    let silent = step.run(&[
        "train",
        "--gpus",
        "none",
        "--run-dir",
        "silent",
        "--command",
        "true",
    ]);
    assert_eq!(silent.code, 0, "{}", silent.transcript());
    assert!(
        silent.stderr.contains("wrote no metrics"),
        "{}",
        silent.stderr
    );
    assert!(silent.stderr.contains("left no files"), "{}", silent.stderr);
}

#[test]
fn bad_input_is_one_plain_error() {
    let mut step = Step::local();
    two_gpu_host(&mut step);
    step.write("a-file", "");
    let cases: &[(&[&str], &str)] = &[
        (&["train"], "no training command"),
        (&["train", "--command", "true", "--", "true"], "not both"),
        (
            &["train", "--command", "python 'train.py"],
            "unbalanced quotes",
        ),
        (
            &["train", "--gpus", "3", "--command", "true"],
            "--gpus 3: this host has 2 GPUs",
        ),
        (
            &["train", "--gpus", "two", "--command", "true"],
            "expected a count",
        ),
        (
            &[
                "train",
                "--checkpoint-dir",
                "a-file/checkpoints",
                "--command",
                "true",
            ],
            "--checkpoint-dir a-file/checkpoints: cannot create it",
        ),
        (
            &["train", "--timeout", "5 minutes", "--command", "true"],
            "expected a duration",
        ),
        (
            &["train", "--data-lock", "missing.lock", "--command", "true"],
            "--data-lock missing.lock",
        ),
        (
            &["train", "--tracking-uri", "./mlruns", "--command", "true"],
            "--tracking-uri",
        ),
        (
            &[
                "train",
                "--gpus",
                "none",
                "--command",
                "no-such-trainer --steps 3",
            ],
            "not a program on PATH",
        ),
    ];
    let cases: Vec<(&[&str], &str)> = cases.to_vec();
    for (args, expected) in cases {
        let outcome = step.run(args);
        assert_eq!(outcome.code, 2, "{args:?}: {}", outcome.transcript());
        assert!(
            outcome.stderr.contains(expected),
            "{args:?}: wanted {expected:?} in {}",
            outcome.stderr
        );
        assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
    }
    // A runner without Slurm's commands.
    let bin = step.path("bin");
    step.set("PATH", bin.to_str().expect("utf8"));
    let outcome = step.run(&["train", "--backend", "slurm", "--command", "true"]);
    assert_eq!(outcome.code, 2, "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("sbatch is not on PATH"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn runs_are_tracked_in_mlflow() {
    let Some(server) = gantry_test::MlflowServer::start() else {
        return;
    };
    let step = Step::github();
    let lock = step.write(
        "data.lock",
        &format!(
            r#"{{"version":1,"dataset_digest":"{}"}}"#,
            gantry_core::Digest::of_bytes(b"dataset")
        ),
    );
    let args = train_args(&[
        "--tracking-uri",
        &server.url,
        "--experiment",
        "tiny",
        "--param",
        "learning_rate=0.003",
        "--data-lock",
        lock.to_str().expect("utf8"),
    ]);
    let outcome = step.run(&as_strs(&args));
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    let run = record(&step, ".gantry/train");
    let tracking = &run["tracking"];
    assert_eq!(tracking["synced"], true, "{run:#}");
    let run_id = tracking["run_id"].as_str().expect("MLflow run id");

    let client = reqwest::blocking::Client::new();
    let api = |path: &str| -> Value {
        client
            .get(format!("{}/api/2.0/mlflow/{path}", server.url))
            .send()
            .and_then(reqwest::blocking::Response::json)
            .unwrap_or_else(|error| panic!("{path}: {error}"))
    };
    let got = api(&format!("runs/get?run_id={run_id}"));
    let info = &got["run"]["info"];
    assert_eq!(info["status"], "FINISHED");
    assert_eq!(info["run_name"], run["run_id"]);
    let pairs = |list: &Value| -> std::collections::BTreeMap<String, String> {
        list.as_array()
            .into_iter()
            .flatten()
            .map(|pair| {
                (
                    pair["key"].as_str().unwrap_or_default().to_owned(),
                    pair["value"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    let params = pairs(&got["run"]["data"]["params"]);
    assert_eq!(params["learning_rate"], "0.003");
    assert_eq!(params["gantry.max_restarts"], "3");
    let tags = pairs(&got["run"]["data"]["tags"]);
    assert_eq!(
        tags["mlflow.source.git.commit"],
        "0000000000000000000000000000000000000merge"
    );
    assert_eq!(
        tags["gantry.data.dataset_digest"],
        run["data"]["dataset_digest"].as_str().expect("digest")
    );
    assert_eq!(tags["gantry.status"], "succeeded");
    let history = api(&format!(
        "metrics/get-history?run_id={run_id}&metric_key=loss&max_results=1000"
    ));
    let steps: Vec<u64> = history["metrics"]
        .as_array()
        .expect("loss history")
        .iter()
        .filter_map(|metric| metric["step"].as_u64())
        .collect();
    assert_eq!(steps.len(), 60, "{history}");
    assert_eq!(steps.iter().max(), Some(&60));
    let experiment = info["experiment_id"].as_str().expect("experiment");
    let uploaded: Value = client
        .get(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run_id}/artifacts/run.json",
            server.url
        ))
        .send()
        .and_then(reqwest::blocking::Response::json)
        .expect("run.json artifact");
    assert_eq!(uploaded["run_id"], run["run_id"]);
    assert_eq!(uploaded["outputs"], run["outputs"]);
    let summary = step.read("step_summary");
    assert!(summary.contains("Tracked in MLflow"), "{summary}");

    // The server unreachable for the first twelve connections (every try of
    // the run's start and of the first end-of-run rounds): the run still
    // ends up on the server, complete, after retries at the end.
    let proxy = gantry_test::DroppingProxy::start(server.url.trim_start_matches("http://"), 0, 12);
    let mut flaky = Step::local();
    flaky.set("GANTRY_HTTP_BACKOFF_MS", "1");
    let outcome = flaky.run(&[
        "train",
        "--gpus",
        "none",
        "--tracking-uri",
        &format!("http://{}", proxy.address),
        "--shell",
        "--command",
        r#"printf '{"step":1,"loss":2}\n{"step":2,"loss":1}\n' >> "$GANTRY_METRICS_FILE""#,
    ]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    let run = record(&flaky, ".gantry/train");
    let tracking = &run["tracking"];
    assert_eq!(tracking["synced"], true, "{tracking}");
    assert!(
        tracking["retries"]
            .as_u64()
            .is_some_and(|retries| retries >= 1),
        "{tracking}"
    );
    let run_id = tracking["run_id"].as_str().expect("run id");
    let history = api(&format!(
        "metrics/get-history?run_id={run_id}&metric_key=loss"
    ));
    assert_eq!(
        history["metrics"].as_array().map(Vec::len),
        Some(2),
        "{history}"
    );
}

#[test]
fn a_tracking_server_that_is_down_does_not_stop_the_run() {
    let mut step = Step::local();
    step.set("GANTRY_HTTP_BACKOFF_MS", "1");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let outcome = step.run(&[
        "train",
        "--gpus",
        "none",
        "--tracking-uri",
        &format!("http://127.0.0.1:{port}"),
        "--shell",
        "--command",
        r#"echo '{"step":1,"loss":1}' >> "$GANTRY_METRICS_FILE"; echo w > "$GANTRY_OUTPUT_DIR/w.bin""#,
    ]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    let run = record(&step, ".gantry/train");
    assert_eq!(run["status"], "succeeded");
    let tracking = &run["tracking"];
    assert_eq!(tracking["synced"], false);
    assert_eq!(tracking["retries"], 4);
    assert!(
        tracking["error"]
            .as_str()
            .is_some_and(|error| error.contains(&format!("127.0.0.1:{port}"))),
        "{tracking}"
    );
    assert!(
        outcome.stderr.contains("does not have all of the run"),
        "{}",
        outcome.stderr
    );
}

/// The Slurm job id of attempt `number`, from its output file's name.
fn slurm_job(step: &Step, run_dir: &str, number: u32) -> Option<String> {
    let prefix = format!("attempt-{number}-");
    std::fs::read_dir(step.path(&format!("{run_dir}/slurm")))
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_prefix(&prefix)?
                .strip_suffix(".log")
                .map(str::to_owned)
        })
        .next()
}

#[test]
fn slurm_runs_resubmits_a_requeued_job_and_cancels() {
    let _one_cluster = crate::support::SLURM
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(cluster) = gantry_test::SlurmCluster::start() else {
        return;
    };
    let reference = reference();
    let mut step = Step::local();
    step.set("SLURM_CONF", cluster.conf.to_str().expect("utf8"));

    // Slurm requeues the job mid-run (as preemption would): gantry cancels
    // the requeued job and submits the next attempt from the checkpoint.
    let args = train_args(&[
        "--backend",
        "slurm",
        "--run-dir",
        "requeued",
        "--restart-backoff",
        "1s",
    ]);
    let gantry = step.spawn(&as_strs(&args));
    wait_for("checkpoint-20", Duration::from_secs(300), || {
        step.path("requeued/checkpoints/checkpoint-20").is_dir()
    });
    let job = slurm_job(&step, "requeued", 1).expect("attempt 1's job");
    cluster.scontrol(&["requeue", &job]);
    let (code, stderr) = finish(gantry);
    assert_eq!(code, 0, "{stderr}");
    let run = record(&step, "requeued");
    assert_eq!(run["backend"], "slurm");
    let attempts = run["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{run:#}");
    assert_eq!(attempts[0]["outcome"], "preempted");
    assert_eq!(attempts[0]["job_id"], job.as_str());
    assert_eq!(attempts[0]["scheduler_state"], "REQUEUED");
    assert_ne!(attempts[1]["job_id"], job.as_str(), "a job of its own");
    assert_eq!(attempts[1]["scheduler_state"], "COMPLETED");
    assert!(
        attempts[1]["resumed_from"]
            .as_str()
            .is_some_and(|path| path.contains("checkpoint-")),
        "{run:#}"
    );
    assert_eq!(
        sha256(&step.path("requeued/output/model.safetensors")),
        reference.weights_sha256
    );

    // Cancelling the CI job reaches the trainer through scancel.
    let args = train_args(&["--backend", "slurm", "--run-dir", "cancelled"]);
    let gantry = step.spawn(&as_strs(&args));
    wait_for("checkpoint-10", Duration::from_secs(300), || {
        step.path("cancelled/checkpoints/checkpoint-10").is_dir()
    });
    signal(gantry.id(), "TERM");
    let (code, stderr) = finish(gantry);
    assert_eq!(code, 1, "{stderr}");
    let run = record(&step, "cancelled");
    assert_eq!(run["status"], "cancelled", "{run:#}");
    assert_eq!(run["attempts"][0]["outcome"], "cancelled");
    assert_eq!(run["attempts"][0]["exit_code"], 143, "{run:#}");
    let job = run["attempts"][0]["job_id"].as_str().expect("job id");
    let state = cluster.scontrol(&["show", "job", "-o", job]);
    assert!(state.contains("JobState=FAILED"), "{state}");

    // What torchrun needs, and the job's output in the CI log.
    let outcome = step.run(&[
        "train",
        "--backend",
        "slurm",
        "--run-dir",
        "env",
        "--shell",
        "--command",
        r#"echo "rendezvous $MASTER_ADDR:$MASTER_PORT nodes=$NNODES rank=$NODE_RANK""#,
    ]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    let host = String::from_utf8(Command::new("hostname").output().expect("hostname").stdout)
        .expect("utf8");
    assert!(
        outcome
            .stdout
            .contains(&format!("rendezvous {}:29500 nodes=1 rank=0", host.trim())),
        "{}",
        outcome.transcript()
    );

    let refused = step.run(&[
        "train",
        "--backend",
        "slurm",
        "--partition",
        "no-such-partition",
        "--command",
        "true",
    ]);
    assert_eq!(refused.code, 2, "{}", refused.transcript());
    assert!(
        refused.stderr.contains("sbatch refused the job"),
        "{}",
        refused.stderr
    );
}

#[test]
fn kubernetes_manifests_are_rendered_checked_and_never_run() {
    let step = Step::github();
    let outcome = step.run(&[
        "train",
        "--backend",
        "kubernetes",
        "--dry-run",
        "--container-image",
        "ghcr.io/org/trainer:1.2",
        "--gpus-per-node",
        "8",
        "--volume-claim",
        "runs",
        "--timeout",
        "2h",
        "--run-id",
        "nightly-7",
        "--command",
        "touch ran; python train.py --epochs 3",
        "--shell",
    ]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    assert!(!step.path("ran").exists(), "a dry run runs nothing");
    let outputs = github_outputs(&step.read("github_output"));
    assert_eq!(outputs["status"], "rendered");
    let manifest: Value = serde_norway::from_str(&step.read(&outputs["manifest"])).expect("YAML");
    assert_eq!(manifest["kind"], "Job");
    assert_eq!(manifest["metadata"]["name"], "gantry-train-nightly-7");
    assert_eq!(manifest["spec"]["activeDeadlineSeconds"], 7200);
    let container = &manifest["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], "8");
    let command: Vec<&str> = container["command"]
        .as_array()
        .expect("command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        &command[command.len() - 3..],
        ["sh", "-c", "touch ran; python train.py --epochs 3"]
    );
    let env: Vec<&str> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|item| item["name"].as_str())
        .collect();
    assert!(env.contains(&"GANTRY_CHECKPOINT_DIR") && env.contains(&"GANTRY_METRICS_FILE"));
    assert!(step.read("step_summary").contains("```yaml"));

    let several = step.run(&[
        "train",
        "--kubernetes-manifest",
        "pytorchjob.yaml",
        "--container-image",
        "trainer:1",
        "--nodes",
        "4",
        "--",
        "torchrun",
        "train.py",
    ]);
    assert_eq!(several.code, 0, "{}", several.transcript());
    let manifest: Value = serde_norway::from_str(&step.read("pytorchjob.yaml")).expect("YAML");
    assert_eq!(manifest["kind"], "PyTorchJob");
    assert_eq!(
        manifest["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"],
        3
    );

    let template = step.write(
        "job.yaml.j2",
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ name | tojson }}\nspec:\n  backofLimit: 3\n  template:\n    spec:\n      containers: []\n",
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "train",
                "--backend",
                "kubernetes",
                "--container-image",
                "x",
                "--command",
                "true",
            ],
            "add --dry-run",
        ),
        (
            &[
                "train",
                "--backend",
                "kubernetes",
                "--dry-run",
                "--command",
                "true",
            ],
            "needs --container-image",
        ),
        (
            &[
                "train",
                "--backend",
                "kubernetes",
                "--dry-run",
                "--container-image",
                "x",
                "--kubernetes-template",
                template.to_str().expect("utf8"),
                "--command",
                "true",
            ],
            ".spec.backofLimit",
        ),
    ];
    for (args, expected) in cases {
        let outcome = step.run(args);
        assert_eq!(outcome.code, 2, "{args:?}: {}", outcome.transcript());
        assert!(
            outcome.stderr.contains(expected),
            "{args:?}: {}",
            outcome.stderr
        );
    }
}

#[test]
fn resume_works_with_every_common_checkpoint_layout() {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/tools/layout_trainer.py");
    let script = script.to_str().expect("utf8");
    for layout in ["hf", "dir", "lightning", "deepspeed", "dcp"] {
        // Named explicitly, and found by auto.
        for flag in [layout, "auto"] {
            let step = Step::local();
            let outcome = step.run(&[
                "train",
                "--gpus",
                "none",
                "--max-restarts",
                "1",
                "--restart-backoff",
                "0s",
                "--checkpoint-layout",
                flag,
                "--",
                "python3",
                script,
                layout,
            ]);
            assert_eq!(
                outcome.code,
                0,
                "{layout} as {flag}: {}",
                outcome.transcript()
            );
            let run = record(&step, ".gantry/train");
            let attempts = run["attempts"].as_array().expect("attempts");
            assert_eq!(attempts.len(), 2, "{layout} as {flag}: {run:#}");
            let resumed = attempts[1]["resumed_from"].as_str().expect("resumed");
            assert!(
                resumed.ends_with(match layout {
                    "hf" | "dir" => "checkpoint-2",
                    "lightning" => "last.ckpt",
                    "deepspeed" => "global_step2",
                    _ => "step-2",
                }),
                "{layout} as {flag}: resumed from {resumed}"
            );
            // The half-written step 3 was passed over, and said so (a
            // plain directory's is under a temporary name, and Lightning's
            // last.ckpt is the newest by definition: neither is looked at).
            if matches!(layout, "hf" | "deepspeed" | "dcp") {
                assert!(
                    outcome.stderr.contains("passing over checkpoint"),
                    "{layout} as {flag}: {}",
                    outcome.transcript()
                );
            }
            let checkpoints = run["checkpoints"].as_array().expect("checkpoints");
            assert!(
                checkpoints
                    .iter()
                    .all(|checkpoint| checkpoint["layout"] == layout),
                "{layout} as {flag}: {checkpoints:?}"
            );
            assert!(
                checkpoints.len() >= 3,
                "{layout} as {flag}: {checkpoints:?}"
            );
        }
    }
}

#[test]
fn a_marker_file_marks_complete_plain_checkpoints() {
    let step = Step::local();
    let script = r#"
if [ "$GANTRY_ATTEMPT" = 1 ]; then
  mkdir -p "$GANTRY_CHECKPOINT_DIR/checkpoint-1" "$GANTRY_CHECKPOINT_DIR/checkpoint-2"
  touch "$GANTRY_CHECKPOINT_DIR/checkpoint-1/COMPLETE"
  exit 1
fi
echo "$GANTRY_RESUME_FROM" > "$GANTRY_OUTPUT_DIR/resumed-from"
"#;
    let outcome = step.run(&[
        "train",
        "--gpus",
        "none",
        "--max-restarts",
        "1",
        "--restart-backoff",
        "0s",
        "--checkpoint-layout",
        "dir",
        "--checkpoint-marker",
        "COMPLETE",
        "--shell",
        "--command",
        script,
    ]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    let resumed = step.read(".gantry/train/output/resumed-from");
    assert!(resumed.trim().ends_with("checkpoint-1"), "{resumed}");
    assert!(
        outcome.stderr.contains("no COMPLETE: half-written"),
        "{}",
        outcome.transcript()
    );
    let wrong = step.run(&[
        "train",
        "--gpus",
        "none",
        "--checkpoint-layout",
        "lightning",
        "--checkpoint-marker",
        "COMPLETE",
        "--command",
        "true",
    ]);
    assert_eq!(wrong.code, 2, "{}", wrong.transcript());
    assert!(
        wrong.stderr.contains("--checkpoint-marker"),
        "{}",
        wrong.transcript()
    );
}
