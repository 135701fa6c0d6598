//! `gantry report`: publish a Markdown report, and any findings, where the people of this run will see it.

use anyhow::{Context as _, Result};
use gantry_core::{ExitCode, Finding, Severity, Verdict};
use serde_json::json;

use crate::cli::ReportArgs;
use crate::commands::Session;
use crate::commands::markdown::markdown_cell;
use crate::commands::publish::{Outcome, publish};
use crate::packaging::Output;
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
    let markdown = with_findings_section(&markdown, &findings);
    let title = args.title.clone().unwrap_or_else(|| {
        first_heading(&markdown).unwrap_or_else(|| format!("gantry report: {verdict}"))
    });
    let mut outcome = Outcome::new("report", title, verdict)
        .publishing(&args.publishing)
        .markdown(markdown)
        .findings(findings)
        .full_report(&args.file)
        // Publishing is this command's whole job, so a refused write is an error.
        .forge_errors_are_fatal()
        .body(&json!({ "errors": n_errors, "warnings": n_warnings }))?;
    if args.findings.is_some() {
        outcome = outcome
            .output(Output::Errors, n_errors)
            .output(Output::Warnings, n_warnings);
    }
    publish(outcome, session, printer)
}

/// Reads a JSON array of findings, naming the file on error.
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
        text.push_str(&format!(
            "| {} | `{}` | {place} | {}: {} |\n",
            finding.severity.as_str(),
            markdown_cell(&finding.code),
            markdown_cell(&finding.title),
            markdown_cell(&finding.message)
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
