//! The decision: comparability first, then one row per gated metric, then a verdict.
//!
//! Per row, with `d` the change in the better direction and `[lo, hi]` its
//! interval: **pass** when `lo ≥ -margin` (non-inferior); **fail** when
//! `hi < -margin` and, with no margin, the Holm-adjusted p-value is below
//! alpha; **inconclusive** otherwise — the interval straddles the margin and
//! the data cannot say. A floor, a cap on new failures, or too few items can
//! fail or hold a row regardless.

use std::collections::BTreeMap;

use gantry_core::Verdict;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::policy::{InconclusiveIs, Policy, Severity, higher_is_better};
use crate::results::{MetricData, MetricKey, ResultSet, Source};
use crate::stats::{self, Comparison, Reported, Settings};

/// Version of `gate.json`.
pub const GATE_SCHEMA_VERSION: u32 = 2;
/// Item ids listed per row for pass→fail flips.
const LISTED_FLIPS: usize = 20;

/// A row's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RowVerdict {
    /// Non-inferior (or better).
    Pass,
    /// A regression the data supports, a floor missed, or too many new failures.
    Fail,
    /// The interval straddles the margin: not enough evidence either way.
    Inconclusive,
}

/// One gated metric.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RuleRow {
    /// The rule that gated it.
    pub rule: String,
    /// Task.
    pub task: String,
    /// Metric (lm-eval: `metric,filter`).
    pub metric: String,
    /// What failing does.
    pub severity: Severity,
    /// Whether higher is better.
    pub higher_is_better: bool,
    /// The comparison (candidate minus baseline, in the metric's own units).
    #[serde(flatten)]
    pub comparison: Comparison,
    /// p-value after Holm correction across blocking rules.
    pub p_adjusted: f64,
    /// Baseline items with no candidate score (counted as the worst score).
    pub missing: usize,
    /// Ids of items that went from pass to fail (the first few).
    pub new_failure_ids: Vec<String>,
    /// The rule's floor, if any.
    pub floor: Option<f64>,
    /// The rule's margin.
    pub margin: f64,
    /// The rule's cap on items going from pass to fail.
    pub max_new_failures: Option<usize>,
    /// The outcome.
    pub verdict: RowVerdict,
    /// Why, in words.
    pub reasons: Vec<String>,
}

/// One side of the comparison.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunInfo {
    /// The file or directory read.
    pub path: String,
    /// The producer.
    pub source: Source,
    /// The model, as the producer recorded it.
    pub model: Option<String>,
    /// The registered version the results belong to, for registry baselines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered: Option<RegisteredVersion>,
}

/// A registered model version whose evaluation a gate used.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RegisteredVersion {
    /// The reference given, e.g. `registry:support-bot@production`.
    pub reference: String,
    /// The registry.
    pub registry: String,
    /// The model.
    pub name: String,
    /// The version.
    pub version: String,
    /// The manifest digest.
    pub digest: String,
    /// When it was registered.
    pub created: String,
    /// Days between registration and the gate.
    pub age_days: Option<f64>,
    /// The commit the version was built from.
    pub commit: Option<String>,
}

/// `gate.json`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GateReport {
    /// Version of this format.
    pub schema_version: u32,
    /// The overall verdict.
    pub verdict: Verdict,
    /// The policy applied (the default one when no file was given).
    pub policy: Policy,
    /// Where the policy came from: a path, or `default`.
    pub policy_source: String,
    /// The baseline.
    pub baseline: RunInfo,
    /// The candidate.
    pub candidate: RunInfo,
    /// One row per gated metric.
    pub rows: Vec<RuleRow>,
    /// Metrics no rule selects.
    pub not_gated: Vec<String>,
    /// Rules that selected no metric (a typo in a selector gates nothing).
    pub unused_rules: Vec<String>,
    /// Rows that failed.
    pub regressions: usize,
    /// Rows with a significant improvement.
    pub improvements: usize,
    /// Rows that were inconclusive.
    pub inconclusive: usize,
}

