//! `gantry eval-gate`: compare a candidate's evaluation with a baseline's and publish the verdict.

use std::fmt::Write as _;

use anyhow::Result;
use gantry_ci::Metric;
use gantry_core::{ExitCode, Finding, Severity};
use gantry_eval::{GateReport, RowVerdict, evaluate_gate, read};
use serde_json::json;

use crate::commands::Session;
use crate::commands::markdown::{markdown_cell, verdict_badge};
use crate::commands::publish::{Outcome, publish};
use crate::commands::registries::fetch_evaluation;
use crate::packaging::Output;
use crate::printer::Printer;
use crate::settings::EvalGateSettings;

/// Item ids shown per row in the pass→fail list.
const SHOWN_FLIPS: usize = 10;

pub(crate) fn run(
    settings: &EvalGateSettings<'_>,
    session: &Session<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    let args = settings.args;
    let policy = &settings.policy;
    let policy_source = &settings.policy_source;
    if args.policy.is_none() {
        printer.info(
            "no --policy: using the default — block on a statistically significant regression of any metric \
             (alpha 0.05, Holm-corrected), warn when inconclusive",
        );
    }
    // A registry baseline is fetched (verified against its digest) into a
    // scratch directory that lives until the gate is decided.
    let (baseline_path, _scratch, registered) = match args.baseline.strip_prefix("registry:") {
        Some(reference) => {
            let fetched = fetch_evaluation(&args.registry, reference, session)?;
            let manifest = &fetched.resolved.manifest;
            let age_days = chrono::DateTime::parse_from_rfc3339(&manifest.created)
                .ok()
                .map(|created| {
                    (chrono::Utc::now() - created.with_timezone(&chrono::Utc)).num_milliseconds()
                        as f64
                        / 86_400_000.0
                });
            printer.info(&format!(
                "baseline: the evaluation registered with {} {} ({}){}",
                manifest.name,
                manifest.version,
                fetched.resolved.digest,
                age_days.map_or(String::new(), |age| format!(", {age:.1} days ago"))
            ));
            let registered = gantry_eval::RegisteredVersion {
                reference: args.baseline.clone(),
                registry: args.registry.clone(),
                name: manifest.name.clone(),
                version: manifest.version.clone(),
                digest: fetched.resolved.digest.to_string(),
                created: manifest.created.clone(),
                age_days,
                commit: manifest.lineage.git.as_ref().map(|git| git.commit.clone()),
            };
            (
                fetched.path.clone(),
                Some(fetched.scratch),
                Some(registered),
            )
        }
        None => (std::path::PathBuf::from(&args.baseline), None, None),
    };
    policy.baseline.check(&gantry_eval::BaselineFacts {
        from_registry: registered.is_some(),
        age_days: registered
            .as_ref()
            .and_then(|registered| registered.age_days),
    })?;
    let baseline = read(&baseline_path)?;
    let candidate = read(&args.candidate)?;
    let mut report = evaluate_gate(&baseline, &candidate, policy, policy_source)?;
    if let Some(registered) = registered {
        report.baseline.path = format!(
            "{} = {}@{} ({}) in {}",
            registered.reference,
            registered.name,
            registered.version,
            registered.digest,
            registered.registry
        );
        report.baseline.registered = Some(registered);
    }
    for rule in &report.unused_rules {
        printer.warning(&format!(
            "{policy_source}: rule {rule:?} selects no metric of these results; check its selector"
        ));
    }

    let gate_path = args.out.join("gate.json");
    let markdown_path = args.out.join("gate.md");
    let markdown = render_markdown(&report);
    printer.info(&format!(
        "{} gated metrics: {} regressed, {} inconclusive, {} improved; writing {}",
        report.rows.len(),
        report.regressions,
        report.inconclusive,
        report.improvements,
        gate_path.display()
    ));
    let outcome = Outcome::new(
        "eval-gate",
        format!(
            "eval-gate: {} regressed, {} inconclusive, {} improved",
            report.regressions, report.inconclusive, report.improvements
        ),
        report.verdict,
    )
    .publishing(&args.publishing)
    .json_file(&gate_path, &report)?
    .text_file(&markdown_path, markdown.clone())
    .markdown(markdown)
    .findings(findings_of(&report))
    .junit(junit_of(&report))
    .metrics(metrics_of(&report))
    .full_report(&gate_path)
    .path_output(Output::Report, &gate_path)
    .output(Output::Regressions, report.regressions)
    .output(Output::Improvements, report.improvements)
    .output(Output::Inconclusive, report.inconclusive)
    .body(&json!({
        "report": gate_path,
        "regressions": report.regressions,
        "improvements": report.improvements,
        "inconclusive": report.inconclusive,
        "rows": report.rows.iter().map(|r| json!({
            "task": r.task, "metric": r.metric, "verdict": r.verdict,
            "baseline": r.comparison.baseline, "candidate": r.comparison.candidate,
            "delta": r.comparison.delta, "ci_low": r.comparison.ci_low, "ci_high": r.comparison.ci_high,
            "p_value": r.comparison.p_value, "p_adjusted": r.p_adjusted, "n": r.comparison.n, "mde": r.comparison.mde,
        })).collect::<Vec<_>>(),
    }))?;
    publish(outcome, session, printer)
}

