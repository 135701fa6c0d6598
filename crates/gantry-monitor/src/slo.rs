//! Service SLOs and resources from Prometheus: which query measures each
//! signal for the router's metrics and the common servers' (vLLM, TGI),
//! DCGM's GPU metrics, and how a week's value is judged against its
//! threshold and against the windows before it.

use std::time::Duration;

use crate::prometheus::{Prometheus, Sample, promql_duration};
use crate::report::{CheckReport, Kind, Status, show_value};

/// Whose metric names to query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// gantry's router (`gantry_router_*`, label `version`).
    Router,
    /// vLLM (`vllm:*`, label `model_name`).
    Vllm,
    /// Text Generation Inference (`tgi_*`, no model label).
    Tgi,
}

impl Flavor {
    /// Every flavor, in the order `auto` tries them.
    pub const ALL: [Flavor; 3] = [Flavor::Router, Flavor::Vllm, Flavor::Tgi];

    /// Its name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Router => "router",
            Flavor::Vllm => "vllm",
            Flavor::Tgi => "tgi",
        }
    }

    /// A counter every server of this flavor exports: `auto` picks the
    /// first flavor whose counter has series.
    pub fn probe(self) -> &'static str {
        match self {
            Flavor::Router => "gantry_router_requests_total",
            Flavor::Vllm => "vllm:e2e_request_latency_seconds_count",
            Flavor::Tgi => "tgi_request_count",
        }
    }
}

/// A service signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// 95th percentile end-to-end latency (ms).
    LatencyP95,
    /// 95th percentile time to first token (ms).
    TtftP95,
    /// Share of requests that failed (ratio).
    ErrorRate,
    /// Output tokens per second.
    TokensPerSecond,
    /// Requests per second.
    RequestsPerSecond,
}

impl Signal {
    /// Every signal, in report order.
    pub const ALL: [Signal; 5] = [
        Signal::LatencyP95,
        Signal::TtftP95,
        Signal::ErrorRate,
        Signal::TokensPerSecond,
        Signal::RequestsPerSecond,
    ];

    /// Its check name (and `--slo` key).
    pub fn name(self) -> &'static str {
        match self {
            Signal::LatencyP95 => "latency-p95",
            Signal::TtftP95 => "ttft-p95",
            Signal::ErrorRate => "error-rate",
            Signal::TokensPerSecond => "tokens-per-second",
            Signal::RequestsPerSecond => "requests-per-second",
        }
    }

    /// The unit of its value.
    pub fn unit(self) -> &'static str {
        match self {
            Signal::LatencyP95 | Signal::TtftP95 => "ms",
            Signal::ErrorRate => "ratio",
            Signal::TokensPerSecond => "tokens/s",
            Signal::RequestsPerSecond => "req/s",
        }
    }

    /// Whether a higher value is worse (latency, errors) rather than
    /// better (throughput).
    pub fn higher_is_worse(self) -> bool {
        matches!(
            self,
            Signal::LatencyP95 | Signal::TtftP95 | Signal::ErrorRate
        )
    }

    /// The signal named `name`.
    pub fn parse(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|signal| signal.name() == name)
    }

    /// Multiplier from the query's unit to the signal's (seconds → ms).
    fn scale(self) -> f64 {
        match self {
            Signal::LatencyP95 | Signal::TtftP95 => 1000.0,
            _ => 1.0,
        }
    }
}

/// Joins a selector's matchers and extra ones into `{…}`.
fn braces(selector: &str, extra: &str) -> String {
    let parts: Vec<&str> = [selector, extra]
        .into_iter()
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect();
    format!("{{{}}}", parts.join(","))
}

