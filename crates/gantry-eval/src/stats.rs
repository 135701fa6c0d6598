//! Paired statistics for comparing a candidate's per-item scores with a baseline's.
//!
//! - Binary scores: exact McNemar test on the discordant pairs (as
//!   `statsmodels.stats.contingency_tables.mcnemar(exact=True)`).
//! - Continuous scores: paired bootstrap of the mean difference; the p-value
//!   counts resampled differences at least as far from the observed one as
//!   the observed one is from zero.
//! - Intervals: BCa bootstrap on the mean of the per-item differences (as
//!   `scipy.stats.bootstrap(method="BCa")`), seeded, so a report can be
//!   reproduced exactly.
//! - No per-item data: an unpaired z-test from the reported standard errors,
//!   labelled approximate.
//!
//! - Non-inferiority under a margin `m`: a one-sided test of "the candidate is
//!   no more than `m` worse" — Tango's score test for paired binary scores,
//!   the bootstrap for continuous and corpus ones, the z-test for aggregates
//!   — with its interval at the matching level `1 - 2α`.
//!
//! Minimum detectable effect: the change a two-sided test at `alpha` detects
//! with 80% power. Binary scores: found from the exact McNemar test's power
//! at the observed share of items that changed (none when no change can
//! reach 80%). Otherwise `(z₁₋α/₂ + z₀.₈) · sd / √n`.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use statrs::distribution::{Binomial, ContinuousCDF, Discrete, DiscreteCDF, Normal};

/// Power at which the minimum detectable effect is computed.
pub const MDE_POWER: f64 = 0.8;

/// How a comparison was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Exact McNemar test on paired binary scores; BCa interval.
    McnemarExact,
    /// Paired bootstrap test on continuous scores; BCa interval.
    PairedBootstrap,
    /// Unpaired z-test from reported standard errors (approximate: no per-item data).
    UnpairedZ,
    /// A corpus metric (BLEU, F1, MCC) recomputed on paired bootstrap
    /// resamples of the item indices; percentile interval.
    CorpusBootstrap,
}

/// The comparison of one metric: candidate minus baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Comparison {
    /// Items compared (pairs, or the smaller sample for the z-test).
    pub n: usize,
    /// Baseline mean.
    pub baseline: f64,
    /// Candidate mean.
    pub candidate: f64,
    /// `candidate - baseline`.
    pub delta: f64,
    /// Lower bound of the interval on `delta`.
    pub ci_low: f64,
    /// Upper bound of the interval on `delta`.
    pub ci_high: f64,
    /// Two-sided p-value for "no difference".
    pub p_value: f64,
    /// The interval's confidence level: the policy's, or `1 - 2α` under a
    /// margin (the two-sided interval whose bounds are one-sided tests at α).
    pub confidence: f64,
    /// Under a margin: the one-sided p-value for "the candidate is no more
    /// than the margin worse"; small when it is worse by more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_inferior: Option<f64>,
    /// Minimum detectable effect at 80% power; `None` when no change the
    /// data allows could be detected (too few items changed).
    pub mde: Option<f64>,
    /// How it was computed.
    pub method: Method,
    /// Binary only: items that passed in the baseline and fail in the candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_failures: Option<usize>,
    /// Binary only: items that failed in the baseline and pass in the candidate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_passes: Option<usize>,
}

fn standard_normal() -> Normal {
    // Mean 0, sd 1 is always a valid normal distribution.
    Normal::standard()
}

/// The standard normal quantile.
pub fn z(p: f64) -> f64 {
    standard_normal().inverse_cdf(p)
}

fn phi(x: f64) -> f64 {
    standard_normal().cdf(x)
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().sum::<f64>() / values.len() as f64
}

fn sample_sd(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
}

/// Exact two-sided McNemar p-value from the discordant counts.
pub fn mcnemar_exact(new_failures: usize, new_passes: usize) -> f64 {
    let n = new_failures + new_passes;
    if n == 0 {
        return 1.0;
    }
    let k = new_failures.min(new_passes) as u64;
    match Binomial::new(0.5, n as u64) {
        Ok(binomial) => (2.0 * binomial.cdf(k)).min(1.0),
        Err(_) => 1.0,
    }
}

