//! The forge clients against the fake GitHub and GitLab APIs: deployments and tracking issues.

use gantry_ci::{
    Deployment, DeploymentRecord, DeploymentState, Environment, ForgeClient, Platform, RunContext,
};
use gantry_test::FakeForge;

fn deployment() -> Deployment {
    Deployment {
        environment: "production".into(),
        git_ref: "main".into(),
        sha: "abc123".into(),
        description: "model sha256:00ff".into(),
        production: true,
        payload: serde_json::Map::from_iter([("digest".to_owned(), "sha256:00ff".into())]),
    }
}

#[tokio::test]
async fn github_deployments_are_created_and_move_through_states() {
    let forge = FakeForge::start();
    let environment = Environment::from_pairs([
        ("GITHUB_REPOSITORY", "org/models"),
        ("GITHUB_API_URL", forge.url()),
        ("GITHUB_TOKEN", "ghs_x"),
        ("GITHUB_RUN_ID", "5"),
    ]);
    let context = RunContext::from_environment(Platform::GitHub, &environment).expect("context");
    let client = ForgeClient::from_context(&context, &environment, &gantry_core::Redactor::new())
        .expect("client");
    let record = client
        .create_deployment(&deployment())
        .await
        .expect("deployment");
    client
        .set_deployment_state(
            &record,
            DeploymentState::InProgress,
            "canary at 10%",
            context.run_url.as_deref(),
        )
        .await
        .expect("state");
    client
        .set_deployment_state(&record, DeploymentState::Success, "promoted", None)
        .await
        .expect("state");
    let deployments = forge.deployments();
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0]["environment"], "production");
    assert_eq!(deployments[0]["ref"], "abc123");
    assert_eq!(deployments[0]["required_contexts"], serde_json::json!([]));
    assert_eq!(deployments[0]["auto_merge"], false);
    assert_eq!(deployments[0]["payload"]["digest"], "sha256:00ff");
    assert_eq!(deployments[0]["payload"]["git_ref"], "main");
    let states: Vec<_> = forge
        .deployment_statuses()
        .iter()
        .map(|status| (status["deployment_id"].as_u64(), status["state"].clone()))
        .collect();
    assert_eq!(
        states,
        [
            (Some(record.id), "in_progress".into()),
            (Some(record.id), "success".into())
        ]
    );
    assert_eq!(
        forge.deployment_statuses()[0]["log_url"],
        "https://github.com/org/models/actions/runs/5"
    );
}

#[tokio::test]
async fn gitlab_deployments_need_a_project_token() {
    let forge = FakeForge::start();
    let mut pairs = vec![
        ("CI_PROJECT_ID", "5".to_owned()),
        ("CI_API_V4_URL", forge.gitlab_url()),
        ("CI_JOB_TOKEN", "job".to_owned()),
    ];
    let environment = Environment::from_pairs(pairs.clone());
    let context = RunContext::from_environment(Platform::GitLab, &environment).expect("context");
    let client = ForgeClient::from_context(&context, &environment, &gantry_core::Redactor::new())
        .expect("client");
    let error = client
        .create_deployment(&deployment())
        .await
        .expect_err("job token");
    assert!(
        error
            .to_string()
            .contains("CI_JOB_TOKEN cannot create deployments"),
        "{error}"
    );
    assert!(
        forge.requests().is_empty(),
        "nothing is sent with a token that cannot write"
    );

    pairs.push(("GITLAB_TOKEN", "glpat".to_owned()));
    let environment = Environment::from_pairs(pairs);
    let client = ForgeClient::from_context(&context, &environment, &gantry_core::Redactor::new())
        .expect("client");
    let record = client
        .create_deployment(&deployment())
        .await
        .expect("deployment");
    client
        .set_deployment_state(&record, DeploymentState::Failure, "rolled back", None)
        .await
        .expect("state");
    assert_eq!(forge.deployments()[0]["status"], "running");
    assert_eq!(forge.deployment_statuses()[0]["status"], "failed");
    assert_eq!(forge.deployment_statuses()[0]["deployment_id"], record.id);
}

