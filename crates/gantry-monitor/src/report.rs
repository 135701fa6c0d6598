//! `monitor.json`: every check's status, value, threshold and trend, and
//! the verdict they fold into; its Markdown (job summary, report file and
//! the tracking issue's body).

use std::fmt::Write as _;

use gantry_core::chart::{number, sparkline};
use serde::{Deserialize, Serialize};

/// Version of `monitor.json`.
pub const REPORT_VERSION: u32 = 1;

/// What a check concluded.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Within its threshold and its trend.
    Pass,
    /// A measurement without a verdict of its own (cost).
    Info,
    /// Not configured: the reason says what would turn it on.
    Skipped,
    /// Too little data to judge, or no data at all.
    Inconclusive,
    /// Worse than before, or near its threshold.
    Warn,
    /// Past its threshold.
    Fail,
    /// Its source failed (Prometheus down, an unreachable endpoint).
    Error,
}

impl Status {
    /// The status as written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Info => "info",
            Status::Skipped => "skipped",
            Status::Inconclusive => "inconclusive",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Error => "error",
        }
    }

    fn icon(self) -> &'static str {
        match self {
            Status::Pass => "✅",
            Status::Info => "ℹ️",
            Status::Skipped => "⏭️",
            Status::Inconclusive => "❔",
            Status::Warn => "⚠️",
            Status::Fail => "❌",
            Status::Error => "💥",
        }
    }
}

/// The week's verdict.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Every configured check passed.
    Healthy,
    /// Warnings, inconclusive checks or checks whose source failed.
    Degraded,
    /// A check failed.
    Failing,
}

impl Health {
    /// The verdict as written in reports and outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Failing => "failing",
        }
    }

    /// Folds check statuses: a failure fails; a warning, an inconclusive
    /// check or an error degrades; skipped and informational ones do not count.
    pub fn of(checks: &[CheckReport]) -> Health {
        let worst = checks.iter().map(|check| check.status).max();
        match worst {
            Some(Status::Fail) => Health::Failing,
            Some(Status::Warn | Status::Inconclusive | Status::Error) => Health::Degraded,
            _ => Health::Healthy,
        }
    }

    fn icon(self) -> &'static str {
        match self {
            Health::Healthy => "✅",
            Health::Degraded => "⚠️",
            Health::Failing => "❌",
        }
    }
}

/// Which part of production a check looks at.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The eval set against the production endpoint, gated against the registered evaluation.
    Quality,
    /// Service SLOs from Prometheus.
    Service,
    /// Production inputs against the training data.
    Drift,
    /// GPUs and cost.
    Resources,
}

impl Kind {
    /// The kind as written in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Quality => "quality",
            Kind::Service => "service",
            Kind::Drift => "drift",
            Kind::Resources => "resources",
        }
    }
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CheckReport {
    /// Stable name, e.g. `latency-p95`, `quality`, `drift-psi`.
    pub name: String,
    /// Which part of production it looks at.
    pub kind: Kind,
    /// What it concluded.
    pub status: Status,
    /// The measured value, in `unit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// The unit of `value` (`ms`, `ratio`, `tokens/s`, `%`, `USD`…).
    pub unit: String,
    /// The threshold it was held to, as text (`≤ 2000 ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
    /// The same measure over the previous windows, newest first (`null`: no data then).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous: Vec<Option<f64>>,
    /// Why it concluded what it did, or why it was skipped.
    pub reason: String,
    /// Further lines: gate rows, parse findings by file:line, queries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

impl CheckReport {
    /// A check that did not run, with what would turn it on.
    pub fn skipped(name: &str, kind: Kind, reason: impl Into<String>) -> CheckReport {
        CheckReport::new(name, kind, Status::Skipped, "", reason)
    }

    /// A check with no value yet.
    pub fn new(
        name: &str,
        kind: Kind,
        status: Status,
        unit: &str,
        reason: impl Into<String>,
    ) -> CheckReport {
        CheckReport {
            name: name.to_owned(),
            kind,
            status,
            value: None,
            unit: unit.to_owned(),
            threshold: None,
            previous: Vec::new(),
            reason: reason.into(),
            details: Vec::new(),
        }
    }
}

/// `monitor.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MonitorReport {
    /// Format version (1).
    pub version: u32,
    /// The model's name.
    pub model: String,
    /// The version the alias resolved to.
    pub model_version: String,
    /// Its manifest digest.
    pub digest: String,
    /// The environment (the alias, unless --environment says otherwise).
    pub environment: String,
    /// When the run ended (RFC 3339): the end of the window.
    pub time: String,
    /// The window, in seconds.
    pub window_seconds: u64,
    /// The verdict.
    pub health: Health,
    /// Every check, configured or not.
    pub checks: Vec<CheckReport>,
}

