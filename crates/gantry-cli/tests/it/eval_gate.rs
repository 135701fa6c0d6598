//! `gantry eval-gate` on tiny-lm's real results: verdicts, exit codes, reports and errors.

use std::path::PathBuf;

use gantry_test::FakeForge;

use crate::support::Step;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../gantry-eval/tests/fixtures/tiny-lm")
}

fn path(relative: &str) -> String {
    fixtures().join(relative).display().to_string()
}

#[test]
fn a_regressed_model_fails_with_a_table_and_gate_json() {
    let step = Step::local();
    let outcome = step.run(&[
        "eval-gate",
        "--baseline",
        &path("good/lm-eval"),
        "--candidate",
        &path("corrupted/lm-eval"),
        "--publish",
        "summary",
    ]);
    assert_eq!(outcome.code, 1, "{}", outcome.transcript());
    assert!(
        outcome.stdout.contains("verdict=fail"),
        "{}",
        outcome.transcript()
    );
    assert!(
        outcome.stderr.contains("no --policy: using the default"),
        "{}",
        outcome.transcript()
    );
    let gate: serde_json::Value =
        serde_json::from_str(&step.read(".gantry/eval-gate/gate.json")).expect("gate.json");
    assert_eq!(gate["schema_version"], 2);
    assert_eq!(gate["verdict"], "fail");
    assert_eq!(gate["policy_source"], "default");
    let row = gate["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["task"] == "tiny_add" && r["metric"] == "acc,none")
        .expect("tiny_add acc row");
    for field in [
        "baseline",
        "candidate",
        "delta",
        "ci_low",
        "ci_high",
        "p_value",
        "p_adjusted",
        "n",
        "mde",
        "verdict",
    ] {
        assert!(!row[field].is_null(), "{field} missing from {row}");
    }
    assert_eq!(row["verdict"], "fail");
    assert_eq!(row["method"], "mcnemar-exact");
    let markdown = step.read(".gantry/eval-gate/gate.md");
    assert!(
        markdown.contains("| tiny_add | acc,none ↑ | 0.8300 |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("### Items that went from pass to fail"),
        "{markdown}"
    );
}

#[test]
fn identical_results_pass_in_either_format() {
    let step = Step::local();
    for (baseline, candidate) in [
        ("good/results.jsonl", "good/results.jsonl"),
        ("good/lm-eval", "good/lm-eval"),
    ] {
        let outcome = step.run(&[
            "eval-gate",
            "--baseline",
            &path(baseline),
            "--candidate",
            &path(candidate),
            "--publish",
            "summary",
        ]);
        assert_eq!(outcome.code, 0, "{}", outcome.transcript());
        assert!(
            outcome.stdout.contains("verdict=pass"),
            "{}",
            outcome.transcript()
        );
    }
}

#[test]
fn unusable_inputs_exit_2_naming_the_problem() {
    let step = Step::local();
    step.write("notes.txt", "not results\n");
    let outcome = step.run(&[
        "eval-gate",
        "--baseline",
        &path("good/results.jsonl"),
        "--candidate",
        "notes.txt",
    ]);
    assert_eq!(outcome.code, 2);
    assert!(
        outcome
            .stderr
            .contains("notes.txt:1: not a results file gantry reads"),
        "{}",
        outcome.transcript()
    );

    step.write("policy.toml", "[defaults]\nalpha = 2\n[[rule]]\n");
    let outcome = step.run(&[
        "eval-gate",
        "--baseline",
        &path("good/results.jsonl"),
        "--candidate",
        &path("good/results.jsonl"),
        "--policy",
        "policy.toml",
    ]);
    assert_eq!(outcome.code, 2);
    assert!(
        outcome
            .stderr
            .contains("policy.toml: defaults.alpha = 2 must be between 0 and 1"),
        "{}",
        outcome.transcript()
    );

    // Native results against lm-eval results: different metric names, nothing to pair.
    let outcome = step.run(&[
        "eval-gate",
        "--baseline",
        &path("good/results.jsonl"),
        "--candidate",
        &path("good/lm-eval"),
    ]);
    assert_eq!(outcome.code, 2, "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains("not comparable"),
        "{}",
        outcome.transcript()
    );
}

#[test]
fn on_a_pull_request_it_posts_a_check_run_status_and_sticky_comment() {
    let forge = FakeForge::start();
    let mut step = Step::github_pull_request(12, false);
    step.set("GITHUB_API_URL", forge.url())
        .set("GITHUB_TOKEN", "ghs_token");
    let outcome = step.run(&[
        "eval-gate",
        "--baseline",
        &path("good/results.jsonl"),
        "--candidate",
        &path("fewer-steps/results.jsonl"),
        "--publish",
        "summary,comment,status,check",
    ]);
    assert_eq!(outcome.code, 1, "{}", outcome.transcript());
    let comments = forge.comments(12);
    assert_eq!(comments.len(), 1);
    assert!(
        comments[0].1.contains("## gantry eval-gate: ❌ fail"),
        "{}",
        comments[0].1
    );
    let statuses = forge.statuses();
    assert_eq!(statuses[0]["context"], "gantry/eval-gate");
    assert_eq!(statuses[0]["state"], "failure");
    let checks = forge.check_runs();
    assert_eq!(checks[0]["conclusion"], "failure");
    assert!(step.read("github_output").contains("regressions<<"));
}