/// The PromQL that measures `signal` over `window` for series matching
/// `selector` (label matchers without braces, e.g. `version="1.2.0"`), or
/// `None` when the flavor exports nothing for it.
pub fn query(flavor: Flavor, signal: Signal, selector: &str, window: &str) -> Option<String> {
    let s = |extra: &str| braces(selector, extra);
    let quantile = |histogram: &str| {
        format!(
            "histogram_quantile(0.95, sum by (le) (rate({histogram}_bucket{}[{window}])))",
            s("")
        )
    };
    let rate = |counter: &str, extra: &str| format!("sum(rate({counter}{}[{window}]))", s(extra));
    Some(match (flavor, signal) {
        (Flavor::Router, Signal::LatencyP95) => quantile("gantry_router_request_duration_seconds"),
        (Flavor::Router, Signal::TtftP95) => quantile("gantry_router_time_to_first_token_seconds"),
        // A service with no failure at all has no failure series: `or vector(0)`.
        (Flavor::Router, Signal::ErrorRate) => format!(
            "({} or vector(0)) / {}",
            rate(
                "gantry_router_requests_total",
                r#"class=~"5xx|connection-error""#
            ),
            rate("gantry_router_requests_total", "")
        ),
        (Flavor::Router, Signal::TokensPerSecond) => rate("gantry_router_output_tokens_total", ""),
        (Flavor::Router, Signal::RequestsPerSecond) => rate("gantry_router_requests_total", ""),
        (Flavor::Vllm, Signal::LatencyP95) => quantile("vllm:e2e_request_latency_seconds"),
        (Flavor::Vllm, Signal::TtftP95) => quantile("vllm:time_to_first_token_seconds"),
        // vLLM counts HTTP outcomes in prometheus-fastapi-instrumentator's
        // `http_requests_total`, which has no model label.
        (Flavor::Vllm, Signal::ErrorRate) => format!(
            r#"(sum(rate(http_requests_total{{handler=~"/v1/.*",status="5xx"}}[{window}])) or vector(0)) / sum(rate(http_requests_total{{handler=~"/v1/.*"}}[{window}]))"#
        ),
        (Flavor::Vllm, Signal::TokensPerSecond) => rate("vllm:generation_tokens_total", ""),
        (Flavor::Vllm, Signal::RequestsPerSecond) => {
            rate("vllm:e2e_request_latency_seconds_count", "")
        }
        (Flavor::Tgi, Signal::LatencyP95) => quantile("tgi_request_duration"),
        (Flavor::Tgi, Signal::TtftP95) => return None,
        (Flavor::Tgi, Signal::ErrorRate) => format!(
            "({} or vector(0)) / {}",
            rate("tgi_request_failure", ""),
            rate("tgi_request_count", "")
        ),
        (Flavor::Tgi, Signal::TokensPerSecond) => rate("tgi_request_generated_tokens_sum", ""),
        (Flavor::Tgi, Signal::RequestsPerSecond) => rate("tgi_request_count", ""),
    })
}

/// Requests answered in the window: the volume below which a week is too
/// quiet to judge.
pub fn volume_query(flavor: Flavor, selector: &str, window: &str) -> String {
    let counter = match flavor {
        Flavor::Router => "gantry_router_requests_total",
        Flavor::Vllm => "vllm:e2e_request_latency_seconds_count",
        Flavor::Tgi => "tgi_request_count",
    };
    format!("sum(increase({counter}{}[{window}]))", braces(selector, ""))
}

/// A threshold: the worst acceptable value of a signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// The signal.
    pub signal: Signal,
    /// The limit, in the signal's unit (a maximum for latency and errors,
    /// a minimum for throughput).
    pub limit: f64,
}

impl Threshold {
    /// The defaults: error rate ≤ 1%, p95 latency ≤ 10 s, p95 time to first
    /// token ≤ 2 s. Throughput has no default (it follows traffic).
    pub fn defaults() -> Vec<Threshold> {
        vec![
            Threshold {
                signal: Signal::ErrorRate,
                limit: 0.01,
            },
            Threshold {
                signal: Signal::LatencyP95,
                limit: 10_000.0,
            },
            Threshold {
                signal: Signal::TtftP95,
                limit: 2_000.0,
            },
        ]
    }

