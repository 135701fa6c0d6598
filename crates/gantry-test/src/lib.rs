/*!
Test support shared by gantry's crates.

[`FakeForge`] stands in for the hosted GitHub and GitLab REST APIs, which
are the only components gantry's tests do not run for real. It keeps state
(comments, notes, statuses, check runs, deployments) so a second call sees
the first one's effects, answers with the documented JSON shapes and error
bodies, records every request, and can be told to fail the next calls to an
endpoint with any status and headers (403, 404, 422, 429 with
`Retry-After`, 500…).

```no_run
let forge = gantry_test::FakeForge::start();
forge.fail_next("POST", "/comments", 429, &[("retry-after", "1")], 1);
// … point gantry at forge.url() …
assert_eq!(forge.requests().len(), 0);
```
*/

pub mod adversarial;
mod echo;
mod kube;
mod oci;
mod serve;
mod slurm;

pub use crate::echo::{EchoRequest, EchoResponse, EchoServer};
pub use crate::kube::{Behavior, FakeKube, KUBE_TOKEN, KubeRequest};
pub use crate::oci::{
    DroppingProxy, MlflowServer, OCI_PASSWORD, OCI_USER, OciRegistryServer, require_tool,
};
pub use crate::slurm::SlurmCluster;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// A token the fake rejects with 401, as GitHub does for a revoked token.
pub const BAD_TOKEN: &str = "bad-token";
/// A token the fake accepts for reads but rejects with 403 for writes, like
/// the read-only `GITHUB_TOKEN` of a pull request from a fork.
pub const READ_ONLY_TOKEN: &str = "read-only-token";

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The credential sent (`Authorization`, `PRIVATE-TOKEN` or `JOB-TOKEN` value).
    pub credential: Option<String>,
    /// The JSON body, or `Null`.
    pub body: Value,
    /// The status the fake answered with.
    pub status: u16,
}

#[derive(Debug)]
struct Failure {
    method: String,
    path_contains: String,
    status: u16,
    headers: Vec<(String, String)>,
    remaining: usize,
}

/// An issue the fake holds (GitHub issue or GitLab issue, numbered alike).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeIssue {
    /// Number (GitHub) or iid (GitLab).
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body (GitHub) or description (GitLab).
    pub body: String,
    /// Labels.
    pub labels: Vec<String>,
    /// Whether it is open.
    pub open: bool,
    /// GitHub's `state_reason` of the last state change, when one was sent.
    pub state_reason: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// Issues, in creation order.
    issues: Vec<FakeIssue>,
    /// Comments (GitHub) and notes (GitLab) by PR/MR number: (id, body).
    comments: BTreeMap<u64, Vec<(u64, String)>>,
    /// Comments on commits (GitHub) and commit discussions' notes (GitLab,
    /// one note per discussion `d<id>`) by commit SHA: (id, body).
    commit_comments: BTreeMap<String, Vec<(u64, String)>>,
    statuses: Vec<Value>,
    check_runs: Vec<Value>,
    deployments: Vec<Value>,
    deployment_statuses: Vec<Value>,
    requests: Vec<RecordedRequest>,
    failures: Vec<Failure>,
}

/// A fake GitHub (at `/`) and GitLab (at `/api/v4`) API on a loopback port.
#[derive(Debug)]
pub struct FakeForge {
    url: String,
    state: Arc<Mutex<State>>,
    _served: serve::Served,
}

