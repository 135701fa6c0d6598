//! Alertmanager: each check that is not healthy becomes an alert
//! (`POST /api/v2/alerts`) with an end time past the next run, so it stays
//! active between weekly runs and resolves on its own if monitoring stops;
//! a check that is healthy again is posted with an end time of now, which
//! resolves it.

use std::time::Duration;

use gantry_core::RetryPolicy;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::history::HistoryEntry;
use crate::http::send;
use crate::report::{MonitorReport, Status};

/// The alerts for `report` at `now`: for every check, one alert per
/// severity, active (`endsAt` = now + `ends_after`) for the severity the
/// check has and resolved (`endsAt` = now) otherwise; plus resolutions for
/// the checks of the version `previous` ran against, when production has
/// moved to another version since.
pub fn alerts(
    report: &MonitorReport,
    previous: Option<&HistoryEntry>,
    now: chrono::DateTime<chrono::Utc>,
    ends_after: Duration,
    generator_url: Option<&str>,
) -> Vec<Value> {
    let stamp = |time: chrono::DateTime<chrono::Utc>| {
        time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let until = now + chrono::Duration::from_std(ends_after).unwrap_or(chrono::Duration::days(8));
    let alert = |version: &str,
                 check: &str,
                 severity: &str,
                 active: bool,
                 summary: String,
                 description: String| {
        let mut alert = json!({
            "labels": {
                "alertname": "GantryMonitor",
                "model": report.model,
                "version": version,
                "environment": report.environment,
                "check": check,
                "severity": severity,
            },
            "annotations": { "summary": summary, "description": description },
            "startsAt": stamp(now),
            "endsAt": stamp(if active { until } else { now }),
        });
        if let Some(url) = generator_url {
            alert["generatorURL"] = json!(url);
        }
        alert
    };
    let mut alerts = Vec::new();
    // Every check, skipped and informational ones too: an alert a check
    // raised last week resolves whatever the check is now.
    for check in &report.checks {
        let severity = match check.status {
            Status::Fail => Some("critical"),
            Status::Warn | Status::Inconclusive | Status::Error => Some("warning"),
            _ => None,
        };
        for candidate in ["warning", "critical"] {
            let active = severity == Some(candidate);
            alerts.push(alert(
                &report.model_version,
                &check.name,
                candidate,
                active,
                format!(
                    "{} of {} {} in {}: {}",
                    check.name,
                    report.model,
                    report.model_version,
                    report.environment,
                    check.status.as_str()
                ),
                check.reason.clone(),
            ));
        }
    }
    // Checks of the week before that this run does not post under the same
    // labels: another version was in production, or the check is gone.
    if let Some(previous) = previous {
        let moved = previous.model_version != report.model_version;
        for check in previous
            .statuses
            .keys()
            .filter(|name| moved || !report.checks.iter().any(|check| &check.name == *name))
        {
            for candidate in ["warning", "critical"] {
                alerts.push(alert(
                    &previous.model_version,
                    check,
                    candidate,
                    false,
                    format!(
                        "{check} of {} {} in {}: no longer checked",
                        report.model, previous.model_version, report.environment
                    ),
                    format!(
                        "{} is now {} {}",
                        report.environment, report.model, report.model_version
                    ),
                ));
            }
        }
    }
    alerts
}

/// Posts `alerts` to the Alertmanager at `url`; returns how many.
pub async fn post(url: &str, alerts: &[Value], policy: &RetryPolicy) -> Result<usize> {
    let parsed = url.parse::<reqwest::Url>().map_err(|error| {
        Error::Input(format!(
            "--alertmanager {url:?} is not a URL ({error}); expected e.g. http://alertmanager:9093"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::Input(format!(
            "--alertmanager {url:?}: expected an http:// or https:// URL"
        )));
    }
    let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
    let http = reqwest::Client::new();
    let answer = send(policy, "Alertmanager", "POST", &endpoint, || {
        http.post(&endpoint).json(alerts)
    })
    .await?;
    if !(200..300).contains(&answer.status) {
        return Err(Error::Service(format!(
            "Alertmanager refused POST {endpoint} with {}: {}",
            answer.status,
            answer.body.chars().take(300).collect::<String>()
        )));
    }
    Ok(alerts.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{CheckReport, Health, Kind};

    #[test]
    fn each_check_is_active_at_its_severity_and_resolved_at_the_other() {
        let report = MonitorReport {
            version: 1,
            model: "tiny".into(),
            model_version: "0.2.0".into(),
            digest: "sha256:00".into(),
            environment: "production".into(),
            time: "2026-12-05T00:00:00Z".into(),
            window_seconds: 60,
            health: Health::Failing,
            checks: vec![
                CheckReport::new("latency-p95", Kind::Service, Status::Fail, "ms", "slow"),
                CheckReport::new("error-rate", Kind::Service, Status::Pass, "ratio", "fine"),
                CheckReport::skipped("drift", Kind::Drift, "no --traffic"),
            ],
        };
        let previous = HistoryEntry {
            model_version: "0.1.0".into(),
            ..HistoryEntry::of(&report)
        };
        let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time");
        let alerts = alerts(
            &report,
            Some(&previous),
            now,
            Duration::from_secs(86_400),
            None,
        );
        let active: Vec<(&str, &str, &str)> = alerts
            .iter()
            .filter(|alert| alert["endsAt"] != alert["startsAt"])
            .map(|alert| {
                (
                    alert["labels"]["check"].as_str().unwrap_or(""),
                    alert["labels"]["severity"].as_str().unwrap_or(""),
                    alert["labels"]["version"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(active, [("latency-p95", "critical", "0.2.0")]);
        // 3 checks × 2 severities now (the skipped one resolved), and 3 of
        // the previous version × 2 resolved.
        assert_eq!(alerts.len(), 6 + 6);
        assert!(
            alerts
                .iter()
                .all(|alert| alert["labels"]["model"] == "tiny")
        );
        // A skipped (or informational) check still resolves what it raised before.
        let drift: Vec<&Value> = alerts
            .iter()
            .filter(|alert| alert["labels"]["check"] == "drift")
            .collect();
        assert_eq!(drift.len(), 2 + 2);
        assert!(
            drift
                .iter()
                .all(|alert| alert["endsAt"] == alert["startsAt"])
        );
    }
}
