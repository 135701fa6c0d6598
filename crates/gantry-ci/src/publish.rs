//! Publishing a result to the forge, degrading to annotations and summary when it cannot.

use std::io::Write;

use gantry_core::{Admission, Redactor, Secret, Verdict};

use crate::context::RunContext;
use crate::environment::{Environment, Platform};
use crate::error::Error;
use crate::forge::ForgeClient;
use crate::forge_types::{
    CheckRun, CommentOutcome, CommitState, CommitStatus, StickyKey, truncate_comment_body,
};
use crate::workflow_commands::escape_data;

/// Keeps secrets out of logs: registers them with the [`Redactor`] every
/// writer of gantry shares, and on GitHub announces them to the runner with
/// `::add-mask::` too, so that a later step cannot print them either.
#[derive(Debug, Default)]
pub struct Masker {
    redactor: Redactor,
    /// What was announced with `::add-mask::` already.
    announced: std::collections::HashSet<String>,
}

impl Masker {
    /// A masker that registers with `redactor`.
    pub fn new(redactor: Redactor) -> Masker {
        Masker {
            redactor,
            announced: std::collections::HashSet::new(),
        }
    }

    /// The redactor the masker registers with.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Registers `secret`. On GitHub each of its lines is announced with
    /// `::add-mask::` on `out` (which must not redact) before anything else
    /// could print it. A value too short or too plain to mask is neither
    /// registered nor announced: masking `1` would corrupt every output.
    pub fn add(
        &mut self,
        platform: Platform,
        secret: &Secret,
        out: &mut dyn Write,
    ) -> std::io::Result<Admission> {
        let admission = self.redactor.add(secret);
        // A value the redactor knew already (a password from a URL on the
        // command line) still needs announcing to the runner, once.
        if matches!(admission, Admission::Added | Admission::Known)
            && platform == Platform::GitHub
            && self.announced.insert(secret.expose().to_owned())
        {
            for line in secret
                .expose()
                .lines()
                .filter(|line| !line.trim().is_empty())
            {
                writeln!(out, "::add-mask::{}", escape_data(line))?;
            }
        }
        Ok(admission)
    }

    /// `text` with every registered secret replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.redactor.redact(text).into_owned()
    }
}

/// What to publish on the PR/MR and the commit.
#[derive(Debug, Clone)]
pub struct Publication {
    /// Which sticky comment to create or edit.
    pub key: StickyKey,
    /// Title of the status and check run.
    pub title: String,
    /// The Markdown body.
    pub markdown: String,
    /// The verdict, which sets the status state.
    pub verdict: Verdict,
    /// Post or edit the sticky comment.
    pub comment: bool,
    /// Set a commit status named `gantry/<command>[/<name>]`.
    pub commit_status: bool,
    /// Create a check run (GitHub; a commit status on GitLab).
    pub check_run: bool,
}

/// What publishing did, and what it could not do.
#[derive(Debug, Default)]
pub struct ForgeWriteReport {
    /// The comment that was created or edited.
    pub comment: Option<CommentOutcome>,
    /// Writes that succeeded, by name (`comment`, `status`, `check`).
    pub done: Vec<&'static str>,
    /// Plain notes on writes that were skipped, and why (fork PR, no token).
    pub notes: Vec<String>,
    /// Writes that failed.
    pub errors: Vec<(&'static str, Error)>,
}

impl ForgeWriteReport {
    /// The status context used for a publication: `gantry/<command>`, plus `/<name>` unless it is `default`.
    pub fn status_context(key: &StickyKey) -> String {
        if key.name == "default" {
            format!("gantry/{}", key.command)
        } else {
            format!("gantry/{}/{}", key.command, key.name)
        }
    }
}

/// Publishes `publication` to the run's forge. Never fails: what cannot be
/// written is reported in the returned notes and errors, so that a reporting
/// problem never hides or changes the verdict. A fork PR's read-only token
/// (403) becomes a note, not an error.
pub async fn publish_to_forge(
    context: &RunContext,
    environment: &Environment,
    redactor: &Redactor,
    publication: &Publication,
) -> ForgeWriteReport {
    let mut report = ForgeWriteReport::default();
    if context.platform == Some(Platform::Local) || context.platform.is_none() {
        return report;
    }
    let client = match ForgeClient::from_context(context, environment, redactor) {
        Ok(client) => client,
        Err(error) => {
            report.notes.push(format!(
                "{error}; the result is in the annotations and the job summary"
            ));
            return report;
        }
    };
    let from_fork = context
        .change_request
        .as_ref()
        .is_some_and(|change| change.from_fork);
    let state = match publication.verdict {
        Verdict::Pass | Verdict::Warn => CommitState::Success,
        Verdict::Fail => CommitState::Failure,
    };
    let record = |report: &mut ForgeWriteReport, what: &'static str, outcome: Result<(), Error>| {
        match outcome {
        Ok(()) => report.done.push(what),
        Err(error) if from_fork && matches!(error.http_status(), Some(403 | 404)) => report.notes.push(format!(
            "this change comes from a fork, whose token cannot write ({what} skipped: {error}); the result is in the annotations and the job summary"
        )),
        Err(Error::ForgeUnavailable { reason, .. }) => report.notes.push(format!("{what} skipped: {reason}")),
        Err(error) => report.errors.push((what, error)),
    }
    };