impl FakeForge {
    /// Starts the server on `127.0.0.1` and an ephemeral port.
    ///
    /// # Panics
    /// When no loopback port can be bound: the test cannot run at all.
    pub fn start() -> FakeForge {
        let state = Arc::new(Mutex::new(State {
            next_id: 1000,
            ..State::default()
        }));
        let server_state = Arc::clone(&state);
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = Arc::clone(&server_state);
                async move { handle(&state, &method, &uri, &headers, &body) }
            },
        );
        let served = serve::serve(app);
        FakeForge {
            url: format!("http://{}", served.address),
            state,
            _served: served,
        }
    }

    /// The GitHub API base URL (`GITHUB_API_URL`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The GitLab API base URL (`CI_API_V4_URL`).
    pub fn gitlab_url(&self) -> String {
        format!("{}/api/v4", self.url)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes the next `times` requests whose method is `method` and whose path
    /// contains `path_contains` fail with `status` and `headers`.
    pub fn fail_next(
        &self,
        method: &str,
        path_contains: &str,
        status: u16,
        headers: &[(&str, &str)],
        times: usize,
    ) {
        self.lock().failures.push(Failure {
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
            status,
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            remaining: times,
        });
    }

    /// Adds an existing comment (or note) to PR/MR `number`; returns its id.
    pub fn seed_comment(&self, number: u64, body: &str) -> u64 {
        let mut state = self.lock();
        state.next_id += 1;
        let id = state.next_id;
        state
            .comments
            .entry(number)
            .or_default()
            .push((id, body.to_owned()));
        id
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// The comments (or notes) on PR/MR `number`: (id, body).
    pub fn comments(&self, number: u64) -> Vec<(u64, String)> {
        self.lock()
            .comments
            .get(&number)
            .cloned()
            .unwrap_or_default()
    }

    /// Comments (GitHub) or commit-discussion notes (GitLab) on commit `sha`: (id, body).
    pub fn commit_comments(&self, sha: &str) -> Vec<(u64, String)> {
        self.lock()
            .commit_comments
            .get(sha)
            .cloned()
            .unwrap_or_default()
    }

    /// The issues, in creation order; their comments (or notes) are
    /// [`FakeForge::comments`] of their number.
    pub fn issues(&self) -> Vec<FakeIssue> {
        self.lock().issues.clone()
    }

    /// Commit statuses received, as sent plus `sha`.
    pub fn statuses(&self) -> Vec<Value> {
        self.lock().statuses.clone()
    }

    /// Check runs received.
    pub fn check_runs(&self) -> Vec<Value> {
        self.lock().check_runs.clone()
    }

    /// Deployments created.
    pub fn deployments(&self) -> Vec<Value> {
        self.lock().deployments.clone()
    }

    /// Deployment status changes received, each with `deployment_id`.
    pub fn deployment_statuses(&self) -> Vec<Value> {
        self.lock().deployment_statuses.clone()
    }
}

fn handle(
    state: &Mutex<State>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let mut state = state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let path = uri.path().to_owned();
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| path.clone(), ToString::to_string);
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    let credential = header("authorization")
        .or_else(|| header("private-token"))
        .or_else(|| header("job-token"));
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    };
    let (status, extra_headers, answer) = route(
        &mut state,
        method,
        &path,
        uri.query().unwrap_or(""),
        headers,
        &body,
    );
    state.requests.push(RecordedRequest {
        method: method.to_string(),
        path: path_and_query,
        credential,
        body,
        status: status.as_u16(),
    });
    let mut response = (status, axum::Json(answer)).into_response();
    for (name, value) in extra_headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name),
            axum::http::HeaderValue::try_from(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

type Answer = (StatusCode, Vec<(String, String)>, Value);

fn answer(status: u16, value: Value) -> Answer {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Vec::new(),
        value,
    )
}

