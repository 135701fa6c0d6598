//! GitHub REST API through `octocrab`'s typed API: sticky PR comments,
//! statuses, check runs, deployments.
//!
//! `octocrab` carries authentication, the base URL (GitHub Enterprise
//! Server included), the request and response models and the HTTP client;
//! every call goes through gantry's retry loop, which reads the status and
//! headers octocrab keeps on a refused call (`Retry-After`, the rate-limit
//! reset) to decide whether and when to try again.

use octocrab::Octocrab;
use octocrab::models::issues::Comment;
use octocrab::params::checks::{CheckRunConclusion, CheckRunOutput, CheckRunStatus};

use gantry_core::retry::{Attempt, retry};
use gantry_core::{Redactor, RetryPolicy, Secret};

use crate::error::{Error, Result};
use crate::forge_types::{
    CheckRun, CommentOutcome, CommitState, CommitStatus, Deployment, DeploymentRecord,
    DeploymentState, StickyKey, TrackedIssue,
};
use crate::http::{find_in_pages, transport_reason, with_details};

/// Pages of 100 comments gantry reads to find its sticky comment.
const MAX_COMMENT_PAGES: u32 = 30;
/// Pages of 100 issues gantry reads to find a tracking issue.
const MAX_ISSUE_PAGES: u32 = 10;

/// An issue as the dispatcher sees it.
fn tracked(issue: octocrab::models::issues::Issue) -> TrackedIssue {
    TrackedIssue {
        number: issue.number,
        open: issue.state == octocrab::models::IssueState::Open,
        body: issue.body.unwrap_or_default(),
        url: Some(issue.html_url.to_string()),
    }
}

/// A client for one GitHub repository.
pub struct GitHubClient {
    octocrab: Octocrab,
    api_url: String,
    repository: String,
    policy: RetryPolicy,
    /// Every request body passes through it: a report that quotes a
    /// secret never reaches the forge.
    redactor: Redactor,
}

impl std::fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubClient")
            .field("api_url", &self.api_url)
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

/// What one typed call came to, as the retry loop sees it.
enum Reply<T> {
    /// The model the call returns.
    Done(T),
    /// GitHub refused: its status, headers and message.
    Refused {
        status: u16,
        headers: http::HeaderMap,
        message: String,
    },
}

/// The headers of an answer that carries none to read (a success).
static NO_HEADERS: std::sync::LazyLock<http::HeaderMap> =
    std::sync::LazyLock::new(http::HeaderMap::new);

impl GitHubClient {
    /// A client for `repository` (`owner/name`) at `api_url`.
    pub fn new(
        api_url: &str,
        repository: &str,
        token: &Secret,
        policy: RetryPolicy,
    ) -> Result<GitHubClient> {
        let unavailable = |reason: String| Error::ForgeUnavailable {
            platform: "GitHub",
            reason,
        };
        if repository.split('/').count() != 2 || repository.split('/').any(str::is_empty) {
            return Err(unavailable(format!(
                "repository `{repository}` is not `owner/name`"
            )));
        }
        let octocrab = Octocrab::builder()
            .personal_token(token.expose().to_owned())
            .base_uri(api_url)
            .map_err(|error| unavailable(format!("API URL `{api_url}` is not a URL: {error}")))?
            .set_connect_timeout(Some(std::time::Duration::from_secs(10)))
            .set_read_timeout(Some(policy.timeout))
            .build()
            .map_err(|error| {
                unavailable(format!("cannot build a client for {api_url}: {error}"))
            })?;
        Ok(GitHubClient {
            octocrab,
            api_url: api_url.trim_end_matches('/').to_owned(),
            repository: repository.to_owned(),
            policy,
            redactor: Redactor::new(),
        })
    }

