//! Drift against a reference: effect sizes between distributions, not p-values.
//!
//! At gigabyte scale every difference is statistically significant, so
//! gantry reports effect sizes with fixed thresholds, as Evidently does for
//! large references: the population stability index over the reference's
//! deciles, the Jensen–Shannon distance (base 2) over the same bins, and the
//! Wasserstein-1 distance divided by the reference's standard deviation.
//! Categorical distributions (roles) use their categories as bins.

use crate::formats::RecordFormat;
use gantry_core::Digest;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::histogram::LogHistogram;
use serde_json::Value;

/// Floor for empty bins, so PSI stays finite.
const EPSILON: f64 = 1e-4;

/// The three effect sizes for one distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DriftMeasure {
    /// Population stability index.
    pub psi: f64,
    /// Jensen–Shannon distance, 0..=1.
    pub jensen_shannon: f64,
    /// Wasserstein-1 distance over the reference's standard deviation (numeric distributions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasserstein: Option<f64>,
}

/// Compares two numeric histograms.
pub fn numeric_drift(reference: &LogHistogram, current: &LogHistogram) -> Option<DriftMeasure> {
    if reference.count == 0 || current.count == 0 {
        return None;
    }
    // Decile edges of the reference, deduplicated (discrete data can repeat them).
    let mut edges: Vec<u64> = (1..10)
        .map(|decile| reference.quantile(f64::from(decile) / 10.0))
        .collect();
    edges.dedup();
    let shares = |histogram: &LogHistogram| -> Vec<f64> {
        let mut previous = 0.0;
        let mut shares: Vec<f64> = edges
            .iter()
            .map(|&edge| {
                let cumulative = histogram.fraction_at_most(edge);
                let share = cumulative - previous;
                previous = cumulative;
                share
            })
            .collect();
        shares.push(1.0 - previous);
        shares
    };
    let (reference_shares, current_shares) = (shares(reference), shares(current));
    Some(DriftMeasure {
        psi: psi(&reference_shares, &current_shares),
        jensen_shannon: jensen_shannon(&reference_shares, &current_shares),
        wasserstein: Some(normalized_wasserstein(reference, current)),
    })
}

/// Compares two categorical distributions given as counts.
pub fn categorical_drift(
    reference: &BTreeMap<String, u64>,
    current: &BTreeMap<String, u64>,
) -> Option<DriftMeasure> {
    let reference_total: u64 = reference.values().sum();
    let current_total: u64 = current.values().sum();
    if reference_total == 0 || current_total == 0 {
        return None;
    }
    let categories: std::collections::BTreeSet<&String> =
        reference.keys().chain(current.keys()).collect();
    let share = |counts: &BTreeMap<String, u64>, total: u64, category: &String| {
        counts.get(category).copied().unwrap_or(0) as f64 / total as f64
    };
    let reference_shares: Vec<f64> = categories
        .iter()
        .map(|category| share(reference, reference_total, category))
        .collect();
    let current_shares: Vec<f64> = categories
        .iter()
        .map(|category| share(current, current_total, category))
        .collect();
    Some(DriftMeasure {
        psi: psi(&reference_shares, &current_shares),
        jensen_shannon: jensen_shannon(&reference_shares, &current_shares),
        wasserstein: None,
    })
}

fn psi(reference: &[f64], current: &[f64]) -> f64 {
    reference
        .iter()
        .zip(current)
        .map(|(&expected, &actual)| {
            let (expected, actual) = (expected.max(EPSILON), actual.max(EPSILON));
            (actual - expected) * (actual / expected).ln()
        })
        .sum()
}

fn jensen_shannon(reference: &[f64], current: &[f64]) -> f64 {
    let kl = |p: &[f64], q: &[f64]| -> f64 {
        p.iter()
            .zip(q)
            .filter(|(p, _)| **p > 0.0)
            .map(|(p, q)| p * (p / q).log2())
            .sum()
    };
    let middle: Vec<f64> = reference
        .iter()
        .zip(current)
        .map(|(p, q)| (p + q) / 2.0)
        .collect();
    (0.5 * kl(reference, &middle) + 0.5 * kl(current, &middle))
        .max(0.0)
        .sqrt()
}

fn normalized_wasserstein(reference: &LogHistogram, current: &LogHistogram) -> f64 {
    // W1 = integral of |F_reference - F_current| over the merged support.
    let mut values: Vec<u64> = reference
        .points()
        .iter()
        .chain(current.points().iter())
        .map(|(value, _)| *value)
        .collect();
    values.sort_unstable();
    values.dedup();
    let mut distance = 0.0;
    for pair in values.windows(2) {
        let gap = (pair[1] - pair[0]) as f64;
        distance +=
            gap * (reference.fraction_at_most(pair[0]) - current.fraction_at_most(pair[0])).abs();
    }
    let scale = reference.std_dev();
    if scale > 0.0 {
        distance / scale
    } else if distance > 0.0 {
        f64::INFINITY
    } else {
        0.0
    }
}

