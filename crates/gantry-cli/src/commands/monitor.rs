//! `gantry monitor`: is production still as good as the day it was
//! promoted? Quality (eval + the eval-gate statistics against the
//! registered evaluation), service SLOs and resources (gantry-monitor over
//! Prometheus), input drift (validate-data against the training data's
//! summary), then the report, its history and charts, the tracking issue
//! and the alerts. `gantry monitor rules` renders the always-on half.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context as _, Result};
use gantry_core::{ExitCode, Verdict};
use gantry_eval::runner::{Api, RunOptions, Scorer, prompt_hash, read_items, run as run_eval};
use gantry_eval::{GateReport, RowVerdict, evaluate_gate};
use gantry_monitor::history::{self, HistoryEntry};
use gantry_monitor::report::{self, CheckReport, Health, Kind, MonitorReport, Status};
use gantry_monitor::slo::{self, ResourceOptions, ServiceOptions, Threshold};
use gantry_registry::{Registry, Resolved, Selector};

use crate::cli::{ApiArg, MonitorAction, MonitorArgs, MonitorRulesArgs};
use crate::commands::Session;
use crate::commands::publish::{Outcome, publish};
use crate::commands::registries::{fetch_document, open_registry, parse_reference};
use crate::packaging::Output;
use crate::printer::Printer;

