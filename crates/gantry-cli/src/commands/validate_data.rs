//! `gantry validate-data`: check training data, write the report and the data lock, publish the verdict.

use std::fmt::Write as _;

use anyhow::Result;
use gantry_core::{ExitCode, Finding, Location, Severity, Verdict};
use gantry_data::{
    CheckResult, CheckStatus, RecordFormat, Report, merge_partition, merge_partitions,
    merge_shards, validate_shard, validate_with_progress,
};
use serde_json::json;

use crate::commands::Session;
use crate::commands::markdown::{markdown_cell, verdict_badge};
use crate::commands::publish::{Outcome, publish};
use crate::packaging::Output;
use crate::printer::Printer;
use crate::settings::{ValidateDataSettings, with_data_flag};

/// Examples annotated per check; the summary lists more.
const ANNOTATED_PER_CHECK: usize = 5;

pub(crate) fn run(
    settings: &ValidateDataSettings<'_>,
    session: &Session<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    let args = settings.args;
    let options = &settings.options;
    let started = std::time::Instant::now();
    if let Some(shard) = args.shard {
        printer.info(&format!(
            "validating shard {}/{} of {}",
            shard.index,
            shard.count,
            args.data.join(" ")
        ));
        let mut shard_file = validate_shard(options, shard).map_err(with_data_flag)?;
        let path = args
            .out
            .join(format!("shard-{}-of-{}.shard", shard.index, shard.count));
        // As in a whole run: what the data's secrets are is redacted from
        // everything written, the shard's header included.
        session.redactor().add_all(shard_file.found_secrets());
        let bytes = shard_file.encode(|header| session.redactor().redact_json(header))?;
        printer.info(&format!(
            "checked shard {}/{} in {:.2} s; writing {}: merge the shards with --merge",
            shard.index,
            shard.count,
            started.elapsed().as_secs_f64(),
            path.display()
        ));
        // A shard decides nothing: no verdict of its own is published, only
        // its file for the merge (and the empty reports its template declares).
        let outcome = Outcome::new(
            "validate-data",
            format!("validate-data shard {}/{}", shard.index, shard.count),
            Verdict::Pass,
        )
        .published_as(&args.publishing.name, Vec::new())
        .bytes_file(&path, bytes)
        .path_output(Output::Shard, &path)
        .body(&json!({ "shard": path }))?;
        return publish(outcome, session, printer);
    }
    if let Some(partition) = args.partition {
        printer.info(&format!(
            "merge partition {}/{} of {}",
            partition.index,
            partition.count,
            args.merge.join(" ")
        ));
        let part = merge_partition(&args.merge, partition).map_err(with_data_flag)?;
        let path = args.out.join(format!(
            "partition-{}-of-{}.json",
            partition.index, partition.count
        ));
        printer.info(&format!(
            "merge partition {}/{}: {} entries of its buckets, {} duplicate groups, {} near-duplicate links in {:.2} s; writing {}: combine the partitions with --merge … --partition-results",
            partition.index,
            partition.count,
            part.entries,
            part.groups(),
            part.links(),
            started.elapsed().as_secs_f64(),
            path.display()
        ));
        // Like a shard, a partition decides nothing.
        let outcome = Outcome::new(
            "validate-data",
            format!(
                "validate-data merge partition {}/{}",
                partition.index, partition.count
            ),
            Verdict::Pass,
        )
        .published_as(&args.publishing.name, Vec::new())
        .json_file(&path, &part)?
        .path_output(Output::Partition, &path)
        .body(&json!({ "partition": path }))?;
        return publish(outcome, session, printer);
    }
    let validation = if !args.partition_results.is_empty() {
        printer.info(&format!(
            "combining {} with {}",
            args.partition_results.join(" "),
            args.merge.join(" ")
        ));
        merge_partitions(options, &args.merge, &args.partition_results).map_err(with_data_flag)?
    } else if args.merge.is_empty() {
        printer.info(&format!("validating {}", args.data.join(" ")));
        let mut last_line = std::time::Instant::now();
        let show = printer.shows_progress(session.platform != gantry_ci::Platform::Local);
        validate_with_progress(options, &mut |progress| {
            if !show || last_line.elapsed() < std::time::Duration::from_secs(2) {
                return;
            }
            last_line = std::time::Instant::now();
            let seconds = started.elapsed().as_secs_f64().max(1e-3);
            let rate = progress.bytes_read as f64 / seconds;
            let remaining =
                progress.bytes_total.saturating_sub(progress.bytes_read) as f64 / rate.max(1.0);
            printer.info(&format!(
                "validate-data: {:.0} of {:.0} MB ({:.0}%), {} records, {:.0} MB/s, about {:.0} s left",
                progress.bytes_read as f64 / 1e6,
                progress.bytes_total as f64 / 1e6,
                100.0 * progress.bytes_read as f64 / progress.bytes_total.max(1) as f64,
                progress.records,
                rate / 1e6,
                remaining
            ));
        })
        .map_err(with_data_flag)?
    } else {
        printer.info(&format!("merging {}", args.merge.join(" ")));
        merge_shards(options, &args.merge).map_err(with_data_flag)?
    };
    let elapsed = started.elapsed();
    // Every secret found in the data is redacted from everything written
    // from here on, whatever quotes it (defence in depth: findings quote
    // only redacted excerpts and names that look like names).
    session
        .redactor()
        .add_all(validation.found_secrets.iter().map(String::as_str));
    let report = &validation.report;

    let report_path = args.out.join("report.json");
    let markdown_path = args.out.join("report.md");
    let lock_path = args.out.join("data.lock");
    let summary_path = args.out.join("summary.json");
    let markdown = render_markdown(report);
    let bytes: u64 = report.files.iter().map(|file| file.bytes).sum();
    printer.info(&format!(
        "read {} records from {} file(s), {:.1} MB in {:.2} s",
        report.records,
        report.files.len(),
        bytes as f64 / 1e6,
        elapsed.as_secs_f64()
    ));
    let count = |status| {
        report
            .checks
            .iter()
            .filter(|check| check.status == status)
            .count()
    };
    let outcome = Outcome::new(
        "validate-data",
        format!("validate-data on {} records", report.records),
        report.verdict,
    )
    .publishing(&args.publishing)
    .json_file(&report_path, report)?
    .json_file(&lock_path, &validation.lock)?
    .json_file(&summary_path, &validation.summary)?
    .text_file(&markdown_path, markdown.clone())
    .markdown(markdown)
    .findings(findings_of(report))
    .junit(junit_of(report))
    .full_report(&report_path)
    .path_output(Output::Report, &report_path)
    .path_output(Output::Lock, &lock_path)
    .path_output(Output::Summary, &summary_path)
    .output(Output::DatasetDigest, report.dataset_digest)
    .output(Output::Records, report.records)
    .output(Output::Errors, count(CheckStatus::Fail))
    .output(Output::Warnings, count(CheckStatus::Warn))
    .body(&json!({
        "report": report_path,
        "lock": lock_path,
        "dataset_digest": report.dataset_digest,
        "records": report.records,
        "checks": report.checks.iter().map(|check| json!({"id": check.id, "status": check.status, "value": check.value, "count": check.count})).collect::<Vec<_>>(),
    }))?;
    publish(outcome, session, printer)
}