/// The reference summary: read from a `summary.json`, or computed from data
/// paths by `summarize_data` (the engine, which this module does not know).
pub(crate) fn load_reference(
    reference: &str,
    tokenizer: &str,
    summarize_data: impl FnOnce(&str) -> Result<Summary>,
) -> Result<(String, Summary)> {
    let path = std::path::Path::new(reference);
    let error = |reason: String| Error::Reference {
        path: path.to_owned(),
        reason,
    };
    if path.is_file()
        && path
            .extension()
            .is_some_and(|extension| extension == "json")
    {
        let text = std::fs::read_to_string(path).map_err(|source| error(source.to_string()))?;
        let value: Value =
            serde_json::from_str(&text).map_err(|source| error(format!("not JSON: {source}")))?;
        if value.get("kind").and_then(Value::as_str) == Some("gantry-data-summary") {
            let summary: Summary = serde_json::from_value(value)
                .map_err(|source| error(format!("not a gantry data summary: {source}")))?;
            if summary.tokenizer != tokenizer {
                return Err(error(format!(
                    "its token counts use {}, not {tokenizer}; pass --tokenizer {} to compare like with like",
                    summary.tokenizer, summary.tokenizer
                )));
            }
            return nonempty_reference(reference, summary, &error);
        }
    }
    let summary = summarize_data(reference).map_err(|source| error(source.to_string()))?;
    nonempty_reference(reference, summary, &error)
}

/// A reference without records would give every drift measure "0.0, pass":
/// drift against nothing is refused, not passed.
pub(crate) fn nonempty_reference(
    reference: &str,
    summary: Summary,
    error: &dyn Fn(String) -> Error,
) -> Result<(String, Summary)> {
    if summary.records == 0 || summary.characters.count == 0 {
        return Err(error(
            "it holds no records, so there is nothing to measure drift against; point --reference at last week's summary.json or data"
                .to_owned(),
        ));
    }
    Ok((reference.to_owned(), summary))
}

/// Version of `summary.json`.
pub const SUMMARY_VERSION: u32 = 1;

/// `summary.json`: the distributions of a dataset, mergeable and small, so
/// that a later run can measure drift without re-reading this data.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Always `gantry-data-summary`.
    pub kind: String,
    /// Format version (1).
    pub version: u32,
    /// The dataset digest from the data lock.
    #[schemars(with = "String")]
    pub dataset_digest: Digest,
    /// Records read.
    pub records: u64,
    /// The record format.
    #[schemars(with = "Option<String>")]
    pub format: Option<RecordFormat>,
    /// The tokenizer behind `tokens`.
    pub tokenizer: String,
    /// Characters per record.
    pub characters: crate::histogram::LogHistogram,
    /// Tokens per record.
    pub tokens: crate::histogram::LogHistogram,
    /// Turns per record.
    pub turns: crate::histogram::LogHistogram,
    /// Messages by role.
    pub roles: std::collections::BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values: impl Iterator<Item = u64>) -> LogHistogram {
        let mut histogram = LogHistogram::default();
        values.for_each(|value| histogram.add(value));
        histogram
    }

    #[test]
    fn same_distribution_does_not_drift_and_a_shift_does() {
        let reference = histogram((0..10_000).map(|i| 50 + (i * 37) % 200));
        let same = histogram((0..5_000).map(|i| 50 + (i * 53) % 200));
        let shifted = histogram((0..5_000).map(|i| 150 + (i * 53) % 200));
        let calm = numeric_drift(&reference, &same).expect("drift");
        assert!(
            calm.psi < 0.02 && calm.jensen_shannon < 0.05 && calm.wasserstein.unwrap_or(1.0) < 0.05,
            "{calm:?}"
        );
        let moved = numeric_drift(&reference, &shifted).expect("drift");
        assert!(moved.psi > 1.0, "{moved:?}");
        assert!(moved.jensen_shannon > 0.5, "{moved:?}");
        // A shift of 100 on a uniform over 200 values (std ≈ 58) is about 1.7 standard deviations.
        let wasserstein = moved.wasserstein.unwrap_or(0.0);
        assert!((1.5..1.9).contains(&wasserstein), "{wasserstein}");
    }

    #[test]
    fn categories_drift_by_share() {
        let counts = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(name, count)| ((*name).to_owned(), *count))
                .collect::<BTreeMap<_, _>>()
        };
        let reference = counts(&[("user", 500), ("assistant", 500)]);
        let calm = categorical_drift(&reference, &counts(&[("user", 50), ("assistant", 50)]))
            .expect("drift");
        assert!(calm.psi.abs() < 1e-9 && calm.jensen_shannon < 1e-6);
        let moved = categorical_drift(
            &reference,
            &counts(&[("user", 50), ("assistant", 30), ("tool", 20)]),
        )
        .expect("drift");
        assert!(moved.psi > 0.25, "{moved:?}");
    }
}
