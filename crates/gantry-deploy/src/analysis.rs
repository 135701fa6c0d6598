//! Canary analysis: checks judged per window, canary against stable over
//! the same window. The defaults need no file: error rate at most 1% and
//! not significantly above stable, p95 latency and p95 time to first token
//! not more than 20% above stable by a Mann–Whitney U test, and at least
//! `min-requests` per version per window, below which a window is
//! inconclusive, never a pass. An analysis file (TOML) adds or replaces checks.

pub(crate) mod providers;
pub mod stats;

use std::collections::BTreeMap;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::api::VersionMetrics;
use crate::error::{Error, Result};

/// The analysis file: how windows are judged and what follows from them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Requests each version needs in a window; fewer make it inconclusive
    /// (overrides --min-requests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<u64>,
    /// Successful windows in a row a step needs before the next weight.
    #[serde(default = "one")]
    pub consecutive_successes: u32,
    /// Failed windows tolerated; one more rolls back (Argo's failureLimit).
    #[serde(default)]
    pub failure_limit: u32,
    /// Metric-source errors in a row tolerated while holding the weight;
    /// one more rolls back, or pauses with `on-error = "pause"`.
    #[serde(default = "four")]
    pub consecutive_error_limit: u32,
    /// What too many errors do.
    #[serde(default)]
    pub on_error: OnError,
    /// Inconclusive windows in a row before the rollout pauses for a person
    /// (it never promotes on them).
    #[serde(default = "three")]
    pub inconclusive_limit: u32,
    /// Keep the built-in checks (a check of the same name replaces one).
    #[serde(default = "yes")]
    pub defaults: bool,
    /// The Prometheus server PromQL checks ask.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusConfig>,
    /// Checks added to (or replacing) the defaults.
    #[serde(default)]
    pub checks: Vec<Check>,
}

fn one() -> u32 {
    1
}
fn three() -> u32 {
    3
}
fn four() -> u32 {
    4
}
fn yes() -> bool {
    true
}

impl Default for AnalysisConfig {
    fn default() -> AnalysisConfig {
        AnalysisConfig {
            min_requests: None,
            consecutive_successes: 1,
            failure_limit: 0,
            consecutive_error_limit: 4,
            on_error: OnError::Rollback,
            inconclusive_limit: 3,
            defaults: true,
            prometheus: None,
            checks: Vec::new(),
        }
    }
}

/// What repeated metric-source errors do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OnError {
    /// Return traffic to stable (Argo's default).
    #[default]
    Rollback,
    /// Return traffic to stable and wait for a person (`--action resume|promote|abort`).
    Pause,
}

/// Where PromQL checks ask.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PrometheusConfig {
    /// The server's base URL, e.g. http://127.0.0.1:9090.
    pub url: String,
    /// The model server whose metric names the built-in checks use on a
    /// cluster (`--target kubernetes`): vllm, tgi or kserve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<MetricsPreset>,
    /// The label that carries the model version on those series (default
    /// `version`; e.g. `app_kubernetes_io_version` from a PodMonitor's
    /// `podTargetLabels`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_label: Option<String>,
}

/// Metric names of a model server, for the built-in checks on a cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MetricsPreset {
    /// vLLM: `http_requests_total{status}`, `vllm:e2e_request_latency_seconds`,
    /// `vllm:time_to_first_token_seconds`.
    #[default]
    Vllm,
    /// TGI: `tgi_request_count`, `tgi_request_failure`, `tgi_request_duration`
    /// (TGI has no time-to-first-token histogram).
    Tgi,
    /// KServe (Knative's queue-proxy): `revision_app_request_count{response_code_class}`,
    /// `revision_app_request_latencies` (milliseconds).
    Kserve,
}

