//! What the router records per version: a bounded ring of per-request
//! samples (what `GET /v1/metrics/{version}` answers and the relative judge
//! ranks) and the Prometheus families `/metrics` exports.

use std::collections::VecDeque;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::{StatusCounts, VersionMetrics};

/// Samples kept per version: at 1,000 requests/s, the last 200 s; older
/// ones are dropped and a window reaching back that far says `truncated`.
const MAX_SAMPLES: usize = 200_000;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Ok,
    ClientError,
    ServerError,
    ConnectionError,
}

impl Class {
    pub(crate) fn of_status(status: u16) -> Class {
        match status {
            400..=499 => Class::ClientError,
            500..=599 => Class::ServerError,
            _ => Class::Ok,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Class::Ok => "ok",
            Class::ClientError => "4xx",
            Class::ServerError => "5xx",
            Class::ConnectionError => "connection-error",
        }
    }

    const ALL: [Class; 4] = [
        Class::Ok,
        Class::ClientError,
        Class::ServerError,
        Class::ConnectionError,
    ];
}

/// One finished request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// When it finished, milliseconds since the epoch.
    pub(crate) at_ms: u64,
    pub(crate) class: Class,
    pub(crate) latency_us: u64,
    pub(crate) ttft_us: Option<u64>,
    pub(crate) tokens: u64,
}

/// A version's recent samples.
#[derive(Debug, Default)]
pub(crate) struct Samples {
    ring: VecDeque<Sample>,
    /// The newest dropped sample's time: windows starting before it are cut.
    dropped_until_ms: u64,
}

impl Samples {
    pub(crate) fn push(&mut self, sample: Sample) {
        if self.ring.len() == MAX_SAMPLES
            && let Some(old) = self.ring.pop_front()
        {
            self.dropped_until_ms = old.at_ms;
        }
        self.ring.push_back(sample);
    }