    /// Parses `--slo NAME=VALUE`: `latency-p95=2s`, `ttft-p95=500ms`,
    /// `error-rate=1%` (or `0.01`), `tokens-per-second=50`.
    pub fn parse(text: &str) -> Result<Threshold, String> {
        let names: Vec<&str> = Signal::ALL.iter().map(|signal| signal.name()).collect();
        let (name, value) = text.split_once('=').ok_or_else(|| {
            format!(
                "{text:?}: expected NAME=VALUE with NAME one of {}",
                names.join(", ")
            )
        })?;
        let signal = Signal::parse(name.trim()).ok_or_else(|| {
            format!(
                "{name:?} is not an SLO: expected one of {}",
                names.join(", ")
            )
        })?;
        let value = value.trim();
        let limit = match signal {
            Signal::LatencyP95 | Signal::TtftP95 => {
                let milliseconds = value
                    .strip_suffix("ms")
                    .and_then(|number| number.trim().parse::<f64>().ok());
                let seconds = value
                    .strip_suffix('s')
                    .and_then(|number| number.trim().parse::<f64>().ok());
                milliseconds
                    .or(seconds.map(|seconds| seconds * 1000.0))
                    .ok_or_else(|| format!("{text:?}: expected a latency such as 500ms or 2s"))?
            }
            Signal::ErrorRate => match value.strip_suffix('%') {
                Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
                None => value.parse::<f64>(),
            }
            .ok()
            .filter(|rate| (0.0..=1.0).contains(rate))
            .ok_or_else(|| format!("{text:?}: expected a share such as 1% or 0.01"))?,
            Signal::TokensPerSecond | Signal::RequestsPerSecond => value
                .parse::<f64>()
                .ok()
                .filter(|rate| *rate >= 0.0)
                .ok_or_else(|| format!("{text:?}: expected a rate such as 50"))?,
        };
        if !limit.is_finite() || limit < 0.0 {
            return Err(format!("{text:?}: expected a finite, non-negative limit"));
        }
        Ok(Threshold { signal, limit })
    }

    fn breached_by(&self, value: f64) -> bool {
        if self.signal.higher_is_worse() {
            value > self.limit
        } else {
            value < self.limit
        }
    }

    /// `≤ 2000 ms`, `≥ 50 tokens/s`.
    pub fn text(&self) -> String {
        format!(
            "{} {}",
            if self.signal.higher_is_worse() {
                "≤"
            } else {
                "≥"
            },
            show_value(Some(self.limit), self.signal.unit())
        )
    }
}

/// What the service checks query and how they judge.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Whose metric names; `None`: the first flavor with series.
    pub flavor: Option<Flavor>,
    /// Label matchers without braces; `None`: `version="<version>"` for the
    /// router, `model_name="<served name>"` for vLLM, none for TGI.
    pub selector: Option<String>,
    /// The version the alias resolved to (the router's label).
    pub version: String,
    /// The name the model is served as (vLLM's label).
    pub served_model: String,
    /// The window.
    pub window: Duration,
    /// Previous windows the trend compares with.
    pub trend_windows: u32,
    /// A worsening past this share of the previous windows' median warns.
    pub trend_tolerance: f64,
    /// Fewer requests than this in the window: inconclusive.
    pub min_requests: f64,
    /// SLO thresholds.
    pub thresholds: Vec<Threshold>,
    /// The end of the window (unix seconds).
    pub end: f64,
}