fn verdict_word(verdict: RowVerdict) -> &'static str {
    match verdict {
        RowVerdict::Pass => "✅ pass",
        RowVerdict::Fail => "❌ fail",
        RowVerdict::Inconclusive => "⚠️ inconclusive",
    }
}

fn p_text(p: f64) -> String {
    if p < 0.0001 {
        "<0.0001".to_owned()
    } else {
        format!("{p:.4}")
    }
}

fn render_markdown(report: &GateReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## gantry eval-gate: {}\n",
        verdict_badge(report.verdict)
    );
    let _ = writeln!(
        out,
        "{} gated metrics: **{} regressed**, {} inconclusive, {} improved. \
         Δ is candidate − baseline with its {:.0}% interval ({:.0}% under a margin, whose bounds are one-sided tests); \
         p is the test a fail rests on (two-sided without a margin, one-sided \"no more than the margin worse\" with one), \
         Holm-corrected across blocking rules.\n",
        report.rows.len(),
        report.regressions,
        report.inconclusive,
        report.improvements,
        report.policy.defaults.confidence * 100.0,
        (1.0 - 2.0 * report.policy.defaults.alpha) * 100.0
    );
    let _ = writeln!(
        out,
        "| task | metric | baseline | candidate | Δ (CI) | p (Holm) | n | MDE | verdict |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for row in &report.rows {
        let c = &row.comparison;
        let _ = writeln!(
            out,
            "| {} | {}{} | {:.4} | {:.4} | {:+.4} [{:+.4}, {:+.4}] | {} | {} | {} | {} |",
            markdown_cell(&row.task),
            markdown_cell(&row.metric),
            if row.higher_is_better { " ↑" } else { " ↓" },
            c.baseline,
            c.candidate,
            c.delta,
            c.ci_low,
            c.ci_high,
            p_text(row.p_adjusted),
            c.n,
            c.mde
                .map_or_else(|| "–".to_owned(), |mde| format!("{mde:.4}")),
            verdict_word(row.verdict)
        );
    }
    let explained: Vec<_> = report
        .rows
        .iter()
        .filter(|r| !r.reasons.is_empty() && r.verdict != RowVerdict::Pass)
        .collect();
    if !explained.is_empty() {
        let _ = writeln!(out, "\n### Why\n");
        for row in explained {
            let _ = writeln!(
                out,
                "- **{}/{}**: {}",
                markdown_cell(&row.task),
                markdown_cell(&row.metric),
                markdown_cell(&row.reasons.join("; "))
            );
        }
    }
    let flipped: Vec<_> = report
        .rows
        .iter()
        .filter(|r| !r.new_failure_ids.is_empty())
        .collect();
    if !flipped.is_empty() {
        let _ = writeln!(out, "\n### Items that went from pass to fail\n");
        for row in flipped {
            let total = row
                .comparison
                .new_failures
                .unwrap_or(row.new_failure_ids.len());
            let shown: Vec<String> = row
                .new_failure_ids
                .iter()
                .take(SHOWN_FLIPS)
                .map(|id| format!("`{}`", markdown_cell(id)))
                .collect();
            let _ = writeln!(
                out,
                "- {}/{}: {total} items ({} fixed): {}{}",
                markdown_cell(&row.task),
                markdown_cell(&row.metric),
                row.comparison.new_passes.unwrap_or(0),
                shown.join(", "),
                if total > shown.len() { ", …" } else { "" }
            );
        }
    }
    if !report.not_gated.is_empty() {
        let _ = writeln!(
            out,
            "\nNot gated (no rule selects them): {}",
            markdown_cell(&report.not_gated.join(", "))
        );
    }
    let _ = writeln!(
        out,
        "\n<details><summary>Runs, policy and method</summary>\n"
    );
    for (side, run) in [
        ("baseline", &report.baseline),
        ("candidate", &report.candidate),
    ] {
        let _ = writeln!(
            out,
            "- {side}: `{}` ({}{})",
            markdown_cell(&run.path),
            run.source.as_str(),
            run.model
                .as_deref()
                .map(|m| format!(", model {}", markdown_cell(m)))
                .unwrap_or_default()
        );
    }
    if let Some(registered) = &report.baseline.registered {
        let _ = writeln!(
            out,
            "- baseline version: {} {} (`{}`){}, registered {}{}",
            markdown_cell(&registered.name),
            markdown_cell(&registered.version),
            registered.digest,
            registered
                .commit
                .as_deref()
                .map(|commit| format!(" from commit `{}`", markdown_cell(commit)))
                .unwrap_or_default(),
            markdown_cell(&registered.created),
            registered
                .age_days
                .map(|age| format!(", {age:.1} days before this gate"))
                .unwrap_or_default()
        );
    }
    let d = &report.policy.defaults;
    let _ = writeln!(
        out,
        "- policy: {} (alpha {}, {} bootstrap resamples, seed {}, min items {}, inconclusive {:?})",
        markdown_cell(&report.policy_source),
        d.alpha,
        d.resamples,
        d.seed,
        d.min_items,
        d.inconclusive
    );
    let _ = writeln!(
        out,
        "- binary scores: exact McNemar test; continuous scores: paired bootstrap; intervals: BCa bootstrap over items; \
         MDE: the change detectable with 80% power.\n\n</details>"
    );
    out
}