    /// Redacts every request body with `redactor` (the one every writer of
    /// the command shares).
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    /// Makes the typed call `send` (`METHOD PATH` for errors) through the
    /// retry loop: refusals GitHub asks to retry (429, 5xx, rate limits) and
    /// connection failures are tried again; any other refusal is an error
    /// with GitHub's own message.
    async fn call<T, F, Fut>(&self, method: &str, path: &str, mut send: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = octocrab::Result<T>>,
    {
        let url = format!("{}{path}", self.api_url);
        let answered = retry(
            &self.policy,
            || {
                let attempt = tokio::time::timeout(self.policy.timeout, send());
                async move {
                    match attempt.await {
                        Err(_) => Attempt::Failed(Ok(format!(
                            "no answer within {}s",
                            self.policy.timeout.as_secs()
                        ))),
                        Ok(Ok(model)) => Attempt::Answer(Reply::Done(model)),
                        Ok(Err(octocrab::Error::GitHub { source, .. })) => {
                            Attempt::Answer(Reply::Refused {
                                status: source.status_code.as_u16(),
                                headers: source.headers.clone().unwrap_or_default(),
                                message: with_details(
                                    source.message.clone(),
                                    source.errors.as_ref(),
                                ),
                            })
                        }
                        Ok(Err(
                            error @ (octocrab::Error::Serde { .. } | octocrab::Error::Json { .. }),
                        )) => Attempt::Fatal(Err(transport_reason(&error))),
                        Ok(Err(error)) => Attempt::Failed(Ok(transport_reason(&error))),
                    }
                }
            },
            |reply| match reply {
                Reply::Done(_) => (200, &*NO_HEADERS),
                Reply::Refused {
                    status, headers, ..
                } => (*status, headers),
            },
            tokio::time::sleep,
        )
        .await;
        match answered {
            Ok(answered) => match answered.answer {
                Reply::Done(model) => Ok(model),
                Reply::Refused {
                    status, message, ..
                } => Err(Error::Http {
                    method: method.to_owned(),
                    url,
                    status,
                    message: Some(match answered.note {
                        Some(note) => format!("{message} ({note})"),
                        None => message,
                    }),
                }),
            },
            Err(failed) => match failed.error {
                // A body GitHub answered that is not the documented shape.
                Err(reason) => Err(Error::UnexpectedBody {
                    method: method.to_owned(),
                    url,
                    reason,
                }),
                Ok(reason) => Err(Error::Connection {
                    method: method.to_owned(),
                    url,
                    attempts: failed.attempts,
                    reason,
                }),
            },
        }
    }

    /// `owner` and `name` of the repository.
    fn owner_and_name(&self) -> (&str, &str) {
        self.repository
            .split_once('/')
            .unwrap_or((&self.repository, ""))
    }

    /// Creates or edits the comment on PR `number` that carries `key`'s marker.
    pub async fn upsert_sticky_comment(
        &self,
        number: u64,
        key: &StickyKey,
        body: &str,
    ) -> Result<CommentOutcome> {
        let marker = key.marker();
        let body = self
            .redactor
            .redact(&format!("{body}\n\n{marker}\n"))
            .into_owned();
        let (owner, name) = self.owner_and_name();
        let existing: Option<Comment> = find_in_pages(
            MAX_COMMENT_PAGES,
            |page| async move {
                let path = format!(
                    "/repos/{}/issues/{number}/comments?per_page=100&page={page}",
                    self.repository
                );
                let listed = self
                    .call("GET", &path, || async move {
                        self.octocrab
                            .issues(owner, name)
                            .list_comments(number)
                            .per_page(100)
                            .page(page)
                            .send()
                            .await
                    })
                    .await?;
                Ok(listed.items)
            },
            |comment: &Comment| {
                comment
                    .body
                    .as_deref()
                    .is_some_and(|text| text.contains(&marker))
            },
        )
        .await?;
        let payload = serde_json::json!({ "body": body });
        match existing {
            Some(comment) => {
                // PATCH, as GitHub documents it (octocrab's update_comment POSTs).
                let path = format!("/repos/{}/issues/comments/{}", self.repository, comment.id);
                let updated: Comment = self
                    .call("PATCH", &path, || {
                        self.octocrab.patch(&path, Some(&payload))
                    })
                    .await?;
                Ok(CommentOutcome::Updated {
                    id: updated.id.into_inner(),
                    url: Some(updated.html_url.to_string()),
                })
            }
            None => {
                let path = format!("/repos/{}/issues/{number}/comments", self.repository);
                let body = &body;
                let created = self
                    .call("POST", &path, || async move {
                        self.octocrab
                            .issues(owner, name)
                            .create_comment(number, body)
                            .await
                    })
                    .await?;
                Ok(CommentOutcome::Created {
                    id: created.id.into_inner(),
                    url: Some(created.html_url.to_string()),
                })
            }
        }
    }

    /// Creates or edits the comment on commit `sha` that carries `key`'s
    /// marker (`/repos/{owner}/{repo}/commits/{sha}/comments`, edited at
    /// `/repos/{owner}/{repo}/comments/{id}`): a push has no pull request.
    pub async fn upsert_commit_comment(
        &self,
        sha: &str,
        key: &StickyKey,
        body: &str,
    ) -> Result<CommentOutcome> {
        #[derive(serde::Deserialize)]
        struct CommitComment {
            id: u64,
            body: Option<String>,
            html_url: Option<String>,
        }
        let marker = key.marker();
        let body = self
            .redactor
            .redact(&format!("{body}\n\n{marker}\n"))
            .into_owned();
        let existing: Option<CommitComment> = find_in_pages(
            MAX_COMMENT_PAGES,
            |page| async move {
                let path = format!(
                    "/repos/{}/commits/{sha}/comments?per_page=100&page={page}",
                    self.repository
                );
                self.call("GET", &path, || self.octocrab.get(&path, None::<&()>))
                    .await
            },
            |comment: &CommitComment| {
                comment
                    .body
                    .as_deref()
                    .is_some_and(|text| text.contains(&marker))
            },
        )
        .await?;
        let payload = serde_json::json!({ "body": body });
        match existing {
            Some(comment) => {
                let path = format!("/repos/{}/comments/{}", self.repository, comment.id);
                let updated: CommitComment = self
                    .call("PATCH", &path, || {
                        self.octocrab.patch(&path, Some(&payload))
                    })
                    .await?;
                Ok(CommentOutcome::Updated {
                    id: updated.id,
                    url: updated.html_url,
                })
            }
            None => {
                let path = format!("/repos/{}/commits/{sha}/comments", self.repository);
                let created: CommitComment = self
                    .call("POST", &path, || self.octocrab.post(&path, Some(&payload)))
                    .await?;
                Ok(CommentOutcome::Created {
                    id: created.id,
                    url: created.html_url,
                })
            }
        }
    }

    /// The issues (not pull requests) carrying every label in `labels`, open
    /// and closed, newest first (`GET /repos/{owner}/{repo}/issues`).
    pub async fn list_issues(&self, labels: &[String]) -> Result<Vec<TrackedIssue>> {
        let (owner, name) = self.owner_and_name();
        let mut found = Vec::new();
        for page in 1..=MAX_ISSUE_PAGES {
            let path = format!(
                "/repos/{}/issues?labels={}&state=all&per_page=100&page={page}",
                self.repository,
                crate::http::labels_parameter(labels)
            );
            let issues = self
                .call("GET", &path, || async move {
                    self.octocrab
                        .issues(owner, name)
                        .list()
                        .labels(labels)
                        .state(octocrab::params::State::All)
                        .per_page(100)
                        .page(page)
                        .send()
                        .await
                })
                .await?
                .items;
            let n_issues = issues.len();
            found.extend(
                issues
                    .into_iter()
                    .filter(|issue| issue.pull_request.is_none())
                    .map(tracked),
            );
            if n_issues < 100 {
                break;
            }
        }
        Ok(found)
    }

    /// Opens an issue (`POST /repos/{owner}/{repo}/issues`).
    pub async fn create_issue(
        &self,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<TrackedIssue> {
        let (owner, name) = self.owner_and_name();
        let title = self.redactor.redact(title).into_owned();
        let body = self.redactor.redact(body).into_owned();
        let path = format!("/repos/{}/issues", self.repository);
        let (title, body) = (&title, &body);
        let created = self
            .call("POST", &path, || async move {
                self.octocrab
                    .issues(owner, name)
                    .create(title.as_str())
                    .body(body.as_str())
                    .labels(labels.to_vec())
                    .send()
                    .await
            })
            .await?;
        Ok(tracked(created))
    }

    /// Edits an issue's body and, when `open` is given, opens or closes it
    /// (closing as `completed`) (`PATCH /repos/{owner}/{repo}/issues/{n}`).
    pub async fn edit_issue(
        &self,
        number: u64,
        body: Option<&str>,
        open: Option<bool>,
    ) -> Result<TrackedIssue> {
        let mut payload = serde_json::Map::new();
        if let Some(body) = body {
            payload.insert(
                "body".to_owned(),
                self.redactor.redact(body).into_owned().into(),
            );
        }
        match open {
            Some(true) => {
                payload.insert("state".to_owned(), "open".into());
                payload.insert("state_reason".to_owned(), "reopened".into());
            }
            Some(false) => {
                payload.insert("state".to_owned(), "closed".into());
                payload.insert("state_reason".to_owned(), "completed".into());
            }
            None => {}
        }
        let payload = serde_json::Value::Object(payload);
        let path = format!("/repos/{}/issues/{number}", self.repository);
        let edited: octocrab::models::issues::Issue = self
            .call("PATCH", &path, || {
                self.octocrab.patch(&path, Some(&payload))
            })
            .await?;
        Ok(tracked(edited))
    }

    /// Comments on issue `number` (`POST /repos/{owner}/{repo}/issues/{n}/comments`).
    pub async fn comment_issue(&self, number: u64, body: &str) -> Result<()> {
        let (owner, name) = self.owner_and_name();
        let body = self.redactor.redact(body).into_owned();
        let path = format!("/repos/{}/issues/{number}/comments", self.repository);
        let body = &body;
        self.call("POST", &path, || async move {
            self.octocrab
                .issues(owner, name)
                .create_comment(number, body)
                .await
        })
        .await
        .map(drop)
    }

    /// Sets a commit status (`POST /repos/{owner}/{repo}/statuses/{sha}`).
    pub async fn set_commit_status(&self, status: &CommitStatus) -> Result<()> {
        let state = match status.state {
            CommitState::Pending => octocrab::models::StatusState::Pending,
            CommitState::Success => octocrab::models::StatusState::Success,
            CommitState::Failure => octocrab::models::StatusState::Failure,
            CommitState::Error => octocrab::models::StatusState::Error,
        };
        let description: String = self
            .redactor
            .redact(&status.description)
            .chars()
            .take(140)
            .collect();
        let context = self.redactor.redact(&status.context).into_owned();
        let (owner, name) = self.owner_and_name();
        let path = format!("/repos/{}/statuses/{}", self.repository, status.sha);
        let (context, description, state) = (&context, &description, &state);
        self.call("POST", &path, || async move {
            let repos = self.octocrab.repos(owner, name);
            let mut request = repos
                .create_status(status.sha.clone(), *state)
                .context(context.clone())
                .description(description.clone());
            if let Some(url) = &status.target_url {
                request = request.target(url.clone());
            }
            request.send().await
        })
        .await
        .map(drop)
    }

    /// Creates a completed check run (`POST /repos/{owner}/{repo}/check-runs`).
    pub async fn create_check_run(&self, check_run: &CheckRun) -> Result<()> {
        let conclusion = match check_run.conclusion {
            CommitState::Success => CheckRunConclusion::Success,
            CommitState::Failure => CheckRunConclusion::Failure,
            CommitState::Pending | CommitState::Error => CheckRunConclusion::Neutral,
        };
        let summary = self
            .redactor
            .redact(&crate::forge_types::truncate_comment_body(
                &check_run.summary,
                65_535,
                check_run.details_url.as_deref(),
            ))
            .into_owned();
        let title = self.redactor.redact(&check_run.title).into_owned();
        let name_of_run = self.redactor.redact(&check_run.name).into_owned();
        let (owner, name) = self.owner_and_name();
        let path = format!("/repos/{}/check-runs", self.repository);
        let (title, summary, name_of_run) = (&title, &summary, &name_of_run);
        self.call("POST", &path, || async move {
            let checks = self.octocrab.checks(owner, name);
            let mut request = checks
                .create_check_run(name_of_run.clone(), check_run.sha.clone())
                .status(CheckRunStatus::Completed)
                .conclusion(conclusion)
                .output(CheckRunOutput {
                    title: title.clone(),
                    summary: summary.clone(),
                    text: None,
                    annotations: Vec::new(),
                    images: Vec::new(),
                });
            if let Some(url) = &check_run.details_url {
                request = request.details_url(url.clone());
            }
            request.send().await
        })
        .await
        .map(drop)
    }

    /// Creates a deployment (`POST /repos/{owner}/{repo}/deployments`).
    pub async fn create_deployment(&self, deployment: &Deployment) -> Result<DeploymentRecord> {
        let (owner, name) = self.owner_and_name();
        let description = self.redactor.redact(&deployment.description).into_owned();
        let path = format!("/repos/{}/deployments", self.repository);
        let description = &description;
        let mut payload = deployment.payload.clone();
        payload.insert("git_ref".to_owned(), deployment.git_ref.clone().into());
        let payload = serde_json::Value::Object(payload);
        let payload = &payload;
        let created = self
            .call("POST", &path, || async move {
                let repos = self.octocrab.repos(owner, name);
                repos
                    .deployments()
                    .create(deployment.sha.clone())
                    .environment(deployment.environment.clone())
                    .description(description.clone())
                    // Deploy exactly this commit: no merge of the default branch.
                    .auto_merge(false)
                    .required_contexts(Vec::<String>::new())
                    .production_environment(deployment.production)
                    .payload(payload.clone())
                    .send()
                    .await
            })
            .await?;
        Ok(DeploymentRecord {
            id: created.id.into_inner(),
        })
    }

    /// Adds a deployment status (`POST /repos/{owner}/{repo}/deployments/{id}/statuses`).
    pub async fn set_deployment_state(
        &self,
        record: &DeploymentRecord,
        state: DeploymentState,
        description: &str,
        log_url: Option<&str>,
    ) -> Result<()> {
        use octocrab::models::repos::DeploymentStatusState as State;
        let state = match state {
            DeploymentState::InProgress => State::InProgress,
            DeploymentState::Success => State::Success,
            DeploymentState::Failure => State::Failure,
            DeploymentState::Error => State::Error,
            DeploymentState::Inactive => State::Inactive,
        };
        let description: String = self
            .redactor
            .redact(description)
            .chars()
            .take(140)
            .collect();
        let (owner, name) = self.owner_and_name();
        let path = format!(
            "/repos/{}/deployments/{}/statuses",
            self.repository, record.id
        );
        let (description, state) = (&description, &state);
        self.call("POST", &path, || async move {
            let repos = self.octocrab.repos(owner, name);
            let deployments = repos.deployments();
            let statuses = deployments.statuses(record.id);
            let mut request = statuses.create(*state).description(description.clone());
            if let Some(url) = log_url {
                request = request.log_url(url);
            }
            request.send().await
        })
        .await
        .map(drop)
    }
}