/// The service checks, one per signal, plus `flavor` when auto-detected.
/// A Prometheus that fails makes every check an error that says so.
pub async fn service_checks(
    prometheus: &Prometheus,
    options: &ServiceOptions,
) -> (Vec<CheckReport>, Option<Flavor>) {
    let window = promql_duration(options.window);
    let flavor = match options.flavor {
        Some(flavor) => flavor,
        None => match detect(prometheus, options.end, &window).await {
            Ok(Some(flavor)) => flavor,
            Ok(None) => {
                let reason = format!(
                    "no series of {} in Prometheus at {} in the window: is it scraping the router or the model servers? (--metrics names the flavor)",
                    Flavor::ALL
                        .iter()
                        .map(|flavor| flavor.probe())
                        .collect::<Vec<_>>()
                        .join(", "),
                    prometheus.url()
                );
                return (every_signal(Status::Inconclusive, &reason), None);
            }
            Err(error) => {
                return (every_signal(Status::Error, &error.to_string()), None);
            }
        },
    };
    let selector = selector(flavor, options);
    let volume = match prometheus
        .instant(&volume_query(flavor, &selector, &window), options.end)
        .await
    {
        Ok(Sample::Value(volume)) => Some(volume),
        Ok(_) => Some(0.0),
        Err(error) => {
            return (
                every_signal(Status::Error, &error.to_string()),
                Some(flavor),
            );
        }
    };
    let mut checks = Vec::new();
    for signal in Signal::ALL {
        checks.push(
            signal_check(
                prometheus, options, flavor, signal, &selector, &window, volume,
            )
            .await,
        );
    }
    (checks, Some(flavor))
}

/// One check per signal, each with `status` and `reason`: what a source
/// that could not be asked at all comes to.
fn every_signal(status: Status, reason: &str) -> Vec<CheckReport> {
    Signal::ALL
        .iter()
        .map(|signal| CheckReport::new(signal.name(), Kind::Service, status, signal.unit(), reason))
        .collect()
}

/// The label matchers for `flavor`'s series: `--selector`, or the
/// production version (router) or served name (vLLM).
pub fn selector(flavor: Flavor, options: &ServiceOptions) -> String {
    options.selector.clone().unwrap_or_else(|| match flavor {
        Flavor::Router => format!("version=\"{}\"", escape_label(&options.version)),
        Flavor::Vllm => format!("model_name=\"{}\"", escape_label(&options.served_model)),
        Flavor::Tgi => String::new(),
    })
}

/// The window's shape: p95 latency, p95 time to first token (ms) and the
/// error rate over the window, from range queries whose rate window is a
/// 24th of the window (at least a minute), about a hundred points each.
/// A signal the source cannot give is left out: the checks say why.
pub async fn window_series(
    prometheus: &Prometheus,
    options: &ServiceOptions,
    flavor: Flavor,
) -> Vec<(Signal, Vec<(f64, f64)>)> {
    let window = options.window.as_secs_f64();
    let rate_window = promql_duration(Duration::from_secs_f64((window / 24.0).max(60.0)));
    let step = Duration::from_secs_f64((window / 96.0).max(1.0));
    let selector = selector(flavor, options);
    let mut series = Vec::new();
    for signal in [Signal::LatencyP95, Signal::TtftP95, Signal::ErrorRate] {
        let Some(query) = query(flavor, signal, &selector, &rate_window) else {
            continue;
        };
        if let Ok(points) = prometheus
            .range(&query, options.end - window, options.end, step)
            .await
            && points.len() >= 2
        {
            let scaled = points
                .into_iter()
                .map(|(time, value)| (time, value * signal.scale()))
                .collect();
            series.push((signal, scaled));
        }
    }
    series
}