#[tokio::test]
async fn an_unreachable_forge_names_the_url_and_attempts() {
    let environment = Environment::from_pairs([
        ("GITHUB_REPOSITORY", "org/models"),
        ("GITHUB_API_URL", "http://127.0.0.1:9"),
        ("GITHUB_TOKEN", "ghs_x"),
        ("GANTRY_HTTP_ATTEMPTS", "2"),
        ("GANTRY_HTTP_BACKOFF_MS", "1"),
    ]);
    let context = RunContext::from_environment(Platform::GitHub, &environment).expect("context");
    let client = ForgeClient::from_context(&context, &environment, &gantry_core::Redactor::new())
        .expect("client");
    let error = client
        .set_deployment_state(
            &DeploymentRecord { id: 1 },
            DeploymentState::Inactive,
            "x",
            None,
        )
        .await
        .expect_err("unreachable");
    let message = error.to_string();
    assert!(message.starts_with("POST http://127.0.0.1:9/repos/org/models/deployments/1/statuses failed after 2 attempt(s):"), "{message}");
}

/// A GitHub client of `forge` for org/models with `token`.
fn github_client(forge: &FakeForge, token: &str) -> ForgeClient {
    let environment = Environment::from_pairs([
        ("GITHUB_REPOSITORY", "org/models"),
        ("GITHUB_API_URL", forge.url()),
        ("GITHUB_TOKEN", token),
    ]);
    let context = RunContext::from_environment(Platform::GitHub, &environment).expect("context");
    ForgeClient::from_context(&context, &environment, &gantry_core::Redactor::new())
        .expect("client")
}

/// A GitLab client of `forge` for project 5 with a project access token.
fn gitlab_client(forge: &FakeForge) -> ForgeClient {
    let environment = Environment::from_pairs([
        ("CI_PROJECT_ID", "5"),
        ("CI_API_V4_URL", forge.gitlab_url().as_str()),
        ("GITLAB_TOKEN", "glpat-x"),
    ]);
    let context = RunContext::from_environment(Platform::GitLab, &environment).expect("context");
    ForgeClient::from_context(&context, &environment, &gantry_core::Redactor::new())
        .expect("client")
}

fn issue_key() -> gantry_ci::IssueKey {
    gantry_ci::IssueKey {
        marker: "<!-- gantry-monitor model=tiny env=production -->".into(),
        title: "tiny in production is failing".into(),
        labels: vec!["gantry-monitor".into(), "model:tiny".into()],
    }
}

/// Open, update, close, reopen: one issue all along, on either forge.
async fn one_issue_lifecycle(forge: &FakeForge, client: &ForgeClient) {
    let key = issue_key();
    // An unrelated issue with the same labels but another marker is left alone.
    let other = gantry_ci::IssueKey {
        marker: "<!-- gantry-monitor model=tiny env=staging -->".into(),
        ..issue_key()
    };
    client
        .sync_issue(&other, Some("staging is degraded"), None)
        .await
        .expect("other");
    let opened = client
        .sync_issue(&key, Some("failing: latency"), Some("ignored on open"))
        .await
        .expect("open");
    let gantry_ci::IssueOutcome::Opened(issue) = &opened else {
        panic!("{opened:?}")
    };
    let number = issue.number;
    let updated = client
        .sync_issue(
            &key,
            Some("failing: latency and quality"),
            Some("quality regressed too"),
        )
        .await
        .expect("update");
    assert!(
        matches!(&updated, gantry_ci::IssueOutcome::Updated(issue) if issue.number == number),
        "{updated:?}"
    );
    let closed = client
        .sync_issue(&key, None, Some("healthy again"))
        .await
        .expect("close");
    assert!(
        matches!(&closed, gantry_ci::IssueOutcome::Closed(issue) if issue.number == number && !issue.open),
        "{closed:?}"
    );
    let nothing = client
        .sync_issue(&key, None, Some("still healthy"))
        .await
        .expect("none");
    assert_eq!(nothing, gantry_ci::IssueOutcome::NoneOpen);
    let reopened = client
        .sync_issue(&key, Some("failing again"), Some("regressed again"))
        .await
        .expect("reopen");
    assert!(
        matches!(&reopened, gantry_ci::IssueOutcome::Reopened(issue) if issue.number == number && issue.open),
        "{reopened:?}"
    );

    let issues = forge.issues();
    assert_eq!(issues.len(), 2, "{issues:?}");
    let mine = issues
        .iter()
        .find(|issue| issue.number == number)
        .expect("mine");
    assert!(mine.open);
    assert!(mine.body.starts_with("failing again"), "{}", mine.body);
    assert!(mine.body.contains(&key.marker));
    assert_eq!(mine.labels, key.labels);
    let comments: Vec<String> = forge
        .comments(number)
        .into_iter()
        .map(|(_, body)| body)
        .collect();
    assert_eq!(
        comments,
        ["quality regressed too", "healthy again", "regressed again"]
    );
    let theirs = issues
        .iter()
        .find(|issue| issue.number != number)
        .expect("theirs");
    assert!(theirs.open && theirs.body.starts_with("staging is degraded"));
}