/// Linear-interpolated percentile (NumPy's default) of sorted values, `q` in [0, 1].
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let fraction = position - below as f64;
    sorted[below] + (sorted[above] - sorted[below]) * fraction
}

/// Distinct values up to which resampling draws counts, not items.
const COUNTS_LIMIT: usize = 64;
/// Resamples per independently seeded chunk (parallel, thread-count independent).
const CHUNK: usize = 256;

/// Sorted bootstrap means of `diffs`: the mean of `n` items drawn with
/// replacement, `resamples` times, from a seeded stream.
///
/// When the differences take few distinct values (binary scores give -1, 0
/// and 1), a resample's mean depends only on how many times each value is
/// drawn, and those counts are multinomial: drawing them as conditional
/// binomials costs O(distinct values) per resample instead of O(n), with the
/// same distribution. Otherwise items are drawn one by one. Chunks of
/// resamples run in parallel, each on its own ChaCha stream, so the result
/// does not depend on the number of threads.
fn bootstrap_means(diffs: &[f64], resamples: usize, seed: u64) -> Vec<f64> {
    use rayon::prelude::*;
    let n = diffs.len();
    if n == 0 {
        return vec![0.0; resamples];
    }
    let mut sorted = diffs.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut values: Vec<f64> = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    for v in &sorted {
        if values.last() == Some(v) {
            if let Some(c) = counts.last_mut() {
                *c += 1;
            }
        } else {
            values.push(*v);
            counts.push(1);
        }
    }
    let by_counts = values.len() <= COUNTS_LIMIT;
    let chunks = resamples.div_ceil(CHUNK);
    let mut means: Vec<f64> = (0..chunks)
        .into_par_iter()
        .flat_map_iter(|chunk| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(chunk as u64);
            let size = CHUNK.min(resamples - chunk * CHUNK);
            let mut out = Vec::with_capacity(size);
            for _ in 0..size {
                let mut sum = 0.0;
                if by_counts {
                    let (mut draws, mut mass) = (n as u64, n as u64);
                    for (value, count) in values.iter().zip(&counts) {
                        if draws == 0 {
                            break;
                        }
                        let taken = if *count == mass {
                            draws
                        } else {
                            let p = *count as f64 / mass as f64;
                            rand_distr::Binomial::new(draws, p).map_or(0, |b| rng.sample(b))
                        };
                        sum += taken as f64 * value;
                        draws -= taken;
                        mass -= count;
                    }
                } else {
                    for _ in 0..n {
                        sum += diffs[rng.random_range(0..n)];
                    }
                }
                out.push(sum / n as f64);
            }
            out
        })
        .collect();
    means.sort_by(f64::total_cmp);
    means
}

/// BCa interval on the mean of `diffs` at `confidence`, from sorted bootstrap means.
fn bca_interval(diffs: &[f64], sorted_means: &[f64], confidence: f64) -> (f64, f64) {
    let n = diffs.len();
    let estimate = mean(diffs);
    // Bias correction: the mid-rank share of bootstrap means below the
    // estimate, ties counted half (scipy's `_percentile_of_score`). With
    // binary scores many resamples land exactly on the estimate; counting
    // them as above shifts the whole interval down a step.
    let below = sorted_means.partition_point(|m| *m < estimate);
    let at_or_below = sorted_means.partition_point(|m| *m <= estimate);
    let share = (below + at_or_below) as f64 / (2 * sorted_means.len()) as f64;
    if share <= 0.0 || share >= 1.0 || n < 2 {
        // All resamples on one side (e.g. every difference equal): fall back to percentiles.
        let alpha = (1.0 - confidence) / 2.0;
        return (
            percentile(sorted_means, alpha),
            percentile(sorted_means, 1.0 - alpha),
        );
    }
    let z0 = z(share);
    // Acceleration from the jackknife.
    let total: f64 = diffs.iter().sum();
    let jack: Vec<f64> = diffs.iter().map(|d| (total - d) / (n - 1) as f64).collect();
    let jack_mean = mean(&jack);
    let num: f64 = jack.iter().map(|j| (jack_mean - j).powi(3)).sum();
    let den: f64 = jack
        .iter()
        .map(|j| (jack_mean - j).powi(2))
        .sum::<f64>()
        .powf(1.5);
    let a = if den > 0.0 { num / (6.0 * den) } else { 0.0 };
    let alpha = (1.0 - confidence) / 2.0;
    let adjust = |zq: f64| phi(z0 + (z0 + zq) / (1.0 - a * (z0 + zq)));
    let low = adjust(z(alpha));
    let high = adjust(z(1.0 - alpha));
    (
        percentile(sorted_means, low),
        percentile(sorted_means, high),
    )
}