async fn detect(prometheus: &Prometheus, end: f64, window: &str) -> crate::Result<Option<Flavor>> {
    for flavor in Flavor::ALL {
        let probe = format!("count(max_over_time({}[{window}]))", flavor.probe());
        if let Sample::Value(count) = prometheus.instant(&probe, end).await?
            && count > 0.0
        {
            return Ok(Some(flavor));
        }
    }
    Ok(None)
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

async fn signal_check(
    prometheus: &Prometheus,
    options: &ServiceOptions,
    flavor: Flavor,
    signal: Signal,
    selector: &str,
    window: &str,
    volume: Option<f64>,
) -> CheckReport {
    let mut check = CheckReport::new(
        signal.name(),
        Kind::Service,
        Status::Pass,
        signal.unit(),
        "",
    );
    let threshold = options
        .thresholds
        .iter()
        .find(|threshold| threshold.signal == signal);
    check.threshold = threshold.map(Threshold::text);
    let Some(query) = query(flavor, signal, selector, window) else {
        check.status = Status::Skipped;
        check.reason = format!("{} exports no metric for it", flavor.as_str());
        return check;
    };
    check.details.push(format!("PromQL: {query}"));
    let now = match prometheus.instant(&query, options.end).await {
        Ok(sample) => sample,
        Err(error) => {
            check.status = Status::Error;
            check.reason = error.to_string();
            return check;
        }
    };
    // The previous windows, for the trend: the same query, one window earlier each.
    for k in 1..=options.trend_windows {
        let earlier = options.end - options.window.as_secs_f64() * f64::from(k);
        let value = match prometheus.instant(&query, earlier).await {
            Ok(Sample::Value(value)) if value.is_finite() => Some(value * signal.scale()),
            _ => None,
        };
        check.previous.push(value);
    }
    let (status, reason) = judge(
        signal,
        now.clone(),
        volume,
        threshold,
        &check.previous,
        options,
    );
    check.status = status;
    check.reason = reason;
    if let Sample::Value(value) = now {
        check.value = Some(value * signal.scale());
    }
    check
}

/// A signal's week: its value now, the requests in the window, its
/// threshold and the earlier windows' values. Too little traffic or no
/// data is inconclusive; past the threshold fails; more than the trend
/// tolerance above the earlier windows' median warns.
fn judge(
    signal: Signal,
    now: Sample,
    volume: Option<f64>,
    threshold: Option<&Threshold>,
    previous: &[Option<f64>],
    options: &ServiceOptions,
) -> (Status, String) {
    let value = match now {
        Sample::Value(value) => value * signal.scale(),
        Sample::NoData => {
            return (
                Status::Inconclusive,
                "no data: the query matched no series in the window".to_owned(),
            );
        }
        Sample::NaN => {
            return (
                Status::Inconclusive,
                "no data: the query returned NaN (no requests, or no histogram buckets, in the window)".to_owned(),
            );
        }
    };
    if let Some(volume) = volume.filter(|volume| *volume < options.min_requests) {
        return (
            Status::Inconclusive,
            format!(
                "only {volume:.0} requests in the window, fewer than --min-requests {:.0}: too few to judge",
                options.min_requests
            ),
        );
    }
    if !value.is_finite() {
        return (
            Status::Inconclusive,
            "the value is infinite: the quantile lies in the histogram's +Inf bucket".to_owned(),
        );
    }
    if let Some(threshold) = threshold
        && threshold.breached_by(value)
    {
        return (
            Status::Fail,
            format!(
                "{} breaches the SLO {}",
                show_value(Some(value), signal.unit()),
                threshold.text()
            ),
        );
    }
    let earlier: Vec<f64> = previous.iter().flatten().copied().collect();
    if let Some(median) = median(&earlier)
        && signal.higher_is_worse()
        && median > 0.0
        && value > median * (1.0 + options.trend_tolerance)
    {
        return (
            Status::Warn,
            format!(
                "{:+.0}% against the median of the previous {} windows ({})",
                (value / median - 1.0) * 100.0,
                earlier.len(),
                show_value(Some(median), signal.unit())
            ),
        );
    }
    let reason = match (threshold, earlier.is_empty()) {
        (Some(threshold), _) => format!("within {}", threshold.text()),
        (None, true) => "measured; no threshold and no earlier window to compare with".to_owned(),
        (None, false) => "measured; within the trend of the previous windows".to_owned(),
    };
    (Status::Pass, reason)
}

fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    })
}

/// What the resource checks need besides Prometheus.
#[derive(Debug, Clone)]
pub struct ResourceOptions {
    /// Label matchers for DCGM's series (e.g. `Hostname="gpu-1"`).
    pub selector: String,
    /// The window.
    pub window: Duration,
    /// The end of the window (unix seconds).
    pub end: f64,
    /// Cost of one GPU hour, for cost per million output tokens.
    pub gpu_hour_cost: Option<f64>,
    /// GPUs serving, when DCGM does not say.
    pub gpus: Option<u32>,
    /// Output tokens per second, from the service checks.
    pub tokens_per_second: Option<f64>,
    /// Average GPU utilization below this warns (%).
    pub min_gpu_utilization: f64,
    /// Memory headroom below this share warns.
    pub min_memory_headroom: f64,
}

