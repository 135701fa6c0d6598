//! What the forge clients send and get back: sticky-comment keys, commit
//! statuses, check runs, deployments, tracking issues. Both clients and the dispatcher
//! ([`crate::ForgeClient`]) speak these; none of them owns them.

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
    /// What GitHub keeps with it (the model's digest, the rollout id);
    /// merged beside `git_ref`.
    pub payload: serde_json::Map<String, serde_json::Value>,
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
    /// The tool could not do its job (GitHub `error`, GitLab `failed`).
    Error,
    /// Superseded or cancelled.
    Inactive,
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

/// Identifies one tracking issue: a long-lived condition (a model in an
/// environment that is not healthy) kept in one issue, found again by the
/// hidden marker in its body among the issues that carry `labels`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueKey {
    /// The hidden marker, e.g. `<!-- gantry-monitor model=tiny env=production -->`.
    pub marker: String,
    /// The title of a new issue.
    pub title: String,
    /// Labels a new issue gets and the search filters by.
    pub labels: Vec<String>,
}

/// An issue as the forge lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedIssue {
    /// The issue number (GitHub) or iid (GitLab).
    pub number: u64,
    /// Whether it is open.
    pub open: bool,
    /// Its body (description).
    pub body: String,
    /// Link to it, when the forge gave one.
    pub url: Option<String>,
}

/// What [`crate::ForgeClient::sync_issue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueOutcome {
    /// No issue had the marker; a new one was opened.
    Opened(TrackedIssue),
    /// The newest issue with the marker was closed; it was reopened and edited.
    Reopened(TrackedIssue),
    /// The open issue with the marker was edited in place.
    Updated(TrackedIssue),
    /// The open issue with the marker was closed with a comment.
    Closed(TrackedIssue),
    /// Healthy, and no issue with the marker was open: nothing to do.
    NoneOpen,
}

impl IssueOutcome {
    /// The issue acted on, if any.
    pub fn issue(&self) -> Option<&TrackedIssue> {
        match self {
            IssueOutcome::Opened(issue)
            | IssueOutcome::Reopened(issue)
            | IssueOutcome::Updated(issue)
            | IssueOutcome::Closed(issue) => Some(issue),
            IssueOutcome::NoneOpen => None,
        }
    }
}
