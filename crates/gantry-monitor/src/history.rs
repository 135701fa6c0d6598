//! The history file: one JSON line per run, appended, so each week is
//! compared with the weeks before it (keep it as a CI cache or artifact),
//! and the trend charts drawn from it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use gantry_core::chart::{Series, line_chart};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::report::{Health, Kind, MonitorReport, Status};

/// Runs charted, at most.
const CHARTED_RUNS: usize = 52;

/// One run, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When the run's window ended (RFC 3339).
    pub time: String,
    /// The model.
    pub model: String,
    /// The version that was in production.
    pub model_version: String,
    /// The environment.
    pub environment: String,
    /// The verdict.
    pub health: Health,
    /// Each check's value.
    #[serde(default)]
    pub values: BTreeMap<String, f64>,
    /// Each check's status.
    #[serde(default)]
    pub statuses: BTreeMap<String, Status>,
    /// Each check's kind, for grouping charts.
    #[serde(default)]
    pub kinds: BTreeMap<String, Kind>,
}

impl HistoryEntry {
    /// The entry for `report`.
    pub fn of(report: &MonitorReport) -> HistoryEntry {
        HistoryEntry {
            time: report.time.clone(),
            model: report.model.clone(),
            model_version: report.model_version.clone(),
            environment: report.environment.clone(),
            health: report.health,
            values: report
                .checks
                .iter()
                .filter_map(|check| {
                    Some((check.name.clone(), check.value.filter(|v| v.is_finite())?))
                })
                .collect(),
            statuses: report
                .checks
                .iter()
                .map(|check| (check.name.clone(), check.status))
                .collect(),
            kinds: report
                .checks
                .iter()
                .map(|check| (check.name.clone(), check.kind))
                .collect(),
        }
    }

    fn unix(&self) -> Option<u64> {
        chrono::DateTime::parse_from_rfc3339(&self.time)
            .ok()
            .and_then(|time| u64::try_from(time.timestamp()).ok())
    }
}

/// The runs of `model` in `environment` in `path`, oldest first; no file is
/// no history. A line that is not an entry is an error naming it: the file
/// is never rewritten, so nothing in it is lost.
pub fn read(path: &Path, model: &str, environment: &str) -> Result<Vec<HistoryEntry>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::io("cannot read the history", path)(error)),
    };
    let mut entries = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry: HistoryEntry = serde_json::from_str(line).map_err(|error| {
            Error::Input(format!(
                "{}:{}: not a monitor history entry ({error}); fix or remove the line (the file is appended to, never rewritten)",
                path.display(),
                index + 1
            ))
        })?;
        if entry.model == model && entry.environment == environment {
            entries.push(entry);
        }
    }
    Ok(entries)
}

/// Appends `entry` as one line, creating the file and its directory.
pub fn append(path: &Path, entry: &HistoryEntry) -> Result<()> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
    }
    let mut line = serde_json::to_string(entry)
        .map_err(|error| Error::Input(format!("cannot encode the history entry: {error}")))?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(Error::io("cannot open the history", path))?;
    file.write_all(line.as_bytes())
        .map_err(Error::io("cannot append to the history", path))
}

/// Each check's earlier values, oldest first.
pub fn earlier_values(entries: &[HistoryEntry]) -> BTreeMap<String, Vec<f64>> {
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for entry in entries.iter().rev().take(CHARTED_RUNS).rev() {
        for (name, value) in &entry.values {
            values.entry(name.clone()).or_default().push(*value);
        }
    }
    values
}

/// Trend charts, one SVG per kind of check that has values over at least
/// two runs: `(file name, document)`.
pub fn trend_charts(entries: &[HistoryEntry], current: &HistoryEntry) -> Vec<(String, String)> {
    let runs: Vec<&HistoryEntry> = entries
        .iter()
        .rev()
        .take(CHARTED_RUNS - 1)
        .rev()
        .chain(std::iter::once(current))
        .collect();
    let mut charts = Vec::new();
    for kind in [Kind::Quality, Kind::Service, Kind::Drift, Kind::Resources] {
        let mut by_name: BTreeMap<&str, Vec<(u64, f64)>> = BTreeMap::new();
        for run in &runs {
            let Some(time) = run.unix() else { continue };
            for (name, value) in &run.values {
                if current.kinds.get(name) == Some(&kind) || run.kinds.get(name) == Some(&kind) {
                    by_name.entry(name).or_default().push((time, *value));
                }
            }
        }
        let series: Vec<Series> = by_name
            .into_iter()
            .filter(|(_, points)| points.len() >= 2)
            .map(|(name, points)| (name.to_owned(), points))
            .collect();
        if series.is_empty() {
            continue;
        }
        let shown: Vec<&Series> = series.iter().collect();
        let svg = line_chart(&shown, |time| {
            chrono::DateTime::from_timestamp(i64::try_from(time).unwrap_or(0), 0)
                .map_or_else(String::new, |time| {
                    time.format("%Y-%m-%d %H:%M").to_string()
                })
        });
        charts.push((format!("trend-{}.svg", kind.as_str()), svg));
    }
    charts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(time: &str, model: &str, latency: f64) -> HistoryEntry {
        HistoryEntry {
            time: time.to_owned(),
            model: model.to_owned(),
            model_version: "0.1.0".to_owned(),
            environment: "production".to_owned(),
            health: Health::Healthy,
            values: BTreeMap::from([("latency-p95".to_owned(), latency)]),
            statuses: BTreeMap::from([("latency-p95".to_owned(), Status::Pass)]),
            kinds: BTreeMap::from([("latency-p95".to_owned(), Kind::Service)]),
        }
    }

    #[test]
    fn entries_append_and_read_back_by_model_and_environment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("monitor/history.jsonl");
        assert!(
            read(&path, "tiny", "production")
                .expect("no file")
                .is_empty()
        );
        append(&path, &entry("2026-11-21T00:00:00Z", "tiny", 100.0)).expect("append");
        append(&path, &entry("2026-11-28T00:00:00Z", "other", 5.0)).expect("append");
        append(&path, &entry("2026-12-05T00:00:00Z", "tiny", 130.0)).expect("append");
        let entries = read(&path, "tiny", "production").expect("read");
        assert_eq!(entries.len(), 2);
        assert_eq!(earlier_values(&entries)["latency-p95"], [100.0, 130.0]);
        let charts = trend_charts(&entries[..1], &entries[1]);
        assert_eq!(charts.len(), 1);
        assert_eq!(charts[0].0, "trend-service.svg");
        assert!(charts[0].1.contains("2026-11-21") && charts[0].1.contains("latency-p95"));
    }

    #[test]
    fn a_damaged_line_is_named_and_nothing_is_rewritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("history.jsonl");
        std::fs::write(&path, "{\"time\": 1}\n").expect("write");
        let error = read(&path, "tiny", "production")
            .expect_err("damaged")
            .to_string();
        assert!(error.contains("history.jsonl:1:"), "{error}");
    }
}