/// GPU utilization and memory headroom from DCGM exporter, and the cost
/// per million output tokens.
pub async fn resource_checks(
    prometheus: &Prometheus,
    options: &ResourceOptions,
) -> Vec<CheckReport> {
    let window = promql_duration(options.window);
    let s = braces(&options.selector, "");
    let utilization_query = format!("avg(avg_over_time(DCGM_FI_DEV_GPU_UTIL{s}[{window}]))");
    // Each GPU's fullest moment over its memory (used + free + reserved, which
    // does not change), the fullest GPU.
    let memory_query = format!(
        "max(max_over_time(DCGM_FI_DEV_FB_USED{s}[{window}]) / (DCGM_FI_DEV_FB_USED{s} + DCGM_FI_DEV_FB_FREE{s} + DCGM_FI_DEV_FB_RESERVED{s}))"
    );
    let gpus_query = format!("count(max_over_time(DCGM_FI_DEV_GPU_UTIL{s}[{window}]))");
    let mut checks = Vec::new();
    let gpus = match prometheus.instant(&gpus_query, options.end).await {
        Err(error) => {
            for name in [
                "gpu-utilization",
                "gpu-memory-headroom",
                "cost-per-million-tokens",
            ] {
                checks.push(CheckReport::new(
                    name,
                    Kind::Resources,
                    Status::Error,
                    "",
                    error.to_string(),
                ));
            }
            return checks;
        }
        Ok(Sample::Value(count)) if count > 0.0 => Some(count),
        Ok(_) => None,
    };
    if gpus.is_none() {
        let reason = "no DCGM exporter series (DCGM_FI_DEV_GPU_UTIL) in the window: run dcgm-exporter beside the servers and have Prometheus scrape it";
        checks.push(CheckReport::skipped(
            "gpu-utilization",
            Kind::Resources,
            reason,
        ));
        checks.push(CheckReport::skipped(
            "gpu-memory-headroom",
            Kind::Resources,
            reason,
        ));
    } else {
        let gpus = gpus.unwrap_or(0.0);
        checks.push(
            gauge_check(
                prometheus,
                options.end,
                Gauge {
                    name: "gpu-utilization",
                    unit: "%",
                    query: &utilization_query,
                    minimum: options.min_gpu_utilization,
                    threshold: format!("≥ {}%", options.min_gpu_utilization),
                    value_of: |utilization| utilization,
                    no_data: "no data",
                },
                |value, low| {
                    if low {
                        format!("the GPUs were busy {value:.1}% of the window on average: capacity is idle (fewer replicas or a smaller GPU would do)")
                    } else {
                        format!("{value:.1}% on average over {gpus} GPUs")
                    }
                },
            )
            .await,
        );
        checks.push(
            gauge_check(
                prometheus,
                options.end,
                Gauge {
                    name: "gpu-memory-headroom",
                    unit: "ratio",
                    query: &memory_query,
                    minimum: options.min_memory_headroom,
                    threshold: format!("≥ {:.0}%", options.min_memory_headroom * 100.0),
                    value_of: |used| 1.0 - used,
                    no_data: "no data: needs DCGM_FI_DEV_FB_USED, _FB_FREE and _FB_RESERVED",
                },
                |headroom, low| {
                    if low {
                        format!(
                            "at its fullest a GPU had {:.1}% of its memory free",
                            headroom * 100.0
                        )
                    } else {
                        format!(
                            "at least {:.1}% of every GPU's memory stayed free",
                            headroom * 100.0
                        )
                    }
                },
            )
            .await,
        );
    }
    checks.push(cost_check(options, gpus));
    checks
}

/// A resource gauge to judge: its query, how its value is read, and the
/// minimum below which it warns.
struct Gauge<'a> {
    name: &'static str,
    unit: &'static str,
    query: &'a str,
    minimum: f64,
    threshold: String,
    value_of: fn(f64) -> f64,
    no_data: &'static str,
}