fn route(
    state: &mut State,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &Value,
) -> Answer {
    if let Some(index) = state.failures.iter().position(|failure| {
        failure.remaining > 0
            && failure.method == method.as_str()
            && path.contains(&failure.path_contains)
    }) {
        let failure = &mut state.failures[index];
        failure.remaining -= 1;
        let message = match failure.status {
            401 => "Bad credentials",
            403 => "Resource not accessible by integration",
            404 => "Not Found",
            422 => "Validation Failed",
            429 => "API rate limit exceeded",
            _ => "Server Error",
        };
        return (
            StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            failure.headers.clone(),
            json!({ "message": message, "documentation_url": "https://docs.github.com/rest" }),
        );
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let page = query_number(query, "page").unwrap_or(1);
    let per_page = query_number(query, "per_page").unwrap_or(30);
    if segments.first() == Some(&"api") {
        return gitlab(
            state, method, &segments, query, page, per_page, headers, body,
        );
    }
    github(
        state, method, &segments, query, page, per_page, headers, body,
    )
}

fn query_text(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// The issues that carry every label of the `labels` query parameter and
/// are in `state` (`open`, `closed`/`opened`, `all`), newest first.
fn listed_issues(
    issues: &[FakeIssue],
    query: &str,
    default_state: &str,
    page: usize,
    per_page: usize,
) -> Vec<FakeIssue> {
    let labels: Vec<String> = query_text(query, "labels")
        .map(|labels| {
            labels
                .split(',')
                .filter(|label| !label.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let state = query_text(query, "state").unwrap_or_else(|| default_state.to_owned());
    issues
        .iter()
        .rev()
        .filter(|issue| labels.iter().all(|label| issue.labels.contains(label)))
        .filter(|issue| match state.as_str() {
            "open" | "opened" => issue.open,
            "closed" => !issue.open,
            _ => true,
        })
        .skip(page.saturating_sub(1) * per_page)
        .take(per_page)
        .cloned()
        .collect()
}

fn query_number(query: &str, name: &str) -> Option<usize> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

fn paginate(comments: &[(u64, String)], page: usize, per_page: usize) -> Vec<(u64, String)> {
    comments
        .iter()
        .skip(page.saturating_sub(1) * per_page)
        .take(per_page)
        .cloned()
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn github(
    state: &mut State,
    method: &Method,
    segments: &[&str],
    query: &str,
    page: usize,
    per_page: usize,
    headers: &HeaderMap,
    body: &Value,
) -> Answer {
    let authorization = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let token = authorization.split_whitespace().nth(1).unwrap_or("");
    if token.is_empty() || token == BAD_TOKEN {
        return answer(
            401,
            json!({ "message": "Bad credentials", "documentation_url": "https://docs.github.com/rest" }),
        );
    }
    if token == READ_ONLY_TOKEN && *method != Method::GET {
        return answer(
            403,
            json!({ "message": "Resource not accessible by integration", "documentation_url": "https://docs.github.com/rest" }),
        );
    }
    state.next_id += 1;
    let id = state.next_id;
    let comment_json = |id: u64, text: &str, owner: &str, repo: &str, number: u64| {
        json!({
            "id": id,
            "node_id": format!("IC_{id}"),
            "url": format!("https://api.github.test/repos/{owner}/{repo}/issues/comments/{id}"),
            "html_url": format!("https://github.test/{owner}/{repo}/pull/{number}#issuecomment-{id}"),
            "issue_url": format!("https://api.github.test/repos/{owner}/{repo}/issues/{number}"),
            "body": text,
            "user": github_bot(),
            "author_association": "NONE",
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
        })
    };
    match (method.as_str(), segments) {
        ("GET", ["repos", owner, repo, "issues", number, "comments"]) => {
            let number = number.parse().unwrap_or(0);
            let comments = paginate(
                state
                    .comments
                    .get(&number)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
                page,
                per_page,
            );
            answer(
                200,
                Value::Array(
                    comments
                        .iter()
                        .map(|(id, text)| comment_json(*id, text, owner, repo, number))
                        .collect(),
                ),
            )
        }
        ("POST", ["repos", owner, repo, "issues", number, "comments"]) => {
            let number = number.parse().unwrap_or(0);
            let text = body["body"].as_str().unwrap_or_default().to_owned();
            if let Some(refusal) = too_long(&text, "IssueComment") {
                return refusal;
            }
            state
                .comments
                .entry(number)
                .or_default()
                .push((id, text.clone()));
            answer(201, comment_json(id, &text, owner, repo, number))
        }
        ("PATCH", ["repos", owner, repo, "issues", "comments", comment_id]) => {
            let comment_id: u64 = comment_id.parse().unwrap_or(0);
            let text = body["body"].as_str().unwrap_or_default().to_owned();
            for (number, comments) in &mut state.comments {
                if let Some(comment) = comments.iter_mut().find(|(id, _)| *id == comment_id) {
                    comment.1 = text.clone();
                    let number = *number;
                    return answer(200, comment_json(comment_id, &text, owner, repo, number));
                }
            }
            answer(404, json!({ "message": "Not Found" }))
        }
        ("GET", ["repos", owner, repo, "commits", sha, "comments"]) => {
            let comments = paginate(
                state
                    .commit_comments
                    .get(*sha)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
                page,
                per_page,
            );
            answer(
                200,
                Value::Array(
                    comments
                        .iter()
                        .map(|(id, text)| commit_comment_json(*id, text, owner, repo, sha))
                        .collect(),
                ),
            )
        }
        ("POST", ["repos", owner, repo, "commits", sha, "comments"]) => {
            let text = body["body"].as_str().unwrap_or_default().to_owned();
            if let Some(refusal) = too_long(&text, "CommitComment") {
                return refusal;
            }
            state
                .commit_comments
                .entry((*sha).to_owned())
                .or_default()
                .push((id, text.clone()));
            answer(201, commit_comment_json(id, &text, owner, repo, sha))
        }
        ("PATCH", ["repos", owner, repo, "comments", comment_id]) => {
            let comment_id: u64 = comment_id.parse().unwrap_or(0);
            let text = body["body"].as_str().unwrap_or_default().to_owned();
            for (sha, comments) in &mut state.commit_comments {
                if let Some(comment) = comments.iter_mut().find(|(id, _)| *id == comment_id) {
                    comment.1 = text.clone();
                    return answer(
                        200,
                        commit_comment_json(comment_id, &text, owner, repo, sha),
                    );
                }
            }
            answer(404, json!({ "message": "Not Found" }))
        }
        ("GET", ["repos", owner, repo, "issues"]) => {
            let issues = listed_issues(&state.issues, query, "open", page, per_page);
            answer(
                200,
                Value::Array(
                    issues
                        .iter()
                        .map(|issue| github_issue(issue, owner, repo))
                        .collect(),
                ),
            )
        }
        ("POST", ["repos", owner, repo, "issues"]) => {
            let Some(title) = body["title"].as_str().filter(|title| !title.is_empty()) else {
                return answer(
                    422,
                    json!({ "message": "Validation Failed", "errors": [{ "resource": "Issue", "code": "missing_field", "field": "title" }] }),
                );
            };
            let issue = FakeIssue {
                number: state.issues.len() as u64 + 1,
                title: title.to_owned(),
                body: body["body"].as_str().unwrap_or_default().to_owned(),
                labels: body["labels"]
                    .as_array()
                    .map(|labels| {
                        labels
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
                open: true,
                state_reason: None,
            };
            state.issues.push(issue.clone());
            answer(201, github_issue(&issue, owner, repo))
        }
        ("PATCH", ["repos", owner, repo, "issues", number]) => {
            let number: u64 = number.parse().unwrap_or(0);
            let Some(issue) = state.issues.iter_mut().find(|issue| issue.number == number) else {
                return answer(404, json!({ "message": "Not Found" }));
            };
            if let Some(text) = body["body"].as_str() {
                text.clone_into(&mut issue.body);
            }
            match body["state"].as_str() {
                Some("open") => issue.open = true,
                Some("closed") => issue.open = false,
                Some(_) => {
                    return answer(
                        422,
                        json!({ "message": "Validation Failed", "errors": [{ "resource": "Issue", "code": "invalid", "field": "state" }] }),
                    );
                }
                None => {}
            }
            if body.get("state").is_some() {
                issue.state_reason = body["state_reason"].as_str().map(str::to_owned);
            }
            let issue = issue.clone();
            answer(200, github_issue(&issue, owner, repo))
        }
        ("POST", ["repos", owner, repo, "statuses", sha]) => {
            let state_name = body["state"].as_str().unwrap_or_default();
            if !["error", "failure", "pending", "success"].contains(&state_name) {
                return answer(
                    422,
                    json!({ "message": "Validation Failed", "errors": [{ "resource": "Status", "code": "custom", "field": "state", "message": "state is not included in the list" }] }),
                );
            }
            let mut status = body.clone();
            status["sha"] = json!(sha);
            state.statuses.push(status.clone());
            answer(
                201,
                json!({
                    "url": format!("https://api.github.test/repos/{owner}/{repo}/statuses/{sha}"),
                    "avatar_url": "https://github.test/images/error/octocat_happy.gif",
                    "id": id,
                    "node_id": format!("SC_{id}"),
                    "state": state_name,
                    "description": body["description"],
                    "target_url": body["target_url"],
                    "context": body.get("context").cloned().unwrap_or(json!("default")),
                    "created_at": "2026-01-01T00:00:00Z",
                    "updated_at": "2026-01-01T00:00:00Z",
                    "creator": github_bot(),
                }),
            )
        }
        ("POST", ["repos", owner, repo, "check-runs"]) => {
            let mut check_run = body.clone();
            check_run["id"] = json!(id);
            state.check_runs.push(check_run.clone());
            answer(
                201,
                json!({
                    "id": id,
                    "node_id": format!("CR_{id}"),
                    "head_sha": body["head_sha"],
                    "external_id": "",
                    "url": format!("https://api.github.test/repos/{owner}/{repo}/check-runs/{id}"),
                    "html_url": format!("https://github.test/{owner}/{repo}/runs/{id}"),
                    "details_url": body["details_url"],
                    "status": body["status"],
                    "conclusion": body["conclusion"],
                    "started_at": "2026-01-01T00:00:00Z",
                    "completed_at": "2026-01-01T00:00:00Z",
                    "output": {
                        "title": body["output"]["title"],
                        "summary": body["output"]["summary"],
                        "text": body["output"]["text"],
                        "annotations_count": 0,
                        "annotations_url": format!("https://api.github.test/repos/{owner}/{repo}/check-runs/{id}/annotations"),
                    },
                    "name": body["name"],
                    "check_suite": { "id": 5 },
                    "app": { "id": 15368, "slug": "github-actions", "name": "GitHub Actions" },
                    "pull_requests": [],
                }),
            )
        }
        ("POST", ["repos", owner, repo, "deployments"]) => {
            let mut deployment = body.clone();
            deployment["id"] = json!(id);
            deployment["sha"] = body["ref"].clone();
            state.deployments.push(deployment.clone());
            let environment = body
                .get("environment")
                .cloned()
                .unwrap_or(json!("production"));
            answer(
                201,
                json!({
                    "url": format!("https://api.github.test/repos/{owner}/{repo}/deployments/{id}"),
                    "id": id,
                    "node_id": format!("DE_{id}"),
                    "sha": body["ref"],
                    "ref": body["ref"],
                    "task": body.get("task").cloned().unwrap_or(json!("deploy")),
                    "payload": body.get("payload").cloned().unwrap_or(json!({})),
                    "original_environment": environment,
                    "environment": environment,
                    "description": body["description"],
                    "creator": github_bot(),
                    "created_at": "2026-01-01T00:00:00Z",
                    "updated_at": "2026-01-01T00:00:00Z",
                    "statuses_url": format!("https://api.github.test/repos/{owner}/{repo}/deployments/{id}/statuses"),
                    "repository_url": format!("https://api.github.test/repos/{owner}/{repo}"),
                    "transient_environment": body.get("transient_environment").cloned().unwrap_or(json!(false)),
                    "production_environment": body.get("production_environment").cloned().unwrap_or(json!(false)),
                }),
            )
        }
        (
            "POST",
            [
                "repos",
                owner,
                repo,
                "deployments",
                deployment_id,
                "statuses",
            ],
        ) => {
            let mut status = body.clone();
            status["id"] = json!(id);
            status["deployment_id"] = json!(deployment_id.parse::<u64>().unwrap_or(0));
            state.deployment_statuses.push(status.clone());
            answer(
                201,
                json!({
                    "url": format!("https://api.github.test/repos/{owner}/{repo}/deployments/{deployment_id}/statuses/{id}"),
                    "id": id,
                    "node_id": format!("DES_{id}"),
                    "state": body["state"],
                    "creator": github_bot(),
                    "description": body["description"],
                    "environment": body.get("environment").cloned().unwrap_or(json!("production")),
                    "target_url": body.get("target_url").cloned().unwrap_or(json!("")),
                    "log_url": body.get("log_url").cloned().unwrap_or(json!("")),
                    "created_at": "2026-01-01T00:00:00Z",
                    "updated_at": "2026-01-01T00:00:00Z",
                    "deployment_url": format!("https://api.github.test/repos/{owner}/{repo}/deployments/{deployment_id}"),
                    "repository_url": format!("https://api.github.test/repos/{owner}/{repo}"),
                }),
            )
        }
        _ => answer(
            404,
            json!({ "message": "Not Found", "documentation_url": "https://docs.github.com/rest" }),
        ),
    }
}

/// An issue in the shape `GET /repos/{owner}/{repo}/issues` documents.
/// GitHub's 422 for a comment body over 65,536 characters, when `text` is one.
fn too_long(text: &str, resource: &str) -> Option<Answer> {
    (text.chars().count() > 65_536).then(|| {
        answer(
            422,
            json!({
                "message": "Validation Failed",
                "errors": [{ "resource": resource, "code": "custom", "field": "body", "message": "body is too long (maximum is 65536 characters)" }],
                "documentation_url": "https://docs.github.com/rest",
            }),
        )
    })
}

/// A commit comment as `GET /repos/{owner}/{repo}/commits/{sha}/comments` lists it.
fn commit_comment_json(id: u64, text: &str, owner: &str, repo: &str, sha: &str) -> Value {
    json!({
        "id": id,
        "node_id": format!("CC_{id}"),
        "url": format!("https://api.github.test/repos/{owner}/{repo}/comments/{id}"),
        "html_url": format!("https://github.test/{owner}/{repo}/commit/{sha}#commitcomment-{id}"),
        "body": text,
        "path": null,
        "position": null,
        "line": null,
        "commit_id": sha,
        "user": github_bot(),
        "author_association": "NONE",
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
    })
}

fn github_issue(issue: &FakeIssue, owner: &str, repo: &str) -> Value {
    let number = issue.number;
    let base = format!("https://api.github.test/repos/{owner}/{repo}");
    json!({
        "id": 7_000_000 + number,
        "node_id": format!("I_{number}"),
        "url": format!("{base}/issues/{number}"),
        "repository_url": base,
        "labels_url": format!("{base}/issues/{number}/labels{{/name}}"),
        "comments_url": format!("{base}/issues/{number}/comments"),
        "events_url": format!("{base}/issues/{number}/events"),
        "html_url": format!("https://github.test/{owner}/{repo}/issues/{number}"),
        "number": number,
        "state": if issue.open { "open" } else { "closed" },
        "state_reason": issue.state_reason,
        "title": issue.title,
        "body": issue.body,
        "user": github_bot(),
        "labels": issue.labels.iter().enumerate().map(|(index, name)| json!({
            "id": 9_000 + index,
            "node_id": format!("LA_{index}"),
            "url": format!("{base}/labels/{name}"),
            "name": name,
            "description": null,
            "color": "ededed",
            "default": false,
        })).collect::<Vec<_>>(),
        "assignee": null,
        "assignees": [],
        "milestone": null,
        "locked": false,
        "active_lock_reason": null,
        "comments": 0,
        "closed_at": if issue.open { Value::Null } else { json!("2026-01-02T00:00:00Z") },
        "created_at": "2026-01-01T00:00:00Z",
        "updated_at": "2026-01-01T00:00:00Z",
        "author_association": "NONE",
    })
}

/// An issue in the shape GitLab's `GET /projects/:id/issues` documents.
fn gitlab_issue(issue: &FakeIssue) -> Value {
    json!({
        "id": 7_000_000 + issue.number,
        "iid": issue.number,
        "project_id": 5,
        "title": issue.title,
        "description": issue.body,
        "state": if issue.open { "opened" } else { "closed" },
        "labels": issue.labels,
        "author": { "username": "project_5_bot" },
        "web_url": format!("https://gitlab.test/group/project/-/issues/{}", issue.number),
        "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T00:00:00.000Z",
    })
}

/// The user GitHub Actions' token acts as, in the full shape GitHub documents.
fn github_bot() -> Value {
    json!({
        "login": "github-actions[bot]",
        "id": 41898282,
        "node_id": "MDM6Qm90NDE4OTgyODI=",
        "avatar_url": "https://avatars.githubusercontent.test/in/15368?v=4",
        "gravatar_id": "",
        "url": "https://api.github.test/users/github-actions%5Bbot%5D",
        "html_url": "https://github.test/apps/github-actions",
        "followers_url": "https://api.github.test/users/github-actions%5Bbot%5D/followers",
        "following_url": "https://api.github.test/users/github-actions%5Bbot%5D/following{/other_user}",
        "gists_url": "https://api.github.test/users/github-actions%5Bbot%5D/gists{/gist_id}",
        "starred_url": "https://api.github.test/users/github-actions%5Bbot%5D/starred{/owner}{/repo}",
        "subscriptions_url": "https://api.github.test/users/github-actions%5Bbot%5D/subscriptions",
        "organizations_url": "https://api.github.test/users/github-actions%5Bbot%5D/orgs",
        "repos_url": "https://api.github.test/users/github-actions%5Bbot%5D/repos",
        "events_url": "https://api.github.test/users/github-actions%5Bbot%5D/events{/privacy}",
        "received_events_url": "https://api.github.test/users/github-actions%5Bbot%5D/received_events",
        "type": "Bot",
        "user_view_type": "public",
        "site_admin": false,
    })
}

#[allow(clippy::too_many_arguments)]
fn gitlab(
    state: &mut State,
    method: &Method,
    segments: &[&str],
    query: &str,
    page: usize,
    per_page: usize,
    headers: &HeaderMap,
    body: &Value,
) -> Answer {
    let private = headers
        .get("private-token")
        .and_then(|value| value.to_str().ok());
    let job = headers
        .get("job-token")
        .and_then(|value| value.to_str().ok());
    match (private, job) {
        (Some(token), _) if token != BAD_TOKEN => {}
        (None, Some(_)) if *method == Method::GET => {}
        (None, Some(_)) => return answer(403, json!({ "message": "403 Forbidden" })),
        _ => return answer(401, json!({ "message": "401 Unauthorized" })),
    }
    state.next_id += 1;
    let id = state.next_id;
    let note_json = |id: u64, text: &str| json!({ "id": id, "body": text, "author": { "username": "project_5_bot" }, "system": false, "noteable_type": "MergeRequest" });
    match (method.as_str(), segments) {
        ("GET", ["api", "v4", "projects", _, "merge_requests", iid, "notes"]) => {
            let iid = iid.parse().unwrap_or(0);
            let notes = paginate(
                state.comments.get(&iid).map(Vec::as_slice).unwrap_or(&[]),
                page,
                per_page,
            );
            answer(
                200,
                Value::Array(
                    notes
                        .iter()
                        .map(|(id, text)| note_json(*id, text))
                        .collect(),
                ),
            )
        }
        ("POST", ["api", "v4", "projects", _, "merge_requests", iid, "notes"]) => {
            let iid = iid.parse().unwrap_or(0);
            let text = body["body"].as_str().unwrap_or_default().to_owned();
            state
                .comments
                .entry(iid)
                .or_default()
                .push((id, text.clone()));
            answer(201, note_json(id, &text))
        }
        (
            "PUT",
            [
                "api",
                "v4",
                "projects",
                _,
                "merge_requests",
                iid,
                "notes",
                note_id,
            ],
        ) => {
            let iid = iid.parse().unwrap_or(0);
            let note_id: u64 = note_id.parse().unwrap_or(0);
            let text = body["body"].as_str().unwrap_or_default().to_owned();
            match state
                .comments
                .get_mut(&iid)
                .and_then(|notes| notes.iter_mut().find(|(id, _)| *id == note_id))
            {
                Some(note) => {
                    note.1 = text.clone();
                    answer(200, note_json(note_id, &text))
                }
                None => answer(404, json!({ "message": "404 Not found" })),
            }
        }
        (
            "GET",
            [
                "api",
                "v4",
                "projects",
                _,
                "repository",
                "commits",
                sha,
                "discussions",
            ],
        ) => {
            let notes = paginate(
                state
                    .commit_comments
                    .get(*sha)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
                page,
                per_page,
            );
            answer(
                200,
                Value::Array(
                    notes
                        .iter()
                        .map(|(id, text)| json!({ "id": format!("d{id}"), "individual_note": false, "notes": [note_json(*id, text)] }))
                        .collect(),
                ),
            )
        }
        (
            "POST",
            [
                "api",
                "v4",
                "projects",
                _,
                "repository",
                "commits",
                sha,
                "discussions",
            ],
        ) => {
            let text = body["body"].as_str().unwrap_or_default().to_owned();
            state
                .commit_comments
                .entry((*sha).to_owned())
                .or_default()
                .push((id, text.clone()));
            answer(
                201,
                json!({ "id": format!("d{id}"), "individual_note": false, "notes": [note_json(id, &text)] }),
            )
        }
        (
            "PUT",
            [
                "api",
                "v4",
                "projects",
                _,
                "repository",
                "commits",
                sha,
                "discussions",
                discussion,
                "notes",
                note_id,
            ],
        ) => {
            let note_id: u64 = note_id.parse().unwrap_or(0);
            let text = body["body"].as_str().unwrap_or_default().to_owned();
            match state
                .commit_comments
                .get_mut(*sha)
                .and_then(|notes| notes.iter_mut().find(|(id, _)| *id == note_id))
                .filter(|_| *discussion == format!("d{note_id}"))
            {
                Some(note) => {
                    note.1 = text.clone();
                    answer(200, note_json(note_id, &text))
                }
                None => answer(404, json!({ "message": "404 Not found" })),
            }
        }
        ("GET", ["api", "v4", "projects", _, "issues"]) => {
            let issues = listed_issues(&state.issues, query, "all", page, per_page);
            answer(200, Value::Array(issues.iter().map(gitlab_issue).collect()))
        }
        ("POST", ["api", "v4", "projects", _, "issues"]) => {
            let Some(title) = body["title"].as_str().filter(|title| !title.is_empty()) else {
                return answer(400, json!({ "error": "title is missing" }));
            };
            let issue = FakeIssue {
                number: state.issues.len() as u64 + 1,
                title: title.to_owned(),
                body: body["description"].as_str().unwrap_or_default().to_owned(),
                labels: body["labels"]
                    .as_str()
                    .unwrap_or_default()
                    .split(',')
                    .filter(|label| !label.is_empty())
                    .map(str::to_owned)
                    .collect(),
                open: true,
                state_reason: None,
            };
            state.issues.push(issue.clone());
            answer(201, gitlab_issue(&issue))
        }
        ("PUT", ["api", "v4", "projects", _, "issues", iid]) => {
            let iid: u64 = iid.parse().unwrap_or(0);
            let Some(issue) = state.issues.iter_mut().find(|issue| issue.number == iid) else {
                return answer(404, json!({ "message": "404 Issue Not Found" }));
            };
            if let Some(text) = body["description"].as_str() {
                text.clone_into(&mut issue.body);
            }
            match body["state_event"].as_str() {
                Some("reopen") => issue.open = true,
                Some("close") => issue.open = false,
                Some(_) => {
                    return answer(
                        400,
                        json!({ "error": "state_event does not have a valid value" }),
                    );
                }
                None => {}
            }
            let issue = issue.clone();
            answer(200, gitlab_issue(&issue))
        }
        ("POST", ["api", "v4", "projects", _, "issues", iid, "notes"]) => {
            let iid = iid.parse().unwrap_or(0);
            let text = body["body"].as_str().unwrap_or_default().to_owned();
            state
                .comments
                .entry(iid)
                .or_default()
                .push((id, text.clone()));
            answer(
                201,
                json!({ "id": id, "body": text, "noteable_type": "Issue" }),
            )
        }
        ("POST", ["api", "v4", "projects", _, "statuses", sha]) => {
            let state_name = body["state"].as_str().unwrap_or_default();
            if !["pending", "running", "success", "failed", "canceled"].contains(&state_name) {
                return answer(
                    400,
                    json!({ "message": "state does not have a valid value" }),
                );
            }
            let mut status = body.clone();
            status["sha"] = json!(sha);
            state.statuses.push(status.clone());
            status["id"] = json!(id);
            status["status"] = body["state"].clone();
            answer(201, status)
        }
        ("POST", ["api", "v4", "projects", _, "deployments"]) => {
            let mut deployment = body.clone();
            deployment["id"] = json!(id);
            deployment["iid"] = json!(state.deployments.len() + 1);
            state.deployments.push(deployment.clone());
            answer(201, deployment)
        }
        ("PUT", ["api", "v4", "projects", _, "deployments", deployment_id]) => {
            let mut status = body.clone();
            status["deployment_id"] = json!(deployment_id.parse::<u64>().unwrap_or(0));
            state.deployment_statuses.push(status.clone());
            answer(200, status)
        }
        _ => answer(404, json!({ "message": "404 Not found" })),
    }
}
