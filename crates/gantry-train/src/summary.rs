//! The job summary of a run: what ran, a table of attempts, the metrics with
//! a sparkline each (people would rather look than read), and an SVG loss
//! curve written next to `run.json`.

use std::fmt::Write as _;

use crate::launch::humanize;
use crate::metrics::{Goal, goal};
use crate::record::{AttemptOutcome, RunRecord, Status};

/// Metrics shown in the summary's table.
const SHOWN_METRICS: usize = 8;

/// Characters of a sparkline.
const SPARK_WIDTH: usize = 40;

use gantry_core::chart::number;
pub use gantry_core::chart::{Series, sparkline};

/// Orders metrics for display: ones with a direction (losses, accuracies)
/// first, then by name.
pub fn shown(series: &[Series]) -> Vec<&Series> {
    let mut shown: Vec<&Series> = series
        .iter()
        .filter(|(_, points)| !points.is_empty())
        .collect();
    shown.sort_by_key(|(key, _)| (goal(key).is_none(), !key.contains("loss"), key.clone()));
    shown.truncate(SHOWN_METRICS);
    shown
}

/// The Markdown summary of `record`.
pub fn markdown(record: &RunRecord, series: &[Series]) -> String {
    let mut out = String::new();
    let icon = match record.status {
        Status::Succeeded => "✅",
        Status::Failed | Status::TimedOut => "❌",
        Status::Cancelled => "⏹️",
    };
    let _ = writeln!(
        out,
        "## {icon} gantry train: `{}` {}\n",
        record.run_id,
        record.status.as_str().replace('_', " ")
    );
    let gpus = if record.environment.gpus.is_empty() {
        "no GPU".to_owned()
    } else {
        let first = &record.environment.gpus[0].name;
        format!("{}× {first}", record.environment.gpus.len())
    };
    let _ = writeln!(
        out,
        "`{}` on `{}` ({}, {gpus}): {} attempt{}, {}.\n",
        truncate_command(&record.command.join(" ")),
        record.environment.host,
        record.backend,
        record.attempts.len(),
        if record.attempts.len() == 1 { "" } else { "s" },
        humanize(std::time::Duration::from_secs_f64(
            record.duration_s.max(0.0)
        ))
    );
    out.push_str(
        "| attempt | started | ran for | resumed from | ended |\n|---:|---|---:|---|---|\n",
    );
    for attempt in &record.attempts {
        let mark = match attempt.outcome {
            AttemptOutcome::Succeeded => "✅",
            AttemptOutcome::Preempted => "🔁",
            AttemptOutcome::Cancelled => "⏹️",
            AttemptOutcome::Failed | AttemptOutcome::TimedOut => "❌",
        };
        let resumed = attempt
            .resumed_from
            .as_deref()
            .map_or("—".to_owned(), |path| {
                format!(
                    "`{}`",
                    std::path::Path::new(path)
                        .file_name()
                        .map_or(path.to_owned(), |name| name.to_string_lossy().into_owned())
                )
            });
        let _ = writeln!(
            out,
            "| {} | {} | {} | {resumed} | {mark} {}{} |",
            attempt.number,
            attempt.started.get(11..19).unwrap_or(&attempt.started),
            humanize(std::time::Duration::from_secs_f64(
                attempt.duration_s.max(0.0)
            )),
            escape(&attempt.reason),
            attempt
                .job_id
                .as_ref()
                .map_or(String::new(), |job| format!(" (job {job})"))
        );
    }
    let shown = shown(series);
    if !shown.is_empty() {
        out.push_str("\n| metric | final | best | curve |\n|---|---:|---:|---|\n");
        for (key, points) in shown {
            let last = record.metrics.last.get(key);
            let best = record.metrics.best.get(key);
            let values: Vec<f64> = points.iter().map(|(_, value)| *value).collect();
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                escape(key),
                last.map_or("—".to_owned(), |value| format!(
                    "{} @ {}",
                    number(value.value),
                    value.step
                )),
                best.map_or("—".to_owned(), |value| format!(
                    "{} @ {} {}",
                    number(value.value),
                    value.step,
                    match goal(key) {
                        Some(Goal::Minimize) => "(min)",
                        _ => "(max)",
                    }
                )),
                sparkline(&values, SPARK_WIDTH)
            );
        }
    }
    if record.metrics.malformed > 0 {
        let _ = writeln!(
            out,
            "\n{} malformed metrics line{} skipped, e.g. `{}`.",
            record.metrics.malformed,
            if record.metrics.malformed == 1 {
                ""
            } else {
                "s"
            },
            escape(
                record
                    .metrics
                    .malformed_examples
                    .first()
                    .map_or("", String::as_str)
            )
        );
    }
    let bytes: u64 = record.outputs.iter().map(|output| output.size).sum();
    let _ = writeln!(
        out,
        "\nOutputs: {} file{} ({bytes} bytes) in `{}`{}.",
        record.outputs.len(),
        if record.outputs.len() == 1 { "" } else { "s" },
        record.output_dir,
        record
            .newest_checkpoint()
            .map_or(String::new(), |checkpoint| format!(
                "; newest checkpoint `{}`",
                checkpoint.path
            ))
    );
    if let Some(tracking) = &record.tracking {
        match (&tracking.url, tracking.synced) {
            (Some(url), true) => {
                let _ = writeln!(
                    out,
                    "\nTracked in MLflow: [{}]({url}).",
                    tracking.experiment
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "\n⚠️ Not everything reached the tracking server `{}`: {}",
                    tracking.uri,
                    escape(tracking.error.as_deref().unwrap_or("unknown error"))
                );
            }
        }
    }
    if !record.warnings.is_empty() {
        out.push_str("\n<details><summary>Warnings</summary>\n\n");
        for warning in &record.warnings {
            let _ = writeln!(out, "- {}", escape(warning));
        }
        out.push_str("\n</details>\n");
    }
    out
}

fn truncate_command(command: &str) -> String {
    let escaped = command.replace('`', "'");
    if escaped.chars().count() <= 120 {
        escaped
    } else {
        format!("{}…", escaped.chars().take(119).collect::<String>())
    }
}

/// Keeps a value from breaking the Markdown table or acting as HTML.
fn escape(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_come_first() {
        let series: Vec<Series> = ["lr", "acc", "val_loss", "loss"]
            .iter()
            .map(|key| ((*key).to_owned(), vec![(1, 1.0)]))
            .collect();
        let order: Vec<&str> = shown(&series).iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(order, ["loss", "val_loss", "acc", "lr"]);
    }
}
