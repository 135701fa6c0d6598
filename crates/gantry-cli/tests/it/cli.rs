//! The command line contract: help, version, exit codes and input handling.

use crate::support::Step;

#[test]
fn version_and_help_exit_zero_and_document_exit_codes() {
    let step = Step::local();
    let version = step.run(&["--version"]);
    assert_eq!(version.code, 0);
    assert_eq!(
        version.stdout,
        format!("gantry {}\n", env!("CARGO_PKG_VERSION"))
    );
    let help = step.run(&["--help"]);
    assert_eq!(help.code, 0);
    for needle in [
        "Exit codes:",
        "1  the gate, check or rollout said no",
        "2  gantry could not do its job",
        "report",
        "--format",
        "--ci",
        "--quiet",
    ] {
        assert!(
            help.stdout.contains(needle),
            "help lacks {needle:?}:\n{}",
            help.stdout
        );
    }
}

#[test]
fn unknown_flags_are_errors_with_exit_two() {
    let step = Step::local();
    let outcome = step.run(&["report", "--file", "r.md", "--frobnicate"]);
    assert_eq!(outcome.code, 2, "{}", outcome.transcript());
    assert!(
        outcome
            .stderr
            .contains("unexpected argument '--frobnicate'"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn report_locally_writes_the_summary_file_and_prints_outputs() {
    let step = Step::local();
    step.write(
        "r.md",
        "# Eval: candidate vs baseline\n\n| metric | delta |\n|---|---|\n| accuracy | +0.4 |\n",
    );
    let outcome = step.run(&["report", "--file", "r.md", "--verdict", "warn"]);
    insta::assert_snapshot!(outcome.transcript(), @r"
    exit: 0
    --- stdout
    verdict=warn
    published=summary
    summary-file=.gantry/reports/report-default.md
    --- stderr
    Eval: candidate vs baseline: warn; published to summary
    ");
    assert!(
        step.read(".gantry/reports/report-default.md")
            .contains("| accuracy | +0.4 |")
    );
}

#[test]
fn a_failing_verdict_exits_one_and_json_is_parseable() {
    let step = Step::local();
    step.write("r.md", "# Gate\nregressed\n");
    let outcome = step.run(&[
        "--format",
        "json",
        "report",
        "--file",
        "r.md",
        "--verdict",
        "fail",
        "--publish",
        "summary",
    ]);
    assert_eq!(outcome.code, 1, "{}", outcome.transcript());
    let value: serde_json::Value = serde_json::from_str(&outcome.stdout).expect("stdout is JSON");
    assert_eq!(value["verdict"], "fail");
    assert_eq!(value["title"], "Gate");
    assert_eq!(value["published"], serde_json::json!(["summary"]));
}

#[test]
fn missing_report_file_names_the_flag_and_path() {
    let step = Step::local();
    let outcome = step.run(&["report", "--file", "absent.md"]);
    assert_eq!(outcome.code, 2);
    assert!(
        outcome
            .stderr
            .starts_with("error: cannot read the report --file absent.md: "),
        "{}",
        outcome.stderr
    );
}

#[test]
fn github_inputs_become_flags_and_outputs_use_the_heredoc_form() {
    let mut step = Step::github();
    step.write("r.md", "# Data check\nall good\n");
    step.set("INPUT_FILE", "  r.md\n")
        .set("INPUT_GIVEN-VERDICT", "pass")
        .set("INPUT_PUBLISH", "summary")
        .set("INPUT_NAME", "")
        .set("INPUT_TITLE", "");
    let outcome = step.run(&["report"]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    let output = step.read("github_output");
    let delimiter = output
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("verdict<<"))
        .expect("heredoc")
        .to_owned();
    assert_eq!(
        output,
        format!(
            "verdict<<{delimiter}\npass\n{delimiter}\npublished<<{delimiter}\nsummary\n{delimiter}\n"
        )
    );
    assert_eq!(step.read("step_summary"), "# Data check\nall good\n\n");
}

#[test]
fn bad_inputs_are_named_and_exit_two() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[("INPUT_FILE", "r.md"), ("INPUT_GIVEN-VERDICT", "meh")],
            "invalid value 'meh' for '--verdict <VERDICT>'",
        ),
        (
            &[("INPUT_FILE", "r.md"), ("INPUT_FILES", "x")],
            "unknown input `files` (from `INPUT_FILES`) for `gantry report`; known inputs: file, title, given-verdict, findings, strict, name, publish",
        ),
        (
            &[("INPUT_GIVEN-VERDICT", "pass")],
            "input `file` is required by `gantry report`",
        ),
        (
            &[("INPUT_FILE", "r.md"), ("INPUT_NAME", "has space")],
            "invalid value 'has space' for '--name <NAME>'",
        ),
    ];
    for (inputs, expected) in cases {
        let mut step = Step::github();
        step.write("r.md", "# x\n");
        for (name, value) in inputs {
            step.set(name, value);
        }
        let outcome = step.run(&["report"]);
        assert_eq!(outcome.code, 2, "{inputs:?}: {}", outcome.transcript());
        let all = format!("{}{}", outcome.stdout, outcome.stderr);
        assert!(
            all.contains(expected),
            "{inputs:?}: expected {expected:?} in\n{all}"
        );
    }
}

#[test]
fn unwritable_github_output_is_an_error_naming_the_file() {
    let mut step = Step::github();
    step.write("r.md", "# x\n");
    step.set("GITHUB_OUTPUT", "/nonexistent-directory/output");
    let outcome = step.run(&["report", "--file", "r.md", "--publish", "summary"]);
    assert_eq!(outcome.code, 2, "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains(
            "cannot write output `verdict` to /nonexistent-directory/output (from $GITHUB_OUTPUT)"
        ),
        "{}",
        outcome.stderr
    );
}