/// One check.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Check {
    /// Its name in reports (a default of the same name is replaced).
    pub name: String,
    /// Where the value comes from.
    #[serde(default)]
    pub provider: Provider,
    /// For the router provider: error-rate, latency or ttft.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<RouterMetric>,
    /// For latency and ttft: which quantile (default 0.95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantile: Option<f64>,
    /// For prometheus: a PromQL query giving one number; `{{ version }}`
    /// is the version judged and `{{ window }}` the window length (e.g. `60s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// For http: the URL to GET (`{{ version }}` allowed); 2xx passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Absolute judge: the canary's value must be at most this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Absolute judge: the canary's value must be at least this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Relative judge: the canary fails when it is above stable by more
    /// than this fraction (0.2 = 20%) and, where samples allow, significantly so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_increase: Option<f64>,
    /// For latency and ttft: differences smaller than this many
    /// milliseconds never fail the relative judge (default 5: a model
    /// server's timing jitter, not a regression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_difference_ms: Option<f64>,
    /// Relative judge for scores (smoke-quality): the canary fails when it
    /// is below stable by more than this fraction and significantly so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_decrease: Option<f64>,
    /// Scored answers each version needs for smoke-quality (default 10);
    /// fewer make it inconclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    /// Confidence of the relative judge's test (default 0.99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
}

/// Where a check's value comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Provider {
    /// The router's per-version metrics (exact attribution).
    #[default]
    Router,
    /// A PromQL query.
    Prometheus,
    /// An HTTP probe.
    Http,
    /// The smoke traffic's answers scored against the eval set's expected
    /// answers (needs --smoke-traffic and --smoke-scorer).
    SmokeQuality,
}

/// What the router measures per version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RouterMetric {
    /// Server and connection errors over requests.
    ErrorRate,
    /// End-to-end latency of successful requests, milliseconds.
    Latency,
    /// Time to first token of successful streamed requests, milliseconds.
    Ttft,
}

