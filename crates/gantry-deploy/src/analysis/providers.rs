//! The analysis providers that ask something outside the router: a PromQL
//! query (one number per version) and an HTTP probe.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::{Check, CheckResult, Outcome, PrometheusConfig, judge_value, render};

/// Judges a PromQL check: the canary's value, and stable's when given (a
/// relative judge), each from `server`.
pub(crate) async fn prometheus_check(
    http: &reqwest::Client,
    server: Option<&PrometheusConfig>,
    check: &Check,
    canary: &str,
    stable: Option<&str>,
    window_seconds: u64,
) -> CheckResult {
    let error = |reason: String| CheckResult {
        name: check.name.clone(),
        outcome: Outcome::Error,
        canary: None,
        stable: None,
        p_value: None,
        reason,
    };
    let (Some(server), Some(query)) = (server, &check.query) else {
        return error("no Prometheus server or query configured".to_owned());
    };
    let canary_value = match promql(http, &server.url, query, canary, window_seconds).await {
        Ok(value) => value,
        Err(reason) => return error(reason),
    };
    let stable_value = match stable {
        Some(stable) => match promql(http, &server.url, query, stable, window_seconds).await {
            Ok(value) => Some(value),
            Err(reason) => return error(reason),
        },
        None => None,
    };
    judge_value(check, canary_value, stable_value)
}

/// One instant query for `version`: its single number, or why there is none
/// (no series and NaN are errors, never a pass).
async fn promql(
    http: &reqwest::Client,
    server: &str,
    template: &str,
    version: &str,
    window_seconds: u64,
) -> Result<f64, String> {
    let values = BTreeMap::from([
        ("version", version.to_owned()),
        ("window", format!("{window_seconds}s")),
    ]);
    let query = render(template, &values).map_err(|error| error.to_string())?;
    let url = format!("{}/api/v1/query", server.trim_end_matches('/'));
    let response = http
        .get(&url)
        .query(&[("query", query.as_str())])
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map_err(|error| {
            format!(
                "Prometheus at {server} did not answer: {}",
                gantry_core::transport_reason(&error)
            )
        })?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|error| {
        format!("Prometheus at {server} answered {status} with a body that is not JSON: {error}")
    })?;
    if body.get("status").and_then(Value::as_str) != Some("success") {
        return Err(format!(
            "Prometheus at {server} refused the query {query:?}: {}",
            body.get("error")
                .and_then(Value::as_str)
                .unwrap_or("no reason given")
        ));
    }
    let result = &body["data"]["result"];
    let value = match body["data"]["resultType"].as_str() {
        Some("scalar") => result.get(1),
        _ => result
            .get(0)
            .and_then(|first| first.get("value"))
            .and_then(|value| value.get(1)),
    };
    let Some(text) = value.and_then(Value::as_str) else {
        return Err(format!(
            "the query {query:?} returned no data (no series matched in the window)"
        ));
    };
    let number: f64 = text
        .parse()
        .map_err(|_| format!("the query {query:?} returned {text:?}, not a number"))?;
    if number.is_nan() {
        return Err(format!(
            "the query {query:?} returned NaN (no requests in the window?)"
        ));
    }
    Ok(number)
}

/// Judges an HTTP probe: GET the check's URL (`{{ version }}` filled in);
/// 2xx passes, another status fails, no answer is an error.
pub(crate) async fn http_check(
    http: &reqwest::Client,
    check: &Check,
    version: &str,
) -> CheckResult {
    let result = |outcome, reason: String| CheckResult {
        name: check.name.clone(),
        outcome,
        canary: None,
        stable: None,
        p_value: None,
        reason,
    };
    let values = BTreeMap::from([("version", version.to_owned())]);
    let url = match check.url.as_deref().map(|url| render(url, &values)) {
        Some(Ok(url)) => url,
        Some(Err(error)) => return result(Outcome::Error, error.to_string()),
        None => return result(Outcome::Error, "no url".to_owned()),
    };
    match http.get(&url).timeout(Duration::from_secs(15)).send().await {
        Ok(response) if response.status().is_success() => result(
            Outcome::Success,
            format!("GET {url} answered {}", response.status()),
        ),
        Ok(response) => result(
            Outcome::Failure,
            format!("GET {url} answered {}", response.status()),
        ),
        Err(error) => result(
            Outcome::Error,
            format!("GET {url}: {}", gantry_core::transport_reason(&error)),
        ),
    }
}