impl MonitorReport {
    /// Checks with `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks
            .iter()
            .filter(|check| check.status == status)
            .count()
    }

    /// The checks that make the verdict what it is (failures, else warnings,
    /// inconclusive checks and errors).
    pub fn reasons(&self) -> Vec<&CheckReport> {
        self.checks
            .iter()
            .filter(|check| match self.health {
                Health::Failing => check.status == Status::Fail,
                Health::Degraded => matches!(
                    check.status,
                    Status::Warn | Status::Inconclusive | Status::Error
                ),
                Health::Healthy => false,
            })
            .collect()
    }

    /// One line: the verdict and its reasons.
    pub fn headline(&self) -> String {
        let reasons: Vec<&str> = self
            .reasons()
            .iter()
            .map(|check| check.name.as_str())
            .collect();
        let mut line = format!(
            "{} {} in {} is {}",
            self.model,
            self.model_version,
            self.environment,
            self.health.as_str()
        );
        if !reasons.is_empty() {
            let _ = write!(line, ": {}", reasons.join(", "));
        }
        line
    }
}

/// The JSON Schema of `monitor.json`.
pub fn report_schema() -> schemars::Schema {
    schemars::schema_for!(MonitorReport)
}

/// A value with its unit, readably.
pub fn show_value(value: Option<f64>, unit: &str) -> String {
    match value {
        None => "—".to_owned(),
        Some(value) if unit == "ratio" => format!("{:.2}%", value * 100.0),
        Some(value) if unit.is_empty() => number(value),
        Some(value) => format!("{} {unit}", number(value)),
    }
}

/// Keeps text from breaking a Markdown table or acting as HTML.
pub fn escape(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\n', " ")
}

/// The report as Markdown: the verdict, a table of every check with its
/// trend (`history`: each check's earlier values, oldest first), details,
/// and the charts beside it when `charts` names them.
pub fn markdown(
    report: &MonitorReport,
    history: &std::collections::BTreeMap<String, Vec<f64>>,
    charts: &[String],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## {} gantry monitor: {} {} in {} is {}\n",
        report.health.icon(),
        escape(&report.model),
        escape(&report.model_version),
        escape(&report.environment),
        report.health.as_str()
    );
    let _ = writeln!(
        out,
        "Window: the {} before {} · model `{}`\n",
        window_text(report.window_seconds),
        report.time,
        report.digest
    );
    out.push_str("| check | status | value | threshold | previous windows | trend | reason |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    for check in report
        .checks
        .iter()
        .filter(|check| check.status != Status::Skipped)
    {
        let previous: Vec<String> = check
            .previous
            .iter()
            .map(|value| show_value(*value, &check.unit))
            .collect();
        let mut points: Vec<f64> = history.get(&check.name).cloned().unwrap_or_default();
        points.extend(check.value);
        let trend = if points.len() >= 2 {
            sparkline(&points, 12)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} `{}` | {} | {} | {} | {} | {} | {} |",
            check.status.icon(),
            escape(&check.name),
            check.status.as_str(),
            show_value(check.value, &check.unit),
            escape(check.threshold.as_deref().unwrap_or("")),
            escape(&previous.join(", ")),
            trend,
            escape(&check.reason)
        );
    }
    let skipped: Vec<&CheckReport> = report
        .checks
        .iter()
        .filter(|check| check.status == Status::Skipped)
        .collect();
    if !skipped.is_empty() {
        out.push_str("\nNot checked:\n\n");
        for check in skipped {
            let _ = writeln!(
                out,
                "- `{}`: {}",
                escape(&check.name),
                escape(&check.reason)
            );
        }
    }
    for check in report
        .checks
        .iter()
        .filter(|check| !check.details.is_empty())
    {
        let _ = writeln!(
            out,
            "\n<details><summary><code>{}</code></summary>\n",
            escape(&check.name)
        );
        for line in &check.details {
            let _ = writeln!(out, "- {}", escape(line));
        }
        out.push_str("\n</details>\n");
    }
    if !charts.is_empty() {
        let _ = writeln!(out, "\nTrend charts: {}", charts.join(", "));
    }
    out
}

