//! `gantry report` publishing to the fake GitHub and GitLab APIs.

use gantry_test::{BAD_TOKEN, FakeForge, READ_ONLY_TOKEN};

use crate::support::Step;

const HEAD_SHA: &str = "1111111111111111111111111111111111111head";

fn github_step(forge: &FakeForge, number: u64, fork: bool, token: &str) -> Step {
    let mut step = Step::github_pull_request(number, fork);
    step.set("GITHUB_API_URL", forge.url())
        .set("GITHUB_TOKEN", token);
    step.write(
        "r.md",
        "# Eval gate: pass\n\n| metric | delta |\n|---|---|\n| accuracy | +0.4 |\n",
    );
    step
}

#[test]
fn sticky_comment_is_created_once_then_edited_in_place() {
    let forge = FakeForge::start();
    forge.seed_comment(7, "an unrelated comment from a person");
    let step = github_step(&forge, 7, false, "ghs_token");
    let first = step.run(&["report", "--file", "r.md"]);
    assert_eq!(first.code, 0, "{}", first.transcript());
    step.write("r.md", "# Eval gate: second run\n");
    let second = step.run(&["report", "--file", "r.md", "--verdict", "fail"]);
    assert_eq!(second.code, 1, "{}", second.transcript());

    let comments = forge.comments(7);
    assert_eq!(
        comments.len(),
        2,
        "one unrelated + one sticky: {comments:?}"
    );
    let sticky = &comments[1].1;
    assert!(sticky.starts_with("# Eval gate: second run\n"), "{sticky}");
    assert!(
        sticky.contains("<!-- gantry:sticky eval :: report :: default -->"),
        "{sticky}"
    );
    assert_eq!(comments[0].1, "an unrelated comment from a person");

    let statuses = forge.statuses();
    assert_eq!(statuses.len(), 2);
    assert_eq!(
        statuses[1]["sha"], HEAD_SHA,
        "statuses go on the PR head, not the merge commit"
    );
    assert_eq!(statuses[1]["context"], "gantry/report");
    assert_eq!(statuses[1]["state"], "failure");
    assert_eq!(
        statuses[1]["target_url"],
        "https://github.test/org/models/actions/runs/77"
    );
    assert!(
        step.read("github_output")
            .contains("https://github.test/org/models/pull/7#issuecomment-")
    );
    let methods: Vec<String> = forge
        .requests()
        .iter()
        .map(|request| format!("{} {}", request.method, request.path))
        .collect();
    assert_eq!(
        methods,
        [
            "GET /repos/org/models/issues/7/comments?per_page=100&page=1",
            "POST /repos/org/models/issues/7/comments",
            format!("POST /repos/org/models/statuses/{HEAD_SHA}").as_str(),
            "GET /repos/org/models/issues/7/comments?per_page=100&page=1",
            &format!("PATCH /repos/org/models/issues/comments/{}", comments[1].0),
            &format!("POST /repos/org/models/statuses/{HEAD_SHA}"),
        ]
    );
    assert!(
        forge
            .requests()
            .iter()
            .all(|request| request.credential.as_deref() == Some("Bearer ghs_token"))
    );
}

