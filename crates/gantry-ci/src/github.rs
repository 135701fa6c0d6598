//! GitHub REST API through `octocrab`: sticky PR comments, statuses, check runs, deployments.
//!
//! `octocrab` carries authentication, the base URL (GitHub Enterprise
//! Server included) and the HTTP client; gantry sends raw requests through it
//! so that it sees status codes and headers and can honour `Retry-After` and
//! the rate-limit headers itself.

use http_body_util::BodyExt as _;
use octocrab::Octocrab;
use serde::Deserialize;
use serde_json::json;

use gantry_core::{Redactor, Secret};

use crate::error::{Error, Result};
use crate::forge_types::{
    CheckRun, CommentOutcome, CommitState, CommitStatus, Deployment, DeploymentRecord,
    DeploymentState, StickyKey,
};
use gantry_core::RetryPolicy;

use crate::http::{RawResponse, send_with_retry, transport_reason};

/// Pages of 100 comments gantry reads to find its sticky comment.
const MAX_COMMENT_PAGES: u32 = 30;

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

#[derive(Deserialize)]
struct Comment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    html_url: Option<String>,
}

#[derive(Deserialize)]
struct Created {
    id: u64,
}

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

    async fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<RawResponse> {
        let url = format!("{}{path}", self.api_url);
        let body = body.cloned().map(|mut body| {
            self.redactor.redact_json(&mut body);
            body
        });
        let body = body.as_ref();
        send_with_retry(&self.policy, method.as_str(), &url, || async {
            let response = match method {
                http::Method::GET => self.octocrab._get(path).await,
                http::Method::POST => self.octocrab._post(path, body).await,
                http::Method::PATCH => self.octocrab._patch(path, body).await,
                _ => return Err(format!("unsupported method {method}")),
            }
            .map_err(|error| transport_reason(&error))?;
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|error| transport_reason(&error))?
                .to_bytes();
            Ok(RawResponse {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        })
        .await
    }

    /// Creates or edits the comment on PR `number` that carries `key`'s marker.
    pub async fn upsert_sticky_comment(
        &self,
        number: u64,
        key: &StickyKey,
        body: &str,
    ) -> Result<CommentOutcome> {
        let marker = key.marker();
        let body = format!("{body}\n\n{marker}\n");
        let mut existing = None;
        for page in 1..=MAX_COMMENT_PAGES {
            let path = format!(
                "/repos/{}/issues/{number}/comments?per_page=100&page={page}",
                self.repository
            );
            let response = self.request(http::Method::GET, &path, None).await?;
            let comments: Vec<Comment> =
                response.json("GET", &format!("{}{path}", self.api_url))?;
            let n_comments = comments.len();
            if let Some(comment) = comments.into_iter().find(|comment| {
                comment
                    .body
                    .as_deref()
                    .is_some_and(|text| text.contains(&marker))
            }) {
                existing = Some(comment);
                break;
            }
            if n_comments < 100 {
                break;
            }
        }
        match existing {
            Some(comment) => {
                let path = format!("/repos/{}/issues/comments/{}", self.repository, comment.id);
                let response = self
                    .request(http::Method::PATCH, &path, Some(&json!({ "body": body })))
                    .await?;
                let updated: Comment =
                    response.json("PATCH", &format!("{}{path}", self.api_url))?;
                Ok(CommentOutcome::Updated {
                    id: updated.id,
                    url: updated.html_url.or(comment.html_url),
                })
            }
            None => {
                let path = format!("/repos/{}/issues/{number}/comments", self.repository);
                let response = self
                    .request(http::Method::POST, &path, Some(&json!({ "body": body })))
                    .await?;
                let created: Comment = response.json("POST", &format!("{}{path}", self.api_url))?;
                Ok(CommentOutcome::Created {
                    id: created.id,
                    url: created.html_url,
                })
            }
        }
    }

    /// Sets a commit status (`POST /repos/{owner}/{repo}/statuses/{sha}`).
    pub async fn set_commit_status(&self, status: &CommitStatus) -> Result<()> {
        let state = match status.state {
            CommitState::Pending => "pending",
            CommitState::Success => "success",
            CommitState::Failure => "failure",
            CommitState::Error => "error",
        };
        let mut body = json!({
            "state": state,
            "context": status.context,
            "description": status.description.chars().take(140).collect::<String>(),
        });
        if let Some(url) = &status.target_url {
            body["target_url"] = json!(url);
        }
        let path = format!("/repos/{}/statuses/{}", self.repository, status.sha);
        self.request(http::Method::POST, &path, Some(&body))
            .await
            .map(drop)
    }

    /// Creates a completed check run (`POST /repos/{owner}/{repo}/check-runs`).
    pub async fn create_check_run(&self, check_run: &CheckRun) -> Result<()> {
        let conclusion = match check_run.conclusion {
            CommitState::Success => "success",
            CommitState::Failure => "failure",
            CommitState::Pending | CommitState::Error => "neutral",
        };
        let mut body = json!({
            "name": check_run.name,
            "head_sha": check_run.sha,
            "status": "completed",
            "conclusion": conclusion,
            "output": {
                "title": check_run.title,
                "summary": crate::forge_types::truncate_comment_body(&check_run.summary, 65_535, check_run.details_url.as_deref()),
            },
        });
        if let Some(url) = &check_run.details_url {
            body["details_url"] = json!(url);
        }
        let path = format!("/repos/{}/check-runs", self.repository);
        self.request(http::Method::POST, &path, Some(&body))
            .await
            .map(drop)
    }

    /// Creates a deployment (`POST /repos/{owner}/{repo}/deployments`).
    pub async fn create_deployment(&self, deployment: &Deployment) -> Result<DeploymentRecord> {
        let body = json!({
            "ref": deployment.sha,
            "environment": deployment.environment,
            "description": deployment.description,
            "auto_merge": false,
            "required_contexts": [],
            "production_environment": deployment.production,
            "payload": { "git_ref": deployment.git_ref },
        });
        let path = format!("/repos/{}/deployments", self.repository);
        let url = format!("{}{path}", self.api_url);
        let response = self.request(http::Method::POST, &path, Some(&body)).await?;
        if response.status == 202 {
            // GitHub answers 202 when it merged the default branch instead of deploying.
            return Err(Error::Http {
                method: "POST".into(),
                url,
                status: 202,
                message: Some("GitHub merged instead of creating a deployment".into()),
            });
        }
        let created: Created = response.json("POST", &url)?;
        Ok(DeploymentRecord { id: created.id })
    }

    /// Adds a deployment status (`POST /repos/{owner}/{repo}/deployments/{id}/statuses`).
    pub async fn set_deployment_state(
        &self,
        record: &DeploymentRecord,
        state: DeploymentState,
        description: &str,
        log_url: Option<&str>,
    ) -> Result<()> {
        let state = match state {
            DeploymentState::InProgress => "in_progress",
            DeploymentState::Success => "success",
            DeploymentState::Failure => "failure",
            DeploymentState::Inactive => "inactive",
        };
        let mut body = json!({ "state": state, "description": description.chars().take(140).collect::<String>() });
        if let Some(url) = log_url {
            body["log_url"] = json!(url);
        }
        let path = format!(
            "/repos/{}/deployments/{}/statuses",
            self.repository, record.id
        );
        self.request(http::Method::POST, &path, Some(&body))
            .await
            .map(drop)
    }
}
