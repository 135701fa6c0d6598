//! The run gantry is part of: repository, commit, pull/merge request, links back to the job.

use crate::environment::{EnvVars, Environment, Platform};
use crate::error::{Error, Result};

/// The pull request (GitHub) or merge request (GitLab) a run belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRequest {
    /// PR number or MR iid.
    pub number: u64,
    /// The head commit of the change: statuses and check runs go here, not
    /// on GitHub's temporary merge commit.
    pub head_sha: Option<String>,
    /// Whether the change comes from a fork (whose token is read-only on GitHub).
    pub from_fork: bool,
}

/// What gantry knows about the CI run it is part of.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunContext {
    /// Where it runs.
    pub platform: Option<Platform>,
    /// `owner/name` (GitHub) or `group/project` (GitLab).
    pub repository: Option<String>,
    /// Numeric project id (GitLab).
    pub project_id: Option<String>,
    /// The commit the run is for.
    pub sha: Option<String>,
    /// The branch, tag or PR ref.
    pub git_ref: Option<String>,
    /// The triggering event (`pull_request`, `schedule`, `merge_request_event`…).
    pub event: Option<String>,
    /// Workflow name (GitHub) or job name (GitLab): part of sticky comment keys.
    pub workflow: Option<String>,
    /// Who triggered the run: the GitHub actor, the GitLab user, or the local user.
    pub actor: Option<String>,
    /// Base URL of the REST API.
    pub api_url: Option<String>,
    /// Link to this run's log page.
    pub run_url: Option<String>,
    /// The PR/MR, when the run is for one.
    pub change_request: Option<ChangeRequest>,
    /// The environment the job deploys to, when the forge tracks the job
    /// itself as a deployment (GitLab's `environment:` keyword).
    pub job_environment: Option<String>,
}

impl RunContext {
    /// Reads the context for `platform`. On GitHub the event payload is read
    /// for the PR number, head commit and fork status.
    pub fn from_environment(platform: Platform, environment: &Environment) -> Result<RunContext> {
        let get = |name: &str| environment.get(name).map(str::to_owned);
        match platform {
            Platform::GitHub => {
                let repository = get(EnvVars::GITHUB_REPOSITORY);
                let server_url = get(EnvVars::GITHUB_SERVER_URL)
                    .unwrap_or_else(|| "https://github.com".to_owned());
                let run_url = match (&repository, environment.get(EnvVars::GITHUB_RUN_ID)) {
                    (Some(repository), Some(run_id)) => {
                        Some(format!("{server_url}/{repository}/actions/runs/{run_id}"))
                    }
                    _ => None,
                };
                let payload = match environment.get(EnvVars::GITHUB_EVENT_PATH) {
                    Some(path) => Some(read_event(path)?),
                    None => None,
                };
                let change_request =
                    github_change_request(payload.as_ref(), environment.get(EnvVars::GITHUB_REF));
                Ok(RunContext {
                    platform: Some(platform),
                    repository,
                    project_id: None,
                    sha: get(EnvVars::GITHUB_SHA),
                    git_ref: get(EnvVars::GITHUB_REF),
                    event: get(EnvVars::GITHUB_EVENT_NAME),
                    workflow: get(EnvVars::GITHUB_WORKFLOW),
                    actor: get(EnvVars::GITHUB_ACTOR),
                    api_url: Some(
                        get(EnvVars::GITHUB_API_URL)
                            .unwrap_or_else(|| "https://api.github.com".to_owned()),
                    ),
                    run_url,
                    change_request,
                    job_environment: None,
                })
            }
            Platform::GitLab => {
                let change_request = environment
                    .get(EnvVars::CI_MERGE_REQUEST_IID)
                    .and_then(|iid| iid.parse().ok())
                    .map(|number| ChangeRequest {
                        number,
                        head_sha: get(EnvVars::CI_COMMIT_SHA),
                        from_fork: matches!(
                            (environment.get(EnvVars::CI_MERGE_REQUEST_SOURCE_PROJECT_ID), environment.get(EnvVars::CI_MERGE_REQUEST_PROJECT_ID)),
                            (Some(source), Some(target)) if source != target
                        ),
                    });
                Ok(RunContext {
                    platform: Some(platform),
                    repository: get(EnvVars::CI_PROJECT_PATH),
                    project_id: get(EnvVars::CI_PROJECT_ID),
                    sha: get(EnvVars::CI_COMMIT_SHA),
                    git_ref: get(EnvVars::CI_COMMIT_REF_NAME),
                    event: get(EnvVars::CI_PIPELINE_SOURCE),
                    workflow: get(EnvVars::CI_JOB_NAME),
                    actor: get(EnvVars::GITLAB_USER_LOGIN),
                    api_url: get(EnvVars::CI_API_V4_URL),
                    run_url: get(EnvVars::CI_JOB_URL),
                    change_request,
                    job_environment: get(EnvVars::CI_ENVIRONMENT_NAME),
                })
            }
            Platform::Local => Ok(RunContext {
                platform: Some(platform),
                actor: get(EnvVars::USER),
                ..RunContext::default()
            }),
        }
    }

    /// The commit statuses and check runs should be attached to: the PR head
    /// when there is one, else the run's commit.
    pub fn status_sha(&self) -> Option<&str> {
        self.change_request
            .as_ref()
            .and_then(|change| change.head_sha.as_deref())
            .or(self.sha.as_deref())
    }
}