/// Compares a corpus metric on paired items: `baseline[i]` and
/// `candidate[i]` are the sufficient statistics of the same item, `score`
/// turns summed statistics into the metric. Resamples draw item indices
/// with replacement (the same indices for both sides) and recompute both
/// scores; the interval is the percentile interval of the differences, the
/// p-value the share of resampled differences at least as far from the
/// observed one as it is from zero.
pub fn corpus(
    baseline: &[Vec<f64>],
    candidate: &[Vec<f64>],
    score: &(dyn Fn(&[f64]) -> f64 + Sync),
    settings: Settings,
    margin: Option<Margin>,
) -> Comparison {
    use rayon::prelude::*;
    let n = baseline.len().min(candidate.len());
    let width = baseline.first().map_or(0, Vec::len);
    let sum = |rows: &[Vec<f64>], pick: &mut dyn FnMut() -> usize| {
        let mut total = vec![0.0; width];
        for _ in 0..n {
            for (slot, value) in total.iter_mut().zip(&rows[pick()]) {
                *slot += value;
            }
        }
        total
    };
    let mut identity = 0..n;
    let base_score = score(&sum(baseline, &mut || identity.next().unwrap_or(0)));
    let mut identity = 0..n;
    let cand_score = score(&sum(candidate, &mut || identity.next().unwrap_or(0)));
    let delta = cand_score - base_score;
    let resamples = settings.resamples.max(1);
    let chunks = resamples.div_ceil(CHUNK);
    let mut deltas: Vec<f64> = if n == 0 {
        vec![0.0; resamples]
    } else {
        (0..chunks)
            .into_par_iter()
            .flat_map_iter(|chunk| {
                let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
                rng.set_stream(chunk as u64);
                let size = CHUNK.min(resamples - chunk * CHUNK);
                let mut out = Vec::with_capacity(size);
                let mut indices = vec![0_usize; n];
                for _ in 0..size {
                    for index in &mut indices {
                        *index = rng.random_range(0..n);
                    }
                    let mut next = indices.iter().copied();
                    let b = score(&sum(baseline, &mut || next.next().unwrap_or(0)));
                    let mut next = indices.iter().copied();
                    let c = score(&sum(candidate, &mut || next.next().unwrap_or(0)));
                    out.push(c - b);
                }
                out
            })
            .collect()
    };
    deltas.sort_by(f64::total_cmp);
    let confidence = level(settings, margin);
    let alpha = (1.0 - confidence) / 2.0;
    let (ci_low, ci_high) = if n == 0 {
        (0.0, 0.0)
    } else {
        (percentile(&deltas, alpha), percentile(&deltas, 1.0 - alpha))
    };
    let spread = sample_sd(&deltas);
    let extreme = deltas
        .iter()
        .filter(|d| (*d - delta).abs() >= delta.abs())
        .count();
    let p_value = if spread == 0.0 {
        if delta == 0.0 { 1.0 } else { 0.0 }
    } else {
        ((1 + extreme) as f64 / (deltas.len() + 1) as f64).min(1.0)
    };
    Comparison {
        n,
        baseline: base_score,
        candidate: cand_score,
        delta,
        ci_low,
        ci_high,
        p_value,
        confidence,
        p_inferior: margin.map(|margin| bootstrap_inferior(&deltas, delta, margin)),
        mde: Some((z(1.0 - settings.alpha / 2.0) + z(MDE_POWER)) * spread),
        method: Method::CorpusBootstrap,
        new_failures: None,
        new_passes: None,
    }
}

/// Settings of a paired comparison.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Two-sided significance level.
    pub alpha: f64,
    /// Interval confidence.
    pub confidence: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Seed of the resampling stream.
    pub seed: u64,
}