    /// The requests that finished at or after `since_ms`.
    pub(crate) fn since(&self, version: &str, since_ms: u64, until_ms: u64) -> VersionMetrics {
        let start = self.ring.partition_point(|sample| sample.at_ms < since_ms);
        let mut status = StatusCounts::default();
        let mut latency_ms = Vec::new();
        let mut ttft_ms = Vec::new();
        let mut output_tokens = 0;
        for sample in self.ring.range(start..) {
            match sample.class {
                Class::Ok => {
                    status.ok += 1;
                    latency_ms.push(sample.latency_us as f64 / 1000.0);
                    if let Some(ttft) = sample.ttft_us {
                        ttft_ms.push(ttft as f64 / 1000.0);
                    }
                }
                Class::ClientError => status.client_error += 1,
                Class::ServerError => status.server_error += 1,
                Class::ConnectionError => status.connection_error += 1,
            }
            output_tokens += sample.tokens;
        }
        VersionMetrics {
            version: version.to_owned(),
            since_ms,
            until_ms,
            requests: status.ok
                + status.client_error
                + status.server_error
                + status.connection_error,
            status,
            latency_ms,
            ttft_ms,
            output_tokens,
            truncated: self.dropped_until_ms >= since_ms && self.dropped_until_ms > 0,
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    version: String,
    class: String,
}

fn seconds_histogram() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The Prometheus families.
pub(crate) struct Exported {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<VersionLabels, Histogram, fn() -> Histogram>,
    ttft: Family<VersionLabels, Histogram, fn() -> Histogram>,
    tokens: Family<VersionLabels, Counter>,
    weight: Family<VersionLabels, Gauge>,
    healthy: Family<VersionLabels, Gauge>,
    reversions: Counter,
}

/// One version's handles into the families, taken once so that the
/// per-request path does no label lookups.
#[derive(Clone)]
pub(crate) struct VersionHandles {
    requests: [Counter; 4],
    duration: Histogram,
    ttft: Histogram,
    tokens: Counter,
    pub(crate) weight: Gauge,
    pub(crate) healthy: Gauge,
}

impl VersionHandles {
    pub(crate) fn record(&self, sample: &Sample) {
        let index = Class::ALL
            .iter()
            .position(|class| *class == sample.class)
            .unwrap_or(0);
        self.requests[index].inc();
        if sample.class == Class::Ok {
            self.duration.observe(sample.latency_us as f64 / 1e6);
            if let Some(ttft) = sample.ttft_us {
                self.ttft.observe(ttft as f64 / 1e6);
            }
        }
        self.tokens.inc_by(sample.tokens);
    }
}

impl Exported {
    pub(crate) fn new() -> Exported {
        let mut registry = Registry::with_prefix("gantry_router");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: Family<VersionLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(seconds_histogram);
        let ttft: Family<VersionLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(seconds_histogram);
        let tokens = Family::<VersionLabels, Counter>::default();
        let weight = Family::<VersionLabels, Gauge>::default();
        let healthy = Family::<VersionLabels, Gauge>::default();
        let reversions = Counter::default();
        registry.register(
            "requests",
            "Requests answered, by model version and outcome class (ok, 4xx, 5xx, connection-error)",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "End-to-end latency of successful requests, by model version",
            duration.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "Time to the first chunk of successful streamed replies, by model version",
            ttft.clone(),
        );
        registry.register(
            "output_tokens",
            "Output tokens (from usage, or counted stream chunks), by model version",
            tokens.clone(),
        );
        registry.register(
            "backend_weight_percent",
            "Share of traffic routed to each model version, in percent",
            weight.clone(),
        );
        registry.register(
            "backend_healthy",
            "1 when the model version's server answers its health checks",
            healthy.clone(),
        );
        registry.register(
            "lease_reversions",
            "Times the router returned all traffic to stable because a canary lease expired",
            reversions.clone(),
        );
        Exported {
            registry,
            requests,
            duration,
            ttft,
            tokens,
            weight,
            healthy,
            reversions,
        }
    }

    pub(crate) fn handles(&self, version: &str) -> VersionHandles {
        let labels = VersionLabels {
            version: version.to_owned(),
        };
        let requests = Class::ALL.map(|class| {
            self.requests
                .get_or_create(&RequestLabels {
                    version: version.to_owned(),
                    class: class.label().to_owned(),
                })
                .clone()
        });
        VersionHandles {
            requests,
            duration: self.duration.get_or_create(&labels).clone(),
            ttft: self.ttft.get_or_create(&labels).clone(),
            tokens: self.tokens.get_or_create(&labels).clone(),
            weight: self.weight.get_or_create(&labels).clone(),
            healthy: self.healthy.get_or_create(&labels).clone(),
        }
    }

    /// Drops a retired version's series.
    pub(crate) fn forget(&self, version: &str) {
        let labels = VersionLabels {
            version: version.to_owned(),
        };
        for class in Class::ALL {
            self.requests.remove(&RequestLabels {
                version: version.to_owned(),
                class: class.label().to_owned(),
            });
        }
        self.duration.remove(&labels);
        self.ttft.remove(&labels);
        self.tokens.remove(&labels);
        self.weight.remove(&labels);
        self.healthy.remove(&labels);
    }

    pub(crate) fn reverted(&self) {
        self.reversions.inc();
    }

    /// The OpenMetrics text.
    pub(crate) fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64, class: Class, latency_ms: u64) -> Sample {
        Sample {
            at_ms,
            class,
            latency_us: latency_ms * 1000,
            ttft_us: Some(latency_ms * 500),
            tokens: 3,
        }
    }

    #[test]
    fn a_window_counts_only_what_finished_in_it() {
        let mut samples = Samples::default();
        samples.push(sample(10, Class::Ok, 5));
        samples.push(sample(20, Class::ServerError, 7));
        samples.push(sample(30, Class::Ok, 9));
        samples.push(sample(40, Class::ConnectionError, 1));
        samples.push(sample(50, Class::ClientError, 1));
        let window = samples.since("1.0.0", 20, 60);
        assert_eq!(window.requests, 4);
        assert_eq!(window.errors(), 2);
        assert_eq!(window.status.client_error, 1);
        assert_eq!(window.latency_ms, vec![9.0]);
        assert_eq!(window.ttft_ms, vec![4.5]);
        assert_eq!(window.output_tokens, 12);
        assert!(!window.truncated);
    }

    #[test]
    fn a_window_older_than_the_ring_says_it_is_truncated() {
        let mut samples = Samples::default();
        for at in 0..(MAX_SAMPLES as u64 + 10) {
            samples.push(sample(at + 1, Class::Ok, 1));
        }
        assert!(samples.since("v", 1, u64::MAX).truncated);
        assert!(!samples.since("v", 100, u64::MAX).truncated);
    }

    #[test]
    fn the_export_names_versions_and_classes() {
        let exported = Exported::new();
        let handles = exported.handles("1.2.0");
        handles.record(&sample(1, Class::ServerError, 3));
        handles.record(&sample(2, Class::Ok, 3));
        handles.weight.set(25);
        let text = exported.encode().expect("encodes");
        assert!(
            text.contains(r#"gantry_router_requests_total{version="1.2.0",class="5xx"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"gantry_router_backend_weight_percent{version="1.2.0"} 25"#),
            "{text}"
        );
        assert!(
            text.contains("gantry_router_time_to_first_token_seconds_bucket"),
            "{text}"
        );
        exported.forget("1.2.0");
        assert!(!exported.encode().expect("encodes").contains("1.2.0"));
    }
}
