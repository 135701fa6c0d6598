//! Publishing a command's result: log, annotations, Code Quality, summary, forge, outputs, exit code.

use std::io::Write as _;

use anyhow::{Context as _, Result};
use gantry_ci::{
    AnnotationLimits, Annotations, CommentOutcome, EnvVars, ForgeWriteReport, OutputTarget,
    Platform, Publication, SUMMARY_LIMIT_BYTES, StickyKey, StopCommands, SummaryWrite,
    append_summary, code_quality_report, group_end, group_start, publish_to_forge, write_outputs,
};
use gantry_core::{ExitCode, Finding, Verdict};
use serde_json::json;

use crate::cli::{OutputFormat, PublishTarget};
use crate::commands::Session;
use crate::printer::Printer;

/// A command's result, ready to publish.
#[derive(Debug)]
pub(crate) struct CommandResult {
    /// The subcommand, e.g. `validate-data`.
    pub(crate) command: &'static str,
    /// `--name`: one sticky comment and status per (workflow, command, name).
    pub(crate) name: String,
    /// Title of the status, check run and log group.
    pub(crate) title: String,
    /// The Markdown report (already redacted).
    pub(crate) markdown: String,
    /// The verdict.
    pub(crate) verdict: Verdict,
    /// Findings to annotate (already redacted).
    pub(crate) findings: Vec<Finding>,
    /// Where to publish.
    pub(crate) targets: Vec<PublishTarget>,
    /// Command outputs besides `verdict`, `published`, `comment-url` and `summary-file`.
    pub(crate) outputs: Vec<(String, String)>,
    /// Where the full report lives, for truncation notes.
    pub(crate) full_report: Option<String>,
    /// Whether a failed forge write is an error (exit 2) rather than a warning.
    pub(crate) forge_errors_are_fatal: bool,
    /// The command's own JSON, printed with `--format json` (publishing fields are added).
    pub(crate) json: serde_json::Value,
}

impl CommandResult {
    /// The result with every text in it redacted: what publishing writes
    /// comes from here and nowhere else.
    fn redacted(mut self, redactor: &gantry_core::Redactor) -> CommandResult {
        let text = |text: &mut String| *text = redactor.redact(text).into_owned();
        text(&mut self.name);
        text(&mut self.title);
        text(&mut self.markdown);
        for finding in &mut self.findings {
            text(&mut finding.code);
            text(&mut finding.message);
            text(&mut finding.title);
            if let Some(location) = &mut finding.location {
                text(&mut location.path);
            }
        }
        for (_, value) in &mut self.outputs {
            text(value);
        }
        if let Some(full_report) = &mut self.full_report {
            text(full_report);
        }
        redactor.redact_json(&mut self.json);
        self
    }
}