/// A non-inferiority question: is the candidate more than `margin` worse?
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Margin {
    /// How much worse is tolerated, in the metric's units (positive).
    pub margin: f64,
    /// Whether higher scores are better.
    pub higher_is_better: bool,
}

impl Margin {
    /// `delta` (candidate minus baseline) in the better direction.
    fn better(self, delta: f64) -> f64 {
        if self.higher_is_better { delta } else { -delta }
    }
}

/// The interval level and, under a margin, the bootstrap's one-sided
/// p-value for "no more than the margin worse", from sorted resampled
/// changes: the share at or below `2·δ̂ + m` in the better direction (the
/// resampling distribution moved to the null's boundary, `-m`).
fn bootstrap_inferior(sorted: &[f64], delta: f64, margin: Margin) -> f64 {
    let observed = margin.better(delta);
    let threshold = 2.0 * observed + margin.margin;
    let at_or_below = sorted
        .iter()
        .filter(|resampled| margin.better(**resampled) <= threshold)
        .count();
    ((1 + at_or_below) as f64 / (sorted.len() + 1) as f64).min(1.0)
}

/// The confidence of the interval a row shows: the policy's without a
/// margin, `1 - 2α` with one.
fn level(settings: Settings, margin: Option<Margin>) -> f64 {
    match margin {
        Some(_) => 1.0 - 2.0 * settings.alpha,
        None => settings.confidence,
    }
}

/// Compares paired scores (`baseline[i]` and `candidate[i]` are the same item).
/// Binary when every score is 0 or 1. With a `margin`, also the one-sided
/// non-inferiority p-value, and the interval at `1 - 2α`.
pub fn paired(
    baseline: &[f64],
    candidate: &[f64],
    settings: Settings,
    margin: Option<Margin>,
) -> Comparison {
    let n = baseline.len().min(candidate.len());
    let (baseline, candidate) = (&baseline[..n], &candidate[..n]);
    let diffs: Vec<f64> = candidate.iter().zip(baseline).map(|(c, b)| c - b).collect();
    let binary = baseline
        .iter()
        .chain(candidate)
        .all(|v| *v == 0.0 || *v == 1.0);
    let delta = mean(&diffs);
    let confidence = level(settings, margin);
    let sorted = bootstrap_means(&diffs, settings.resamples.max(1), settings.seed);
    let failures = diffs.iter().filter(|d| **d < 0.0).count();
    let passes = diffs.iter().filter(|d| **d > 0.0).count();
    let (ci_low, ci_high) = if n == 0 {
        (0.0, 0.0)
    } else if binary && margin.is_some() {
        // The interval whose bounds are the score test's: a bound below
        // the margin is the test rejecting, and the other way round.
        tango_interval(passes, failures, n, confidence)
    } else {
        bca_interval(&diffs, &sorted, confidence)
    };
    let mde = if binary {
        mcnemar_mde(n, failures + passes, settings.alpha)
    } else {
        Some(
            (z(1.0 - settings.alpha / 2.0) + z(MDE_POWER)) * sample_sd(&diffs)
                / (n.max(1) as f64).sqrt(),
        )
    };
    let p_inferior = margin.map(|margin| {
        if binary {
            // In the better direction, "passes" are the items that got better.
            let (better, worse) = if margin.higher_is_better {
                (passes, failures)
            } else {
                (failures, passes)
            };
            tango_inferior(better, worse, n, margin.margin)
        } else {
            bootstrap_inferior(&sorted, delta, margin)
        }
    });
    let (p_value, method, new_failures, new_passes) = if binary {
        (
            mcnemar_exact(failures, passes),
            Method::McnemarExact,
            Some(failures),
            Some(passes),
        )
    } else {
        let extreme = sorted
            .iter()
            .filter(|m| (*m - delta).abs() >= delta.abs())
            .count();
        let p = if diffs.iter().all(|d| *d == diffs[0]) {
            if delta == 0.0 { 1.0 } else { 0.0 }
        } else {
            (1 + extreme) as f64 / (sorted.len() + 1) as f64
        };
        (p.min(1.0), Method::PairedBootstrap, None, None)
    };
    Comparison {
        n,
        baseline: mean(baseline),
        candidate: mean(candidate),
        delta,
        ci_low,
        ci_high,
        p_value,
        confidence,
        p_inferior,
        mde,
        method,
        new_failures,
        new_passes,
    }
}

