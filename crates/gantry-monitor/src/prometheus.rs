//! Prometheus' HTTP API: instant queries (`/api/v1/query`) and range
//! queries (`/api/v1/query_range`), with the answers read as numbers or
//! as "no data" — never as a pass.

use std::time::Duration;

use gantry_core::RetryPolicy;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::http::send;

/// Prometheus answers range queries with at most this many points per series.
const MAX_POINTS: u64 = 11_000;

/// A Prometheus server.
#[derive(Debug, Clone)]
pub struct Prometheus {
    url: String,
    http: reqwest::Client,
    policy: RetryPolicy,
}

/// One number a query came to, or why there is none.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    /// The value (finite or infinite).
    Value(f64),
    /// The query matched no series.
    NoData,
    /// The query returned NaN (a ratio of zero requests, a quantile of an
    /// empty histogram).
    NaN,
}

impl Prometheus {
    /// A client of the server at `url` (e.g. `http://127.0.0.1:9090`).
    pub fn new(url: &str, policy: RetryPolicy) -> Result<Prometheus> {
        let parsed = url.parse::<reqwest::Url>().map_err(|error| {
            Error::Input(format!(
                "--prometheus {url:?} is not a URL ({error}); expected e.g. http://prometheus:9090"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Input(format!(
                "--prometheus {url:?}: expected an http:// or https:// URL"
            )));
        }
        let http = reqwest::Client::builder()
            .build()
            .map_err(|error| Error::Service(format!("cannot build an HTTP client: {error}")))?;
        Ok(Prometheus {
            url: url.trim_end_matches('/').to_owned(),
            http,
            policy,
        })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// An instant query at `time` (unix seconds): the first series' value.
    pub async fn instant(&self, query: &str, time: f64) -> Result<Sample> {
        let data = self
            .call(
                "/api/v1/query",
                &[("query", query), ("time", &format!("{time:.3}"))],
            )
            .await?;
        let result = &data["result"];
        let value = match data["resultType"].as_str() {
            Some("scalar") => Some(result),
            _ => result.get(0).and_then(|first| first.get("value")),
        };
        match value.and_then(|value| value.get(1)).and_then(Value::as_str) {
            None => Ok(Sample::NoData),
            Some(text) => parse_value(text, query).map(|value| {
                if value.is_nan() {
                    Sample::NaN
                } else {
                    Sample::Value(value)
                }
            }),
        }
    }

    /// A range query from `start` to `end` (unix seconds): the first
    /// series' finite points. The step is widened so no series has more
    /// points than Prometheus allows.
    pub async fn range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step: Duration,
    ) -> Result<Vec<(f64, f64)>> {
        let span = (end - start).max(1.0) as u64;
        let step = step.as_secs().max(span / MAX_POINTS + 1);
        let data = self
            .call(
                "/api/v1/query_range",
                &[
                    ("query", query),
                    ("start", &format!("{start:.3}")),
                    ("end", &format!("{end:.3}")),
                    ("step", &step.to_string()),
                ],
            )
            .await?;
        let Some(values) = data["result"]
            .get(0)
            .and_then(|series| series["values"].as_array())
        else {
            return Ok(Vec::new());
        };
        let mut points = Vec::with_capacity(values.len());
        for point in values {
            let (Some(time), Some(text)) = (point[0].as_f64(), point[1].as_str()) else {
                continue;
            };
            let value = parse_value(text, query)?;
            if value.is_finite() {
                points.push((time, value));
            }
        }
        Ok(points)
    }

    /// POSTs a form-encoded query (long queries fit) and returns `data`.
    async fn call(&self, path: &str, form: &[(&str, &str)]) -> Result<Value> {
        let url = format!("{}{path}", self.url);
        let answer = send(&self.policy, "Prometheus", "POST", &url, || {
            self.http.post(&url).form(form)
        })
        .await?;
        let query = form
            .iter()
            .find(|(name, _)| *name == "query")
            .map_or("", |(_, query)| *query);
        let body: Value = serde_json::from_str(&answer.body).map_err(|_| {
            Error::Service(format!(
                "Prometheus answered POST {url} with {} and a body that is not its API's JSON: {}",
                answer.status,
                answer.body.chars().take(200).collect::<String>()
            ))
        })?;
        if body["status"].as_str() != Some("success") {
            return Err(Error::Service(format!(
                "Prometheus refused the query {query:?} ({} {}): {}",
                answer.status,
                body["errorType"].as_str().unwrap_or("error"),
                body["error"].as_str().unwrap_or("no reason given")
            )));
        }
        Ok(body["data"].clone())
    }
}

/// Prometheus writes numbers as strings, with `+Inf`, `-Inf` and `NaN`.
fn parse_value(text: &str, query: &str) -> Result<f64> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| {
            Error::Service(format!(
                "Prometheus returned {text:?} for {query:?}, which is not a number"
            ))
        }),
    }
}

/// A duration as PromQL writes it (`604800s` → `7d`, `90s` → `90s`).
pub fn promql_duration(duration: Duration) -> String {
    let seconds = duration.as_secs().max(1);
    for (unit, size) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_promql() {
        assert_eq!(promql_duration(Duration::from_secs(604_800)), "1w");
        assert_eq!(promql_duration(Duration::from_secs(172_800)), "2d");
        assert_eq!(promql_duration(Duration::from_secs(120)), "2m");
        assert_eq!(promql_duration(Duration::from_secs(90)), "90s");
    }

    #[test]
    fn infinities_and_nan_are_read() {
        assert_eq!(parse_value("+Inf", "q").ok(), Some(f64::INFINITY));
        assert!(parse_value("NaN", "q").is_ok_and(f64::is_nan));
        assert_eq!(parse_value("0.25", "q").ok(), Some(0.25));
        assert!(parse_value("many", "q").is_err());
    }
}
