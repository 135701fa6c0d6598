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
        .set("INPUT_VERDICT", "pass")
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
            &[("INPUT_FILE", "r.md"), ("INPUT_VERDICT", "meh")],
            "invalid value 'meh' for '--verdict <VERDICT>'",
        ),
        (
            &[("INPUT_FILE", "r.md"), ("INPUT_FILES", "x")],
            "unknown input `files` (from `INPUT_FILES`) for `gantry report`; known inputs: file, name, title, verdict, publish",
        ),
        (
            &[("INPUT_VERDICT", "pass")],
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