/// One JUnit test case per check, for GitLab's merge request test summary.
fn junit_of(report: &Report) -> Vec<gantry_ci::JunitCase> {
    use gantry_ci::{JunitCase, JunitOutcome};
    report
        .checks
        .iter()
        .map(|check| {
            let measured = format!(
                "{} = {} ({})",
                check.id,
                value_text(check, check.value),
                threshold_text(check)
            );
            let examples: Vec<String> = check
                .findings
                .iter()
                .map(|example| {
                    let place = example.line.map_or_else(
                        || example.file.clone(),
                        |line| format!("{}:{line}", example.file),
                    );
                    format!("{place}: {}", example.message)
                })
                .collect();
            let outcome = match check.status {
                CheckStatus::Fail => JunitOutcome::Failed {
                    message: measured,
                    details: examples.join("\n"),
                },
                CheckStatus::Warn => {
                    JunitOutcome::Passed(format!("warning: {measured}\n{}", examples.join("\n")))
                }
                CheckStatus::Pass => JunitOutcome::Passed(measured),
                CheckStatus::Skipped => {
                    JunitOutcome::Skipped(check.note.clone().unwrap_or_default())
                }
            };
            JunitCase {
                name: check.id.to_string(),
                class_name: "gantry.validate-data".to_owned(),
                outcome,
            }
        })
        .collect()
}

