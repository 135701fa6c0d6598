//! Publishing a command's result: log, annotations, Code Quality, summary, forge, outputs, exit code.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use gantry_ci::{
    AnnotationLimits, Annotations, CommentOutcome, EnvVars, ForgeWriteReport, JunitCase,
    JunitOutcome, Metric, OutputTarget, Platform, Publication, SUMMARY_LIMIT_BYTES, StickyKey,
    StopCommands, SummaryWrite, append_summary, code_quality_report, group_end, group_start,
    junit_report, metrics_report, publish_to_forge, write_outputs,
};
use gantry_core::{ExitCode, Finding, Verdict};
use serde::Serialize;
use serde_json::json;

use crate::cli::{OutputFormat, PublishArgs, PublishTarget};
use crate::commands::Session;
use crate::packaging::{Output, PACKAGED_COMMANDS, PackagedCommand};
use crate::printer::Printer;

/// What a file of an [`Outcome`] holds.
#[derive(Debug)]
enum Content {
    /// A JSON document, redacted value by value and written pretty.
    Json(serde_json::Value),
    /// Text, redacted.
    Text(String),
    /// Bytes the caller made from redacted values (a binary shard file).
    Bytes(Vec<u8>),
}

/// A command's result: everything it wants written, shown and published.
/// Handlers build one and hand it to [`publish`], which writes all of it
/// (files, GitLab reports, outputs) as the command's packaging says; no
/// handler writes a report file itself.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The subcommand, e.g. `validate-data`: its packaging decides which
    /// outputs it may set and which GitLab reports it writes.
    command: &'static str,
    /// `--name`: one sticky comment and status per (workflow, command, name).
    name: String,
    /// Title of the status, check run and log group.
    title: String,
    /// The verdict.
    verdict: Verdict,
    /// The Markdown report.
    markdown: String,
    /// Findings to annotate and put in the Code Quality report.
    findings: Vec<Finding>,
    /// JUnit test cases (one per check or gated metric), for GitLab's test summary.
    junit: Vec<JunitCase>,
    /// Metrics for GitLab's metrics report.
    metrics: Vec<Metric>,
    /// The command's own files (reports, locks, records), written first.
    files: Vec<(PathBuf, Content)>,
    /// Outputs besides those publishing sets (`verdict`, `published`, …).
    outputs: Vec<(Output, String)>,
    /// The command's JSON, printed with `--format json` (publishing fields are added).
    body: serde_json::Value,
    /// Where to publish.
    targets: Vec<PublishTarget>,
    /// Where the full report lives, for truncation notes.
    full_report: Option<String>,
    /// Whether a failed forge write is an error (exit 2) rather than a warning.
    forge_errors_are_fatal: bool,
}