/// Tango's score statistic for paired binary data (Statistics in
/// Medicine 17, 1998): `better` items went from fail to pass, `worse` from
/// pass to fail, of `n`; the null is a change (in the better direction) of
/// `delta0`. Negative when the observed change is below `delta0`.
fn tango_statistic(better: usize, worse: usize, n: usize, delta0: f64) -> f64 {
    let (b, w, n) = (better as f64, worse as f64, n as f64);
    // The restricted maximum-likelihood estimate of P(worse) under the null.
    let a = 2.0 * n;
    let linear = -b - w + (2.0 * n - b + w) * delta0;
    let constant = -w * delta0 * (1.0 - delta0);
    let discriminant = (linear * linear - 4.0 * a * constant).max(0.0);
    let worse_restricted = (discriminant.sqrt() - linear) / (2.0 * a);
    let variance = n * (2.0 * worse_restricted + delta0 * (1.0 - delta0));
    let numerator = b - w - n * delta0;
    if variance > 0.0 {
        numerator / variance.sqrt()
    } else if numerator == 0.0 {
        0.0
    } else {
        numerator.signum() * f64::INFINITY
    }
}

/// The one-sided p-value of Tango's test for "no more than `margin` worse":
/// small when the change is below `-margin` by more than chance explains.
pub fn tango_inferior(better: usize, worse: usize, n: usize, margin: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    phi(tango_statistic(better, worse, n, -margin))
}

/// Tango's score interval at `confidence` on the change (candidate minus
/// baseline, with `passes` items from fail to pass and `failures` from pass
/// to fail): the changes the two-sided score test does not reject.
pub fn tango_interval(passes: usize, failures: usize, n: usize, confidence: f64) -> (f64, f64) {
    let critical = z(1.0 - (1.0 - confidence) / 2.0);
    // The statistic falls as delta0 rises: bisect for T = critical and T = -critical.
    let solve = |target: f64| {
        let (mut low, mut high) = (-1.0 + 1e-12, 1.0 - 1e-12);
        for _ in 0..200 {
            let middle = (low + high) / 2.0;
            if tango_statistic(passes, failures, n, middle) > target {
                low = middle;
            } else {
                high = middle;
            }
        }
        (low + high) / 2.0
    };
    let estimate = (passes as f64 - failures as f64) / n.max(1) as f64;
    let lower = if estimate <= -1.0 {
        -1.0
    } else {
        solve(critical)
    };
    let upper = if estimate >= 1.0 {
        1.0
    } else {
        solve(-critical)
    };
    (lower, upper)
}

/// The smallest change in the pass rate that the two-sided exact McNemar
/// test at `alpha` detects with 80% power, on `n` items of which a share
/// `changed / n` changed between the runs (the discordance the test's power
/// rests on). `None` when even every changed item moving one way would not
/// reach 80%: no change the data allows is detectable.
pub fn mcnemar_mde(n: usize, changed: usize, alpha: f64) -> Option<f64> {
    if n == 0 || changed == 0 {
        return None;
    }
    let share = changed as f64 / n as f64;
    let discordant = Binomial::new(share, n as u64).ok()?;
    // The discordant counts worth summing over: eight standard deviations.
    let spread = (n as f64 * share * (1.0 - share)).sqrt();
    let first = (n as f64 * share - 8.0 * spread - 1.0).floor().max(0.0) as u64;
    let last = ((n as f64 * share + 8.0 * spread + 1.0).ceil() as u64).min(n as u64);
    // For each count, the largest number of items moving the rarer way
    // for which the exact test rejects (none: -1).
    let critical: Vec<(u64, f64, i64)> = (first..=last)
        .map(|d| {
            let weight = discordant.pmf(d);
            let (mut low, mut high) = (-1_i64, d as i64 / 2);
            while low < high {
                let middle = (low + high + 1) / 2;
                if mcnemar_exact(middle as usize, d as usize - middle as usize) <= alpha {
                    low = middle;
                } else {
                    high = middle - 1;
                }
            }
            (d, weight, low)
        })
        .collect();
    let power = |change: f64| -> f64 {
        // Given a discordant item, the chance it moved the worse way.
        let worse = ((share + change) / (2.0 * share)).clamp(0.0, 1.0);
        critical
            .iter()
            .filter(|(d, _, k)| *d > 0 && *k >= 0)
            .map(|(d, weight, k)| {
                let Ok(moved) = Binomial::new(worse, *d) else {
                    return 0.0;
                };
                let k = *k as u64;
                // Reject when the worse way holds at most k, or at least d - k.
                let low_tail = moved.cdf(k);
                let high_tail = if d - k >= 1 {
                    1.0 - moved.cdf(d - k - 1)
                } else {
                    1.0
                };
                weight * (low_tail + high_tail).min(1.0)
            })
            .sum()
    };
    if power(share) < MDE_POWER {
        return None;
    }
    let (mut low, mut high) = (0.0, share);
    for _ in 0..60 {
        let middle = (low + high) / 2.0;
        if power(middle) >= MDE_POWER {
            high = middle;
        } else {
            low = middle;
        }
    }
    Some(high)
}

