//! Bounded retries with jittered backoff for forge calls, honouring `Retry-After` and rate limits.

use std::future::Future;
use std::time::Duration;

use rand::Rng as _;

use crate::environment::{EnvVars, Environment};
use crate::error::{Error, Result};

/// How hard gantry tries before it gives up on a forge call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Backoff before the second attempt; doubles each time, with full jitter.
    pub base_delay: Duration,
    /// The longest gantry waits between attempts, whatever the server asks.
    pub max_delay: Duration,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The default policy, adjusted by `GANTRY_HTTP_ATTEMPTS`,
    /// `GANTRY_HTTP_BACKOFF_MS` and `GANTRY_HTTP_TIMEOUT_S`.
    pub fn from_environment(environment: &Environment) -> RetryPolicy {
        let mut policy = RetryPolicy::default();
        let number = |name: &str| {
            environment
                .get(name)
                .and_then(|value| value.trim().parse::<u64>().ok())
        };
        if let Some(attempts) = number(EnvVars::GANTRY_HTTP_ATTEMPTS) {
            policy.attempts = u32::try_from(attempts.clamp(1, 20)).unwrap_or(4);
        }
        if let Some(milliseconds) = number(EnvVars::GANTRY_HTTP_BACKOFF_MS) {
            policy.base_delay = Duration::from_millis(milliseconds);
        }
        if let Some(seconds) = number(EnvVars::GANTRY_HTTP_TIMEOUT_S) {
            policy.timeout = Duration::from_secs(seconds.max(1));
        }
        policy
    }

    /// Full-jitter exponential backoff before attempt `attempt` (1-based retry count).
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1_u32 << retry.min(16))
            .min(self.max_delay);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=ceiling_ms))
    }

    /// How long to wait before retrying a response, or `None` when it must not be retried.
    /// `Err` carries why a retryable response is not retried (the wait is too long).
    pub fn retry_delay(
        &self,
        retry: u32,
        status: u16,
        headers: &http::HeaderMap,
    ) -> Option<std::result::Result<Duration, String>> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
        };
        let retry_after = header("retry-after")
            .and_then(|value| value.parse::<u64>().ok())
            .map(Duration::from_secs);
        // GitHub's primary rate limit: 403 or 429 with no requests left until the reset time.
        let rate_limited = header("x-ratelimit-remaining") == Some("0");
        let reset_wait = header("x-ratelimit-reset")
            .and_then(|value| value.parse::<u64>().ok())
            .map(|reset| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_secs())
                    .unwrap_or(0);
                Duration::from_secs(reset.saturating_sub(now) + 1)
            });
        let retryable = matches!(status, 429 | 500 | 502 | 503 | 504)
            || (status == 403 && (rate_limited || retry_after.is_some()));
        if !retryable {
            return None;
        }
        let wanted = retry_after.or(if rate_limited { reset_wait } else { None });
        Some(match wanted {
            Some(wait) if wait > self.max_delay => Err(format!(
                "the server asked to wait {}s, longer than gantry's limit of {}s",
                wait.as_secs(),
                self.max_delay.as_secs()
            )),
            Some(wait) => Ok(wait),
            None => Ok(self.backoff(retry)),
        })
    }
}

/// A response read whole: forge answers are small JSON documents.
#[derive(Debug, Clone)]
pub(crate) struct RawResponse {
    pub(crate) status: u16,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: String,
}

impl RawResponse {
    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
    ) -> Result<T> {
        serde_json::from_str(&self.body).map_err(|source| Error::UnexpectedBody {
            method: method.to_owned(),
            url: url.to_owned(),
            reason: source.to_string(),
        })
    }
}

/// Sends a request made by `send` until it succeeds, fails for good, or the
/// policy runs out. Non-2xx answers that are not retried become [`Error::Http`]
/// with the forge's own message.
pub(crate) async fn send_with_retry<F, Fut>(
    policy: &RetryPolicy,
    method: &str,
    url: &str,
    mut send: F,
) -> Result<RawResponse>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::result::Result<RawResponse, String>>,
{
    let mut retry = 0;
    loop {
        let attempt = tokio::time::timeout(policy.timeout, send()).await;
        let outcome = match attempt {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {}s", policy.timeout.as_secs())),
        };
        let more_attempts = retry + 1 < policy.attempts;
        match outcome {
            Ok(response) if (200..300).contains(&response.status) => return Ok(response),
            Ok(response) => {
                let delay = policy.retry_delay(retry + 1, response.status, &response.headers);
                match delay {
                    Some(Ok(delay)) if more_attempts => tokio::time::sleep(delay).await,
                    Some(Err(reason)) => {
                        return Err(http_error(method, url, &response, Some(reason)));
                    }
                    _ => return Err(http_error(method, url, &response, None)),
                }
            }
            Err(reason) if more_attempts => {
                let _ = reason;
                tokio::time::sleep(policy.backoff(retry + 1)).await;
            }
            Err(reason) => {
                return Err(Error::Connection {
                    method: method.to_owned(),
                    url: url.to_owned(),
                    attempts: retry + 1,
                    reason,
                });
            }
        }
        retry += 1;
    }
}

