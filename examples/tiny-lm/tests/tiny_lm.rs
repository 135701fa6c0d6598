//! The tiny-lm binary end to end: data, training contract, evaluation, serving.
#![allow(clippy::unwrap_used, clippy::print_stderr, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

fn tiny_lm() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tiny-lm"));
    for var in [
        "GANTRY_SEED",
        "GANTRY_OUTPUT_DIR",
        "GANTRY_CHECKPOINT_DIR",
        "GANTRY_RESUME_FROM",
        "GANTRY_METRICS_FILE",
    ] {
        command.env_remove(var);
    }
    command
}

fn run_ok(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{:?} failed: {}\n{}",
        command,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap()
}

fn sha256(path: &Path) -> String {
    format!("{:x}", Sha256::digest(std::fs::read(path).unwrap()))
}

fn gen_data(dir: &Path, seed: u64, extra: &[&str]) -> Value {
    json_of(&run_ok(
        tiny_lm()
            .args(["gen-data", "--seed", &seed.to_string(), "--out"])
            .arg(dir)
            .args(extra),
    ))
}

/// Trains with the given extra flags into `dir/model` and `dir/checkpoints`.
fn train(data: &Path, dir: &Path, steps: u64, extra: &[&str]) -> Value {
    json_of(&run_ok(
        tiny_lm()
            .arg("train")
            .arg("--data")
            .arg(data.join("train.jsonl"))
            .arg("--validation")
            .arg(data.join("validation.jsonl"))
            .args(["--steps", &steps.to_string()])
            .arg("--output-dir")
            .arg(dir.join("model"))
            .arg("--checkpoint-dir")
            .arg(dir.join("checkpoints"))
            .arg("--metrics-file")
            .arg(dir.join("metrics.jsonl"))
            .args(extra),
    ))
}