pub(crate) fn publish(
    result: CommandResult,
    session: &Session<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    // Everything below writes somewhere (log, annotations, files, the forge,
    // outputs): the result is redacted once, here, on its way in.
    let result = result.redacted(session.redactor());
    let wants = |target| result.targets.contains(&target);
    // The report is untrusted text (it quotes data): in CI logs it goes in a
    // collapsed group with workflow commands paused, so a line in it cannot act as one.
    if session.platform != Platform::Local && printer.format() == OutputFormat::Text {
        let mut log = printer.commands();
        let stop = StopCommands::new();
        let group = format!("gantry-{}", result.command);
        let _ = writeln!(
            log,
            "{}",
            group_start(
                session.platform,
                &group,
                &format!("Report: {}", result.title)
            )
        );
        if session.platform == Platform::GitHub {
            let _ = writeln!(log, "{}", stop.pause());
        }
        let _ = writeln!(log, "{}", result.markdown.trim_end());
        if session.platform == Platform::GitHub {
            let _ = writeln!(log, "{}", stop.resume());
        }
        if let Some(end) = group_end(session.platform, &group) {
            let _ = writeln!(log, "{end}");
        }
    }

    let mut annotations = Annotations::new(session.platform, AnnotationLimits::default());
    {
        let mut out: Box<dyn std::io::Write> = if session.platform == Platform::GitHub {
            printer.commands()
        } else {
            Box::new(std::io::stderr())
        };
        for finding in &result.findings {
            annotations.emit(finding, &mut out)?;
        }
        annotations.finish(&mut out)?;
    }
    if session.platform == Platform::GitLab {
        let path = report_directory(session).join("codequality.json");
        write_json(session, &path, &code_quality_report(&result.findings))?;
    }

    let mut published = Vec::new();
    let mut summary_file = None;
    let mut summary_failed = false;
    if wants(PublishTarget::Summary) {
        let path = summary_path(session, result.command, &result.name);
        // A summary that cannot be written is said, and not counted as
        // published; like a forge write, it changes no verdict (but for
        // `gantry report`, whose job the write is).
        let written = append_summary(
            &path,
            &result.markdown,
            SUMMARY_LIMIT_BYTES,
            result.full_report.as_deref(),
        );
        let problem = match written {
            Ok(SummaryWrite::Whole) => None,
            Ok(SummaryWrite::Cut) => {
                printer.warning(
                    "the summary was cut to stay under 1 MiB; the full report is in the job's files",
                );
                None
            }
            Ok(SummaryWrite::Full) => Some(format!(
                "the job summary {} is full (1 MiB, from earlier steps): nothing was added",
                path.display()
            )),
            Err(error) => Some(format!("cannot write the job summary: {error}")),
        };
        match problem {
            None => {
                if session.platform != Platform::GitHub
                    || session
                        .environment
                        .get(EnvVars::GITHUB_STEP_SUMMARY)
                        .is_none()
                {
                    summary_file = Some(path.display().to_string());
                }
                published.push("summary");
            }
            Some(problem) if result.forge_errors_are_fatal => {
                printer.error(&problem);
                summary_failed = true;
            }
            Some(problem) => printer.warning(&problem),
        }
    }

    let mut forge = ForgeWriteReport::default();
    if wants(PublishTarget::Comment) || wants(PublishTarget::Status) || wants(PublishTarget::Check)
    {
        let publication = Publication {
            key: StickyKey {
                workflow: session
                    .context
                    .workflow
                    .clone()
                    .unwrap_or_else(|| "local".to_owned()),
                command: result.command.to_owned(),
                name: result.name.clone(),
            },
            title: result.title.clone(),
            markdown: result.markdown.clone(),
            verdict: result.verdict,
            comment: wants(PublishTarget::Comment),
            commit_status: wants(PublishTarget::Status),
            check_run: wants(PublishTarget::Check),
        };
        forge = session.block_on(publish_to_forge(
            &session.context,
            session.environment,
            session.redactor(),
            &publication,
        ))?;
        published.extend(forge.done.iter().copied());
    }
    if session.platform != Platform::Local {
        for note in &forge.notes {
            printer.warning(note);
        }
    }
    for (what, error) in &forge.errors {
        let message = format!("cannot publish the {what}: {error}");
        if result.forge_errors_are_fatal {
            printer.error(&message)
        } else {
            printer.warning(&message)
        }
    }

    let comment_url = forge.comment.as_ref().and_then(|comment| match comment {
        CommentOutcome::Created { url, .. } | CommentOutcome::Updated { url, .. } => url.clone(),
    });
    let mut outputs = vec![("verdict".to_owned(), result.verdict.to_string())];
    outputs.extend(result.outputs.iter().cloned());
    outputs.push(("published".to_owned(), published.join(",")));
    if let Some(url) = &comment_url {
        outputs.push(("comment-url".to_owned(), url.clone()));
    }
    if let Some(path) = &summary_file {
        outputs.push(("summary-file".to_owned(), path.clone()));
    }
    let (target, warning) =
        OutputTarget::from_environment(session.platform, session.environment, result.command);
    if let Some(warning) = warning {
        printer.warning(&warning);
    }
    let mut local_outputs: Vec<u8> = Vec::new();
    for warning in write_outputs(&target, &outputs, &mut local_outputs)? {
        printer.warning(&warning);
    }

    match printer.format() {
        OutputFormat::Json => {
            let mut value = result.json;
            if let Some(object) = value.as_object_mut() {
                object.insert("verdict".to_owned(), json!(result.verdict));
                object.insert("title".to_owned(), json!(result.title));
                object.insert("published".to_owned(), json!(published));
                object.insert("comment_url".to_owned(), json!(comment_url));
                object.insert("summary_file".to_owned(), json!(summary_file));
                object.insert(
                    "notes".to_owned(),
                    json!(forge.notes.iter().collect::<Vec<_>>()),
                );
                object.insert(
                    "publish_errors".to_owned(),
                    json!(forge.errors.iter().map(|(what, error)| json!({"target": what, "message": error.to_string()})).collect::<Vec<_>>()),
                );
            }
            printer.json(&value);
        }
        OutputFormat::Text => {
            let published_text = if published.is_empty() {
                "nothing".to_owned()
            } else {
                published.join(", ")
            };
            printer.info(&format!(
                "{}: {}; published to {published_text}",
                result.title, result.verdict
            ));
            if !local_outputs.is_empty() {
                printer.data(String::from_utf8_lossy(&local_outputs).trim_end());
            }
        }
    }
    if result.forge_errors_are_fatal && (!forge.errors.is_empty() || summary_failed) {
        return Ok(ExitCode::ERROR);
    }
    Ok(result.verdict.exit_code())
}

/// `$GANTRY_REPORT_DIR`, default `.gantry/reports`.
pub(crate) fn report_directory(session: &Session<'_>) -> std::path::PathBuf {
    session
        .environment
        .get(EnvVars::GANTRY_REPORT_DIR)
        .unwrap_or(".gantry/reports")
        .into()
}

/// Writes `value` as pretty JSON to `path`, redacted value by value (so it
/// stays valid JSON), creating the directory.
pub(crate) fn write_json<T: serde::Serialize + ?Sized>(
    session: &Session<'_>,
    path: &std::path::Path,
    value: &T,
) -> Result<()> {
    let mut text = session.redactor().to_json_pretty(value)?;
    text.push('\n');
    write_file(path, text.as_bytes())
}

/// Writes `text` to `path` redacted, creating the directory.
pub(crate) fn write_text(session: &Session<'_>, path: &std::path::Path, text: &str) -> Result<()> {
    write_file(path, session.redactor().redact(text).as_bytes())
}

fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Where the summary goes: `$GITHUB_STEP_SUMMARY` on GitHub, else a file in the report directory.
fn summary_path(session: &Session<'_>, command: &str, name: &str) -> std::path::PathBuf {
    if session.platform == Platform::GitHub
        && let Some(path) = session.environment.get(EnvVars::GITHUB_STEP_SUMMARY)
    {
        return path.into();
    }
    report_directory(session).join(format!("{command}-{name}.md"))
}