fn findings_of(report: &GateReport) -> Vec<Finding> {
    report
        .rows
        .iter()
        .filter_map(|row| {
            let severity = match row.verdict {
                RowVerdict::Fail => Severity::Error,
                RowVerdict::Inconclusive => Severity::Warning,
                RowVerdict::Pass => return None,
            };
            let c = &row.comparison;
            Some(Finding::new(
                if row.verdict == RowVerdict::Fail {
                    "eval-regression"
                } else {
                    "eval-inconclusive"
                },
                severity,
                format!(
                    "{}/{}: {:+.4} [{:+.4}, {:+.4}]",
                    row.task, row.metric, c.delta, c.ci_low, c.ci_high
                ),
                row.reasons.join("; "),
            ))
        })
        .collect()
}

fn junit_of(report: &GateReport) -> Vec<gantry_ci::JunitCase> {
    use gantry_ci::{JunitCase, JunitOutcome};
    report
        .rows
        .iter()
        .map(|row| {
            let c = &row.comparison;
            let measured = format!(
                "baseline {:.4}, candidate {:.4}, delta {:+.4} [{:+.4}, {:+.4}], p {}, n {}",
                c.baseline,
                c.candidate,
                c.delta,
                c.ci_low,
                c.ci_high,
                p_text(row.p_adjusted),
                c.n
            );
            let outcome = match row.verdict {
                RowVerdict::Fail => JunitOutcome::Failed {
                    message: measured,
                    details: row.reasons.join("\n"),
                },
                RowVerdict::Inconclusive => JunitOutcome::Passed(format!(
                    "inconclusive: {measured}\n{}",
                    row.reasons.join("\n")
                )),
                RowVerdict::Pass => JunitOutcome::Passed(measured),
            };
            JunitCase {
                name: format!("{}/{}", row.task, row.metric),
                class_name: "gantry.eval-gate".to_owned(),
                outcome,
            }
        })
        .collect()
}

/// GitLab's metrics report: `name value` lines; the merge request widget shows changes.
fn metrics_of(report: &GateReport) -> Vec<Metric> {
    let mut metrics = Vec::new();
    for row in &report.rows {
        let labels = vec![("task", row.task.clone()), ("metric", row.metric.clone())];
        for (name, value) in [
            ("eval_gate_candidate", row.comparison.candidate),
            ("eval_gate_baseline", row.comparison.baseline),
            ("eval_gate_delta", row.comparison.delta),
        ] {
            metrics.push(Metric {
                name,
                labels: labels.clone(),
                value,
            });
        }
    }
    metrics
}
