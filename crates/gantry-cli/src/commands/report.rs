//! `gantry report`: publish a Markdown report, and any findings, where the people of this run will see it.

use std::io::Write as _;

use anyhow::{Context as _, Result};
use gantry_ci::{
    AnnotationLimits, Annotations, CommentOutcome, EnvVars, ForgeWriteReport, OutputTarget,
    Platform, Publication, SUMMARY_LIMIT_BYTES, StickyKey, StopCommands, append_summary,
    code_quality_report, group_end, group_start, publish_to_forge, write_outputs,
};
use gantry_core::{ExitCode, Finding, Severity, Verdict};
use serde_json::json;

use crate::cli::{OutputFormat, PublishTarget, ReportArgs};
use crate::commands::Session;
use crate::printer::Printer;

/// Findings listed in the Markdown; the rest are counted.
const MAX_FINDING_ROWS: usize = 500;

pub(crate) fn run(args: &ReportArgs, session: &Session<'_>, printer: &Printer) -> Result<ExitCode> {
    let markdown = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read the report --file {}", args.file.display()))?;
    let findings = match &args.findings {
        Some(path) => read_findings(path)?,
        None => Vec::new(),
    };
    let n_errors = findings
        .iter()
        .filter(|finding| finding.severity == Severity::Error)
        .count();
    let n_warnings = findings
        .iter()
        .filter(|finding| finding.severity == Severity::Warning)
        .count();
    let mut verdict = Verdict::from(args.verdict);
    if n_errors > 0 {
        verdict = verdict.worst(Verdict::Fail);
    } else if n_warnings > 0 {
        verdict = verdict.worst(Verdict::Warn);
    }
    if args.strict && verdict == Verdict::Warn {
        verdict = Verdict::Fail;
    }
    let markdown = session
        .masker
        .redact(&with_findings_section(&markdown, &findings));
    let title = args.title.clone().unwrap_or_else(|| {
        first_heading(&markdown).unwrap_or_else(|| format!("gantry report: {verdict}"))
    });
    let wants = |target| args.publish.contains(&target);

    // The report itself is untrusted text: in CI logs it goes in a collapsed
    // group with workflow commands paused, so a line in it cannot act as one.
    if session.platform != Platform::Local && printer.format() == OutputFormat::Text {
        let mut log = printer.commands();
        let stop = StopCommands::new();
        let _ = writeln!(
            log,
            "{}",
            group_start(
                session.platform,
                "gantry-report",
                &format!("Report: {title}")
            )
        );
        if session.platform == Platform::GitHub {
            let _ = writeln!(log, "{}", stop.pause());
        }
        let _ = writeln!(log, "{}", markdown.trim_end());
        if session.platform == Platform::GitHub {
            let _ = writeln!(log, "{}", stop.resume());
        }
        if let Some(end) = group_end(session.platform, "gantry-report") {
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
        for finding in &findings {
            let mut finding = finding.clone();
            finding.message = session.masker.redact(&finding.message);
            annotations.emit(&finding, &mut out)?;
        }
        annotations.finish(&mut out)?;
    }
    if session.platform == Platform::GitLab {
        let path = report_directory(session).join("codequality.json");
        write_json(&path, &code_quality_report(&findings))?;
    }

    let mut published = Vec::new();
    let mut summary_file = None;
    if wants(PublishTarget::Summary) {
        let path = summary_path(session, &args.name);
        let truncated = append_summary(
            &path,
            &markdown,
            SUMMARY_LIMIT_BYTES,
            Some(&args.file.display().to_string()),
        )?;
        if truncated {
            printer.warning(&format!(
                "the summary was cut to stay under 1 MiB; the full report is {}",
                args.file.display()
            ));
        }
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
                command: "report".to_owned(),
                name: args.name.clone(),
            },
            title: title.clone(),
            markdown: markdown.clone(),
            verdict,
            comment: wants(PublishTarget::Comment),
            commit_status: wants(PublishTarget::Status),
            check_run: wants(PublishTarget::Check),
        };
        forge = session.block_on(publish_to_forge(
            &session.context,
            session.environment,
            &publication,
        ))?;
        published.extend(forge.done.iter().copied());
    }
    if session.platform != Platform::Local {
        for note in &forge.notes {
            printer.warning(&session.masker.redact(note));
        }
    }
    for (what, error) in &forge.errors {
        printer.error(
            &session
                .masker
                .redact(&format!("cannot publish the {what}: {error}")),
        );
    }

    let comment_url = forge.comment.as_ref().and_then(|comment| match comment {
        CommentOutcome::Created { url, .. } | CommentOutcome::Updated { url, .. } => url.clone(),
    });
    let mut outputs = vec![
        ("verdict".to_owned(), verdict.to_string()),
        ("published".to_owned(), published.join(",")),
    ];
    if let Some(url) = &comment_url {
        outputs.push(("comment-url".to_owned(), url.clone()));
    }
    if let Some(path) = &summary_file {
        outputs.push(("summary-file".to_owned(), path.clone()));
    }
    if args.findings.is_some() {
        outputs.push(("errors".to_owned(), n_errors.to_string()));
        outputs.push(("warnings".to_owned(), n_warnings.to_string()));
    }
    let (target, warning) =
        OutputTarget::from_environment(session.platform, session.environment, "report");
    if let Some(warning) = warning {
        printer.warning(&warning);
    }
    let mut local_outputs: Vec<u8> = Vec::new();
    for warning in write_outputs(&target, &outputs, &mut local_outputs)? {
        printer.warning(&warning);
    }

    match printer.format() {
        OutputFormat::Json => printer.json(&json!({
            "verdict": verdict,
            "title": title,
            "published": published,
            "errors": n_errors,
            "warnings": n_warnings,
            "comment_url": comment_url,
            "summary_file": summary_file,
            "notes": forge.notes.iter().map(|note| session.masker.redact(note)).collect::<Vec<_>>(),
            "publish_errors": forge.errors.iter().map(|(what, error)| json!({"target": what, "message": session.masker.redact(&error.to_string())})).collect::<Vec<_>>(),
        })),
        OutputFormat::Text => {
            let published_text = if published.is_empty() { "nothing".to_owned() } else { published.join(", ") };
            printer.info(&format!("{title}: {verdict}; published to {published_text}"));
            if !local_outputs.is_empty() {
                printer.data(String::from_utf8_lossy(&local_outputs).trim_end());
            }
        }
    }
    if !forge.errors.is_empty() {
        return Ok(ExitCode::ERROR);
    }
    Ok(verdict.exit_code())
}