impl AnalysisConfig {
    /// Reads and checks an analysis file.
    pub fn load(path: &Path) -> Result<AnalysisConfig> {
        let text = std::fs::read_to_string(path).map_err(Error::io("cannot read", path))?;
        let config: AnalysisConfig = toml::from_str(&text).map_err(|error| {
            // The parser's own rendering quotes the whole line, which can be
            // any length: name the place instead.
            let place = error.span().map_or(String::new(), |span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
                format!(" at line {line}, column {column}")
            });
            Error::Input(format!("{}{place}: {}", path.display(), error.message()))
        })?;
        config
            .validate()
            .map_err(|message| Error::Input(format!("{}: {message}", path.display())))?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if self.consecutive_successes == 0 {
            return Err("consecutive-successes must be at least 1".to_owned());
        }
        for (index, check) in self.checks.iter().enumerate() {
            let at = format!("checks[{index}] ({})", check.name);
            if check.max.is_none()
                && check.min.is_none()
                && check.max_increase.is_none()
                && check.max_decrease.is_none()
                && check.provider != Provider::Http
            {
                return Err(format!(
                    "{at}: give a judge: max, min, max-increase or max-decrease"
                ));
            }
            for (field, value) in [
                ("max", check.max),
                ("min", check.min),
                ("max-increase", check.max_increase),
                ("max-decrease", check.max_decrease),
                ("min-difference-ms", check.min_difference_ms),
            ] {
                if value.is_some_and(|value| !value.is_finite()) {
                    return Err(format!("{at}: {field} must be a finite number"));
                }
            }
            if check.min_difference_ms.is_some_and(|ms| ms < 0.0) {
                return Err(format!("{at}: min-difference-ms cannot be negative"));
            }
            if check.quantile.is_some_and(|q| !(0.0..=1.0).contains(&q)) {
                return Err(format!("{at}: quantile must be between 0 and 1"));
            }
            if check.confidence.is_some_and(|c| !(0.5..1.0).contains(&c)) {
                return Err(format!("{at}: confidence must be at least 0.5 and below 1"));
            }
            match check.provider {
                Provider::Router if check.metric.is_none() => {
                    return Err(format!(
                        "{at}: the router provider needs metric = \"error-rate\", \"latency\" or \"ttft\""
                    ));
                }
                Provider::Prometheus if check.query.is_none() => {
                    return Err(format!("{at}: the prometheus provider needs a query"));
                }
                Provider::Prometheus if self.prometheus.is_none() => {
                    return Err(format!(
                        "{at}: add [prometheus] url = \"http://…\" for PromQL checks"
                    ));
                }
                Provider::Http if check.url.is_none() => {
                    return Err(format!("{at}: the http provider needs a url"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The checks judged: the defaults (unless switched off) with the
    /// file's checks replacing those of the same name, then the rest.
    pub fn checks(&self) -> Vec<Check> {
        let mut checks: Vec<Check> = if self.defaults {
            default_checks()
        } else {
            Vec::new()
        };
        for check in &self.checks {
            match checks
                .iter_mut()
                .find(|existing| existing.name == check.name)
            {
                Some(existing) => *existing = check.clone(),
                None => checks.push(check.clone()),
            }
        }
        checks
    }
}

impl AnalysisConfig {
    /// The analysis for a cluster target, where the router's per-request
    /// metrics are not there: the built-in checks become PromQL checks of
    /// the `[prometheus]` preset's metric names; router checks are refused.
    pub fn for_cluster(mut self, target: &str) -> Result<AnalysisConfig> {
        let Some(prometheus) = &self.prometheus else {
            return Err(Error::Input(format!(
                "{target} judges the canary with Prometheus: give --analysis with [prometheus] url = \"http://…\" (and preset = \"vllm\", \"tgi\" or \"kserve\")"
            )));
        };
        if let Some(check) = self
            .checks
            .iter()
            .find(|check| check.provider == Provider::Router)
        {
            return Err(Error::Input(format!(
                "the check {} reads the router's metrics, which {target} does not have: use provider = \"prometheus\"",
                check.name
            )));
        }
        if self.defaults {
            let mut checks = preset_checks(
                prometheus.preset.unwrap_or_default(),
                prometheus.version_label.as_deref().unwrap_or("version"),
            );
            for check in std::mem::take(&mut self.checks) {
                match checks
                    .iter_mut()
                    .find(|existing| existing.name == check.name)
                {
                    Some(existing) => *existing = check,
                    None => checks.push(check),
                }
            }
            self.checks = checks;
            self.defaults = false;
        }
        Ok(self)
    }
}

/// The built-in checks as PromQL of a model server's metric names; `label`
/// carries the version.
pub fn preset_checks(preset: MetricsPreset, label: &str) -> Vec<Check> {
    let check = |name: &str, query: String, max: Option<f64>, max_increase: Option<f64>| Check {
        name: name.to_owned(),
        provider: Provider::Prometheus,
        metric: None,
        quantile: None,
        query: Some(query),
        url: None,
        max,
        min: None,
        max_increase,
        min_difference_ms: None,
        max_decrease: None,
        min_samples: None,
        confidence: None,
    };
    let on = format!("{label}=\"{{{{ version }}}}\"");
    let rate =
        |series: &str, extra: &str| format!("sum(rate({series}{{{on}{extra}}}[{{{{ window }}}}]))");
    let quantile = |series: &str| {
        format!("histogram_quantile(0.95, sum by (le) (rate({series}{{{on}}}[{{{{ window }}}}])))")
    };
    let error_rate = |total: &str, failed: &str, extra: &str| {
        format!(
            "({} or vector(0)) / {}",
            rate(failed, extra),
            rate(total, "")
        )
    };
    match preset {
        MetricsPreset::Vllm => vec![
            check(
                "error-rate",
                error_rate(
                    "http_requests_total",
                    "http_requests_total",
                    ",status=\"5xx\"",
                ),
                Some(0.01),
                None,
            ),
            check(
                "latency-p95",
                quantile("vllm:e2e_request_latency_seconds_bucket"),
                None,
                Some(0.2),
            ),
            check(
                "ttft-p95",
                quantile("vllm:time_to_first_token_seconds_bucket"),
                None,
                Some(0.2),
            ),
        ],
        MetricsPreset::Tgi => vec![
            check(
                "error-rate",
                error_rate("tgi_request_count", "tgi_request_failure", ""),
                Some(0.01),
                None,
            ),
            check(
                "latency-p95",
                quantile("tgi_request_duration_bucket"),
                None,
                Some(0.2),
            ),
        ],
        MetricsPreset::Kserve => vec![
            check(
                "error-rate",
                error_rate(
                    "revision_app_request_count",
                    "revision_app_request_count",
                    ",response_code_class=\"5xx\"",
                ),
                Some(0.01),
                None,
            ),
            check(
                "latency-p95",
                quantile("revision_app_request_latencies_bucket"),
                None,
                Some(0.2),
            ),
        ],
    }
}

/// Latency differences (ms) below which the relative judge never fails.
const DEFAULT_MIN_DIFFERENCE_MS: f64 = 5.0;

/// The built-in checks.
pub fn default_checks() -> Vec<Check> {
    let router = |name: &str, metric, quantile, max, max_increase| Check {
        name: name.to_owned(),
        provider: Provider::Router,
        metric: Some(metric),
        quantile,
        query: None,
        url: None,
        max,
        min: None,
        max_increase: Some(max_increase),
        min_difference_ms: None,
        max_decrease: None,
        min_samples: None,
        confidence: None,
    };
    vec![
        router("error-rate", RouterMetric::ErrorRate, None, Some(0.01), 0.0),
        router("latency-p95", RouterMetric::Latency, Some(0.95), None, 0.2),
        router("ttft-p95", RouterMetric::Ttft, Some(0.95), None, 0.2),
    ]
}

/// How a window (or one check of it) came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every check passed with enough data.
    Success,
    /// A check failed.
    Failure,
    /// A metric source could not be read.
    Error,
    /// Too little data to judge: never a pass.
    Inconclusive,
    /// Not applicable in this window (say, no streamed requests for TTFT).
    Skipped,
}

/// One check's result in a window.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct CheckResult {
    /// The check.
    pub name: String,
    /// Its outcome.
    pub outcome: Outcome,
    /// The canary's value.
    pub canary: Option<f64>,
    /// Stable's value (relative checks).
    pub stable: Option<f64>,
    /// The test's one-sided p-value, where one was run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Why, in words.
    pub reason: String,
}

/// What a window's judge reads for one version from the router.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The canary's metrics over the window.
    pub canary: Option<VersionMetrics>,
    /// Stable's, when stable took traffic in the window.
    pub stable: Option<VersionMetrics>,
}

/// Judges a router-provider check on a window's metrics.
pub fn judge_router(check: &Check, observed: &Observed, min_requests: u64) -> CheckResult {
    let result = |outcome, canary, stable, p_value, reason: String| CheckResult {
        name: check.name.clone(),
        outcome,
        canary,
        stable,
        p_value,
        reason,
    };
    let Some(canary) = &observed.canary else {
        return result(
            Outcome::Error,
            None,
            None,
            None,
            "the router returned no metrics for the canary".to_owned(),
        );
    };
    let stable = observed.stable.as_ref();
    let enough = |metrics: &VersionMetrics| metrics.requests >= min_requests;
    if !enough(canary) || stable.is_some_and(|stable| !enough(stable)) {
        return result(
            Outcome::Inconclusive,
            None,
            None,
            None,
            format!(
                "too few requests to judge: canary {}{}, at least {min_requests} each needed",
                canary.requests,
                stable.map_or(String::new(), |stable| format!(
                    ", stable {}",
                    stable.requests
                ))
            ),
        );
    }
    let confidence = check.confidence.unwrap_or(0.99);
    let alpha = 1.0 - confidence;
    match check.metric.unwrap_or(RouterMetric::ErrorRate) {
        RouterMetric::ErrorRate => {
            let rate =
                |metrics: &VersionMetrics| metrics.errors() as f64 / metrics.requests.max(1) as f64;
            let canary_rate = rate(canary);
            let stable_rate = stable.map(rate);
            if let Some(max) = check.max
                && canary_rate > max
            {
                return result(
                    Outcome::Failure,
                    Some(canary_rate),
                    stable_rate,
                    None,
                    format!(
                        "canary error rate {:.2}% ({} of {}) is above the limit {:.2}%",
                        canary_rate * 100.0,
                        canary.errors(),
                        canary.requests,
                        max * 100.0
                    ),
                );
            }
            if let (Some(increase), Some(stable), Some(stable_rate)) =
                (check.max_increase, stable, stable_rate)
            {
                let p = stats::proportion_greater(
                    canary.errors(),
                    canary.requests,
                    stable.errors(),
                    stable.requests,
                );
                if p < alpha && canary_rate > stable_rate * (1.0 + increase) {
                    return result(
                        Outcome::Failure,
                        Some(canary_rate),
                        Some(stable_rate),
                        Some(p),
                        format!(
                            "canary error rate {:.2}% is significantly above stable's {:.2}% (p = {p:.2e})",
                            canary_rate * 100.0,
                            stable_rate * 100.0
                        ),
                    );
                }
                return result(
                    Outcome::Success,
                    Some(canary_rate),
                    Some(stable_rate),
                    Some(p),
                    format!(
                        "canary error rate {:.2}%, stable {:.2}%",
                        canary_rate * 100.0,
                        stable_rate * 100.0
                    ),
                );
            }
            result(
                Outcome::Success,
                Some(canary_rate),
                stable_rate,
                None,
                format!("canary error rate {:.2}%", canary_rate * 100.0),
            )
        }
        metric @ (RouterMetric::Latency | RouterMetric::Ttft) => {
            let (samples, what): (fn(&VersionMetrics) -> &[f64], &str) = match metric {
                RouterMetric::Ttft => (|m| &m.ttft_ms, "time to first token"),
                _ => (|m| &m.latency_ms, "latency"),
            };
            let q = check.quantile.unwrap_or(0.95);
            let label = format!("p{}", (q * 100.0).round());
            let canary_samples = samples(canary);
            let stable_samples = stable.map(samples);
            if canary_samples.is_empty() && stable_samples.is_none_or(<[f64]>::is_empty) {
                return result(
                    Outcome::Skipped,
                    None,
                    None,
                    None,
                    format!("no {what} samples in the window (no streamed requests)"),
                );
            }
            if (canary_samples.len() as u64) < min_requests
                || stable_samples.is_some_and(|s| (s.len() as u64) < min_requests)
            {
                return result(
                    Outcome::Inconclusive,
                    None,
                    None,
                    None,
                    format!(
                        "too few {what} samples: canary {}{}, at least {min_requests} each needed",
                        canary_samples.len(),
                        stable_samples.map_or(String::new(), |s| format!(", stable {}", s.len()))
                    ),
                );
            }
            let canary_q = stats::quantile(canary_samples, q);
            let stable_q = stable_samples.and_then(|s| stats::quantile(s, q));
            if let (Some(max), Some(value)) = (check.max, canary_q)
                && value > max
            {
                return result(
                    Outcome::Failure,
                    canary_q,
                    stable_q,
                    None,
                    format!("canary {label} {what} {value:.1} ms is above the limit {max:.1} ms"),
                );
            }
            if let (Some(increase), Some(stable_samples), Some(canary_value), Some(stable_value)) =
                (check.max_increase, stable_samples, canary_q, stable_q)
            {
                let p = stats::mann_whitney_greater(canary_samples, stable_samples);
                let ratio = canary_value / stable_value.max(f64::MIN_POSITIVE);
                let floor = check.min_difference_ms.unwrap_or(DEFAULT_MIN_DIFFERENCE_MS);
                if p < alpha && ratio > 1.0 + increase && canary_value - stable_value > floor {
                    return result(
                        Outcome::Failure,
                        canary_q,
                        stable_q,
                        Some(p),
                        format!(
                            "canary {label} {what} {canary_value:.1} ms is {:.0}% above stable's {stable_value:.1} ms (limit {:.0}%), significantly by Mann–Whitney U (p = {p:.2e})",
                            (ratio - 1.0) * 100.0,
                            increase * 100.0
                        ),
                    );
                }
                return result(
                    Outcome::Success,
                    canary_q,
                    stable_q,
                    Some(p),
                    format!(
                        "canary {label} {what} {canary_value:.1} ms, stable {stable_value:.1} ms"
                    ),
                );
            }
            result(
                Outcome::Success,
                canary_q,
                stable_q,
                None,
                format!(
                    "canary {label} {what} {:.1} ms",
                    canary_q.unwrap_or(f64::NAN)
                ),
            )
        }
    }
}

/// Judges a single value from Prometheus or a probe against the absolute
/// and relative limits.
pub fn judge_value(check: &Check, canary: f64, stable: Option<f64>) -> CheckResult {
    let result = |outcome, reason: String| CheckResult {
        name: check.name.clone(),
        outcome,
        canary: Some(canary),
        stable,
        p_value: None,
        reason,
    };
    if !canary.is_finite() || stable.is_some_and(|stable| !stable.is_finite()) {
        return result(
            Outcome::Error,
            format!(
                "the query returned a value that is not a number (canary {canary}, stable {stable:?})"
            ),
        );
    }
    if let Some(max) = check.max
        && canary > max
    {
        return result(
            Outcome::Failure,
            format!("canary value {canary} is above the limit {max}"),
        );
    }
    if let Some(min) = check.min
        && canary < min
    {
        return result(
            Outcome::Failure,
            format!("canary value {canary} is below the limit {min}"),
        );
    }
    if let (Some(increase), Some(stable)) = (check.max_increase, stable)
        && canary > stable * (1.0 + increase)
        && canary > stable
    {
        return result(
            Outcome::Failure,
            format!(
                "canary value {canary} is more than {:.0}% above stable's {stable}",
                increase * 100.0
            ),
        );
    }
    result(
        Outcome::Success,
        match stable {
            Some(stable) => format!("canary {canary}, stable {stable}"),
            None => format!("canary {canary}"),
        },
    )
}

/// The smoke-quality check added when a scorer is given and the file has none.
pub fn default_quality_check() -> Check {
    Check {
        name: "smoke-quality".to_owned(),
        provider: Provider::SmokeQuality,
        metric: None,
        quantile: None,
        query: None,
        url: None,
        max: None,
        min: None,
        max_increase: None,
        min_difference_ms: None,
        max_decrease: Some(0.05),
        min_samples: None,
        confidence: None,
    }
}

/// Judges the smoke answers' scores: their mean against `min`, and
/// against stable's by `max-decrease` with a one-sided Mann–Whitney U test.
pub fn judge_quality(check: &Check, canary: &[f64], stable: Option<&[f64]>) -> CheckResult {
    let mean = |scores: &[f64]| scores.iter().sum::<f64>() / scores.len().max(1) as f64;
    let result = |outcome, p_value, reason: String| CheckResult {
        name: check.name.clone(),
        outcome,
        canary: (!canary.is_empty()).then(|| mean(canary)),
        stable: stable.filter(|scores| !scores.is_empty()).map(mean),
        p_value,
        reason,
    };
    let needed = check.min_samples.unwrap_or(10);
    if (canary.len() as u64) < needed || stable.is_some_and(|scores| (scores.len() as u64) < needed)
    {
        return result(
            Outcome::Inconclusive,
            None,
            format!(
                "too few scored smoke answers: canary {}{}, at least {needed} each needed",
                canary.len(),
                stable.map_or(String::new(), |scores| format!(", stable {}", scores.len()))
            ),
        );
    }
    let canary_mean = mean(canary);
    if let Some(min) = check.min
        && canary_mean < min
    {
        return result(
            Outcome::Failure,
            None,
            format!("canary smoke score {canary_mean:.3} is below the limit {min}"),
        );
    }
    if let (Some(decrease), Some(stable)) = (check.max_decrease, stable) {
        let stable_mean = mean(stable);
        let alpha = 1.0 - check.confidence.unwrap_or(0.99);
        let p = stats::mann_whitney_greater(stable, canary);
        if p < alpha && canary_mean < stable_mean * (1.0 - decrease) {
            return result(
                Outcome::Failure,
                Some(p),
                format!(
                    "canary smoke score {canary_mean:.3} is more than {:.0}% below stable's {stable_mean:.3}, significantly by Mann–Whitney U (p = {p:.2e})",
                    decrease * 100.0
                ),
            );
        }
        return result(
            Outcome::Success,
            Some(p),
            format!(
                "canary smoke score {canary_mean:.3}, stable {stable_mean:.3} ({} and {} answers)",
                canary.len(),
                stable.len()
            ),
        );
    }
    result(
        Outcome::Success,
        None,
        format!(
            "canary smoke score {canary_mean:.3} ({} answers)",
            canary.len()
        ),
    )
}

/// A window's outcome from its checks: any failure fails it, then any
/// error, then any inconclusive; success needs at least one check that
/// passed and none that did not.
pub fn combine(results: &[CheckResult]) -> Outcome {
    let any = |outcome| results.iter().any(|result| result.outcome == outcome);
    if any(Outcome::Failure) {
        Outcome::Failure
    } else if any(Outcome::Error) {
        Outcome::Error
    } else if any(Outcome::Inconclusive) || !any(Outcome::Success) {
        Outcome::Inconclusive
    } else {
        Outcome::Success
    }
}

/// The JSON Schema of the analysis file.
pub fn analysis_schema() -> schemars::Schema {
    schemars::schema_for!(AnalysisConfig)
}

/// Renders a check's templated text (`{{ version }}`, `{{ window }}`).
pub fn render(template: &str, values: &BTreeMap<&str, String>) -> Result<String> {
    let environment = minijinja::Environment::new();
    environment
        .render_str(template, values)
        .map_err(|error| Error::Input(format!("template {template:?}: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::StatusCounts;

    fn metrics(ok: u64, errors: u64, latency: impl Fn(u64) -> f64) -> VersionMetrics {
        VersionMetrics {
            version: "v".into(),
            since_ms: 0,
            until_ms: 1,
            requests: ok + errors,
            status: StatusCounts {
                ok,
                server_error: errors,
                ..StatusCounts::default()
            },
            latency_ms: (0..ok).map(&latency).collect(),
            ttft_ms: (0..ok).map(|i| latency(i) / 2.0).collect(),
            output_tokens: 0,
            truncated: false,
        }
    }

    fn judge_all(observed: &Observed, min: u64) -> Vec<CheckResult> {
        default_checks()
            .iter()
            .map(|check| judge_router(check, observed, min))
            .collect()
    }

    #[test]
    fn a_good_canary_passes_every_default() {
        let observed = Observed {
            canary: Some(metrics(100, 0, |i| 20.0 + (i % 7) as f64)),
            stable: Some(metrics(400, 1, |i| 20.0 + (i % 7) as f64)),
        };
        let results = judge_all(&observed, 50);
        assert_eq!(combine(&results), Outcome::Success, "{results:#?}");
    }

    #[test]
    fn ten_percent_errors_fail() {
        let observed = Observed {
            canary: Some(metrics(90, 10, |_| 20.0)),
            stable: Some(metrics(400, 0, |_| 20.0)),
        };
        let results = judge_all(&observed, 50);
        assert_eq!(results[0].outcome, Outcome::Failure);
        assert!(
            results[0].reason.contains("10.00%"),
            "{}",
            results[0].reason
        );
        assert_eq!(combine(&results), Outcome::Failure);
    }

    #[test]
    fn a_canary_150_ms_slower_fails_the_relative_judge() {
        let observed = Observed {
            canary: Some(metrics(100, 0, |i| 170.0 + (i % 9) as f64)),
            stable: Some(metrics(400, 0, |i| 20.0 + (i % 9) as f64)),
        };
        let results = judge_all(&observed, 50);
        assert_eq!(results[1].outcome, Outcome::Failure, "{results:#?}");
        assert!(
            results[1].reason.contains("Mann–Whitney"),
            "{}",
            results[1].reason
        );
    }

    #[test]
    fn a_difference_of_a_millisecond_is_jitter_not_a_regression() {
        let observed = Observed {
            canary: Some(metrics(200, 0, |i| 1.1 + (i % 3) as f64 * 0.01)),
            stable: Some(metrics(400, 0, |i| 0.9 + (i % 3) as f64 * 0.01)),
        };
        let results = judge_all(&observed, 50);
        assert_eq!(combine(&results), Outcome::Success, "{results:#?}");
    }

    #[test]
    fn too_little_traffic_is_inconclusive_never_a_pass() {
        let observed = Observed {
            canary: Some(metrics(10, 0, |_| 20.0)),
            stable: Some(metrics(400, 0, |_| 20.0)),
        };
        let results = judge_all(&observed, 50);
        assert!(
            results.iter().all(|r| r.outcome == Outcome::Inconclusive),
            "{results:#?}"
        );
        assert_eq!(combine(&results), Outcome::Inconclusive);
        assert_eq!(combine(&[]), Outcome::Inconclusive);
    }

    #[test]
    fn the_file_replaces_defaults_by_name_and_is_checked() {
        let config: AnalysisConfig = toml::from_str(
            r#"
            failure-limit = 1
            [prometheus]
            url = "http://127.0.0.1:9090"
            [[checks]]
            name = "error-rate"
            metric = "error-rate"
            max = 0.05
            [[checks]]
            name = "kv-cache"
            provider = "prometheus"
            query = 'max(vllm:kv_cache_usage_perc{version="{{ version }}"})'
            max = 0.9
            "#,
        )
        .expect("parses");
        config.validate().expect("valid");
        let checks = config.checks();
        assert_eq!(checks.len(), 4);
        assert_eq!(checks[0].max, Some(0.05));
        assert_eq!(checks[3].name, "kv-cache");
        let quality: AnalysisConfig = toml::from_str(
            "[[checks]]\nname = \"smoke-quality\"\nprovider = \"smoke-quality\"\nmax-decrease = 0.05\nmin-samples = 20\n",
        )
        .expect("parses");
        quality.validate().expect("a max-decrease is a judge");
        let bad: AnalysisConfig = toml::from_str(
            "[[checks]]\nname = \"x\"\nprovider = \"prometheus\"\nquery = \"up\"\nmax = 1\n",
        )
        .expect("parses");
        assert!(bad.validate().expect_err("no url").contains("[prometheus]"));
        assert!(toml::from_str::<AnalysisConfig>("failure_limit = 1").is_err());
    }

    #[test]
    fn smoke_scores_fail_a_worse_canary_and_need_enough_answers() {
        let check = default_quality_check();
        let good = vec![1.0; 40];
        let mut worse = vec![0.0; 30];
        worse.extend(vec![1.0; 10]);
        assert_eq!(
            judge_quality(&check, &good, Some(&good)).outcome,
            Outcome::Success
        );
        let failed = judge_quality(&check, &worse, Some(&good));
        assert_eq!(failed.outcome, Outcome::Failure, "{failed:?}");
        assert!(failed.reason.contains("below stable"), "{}", failed.reason);
        assert_eq!(
            judge_quality(&check, &good[..5], Some(&good)).outcome,
            Outcome::Inconclusive
        );
        let absolute = Check {
            min: Some(0.5),
            max_decrease: None,
            ..check
        };
        assert_eq!(
            judge_quality(&absolute, &worse, None).outcome,
            Outcome::Failure
        );
    }

    #[test]
    fn a_bad_file_is_named_with_its_place_not_quoted_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("analysis.toml");
        let deep = format!(
            "failure-limit = 1\nx = {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        std::fs::write(&path, deep).expect("write");
        let error = AnalysisConfig::load(&path)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("analysis.toml at line 2, column"), "{error}");
        assert!(error.len() < 300, "{}", error.len());
        std::fs::write(&path, "failure-limit = \"two\"\n").expect("write");
        let error = AnalysisConfig::load(&path)
            .expect_err("refused")
            .to_string();
        assert!(error.contains("at line 1, column 17"), "{error}");
    }

    #[test]
    fn values_are_judged_absolutely_and_relatively() {
        let check = Check {
            name: "q".into(),
            provider: Provider::Prometheus,
            metric: None,
            quantile: None,
            query: Some("x".into()),
            url: None,
            max: Some(2.0),
            min: None,
            max_increase: Some(0.2),
            min_difference_ms: None,
            max_decrease: None,
            min_samples: None,
            confidence: None,
        };
        assert_eq!(
            judge_value(&check, 1.0, Some(1.0)).outcome,
            Outcome::Success
        );
        assert_eq!(
            judge_value(&check, 1.5, Some(1.0)).outcome,
            Outcome::Failure
        );
        assert_eq!(judge_value(&check, 3.0, None).outcome, Outcome::Failure);
        assert_eq!(judge_value(&check, f64::NAN, None).outcome, Outcome::Error);
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    #[test]
    fn the_shipped_example_analysis_file_is_valid() {
        let config: AnalysisConfig =
            toml::from_str(include_str!("../../../examples/deploy/analysis.toml")).expect("parses");
        config.validate().expect("valid");
        let names: Vec<String> = config
            .checks()
            .into_iter()
            .map(|check| check.name)
            .collect();
        assert_eq!(
            names,
            [
                "error-rate",
                "latency-p95",
                "ttft-p95",
                "latency-p99",
                "kv-cache"
            ]
        );
    }
}
