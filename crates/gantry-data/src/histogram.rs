//! Log-bucket histograms: mergeable exactly, quantiles within 1% relative error.

use std::collections::BTreeMap;

/// Bucket growth factor: each bucket is 2% wider than the last, so a value's
/// bucket bound is within 1% of it (DDSketch-style).
const GAMMA: f64 = 1.02;

/// A histogram of non-negative integers with logarithmic buckets. Merging
/// adds counts, so shard summaries merge to exactly the unsharded histogram.
#[derive(
    Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct LogHistogram {
    /// Count of exact zeros.
    pub zeros: u64,
    /// Counts by bucket index (`ceil(log_gamma(value))`).
    pub buckets: BTreeMap<i32, u64>,
    /// Number of values.
    pub count: u64,
    /// Sum of values.
    pub sum: u64,
    /// Smallest value.
    pub min: u64,
    /// Largest value.
    pub max: u64,
}

impl LogHistogram {
    /// Adds one value.
    pub fn add(&mut self, value: u64) {
        if self.count == 0 || value < self.min {
            self.min = value;
        }
        self.max = self.max.max(value);
        self.count += 1;
        self.sum += value;
        if value == 0 {
            self.zeros += 1;
        } else {
            *self.buckets.entry(bucket_of(value)).or_insert(0) += 1;
        }
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &LogHistogram) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 || other.min < self.min {
            self.min = other.min;
        }
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
        self.zeros += other.zeros;
        for (bucket, count) in &other.buckets {
            *self.buckets.entry(*bucket).or_insert(0) += count;
        }
    }

    /// The value at quantile `q` (0..=1), within 1% relative error.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * (self.count - 1) as f64).round() as u64) + 1;
        if rank <= self.zeros {
            return 0;
        }
        let mut seen = self.zeros;
        for (bucket, count) in &self.buckets {
            seen += count;
            if seen >= rank {
                return representative(*bucket).clamp(self.min, self.max);
            }
        }
        self.max
    }

    /// Fraction of values less than or equal to `value` (by bucket representative).
    pub fn fraction_at_most(&self, value: u64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let mut below = self.zeros;
        for (bucket, count) in &self.buckets {
            if representative(*bucket) > value {
                break;
            }
            below += count;
        }
        below as f64 / self.count as f64
    }

    /// (representative value, count) of every non-empty bucket, ascending.
    pub fn points(&self) -> Vec<(u64, u64)> {
        let mut points = Vec::with_capacity(self.buckets.len() + 1);
        if self.zeros > 0 {
            points.push((0, self.zeros));
        }
        points.extend(
            self.buckets
                .iter()
                .map(|(bucket, count)| (representative(*bucket), *count)),
        );
        points
    }

    /// Median absolute deviation from the median, from bucket representatives.
    pub fn mad(&self) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let median = self.quantile(0.5);
        let mut deviations: Vec<(u64, u64)> = self
            .points()
            .into_iter()
            .map(|(value, count)| (value.abs_diff(median), count))
            .collect();
        deviations.sort_unstable();
        let half = self.count.div_ceil(2);
        let mut seen = 0;
        for (deviation, count) in deviations {
            seen += count;
            if seen >= half {
                return deviation;
            }
        }
        0
    }

    /// Values greater than `threshold` (by bucket representative).
    pub fn count_above(&self, threshold: u64) -> u64 {
        self.points()
            .into_iter()
            .filter(|(value, _)| *value > threshold)
            .map(|(_, count)| count)
            .sum()
    }

    /// Standard deviation, from bucket representatives.
    pub fn std_dev(&self) -> f64 {
        if self.count < 2 {
            return 0.0;
        }
        let mean = self.mean();
        let variance: f64 = self
            .points()
            .iter()
            .map(|(value, count)| (*value as f64 - mean).powi(2) * *count as f64)
            .sum::<f64>()
            / self.count as f64;
        variance.sqrt()
    }

    /// The mean value.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }
}

/// The bucket of a value above zero (zeros are counted apart).
fn bucket_of(value: u64) -> i32 {
    /// Buckets of the commonest values (lengths, counts), worked out once.
    static SMALL: std::sync::OnceLock<Vec<i16>> = std::sync::OnceLock::new();
    const SMALL_VALUES: u64 = 1 << 14;
    if value < SMALL_VALUES {
        let table = SMALL.get_or_init(|| {
            (0..SMALL_VALUES)
                .map(|value| i16::try_from(computed_bucket(value.max(1))).unwrap_or(i16::MAX))
                .collect()
        });
        if let Some(&bucket) = usize::try_from(value)
            .ok()
            .and_then(|value| table.get(value))
        {
            return i32::from(bucket);
        }
    }
    computed_bucket(value)
}

fn computed_bucket(value: u64) -> i32 {
    ((value as f64).ln() / GAMMA.ln()).ceil() as i32
}

fn representative(bucket: i32) -> u64 {
    // The midpoint of (gamma^(b-1), gamma^b], rounded.
    let upper = GAMMA.powi(bucket);
    (upper * 2.0 / (1.0 + GAMMA)).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_table_is_the_formula() {
        for value in (1..20_000).chain([1 << 20, u64::MAX]) {
            assert_eq!(bucket_of(value), computed_bucket(value), "{value}");
        }
    }

    #[test]
    fn quantiles_are_within_one_percent() {
        let mut histogram = LogHistogram::default();
        for value in 1..=10_000_u64 {
            histogram.add(value);
        }
        for (q, exact) in [(0.5, 5_000.0), (0.9, 9_000.0), (0.999, 9_990.0)] {
            let estimate = histogram.quantile(q) as f64;
            assert!(
                (estimate - exact).abs() / exact < 0.011,
                "q{q}: {estimate} vs {exact}"
            );
        }
        assert_eq!(histogram.quantile(0.0), 1);
        assert_eq!(histogram.quantile(1.0), 10_000);
    }

    #[test]
    fn median_absolute_deviation_and_tail_counts() {
        let mut histogram = LogHistogram::default();
        for value in [10_u64, 10, 11, 12, 9, 10, 500] {
            histogram.add(value);
        }
        assert_eq!(histogram.quantile(0.5), 10);
        assert_eq!(histogram.mad(), 1);
        assert_eq!(histogram.count_above(10 + 5), 1);
    }

    #[test]
    fn merging_shards_equals_one_pass() {
        let values: Vec<u64> = (0..5_000_u64).map(|i| (i * 7919) % 3_001).collect();
        let mut whole = LogHistogram::default();
        values.iter().for_each(|&value| whole.add(value));
        let mut merged = LogHistogram::default();
        for shard in values.chunks(777) {
            let mut part = LogHistogram::default();
            shard.iter().for_each(|&value| part.add(value));
            merged.merge(&part);
        }
        assert_eq!(merged, whole);
    }
}