#[test]
fn gitlab_inputs_and_dotenv_outputs() {
    let mut step = Step::gitlab_merge_request(3);
    step.write("r.md", "# x\n");
    step.set("GANTRY_INPUT_FILE", "r.md")
        .set("GANTRY_INPUT_PUBLISH", "summary")
        .set("GANTRY_OUTPUT_PREFIX", "EVAL_");
    let outcome = step.run(&["report"]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    assert_eq!(
        step.read("gantry.env"),
        "EVAL_VERDICT=pass\nEVAL_PUBLISHED=summary\nEVAL_SUMMARY_FILE=.gantry/reports/report-default.md\n"
    );
}

#[test]
fn tokens_are_masked_before_anything_prints() {
    let mut step = Step::github();
    step.write("r.md", "# x\nthe token is ghp_supersecret123\n");
    step.set("GITHUB_TOKEN", "ghp_supersecret123");
    let outcome = step.run(&["report", "--file", "r.md", "--publish", "summary"]);
    assert!(
        outcome
            .stdout
            .starts_with("::add-mask::ghp_supersecret123\n"),
        "{}",
        outcome.stdout
    );
    assert_eq!(
        outcome.stdout.matches("ghp_supersecret123").count(),
        1,
        "{}",
        outcome.stdout
    );
    assert!(!step.read("step_summary").contains("ghp_supersecret123"));
    assert!(step.read("step_summary").contains("the token is ***"));
}

fn findings_json(n_errors: usize, n_warnings: usize) -> String {
    let mut findings = Vec::new();
    for index in 0..n_errors {
        findings.push(serde_json::json!({
            "code": "parse-error", "severity": "error", "title": "Unparsable row",
            "message": format!("expected `,` at byte {index}"),
            "location": { "path": "data/train.jsonl", "line": index + 1 }
        }));
    }
    for index in 0..n_warnings {
        findings.push(serde_json::json!({
            "code": "pii-email", "severity": "warning", "title": "Email address", "message": format!("row {index} | has an email")
        }));
    }
    serde_json::Value::Array(findings).to_string()
}

#[test]
fn findings_become_capped_annotations_a_table_and_a_failing_verdict() {
    let mut step = Step::github();
    step.write("r.md", "# Data check\n");
    step.write("findings.json", &findings_json(12, 2));
    step.set("INPUT_FILE", "r.md")
        .set("INPUT_FINDINGS", "findings.json")
        .set("INPUT_PUBLISH", "summary");
    let outcome = step.run(&["report"]);
    assert_eq!(
        outcome.code,
        1,
        "errors make the verdict fail: {}",
        outcome.transcript()
    );
    assert_eq!(
        outcome
            .stdout
            .matches("::error file=data/train.jsonl,line=")
            .count(),
        10,
        "{}",
        outcome.stdout
    );
    assert!(outcome.stdout.contains("::error file=data/train.jsonl,line=1,title=Unparsable row (parse-error)::expected `%2C` at byte 0") || outcome.stdout.contains("::error file=data/train.jsonl,line=1,title=Unparsable row (parse-error)::expected `,` at byte 0"), "{}", outcome.stdout);
    assert_eq!(
        outcome
            .stdout
            .matches("::warning title=Email address (pii-email)::")
            .count(),
        2
    );
    assert!(outcome.stdout.contains("::notice title=gantry::2 more error(s) not annotated; the step summary lists every finding"), "{}", outcome.stdout);
    let summary = step.read("step_summary");
    assert!(
        summary.contains("12 error(s), 2 warning(s), 0 notice(s)"),
        "{summary}"
    );
    assert_eq!(summary.matches("| error | `parse-error` |").count(), 12);
    assert!(
        summary.contains("row 1 \\| has an email"),
        "pipes in messages are escaped: {summary}"
    );
    let output = step.read("github_output");
    assert!(
        output.contains("\nfail\n")
            && output.contains("errors<<")
            && output.contains("\n12\n")
            && output.contains("warnings<<"),
        "{output}"
    );
}

#[test]
fn strict_turns_warnings_into_failures_and_rejects_non_boolean_inputs() {
    let mut step = Step::github();
    step.write("r.md", "# Data check\n");
    step.write("findings.json", &findings_json(0, 1));
    step.set("INPUT_FILE", "r.md")
        .set("INPUT_FINDINGS", "findings.json")
        .set("INPUT_PUBLISH", "summary");
    assert_eq!(step.run(&["report"]).code, 0, "a warning alone passes");
    step.set("INPUT_STRICT", "TRUE");
    assert_eq!(step.run(&["report"]).code, 1, "strict: a warning fails");
    step.set("INPUT_STRICT", "yes");
    let outcome = step.run(&["report"]);
    assert_eq!(outcome.code, 2, "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains(
            "input `strict` must be a boolean (true, True, TRUE, false, False or FALSE), got `yes`"
        ),
        "{}",
        outcome.stderr
    );
}