/// Reads a JSON array of findings, naming the file and the position of a bad one.
fn read_findings(path: &std::path::Path) -> Result<Vec<Finding>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --findings {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "--findings {} is not a JSON array of findings (each with code, severity: error|warning|notice, title, message, optional location {{path, line}})",
            path.display()
        )
    })
}

/// The report, followed by a table of the findings when there are any.
fn with_findings_section(markdown: &str, findings: &[Finding]) -> String {
    if findings.is_empty() {
        return markdown.to_owned();
    }
    let mut text = markdown.trim_end().to_owned();
    let count = |severity| {
        findings
            .iter()
            .filter(|finding| finding.severity == severity)
            .count()
    };
    text.push_str(&format!(
        "\n\n### Findings\n\n{} error(s), {} warning(s), {} notice(s)\n\n| severity | code | where | message |\n|---|---|---|---|\n",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Notice)
    ));
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
    for finding in sorted.iter().take(MAX_FINDING_ROWS) {
        let place = finding
            .location
            .as_ref()
            .map_or_else(String::new, |location| match location.line {
                Some(line) => format!("`{}:{line}`", location.path),
                None => format!("`{}`", location.path),
            });
        let cell = |value: &str| value.replace('|', "\\|").replace(['\n', '\r'], " ");
        text.push_str(&format!(
            "| {} | `{}` | {place} | {}: {} |\n",
            finding.severity.as_str(),
            cell(&finding.code),
            cell(&finding.title),
            cell(&finding.message)
        ));
    }
    if findings.len() > MAX_FINDING_ROWS {
        text.push_str(&format!(
            "\n…and {} more in the findings file.\n",
            findings.len() - MAX_FINDING_ROWS
        ));
    }
    text
}

fn report_directory(session: &Session<'_>) -> std::path::PathBuf {
    session
        .environment
        .get(EnvVars::GANTRY_REPORT_DIR)
        .unwrap_or(".gantry/reports")
        .into()
}

fn write_json(path: &std::path::Path, value: &serde_json::Value) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// Where the summary goes: `$GITHUB_STEP_SUMMARY` on GitHub, else a file in the report directory.
fn summary_path(session: &Session<'_>, name: &str) -> std::path::PathBuf {
    if session.platform == Platform::GitHub
        && let Some(path) = session.environment.get(EnvVars::GITHUB_STEP_SUMMARY)
    {
        return path.into();
    }
    report_directory(session).join(format!("report-{name}.md"))
}

fn first_heading(markdown: &str) -> Option<String> {
    markdown
        .lines()
        .find_map(|line| {
            line.trim_start()
                .strip_prefix('#')
                .map(|rest| rest.trim_start_matches('#').trim().to_owned())
        })
        .filter(|heading| !heading.is_empty())
}