/// `604800` → `7 days`, `120` → `2 minutes`.
pub fn window_text(seconds: u64) -> String {
    let (size, unit) = [
        (86_400, "day"),
        (3_600, "hour"),
        (60, "minute"),
        (1, "second"),
    ]
    .into_iter()
    .find(|(size, _)| seconds >= *size && seconds.is_multiple_of(*size))
    .unwrap_or((1, "second"));
    let count = seconds / size;
    format!("{count} {unit}{}", if count == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, status: Status) -> CheckReport {
        CheckReport::new(name, Kind::Service, status, "ms", "because")
    }

    #[test]
    fn the_worst_status_decides_and_skipped_checks_do_not_pass_anything() {
        assert_eq!(Health::of(&[]), Health::Healthy);
        assert_eq!(
            Health::of(&[check("a", Status::Pass), check("b", Status::Skipped)]),
            Health::Healthy
        );
        assert_eq!(
            Health::of(&[check("a", Status::Pass), check("b", Status::Inconclusive)]),
            Health::Degraded
        );
        assert_eq!(
            Health::of(&[check("a", Status::Error), check("b", Status::Pass)]),
            Health::Degraded
        );
        assert_eq!(
            Health::of(&[check("a", Status::Warn), check("b", Status::Fail)]),
            Health::Failing
        );
    }

    #[test]
    fn markdown_lists_checks_trends_and_what_was_not_checked() {
        let mut latency = check("latency-p95", Status::Fail);
        latency.value = Some(950.0);
        latency.threshold = Some("≤ 500 ms".to_owned());
        latency.previous = vec![Some(120.0), None];
        let report = MonitorReport {
            version: REPORT_VERSION,
            model: "tiny".to_owned(),
            model_version: "0.1.0".to_owned(),
            digest: "sha256:00".to_owned(),
            environment: "production".to_owned(),
            time: "2026-12-05T00:00:00Z".to_owned(),
            window_seconds: 604_800,
            health: Health::Failing,
            checks: vec![
                latency,
                CheckReport::skipped(
                    "drift",
                    Kind::Drift,
                    "no --traffic: pass a sample of prompts",
                ),
            ],
        };
        let history = std::collections::BTreeMap::from([(
            "latency-p95".to_owned(),
            vec![100.0, 110.0, 120.0],
        )]);
        let text = markdown(&report, &history, &["trend-service.svg".to_owned()]);
        assert!(
            text.contains("tiny 0.1.0 in production is failing"),
            "{text}"
        );
        assert!(text.contains("the 7 days before"), "{text}");
        assert!(
            text.contains("| ❌ `latency-p95` | fail | 950 ms | ≤ 500 ms | 120 ms, — |"),
            "{text}"
        );
        assert!(text.contains("- `drift`: no --traffic"), "{text}");
        assert!(text.contains("trend-service.svg"));
        assert_eq!(
            report.headline(),
            "tiny 0.1.0 in production is failing: latency-p95"
        );
    }
}
