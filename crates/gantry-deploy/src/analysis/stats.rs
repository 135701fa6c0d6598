//! The statistics of the judges: Mann–Whitney U (Kayenta's test of
//! canary against baseline), a two-proportion test for error rates, and
//! quantiles.

use statrs::distribution::{ContinuousCDF as _, Normal};

/// The one-sided p-value that `canary` tends to be larger than `stable`
/// (Mann–Whitney U, normal approximation with tie and continuity
/// corrections). 1.0 when either side is empty or every value is equal.
pub fn mann_whitney_greater(canary: &[f64], stable: &[f64]) -> f64 {
    let (n1, n2) = (canary.len(), stable.len());
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let mut all: Vec<(f64, bool)> = canary
        .iter()
        .map(|value| (*value, true))
        .chain(stable.iter().map(|value| (*value, false)))
        .filter(|(value, _)| value.is_finite())
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let n = all.len();
    let mut rank_sum_canary = 0.0;
    let mut tie_term = 0.0;
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && all[end].0 == all[start].0 {
            end += 1;
        }
        // Ranks start..end (1-based start+1..=end) share their mean.
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        let tied = (end - start) as f64;
        tie_term += tied * tied * tied - tied;
        rank_sum_canary +=
            mean_rank * all[start..end].iter().filter(|(_, canary)| *canary).count() as f64;
        start = end;
    }
    let (n1, n2, n) = (n1 as f64, n2 as f64, n as f64);
    let u = rank_sum_canary - n1 * (n1 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let variance = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if variance.is_nan() || variance <= 0.0 {
        return 1.0;
    }
    let z = (u - mean - 0.5) / variance.sqrt();
    standard_normal_upper(z)
}

/// The one-sided p-value that the canary's error proportion is larger
/// than stable's (pooled two-proportion z-test).
pub fn proportion_greater(
    canary_errors: u64,
    canary_n: u64,
    stable_errors: u64,
    stable_n: u64,
) -> f64 {
    if canary_n == 0 || stable_n == 0 {
        return 1.0;
    }
    let (x1, n1, x2, n2) = (
        canary_errors as f64,
        canary_n as f64,
        stable_errors as f64,
        stable_n as f64,
    );
    let pooled = (x1 + x2) / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se.is_nan() || se <= 0.0 {
        return if x1 / n1 > x2 / n2 { 0.0 } else { 1.0 };
    }
    standard_normal_upper((x1 / n1 - x2 / n2) / se)
}

fn standard_normal_upper(z: f64) -> f64 {
    match Normal::new(0.0, 1.0) {
        Ok(normal) => 1.0 - normal.cdf(z),
        Err(_) => 1.0,
    }
}

/// The `q` quantile of `values` (linear interpolation between closest
/// ranks, like numpy's default); `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values
        .iter()
        .copied()
        .filter(|value| value.is_finite())
        .collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lower = position.floor() as usize;
    let upper = position.ceil() as usize;
    let fraction = position - lower as f64;
    Some(sorted[lower] + (sorted[upper] - sorted[lower]) * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clear_shift_is_significant_and_none_is_not() {
        let stable: Vec<f64> = (0..200).map(|i| 10.0 + f64::from(i % 17)).collect();
        let slower: Vec<f64> = stable.iter().map(|value| value + 150.0).collect();
        assert!(mann_whitney_greater(&slower, &stable) < 1e-6);
        assert!(mann_whitney_greater(&stable, &slower) > 0.999);
        let p = mann_whitney_greater(&stable, &stable);
        assert!((0.4..0.6).contains(&p), "{p}");
    }

    #[test]
    fn equal_values_and_empty_sides_are_never_significant() {
        assert_eq!(mann_whitney_greater(&[5.0; 50], &[5.0; 50]), 1.0);
        assert_eq!(mann_whitney_greater(&[], &[1.0]), 1.0);
    }

    #[test]
    fn matches_a_textbook_value() {
        // scipy.stats.mannwhitneyu([19,22,16,29,24],[20,11,17,12],
        //   alternative="greater", method="asymptotic") gives p = 0.0557 (U = 17).
        let p = mann_whitney_greater(&[19.0, 22.0, 16.0, 29.0, 24.0], &[20.0, 11.0, 17.0, 12.0]);
        assert!((p - 0.055_673).abs() < 1e-4, "{p}");
    }

    #[test]
    fn ten_percent_errors_are_significantly_above_none() {
        assert!(proportion_greater(30, 300, 0, 3000) < 1e-6);
        assert!(proportion_greater(1, 200, 0, 200) > 0.1);
        assert_eq!(proportion_greater(0, 100, 0, 100), 1.0);
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0, 5.0], 0.5), Some(3.0));
        assert_eq!(quantile(&[1.0, 2.0], 0.95), Some(1.95));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