/// A reported aggregate: value, its standard error and sample size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reported {
    /// The metric's value.
    pub value: f64,
    /// Its standard error.
    pub stderr: f64,
    /// Items behind it.
    pub n: usize,
}

/// Unpaired z-test from reported standard errors (approximate).
pub fn unpaired(
    baseline: Reported,
    candidate: Reported,
    settings: Settings,
    margin: Option<Margin>,
) -> Comparison {
    let se = (baseline.stderr.powi(2) + candidate.stderr.powi(2)).sqrt();
    let delta = candidate.value - baseline.value;
    let confidence = level(settings, margin);
    let half = z(1.0 - (1.0 - confidence) / 2.0) * se;
    let p_inferior = margin.map(|margin| {
        let observed = margin.better(delta) + margin.margin;
        if se > 0.0 {
            phi(observed / se)
        } else if observed < 0.0 {
            0.0
        } else {
            1.0
        }
    });
    let p_value = if se > 0.0 {
        2.0 * (1.0 - phi((delta / se).abs()))
    } else if delta == 0.0 {
        1.0
    } else {
        0.0
    };
    Comparison {
        n: baseline.n.min(candidate.n),
        baseline: baseline.value,
        candidate: candidate.value,
        delta,
        ci_low: delta - half,
        ci_high: delta + half,
        p_value,
        confidence,
        p_inferior,
        mde: Some((z(1.0 - settings.alpha / 2.0) + z(MDE_POWER)) * se),
        method: Method::UnpairedZ,
        new_failures: None,
        new_passes: None,
    }
}

/// Holm step-down adjusted p-values, in the input order.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let k = p_values.len();
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by(|a, b| p_values[*a].total_cmp(&p_values[*b]));
    let mut adjusted = vec![1.0; k];
    let mut running: f64 = 0.0;
    for (rank, &index) in order.iter().enumerate() {
        let value = ((k - rank) as f64 * p_values[index]).min(1.0);
        running = running.max(value);
        adjusted[index] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_the_binomial() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        // 2 * P(X <= 1), X ~ Bin(10, 0.5) = 2 * 11/1024.
        assert!((mcnemar_exact(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
    }

    #[test]
    fn holm_is_monotone_and_capped() {
        let adjusted = holm(&[0.01, 0.04, 0.03, 0.5]);
        assert_eq!(adjusted, vec![0.04, 0.09, 0.09, 0.5]);
        assert_eq!(holm(&[0.6, 0.9]), vec![1.0, 1.0]);
    }

    #[test]
    fn identical_runs_have_a_zero_interval() {
        let scores = [1.0, 0.0, 1.0, 1.0];
        let c = paired(
            &scores,
            &scores,
            Settings {
                alpha: 0.05,
                confidence: 0.95,
                resamples: 100,
                seed: 1,
            },
            None,
        );
        assert_eq!(
            (c.delta, c.ci_low, c.ci_high, c.p_value),
            (0.0, 0.0, 0.0, 1.0)
        );
    }
}