/// A gauge's check: warned below its minimum; no data is inconclusive, a
/// failed query an error. `reason` words the value (and whether it is low).
async fn gauge_check(
    prometheus: &Prometheus,
    end: f64,
    gauge: Gauge<'_>,
    reason: impl Fn(f64, bool) -> String,
) -> CheckReport {
    let mut check = CheckReport::new(gauge.name, Kind::Resources, Status::Pass, gauge.unit, "");
    check.threshold = Some(gauge.threshold);
    check.details.push(format!("PromQL: {}", gauge.query));
    match prometheus.instant(gauge.query, end).await {
        Ok(Sample::Value(raw)) => {
            let value = (gauge.value_of)(raw);
            let low = value < gauge.minimum;
            check.value = Some(value);
            check.reason = reason(value, low);
            if low {
                check.status = Status::Warn;
            }
        }
        Ok(_) => {
            check.status = Status::Inconclusive;
            gauge.no_data.clone_into(&mut check.reason);
        }
        Err(error) => {
            check.status = Status::Error;
            check.reason = error.to_string();
        }
    }
    check
}

fn cost_check(options: &ResourceOptions, dcgm_gpus: Option<f64>) -> CheckReport {
    let name = "cost-per-million-tokens";
    let Some(cost) = options.gpu_hour_cost else {
        return CheckReport::skipped(name, Kind::Resources, "no --gpu-hour-cost");
    };
    let Some(gpus) = dcgm_gpus.or(options.gpus.map(f64::from)) else {
        return CheckReport::skipped(
            name,
            Kind::Resources,
            "the GPU count is unknown: no DCGM series and no --gpus",
        );
    };
    let Some(tokens_per_second) = options.tokens_per_second.filter(|rate| *rate > 0.0) else {
        return CheckReport::new(
            name,
            Kind::Resources,
            Status::Inconclusive,
            "USD",
            "no output tokens measured in the window",
        );
    };
    let hours = options.window.as_secs_f64() / 3600.0;
    let tokens = tokens_per_second * options.window.as_secs_f64();
    let per_million = gpus * hours * cost / (tokens / 1e6);
    let mut check = CheckReport::new(
        name,
        Kind::Resources,
        Status::Info,
        "USD",
        format!(
            "{gpus:.0} GPUs × {hours:.2} h × {cost} per GPU hour over {:.0} output tokens",
            tokens
        ),
    );
    check.value = Some(per_million);
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slo_flags_parse_with_units_and_name_what_is_wrong() {
        assert_eq!(
            Threshold::parse("latency-p95=2s").map(|t| t.limit),
            Ok(2000.0)
        );
        assert_eq!(
            Threshold::parse("ttft-p95=250ms").map(|t| t.limit),
            Ok(250.0)
        );
        assert_eq!(
            Threshold::parse("error-rate=0.5%").map(|t| t.limit),
            Ok(0.005)
        );
        assert_eq!(
            Threshold::parse("error-rate=0.02").map(|t| t.limit),
            Ok(0.02)
        );
        assert_eq!(
            Threshold::parse("tokens-per-second=50").map(|t| t.limit),
            Ok(50.0)
        );
        assert!(Threshold::parse("latency=2s").is_err_and(|e| e.contains("latency-p95")));
        assert!(Threshold::parse("error-rate=150%").is_err());
        assert!(Threshold::parse("latency-p95=fast").is_err_and(|e| e.contains("500ms")));
        assert!(Threshold::parse("latency-p95=NaNs").is_err());
    }

    #[test]
    fn queries_keep_le_and_apply_the_selector() {
        let latency = query(Flavor::Vllm, Signal::LatencyP95, r#"model_name="m""#, "7d");
        assert_eq!(
            latency.as_deref(),
            Some(
                r#"histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket{model_name="m"}[7d])))"#
            )
        );
        let errors =
            query(Flavor::Router, Signal::ErrorRate, r#"version="1""#, "2m").unwrap_or_default();
        assert!(
            errors.contains(r#"{version="1",class=~"5xx|connection-error"}[2m]"#),
            "{errors}"
        );
        assert_eq!(query(Flavor::Tgi, Signal::TtftP95, "", "7d"), None);
        assert_eq!(
            volume_query(Flavor::Tgi, "", "7d"),
            "sum(increase(tgi_request_count{}[7d]))"
        );
    }

    #[test]
    fn cost_needs_a_gpu_count_and_tokens() {
        let options = ResourceOptions {
            selector: String::new(),
            window: Duration::from_secs(3600),
            end: 0.0,
            gpu_hour_cost: Some(2.0),
            gpus: None,
            tokens_per_second: Some(1000.0),
            min_gpu_utilization: 10.0,
            min_memory_headroom: 0.1,
        };
        assert_eq!(cost_check(&options, None).status, Status::Skipped);
        let check = cost_check(&options, Some(4.0));
        // 4 GPUs × 1 h × $2 over 3.6 M tokens.
        assert!(
            (check.value.unwrap_or(0.0) - 8.0 / 3.6).abs() < 1e-9,
            "{check:?}"
        );
        assert_eq!(check.status, Status::Info);
    }

    fn options() -> ServiceOptions {
        ServiceOptions {
            flavor: Some(Flavor::Router),
            selector: None,
            version: "0.1.0".into(),
            served_model: "tiny".into(),
            window: Duration::from_secs(604_800),
            trend_windows: 3,
            trend_tolerance: 0.25,
            min_requests: 100.0,
            thresholds: Threshold::defaults(),
            end: 0.0,
        }
    }

    #[test]
    fn a_week_fails_past_its_slo_warns_past_its_trend_and_is_inconclusive_when_quiet() {
        let options = options();
        let slo = Threshold {
            signal: Signal::LatencyP95,
            limit: 2000.0,
        };
        let judged = |seconds: f64, volume: f64, previous: &[Option<f64>]| {
            judge(
                Signal::LatencyP95,
                Sample::Value(seconds),
                Some(volume),
                Some(&slo),
                previous,
                &options,
            )
        };
        // 2.5 s against a 2 s SLO.
        assert_eq!(judged(2.5, 1000.0, &[]).0, Status::Fail);
        // 1.5 s, the earlier weeks 1 s: +50% is past the 25% tolerance.
        let (status, reason) = judged(1.5, 1000.0, &[Some(1000.0), None, Some(1000.0)]);
        assert_eq!(status, Status::Warn, "{reason}");
        assert!(
            reason.contains("+50%") && reason.contains("previous 2 windows"),
            "{reason}"
        );
        // +10% is within it.
        assert_eq!(judged(1.1, 1000.0, &[Some(1000.0)]).0, Status::Pass);
        // 99 requests are too few, whatever the value.
        assert_eq!(judged(9.0, 99.0, &[]).0, Status::Inconclusive);
        // No series, NaN, and a quantile in the +Inf bucket are not passes.
        for sample in [Sample::NoData, Sample::NaN, Sample::Value(f64::INFINITY)] {
            let (status, _) = judge(
                Signal::LatencyP95,
                sample,
                Some(1000.0),
                Some(&slo),
                &[],
                &options,
            );
            assert_eq!(status, Status::Inconclusive);
        }
        // Throughput falling is traffic, not a warning; below a minimum it fails.
        let minimum = Threshold {
            signal: Signal::TokensPerSecond,
            limit: 50.0,
        };
        let (status, _) = judge(
            Signal::TokensPerSecond,
            Sample::Value(10.0),
            Some(1000.0),
            None,
            &[Some(100.0)],
            &options,
        );
        assert_eq!(status, Status::Pass);
        let (status, _) = judge(
            Signal::TokensPerSecond,
            Sample::Value(10.0),
            Some(1000.0),
            Some(&minimum),
            &[],
            &options,
        );
        assert_eq!(status, Status::Fail);
    }

    #[test]
    fn medians_of_even_and_odd_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
