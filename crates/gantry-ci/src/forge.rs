//! The forge interface the commands use: sticky comments, statuses, check runs, deployments.

use gantry_core::{Redactor, Secret};

use crate::context::RunContext;
use crate::environment::{EnvVars, Environment, Platform};
use crate::error::{Error, Result};
use crate::github::GitHubClient;
use crate::gitlab::{GitLabClient, GitLabToken};
use crate::http::RetryPolicy;

/// Identifies one sticky comment: one per (workflow, command, name) on a PR/MR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyKey {
    /// The workflow (GitHub) or job (GitLab) name.
    pub workflow: String,
    /// The gantry command, e.g. `eval-gate`.
    pub command: String,
    /// A user-chosen name, so one workflow can keep several comments.
    pub name: String,
}

impl StickyKey {
    /// The hidden HTML marker that finds the comment again. Parts are
    /// sanitized so no user text can close the HTML comment early.
    pub fn marker(&self) -> String {
        let clean = |text: &str| -> String {
            let kept: String = text
                .chars()
                .map(|c| {
                    if c.is_alphanumeric() || "._-/ ".contains(c) {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            // `--` may not appear inside an HTML comment.
            kept.replace("--", "-_")
        };
        format!(
            "<!-- gantry:sticky {} :: {} :: {} -->",
            clean(&self.workflow),
            clean(&self.command),
            clean(&self.name)
        )
    }
}

/// What happened to a sticky comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentOutcome {
    /// No comment had the marker; a new one was posted.
    Created {
        /// Comment or note id.
        id: u64,
        /// Link to it, when the forge gave one.
        url: Option<String>,
    },
    /// The comment with the marker was edited in place.
    Updated {
        /// Comment or note id.
        id: u64,
        /// Link to it, when the forge gave one.
        url: Option<String>,
    },
}

/// A commit status state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitState {
    /// Still running.
    Pending,
    /// Passed.
    Success,
    /// The check said no.
    Failure,
    /// The check could not run.
    Error,
}

/// A commit status (GitHub statuses API, GitLab commit statuses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    /// The commit.
    pub sha: String,
    /// Stable name of the status (`gantry/eval-gate`), the required-check name.
    pub context: String,
    /// Its state.
    pub state: CommitState,
    /// A short description; GitHub keeps 140 characters.
    pub description: String,
    /// A link to details.
    pub target_url: Option<String>,
}

/// A completed GitHub check run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRun {
    /// The commit.
    pub sha: String,
    /// The check's name.
    pub name: String,
    /// `success`, `failure` or `neutral`.
    pub conclusion: CommitState,
    /// The title of its output.
    pub title: String,
    /// The Markdown summary (GitHub keeps 65,535 characters).
    pub summary: String,
    /// A link to details.
    pub details_url: Option<String>,
}

/// A deployment to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// Environment name, e.g. `production`.
    pub environment: String,
    /// The branch or tag deployed.
    pub git_ref: String,
    /// The commit deployed.
    pub sha: String,
    /// What is deployed (e.g. a model digest).
    pub description: String,
    /// Whether the environment is the production one.
    pub production: bool,
}

/// A deployment the forge accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentRecord {
    /// The forge's deployment id.
    pub id: u64,
}

/// The state of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeploymentState {
    /// Rolling out.
    InProgress,
    /// Rolled out and healthy.
    Success,
    /// Rolled back or failed.
    Failure,
    /// Superseded or cancelled.
    Inactive,
}

/// A client of the forge the run belongs to.
#[derive(Debug)]
pub enum ForgeClient {
    /// GitHub or GitHub Enterprise Server.
    GitHub(GitHubClient),
    /// GitLab.com or a self-managed GitLab.
    GitLab(GitLabClient),
}

impl ForgeClient {
    /// A client for the run's forge with the token from the environment
    /// (`GANTRY_GITHUB_TOKEN`, then `GITHUB_TOKEN`; `GITLAB_TOKEN`, then
    /// `CI_JOB_TOKEN`). Fails with a note on what to set when there is none.
    ///
    /// Every request body passes through `redactor`.
    pub fn from_context(
        context: &RunContext,
        environment: &Environment,
        redactor: &Redactor,
    ) -> Result<ForgeClient> {
        let policy = RetryPolicy::from_environment(environment);
        match context.platform {
            Some(Platform::GitHub) => {
                let token = environment
                    .get(EnvVars::GANTRY_GITHUB_TOKEN)
                    .or_else(|| environment.get(EnvVars::GITHUB_TOKEN))
                    .ok_or_else(|| Error::ForgeUnavailable {
                        platform: "GitHub",
                        reason: "no token: add `env: GITHUB_TOKEN: ${{ github.token }}` to the step (with `pull-requests: write`, `statuses: write` or `checks: write` permissions as needed)".to_owned(),
                    })?;
                let repository =
                    context
                        .repository
                        .as_deref()
                        .ok_or_else(|| Error::ForgeUnavailable {
                            platform: "GitHub",
                            reason: "$GITHUB_REPOSITORY is not set".to_owned(),
                        })?;
                let api_url = context
                    .api_url
                    .as_deref()
                    .unwrap_or("https://api.github.com");
                Ok(ForgeClient::GitHub(
                    GitHubClient::new(api_url, repository, &Secret::new(token), policy)?
                        .with_redactor(redactor.clone()),
                ))
            }
            Some(Platform::GitLab) => {
                let token = match (
                    environment.get(EnvVars::GITLAB_TOKEN),
                    environment.get(EnvVars::CI_JOB_TOKEN),
                ) {
                    (Some(token), _) => GitLabToken::Private(Secret::new(token)),
                    (None, Some(token)) => GitLabToken::Job(Secret::new(token)),
                    (None, None) => {
                        return Err(Error::ForgeUnavailable {
                            platform: "GitLab",
                            reason: "no token: set GITLAB_TOKEN (a project access token with `api` scope) as a masked CI/CD variable".to_owned(),
                        });
                    }
                };
                let project = context
                    .project_id
                    .as_deref()
                    .or(context.repository.as_deref())
                    .ok_or_else(|| Error::ForgeUnavailable {
                        platform: "GitLab",
                        reason: "$CI_PROJECT_ID is not set".to_owned(),
                    })?;
                let api_url =
                    context
                        .api_url
                        .as_deref()
                        .ok_or_else(|| Error::ForgeUnavailable {
                            platform: "GitLab",
                            reason: "$CI_API_V4_URL is not set".to_owned(),
                        })?;
                Ok(ForgeClient::GitLab(
                    GitLabClient::new(api_url, project, token, policy)?
                        .with_redactor(redactor.clone()),
                ))
            }
            Some(Platform::Local) | None => Err(Error::ForgeUnavailable {
                platform: "forge",
                reason: "not running in GitHub Actions or GitLab CI".to_owned(),
            }),
        }
    }