impl Outcome {
    /// The outcome of `command`, titled `title`, that published nowhere yet.
    pub(crate) fn new(command: &'static str, title: String, verdict: Verdict) -> Outcome {
        Outcome {
            command,
            name: "default".to_owned(),
            title,
            verdict,
            markdown: String::new(),
            findings: Vec::new(),
            junit: Vec::new(),
            metrics: Vec::new(),
            files: Vec::new(),
            outputs: Vec::new(),
            body: serde_json::Value::Object(serde_json::Map::new()),
            targets: Vec::new(),
            full_report: None,
            forge_errors_are_fatal: false,
        }
    }
    /// Publishes under `--name` to the `--publish` targets.
    pub(crate) fn publishing(mut self, publishing: &PublishArgs) -> Outcome {
        self.name.clone_from(&publishing.name);
        self.targets.clone_from(&publishing.publish);
        self
    }
    /// Publishes under `name` to `targets`.
    pub(crate) fn published_as(mut self, name: &str, targets: Vec<PublishTarget>) -> Outcome {
        name.clone_into(&mut self.name);
        self.targets = targets;
        self
    }
    /// The Markdown report.
    pub(crate) fn markdown(mut self, markdown: String) -> Outcome {
        self.markdown = markdown;
        self
    }
    /// Findings to annotate.
    pub(crate) fn findings(mut self, findings: Vec<Finding>) -> Outcome {
        self.findings = findings;
        self
    }
    /// JUnit cases.
    pub(crate) fn junit(mut self, cases: Vec<JunitCase>) -> Outcome {
        self.junit = cases;
        self
    }
    /// GitLab metrics.
    pub(crate) fn metrics(mut self, metrics: Vec<Metric>) -> Outcome {
        self.metrics = metrics;
        self
    }
    /// Sets `output` to `value`.
    pub(crate) fn output(mut self, output: Output, value: impl ToString) -> Outcome {
        self.outputs.push((output, value.to_string()));
        self
    }
    /// Sets `output` to the path `path`.
    pub(crate) fn path_output(self, output: Output, path: &Path) -> Outcome {
        self.output(output, path.display())
    }
    /// Writes `value` as JSON to `path`.
    pub(crate) fn json_file(mut self, path: &Path, value: &impl Serialize) -> Result<Outcome> {
        let value = serde_json::to_value(value)
            .with_context(|| format!("cannot serialize {}", path.display()))?;
        self.files.push((path.to_owned(), Content::Json(value)));
        Ok(self)
    }
    /// Writes `bytes` to `path` as they are: the caller redacted what went
    /// into them (a binary shard's header is redacted before it is encoded).
    pub(crate) fn bytes_file(mut self, path: &Path, bytes: Vec<u8>) -> Outcome {
        self.files.push((path.to_owned(), Content::Bytes(bytes)));
        self
    }
    /// Writes `text` to `path`.
    pub(crate) fn text_file(mut self, path: &Path, text: String) -> Outcome {
        self.files.push((path.to_owned(), Content::Text(text)));
        self
    }
    /// The command's JSON for `--format json`.
    pub(crate) fn body(mut self, body: &impl Serialize) -> Result<Outcome> {
        self.body = serde_json::to_value(body).context("cannot serialize the result")?;
        Ok(self)
    }
    /// Where the full report lives, for notes on cut summaries and comments.
    pub(crate) fn full_report(mut self, path: &Path) -> Outcome {
        self.full_report = Some(path.display().to_string());
        self
    }
    /// A forge write that fails is an error, not a warning (`gantry report`,
    /// whose whole job the write is).
    pub(crate) fn forge_errors_are_fatal(mut self) -> Outcome {
        self.forge_errors_are_fatal = true;
        self
    }

    /// The outcome with every text in it redacted: what publishing writes
    /// comes from here and nowhere else.
    fn redacted(mut self, redactor: &gantry_core::Redactor) -> Outcome {
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
        for case in &mut self.junit {
            text(&mut case.name);
            match &mut case.outcome {
                JunitOutcome::Passed(note) | JunitOutcome::Skipped(note) => text(note),
                JunitOutcome::Failed { message, details } => {
                    text(message);
                    text(details);
                }
            }
        }
        for metric in &mut self.metrics {
            for (_, value) in &mut metric.labels {
                text(value);
            }
        }
        for (_, content) in &mut self.files {
            match content {
                Content::Json(value) => redactor.redact_json(value),
                Content::Text(body) => text(body),
                Content::Bytes(_) => {}
            }
        }
        for (_, value) in &mut self.outputs {
            text(value);
        }
        if let Some(full_report) = &mut self.full_report {
            text(full_report);
        }
        redactor.redact_json(&mut self.body);
        self
    }