    if publication.comment {
        match &context.change_request {
            Some(change) => {
                let body = truncate_comment_body(
                    &publication.markdown,
                    client.comment_limit() - 200,
                    context.run_url.as_deref(),
                );
                let outcome = client
                    .upsert_sticky_comment(change.number, &publication.key, &body)
                    .await;
                let outcome = outcome.map(|comment| report.comment = Some(comment));
                record(&mut report, "comment", outcome);
            }
            // A push: the comment goes on the commit.
            None => match context.status_sha() {
                Some(sha) => {
                    let body = truncate_comment_body(
                        &publication.markdown,
                        client.comment_limit() - 200,
                        context.run_url.as_deref(),
                    );
                    let outcome = client
                        .upsert_commit_comment(sha, &publication.key, &body)
                        .await;
                    let outcome = outcome.map(|comment| report.comment = Some(comment));
                    record(&mut report, "comment", outcome);
                }
                None => report.notes.push(
                    "no pull or merge request and no commit for this run, so no comment was posted"
                        .to_owned(),
                ),
            },
        }
    }
    let Some(sha) = context.status_sha().map(str::to_owned) else {
        if publication.commit_status || publication.check_run {
            report
                .notes
                .push("no commit SHA in the environment, so no status was set".to_owned());
        }
        return report;
    };
    let context_name = ForgeWriteReport::status_context(&publication.key);
    if publication.commit_status {
        let status = CommitStatus {
            sha: sha.clone(),
            context: context_name.clone(),
            state,
            description: publication.title.clone(),
            target_url: context.run_url.clone(),
        };
        let outcome = client.set_commit_status(&status).await;
        record(&mut report, "status", outcome);
    }
    if publication.check_run {
        let check_run = CheckRun {
            sha,
            name: context_name,
            conclusion: state,
            title: publication.title.clone(),
            summary: publication.markdown.clone(),
            details_url: context.run_url.clone(),
        };
        let outcome = client.create_check_run(&check_run).await;
        record(&mut report, "check", outcome);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ghp_secret%1Zq8vN3x";

    #[test]
    fn masks_are_announced_once_per_line_and_redacted() {
        let mut masker = Masker::default();
        let mut out = Vec::new();
        let first = masker
            .add(Platform::GitHub, &Secret::new(TOKEN), &mut out)
            .expect("add");
        let again = masker
            .add(Platform::GitHub, &Secret::new(TOKEN), &mut out)
            .expect("add");
        assert_eq!((first, again), (Admission::Added, Admission::Known));
        masker
            .add(
                Platform::GitHub,
                &Secret::new("-----BEGIN KEY-----\nabc\n"),
                &mut out,
            )
            .expect("add");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "::add-mask::ghp_secret%251Zq8vN3x\n::add-mask::-----BEGIN KEY-----\n::add-mask::abc\n"
        );
        assert_eq!(
            masker.redact(&format!("token {TOKEN} used")),
            "token *** used"
        );
    }

    #[test]
    fn values_too_plain_to_mask_are_not_announced() {
        let mut masker = Masker::default();
        let mut out = Vec::new();
        let admission = masker
            .add(Platform::GitHub, &Secret::new("1"), &mut out)
            .expect("add");
        assert_eq!(admission, Admission::TooShort);
        assert!(out.is_empty());
        assert_eq!(masker.redact("score 1.0"), "score 1.0");
    }

    #[test]
    fn gitlab_masks_are_redacted_without_commands() {
        let mut masker = Masker::default();
        let mut out = Vec::new();
        masker
            .add(Platform::GitLab, &Secret::new("glpat-xyzZq8vN3x"), &mut out)
            .expect("add");
        assert!(out.is_empty());
        assert_eq!(masker.redact("glpat-xyzZq8vN3x"), "***");
    }
}