/// Annotations for the first examples of every check that warned or failed.
fn findings_of(report: &Report) -> Vec<Finding> {
    let mut findings = Vec::new();
    for check in &report.checks {
        let severity = match check.status {
            CheckStatus::Fail => Severity::Error,
            CheckStatus::Warn => Severity::Warning,
            CheckStatus::Pass | CheckStatus::Skipped => continue,
        };
        for example in check.findings.iter().take(ANNOTATED_PER_CHECK) {
            let mut finding = Finding::new(
                check.id.id(),
                severity,
                check.id.title(),
                example.message.clone(),
            );
            if let Some(snippet) = &example.excerpt {
                finding.message = format!("{}: {snippet}", example.message);
            }
            let location = match example.line {
                Some(line) => Location::line(&example.file, line),
                None => Location::file(&example.file),
            };
            findings.push(finding.at(location));
        }
    }
    findings
}

fn status_badge(status: CheckStatus) -> &'static str {
    match status {
        CheckStatus::Pass => "✅ pass",
        CheckStatus::Warn => "⚠️ warn",
        CheckStatus::Fail => "❌ fail",
        CheckStatus::Skipped => "⏭️ skipped",
    }
}

fn value_text(check: &CheckResult, value: f64) -> String {
    if check.id.unit() == gantry_data::Unit::Rate {
        format!("{:.2}%", value * 100.0)
    } else {
        format!("{value}")
    }
}