#[test]
fn malformed_findings_name_the_file() {
    let step = Step::local();
    step.write("r.md", "# x\n");
    step.write(
        "findings.json",
        r#"[{"code": "x", "severity": "fatal", "title": "t", "message": "m"}]"#,
    );
    let outcome = step.run(&["report", "--file", "r.md", "--findings", "findings.json"]);
    assert_eq!(outcome.code, 2);
    assert!(
        outcome
            .stderr
            .contains("--findings findings.json is not a JSON array of findings"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("unknown variant `fatal`"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn gitlab_findings_go_to_a_code_quality_report() {
    let step = Step::gitlab_merge_request(3);
    step.write("r.md", "# x\n");
    step.write("findings.json", &findings_json(2, 1));
    let outcome = step.run(&[
        "report",
        "--file",
        "r.md",
        "--findings",
        "findings.json",
        "--publish",
        "summary",
    ]);
    assert_eq!(outcome.code, 1, "{}", outcome.transcript());
    assert!(
        outcome.stderr.contains(
            "error[parse-error]: Unparsable row: expected `,` at byte 0\n  --> data/train.jsonl:1"
        ),
        "{}",
        outcome.stderr
    );
    let report: serde_json::Value =
        serde_json::from_str(&step.read(".gantry/reports/codequality.json"))
            .expect("code quality JSON");
    let entries = report.as_array().expect("array");
    assert_eq!(entries.len(), 2, "only findings with a location: {report}");
    assert_eq!(entries[0]["severity"], "critical");
    assert_eq!(entries[1]["location"]["lines"]["begin"], 2);
}

#[test]
fn report_text_is_logged_in_a_group_with_workflow_commands_paused() {
    let step = Step::github();
    step.write(
        "r.md",
        "# Model output\n::error::this line came from a model\n",
    );
    let outcome = step.run(&["report", "--file", "r.md", "--publish", "summary"]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    let start = lines
        .iter()
        .position(|line| *line == "::group::Report: Model output")
        .expect("group");
    let token = lines[start + 1]
        .strip_prefix("::stop-commands::")
        .expect("paused right after the group opens");
    assert_eq!(lines[start + 3], "::error::this line came from a model");
    assert_eq!(
        lines[start + 4],
        format!("::{token}::"),
        "resumed right after the report"
    );
    assert_eq!(lines[start + 5], "::endgroup::");
}

/// Hostile files every command reads: nested past any stack, numbers out
/// of range, NUL bytes, a byte-order mark, invalid UTF-8.
fn hostile_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "arrays",
            format!("{}{}\n", "[".repeat(50_000), "]".repeat(50_000)).into_bytes(),
        ),
        (
            "objects",
            format!("{}1{}\n", "{\"a\":".repeat(50_000), "}".repeat(50_000)).into_bytes(),
        ),
        ("open", "{\"messages\": [".repeat(30_000).into_bytes()),
        (
            "numbers",
            b"{\"id\": 1e999999, \"scores\": {\"x\": 18446744073709551616}}\n".to_vec(),
        ),
        ("nul", b"{\"text\": \"a\0b\"}\n\0\0\0\n".to_vec()),
        ("bom", b"\xef\xbb\xbf{\"text\": \"hello\"}\n".to_vec()),
        ("binary", vec![0xff, 0xfe, 0xc3, 0x28, 0x80, 0x02, b'.']),
        (
            "toml",
            format!(
                "[[rule]]\nmetric = {}1{}\n",
                "[".repeat(50_000),
                "]".repeat(50_000)
            )
            .into_bytes(),
        ),
    ]
}

#[test]
fn hostile_inputs_end_in_a_verdict_or_an_error_never_a_crash() {
    let step = Step::local();
    std::fs::create_dir_all(step.path("model")).expect("model directory");
    for (name, bytes) in hostile_files() {
        let file = step.path(&format!("{name}.jsonl"));
        std::fs::write(&file, &bytes).expect("write");
        let toml = step.path(&format!("{name}.toml"));
        std::fs::write(&toml, &bytes).expect("write");
        std::fs::write(step.path("model/model.safetensors"), {
            let mut weights = (bytes.len() as u64).to_le_bytes().to_vec();
            weights.extend_from_slice(&bytes);
            weights
        })
        .expect("write");
        std::fs::write(step.path("model/model.pt"), &bytes).expect("write");
        std::fs::write(step.path("model/config.json"), &bytes).expect("write");
        let file = file.to_str().expect("utf8");
        let toml = toml.to_str().expect("utf8");
        let runs: Vec<Vec<&str>> = vec![
            vec!["validate-data", "--data", file],
            vec![
                "validate-data",
                "--data",
                "model/config.json",
                "--policy",
                toml,
            ],
            vec![
                "validate-data",
                "--data",
                "model/config.json",
                "--eval-set",
                file,
                "--reference",
                file,
                "--previous-lock",
                file,
                "--schema",
                file,
            ],
            vec!["eval-gate", "--baseline", file, "--candidate", file],
            vec![
                "eval-gate",
                "--baseline",
                file,
                "--candidate",
                file,
                "--policy",
                toml,
            ],
            vec![
                "eval",
                "--endpoint",
                "http://127.0.0.1:9/v1",
                "--model",
                "m",
                "--dataset",
                file,
                "--attempts",
                "1",
            ],
            vec!["report", "--file", file, "--findings", file],
            vec![
                "register",
                "--model-dir",
                "model",
                "--name",
                "m",
                "--dry-run",
            ],
            vec![
                "register",
                "--model-dir",
                "model",
                "--name",
                "m",
                "--dry-run",
                "--run-record",
                file,
                "--data-lock",
                file,
                "--gate-report",
                file,
            ],
        ];
        for args in runs {
            let outcome = step.run(&args);
            assert!(
                matches!(outcome.code, 0..=2),
                "{name}: {args:?} ended with {}: {}",
                outcome.code,
                outcome.transcript()
            );
            assert!(
                !outcome.stderr.contains("panicked") && !outcome.stderr.contains("internal error"),
                "{name}: {args:?}: {}",
                outcome.transcript()
            );
        }
    }
}

#[test]
fn a_summary_that_cannot_be_written_is_said_and_not_counted_as_published() {
    let mut step = Step::github();
    // A directory where the summary file should be: no write can succeed.
    std::fs::create_dir_all(step.path("step_summary_dir")).expect("dir");
    let summary = step.path("step_summary_dir");
    step.set("GITHUB_STEP_SUMMARY", summary.to_str().expect("utf8"));
    step.write("r.md", "# fine\n");
    step.write("data.jsonl", "{\"text\": \"hello there\"}\n");
    let outcome = step.run(&[
        "validate-data",
        "--data",
        "data.jsonl",
        "--publish",
        "summary",
    ]);
    assert!(
        matches!(outcome.code, 0 | 1),
        "the verdict stands: {}",
        outcome.transcript()
    );
    assert!(
        outcome.stdout.contains("cannot write the job summary"),
        "{}",
        outcome.transcript()
    );
    assert!(
        !outcome.stderr.contains("published to summary"),
        "{}",
        outcome.transcript()
    );
    let outputs = crate::support::github_outputs(&step.read("github_output"));
    assert_eq!(
        outputs.get("published").map(String::as_str),
        Some(""),
        "{outputs:?}"
    );
    // Writing is `gantry report`'s job: there it is an error.
    let report = step.run(&["report", "--file", "r.md", "--publish", "summary"]);
    assert_eq!(report.code, 2, "{}", report.transcript());
}

#[test]
fn a_cause_is_said_once_and_the_flag_is_the_one_given() {
    let step = Step::local();
    step.write("data.jsonl", "{\"text\": \"hello there\"}\n");
    step.write("x.toml", "");
    for args in [
        vec!["validate-data", "--data", "nope.jsonl"],
        vec![
            "eval-gate",
            "--baseline",
            "nope.jsonl",
            "--candidate",
            "nope.jsonl",
        ],
        vec![
            "validate-data",
            "--data",
            "data.jsonl",
            "--previous-lock",
            "nope.lock",
        ],
        vec![
            "eval",
            "--endpoint",
            "http://127.0.0.1:9/v1",
            "--model",
            "m",
            "--dataset",
            "nope.jsonl",
        ],
        vec!["report", "--file", "nope.md"],
    ] {
        let outcome = step.run(&args);
        assert_eq!(outcome.code, 2, "{args:?}: {}", outcome.transcript());
        let lower = outcome.stderr.to_lowercase();
        assert_eq!(
            lower.matches("no such file or directory").count(),
            1,
            "{args:?}: {}",
            outcome.transcript()
        );
    }
    // A reference that is not data is the reference's problem, not --data's.
    let outcome = step.run(&[
        "validate-data",
        "--data",
        "data.jsonl",
        "--reference",
        "x.toml",
    ]);
    assert_eq!(outcome.code, 2, "{}", outcome.transcript());
    assert!(
        outcome
            .stderr
            .contains("--reference x.toml: x.toml matched no data files"),
        "{}",
        outcome.transcript()
    );
    assert!(
        !outcome.stderr.contains("--data"),
        "{}",
        outcome.transcript()
    );
}