    /// The longest comment body the forge accepts, in characters.
    pub fn comment_limit(&self) -> usize {
        match self {
            ForgeClient::GitHub(_) => 65_536,
            ForgeClient::GitLab(_) => 1_000_000,
        }
    }

    /// Creates or edits the one comment on PR/MR `number` that carries `key`'s marker.
    pub async fn upsert_sticky_comment(
        &self,
        number: u64,
        key: &StickyKey,
        body: &str,
    ) -> Result<CommentOutcome> {
        match self {
            ForgeClient::GitHub(client) => client.upsert_sticky_comment(number, key, body).await,
            ForgeClient::GitLab(client) => client.upsert_sticky_note(number, key, body).await,
        }
    }

    /// Sets a commit status.
    pub async fn set_commit_status(&self, status: &CommitStatus) -> Result<()> {
        match self {
            ForgeClient::GitHub(client) => client.set_commit_status(status).await,
            ForgeClient::GitLab(client) => client.set_commit_status(status).await,
        }
    }

    /// Creates a completed check run (GitHub); on GitLab, a commit status stands in.
    pub async fn create_check_run(&self, check_run: &CheckRun) -> Result<()> {
        match self {
            ForgeClient::GitHub(client) => client.create_check_run(check_run).await,
            ForgeClient::GitLab(client) => {
                let status = CommitStatus {
                    sha: check_run.sha.clone(),
                    context: check_run.name.clone(),
                    state: check_run.conclusion,
                    description: check_run.title.clone(),
                    target_url: check_run.details_url.clone(),
                };
                client.set_commit_status(&status).await
            }
        }
    }

    /// Creates a deployment.
    pub async fn create_deployment(&self, deployment: &Deployment) -> Result<DeploymentRecord> {
        match self {
            ForgeClient::GitHub(client) => client.create_deployment(deployment).await,
            ForgeClient::GitLab(client) => client.create_deployment(deployment).await,
        }
    }

    /// Moves a deployment to `state`.
    pub async fn set_deployment_state(
        &self,
        record: &DeploymentRecord,
        state: DeploymentState,
        description: &str,
        log_url: Option<&str>,
    ) -> Result<()> {
        match self {
            ForgeClient::GitHub(client) => {
                client
                    .set_deployment_state(record, state, description, log_url)
                    .await
            }
            ForgeClient::GitLab(client) => client.set_deployment_state(record, state).await,
        }
    }
}

/// Cuts `body` to at most `limit` characters, ending with a note that links
/// to the full report. Cuts at a line boundary so tables stay whole.
pub fn truncate_comment_body(body: &str, limit: usize, full_report_url: Option<&str>) -> String {
    if body.chars().count() <= limit {
        return body.to_owned();
    }
    let note = match full_report_url {
        Some(url) => format!("\n\n---\n:warning: This comment was cut to fit the forge's limit. [Full report]({url})\n"),
        None => "\n\n---\n:warning: This comment was cut to fit the forge's limit; the full report is in the job's artifacts.\n".to_owned(),
    };
    let keep_chars = limit.saturating_sub(note.chars().count());
    let byte_end = body
        .char_indices()
        .nth(keep_chars)
        .map_or(body.len(), |(index, _)| index);
    let cut = body[..byte_end].rfind('\n').unwrap_or(byte_end);
    format!("{}{note}", &body[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_cannot_be_closed_by_user_text() {
        let key = StickyKey {
            workflow: "ci --> <script>".into(),
            command: "eval-gate".into(),
            name: "default".into(),
        };
        assert_eq!(
            key.marker(),
            "<!-- gantry:sticky ci -__ _script_ :: eval-gate :: default -->"
        );
    }

    #[test]
    fn truncation_keeps_whole_lines_and_links_the_report() {
        let body: String = (0..10_000).map(|i| format!("| {i} | ✓ |\n")).collect();
        let cut = truncate_comment_body(&body, 65_536, Some("https://example.test/run/1"));
        assert!(cut.chars().count() <= 65_536, "{}", cut.chars().count());
        assert!(cut.ends_with("[Full report](https://example.test/run/1)\n"));
        let kept = cut.split("\n\n---\n").next().expect("body");
        assert!(kept.ends_with("| ✓ |"), "{}", &kept[kept.len() - 10..]);
        assert_eq!(truncate_comment_body("short", 10, None), "short");
    }
}