fn threshold_text(check: &CheckResult) -> String {
    let comparison = if check.id.direction() == gantry_data::Direction::Below {
        "<"
    } else {
        ">"
    };
    let mut parts = Vec::new();
    if let Some(warn) = check.threshold.warn {
        parts.push(format!("warn {comparison} {}", value_text(check, warn)));
    }
    if let Some(error) = check.threshold.error {
        parts.push(format!("fail {comparison} {}", value_text(check, error)));
    }
    if parts.is_empty() {
        "—".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The Markdown report: verdict, check table, examples, duplicates, distributions, lock changes.
pub(crate) fn render_markdown(report: &Report) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "## gantry validate-data: {}\n",
        verdict_badge(report.verdict)
    );
    let _ = writeln!(
        text,
        "**{} records** in {} file(s) · format `{}` · tokenizer `{}` · dataset `{}`\n",
        report.records,
        report.files.len(),
        report.format.map_or("unknown", RecordFormat::as_str),
        report.tokenizer,
        report.dataset_digest
    );
    let _ = writeln!(
        text,
        "| check | status | value | threshold | records |\n|---|---|---|---|---|"
    );
    for check in &report.checks {
        let value = if check.status == CheckStatus::Skipped {
            "—".to_owned()
        } else {
            value_text(check, check.value)
        };
        let _ = writeln!(
            text,
            "| `{}` | {} | {value} | {} | {} |",
            check.id,
            status_badge(check.status),
            threshold_text(check),
            check.count
        );
    }
    let notes: Vec<&CheckResult> = report
        .checks
        .iter()
        .filter(|check| check.note.is_some())
        .collect();
    for check in notes {
        let _ = writeln!(
            text,
            "\n`{}` skipped: {}",
            check.id,
            check.note.as_deref().unwrap_or_default()
        );
    }
    let flagged: Vec<&CheckResult> = report
        .checks
        .iter()
        .filter(|check| {
            matches!(check.status, CheckStatus::Warn | CheckStatus::Fail)
                && !check.findings.is_empty()
        })
        .collect();
    if !flagged.is_empty() {
        let _ = writeln!(
            text,
            "\n### Examples\n\n| check | where | what | excerpt (redacted) |\n|---|---|---|---|"
        );
        for check in flagged {
            for example in check.findings.iter().take(10) {
                let place = match (example.line, example.record) {
                    (Some(line), _) => format!("`{}:{line}`", example.file),
                    (None, Some(record)) => format!("`{}` record {record}", example.file),
                    (None, None) => format!("`{}`", example.file),
                };
                let excerpt = example.excerpt.as_deref().map_or(String::new(), |snippet| {
                    format!("`{}`", markdown_cell(&snippet.replace('`', "'")))
                });
                let _ = writeln!(
                    text,
                    "| `{}` | {place} | {} | {excerpt} |",
                    check.id,
                    markdown_cell(&example.message)
                );
            }
        }
    }
    if !report.duplicate_clusters.is_empty() {
        let _ = writeln!(
            text,
            "\n### Largest duplicate clusters\n\n| kind | size | members |\n|---|---|---|"
        );
        for cluster in &report.duplicate_clusters {
            let members: Vec<String> = cluster
                .members
                .iter()
                .take(5)
                .map(|member| format!("`{member}`"))
                .collect();
            let more = if cluster.members.len() > 5 {
                ", …"
            } else {
                ""
            };
            let _ = writeln!(
                text,
                "| {} | {} | {}{more} |",
                cluster.kind,
                cluster.size,
                members.join(", ")
            );
        }
    }
    let _ = writeln!(
        text,
        "\n### Distributions\n\n| per record | min | p50 | p90 | p99 | max | mean |\n|---|---|---|---|---|---|---|"
    );
    for (name, distribution) in [
        ("characters", &report.characters),
        ("tokens", &report.tokens),
        ("turns", &report.turns),
    ] {
        let _ = writeln!(
            text,
            "| {name} | {} | {} | {} | {} | {} | {:.1} |",
            distribution.min,
            distribution.p50,
            distribution.p90,
            distribution.p99,
            distribution.max,
            distribution.mean
        );
    }
    if !report.conversations_without.is_empty() {
        let counts: Vec<String> = report
            .conversations_without
            .iter()
            .map(|(role, count)| format!("{count} without a {role} message"))
            .collect();
        let _ = writeln!(text, "\nConversations: {}.", counts.join(", "));
    }
    if let Some(drift) = &report.drift {
        let _ = writeln!(
            text,
            "\n### Drift against the reference\n\n| distribution | PSI | Jensen–Shannon | Wasserstein (sd) |\n|---|---|---|---|"
        );
        for (name, measure) in drift {
            let wasserstein = measure
                .wasserstein
                .map_or("—".to_owned(), |distance| format!("{distance:.3}"));
            let _ = writeln!(
                text,
                "| {name} | {:.3} | {:.3} | {wasserstein} |",
                measure.psi, measure.jensen_shannon
            );
        }
    }
    if let Some(changes) = &report.lock_changes {
        let _ = writeln!(text, "\n### Changes since the previous lock\n");
        if changes.is_empty() {
            let _ = writeln!(text, "No file changed.");
        }
        for path in &changes.added {
            let _ = writeln!(text, "- added `{path}`");
        }
        for path in &changes.removed {
            let _ = writeln!(text, "- removed `{path}`");
        }
        for (path, before, after) in &changes.changed {
            let _ = writeln!(text, "- changed `{path}`: {before} → {after} records");
        }
        if changes.schema_changed {
            let _ = writeln!(text, "- the schema fingerprint changed");
        }
    }
    text
}
