//! GitLab REST API through `reqwest`: sticky MR notes, commit statuses, deployments.

use serde::Deserialize;
use serde_json::json;

use gantry_core::{Redactor, Secret};

use crate::error::{Error, Result};
use crate::forge_types::{
    CommentOutcome, CommitState, CommitStatus, Deployment, DeploymentRecord, DeploymentState,
    StickyKey, TrackedIssue,
};
use gantry_core::RetryPolicy;

use crate::http::{RawResponse, find_in_pages, send_with_retry, transport_reason};

/// Pages of 100 notes gantry reads to find its sticky note.
const MAX_NOTE_PAGES: u32 = 30;

/// The credential a GitLab job has.
#[derive(Debug, Clone)]
pub enum GitLabToken {
    /// A project, group or personal access token (`PRIVATE-TOKEN` header).
    Private(Secret),
    /// The job's own `CI_JOB_TOKEN` (`JOB-TOKEN` header): it can read notes
    /// but cannot post notes, commit statuses or deployments.
    Job(Secret),
}

/// A client for one GitLab project.
#[derive(Debug)]
pub struct GitLabClient {
    http: reqwest::Client,
    api_url: String,
    project: String,
    token: GitLabToken,
    policy: RetryPolicy,
    /// Every request body passes through it: a report that quotes a
    /// secret never reaches the forge.
    redactor: Redactor,
}

#[derive(Deserialize)]
struct Note {
    id: u64,
    #[serde(default)]
    body: Option<String>,
}

impl Note {
    /// Whether the note carries a sticky `marker`.
    fn carries(&self, marker: &str) -> bool {
        self.body
            .as_deref()
            .is_some_and(|text| text.contains(marker))
    }
}

#[derive(Deserialize)]
struct Created {
    id: u64,
}

/// An issue as `GET /projects/:id/issues` lists it.
#[derive(Deserialize)]
struct Issue {
    iid: u64,
    state: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    web_url: Option<String>,
}

impl From<Issue> for TrackedIssue {
    fn from(issue: Issue) -> TrackedIssue {
        TrackedIssue {
            number: issue.iid,
            open: issue.state == "opened",
            body: issue.description.unwrap_or_default(),
            url: issue.web_url,
        }
    }
}

/// Pages of 100 issues gantry reads to find a tracking issue.
const MAX_ISSUE_PAGES: u32 = 10;

