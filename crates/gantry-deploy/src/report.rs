//! The rollout report: a Markdown summary (decision, timeline of weights,
//! canary against stable per window) and an SVG chart of the timeline.

use std::fmt::Write as _;

use crate::analysis::Outcome;
use crate::rollout::{Phase, RolloutState};

/// Markdown for the job summary and the report file.
pub fn markdown(state: &RolloutState) -> String {
    let mut out = String::new();
    let icon = match state.phase {
        Phase::Promoted => "✅",
        Phase::RolledBack => "❌",
        Phase::Aborted => "⏹️",
        Phase::Paused => "⏸️",
        Phase::Progressing => "🔄",
    };
    let _ = writeln!(
        out,
        "## {icon} deploy-canary: {}@{} {}\n",
        escape(&state.model),
        escape(&state.canary.version),
        state.phase.outcome()
    );
    let _ = writeln!(out, "| | version | digest |\n|---|---|---|");
    let _ = writeln!(
        out,
        "| canary | `{}` | `{}` |",
        escape(&state.canary.version),
        state.canary.digest
    );
    match &state.stable {
        Some(stable) => {
            let _ = writeln!(
                out,
                "| stable (`{}`) | `{}` | `{}` |",
                escape(&state.stable_alias),
                escape(&stable.version),
                stable.digest
            );
        }
        None => {
            let _ = writeln!(
                out,
                "| stable (`{}`) | none: first deploy | |",
                escape(&state.stable_alias)
            );
        }
    }
    let _ = writeln!(
        out,
        "\nRollout `{}` on {}, strategy {:?}, steps {}; canary weight now **{}%**.",
        escape(&state.id),
        escape(&state.target),
        state.strategy,
        state
            .steps
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" → "),
        state.weight
    );
    if let Some(reason) = &state.reason {
        let _ = writeln!(out, "\n**Why:** {}", escape(reason));
    }
    if !state.log_tail.is_empty() {
        out.push_str(
            "\n<details><summary>The model server's last log lines</summary>\n\n```text\n",
        );
        for line in &state.log_tail {
            let _ = writeln!(out, "{}", line.replace("```", "'''"));
        }
        out.push_str("```\n</details>\n");
    }
    if !state.windows.is_empty() {
        out.push_str("\n### Windows: canary against stable\n\n| # | step | weight | outcome | requests (canary / stable) | errors | p95 latency ms | p95 TTFT ms |\n|---|---|---|---|---|---|---|---|\n");
        for (index, window) in state.windows.iter().enumerate() {
            let stable = window.stable.as_ref();
            let pair = |canary: Option<f64>, stable: Option<Option<f64>>| {
                let show = |value: Option<f64>| {
                    value.map_or("–".to_owned(), |value| format!("{value:.1}"))
                };
                match stable {
                    Some(stable) => format!("{} / {}", show(canary), show(stable)),
                    None => show(canary),
                }
            };
            let _ = writeln!(
                out,
                "| {} | {} | {}% | {} | {} | {} | {} | {} |",
                index + 1,
                window.step + 1,
                window.weight,
                outcome_word(window.outcome),
                match stable {
                    Some(stable) => format!("{} / {}", window.canary.requests, stable.requests),
                    None => window.canary.requests.to_string(),
                },
                match stable {
                    Some(stable) => format!("{} / {}", window.canary.errors, stable.errors),
                    None => window.canary.errors.to_string(),
                },
                pair(
                    window.canary.latency_p95_ms,
                    stable.map(|s| s.latency_p95_ms)
                ),
                pair(window.canary.ttft_p95_ms, stable.map(|s| s.ttft_p95_ms)),
            );
        }
        if let Some(last) = state.windows.last() {
            out.push_str("\n<details><summary>Checks of the last window</summary>\n\n| check | outcome | canary | stable | p | reason |\n|---|---|---|---|---|---|\n");
            for check in &last.checks {
                let number = |value: Option<f64>| {
                    value.map_or("–".to_owned(), |value| format!("{value:.4}"))
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} |",
                    escape(&check.name),
                    outcome_word(check.outcome),
                    number(check.canary),
                    number(check.stable),
                    check.p_value.map_or("–".to_owned(), |p| format!("{p:.2e}")),
                    escape(&check.reason)
                );
            }
            out.push_str("\n</details>\n");
        }
    }
    out.push_str(
        "\n### Timeline\n\n| time | step | weight | action | reason |\n|---|---|---|---|---|\n",
    );
    for decision in &state.decisions {
        let _ = writeln!(
            out,
            "| {} | {} | {}% | {} | {} |",
            decision.at,
            decision.step + 1,
            decision.weight,
            decision.action,
            escape(&decision.reason)
        );
    }
    out
}

