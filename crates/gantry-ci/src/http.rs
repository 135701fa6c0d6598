//! Forge calls through gantry's one retry loop ([`gantry_core::retry`]), and
//! the retry policy the environment sets.

use std::future::Future;
use std::time::Duration;

use gantry_core::RetryPolicy;
use gantry_core::retry::{Attempt, retry};

use crate::environment::{EnvVars, Environment};
use crate::error::{Error, Result};

pub(crate) use gantry_core::transport_reason;

/// The default [`RetryPolicy`], adjusted by `GANTRY_HTTP_ATTEMPTS`,
/// `GANTRY_HTTP_BACKOFF_MS` and `GANTRY_HTTP_TIMEOUT_S`.
pub fn retry_policy(environment: &Environment) -> RetryPolicy {
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
    let answered = retry(
        policy,
        || {
            let attempt = tokio::time::timeout(policy.timeout, send());
            async move {
                match attempt.await {
                    Ok(Ok(response)) => Attempt::Answer(response),
                    Ok(Err(reason)) => Attempt::Failed(reason),
                    Err(_) => {
                        Attempt::Failed(format!("no answer within {}s", policy.timeout.as_secs()))
                    }
                }
            }
        },
        |response| (response.status, &response.headers),
        tokio::time::sleep,
    )
    .await;
    match answered {
        Ok(answered) if (200..300).contains(&answered.answer.status) => Ok(answered.answer),
        Ok(answered) => Err(http_error(method, url, &answered.answer, answered.note)),
        Err(failed) => Err(Error::Connection {
            method: method.to_owned(),
            url: url.to_owned(),
            attempts: failed.attempts,
            reason: failed.error,
        }),
    }
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
    let message = match value.get("message").or_else(|| value.get("error"))? {
        serde_json::Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    Some(with_details(
        message,
        value.get("errors").and_then(serde_json::Value::as_array),
    ))
}

/// `message` followed by each of GitHub's `errors[]` (its `message`, or
/// `field: code`).
pub(crate) fn with_details(mut message: String, errors: Option<&Vec<serde_json::Value>>) -> String {
    if let Some(errors) = errors {
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
    message
}

/// The first item of a listing read 100 a page (at most `max_pages`) for
/// which `matches` holds; a short page is the last.
pub(crate) async fn find_in_pages<T, F, Fut>(
    max_pages: u32,
    mut page: F,
    matches: impl Fn(&T) -> bool,
) -> Result<Option<T>>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Vec<T>>>,
{
    for number in 1..=max_pages {
        let items = page(number).await?;
        let last = items.len() < 100;
        if let Some(found) = items.into_iter().find(|item| matches(item)) {
            return Ok(Some(found));
        }
        if last {
            break;
        }
    }
    Ok(None)
}

/// A `labels=` query value: each label URL-encoded, joined by commas (the
/// form both forges' issue lists take).
pub(crate) fn labels_parameter(labels: &[String]) -> String {
    labels
        .iter()
        .map(|label| url::form_urlencoded::byte_serialize(label.as_bytes()).collect::<String>())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

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