impl GitLabClient {
    /// A client for `project` (numeric id or `group/project` path) at `api_url` (`…/api/v4`).
    pub fn new(
        api_url: &str,
        project: &str,
        token: GitLabToken,
        policy: RetryPolicy,
    ) -> Result<GitLabClient> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(policy.timeout)
            .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| Error::ForgeUnavailable {
                platform: "GitLab",
                reason: format!("cannot build an HTTP client: {error}"),
            })?;
        let project = project.replace('/', "%2F");
        Ok(GitLabClient {
            http,
            api_url: api_url.trim_end_matches('/').to_owned(),
            project,
            token,
            policy,
            redactor: Redactor::new(),
        })
    }

    fn require_write_token(&self, what: &str) -> Result<&Secret> {
        match &self.token {
            GitLabToken::Private(token) => Ok(token),
            GitLabToken::Job(_) => Err(Error::ForgeUnavailable {
                platform: "GitLab",
                reason: format!(
                    "CI_JOB_TOKEN cannot {what}; set GITLAB_TOKEN (a project access token with `api` scope) as a masked CI/CD variable"
                ),
            }),
        }
    }

    /// Redacts every request body with `redactor` (the one every writer of
    /// the command shares).
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = redactor;
        self
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<RawResponse> {
        let url = format!("{}{path}", self.api_url);
        let body = body.cloned().map(|mut body| {
            self.redactor.redact_json(&mut body);
            body
        });
        let body = body.as_ref();
        let (header, token) = match &self.token {
            GitLabToken::Private(token) => ("PRIVATE-TOKEN", token),
            GitLabToken::Job(token) => ("JOB-TOKEN", token),
        };
        send_with_retry(&self.policy, method.as_str(), &url, || async {
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header(header, token.expose());
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|error| transport_reason(&error))?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response
                .text()
                .await
                .map_err(|error| transport_reason(&error))?;
            Ok(RawResponse {
                status,
                headers,
                body,
            })
        })
        .await
    }

    /// Creates or edits the note on MR `iid` that carries `key`'s marker.
    pub async fn upsert_sticky_note(
        &self,
        iid: u64,
        key: &StickyKey,
        body: &str,
    ) -> Result<CommentOutcome> {
        let marker = key.marker();
        let body = format!("{body}\n\n{marker}\n");
        let existing = find_in_pages(
            MAX_NOTE_PAGES,
            |page| async move {
                let path = format!(
                    "/projects/{}/merge_requests/{iid}/notes?per_page=100&page={page}&sort=asc",
                    self.project
                );
                let response = self.request(reqwest::Method::GET, &path, None).await?;
                response.json::<Vec<Note>>("GET", &format!("{}{path}", self.api_url))
            },
            |note: &Note| note.carries(&marker),
        )
        .await?;
        self.require_write_token("post merge request notes")?;
        match existing {
            Some(note) => {
                let path = format!(
                    "/projects/{}/merge_requests/{iid}/notes/{}",
                    self.project, note.id
                );
                let response = self
                    .request(reqwest::Method::PUT, &path, Some(&json!({ "body": body })))
                    .await?;
                let updated: Created = response.json("PUT", &format!("{}{path}", self.api_url))?;
                Ok(CommentOutcome::Updated {
                    id: updated.id,
                    url: None,
                })
            }
            None => {
                let path = format!("/projects/{}/merge_requests/{iid}/notes", self.project);
                let response = self
                    .request(reqwest::Method::POST, &path, Some(&json!({ "body": body })))
                    .await?;
                let created: Created = response.json("POST", &format!("{}{path}", self.api_url))?;
                Ok(CommentOutcome::Created {
                    id: created.id,
                    url: None,
                })
            }
        }
    }

    /// Creates or edits the note on commit `sha` that carries `key`'s marker:
    /// a commit discussion (`/projects/:id/repository/commits/:sha/discussions`),
    /// whose first note is edited in place.
    pub async fn upsert_commit_note(
        &self,
        sha: &str,
        key: &StickyKey,
        body: &str,
    ) -> Result<CommentOutcome> {
        #[derive(serde::Deserialize)]
        struct Discussion {
            id: String,
            notes: Vec<Note>,
        }
        let marker = key.marker();
        let body = format!("{body}\n\n{marker}\n");
        let existing = find_in_pages(
            MAX_NOTE_PAGES,
            |page| async move {
                let path = format!(
                    "/projects/{}/repository/commits/{sha}/discussions?per_page=100&page={page}",
                    self.project
                );
                let response = self.request(reqwest::Method::GET, &path, None).await?;
                response.json::<Vec<Discussion>>("GET", &format!("{}{path}", self.api_url))
            },
            |discussion: &Discussion| discussion.notes.iter().any(|note| note.carries(&marker)),
        )
        .await?
        .and_then(|discussion| {
            let note = discussion
                .notes
                .into_iter()
                .find(|note| note.carries(&marker))?;
            Some((discussion.id, note))
        });
        self.require_write_token("comment on commits")?;
        match existing {
            Some((discussion, note)) => {
                let path = format!(
                    "/projects/{}/repository/commits/{sha}/discussions/{discussion}/notes/{}",
                    self.project, note.id
                );
                let response = self
                    .request(reqwest::Method::PUT, &path, Some(&json!({ "body": body })))
                    .await?;
                let updated: Created = response.json("PUT", &format!("{}{path}", self.api_url))?;
                Ok(CommentOutcome::Updated {
                    id: updated.id,
                    url: None,
                })
            }
            None => {
                #[derive(serde::Deserialize)]
                struct Started {
                    notes: Vec<Created>,
                }
                let path = format!(
                    "/projects/{}/repository/commits/{sha}/discussions",
                    self.project
                );
                let response = self
                    .request(reqwest::Method::POST, &path, Some(&json!({ "body": body })))
                    .await?;
                let started: Started = response.json("POST", &format!("{}{path}", self.api_url))?;
                let id = started.notes.first().map_or(0, |note| note.id);
                Ok(CommentOutcome::Created { id, url: None })
            }
        }
    }

    /// The issues carrying every label in `labels`, open and closed, newest
    /// first (`GET /projects/:id/issues`).
    pub async fn list_issues(&self, labels: &[String]) -> Result<Vec<TrackedIssue>> {
        let mut found = Vec::new();
        for page in 1..=MAX_ISSUE_PAGES {
            let path = format!(
                "/projects/{}/issues?labels={}&scope=all&per_page=100&page={page}",
                self.project,
                crate::http::labels_parameter(labels)
            );
            let response = self.request(reqwest::Method::GET, &path, None).await?;
            let issues: Vec<Issue> = response.json("GET", &format!("{}{path}", self.api_url))?;
            let n_issues = issues.len();
            found.extend(issues.into_iter().map(TrackedIssue::from));
            if n_issues < 100 {
                break;
            }
        }
        Ok(found)
    }

    /// Opens an issue (`POST /projects/:id/issues`).
    pub async fn create_issue(
        &self,
        title: &str,
        body: &str,
        labels: &[String],
    ) -> Result<TrackedIssue> {
        self.require_write_token("open issues")?;
        let path = format!("/projects/{}/issues", self.project);
        let response = self
            .request(
                reqwest::Method::POST,
                &path,
                Some(&json!({ "title": title, "description": body, "labels": labels.join(",") })),
            )
            .await?;
        let created: Issue = response.json("POST", &format!("{}{path}", self.api_url))?;
        Ok(created.into())
    }

    /// Edits an issue's description and, when `open` is given, reopens or
    /// closes it (`PUT /projects/:id/issues/:iid`).
    pub async fn edit_issue(
        &self,
        iid: u64,
        body: Option<&str>,
        open: Option<bool>,
    ) -> Result<TrackedIssue> {
        self.require_write_token("edit issues")?;
        let mut payload = serde_json::Map::new();
        if let Some(body) = body {
            payload.insert("description".to_owned(), body.into());
        }
        if let Some(open) = open {
            payload.insert(
                "state_event".to_owned(),
                if open { "reopen" } else { "close" }.into(),
            );
        }
        let path = format!("/projects/{}/issues/{iid}", self.project);
        let response = self
            .request(
                reqwest::Method::PUT,
                &path,
                Some(&serde_json::Value::Object(payload)),
            )
            .await?;
        let edited: Issue = response.json("PUT", &format!("{}{path}", self.api_url))?;
        Ok(edited.into())
    }

    /// Adds a note to issue `iid` (`POST /projects/:id/issues/:iid/notes`).
    pub async fn comment_issue(&self, iid: u64, body: &str) -> Result<()> {
        self.require_write_token("comment on issues")?;
        let path = format!("/projects/{}/issues/{iid}/notes", self.project);
        self.request(reqwest::Method::POST, &path, Some(&json!({ "body": body })))
            .await
            .map(drop)
    }

    /// Sets a commit status (`POST /projects/:id/statuses/:sha`).
    pub async fn set_commit_status(&self, status: &CommitStatus) -> Result<()> {
        self.require_write_token("set commit statuses")?;
        let state = match status.state {
            CommitState::Pending => "running",
            CommitState::Success => "success",
            CommitState::Failure | CommitState::Error => "failed",
        };
        let mut body = json!({ "state": state, "name": status.context, "description": status.description.chars().take(255).collect::<String>() });
        if let Some(url) = &status.target_url {
            body["target_url"] = json!(url);
        }
        let path = format!("/projects/{}/statuses/{}", self.project, status.sha);
        self.request(reqwest::Method::POST, &path, Some(&body))
            .await
            .map(drop)
    }

    /// Creates a deployment (`POST /projects/:id/deployments`), in state `running`.
    pub async fn create_deployment(&self, deployment: &Deployment) -> Result<DeploymentRecord> {
        self.require_write_token("create deployments")?;
        let body = json!({
            "environment": deployment.environment,
            "sha": deployment.sha,
            "ref": deployment.git_ref,
            "tag": false,
            "status": "running",
        });
        let path = format!("/projects/{}/deployments", self.project);
        let response = self
            .request(reqwest::Method::POST, &path, Some(&body))
            .await?;
        let created: Created = response.json("POST", &format!("{}{path}", self.api_url))?;
        Ok(DeploymentRecord { id: created.id })
    }

    /// Updates a deployment's status (`PUT /projects/:id/deployments/:deployment_id`).
    pub async fn set_deployment_state(
        &self,
        record: &DeploymentRecord,
        state: DeploymentState,
    ) -> Result<()> {
        self.require_write_token("update deployments")?;
        let status = match state {
            DeploymentState::InProgress => "running",
            DeploymentState::Success => "success",
            DeploymentState::Failure | DeploymentState::Error => "failed",
            DeploymentState::Inactive => "canceled",
        };
        let path = format!("/projects/{}/deployments/{}", self.project, record.id);
        self.request(
            reqwest::Method::PUT,
            &path,
            Some(&json!({ "status": status })),
        )
        .await
        .map(drop)
    }
}
