//! The forge clients against the fake GitHub and GitLab APIs: deployments, the part no command drives yet.

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
