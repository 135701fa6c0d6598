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

/// A metric's history for charts: its name and `(step, value)` points.
pub type Series = (String, Vec<(u64, f64)>);

/// `▇▆▅▃▂▁`: `values` squeezed into at most `width` characters, each the
/// mean of its bucket, scaled between the smallest and largest.
pub fn sparkline(values: &[f64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let buckets = values.len().min(width);
    let means: Vec<f64> = (0..buckets)
        .map(|bucket| {
            let start = bucket * values.len() / buckets;
            let end = ((bucket + 1) * values.len() / buckets).max(start + 1);
            values[start..end].iter().sum::<f64>() / (end - start) as f64
        })
        .collect();
    let low = means.iter().copied().fold(f64::INFINITY, f64::min);
    let high = means.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    means
        .iter()
        .map(|value| {
            if high - low <= f64::EPSILON {
                BARS[3]
            } else {
                let level = ((value - low) / (high - low) * 7.0).round() as usize;
                BARS[level.min(7)]
            }
        })
        .collect()
}

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

/// A line chart of `series` (one line each, its own scale) as an SVG document.
pub fn svg(series: &[Series]) -> String {
    const WIDTH: f64 = 640.0;
    const HEIGHT: f64 = 260.0;
    const LEFT: f64 = 56.0;
    const RIGHT: f64 = 16.0;
    const TOP: f64 = 24.0;
    const BOTTOM: f64 = 36.0;
    const COLOURS: [&str; 4] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];
    let shown: Vec<&Series> = shown(series).into_iter().take(COLOURS.len()).collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let max_step = shown
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(step, _)| *step))
        .max()
        .unwrap_or(1)
        .max(1);
    let min_step = shown
        .iter()
        .flat_map(|(_, points)| points.iter().map(|(step, _)| *step))
        .min()
        .unwrap_or(0);
    let span = (max_step - min_step).max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#888\"/>",
        TOP + plot_h,
        LEFT + plot_w,
        TOP + plot_h
    );
    let _ = writeln!(
        out,
        "<text x=\"{LEFT}\" y=\"{}\">step {min_step}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">step {max_step}</text>",
        HEIGHT - 12.0,
        LEFT + plot_w,
        HEIGHT - 12.0
    );
    for (index, (key, points)) in shown.iter().enumerate() {
        let colour = COLOURS[index];
        let low = points.iter().map(|(_, v)| *v).fold(f64::INFINITY, f64::min);
        let high = points
            .iter()
            .map(|(_, v)| *v)
            .fold(f64::NEG_INFINITY, f64::max);
        let range = if high - low <= f64::EPSILON {
            1.0
        } else {
            high - low
        };
        let path: Vec<String> = points
            .iter()
            .map(|(step, value)| {
                let x = LEFT + (*step - min_step) as f64 / span * plot_w;
                let y = TOP + plot_h - (value - low) / range * plot_h;
                format!("{x:.1},{y:.1}")
            })
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
            path.join(" ")
        );
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"14\" fill=\"{colour}\">{} ({} → {})</text>",
            LEFT + index as f64 * 150.0,
            xml_escape(key),
            number(points.first().map_or(0.0, |(_, v)| *v)),
            number(points.last().map_or(0.0, |(_, v)| *v))
        );
    }
    out.push_str("</svg>\n");
    out
}

fn number(value: f64) -> String {
    if value == 0.0 || (1e-3..1e6).contains(&value.abs()) {
        let text = format!("{value:.4}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        text.to_owned()
    } else {
        format!("{value:.3e}")
    }
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

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_and_squeeze() {
        assert_eq!(sparkline(&[3.0, 2.0, 1.0, 0.0], 10), "█▆▃▁");
        assert_eq!(sparkline(&[1.0; 5], 10), "▄▄▄▄▄");
        let long: Vec<f64> = (0..1000).map(f64::from).collect();
        let line = sparkline(&long, 40);
        assert_eq!(line.chars().count(), 40);
        assert!(line.starts_with('▁') && line.ends_with('█'));
        assert_eq!(sparkline(&[], 10), "");
    }

    #[test]
    fn losses_come_first() {
        let series: Vec<Series> = ["lr", "acc", "val_loss", "loss"]
            .iter()
            .map(|key| ((*key).to_owned(), vec![(1, 1.0)]))
            .collect();
        let order: Vec<&str> = shown(&series).iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(order, ["loss", "val_loss", "acc", "lr"]);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(0.0001234), "1.234e-4");
        assert_eq!(number(2.0), "2");
    }
}
