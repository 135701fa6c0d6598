//! The forge interface the commands use: sticky comments, statuses, check runs, deployments, tracking issues.

use gantry_core::{Redactor, Secret};

use crate::context::RunContext;
use crate::environment::{EnvVars, Environment, Platform};
use crate::error::{Error, Result};
use crate::forge_types::{
    CheckRun, CommentOutcome, CommitStatus, Deployment, DeploymentRecord, DeploymentState,
    IssueKey, IssueOutcome, StickyKey, TrackedIssue,
};
use crate::github::GitHubClient;
use crate::gitlab::{GitLabClient, GitLabToken};

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
        let policy = crate::http::retry_policy(environment);
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

    /// Creates or edits the one comment on commit `sha` that carries `key`'s
    /// marker: where a push's result goes, having no PR/MR.
    pub async fn upsert_commit_comment(
        &self,
        sha: &str,
        key: &StickyKey,
        body: &str,
    ) -> Result<CommentOutcome> {
        match self {
            ForgeClient::GitHub(client) => client.upsert_commit_comment(sha, key, body).await,
            ForgeClient::GitLab(client) => client.upsert_commit_note(sha, key, body).await,
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

    /// The issues carrying every label in `labels`, open and closed, newest first.
    pub async fn list_issues(&self, labels: &[String]) -> Result<Vec<TrackedIssue>> {
        match self {
            ForgeClient::GitHub(client) => client.list_issues(labels).await,
            ForgeClient::GitLab(client) => client.list_issues(labels).await,
        }
    }

    /// Keeps the one issue `key` names in step with a condition: with a
    /// `body`, the condition holds — the open issue is edited in place (or
    /// the newest closed one reopened, or a new one opened) and `comment`,
    /// when given, is added; without, the condition is over — the open issue
    /// gets `comment` and is closed. The marker is appended to the body.
    pub async fn sync_issue(
        &self,
        key: &IssueKey,
        body: Option<&str>,
        comment: Option<&str>,
    ) -> Result<IssueOutcome> {
        let issues = self.list_issues(&key.labels).await?;
        let mine = |issue: &&TrackedIssue| issue.body.contains(&key.marker);
        let open = issues.iter().filter(mine).find(|issue| issue.open);
        let newest = issues.iter().find(mine);
        // The body is cut to the forge's limit (GitHub: 65,536 characters)
        // before the marker is added, so the marker always survives.
        let room = self
            .comment_limit()
            .saturating_sub(key.marker.chars().count() + 3);
        let with_marker = |body: &str| {
            format!(
                "{}\n\n{}\n",
                crate::forge_types::truncate_comment_body(body, room, None),
                key.marker
            )
        };
        match (body, open, newest) {
            (Some(body), Some(issue), _) => {
                let edited = self
                    .edit_issue(issue.number, Some(&with_marker(body)), None)
                    .await?;
                if let Some(comment) = comment {
                    self.comment_issue(issue.number, comment).await?;
                }
                Ok(IssueOutcome::Updated(edited))
            }
            (Some(body), None, Some(closed)) => {
                let edited = self
                    .edit_issue(closed.number, Some(&with_marker(body)), Some(true))
                    .await?;
                if let Some(comment) = comment {
                    self.comment_issue(closed.number, comment).await?;
                }
                Ok(IssueOutcome::Reopened(edited))
            }
            (Some(body), None, None) => {
                let created = match self {
                    ForgeClient::GitHub(client) => {
                        client
                            .create_issue(&key.title, &with_marker(body), &key.labels)
                            .await?
                    }
                    ForgeClient::GitLab(client) => {
                        client
                            .create_issue(&key.title, &with_marker(body), &key.labels)
                            .await?
                    }
                };
                Ok(IssueOutcome::Opened(created))
            }
            (None, Some(issue), _) => {
                if let Some(comment) = comment {
                    self.comment_issue(issue.number, comment).await?;
                }
                let closed = self.edit_issue(issue.number, None, Some(false)).await?;
                Ok(IssueOutcome::Closed(closed))
            }
            (None, None, _) => Ok(IssueOutcome::NoneOpen),
        }
    }

    async fn edit_issue(
        &self,
        number: u64,
        body: Option<&str>,
        open: Option<bool>,
    ) -> Result<TrackedIssue> {
        match self {
            ForgeClient::GitHub(client) => client.edit_issue(number, body, open).await,
            ForgeClient::GitLab(client) => client.edit_issue(number, body, open).await,
        }
    }

    async fn comment_issue(&self, number: u64, body: &str) -> Result<()> {
        match self {
            ForgeClient::GitHub(client) => client.comment_issue(number, body).await,
            ForgeClient::GitLab(client) => client.comment_issue(number, body).await,
        }
    }
}