/// The innermost cause of a transport error: "connection refused" rather than a chain of wrappers.
pub fn transport_reason(error: &dyn std::error::Error) -> String {
    let mut reason = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        reason = cause.to_string();
        source = cause.source();
    }
    reason
}

fn http_error(method: &str, url: &str, response: &RawResponse, note: Option<String>) -> Error {
    let mut message = forge_message(&response.body);
    if let Some(note) = note {
        message = Some(match message {
            Some(message) => format!("{message} ({note})"),
            None => note,
        });
    }
    Error::Http {
        method: method.to_owned(),
        url: url.to_owned(),
        status: response.status,
        message,
    }
}

/// The error message a forge put in its JSON body: GitHub's `message` plus
/// each `errors[].message`, GitLab's `message` or `error`.
fn forge_message(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let mut message = match value.get("message").or_else(|| value.get("error"))? {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    if let Some(errors) = value.get("errors").and_then(serde_json::Value::as_array) {
        let details: Vec<String> = errors
            .iter()
            .filter_map(|error| {
                error
                    .get("message")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| {
                        let field = error.get("field")?.as_str()?;
                        let code = error.get("code")?.as_str()?;
                        Some(format!("{field}: {code}"))
                    })
            })
            .collect();
        if !details.is_empty() {
            message = format!("{message} ({})", details.join("; "));
        }
    }
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    http::HeaderName::from_static(name),
                    http::HeaderValue::from_str(value).expect("header"),
                )
            })
            .collect()
    }

    #[test]
    fn retry_decisions() {
        let policy = RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
        };
        assert_eq!(policy.retry_delay(1, 404, &headers(&[])), None);
        assert_eq!(policy.retry_delay(1, 422, &headers(&[])), None);
        assert_eq!(
            policy.retry_delay(1, 403, &headers(&[])),
            None,
            "a plain 403 is a permission problem"
        );
        assert_eq!(
            policy.retry_delay(1, 429, &headers(&[("retry-after", "3")])),
            Some(Ok(Duration::from_secs(3)))
        );
        assert_eq!(
            policy.retry_delay(1, 403, &headers(&[("retry-after", "2")])),
            Some(Ok(Duration::from_secs(2)))
        );
        let far_future = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs()
            + 3600)
            .to_string();
        let verdict = policy.retry_delay(
            1,
            403,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &far_future),
            ]),
        );
        assert!(
            matches!(verdict, Some(Err(ref reason)) if reason.contains("longer than gantry's limit")),
            "{verdict:?}"
        );
        for status in [500, 502, 503, 504] {
            let Some(Ok(delay)) = policy.retry_delay(2, status, &headers(&[])) else {
                panic!("{status} must retry")
            };
            assert!(delay <= Duration::from_millis(400), "{delay:?}");
        }
    }

    #[test]
    fn forge_messages_include_details() {
        assert_eq!(
            forge_message(r#"{"message":"Validation Failed","errors":[{"resource":"IssueComment","code":"custom","field":"body","message":"body is too long (maximum is 65536 characters)"}]}"#).as_deref(),
            Some("Validation Failed (body is too long (maximum is 65536 characters))")
        );
        assert_eq!(
            forge_message(r#"{"message":"403 Forbidden"}"#).as_deref(),
            Some("403 Forbidden")
        );
        assert_eq!(
            forge_message(r#"{"error":"insufficient_scope"}"#).as_deref(),
            Some("insufficient_scope")
        );
        assert_eq!(forge_message("<html>"), None);
    }

    #[tokio::test]
    async fn retries_then_gives_up_with_the_last_status() {
        let policy = RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        };
        let mut calls = 0;
        let error = send_with_retry(&policy, "GET", "http://127.0.0.1:1/x", || {
            calls += 1;
            async {
                Ok(RawResponse {
                    status: 502,
                    headers: http::HeaderMap::new(),
                    body: r#"{"message":"bad gateway"}"#.into(),
                })
            }
        })
        .await
        .expect_err("gives up");
        assert_eq!(calls, 3);
        assert_eq!(
            error.to_string(),
            "GET http://127.0.0.1:1/x answered 502: bad gateway"
        );
    }

    #[tokio::test]
    async fn connection_errors_are_retried_and_reported() {
        let policy = RetryPolicy {
            attempts: 2,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        };
        let error = send_with_retry(&policy, "POST", "http://127.0.0.1:1/y", || async {
            Err("connection refused".to_owned())
        })
        .await
        .expect_err("gives up");
        assert_eq!(
            error.to_string(),
            "POST http://127.0.0.1:1/y failed after 2 attempt(s): connection refused"
        );
    }
}