#[tokio::test]
async fn github_tracking_issue_is_opened_updated_closed_and_reopened() {
    let forge = FakeForge::start();
    let client = github_client(&forge, "ghs_x");
    one_issue_lifecycle(&forge, &client).await;
    let closing = forge
        .requests()
        .into_iter()
        .find(|request| request.method == "PATCH" && request.body["state"] == "closed")
        .expect("a closing PATCH");
    assert_eq!(closing.body["state_reason"], "completed");
    // The list is filtered by both labels, closed issues included.
    assert!(forge.requests().iter().any(|request| {
        request.method == "GET"
            && request
                .path
                .contains("labels=gantry-monitor%2Cmodel%3Atiny")
            && request.path.contains("state=all")
    }));
}

#[tokio::test]
async fn gitlab_tracking_issue_is_opened_updated_closed_and_reopened() {
    let forge = FakeForge::start();
    let client = gitlab_client(&forge);
    one_issue_lifecycle(&forge, &client).await;
}

#[tokio::test]
async fn a_read_only_token_cannot_open_an_issue_and_says_so() {
    let forge = FakeForge::start();
    let client = github_client(&forge, gantry_test::READ_ONLY_TOKEN);
    let error = client
        .sync_issue(&issue_key(), Some("failing"), None)
        .await
        .expect_err("403");
    let message = error.to_string();
    assert!(
        message.contains("403") && message.contains("/repos/org/models/issues"),
        "{message}"
    );
    assert!(forge.issues().is_empty());
}

#[tokio::test]
async fn a_long_issue_body_is_cut_to_the_forges_limit_and_keeps_its_marker() {
    let forge = FakeForge::start();
    let client = github_client(&forge, "ghs_x");
    let key = issue_key();
    let long = "| check | fail |\n".repeat(10_000);
    client
        .sync_issue(&key, Some(&long), None)
        .await
        .expect("open");
    let issue = &forge.issues()[0];
    assert!(issue.body.chars().count() <= 65_536, "{}", issue.body.len());
    assert!(issue.body.contains(&key.marker));
    assert!(issue.body.contains("cut to fit the forge's limit"));
    // Found again by its marker: edited, not opened twice.
    client
        .sync_issue(&key, Some(&long), None)
        .await
        .expect("update");
    assert_eq!(forge.issues().len(), 1);
}

/// One comment per key on a commit: created, then edited in place; another
/// key gets its own.
async fn one_commit_comment(forge: &FakeForge, client: &ForgeClient) {
    let sha = "0123456789abcdef0123456789abcdef01234567";
    let key = gantry_ci::StickyKey {
        workflow: "llm-data-update".into(),
        command: "report".into(),
        name: "data-update".into(),
    };
    let first = client
        .upsert_commit_comment(sha, &key, "data: warn")
        .await
        .expect("created");
    assert!(
        matches!(first, gantry_ci::CommentOutcome::Created { .. }),
        "{first:?}"
    );
    let second = client
        .upsert_commit_comment(sha, &key, "data: pass")
        .await
        .expect("updated");
    assert!(
        matches!(second, gantry_ci::CommentOutcome::Updated { .. }),
        "{second:?}"
    );
    let comments = forge.commit_comments(sha);
    assert_eq!(comments.len(), 1, "{comments:?}");
    assert!(comments[0].1.starts_with("data: pass"), "{comments:?}");
    assert!(comments[0].1.contains(&key.marker()), "{comments:?}");
    let other = gantry_ci::StickyKey {
        name: "other".into(),
        ..key
    };
    client
        .upsert_commit_comment(sha, &other, "another")
        .await
        .expect("created");
    assert_eq!(forge.commit_comments(sha).len(), 2);
}

#[tokio::test]
async fn github_commit_comments_are_sticky() {
    let forge = FakeForge::start();
    let client = github_client(&forge, "ghs_token");
    one_commit_comment(&forge, &client).await;
    let requests = forge.requests();
    assert!(
        requests.iter().any(|request| request.method == "PATCH"
            && request.path.contains("/repos/org/models/comments/")),
        "{requests:?}"
    );
}

#[tokio::test]
async fn gitlab_commit_notes_are_sticky() {
    let forge = FakeForge::start();
    let client = gitlab_client(&forge);
    one_commit_comment(&forge, &client).await;
}