fn comparability(baseline: &ResultSet, candidate: &ResultSet) -> Vec<String> {
    let mut differences = Vec::new();
    for (task, b) in &baseline.tasks {
        let Some(c) = candidate.tasks.get(task) else {
            continue;
        };
        let mut differ = |what: &str, left: &Option<String>, right: &Option<String>| {
            if let (Some(l), Some(r)) = (left, right)
                && l != r
            {
                differences.push(format!(
                    "task {task}: {what} differs (baseline {l}, candidate {r})"
                ));
            }
        };
        differ("task hash", &b.hash, &c.hash);
        differ("task version", &b.version, &c.version);
        differ("n-shot", &b.n_shot, &c.n_shot);
        for (side, facts) in [("baseline", b), ("candidate", c)] {
            if let Some((original, effective)) = facts.samples
                && effective < original
            {
                differences.push(format!(
                        "task {task}: the {side} ran with --limit ({effective} of {original} samples); compare full runs"
                    ));
            }
        }
    }
    if let (Some(l), Some(r)) = (&baseline.chat_template, &candidate.chat_template)
        && l != r
    {
        differences.push(format!(
            "chat template differs (baseline {l}, candidate {r})"
        ));
    }
    if let (Some(l), Some(r)) = (&baseline.judge, &candidate.judge)
        && l != r
    {
        differences.push(format!(
            "judge model differs (baseline {l}, candidate {r}): scores graded by different models do not compare"
        ));
    }
    for (key, b) in &baseline.metrics {
        let Some(c) = candidate.metrics.get(key) else {
            continue;
        };
        let mut mismatched = Vec::new();
        for (id, item) in b.iter() {
            let Some(other) = c.get(id) else {
                continue;
            };
            let differs = |l: Option<&std::sync::Arc<str>>, r: Option<&std::sync::Arc<str>>| matches!((l, r), (Some(l), Some(r)) if l != r);
            if differs(item.prompt_hash(), other.prompt_hash())
                || differs(item.doc_hash(), other.doc_hash())
            {
                mismatched.push(&**id);
            }
        }
        if !mismatched.is_empty() {
            differences.push(format!(
                "{key}: {} items were asked differently (prompt or document hash differs), first: {}",
                mismatched.len(),
                mismatched.iter().take(5).copied().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    differences
}

struct Paired {
    baseline: Vec<f64>,
    candidate: Vec<f64>,
    missing: usize,
    flips: Vec<String>,
}

fn pair(b: &MetricData, c: &MetricData, higher: bool) -> Paired {
    let observed = || b.iter().chain(c.iter()).flat_map(|(_, item)| item.values());
    // A missing item scores the worst: 0 (or 1) for pass/fail metrics, else the worst value seen.
    let binary = observed().all(|v| v == 0.0 || v == 1.0);
    let (lowest, highest) = if binary {
        (0.0, 1.0)
    } else {
        observed().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        })
    };
    let worst = if higher { lowest } else { highest };
    let mut out = Paired {
        baseline: Vec::new(),
        candidate: Vec::new(),
        missing: 0,
        flips: Vec::new(),
    };
    for (id, item) in b.iter() {
        let Some(base) = item.mean() else { continue };
        let cand = match c.get(id).and_then(|i| i.mean()) {
            Some(v) => v,
            None => {
                out.missing += 1;
                worst
            }
        };
        let passed = |v: f64| if higher { v >= 0.5 } else { v < 0.5 };
        if passed(base) && !passed(cand) {
            out.flips.push(id.to_string());
        }
        out.baseline.push(base);
        out.candidate.push(cand);
    }
    out
}

/// Corpus-metric statistics of the baseline's items and the candidate's
/// (averaged over repeats), in the baseline's order; a missing candidate
/// item gets the worst statistics.
fn pair_corpus(
    b: &MetricData,
    c: &MetricData,
    kind: crate::corpus::Corpus,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>, usize) {
    let average = |rows: &[Vec<f64>]| -> Option<Vec<f64>> {
        let first = rows.first()?;
        let mut total = vec![0.0; first.len()];
        for row in rows {
            for (slot, value) in total.iter_mut().zip(row) {
                *slot += value;
            }
        }
        Some(total.into_iter().map(|v| v / rows.len() as f64).collect())
    };
    let (mut base, mut cand, mut missing) = (Vec::new(), Vec::new(), 0);
    for (id, item) in b.iter() {
        let Some(base_stats) = average(item.stats()) else {
            continue;
        };
        let cand_stats = c
            .get(id)
            .and_then(|i| average(i.stats()))
            .unwrap_or_else(|| {
                missing += 1;
                kind.worst(&base_stats)
            });
        base.push(base_stats);
        cand.push(cand_stats);
    }
    (base, cand, missing)
}

/// Compares `candidate` with `baseline` under `policy`.
pub fn evaluate_gate(
    baseline: &ResultSet,
    candidate: &ResultSet,
    policy: &Policy,
    policy_source: &str,
) -> Result<GateReport> {
    let mut differences = comparability(baseline, candidate);
    if !differences.is_empty() {
        name_the_formats(baseline, candidate, &mut differences);
        return Err(Error::NotComparable { differences });
    }
    check_scores(baseline, policy)?;
    check_scores(candidate, policy)?;
    let d = &policy.defaults;
    let settings = Settings {
        alpha: d.alpha,
        confidence: d.confidence,
        resamples: d.resamples,
        seed: d.seed,
    };
    let mut rows = Vec::new();
    let mut not_gated = Vec::new();
    let mut missing_metrics = Vec::new();
    let mut unpairable: Vec<String> = Vec::new();
    let mut selected = vec![false; policy.rules.len()];
    for (key, b) in &baseline.metrics {
        let Some((rule_index, rule)) = policy.rule_for(baseline.source, key) else {
            not_gated.push(key.to_string());
            continue;
        };
        selected[rule_index] = true;
        let higher = higher_is_better(rule.direction, b.higher_is_better, &key.metric);
        let Some(c) = candidate.metrics.get(key) else {
            missing_metrics.push(key.clone());
            continue;
        };
        let mut reasons = Vec::new();
        let margin = (rule.margin > 0.0).then_some(stats::Margin {
            margin: rule.margin,
            higher_is_better: higher,
        });
        let corpus = b.corpus.filter(|kind| c.corpus == Some(*kind));
        let (comparison, missing, flips) = if let Some(kind) = corpus {
            let (base, cand, missing) = pair_corpus(b, c, kind);
            if missing > 0 {
                reasons.push(format!(
                    "{missing} baseline items have no candidate output (counted as the worst)"
                ));
            }
            let mut seed_settings = settings;
            seed_settings.seed = settings.seed ^ fnv(&key.to_string());
            (
                stats::corpus(
                    &base,
                    &cand,
                    &|stats: &[f64]| kind.score(stats),
                    seed_settings,
                    margin,
                ),
                missing,
                Vec::new(),
            )
        } else if !b.is_empty() && c.is_empty() {
            // Comparing per-item scores with none would compare with zeros.
            unpairable.push(format!(
                "{key}: the baseline has per-item scores but the candidate has none ({}); \
                 both runs need them to be paired (lm-eval: --log_samples)",
                match c.aggregate {
                    Some(_) => "only an aggregate",
                    None => "not even an aggregate",
                }
            ));
            continue;
        } else if !b.is_empty() {
            let paired = pair(b, c, higher);
            if paired.missing == paired.baseline.len() {
                unpairable.push(format!(
                    "{key}: no baseline item is in the candidate (the runs share no item ids; baseline ids such as `{}`, candidate ids such as `{}`)",
                    b.ids().next().map_or("", |id| &**id),
                    c.ids().next().map_or("", |id| &**id),
                ));
                continue;
            }
            if paired.missing > 0 {
                reasons.push(format!(
                    "{} baseline items have no candidate score (counted as the worst score)",
                    paired.missing
                ));
            }
            let mut seed_settings = settings;
            // A per-metric stream: rows do not depend on which other metrics exist.
            seed_settings.seed = settings.seed ^ fnv(&key.to_string());
            (
                stats::paired(&paired.baseline, &paired.candidate, seed_settings, margin),
                paired.missing,
                paired.flips,
            )
        } else {
            match (b.aggregate, c.aggregate) {
                (Some(ba), Some(ca)) if ba.stderr.is_some() && ca.stderr.is_some() => {
                    reasons.push("approximate: no per-item data, unpaired z-test from the reported standard errors".into());
                    let reported = |a: crate::results::Aggregate| Reported {
                        value: a.value,
                        stderr: a.stderr.unwrap_or(0.0),
                        n: a.n.unwrap_or(0),
                    };
                    (
                        stats::unpaired(reported(ba), reported(ca), settings, margin),
                        0,
                        Vec::new(),
                    )
                }
                _ => {
                    not_gated.push(format!("{key} (no per-item scores and no standard errors)"));
                    continue;
                }
            }
        };
        rows.push(RuleRow {
            rule: rule.label(),
            task: key.task.clone(),
            metric: key.metric.clone(),
            severity: rule.severity,
            higher_is_better: higher,
            comparison,
            p_adjusted: 1.0,
            missing,
            new_failure_ids: flips.into_iter().take(LISTED_FLIPS).collect(),
            floor: rule.floor,
            margin: rule.margin,
            max_new_failures: rule.max_new_failures,
            verdict: RowVerdict::Pass,
            reasons,
        });
    }
    if !missing_metrics.is_empty() || !unpairable.is_empty() {
        let mut differences: Vec<String> = missing_metrics
            .iter()
            .map(|k| {
                format!(
                    "{k}: in the baseline but not in the candidate ({})",
                    candidate.path.display()
                )
            })
            .collect();
        differences.extend(unpairable);
        name_the_formats(baseline, candidate, &mut differences);
        return Err(Error::NotComparable { differences });
    }
    if rows.is_empty() {
        return Err(Error::NotComparable {
            differences: vec![
                "no metric is both gated by the policy and scored in both runs".into(),
            ],
        });
    }

    // Holm across blocking rows, on the p-value a fail rests on: the
    // one-sided non-inferiority test under a margin, the two-sided test of
    // no change without one.
    let deciding = |row: &RuleRow| row.comparison.p_inferior.unwrap_or(row.comparison.p_value);
    let blocking: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].severity == Severity::Block)
        .collect();
    let adjusted = stats::holm(
        &blocking
            .iter()
            .map(|&i| deciding(&rows[i]))
            .collect::<Vec<_>>(),
    );
    for (i, row) in rows.iter_mut().enumerate() {
        row.p_adjusted = blocking
            .iter()
            .position(|&b| b == i)
            .map_or(deciding(row), |k| adjusted[k]);
    }

    for row in &mut rows {
        let c = &row.comparison;
        let (lo, hi) = if row.higher_is_better {
            (c.ci_low, c.ci_high)
        } else {
            (-c.ci_high, -c.ci_low)
        };
        let bound = if row.margin > 0.0 {
            format!("the margin -{}", row.margin)
        } else {
            "zero".to_owned()
        };
        let level = 100.0 * c.confidence;
        let test = if row.margin > 0.0 {
            "the one-sided test of \"no more than the margin worse\""
        } else {
            "the test of no change"
        };
        // A fail rests on a test, corrected for the other blocking rows, and
        // on the interval at the matching level agreeing with it.
        let mut verdict = if lo >= -row.margin {
            RowVerdict::Pass
        } else if hi < -row.margin && row.p_adjusted < d.alpha {
            row.reasons.push(format!(
                "regression: the {level:.0}% interval on the change, [{lo:+.4}, {hi:+.4}], lies below {bound}, \
                 and {test} rejects it (p = {:.4} after Holm correction, alpha {})",
                row.p_adjusted, d.alpha
            ));
            RowVerdict::Fail
        } else if hi < -row.margin {
            row.reasons.push(format!(
                "inconclusive: the {level:.0}% interval on the change, [{lo:+.4}, {hi:+.4}], lies below {bound}, but {test} \
                 is not significant after Holm correction (p = {:.4}, alpha {})",
                row.p_adjusted, d.alpha
            ));
            RowVerdict::Inconclusive
        } else {
            row.reasons.push(format!(
                "inconclusive: the {level:.0}% interval on the change, [{lo:+.4}, {hi:+.4}], straddles {bound}"
            ));
            RowVerdict::Inconclusive
        };
        if c.n < d.min_items && verdict != RowVerdict::Fail {
            row.reasons
                .push(format!("only {} items (min_items is {})", c.n, d.min_items));
            verdict = RowVerdict::Inconclusive;
        }
        if let Some(floor) = row.floor {
            let below = if row.higher_is_better {
                c.candidate < floor
            } else {
                c.candidate > floor
            };
            if below {
                row.reasons.push(format!(
                    "candidate {:.4} misses the floor {floor}",
                    c.candidate
                ));
                verdict = RowVerdict::Fail;
            }
        }
        if let (Some(max), Some(new_failures)) = (row.max_new_failures, c.new_failures)
            && new_failures > max
        {
            row.reasons.push(format!(
                "{new_failures} items went from pass to fail (at most {max} allowed)"
            ));
            verdict = RowVerdict::Fail;
        }
        row.verdict = verdict;
    }

    // The worst row decides (Pass < Warn < Fail).
    let verdict = rows
        .iter()
        .map(|row| match (row.severity, row.verdict) {
            (Severity::Block, RowVerdict::Fail) => Verdict::Fail,
            (Severity::Block, RowVerdict::Inconclusive)
                if d.inconclusive == InconclusiveIs::Block =>
            {
                Verdict::Fail
            }
            (Severity::Block | Severity::Warn, RowVerdict::Fail | RowVerdict::Inconclusive) => {
                Verdict::Warn
            }
            _ => Verdict::Pass,
        })
        .max()
        .unwrap_or(Verdict::Pass);
    let improvements = rows
        .iter()
        .filter(|r| {
            let lo = if r.higher_is_better {
                r.comparison.ci_low
            } else {
                -r.comparison.ci_high
            };
            // Above zero at the row's level, and the two-sided test agrees.
            lo > 0.0 && r.comparison.p_value < d.alpha
        })
        .count();
    let unused_rules = policy
        .rules
        .iter()
        .zip(&selected)
        .filter(|(_, selected)| !**selected)
        .map(|(rule, _)| rule.label())
        .collect();
    let info = |set: &ResultSet| RunInfo {
        path: set.path.display().to_string(),
        source: set.source,
        model: set.model.clone(),
        registered: None,
    };
    Ok(GateReport {
        schema_version: GATE_SCHEMA_VERSION,
        verdict,
        policy: policy.clone(),
        policy_source: policy_source.to_owned(),
        baseline: info(baseline),
        candidate: info(candidate),
        regressions: rows
            .iter()
            .filter(|r| r.verdict == RowVerdict::Fail)
            .count(),
        inconclusive: rows
            .iter()
            .filter(|r| r.verdict == RowVerdict::Inconclusive)
            .count(),
        improvements,
        rows,
        not_gated,
        unused_rules,
    })
}