#[test]
fn sticky_comment_is_found_past_the_first_page() {
    let forge = FakeForge::start();
    for index in 0..150 {
        forge.seed_comment(8, &format!("chatter {index}"));
    }
    let sticky_id = forge.seed_comment(
        8,
        "old\n\n<!-- gantry:sticky eval :: report :: default -->\n",
    );
    let step = github_step(&forge, 8, false, "ghs_token");
    let outcome = step.run(&["report", "--file", "r.md", "--publish", "comment"]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    let comments = forge.comments(8);
    assert_eq!(comments.len(), 151);
    assert!(
        comments
            .iter()
            .any(|(id, body)| *id == sticky_id && body.starts_with("# Eval gate: pass"))
    );
}

#[test]
fn rate_limits_and_server_errors_are_retried() {
    let forge = FakeForge::start();
    forge.fail_next("POST", "/comments", 429, &[("retry-after", "1")], 1);
    forge.fail_next("POST", "/statuses/", 502, &[], 2);
    let step = github_step(&forge, 9, false, "ghs_token");
    let outcome = step.run(&["report", "--file", "r.md"]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    assert_eq!(forge.comments(9).len(), 1);
    assert_eq!(forge.statuses().len(), 1);
    let statuses: Vec<u16> = forge
        .requests()
        .iter()
        .map(|request| request.status)
        .collect();
    assert_eq!(statuses, [200, 429, 201, 502, 502, 201]);
}

#[test]
fn a_rejected_comment_names_the_endpoint_and_exits_two() {
    let forge = FakeForge::start();
    forge.fail_next("POST", "/comments", 422, &[], 1);
    let step = github_step(&forge, 10, false, "ghs_token");
    let outcome = step.run(&["report", "--file", "r.md"]);
    assert_eq!(outcome.code, 2, "{}", outcome.transcript());
    let expected = format!(
        "cannot publish the comment: POST {}/repos/org/models/issues/10/comments answered 422: Validation Failed",
        forge.url()
    );
    assert!(outcome.stderr.contains(&expected), "{}", outcome.stderr);
    // The status is still set: one failed write does not stop the others.
    assert_eq!(forge.statuses().len(), 1);
}

#[test]
fn a_bad_token_is_one_clear_error() {
    let forge = FakeForge::start();
    let step = github_step(&forge, 11, false, BAD_TOKEN);
    let outcome = step.run(&["report", "--file", "r.md", "--publish", "status"]);
    assert_eq!(outcome.code, 2, "{}", outcome.transcript());
    let expected = format!(
        "error: cannot publish the status: POST {}/repos/org/models/statuses/{HEAD_SHA} answered 401: Bad credentials",
        forge.url()
    );
    assert!(outcome.stderr.contains(&expected), "{}", outcome.stderr);
    assert!(
        !outcome.stderr.contains(BAD_TOKEN)
            && !outcome
                .stdout
                .replace(&format!("::add-mask::{BAD_TOKEN}"), "")
                .contains(BAD_TOKEN)
    );
}

#[test]
fn fork_pull_requests_degrade_to_summary_with_a_note() {
    let forge = FakeForge::start();
    let step = github_step(&forge, 12, true, READ_ONLY_TOKEN);
    let outcome = step.run(&["report", "--file", "r.md", "--verdict", "fail"]);
    assert_eq!(
        outcome.code,
        1,
        "the verdict's own exit code: {}",
        outcome.transcript()
    );
    assert!(outcome.stdout.contains("::warning title=gantry::this change comes from a fork, whose token cannot write (comment skipped"), "{}", outcome.stdout);
    assert!(
        outcome.stdout.contains("(status skipped"),
        "{}",
        outcome.stdout
    );
    assert!(step.read("step_summary").contains("| accuracy | +0.4 |"));
    assert!(forge.comments(12).is_empty());
}

#[test]
fn huge_reports_are_truncated_to_the_comment_limit_with_a_link() {
    let forge = FakeForge::start();
    let step = github_step(&forge, 13, false, "ghs_token");
    let rows: String = (0..20_000)
        .map(|index| format!("| item-{index} | 0.{index} |\n"))
        .collect();
    step.write("big.md", &format!("# Big\n{rows}"));
    let outcome = step.run(&["report", "--file", "big.md", "--publish", "comment,check"]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    let body = &forge.comments(13)[0].1;
    assert!(body.chars().count() <= 65_536, "{}", body.chars().count());
    assert!(body.contains("[Full report](https://github.test/org/models/actions/runs/77)"));
    let check_runs = forge.check_runs();
    assert_eq!(check_runs[0]["name"], "gantry/report");
    assert_eq!(check_runs[0]["head_sha"], HEAD_SHA);
    assert_eq!(check_runs[0]["conclusion"], "success");
    assert!(
        check_runs[0]["output"]["summary"]
            .as_str()
            .map_or(0, |summary| summary.chars().count())
            <= 65_535
    );
}

#[test]
fn gitlab_notes_are_sticky_and_statuses_use_gitlab_states() {
    let forge = FakeForge::start();
    let mut step = Step::gitlab_merge_request(4);
    step.set("CI_API_V4_URL", &forge.gitlab_url())
        .set("GITLAB_TOKEN", "glpat-secret");
    step.write("r.md", "# Data: warn\n");
    for verdict in ["warn", "fail"] {
        let outcome = step.run(&[
            "report",
            "--file",
            "r.md",
            "--verdict",
            verdict,
            "--name",
            "data",
        ]);
        assert_eq!(
            outcome.code,
            if verdict == "fail" { 1 } else { 0 },
            "{}",
            outcome.transcript()
        );
    }
    let notes = forge.comments(4);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0]
            .1
            .contains("<!-- gantry:sticky eval :: report :: data -->")
    );
    let statuses = forge.statuses();
    assert_eq!(
        statuses
            .iter()
            .map(|status| status["state"].as_str().unwrap_or_default())
            .collect::<Vec<_>>(),
        ["success", "failed"]
    );
    assert_eq!(statuses[0]["name"], "gantry/report/data");
    assert!(
        forge
            .requests()
            .iter()
            .all(|request| request.credential.as_deref() == Some("glpat-secret"))
    );
    assert!(forge.requests().iter().any(|request| request.path
        == "/api/v4/projects/5/merge_requests/4/notes?per_page=100&page=1&sort=asc"));
}

#[test]
fn gitlab_job_token_cannot_write_and_says_what_to_set() {
    let forge = FakeForge::start();
    let mut step = Step::gitlab_merge_request(5);
    step.set("CI_API_V4_URL", &forge.gitlab_url())
        .set("CI_JOB_TOKEN", "job-token-value");
    step.write("r.md", "# x\n");
    let outcome = step.run(&["report", "--file", "r.md"]);
    assert_eq!(outcome.code, 0, "{}", outcome.transcript());
    assert!(outcome.stderr.contains("warning: comment skipped: CI_JOB_TOKEN cannot post merge request notes; set GITLAB_TOKEN"), "{}", outcome.stderr);
    assert!(
        outcome
            .stderr
            .contains("warning: status skipped: CI_JOB_TOKEN cannot set commit statuses"),
        "{}",
        outcome.stderr
    );
    assert!(forge.comments(5).is_empty());
    assert!(!outcome.stderr.contains("job-token-value"));
}

#[test]
fn a_push_has_no_pull_request_so_the_comment_goes_on_the_commit() {
    let forge = FakeForge::start();
    let mut step = Step::github();
    step.set("GITHUB_API_URL", forge.url())
        .set("GITHUB_TOKEN", "ghs_token")
        .set("GITHUB_EVENT_NAME", "push");
    step.write("data-update.md", "# New training data\n\nwarn\n");
    let first = step.run(&[
        "report",
        "--file",
        "data-update.md",
        "--verdict",
        "warn",
        "--publish",
        "comment",
        "--name",
        "data-update",
    ]);
    assert_eq!(first.code, 0, "{}", first.transcript());
    let again = step.run(&[
        "report",
        "--file",
        "data-update.md",
        "--verdict",
        "pass",
        "--publish",
        "comment",
        "--name",
        "data-update",
    ]);
    assert_eq!(again.code, 0, "{}", again.transcript());
    let comments = forge.commit_comments("0000000000000000000000000000000000000merge");
    assert_eq!(comments.len(), 1, "one comment, edited: {comments:?}");
    assert!(
        comments[0].1.starts_with("# New training data"),
        "{comments:?}"
    );
    assert!(forge.comments(0).is_empty());
    let outputs = crate::support::github_outputs(&step.read("github_output"));
    assert_eq!(
        outputs.get("published").map(String::as_str),
        Some("comment"),
        "{outputs:?}"
    );

    // A report longer than a commit comment may be is cut, marker kept, not refused.
    step.write(
        "data-update.md",
        &format!("# New training data\n\n{}\n", "x".repeat(70_000)),
    );
    let long = step.run(&[
        "report",
        "--file",
        "data-update.md",
        "--publish",
        "comment",
        "--name",
        "data-update",
    ]);
    assert_eq!(long.code, 0, "{}", long.transcript());
    let comments = forge.commit_comments("0000000000000000000000000000000000000merge");
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].1.chars().count() <= 65_536);
    assert!(
        comments[0].1.contains("gantry:sticky"),
        "the marker survives the cut"
    );
}