fn metrics(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn gen_data_is_deterministic_and_plants_what_it_says() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let defects = [
        "--duplicates",
        "7",
        "--pii",
        "5",
        "--malformed",
        "4",
        "--contaminate",
        "3",
    ];
    let summary = gen_data(&a, 11, &defects);
    gen_data(&b, 11, &defects);
    gen_data(&c, 12, &defects);
    for file in ["train.jsonl", "validation.jsonl", "eval.jsonl"] {
        assert_eq!(
            sha256(&a.join(file)),
            sha256(&b.join(file)),
            "{file} differs between runs with one seed"
        );
    }
    assert_ne!(
        sha256(&a.join("train.jsonl")),
        sha256(&c.join("train.jsonl"))
    );
    // The world is fixed: the same facts are asked under every seed.
    let ids = |dir: &Path| -> Vec<String> {
        std::fs::read_to_string(dir.join("eval.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(ids(&a), ids(&c));
    assert_eq!(summary["eval"], 259);
    assert_eq!(summary["train"], 1500 + 7 + 5 + 4 + 3);

    // Check the planted defects with gantry's own validator: exact counts.
    let options = gantry_data::ValidateOptions {
        data: vec![a.join("train.jsonl").display().to_string()],
        format: None,
        tokenizer: "chars".to_owned(),
        max_tokens: None,
        previous_lock: None,
        eval_set: vec![a.join("eval.jsonl").display().to_string()],
        reference: None,
        schema: None,
        policy: gantry_data::Policy::default(),
        map_files: true,
    };
    let report = gantry_data::validate(&options).unwrap().report;
    let count = |id: &str| report.checks.iter().find(|c| c.id == id).unwrap().count;
    assert_eq!(count("parse"), 2, "truncated JSON lines");
    assert_eq!(count("schema"), 2, "unknown roles");
    assert_eq!(count("exact-duplicates"), 7);
    assert_eq!(
        count("pii"),
        5,
        "records with an email address and a phone number"
    );
    assert_eq!(count("contamination"), 3);
    assert_eq!(count("secrets"), 0);

    // Clean data passes: no duplicates, no contamination, nothing malformed.
    let clean = dir.path().join("clean");
    gen_data(&clean, 11, &[]);
    let options = gantry_data::ValidateOptions {
        data: vec![clean.join("train.jsonl").display().to_string()],
        eval_set: vec![clean.join("eval.jsonl").display().to_string()],
        ..options
    };
    let report = gantry_data::validate(&options).unwrap().report;
    for id in [
        "parse",
        "schema",
        "exact-duplicates",
        "near-duplicates",
        "pii",
        "contamination",
        "contamination-partial",
    ] {
        let check = report.checks.iter().find(|c| c.id == id).unwrap();
        assert_eq!(
            check.count,
            0,
            "{id} found something in clean data: {:?}",
            check.findings.first()
        );
    }
}

#[test]
fn training_follows_the_contract_and_a_worse_model_scores_lower() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    gen_data(&data, 3, &[]);
    let good = dir.path().join("good");
    let summary = train(&data, &good, 240, &["--checkpoint-every", "100"]);
    assert_eq!(summary["steps"], 240);

    // Loss goes down: the mean of the last 20 steps is far below the first 20.
    let lines = metrics(&good.join("metrics.jsonl"));
    assert_eq!(lines.len(), 240);
    let mean = |xs: &[Value]| {
        xs.iter().map(|l| l["loss"].as_f64().unwrap()).sum::<f64>() / xs.len() as f64
    };
    let (first, last) = (mean(&lines[..20]), mean(&lines[220..]));
    assert!(last < first * 0.5, "loss went from {first} to {last}");
    assert!(
        lines.iter().any(|l| l.get("val_loss").is_some()),
        "no validation loss recorded"
    );
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["step"], i as u64 + 1);
    }

    // Checkpoints: complete directories only, newest kept, safetensors with metadata.
    let checkpoints: Vec<String> = std::fs::read_dir(good.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut sorted = checkpoints.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["checkpoint-100", "checkpoint-200", "checkpoint-240"]
    );
    let checkpoint = good.join("checkpoints/checkpoint-200");
    for file in [
        "model.safetensors",
        "optimizer.safetensors",
        "config.json",
        "trainer_state.json",
    ] {
        assert!(
            checkpoint.join(file).is_file(),
            "{file} missing from the checkpoint"
        );
    }
    let weights = std::fs::read(good.join("model/model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&weights[8..8 + header_len]).unwrap();
    assert_eq!(header["__metadata__"]["step"], "240");
    assert_eq!(
        header["tok_emb.weight"]["shape"],
        serde_json::json!([256, 64])
    );
    assert_eq!(header["tok_emb.weight"]["dtype"], "F32");

    // The worse-model knob: every answer shuffled, same steps.
    let worse = dir.path().join("worse");
    train(&data, &worse, 240, &["--corrupt-fraction", "1.0"]);

    let eval = |model: &Path, out: &Path| -> Value {
        json_of(&run_ok(
            tiny_lm()
                .arg("eval")
                .arg("--model")
                .arg(model)
                .arg("--data")
                .arg(data.join("eval.jsonl"))
                .arg("--out")
                .arg(out.join("results.jsonl"))
                .arg("--lm-eval-dir")
                .arg(out.join("lm-eval")),
        ))
    };
    let good_scores = eval(&good.join("model"), &good);
    let worse_scores = eval(&worse.join("model"), &worse);
    let acc = |v: &Value| v["metrics"]["acc"].as_f64().unwrap();
    eprintln!(
        "acc: good {} worse {}",
        acc(&good_scores),
        acc(&worse_scores)
    );
    assert!(
        acc(&good_scores) > acc(&worse_scores) + 0.08,
        "good model {} vs corrupted-data model {}",
        acc(&good_scores),
        acc(&worse_scores)
    );

    // Native results: one line per item with id, prompt hash and scores.
    let results: Vec<Value> = std::fs::read_to_string(good.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(results.len(), 259);
    assert!(
        results[0]["prompt_hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    for metric in ["exact_match", "acc", "logprob"] {
        assert!(results[0]["scores"][metric].is_number(), "{metric} missing");
    }
    // lm-evaluation-harness shape: results_<ts>.json plus one samples file per task.
    let files: Vec<PathBuf> = std::fs::read_dir(good.join("lm-eval"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let results_json = files
        .iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("results_")
        })
        .unwrap();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(results_json).unwrap()).unwrap();
    let add = &doc["results"]["tiny_add"];
    assert!(add["acc,none"].is_number() && add["acc_stderr,none"].is_number());
    assert_eq!(doc["n-samples"]["tiny_add"]["effective"], 100);
    assert_eq!(doc["higher_is_better"]["tiny_add"]["acc"], true);
    let samples = files
        .iter()
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("samples_tiny_add_")
        })
        .unwrap();
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(samples)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["doc_id"], 0);
    assert_eq!(first["filtered_resps"].as_array().unwrap().len(), 4);
    assert_eq!(first["prompt_hash"].as_str().unwrap().len(), 64);
}