/// When the two runs come from different producers, the first difference
/// says which: a mismatch between formats reads as one.
fn name_the_formats(baseline: &ResultSet, candidate: &ResultSet, differences: &mut Vec<String>) {
    if baseline.source != candidate.source {
        differences.insert(
            0,
            format!(
                "the baseline is {} results ({}) and the candidate is {} results ({})",
                baseline.source.as_str(),
                baseline.path.display(),
                candidate.source.as_str(),
                candidate.path.display()
            ),
        );
    }
}

/// Refuses scores no comparison can use: not finite (a `"nan"` string
/// score), or so large that a sum over the items (a mean, a resample, a
/// difference) overflows — it would come out infinite and every interval
/// with it. Names the item.
fn check_scores(set: &ResultSet, policy: &Policy) -> Result<()> {
    for (key, data) in &set.metrics {
        if policy.rule_for(set.source, key).is_none() {
            continue;
        }
        let n = data.len().max(1) as f64;
        // n items and their differences: every partial sum stays finite.
        let limit = f64::MAX / (4.0 * n);
        for (id, item) in data.iter() {
            for value in item.values().chain(item.stats().iter().flatten().copied()) {
                let problem = if !value.is_finite() {
                    format!("scores {value}, not a number")
                } else if value.abs() > limit {
                    format!(
                        "scores {value:e}, too large to sum with the other {} items (a sum overflows; scores must stay within ±{limit:.3e})",
                        data.len().saturating_sub(1)
                    )
                } else {
                    continue;
                };
                return Err(Error::Input {
                    path: set.path.clone(),
                    line: None,
                    message: format!("item `{id}` of {key} {problem}"),
                });
            }
        }
        if let Some(aggregate) = data.aggregate
            && !(aggregate.value.is_finite() && aggregate.stderr.is_none_or(f64::is_finite))
        {
            return Err(Error::Input {
                path: set.path.clone(),
                line: None,
                message: format!(
                    "{key}: the reported value {} ± {:?} is not a number",
                    aggregate.value, aggregate.stderr
                ),
            });
        }
    }
    Ok(())
}