pub(crate) fn run(
    args: &MonitorArgs,
    session: &Session<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    if let Some(MonitorAction::Rules(rules)) = &args.action {
        return render_rules(rules, session, printer);
    }
    let reference_text = args
        .model
        .as_deref()
        .context("--model is required: the version in production, e.g. tiny@production")?;
    let reference = parse_reference(reference_text)?;
    let registry = open_registry(&args.registry, session)?;
    let resolved = registry.resolve(&reference)?;
    let manifest = &resolved.manifest;
    let environment = args
        .environment
        .clone()
        .unwrap_or_else(|| match &reference.selector {
            Selector::Alias(alias) => alias.clone(),
            _ => "production".to_owned(),
        });
    let served_model = args
        .served_model
        .clone()
        .unwrap_or_else(|| manifest.name.clone());
    printer.info(&format!(
        "monitoring {} {} ({}) in {environment} over the last {}",
        manifest.name,
        manifest.version,
        resolved.digest,
        report::window_text(args.window.as_secs())
    ));
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let now = chrono::Utc::now();
    let end = now.timestamp_millis() as f64 / 1000.0;

    let mut window_series = Vec::new();
    let mut checks = quality_checks(
        args,
        session,
        printer,
        &*registry,
        &resolved,
        &served_model,
        scratch.path(),
    );
    let retry = gantry_ci::retry_policy(session.environment);
    match &args.prometheus {
        None => {
            for signal in slo::Signal::ALL {
                checks.push(CheckReport::skipped(
                    signal.name(),
                    Kind::Service,
                    "no --prometheus: give Prometheus' URL to check the service SLOs",
                ));
            }
            for name in ["gpu-utilization", "gpu-memory-headroom"] {
                checks.push(CheckReport::skipped(
                    name,
                    Kind::Resources,
                    "no --prometheus",
                ));
            }
        }
        Some(url) => {
            let prometheus = gantry_monitor::Prometheus::new(url, retry)?;
            let thresholds = thresholds(&args.slo);
            let service = ServiceOptions {
                flavor: args.metrics.flavor(),
                selector: args.selector.clone(),
                version: manifest.version.clone(),
                served_model: served_model.clone(),
                window: args.window,
                trend_windows: args.trend_windows,
                trend_tolerance: args.trend_tolerance,
                min_requests: args.min_requests as f64,
                thresholds,
                end,
            };
            let (service_checks, resource_checks, series) = session.block_on(async {
                let (service_checks, flavor) = slo::service_checks(&prometheus, &service).await;
                let mut series = Vec::new();
                if let Some(flavor) = flavor {
                    printer.info(&format!(
                        "service metrics: {} names in {url}",
                        flavor.as_str()
                    ));
                    series = slo::window_series(&prometheus, &service, flavor).await;
                }
                let tokens_per_second = service_checks
                    .iter()
                    .find(|check| check.name == slo::Signal::TokensPerSecond.name())
                    .and_then(|check| check.value);
                let resources = ResourceOptions {
                    selector: args.dcgm_selector.clone().unwrap_or_default(),
                    window: args.window,
                    end,
                    gpu_hour_cost: args.gpu_hour_cost,
                    gpus: args.gpus,
                    tokens_per_second,
                    min_gpu_utilization: 10.0,
                    min_memory_headroom: 0.1,
                };
                let resource_checks = slo::resource_checks(&prometheus, &resources).await;
                (service_checks, resource_checks, series)
            })?;
            checks.extend(service_checks);
            checks.extend(resource_checks);
            window_series = series;
        }
    }
    if args.prometheus.is_none() {
        checks.push(match args.gpu_hour_cost {
            None => CheckReport::skipped(
                "cost-per-million-tokens",
                Kind::Resources,
                "no --gpu-hour-cost",
            ),
            Some(_) => CheckReport::skipped(
                "cost-per-million-tokens",
                Kind::Resources,
                "no --prometheus to count output tokens",
            ),
        });
    }
    checks.extend(drift_checks(
        args,
        session,
        printer,
        &*registry,
        &resolved,
        scratch.path(),
    ));

    let report = MonitorReport {
        version: gantry_monitor::REPORT_VERSION,
        model: manifest.name.clone(),
        model_version: manifest.version.clone(),
        digest: resolved.digest.to_string(),
        environment: environment.clone(),
        time: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        window_seconds: args.window.as_secs(),
        health: Health::of(&checks),
        checks,
    };
    for check in report
        .checks
        .iter()
        .filter(|check| check.status != Status::Skipped)
    {
        printer.info(&format!(
            "{}: {} {} ({})",
            check.name,
            check.status.as_str(),
            report::show_value(check.value, &check.unit),
            check.reason
        ));
    }

    // History and trends: the weeks before, this one, charts of both.
    let earlier = history::read(&args.history, &report.model, &report.environment)?;
    let entry = HistoryEntry::of(&report);
    let mut charts = history::trend_charts(&earlier, &entry);
    if let Some(chart) = window_chart(&window_series) {
        charts.push(("window-service.svg".to_owned(), chart));
    }
    let chart_names: Vec<String> = charts.iter().map(|(name, _)| name.clone()).collect();
    let markdown = report::markdown(&report, &history::earlier_values(&earlier), &chart_names);

    // Alerts: where on-call routing already lives.
    if let Some(url) = &args.alertmanager {
        let duration = args
            .alert_duration
            .unwrap_or(args.window + Duration::from_secs(86_400));
        let alerts = gantry_monitor::alerts::alerts(
            &report,
            earlier.last(),
            now,
            duration,
            session.context.run_url.as_deref(),
        );
        let mut alerts_json = serde_json::Value::Array(alerts);
        session.redactor().redact_json(&mut alerts_json);
        let alerts = alerts_json.as_array().cloned().unwrap_or_default();
        match session.block_on(gantry_monitor::alerts::post(url, &alerts, &retry))? {
            Ok(count) => printer.info(&format!(
                "posted {count} alerts to {url} ({} active until {})",
                report.reasons().len(),
                (now + chrono::Duration::from_std(duration).unwrap_or_default())
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            )),
            Err(error) => printer.warning(&format!("alerts were not delivered: {error}")),
        }
    }

    // The tracking issue: one per (model, environment).
    let issue_url = if args.no_issue {
        None
    } else {
        sync_issue(args, session, printer, &report, earlier.last(), &markdown)
    };

    let mut outcome = Outcome::new("monitor", report.headline(), verdict(report.health))
        .publishing(&args.publishing);
    for (name, svg) in &charts {
        outcome = outcome.text_file(&args.out.join(name), svg.clone());
    }
    let report_path = args.out.join("monitor.json");
    let outcome = outcome
        .json_file(&report_path, &report)?
        .text_file(&args.out.join("monitor.md"), markdown.clone())
        .markdown(markdown)
        .full_report(&report_path)
        .path_output(Output::Report, &report_path)
        .output(Output::Health, report.health.as_str())
        .output(Output::IssueUrl, issue_url.unwrap_or_default())
        .body(&report)?;
    let code = publish(outcome, session, printer)?;
    // The history is appended last, once the report is written, so a run
    // that failed halfway is not counted as a week.
    history::append(&args.history, &entry)?;
    let errored: Vec<&str> = report
        .checks
        .iter()
        .filter(|check| check.status == Status::Error)
        .map(|check| check.name.as_str())
        .collect();
    if code == ExitCode::PASS && !errored.is_empty() {
        printer.error(&format!(
            "{} could not be checked: {} (see the reasons above)",
            errored.len(),
            errored.join(", ")
        ));
        return Ok(ExitCode::ERROR);
    }
    Ok(code)
}

