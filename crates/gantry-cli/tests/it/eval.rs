//! `gantry eval` against a real OpenAI-compatible server: tiny-lm's.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::support::{Step, tiny_lm, train_tiny};

/// A running `tiny-lm serve` on a briefly trained model, stopped on drop.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path, extra: &[&str]) -> Server {
    let tiny = tiny_lm();
    let model = dir.join("model");
    if !model.join("model.safetensors").is_file() {
        train_tiny(dir, 5, 4);
        // The first 40 eval items.
        let eval = std::fs::read_to_string(dir.join("data/eval.jsonl")).expect("eval");
        let first: Vec<&str> = eval.lines().take(40).collect();
        std::fs::write(dir.join("eval40.jsonl"), first.join("\n") + "\n").expect("write");
    }
    let mut child = Command::new(tiny)
        .args(["serve", "--port", "0", "--model"])
        .arg(&model)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("tiny-lm serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address line");
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{line}");
    Server { child, url }
}

fn results(step: &Step) -> Vec<serde_json::Value> {
    step.read(".gantry/eval/results.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).expect("result line"))
        .collect()
}

#[test]
fn evaluates_against_a_flaky_server_with_retries_and_feeds_eval_gate() {
    let mut step = Step::local();
    let server = serve(
        &step.path("tiny"),
        &["--inject-error-rate", "0.3", "--seed", "3"],
    );
    step.set("GANTRY_HTTP_BACKOFF_MS", "5")
        .set("OPENAI_API_KEY", "sk-test-Zq9xSecretValue0001");
    let dataset = step.path("tiny/eval40.jsonl").display().to_string();
    let endpoint = format!("{}/v1", server.url);
    let args = [
        "eval",
        "--endpoint",
        &endpoint,
        "--model",
        "tiny-lm",
        "--dataset",
        &dataset,
        "--scorer",
        "normalized-exact,choice,contains",
        "--concurrency",
        "4",
        "--attempts",
        "8",
        "--max-tokens",
        "16",
        "--publish",
        "summary",
    ];
    let outcome = step.run(&args);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    let lines = results(&step);
    assert_eq!(lines.len(), 40);
    let first = &lines[0];
    assert!(
        first["prompt_hash"]
            .as_str()
            .expect("hash")
            .starts_with("sha256:")
    );
    assert!(first["latency_ms"].as_f64().expect("latency") > 0.0);
    assert_eq!(first["model"], "tiny-lm");
    for metric in ["normalized_exact", "choice", "contains"] {
        assert!(first["scores"][metric].is_number(), "{metric}: {first}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l["attempts"].as_u64().expect("attempts") > 1),
        "30% injected failures and no retry"
    );
    assert!(
        lines.iter().all(|l| l["error"].is_null()),
        "8 attempts at 30% failure each"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&step.read(".gantry/eval/summary.json")).expect("summary");
    assert_eq!(summary["requests"], 40);
    assert!(
        outcome.stdout.contains("errors=0"),
        "{}",
        outcome.transcript()
    );
    let everything = format!(
        "{}{}{}",
        outcome.stdout,
        outcome.stderr,
        step.read(".gantry/eval/results.jsonl")
    );
    assert!(
        !everything.contains("Zq9xSecretValue0001"),
        "the API key leaked"
    );

    // The same model asked twice (greedy decoding): eval-gate passes it.
    std::fs::copy(
        step.path(".gantry/eval/results.jsonl"),
        step.path("baseline.jsonl"),
    )
    .expect("copy");
    let outcome = step.run(&args);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    let gate = step.run(&[
        "eval-gate",
        "--baseline",
        "baseline.jsonl",
        "--candidate",
        ".gantry/eval/results.jsonl",
        "--publish",
        "summary",
    ]);
    assert_eq!(gate.code, 0, "{}", gate.transcript());
}

#[test]
fn a_server_that_always_fails_or_is_gone_is_exit_2_naming_it() {
    let step = Step::local();
    let server = serve(&step.path("tiny"), &["--inject-error-rate", "1.0"]);
    let dataset = step.path("tiny/eval40.jsonl").display().to_string();
    let endpoint = format!("{}/v1", server.url);
    let outcome = step.run(&[
        "eval",
        "--endpoint",
        &endpoint,
        "--model",
        "tiny-lm",
        "--dataset",
        &dataset,
        "--attempts",
        "2",
    ]);
    assert_eq!(outcome.code, 2, "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("every request failed")
            && outcome
                .stderr
                .contains("HTTP 500: injected failure (--inject-error-rate)"),
        "{}",
        outcome.transcript()
    );
    drop(server);
    let outcome = step.run(&[
        "eval",
        "--endpoint",
        &endpoint,
        "--model",
        "tiny-lm",
        "--dataset",
        &dataset,
        "--attempts",
        "1",
    ]);
    assert_eq!(outcome.code, 2, "{}", outcome.transcript());
    assert!(
        outcome
            .stderr
            .contains(&format!("POST {endpoint}/chat/completions")),
        "{}",
        outcome.transcript()
    );

    step.write("bad.jsonl", "{\"id\": \"a\", \"expected\": \"x\"}\n");
    let outcome = step.run(&[
        "eval",
        "--endpoint",
        &endpoint,
        "--model",
        "m",
        "--dataset",
        "bad.jsonl",
    ]);
    assert_eq!(outcome.code, 2);
    assert!(
        outcome
            .stderr
            .contains("bad.jsonl:1: an item needs `messages`"),
        "{}",
        outcome.transcript()
    );
}

#[test]
fn an_interrupted_run_resumes_from_its_journal() {
    let step = Step::local();
    let server = serve(&step.path("tiny"), &[]);
    let dataset = step.path("tiny/eval40.jsonl").display().to_string();
    let endpoint = format!("{}/v1", server.url);
    let args = [
        "eval",
        "--endpoint",
        &endpoint,
        "--model",
        "tiny-lm",
        "--dataset",
        &dataset,
        "--max-tokens",
        "8",
    ];
    let outcome = step.run(&args);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    assert!(
        !step.path(".gantry/eval/results.jsonl.partial").exists(),
        "the journal is removed when the run completes"
    );
    let complete = step.read(".gantry/eval/results.jsonl");

    // An interrupted run: 10 answers journaled, the 11th torn mid-line.
    let lines: Vec<&str> = complete.lines().collect();
    let mut journal = lines[..10].join("\n");
    journal.push('\n');
    journal.push_str(&lines[10][..lines[10].len() / 2]);
    std::fs::write(step.path(".gantry/eval/results.jsonl.partial"), journal).expect("journal");
    std::fs::remove_file(step.path(".gantry/eval/results.jsonl")).expect("remove");
    let mut resumed = args.to_vec();
    resumed.push("--resume");
    let outcome = step.run(&resumed);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("kept 10 answers"),
        "{}",
        outcome.transcript()
    );
    let summary: serde_json::Value =
        serde_json::from_str(&step.read(".gantry/eval/summary.json")).expect("summary");
    assert_eq!(
        (summary["resumed"].as_u64(), summary["requests"].as_u64()),
        (Some(10), Some(40))
    );
    // Same answers, same order (greedy decoding), whatever was resumed.
    let strip = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("line");
                (v["id"].to_string(), v["response"].to_string())
            })
            .collect()
    };
    assert_eq!(
        strip(&step.read(".gantry/eval/results.jsonl")),
        strip(&complete)
    );
}