fn read_event(path: &str) -> Result<serde_json::Value> {
    let error = |reason: String| Error::CiFile {
        path: path.to_owned(),
        variable: EnvVars::GITHUB_EVENT_PATH.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|source| error(source.to_string()))?;
    serde_json::from_str(&text).map_err(|source| error(format!("not JSON: {source}")))
}

fn github_change_request(
    payload: Option<&serde_json::Value>,
    git_ref: Option<&str>,
) -> Option<ChangeRequest> {
    let pull_request = payload
        .and_then(|payload| payload.get("pull_request"))
        .filter(|value| value.is_object());
    if let Some(pull_request) = pull_request {
        let number = pull_request.get("number")?.as_u64()?;
        let head_repository = pull_request
            .pointer("/head/repo/full_name")
            .and_then(serde_json::Value::as_str);
        let base_repository = pull_request
            .pointer("/base/repo/full_name")
            .and_then(serde_json::Value::as_str);
        // A deleted fork has `head.repo: null`; treat it as a fork too.
        let from_fork = head_repository.is_none() || head_repository != base_repository;
        let head_sha = pull_request
            .pointer("/head/sha")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        return Some(ChangeRequest {
            number,
            head_sha,
            from_fork,
        });
    }
    let number = git_ref?
        .strip_prefix("refs/pull/")?
        .split('/')
        .next()?
        .parse()
        .ok()?;
    Some(ChangeRequest {
        number,
        head_sha: None,
        from_fork: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_pull_request_from_a_fork() {
        let directory = tempfile::tempdir().expect("tempdir");
        let event = directory.path().join("event.json");
        std::fs::write(
            &event,
            r#"{"pull_request": {"number": 42, "head": {"sha": "abc123", "repo": {"full_name": "someone/gantry"}}, "base": {"repo": {"full_name": "org/gantry"}}}}"#,
        )
        .expect("write");
        let environment = Environment::from_pairs([
            ("GITHUB_REPOSITORY", "org/gantry"),
            ("GITHUB_SHA", "merge999"),
            ("GITHUB_RUN_ID", "7"),
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("GITHUB_EVENT_PATH", event.to_str().expect("utf8")),
        ]);
        let context =
            RunContext::from_environment(Platform::GitHub, &environment).expect("context");
        assert_eq!(
            context.change_request,
            Some(ChangeRequest {
                number: 42,
                head_sha: Some("abc123".into()),
                from_fork: true
            })
        );
        assert_eq!(context.status_sha(), Some("abc123"));
        assert_eq!(
            context.run_url.as_deref(),
            Some("https://github.com/org/gantry/actions/runs/7")
        );
        assert_eq!(context.api_url.as_deref(), Some("https://api.github.com"));
    }

    #[test]
    fn github_pull_request_number_from_ref_without_payload() {
        let environment =
            Environment::from_pairs([("GITHUB_REF", "refs/pull/17/merge"), ("GITHUB_SHA", "s")]);
        let context =
            RunContext::from_environment(Platform::GitHub, &environment).expect("context");
        assert_eq!(
            context.change_request.as_ref().map(|change| change.number),
            Some(17)
        );
        assert_eq!(context.status_sha(), Some("s"));
    }

    #[test]
    fn unreadable_event_payload_names_the_file() {
        let environment =
            Environment::from_pairs([("GITHUB_EVENT_PATH", "/nonexistent/event.json")]);
        let error =
            RunContext::from_environment(Platform::GitHub, &environment).expect_err("missing");
        assert!(
            error
                .to_string()
                .starts_with("cannot read /nonexistent/event.json (from $GITHUB_EVENT_PATH)"),
            "{error}"
        );
    }

    #[test]
    fn gitlab_merge_request_from_a_fork() {
        let environment = Environment::from_pairs([
            ("CI_PROJECT_ID", "5"),
            ("CI_MERGE_REQUEST_IID", "9"),
            ("CI_MERGE_REQUEST_PROJECT_ID", "5"),
            ("CI_MERGE_REQUEST_SOURCE_PROJECT_ID", "77"),
            ("CI_COMMIT_SHA", "def"),
        ]);
        let context =
            RunContext::from_environment(Platform::GitLab, &environment).expect("context");
        assert_eq!(
            context.change_request,
            Some(ChangeRequest {
                number: 9,
                head_sha: Some("def".into()),
                from_fork: true
            })
        );
        assert_eq!(context.project_id.as_deref(), Some("5"));
    }
}

#[cfg(test)]
mod hostile_input {
    use proptest::prelude::*;

    use crate::environment::{Environment, Platform};

    proptest! {
        #![proptest_config(gantry_test::adversarial::config())]

        /// The event payload a runner hands over is read as JSON: hostile
        /// bytes are a context or an error, never a panic.
        #[test]
        fn hostile_events_are_errors(bytes in gantry_test::adversarial::bytes()) {
            let directory = tempfile::tempdir().expect("tempdir");
            let event = directory.path().join("event.json");
            std::fs::write(&event, &bytes).expect("write");
            let event = event.display().to_string();
            let environment = Environment::from_pairs([
                ("GITHUB_ACTIONS", "true"),
                ("GITHUB_REPOSITORY", "org/models"),
                ("GITHUB_EVENT_NAME", "pull_request"),
                ("GITHUB_EVENT_PATH", event.as_str()),
            ]);
            let _ = super::RunContext::from_environment(Platform::GitHub, &environment);
        }
    }
}