/// The window's p95 latency, p95 TTFT and error rate over time (Prometheus
/// range queries), as an SVG chart.
fn window_chart(series: &[(slo::Signal, Vec<(f64, f64)>)]) -> Option<String> {
    let series: Vec<gantry_core::chart::Series> = series
        .iter()
        .map(|(signal, points)| {
            let name = format!("{} ({})", signal.name(), signal.unit());
            let points = points
                .iter()
                .filter(|(time, value)| *time >= 0.0 && value.is_finite())
                .map(|(time, value)| (*time as u64, *value))
                .collect();
            (name, points)
        })
        .collect();
    let shown: Vec<&gantry_core::chart::Series> = series
        .iter()
        .filter(|(_, points)| points.len() >= 2)
        .collect();
    if shown.is_empty() {
        return None;
    }
    Some(gantry_core::chart::line_chart(&shown, |time| {
        chrono::DateTime::from_timestamp(i64::try_from(time).unwrap_or(0), 0)
            .map_or_else(String::new, |time| {
                time.format("%Y-%m-%d %H:%M").to_string()
            })
    }))
}

fn verdict(health: Health) -> Verdict {
    match health {
        Health::Healthy => Verdict::Pass,
        Health::Degraded => Verdict::Warn,
        Health::Failing => Verdict::Fail,
    }
}

/// The SLO thresholds: the defaults, each replaced by a `--slo` of the same signal.
fn thresholds(given: &[Threshold]) -> Vec<Threshold> {
    let mut thresholds: Vec<Threshold> = Threshold::defaults()
        .into_iter()
        .filter(|default| !given.iter().any(|slo| slo.signal == default.signal))
        .collect();
    thresholds.extend(given.iter().copied());
    thresholds
}

/// A lineage document a check needs: the file a flag `given`, else the one
/// registered with the version (fetched into `scratch`, digest checked);
/// `missing` says how to provide it when neither is there.
fn needed_document(
    given: Option<&std::path::Path>,
    registry: &dyn Registry,
    resolved: &Resolved,
    link: Option<&gantry_core::DocumentLink>,
    what: &str,
    scratch: &std::path::Path,
    missing: impl FnOnce() -> String,
) -> std::result::Result<std::path::PathBuf, String> {
    if let Some(path) = given {
        return Ok(path.to_owned());
    }
    let Some(link) = link else {
        return Err(missing());
    };
    let directory = scratch.join(what.replace(' ', "-"));
    std::fs::create_dir_all(&directory)
        .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
    fetch_document(
        registry,
        resolved,
        link,
        &format!(
            "the {what} of {} {}",
            resolved.manifest.name, resolved.manifest.version
        ),
        &directory,
    )
    .map_err(|error| format!("{error:#}"))
}