fn outcome_word(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "✅ success",
        Outcome::Failure => "❌ failure",
        Outcome::Error => "⚠️ error",
        Outcome::Inconclusive => "❔ inconclusive",
        Outcome::Skipped => "skipped",
    }
}

/// Escapes text for a Markdown table cell.
fn escape(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('\n', " ")
        .replace('<', "&lt;")
}

/// The timeline as an SVG: the canary's weight over time, and each
/// window's p95 latency for canary and stable.
pub fn timeline_svg(state: &RolloutState) -> String {
    const WIDTH: f64 = 640.0;
    const HEIGHT: f64 = 260.0;
    const LEFT: f64 = 48.0;
    const RIGHT: f64 = 48.0;
    const TOP: f64 = 28.0;
    const BOTTOM: f64 = 32.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">"#
    );
    out.push_str("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    let times: Vec<u64> = state
        .windows
        .iter()
        .flat_map(|window| [window.started_ms, window.ended_ms])
        .collect();
    let (Some(start), Some(end)) = (times.iter().min().copied(), times.iter().max().copied())
    else {
        out.push_str("<text x=\"20\" y=\"40\">no analysis windows yet</text>\n</svg>\n");
        return out;
    };
    let span = (end - start).max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |ms: u64| LEFT + (ms.saturating_sub(start)) as f64 / span * plot_w;
    let _ = writeln!(
        out,
        "<line x1=\"{LEFT}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"#888\"/><text x=\"{LEFT}\" y=\"{label}\">0 s</text><text x=\"{right}\" y=\"{label}\" text-anchor=\"end\">{} s</text>",
        (end - start) / 1000,
        bottom = TOP + plot_h,
        right = LEFT + plot_w,
        label = HEIGHT - 10.0
    );
    // Weight: a step line on a 0–100% scale.
    let mut weight_points = Vec::new();
    for window in &state.windows {
        let y = TOP + plot_h - f64::from(window.weight) / 100.0 * plot_h;
        weight_points.push(format!("{:.1},{y:.1}", x(window.started_ms)));
        weight_points.push(format!("{:.1},{y:.1}", x(window.ended_ms)));
    }
    let _ = writeln!(
        out,
        "<polyline fill=\"none\" stroke=\"#7f7f7f\" stroke-width=\"2\" points=\"{}\"/><text x=\"{LEFT}\" y=\"14\" fill=\"#7f7f7f\">canary weight (0–100%)</text>",
        weight_points.join(" ")
    );
    let latencies: Vec<f64> = state
        .windows
        .iter()
        .flat_map(|window| {
            [
                window.canary.latency_p95_ms,
                window
                    .stable
                    .as_ref()
                    .and_then(|stable| stable.latency_p95_ms),
            ]
        })
        .flatten()
        .collect();
    let high = latencies.iter().copied().fold(0.0_f64, f64::max).max(1.0);
    for (name, colour, pick) in [
        ("canary p95 ms", "#d62728", 0_usize),
        ("stable p95 ms", "#1f77b4", 1),
    ] {
        let points: Vec<String> = state
            .windows
            .iter()
            .filter_map(|window| {
                let value = if pick == 0 {
                    window.canary.latency_p95_ms
                } else {
                    window
                        .stable
                        .as_ref()
                        .and_then(|stable| stable.latency_p95_ms)
                }?;
                let middle = (window.started_ms + window.ended_ms) / 2;
                Some(format!(
                    "{:.1},{:.1}",
                    x(middle),
                    TOP + plot_h - value / high * plot_h
                ))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/><text x=\"{}\" y=\"14\" fill=\"{colour}\">{name} (max {high:.0})</text>",
            points.join(" "),
            LEFT + 170.0 + pick as f64 * 150.0
        );
    }
    for window in &state.windows {
        let colour = match window.outcome {
            Outcome::Success => "#2ca02c",
            Outcome::Failure => "#d62728",
            Outcome::Error => "#ff7f0e",
            _ => "#bbbbbb",
        };
        let _ = writeln!(
            out,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{colour}\"/>",
            x(window.ended_ms),
            TOP + plot_h + 8.0
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::CheckResult;
    use crate::rollout::{Counters, Decision, Step, Strategy, VersionRef, Window, WindowSide};

    fn state() -> RolloutState {
        let side = |requests, errors, latency| WindowSide {
            requests,
            errors,
            latency_p95_ms: Some(latency),
            ttft_p95_ms: None,
        };
        RolloutState {
            format: 1,
            id: "tiny-0.2.0-20261205T000000Z".into(),
            model: "tiny".into(),
            target: "router http://127.0.0.1:8081".into(),
            stable_alias: "production".into(),
            stable: Some(VersionRef {
                version: "0.1.0".into(),
                digest: "sha256:aa".into(),
                model_dir: None,
            }),
            canary: VersionRef {
                version: "0.2.0".into(),
                digest: "sha256:bb".into(),
                model_dir: None,
            },
            strategy: Strategy::Canary,
            steps: vec![Step::Weight(25), Step::Pause, Step::Weight(100)],
            step_index: 0,
            weight: 0,
            phase: Phase::RolledBack,
            reason: Some("at 25%: error-rate | canary 10% <b>".into()),
            counters: Counters::default(),
            windows: vec![Window {
                step: 0,
                weight: 25,
                started_ms: 1_000,
                ended_ms: 61_000,
                outcome: Outcome::Failure,
                checks: vec![CheckResult {
                    name: "error-rate".into(),
                    outcome: Outcome::Failure,
                    canary: Some(0.1),
                    stable: Some(0.0),
                    p_value: Some(1e-9),
                    reason: "canary error rate 10.00% is above the limit 1.00%".into(),
                }],
                canary: side(100, 10, 30.5),
                stable: Some(side(300, 0, 20.25)),
            }],
            decisions: vec![Decision {
                at: "2026-12-05T00:01:01.000Z".into(),
                step: 0,
                weight: 0,
                action: "rollback".into(),
                reason: "at 25%: error-rate | canary".into(),
            }],
            deployments: Default::default(),
            lease_expires_ms: None,
            log_tail: vec!["loading ```weights```".into()],
        }
    }

    #[test]
    fn the_report_tells_the_decision_the_windows_and_the_timeline() {
        let markdown = markdown(&state());
        for expected in [
            "## ❌ deploy-canary: tiny@0.2.0 rolled-back",
            "| stable (`production`) | `0.1.0` | `sha256:aa` |",
            "steps 25 → pause → 100",
            // A reason cannot break the table or inject HTML.
            "**Why:** at 25%: error-rate \\| canary 10% &lt;b>",
            "| 1 | 1 | 25% | ❌ failure | 100 / 300 | 10 / 0 | 30.5 / 20.2 | – / – |",
            "| error-rate | ❌ failure | 0.1000 | 0.0000 | 1.00e-9 | canary error rate 10.00% is above the limit 1.00% |",
            "| 2026-12-05T00:01:01.000Z | 1 | 0% | rollback | at 25%: error-rate \\| canary |",
            "loading '''weights'''",
        ] {
            assert!(
                markdown.contains(expected),
                "missing {expected:?} in\n{markdown}"
            );
        }
    }

    #[test]
    fn the_chart_draws_the_weight_and_both_latencies() {
        let svg = timeline_svg(&state());
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{svg}"
        );
        assert!(svg.contains("canary weight (0–100%)"), "{svg}");
        assert!(
            svg.contains("canary p95 ms") && svg.contains("stable p95 ms"),
            "{svg}"
        );
        assert!(
            svg.contains("fill=\"#d62728\"/>"),
            "a failed window is red: {svg}"
        );
        let empty = RolloutState {
            windows: Vec::new(),
            ..state()
        };
        assert!(timeline_svg(&empty).contains("no analysis windows yet"));
    }
}
