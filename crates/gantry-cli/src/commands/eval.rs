//! `gantry eval`: an eval set against an OpenAI-compatible endpoint, results for eval-gate.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use gantry_core::{ExitCode, Verdict};
use gantry_eval::runner::{Journal, RunSummary, run as run_eval};
use serde_json::json;

use crate::cli::EvalArgs;
use crate::commands::Session;
use crate::commands::markdown::{markdown_cell, verdict_badge};
use crate::commands::publish::{Outcome, publish};
use crate::packaging::Output;
use crate::printer::Printer;
use crate::settings::EvalSettings;

pub(crate) fn run(
    settings: &EvalSettings<'_>,
    session: &Session<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    let args = settings.args;
    let options = &settings.options;
    printer.info(&format!(
        "asking {} at {} ({} concurrent, {} attempts, {} s timeout)",
        args.model, args.endpoint, args.concurrency, args.attempts, args.timeout
    ));
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let results_path = args.out.join("results.jsonl");
    let partial = args.out.join("results.jsonl.partial");
    // Responses can quote anything, a key included: redact what gantry writes.
    let journal = Journal {
        path: partial.clone(),
        resume: args.resume,
        redactor: session.redactor(),
    };
    let (results, summary) = run_eval(options, Some(&journal))?;
    if summary.resumed > 0 {
        printer.info(&format!(
            "kept {} answers from {}",
            summary.resumed,
            partial.display()
        ));
    }
    let mut text = String::new();
    for result in &results {
        text.push_str(&session.redactor().to_json_line(result)?);
        text.push('\n');
    }
    let summary_path = args.out.join("summary.json");
    for result in results.iter().filter(|r| r.error.is_some()).take(3) {
        printer.warning(&format!(
            "item {} (repeat {}): {}",
            result.id,
            result.repeat,
            result.error.as_deref().unwrap_or_default()
        ));
    }
    printer.info(&format!(
        "{} requests in {:.1} s, {} failed; writing {}",
        summary.requests,
        summary.seconds,
        summary.errors,
        results_path.display()
    ));

    let verdict = if summary.errors == 0 {
        Verdict::Pass
    } else {
        Verdict::Warn
    };
    let markdown = render_markdown(args, &summary, verdict);
    // The finished file appears whole, in dataset order; the journal goes
    // only once it has.
    let outcome = Outcome::new(
        "eval",
        format!("eval of {} on {} items", args.model, summary.items),
        verdict,
    )
    .publishing(&args.publishing)
    .text_file(&results_path, text)
    .json_file(&summary_path, &summary)?
    .markdown(markdown)
    .full_report(&results_path)
    .path_output(Output::Results, &results_path)
    .path_output(Output::Summary, &summary_path)
    .output(Output::Requests, summary.requests)
    .output(Output::Errors, summary.errors)
    .body(&json!({ "results": results_path, "summary": summary }))?;
    let published = publish(outcome, session, printer)?;
    let _ = std::fs::remove_file(&partial);
    Ok(published)
}

fn render_markdown(args: &EvalArgs, summary: &RunSummary, verdict: Verdict) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## gantry eval: {}\n", verdict_badge(verdict));
    let _ = writeln!(
        out,
        "**{}** on {} items × {} repeats against `{}` · {} failed requests · latency p50 {} ms, p95 {} ms · {:.1} s\n",
        markdown_cell(&args.model),
        summary.items,
        args.repeats,
        markdown_cell(&args.endpoint),
        summary.errors,
        summary
            .latency_p50_ms
            .map_or("–".into(), |v| format!("{v:.0}")),
        summary
            .latency_p95_ms
            .map_or("–".into(), |v| format!("{v:.0}")),
        summary.seconds
    );
    let _ = writeln!(out, "| task | metric | mean |");
    let _ = writeln!(out, "|---|---|---|");
    for (task, metrics) in &summary.metrics {
        for (metric, mean) in metrics {
            let _ = writeln!(
                out,
                "| {} | {} | {mean:.4} |",
                markdown_cell(task),
                markdown_cell(metric)
            );
        }
    }
    out
}