/// The quality checks: the eval set asked at the production endpoint, gated
/// against the evaluation registered with the version, one check per gated
/// metric (or one `quality` check that says why it could not run).
fn quality_checks(
    args: &MonitorArgs,
    session: &Session<'_>,
    printer: &Printer,
    registry: &dyn Registry,
    resolved: &Resolved,
    served_model: &str,
    scratch: &std::path::Path,
) -> Vec<CheckReport> {
    let error = |reason: String| {
        vec![CheckReport::new(
            "quality",
            Kind::Quality,
            Status::Error,
            "",
            reason,
        )]
    };
    let Some(endpoint) = &args.endpoint else {
        return vec![CheckReport::skipped(
            "quality",
            Kind::Quality,
            "no --endpoint: give the production endpoint (…/v1) to ask it the eval set again",
        )];
    };
    let manifest = &resolved.manifest;
    let lineage = &manifest.lineage;
    let baseline_path = match needed_document(
        None,
        registry,
        resolved,
        lineage.evaluation.as_ref(),
        "evaluation results",
        scratch,
        || {
            format!(
                "{} {} was registered without evaluation results, so there is no baseline: register it with `gantry register --eval-results results.jsonl --eval-set eval.jsonl` (the eval run it was gated on)",
                manifest.name, manifest.version
            )
        },
    ) {
        Ok(path) => path,
        Err(reason) => return error(reason),
    };
    let eval_set = match needed_document(
        args.eval_set.as_deref(),
        registry,
        resolved,
        lineage.eval_set.as_ref(),
        "eval set",
        scratch,
        || {
            format!(
                "no --eval-set, and {} {} was registered without one: pass --eval-set, or register with --eval-set",
                manifest.name, manifest.version
            )
        },
    ) {
        Ok(path) => path,
        Err(reason) => return error(reason),
    };
    let baseline = match gantry_eval::read(&baseline_path) {
        Ok(baseline) => baseline,
        Err(read) => return error(format!("the registered evaluation: {read}")),
    };
    let items = match read_items(&eval_set) {
        Ok(items) => items,
        Err(read) => return error(format!("--eval-set: {read}")),
    };
    if let Err(reason) = comparable(&items, &baseline) {
        return error(format!(
            "{} is not the eval set {} {} was evaluated on, so the results are not comparable: {reason}",
            eval_set.display(),
            manifest.name,
            manifest.version
        ));
    }
    let scorers: Vec<Scorer> = Scorer::ALL
        .into_iter()
        .filter(|scorer| {
            baseline
                .metrics
                .keys()
                .any(|key| key.metric == scorer.name())
        })
        .collect();
    if scorers.is_empty() {
        return error(format!(
            "the registered evaluation has no metric gantry eval can score ({}): monitor re-asks with the same scorers",
            baseline
                .metrics
                .keys()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let options = RunOptions {
        endpoint: endpoint.clone(),
        model: served_model.to_owned(),
        dataset: eval_set.clone(),
        scorers,
        api: match args.api {
            ApiArg::Chat => Api::Chat,
            ApiArg::Completions => Api::Completions,
        },
        repeats: 1,
        concurrency: args.concurrency as usize,
        retry: gantry_ci::retry_policy(session.environment),
        max_tokens: args.max_tokens,
        temperature: 0.0,
        tolerance: 1e-6,
        api_key: session
            .environment
            .get(&args.api_key_env)
            .filter(|key| !key.is_empty())
            .map(gantry_core::Secret::new),
    };
    printer.info(&format!(
        "asking {endpoint} the {} items of {}",
        items.len(),
        eval_set.display()
    ));
    let (results, summary) = match run_eval(&options, None) {
        Ok(ran) => ran,
        Err(run) => return error(format!("{endpoint}: {run}")),
    };
    if summary.requests > 0 && summary.errors == summary.requests {
        let first = results
            .iter()
            .find_map(|result| result.error.clone())
            .unwrap_or_default();
        return error(format!(
            "the endpoint {endpoint} answered none of {} requests (each retried): {first}",
            summary.requests
        ));
    }
    let quality_dir = args.out.join("quality");
    let written = std::fs::create_dir_all(&quality_dir).and_then(|()| {
        let mut text = String::new();
        for result in &results {
            text.push_str(
                &session
                    .redactor()
                    .to_json_line(result)
                    .map_err(std::io::Error::other)?,
            );
            text.push('\n');
        }
        std::fs::write(quality_dir.join("results.jsonl"), text)
    });
    if let Err(write) = written {
        return error(format!("cannot write {}: {write}", quality_dir.display()));
    }
    let candidate = match gantry_eval::read(&quality_dir.join("results.jsonl")) {
        Ok(candidate) => candidate,
        Err(read) => return error(format!("the production answers: {read}")),
    };
    let (policy, source) = match &args.policy {
        Some(path) => match gantry_eval::Policy::from_file(path) {
            Ok(policy) => (policy, path.display().to_string()),
            Err(read) => return error(format!("--policy: {read}")),
        },
        None => (gantry_eval::Policy::default(), "default".to_owned()),
    };
    let gate = match evaluate_gate(&baseline, &candidate, &policy, &source) {
        Ok(gate) => gate,
        Err(gated) => {
            return error(format!(
                "not comparable with the registered evaluation: {gated}"
            ));
        }
    };
    if let Ok(text) = serde_json::to_string_pretty(&gate) {
        let _ = std::fs::write(
            quality_dir.join("gate.json"),
            session.redactor().redact(&text).as_bytes(),
        );
    }
    gate_checks(&gate, summary.errors)
}

/// The eval set is the one the baseline asked: the same ids, each asked the same way.
fn comparable(
    items: &[gantry_eval::runner::Item],
    baseline: &gantry_eval::ResultSet,
) -> Result<(), String> {
    let mut asked = std::collections::BTreeMap::new();
    for data in baseline.metrics.values() {
        for (id, scores) in data.iter() {
            asked.insert(
                id.to_string(),
                scores.prompt_hash().map(ToString::to_string),
            );
        }
    }
    let ids: BTreeSet<String> = items.iter().map(|item| id_text(&item.id)).collect();
    let missing: Vec<&String> = asked.keys().filter(|id| !ids.contains(*id)).collect();
    let extra: Vec<&String> = ids.iter().filter(|id| !asked.contains_key(*id)).collect();
    if !missing.is_empty() || !extra.is_empty() {
        return Err(format!(
            "{} of the baseline's items are not in it{}, and {} of its items are not in the baseline{}",
            missing.len(),
            first(&missing),
            extra.len(),
            first(&extra)
        ));
    }
    let changed: Vec<String> = items
        .iter()
        .filter(|item| {
            matches!(asked.get(&id_text(&item.id)), Some(Some(hash)) if *hash != prompt_hash(item))
        })
        .map(|item| id_text(&item.id))
        .collect();
    if !changed.is_empty() {
        let changed: Vec<&String> = changed.iter().collect();
        return Err(format!(
            "{} items ask something else than the baseline asked (prompt hash differs){}",
            changed.len(),
            first(&changed)
        ));
    }
    Ok(())
}

fn id_text(id: &serde_json::Value) -> String {
    match id {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn first(ids: &[&String]) -> String {
    if ids.is_empty() {
        String::new()
    } else {
        format!(
            " (first: {})",
            ids.iter()
                .take(3)
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// One check per gated metric, with eval-gate's verdict.
fn gate_checks(gate: &GateReport, errors: usize) -> Vec<CheckReport> {
    gate.rows
        .iter()
        .map(|row| {
            let name = if row.task == "default" {
                format!("quality-{}", row.metric)
            } else {
                format!("quality-{}-{}", row.task, row.metric)
            };
            let status = match row.verdict {
                RowVerdict::Pass => Status::Pass,
                RowVerdict::Fail if row.severity == gantry_eval::Severity::Warn => Status::Warn,
                RowVerdict::Fail => Status::Fail,
                RowVerdict::Inconclusive => Status::Inconclusive,
            };
            let c = &row.comparison;
            let mut check = CheckReport::new(&name, Kind::Quality, status, "", "");
            check.value = Some(c.candidate);
            check.previous = vec![Some(c.baseline)];
            check.threshold = Some(if row.margin > 0.0 {
                format!(
                    "no significant drop of more than {} below the registered {}",
                    report::show_value(Some(row.margin), ""),
                    report::show_value(Some(c.baseline), "")
                )
            } else {
                format!(
                    "no significant drop below the registered {}",
                    report::show_value(Some(c.baseline), "")
                )
            });
            check.reason = format!(
                "Δ {:+.4} [{:+.4}, {:+.4}] over {} items, p {:.3}{}",
                c.delta,
                c.ci_low,
                c.ci_high,
                c.n,
                row.p_adjusted,
                if row.reasons.is_empty() {
                    String::new()
                } else {
                    format!(": {}", row.reasons.join("; "))
                }
            );
            if !row.new_failure_ids.is_empty() {
                check.details.push(format!(
                    "now wrong: {}",
                    row.new_failure_ids
                        .iter()
                        .take(10)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if errors > 0 {
                check
                    .details
                    .push(format!("{errors} requests failed after every retry"));
            }
            check
        })
        .collect()
}

/// The drift checks: a sample of production prompts read by validate-data
/// against the training data's summary.json.
fn drift_checks(
    args: &MonitorArgs,
    session: &Session<'_>,
    printer: &Printer,
    registry: &dyn Registry,
    resolved: &Resolved,
    scratch: &std::path::Path,
) -> Vec<CheckReport> {
    let names = ["drift-psi", "drift-js", "drift-wasserstein"];
    let all = |status: Status, reason: String| -> Vec<CheckReport> {
        names
            .iter()
            .map(|name| CheckReport::new(name, Kind::Drift, status, "", reason.clone()))
            .collect()
    };
    let Some(traffic) = &args.traffic else {
        return names
            .iter()
            .map(|name| CheckReport::skipped(name, Kind::Drift, "no --traffic: give a sample of logged production prompts to measure input drift"))
            .collect();
    };
    let manifest = &resolved.manifest;
    let summary = match needed_document(
        args.data_summary.as_deref(),
        registry,
        resolved,
        manifest.lineage.data_summary.as_ref(),
        "data summary",
        scratch,
        || {
            format!(
                "no --data-summary, and {} {} was registered without the training data's summary.json: pass --data-summary, or register with --data-summary",
                manifest.name, manifest.version
            )
        },
    ) {
        Ok(path) => path,
        Err(reason) => return all(Status::Error, reason),
    };
    let tokenizer = std::fs::read_to_string(&summary)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|value| value["tokenizer"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "o200k_base".to_owned());
    let options = gantry_data::ValidateOptions {
        data: vec![traffic.clone()],
        format: None,
        tokenizer,
        max_tokens: None,
        previous_lock: None,
        eval_set: Vec::new(),
        reference: Some(summary.display().to_string()),
        schema: None,
        policy: gantry_data::Policy::default(),
        // GANTRY_NO_MMAP, as validate-data honours it.
        map_files: session
            .environment
            .get(gantry_ci::EnvVars::GANTRY_NO_MMAP)
            .is_none(),
    };
    printer.info(&format!(
        "measuring the drift of {traffic} against {}",
        summary.display()
    ));
    let validation = match gantry_data::validate(&options) {
        Ok(validation) => validation,
        Err(error) => return all(Status::Error, format!("--traffic {traffic}: {error}")),
    };
    let report = &validation.report;
    let parse_findings: Vec<String> = report
        .checks
        .iter()
        .filter(|check| {
            matches!(
                check.id,
                gantry_data::CheckId::Parse | gantry_data::CheckId::Schema
            ) && check.count > 0
        })
        .flat_map(|check| check.findings.iter())
        .map(|example| match example.line {
            Some(line) => format!("{}:{line}: {}", example.file, example.message),
            None => format!("{}: {}", example.file, example.message),
        })
        .collect();
    let unreadable: u64 = report
        .checks
        .iter()
        .filter(|check| {
            matches!(
                check.id,
                gantry_data::CheckId::Parse | gantry_data::CheckId::Schema
            )
        })
        .map(|check| check.count)
        .sum();
    if unreadable > 0 && report.records == unreadable {
        let mut checks = all(
            Status::Error,
            format!(
                "--traffic {traffic}: none of its {} records could be read",
                report.records
            ),
        );
        checks[0].details = parse_findings;
        return checks;
    }
    let readable = report.records.saturating_sub(unreadable);
    if readable < args.min_traffic_records {
        return all(
            Status::Inconclusive,
            format!(
                "{readable} readable records in --traffic, fewer than --min-traffic-records {}: too few to measure drift",
                args.min_traffic_records
            ),
        );
    }
    let measures: Vec<String> = report
        .drift
        .iter()
        .flatten()
        .map(|(distribution, measure)| {
            format!(
                "{distribution}: PSI {:.3}, Jensen–Shannon {:.3}{}",
                measure.psi,
                measure.jensen_shannon,
                measure
                    .wasserstein
                    .map_or(String::new(), |w| format!(", Wasserstein {w:.3} sd"))
            )
        })
        .collect();
    let ids = [
        gantry_data::CheckId::DriftPsi,
        gantry_data::CheckId::DriftJs,
        gantry_data::CheckId::DriftWasserstein,
    ];
    let mut checks = Vec::new();
    for (name, id) in names.iter().zip(ids) {
        let Some(result) = report.checks.iter().find(|check| check.id == id) else {
            checks.push(CheckReport::new(
                name,
                Kind::Drift,
                Status::Error,
                "",
                "validate-data did not measure it",
            ));
            continue;
        };
        let status = match result.status {
            gantry_data::CheckStatus::Pass => Status::Pass,
            gantry_data::CheckStatus::Warn => Status::Warn,
            gantry_data::CheckStatus::Fail => Status::Fail,
            gantry_data::CheckStatus::Skipped => Status::Inconclusive,
        };
        let mut check = CheckReport::new(name, Kind::Drift, status, "", result.description);
        check.value = Some(result.value);
        check.threshold = match (result.threshold.warn, result.threshold.error) {
            (Some(warn), Some(error)) => Some(format!("warn > {warn}, fail > {error}")),
            (Some(warn), None) => Some(format!("warn > {warn}")),
            (None, Some(error)) => Some(format!("fail > {error}")),
            (None, None) => None,
        };
        if let Some(note) = &result.note {
            check.reason = note.clone();
        }
        if checks.is_empty() {
            check.details.clone_from(&measures);
        }
        checks.push(check);
    }
    if unreadable > 0 {
        let mut check = CheckReport::new(
            "traffic-parse",
            Kind::Drift,
            Status::Warn,
            "",
            format!(
                "{unreadable} of {} records in --traffic could not be read; drift is measured on the rest",
                report.records
            ),
        );
        check.value = Some(unreadable as f64);
        check.details = parse_findings;
        checks.push(check);
    }
    checks
}

/// Opens, updates or closes the tracking issue; returns its URL.
fn sync_issue(
    args: &MonitorArgs,
    session: &Session<'_>,
    printer: &Printer,
    report: &MonitorReport,
    previous: Option<&HistoryEntry>,
    markdown: &str,
) -> Option<String> {
    if session.platform == gantry_ci::Platform::Local {
        return None;
    }
    let key = gantry_ci::IssueKey {
        marker: format!(
            "<!-- gantry-monitor model={} env={} -->",
            marker_part(&report.model),
            marker_part(&report.environment)
        ),
        title: format!(
            "gantry monitor: {} in {} is not healthy",
            report.model, report.environment
        ),
        labels: args
            .issue_labels
            .iter()
            .filter(|label| !label.is_empty())
            .cloned()
            .collect(),
    };
    let run = session
        .context
        .run_url
        .as_deref()
        .map_or(String::new(), |url| format!(" ([run]({url}))"));
    let changed = previous.is_none_or(|previous| previous.health != report.health);
    let (body, comment) = match report.health {
        Health::Healthy => (
            None,
            Some(format!("✅ Healthy again: {}{run}", report.headline())),
        ),
        _ => (
            Some(format!(
                "{markdown}\n_Updated by gantry monitor at {}{run}._",
                report.time
            )),
            changed.then(|| format!("Now {}: {}{run}", report.health.as_str(), report.headline())),
        ),
    };
    // octocrab's client needs the runtime it runs in: made inside it.
    let synced = session.block_on(async {
        let client = gantry_ci::ForgeClient::from_context(
            &session.context,
            session.environment,
            session.redactor(),
        )?;
        client
            .sync_issue(&key, body.as_deref(), comment.as_deref())
            .await
    });
    match synced {
        Ok(Ok(outcome)) => {
            let url = outcome.issue().and_then(|issue| issue.url.clone());
            let what = match &outcome {
                gantry_ci::IssueOutcome::Opened(issue) => format!("opened issue #{}", issue.number),
                gantry_ci::IssueOutcome::Reopened(issue) => {
                    format!("reopened issue #{}", issue.number)
                }
                gantry_ci::IssueOutcome::Updated(issue) => {
                    format!("updated issue #{}", issue.number)
                }
                gantry_ci::IssueOutcome::Closed(issue) => format!("closed issue #{}", issue.number),
                gantry_ci::IssueOutcome::NoneOpen => "no issue open, none needed".to_owned(),
            };
            printer.info(&format!("tracking issue: {what}"));
            url
        }
        Ok(Err(error)) => {
            printer.warning(&format!(
                "the tracking issue was not updated ({error}); the report is in the job summary. Give the job `issues: write` (GitHub) or a token with `api` scope in GITLAB_TOKEN (GitLab)"
            ));
            None
        }
        Err(error) => {
            printer.warning(&format!("the tracking issue was not updated: {error}"));
            None
        }
    }
}

/// A marker part that cannot end the HTML comment or break the key.
fn marker_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_alphanumeric() || "._/@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `gantry monitor rules`: the alerting rules and the dashboard.
fn render_rules(
    args: &MonitorRulesArgs,
    session: &Session<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    let options = gantry_monitor::rules::RulesOptions {
        model: args.model.clone(),
        environment: args.environment.clone(),
        flavor: args.metrics.flavor().unwrap_or(slo::Flavor::Router),
        selector: args.selector.clone(),
        thresholds: thresholds(&args.slo),
        rate_window: gantry_monitor::promql_duration(args.rate_window),
        for_duration: gantry_monitor::promql_duration(args.for_duration),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let rules_path = args.out.join("gantry-monitor.rules.yml");
    let dashboard_path = args.out.join("grafana-dashboard.json");
    let rules = gantry_monitor::rules::prometheus_rules(&options);
    let dashboard =
        serde_json::to_string_pretty(&gantry_monitor::rules::grafana_dashboard(&options))?;
    for (path, text) in [(&rules_path, rules), (&dashboard_path, dashboard + "\n")] {
        std::fs::write(path, session.redactor().redact(&text).as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        printer.info(&format!("wrote {}", path.display()));
    }
    Ok(ExitCode::PASS)
}