/// A stable 64-bit hash of a name (FNV-1a), for per-metric resampling streams.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether two result sets asked the same items (by task and id, over every
/// metric): a variant gated against its parent must be, not merely overlap.
/// `Err` says how many items each lacks, with the first few.
pub fn same_items(baseline: &ResultSet, candidate: &ResultSet) -> std::result::Result<(), String> {
    let items = |set: &ResultSet| -> std::collections::BTreeSet<(String, String)> {
        set.metrics
            .iter()
            .flat_map(|(key, data)| data.ids().map(|id| (key.task.clone(), id.to_string())))
            .collect()
    };
    let (ours, theirs) = (items(baseline), items(candidate));
    let missing: Vec<&(String, String)> = ours.difference(&theirs).collect();
    let extra: Vec<&(String, String)> = theirs.difference(&ours).collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let first = |items: &[&(String, String)]| {
        items
            .iter()
            .take(3)
            .map(|(task, id)| format!("{task}/{id}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(format!(
        "{} of the baseline's items are not in the candidate ({}) and {} of the candidate's are not in the baseline ({})",
        missing.len(),
        first(&missing),
        extra.len(),
        first(&extra)
    ))
}

/// Per-task means of a result set, for summaries.
pub fn means(set: &ResultSet) -> BTreeMap<MetricKey, f64> {
    set.metrics
        .iter()
        .filter_map(|(k, m)| {
            let values: Vec<f64> = m.iter().filter_map(|(_, i)| i.mean()).collect();
            let mean = if values.is_empty() {
                m.aggregate.map(|a| a.value)?
            } else {
                values.iter().sum::<f64>() / values.len() as f64
            };
            Some((k.clone(), mean))
        })
        .collect()
}