    /// Writes the command's files, then the GitLab reports its packaging
    /// declares. Called on the redacted outcome: everything written here is
    /// made of what [`Outcome::redacted`] went through.
    fn write_files(&self, session: &Session<'_>, packaged: Option<&PackagedCommand>) -> Result<()> {
        // One thread a file: each is synced before it is renamed into place,
        // and the syncs, not the bytes, take the time (the file system
        // commits concurrent ones together).
        std::thread::scope(|scope| {
            let writers: Vec<_> = self
                .files
                .iter()
                .map(|(path, content)| {
                    scope.spawn(move || match content {
                        Content::Json(value) => write_json(path, value),
                        Content::Text(body) => write_file(path, body.as_bytes()),
                        Content::Bytes(bytes) => write_file(path, bytes),
                    })
                })
                .collect();
            writers.into_iter().try_for_each(|writer| {
                writer
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a thread writing the outputs failed")))
            })
        })?;
        if session.platform != Platform::GitLab {
            return Ok(());
        }
        let directory = report_directory(session);
        let declares = |report: fn(&PackagedCommand) -> bool| packaged.is_some_and(report);
        if declares(|packaged| packaged.code_quality) {
            write_json(
                &directory.join("codequality.json"),
                &code_quality_report(&self.findings),
            )?;
        }
        if declares(|packaged| packaged.junit) {
            let suite = format!("gantry {}", self.command);
            write_file(
                &directory.join("junit.xml"),
                junit_report(&suite, &self.junit).as_bytes(),
            )?;
        }
        if declares(|packaged| packaged.metrics) {
            write_file(
                &directory.join("metrics.txt"),
                metrics_report(&self.metrics).as_bytes(),
            )?;
        }
        Ok(())
    }
}

/// Publishes `outcome`: writes its files and reports, shows the report in
/// the log, annotates its findings, writes the summary, publishes to the
/// forge, sets its outputs and prints its JSON; returns the exit code.
pub(crate) fn publish(
    outcome: Outcome,
    session: &Session<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    // Everything below writes somewhere (log, annotations, files, the forge,
    // outputs): the outcome is redacted once, here, on its way in.
    let result = outcome.redacted(session.redactor());
    let packaged = PACKAGED_COMMANDS
        .iter()
        .find(|packaged| packaged.command == result.command);
    if let Some((output, _)) = result.outputs.iter().find(|(output, _)| {
        !packaged.is_some_and(|packaged| {
            packaged
                .all_outputs()
                .any(|(declared, _)| declared == output)
        })
    }) {
        bail!(
            "internal error: {} sets the output {}, which its packaging (packaging.rs) does not declare",
            result.command,
            output.name()
        );
    }
    result.write_files(session, packaged)?;
    let wants = |target| result.targets.contains(&target);
    // The report is untrusted text (it quotes data): in CI logs it goes in a
    // collapsed group with workflow commands paused, so a line in it cannot act as one.
    if session.platform != Platform::Local
        && printer.format() == OutputFormat::Text
        && !result.markdown.is_empty()
    {
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
    let mut outputs = vec![(Output::Verdict, result.verdict.to_string())];
    outputs.extend(result.outputs.iter().cloned());
    outputs.push((Output::Published, published.join(",")));
    if let Some(url) = &comment_url {
        outputs.push((Output::CommentUrl, url.clone()));
    }
    if let Some(path) = &summary_file {
        outputs.push((Output::SummaryFile, path.clone()));
    }
    let outputs: Vec<(String, String)> = outputs
        .into_iter()
        .map(|(output, value)| (output.name().to_owned(), value))
        .collect();
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
            let mut value = result.body;
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

/// Writes `value` as pretty JSON to `path`, creating the directory.
fn write_json<T: serde::Serialize + ?Sized>(path: &std::path::Path, value: &T) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)
        .with_context(|| format!("cannot serialize {}", path.display()))?;
    text.push('\n');
    write_file(path, text.as_bytes())
}

fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    // Whole or absent: a reader (the next job, a concurrent merge) never
    // sees half a report.
    let file_name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    std::fs::File::create(&temporary)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temporary, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })
        .with_context(|| format!("cannot write {}", path.display()))
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