#[test]
fn resuming_after_sigterm_gives_bit_identical_weights() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    gen_data(&data, 5, &[]);
    let steps = 80;
    let straight = dir.path().join("straight");
    train(
        &data,
        &straight,
        steps,
        &["--batch-size", "8", "--checkpoint-every", "0"],
    );

    // The same run, stopped with SIGTERM part-way through; the contract's
    // environment variables instead of flags.
    let interrupted = dir.path().join("interrupted");
    std::fs::create_dir_all(&interrupted).unwrap();
    let metrics_file = interrupted.join("metrics.jsonl");
    let launch = |resume: Option<&Path>| -> Child {
        let mut command = tiny_lm();
        command
            .arg("train")
            .arg("--data")
            .arg(data.join("train.jsonl"))
            .arg("--validation")
            .arg(data.join("validation.jsonl"))
            .args([
                "--steps",
                &steps.to_string(),
                "--batch-size",
                "8",
                "--checkpoint-every",
                "0",
            ])
            .env("GANTRY_OUTPUT_DIR", interrupted.join("model"))
            .env("GANTRY_CHECKPOINT_DIR", interrupted.join("checkpoints"))
            .env("GANTRY_METRICS_FILE", &metrics_file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = resume {
            command.env("GANTRY_RESUME_FROM", path);
        }
        command.spawn().unwrap()
    };
    let mut child = launch(None);
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(&metrics_file).map_or(0, |t| t.lines().count()) < 10 {
        assert!(Instant::now() < deadline, "training never reached step 10");
        assert!(
            child.try_wait().unwrap().is_none(),
            "training finished before it could be interrupted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let signalled = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "took {:?} to stop after SIGTERM",
        signalled.elapsed()
    );
    assert_eq!(
        output.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stopped_at = metrics(&metrics_file).last().unwrap()["step"]
        .as_u64()
        .unwrap();
    assert!(
        stopped_at >= 10 && stopped_at < steps,
        "stopped at step {stopped_at}"
    );
    let checkpoint = interrupted.join(format!("checkpoints/checkpoint-{stopped_at}"));
    assert!(
        checkpoint.join("trainer_state.json").is_file(),
        "no checkpoint at step {stopped_at}"
    );
    assert!(!interrupted.join("model/model.safetensors").exists());

    // Resume from the checkpoint root: the newest complete checkpoint is used.
    let output = launch(Some(&interrupted.join("checkpoints")))
        .wait_with_output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["resumed_from_step"], stopped_at);
    assert_eq!(
        sha256(&straight.join("model/model.safetensors")),
        sha256(&interrupted.join("model/model.safetensors")),
        "resumed weights differ from the uninterrupted run"
    );
    // The metrics file has every step once (the terminated event aside).
    let steps_seen: Vec<u64> = metrics(&metrics_file)
        .iter()
        .filter(|l| l.get("loss").is_some())
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps_seen, (1..=steps).collect::<Vec<_>>());

    // Resuming under different settings is refused, naming what differs.
    let output = tiny_lm()
        .arg("train")
        .arg("--data")
        .arg(data.join("train.jsonl"))
        .args(["--steps", "90", "--batch-size", "8"])
        .arg("--resume-from")
        .arg(&checkpoint)
        .arg("--output-dir")
        .arg(dir.path().join("other"))
        .arg("--checkpoint-dir")
        .arg(dir.path().join("other-checkpoints"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("steps=80") && stderr.contains("steps=90"),
        "{stderr}"
    );
}

/// A running `tiny-lm serve`, stopped on drop.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(model: &Path, extra: &[&str]) -> Self {
        let mut child = tiny_lm()
            .arg("serve")
            .arg("--model")
            .arg(model)
            .args(["--port", "0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_owned();
        assert!(url.starts_with("http://127.0.0.1:"), "{line}");
        Self { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn small_model(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    gen_data(&data, 9, &[]);
    train(&data, dir, 5, &["--batch-size", "4"]);
    dir.join("model")
}

#[test]
fn server_speaks_the_openai_api_and_exposes_vllm_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let model = small_model(dir.path());
    let server = Server::start(&model, &[]);
    let client = reqwest::blocking::Client::new();
    let get = |path: &str| client.get(format!("{}{path}", server.url)).send().unwrap();
    let post = |path: &str, body: Value| {
        client
            .post(format!("{}{path}", server.url))
            .json(&body)
            .send()
            .unwrap()
    };

    assert_eq!(get("/health").status(), 200);
    let models: Value = get("/v1/models").json().unwrap();
    assert_eq!(models["data"][0]["id"], "tiny-lm");

    let response = post(
        "/v1/chat/completions",
        serde_json::json!({ "model": "tiny-lm", "messages": [{ "role": "user", "content": "What is 2 plus 2?" }], "max_tokens": 8 }),
    );
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(["stop", "length"].contains(&body["choices"][0]["finish_reason"].as_str().unwrap()));
    let completion_tokens = body["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion_tokens <= 8);
    assert_eq!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .len() as u64,
        completion_tokens,
        "one byte is one token"
    );

    // Streaming: chunks as SSE `data:` lines, the role first, `[DONE]` last.
    let text = post(
        "/v1/chat/completions",
        serde_json::json!({ "messages": [{ "role": "user", "content": "Hi" }], "max_tokens": 6, "stream": true, "stream_options": { "include_usage": true } }),
    )
    .text()
    .unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let last = chunks.last().unwrap();
    assert!(last["choices"][0]["finish_reason"].is_string());
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        streamed.len() as u64,
        last["usage"]["completion_tokens"].as_u64().unwrap()
    );

    let body: Value = post(
        "/v1/completions",
        serde_json::json!({ "model": "tiny-lm", "prompt": "User: hi", "max_tokens": 3 }),
    )
    .json()
    .unwrap();
    assert_eq!(body["object"], "text_completion");
    assert!(body["choices"][0]["text"].is_string());

    // Errors in OpenAI's shape.
    let response = post(
        "/v1/completions",
        serde_json::json!({ "model": "gpt-9", "prompt": "x" }),
    );
    assert_eq!(response.status(), 404);
    let body: Value = response.json().unwrap();
    assert_eq!(body["error"]["code"], "model_not_found");
    let response = client
        .post(format!("{}/v1/chat/completions", server.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        post(
            "/v1/chat/completions",
            serde_json::json!({ "messages": [] })
        )
        .status(),
        400
    );

    let response = get("/metrics");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let metrics = response.text().unwrap();
    for needle in [
        "vllm:e2e_request_latency_seconds_count{model_name=\"tiny-lm\"} 3",
        "vllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"tiny-lm\"}",
        "vllm:request_success_total{",
        "vllm:prompt_tokens_total{model_name=\"tiny-lm\"}",
        "vllm:generation_tokens_total{model_name=\"tiny-lm\"}",
        "tiny_lm:request_failure_total{",
        "# EOF",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from:\n{metrics}"
        );
    }
}

#[test]
fn fault_knobs_fail_and_slow_requests() {
    let dir = tempfile::tempdir().unwrap();
    let model = small_model(dir.path());
    let failing = Server::start(&model, &["--inject-error-rate", "1.0"]);
    let client = reqwest::blocking::Client::new();
    let body =
        serde_json::json!({ "messages": [{ "role": "user", "content": "Hi" }], "max_tokens": 2 });
    for _ in 0..3 {
        let response = client
            .post(format!("{}/v1/chat/completions", failing.url))
            .json(&body)
            .send()
            .unwrap();
        assert_eq!(response.status(), 500);
        let error: Value = response.json().unwrap();
        assert_eq!(error["error"]["type"], "server_error");
    }
    let metrics = client
        .get(format!("{}/metrics", failing.url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("tiny_lm:request_failure_total{model_name=\"tiny-lm\",code=\"500\",reason=\"injected\"} 3"),
        "{metrics}"
    );

    let slow = Server::start(&model, &["--inject-latency-ms", "300"]);
    let started = Instant::now();
    let response = client
        .post(format!("{}/v1/chat/completions", slow.url))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

fn tools_python() -> Option<PathBuf> {
    let venv = std::env::var_os("GANTRY_TOOLS_VENV").map(PathBuf::from)?;
    let python = venv.join("bin/python");
    python.is_file().then_some(python)
}

fn required() -> bool {
    std::env::var_os("GANTRY_REQUIRE_SERVICES").is_some_and(|v| v == "1")
}

#[test]
fn the_openai_python_client_talks_to_the_server() {
    let Some(python) = tools_python() else {
        assert!(
            !required(),
            "GANTRY_TOOLS_VENV with the openai package is required"
        );
        eprintln!("skipped: GANTRY_TOOLS_VENV is not set (cargo xtask test sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = small_model(dir.path());
    let server = Server::start(&model, &[]);
    let script = r#"
import sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused", max_retries=0)
assert [m.id for m in client.models.list()] == ["tiny-lm"]
chat = client.chat.completions.create(model="tiny-lm", messages=[{"role": "user", "content": "What is 1 plus 1?"}], max_tokens=4)
assert chat.choices[0].message.role == "assistant", chat
assert chat.usage.completion_tokens == len(chat.choices[0].message.content), chat
pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
    model="tiny-lm", messages=[{"role": "user", "content": "Hi"}], max_tokens=4, stream=True) if c.choices]
text = client.completions.create(model="tiny-lm", prompt="User: hi", max_tokens=3)
assert text.object == "text_completion", text
try:
    client.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])
    raise SystemExit("unknown model accepted")
except Exception as e:
    assert getattr(e, "status_code", None) == 404, e
print("ok", len("".join(pieces)))
"#;
    let output = Command::new(python)
        .args(["-c", script, &server.url])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openai client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("ok "));
}

#[test]
fn prometheus_scrapes_the_metrics() {
    let Ok(prometheus) = which("prometheus") else {
        assert!(
            !required(),
            "prometheus is required (apt-get install prometheus; cargo xtask test installs it)"
        );
        eprintln!("skipped: prometheus is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = small_model(dir.path());
    let server = Server::start(&model, &[]);
    let client = reqwest::blocking::Client::new();
    let body =
        serde_json::json!({ "messages": [{ "role": "user", "content": "Hi" }], "max_tokens": 2 });
    for _ in 0..2 {
        assert_eq!(
            client
                .post(format!("{}/v1/chat/completions", server.url))
                .json(&body)
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    let target = server.url.trim_start_matches("http://");
    let config = dir.path().join("prom.yml");
    std::fs::write(
        &config,
        format!("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tiny-lm\n    static_configs:\n      - targets: ['{target}']\n"),
    )
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut prom = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let query = format!(
        "http://127.0.0.1:{port}/api/v1/query?query=sum(vllm:e2e_request_latency_seconds_count{{job=\"tiny-lm\"}})"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    let value = loop {
        if let Ok(response) = client.get(&query).send() {
            last = response.text().unwrap_or_default();
            if let Ok(body) = serde_json::from_str::<Value>(&last)
                && let Some(v) = body["data"]["result"][0]["value"][1].as_str()
            {
                break v.to_owned();
            }
        }
        if Instant::now() > deadline {
            let _ = prom.kill();
            panic!("prometheus never scraped the server: {last}");
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let _ = prom.kill();
    let _ = prom.wait();
    assert_eq!(value, "2");
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
        .ok_or(())
}

#[test]
fn a_client_that_hangs_up_mid_stream_is_counted_as_aborted() {
    use std::io::{Read as _, Write as _};
    let dir = tempfile::tempdir().unwrap();
    let model = small_model(dir.path());
    let server = Server::start(&model, &[]);
    let address = server.url.trim_start_matches("http://").to_owned();
    // A long streamed completion; read the headers and the first event, then hang up.
    let body = r#"{"prompt":"x","max_tokens":1024,"stream":true,"stop":["never-stop-here"]}"#;
    let mut socket = std::net::TcpStream::connect(&address).unwrap();
    write!(
        socket,
        "POST /v1/completions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut first = [0u8; 256];
    let read = socket.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..read]).contains("200 OK"));
    drop(socket);
    let client = reqwest::blocking::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = client
            .get(format!("{}/metrics", server.url))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let finished = metrics.contains("finished_reason=\"abort\"} 1")
            || metrics.contains("finished_reason=\"stop\"} 1")
            || metrics.contains("finished_reason=\"length\"} 1");
        if finished {
            assert!(
                metrics.contains("vllm:num_requests_running{model_name=\"tiny-lm\"} 0"),
                "a finished or abandoned request still counts as running:\n{metrics}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the request never finished:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn exported_variants_load_and_answer_like_their_parent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = small_model(dir.path());
    let parent = tiny_lm::model::Model::load(&model).expect("parent");
    let input = candle_core::Tensor::new(&[[104_u32, 105, 33, 10]], &candle_core::Device::Cpu)
        .expect("input");
    let logits = |model: &tiny_lm::model::Model| -> Vec<f32> {
        model
            .forward(&input)
            .and_then(|logits| Ok(logits.flatten_all()?.to_vec1::<f32>()?))
            .expect("forward")
    };
    let expected = logits(&parent);
    for (format, weights, tolerance) in [
        ("f16", "model.safetensors", 0.01),
        ("bf16", "model.safetensors", 0.05),
        ("q8_0", "model.gguf", 0.05),
    ] {
        let out = dir.path().join(format);
        let printed = json_of(&run_ok(
            tiny_lm()
                .args(["export", "--format", format, "--model"])
                .arg(&model)
                .arg("--out")
                .arg(&out),
        ));
        assert_eq!(printed["weights"], out.join(weights).display().to_string());
        let variant = tiny_lm::model::Model::load(&out).expect(format);
        let got = logits(&variant);
        let worst = expected
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0_f32, f32::max);
        assert!(
            worst < tolerance,
            "{format}: logits differ by up to {worst}"
        );
        let size = std::fs::metadata(out.join(weights)).expect("weights").len();
        let parent_size = std::fs::metadata(model.join("model.safetensors"))
            .expect("parent")
            .len();
        assert!(
            size * 3 / 2 < parent_size,
            "{format}: {size} bytes vs {parent_size}"
        );
    }
    let refused = tiny_lm()
        .args(["export", "--format", "q4_k", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(dir.path().join("x"))
        .output()
        .expect("run");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("expected f16, bf16 or q8_0"));
}
