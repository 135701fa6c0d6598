//! The one way monitor calls a service: a timeout per request, bounded
//! jittered retries through gantry-core's loop, and errors that name the
//! method, URL and status.

use gantry_core::RetryPolicy;
use gantry_core::retry::{Attempt, retry};

use crate::error::{Error, Result};

/// An answer: status, headers and body text.
pub(crate) struct Answer {
    pub(crate) status: u16,
    headers: http::HeaderMap,
    pub(crate) body: String,
}

/// Sends what `build` makes until a 2xx answer, a refusal that is not worth
/// retrying, or the attempts run out. A refusal is returned as an answer
/// (the caller reads the service's error body); a connection that never
/// answered is an error naming `what`, the method and the URL.
pub(crate) async fn send(
    policy: &RetryPolicy,
    what: &str,
    method: &str,
    url: &str,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Answer> {
    let answered = retry(
        policy,
        || {
            let request = build().timeout(policy.timeout);
            async move {
                match request.send().await {
                    Err(error) => Attempt::Failed(gantry_core::transport_reason(&error)),
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let headers = response.headers().clone();
                        match response.text().await {
                            Ok(body) => Attempt::Answer(Answer {
                                status,
                                headers,
                                body,
                            }),
                            Err(error) => Attempt::Failed(gantry_core::transport_reason(&error)),
                        }
                    }
                }
            }
        },
        |answer| (answer.status, &answer.headers),
        tokio::time::sleep,
    )
    .await;
    match answered {
        Ok(answered) => Ok(answered.answer),
        Err(failed) => Err(Error::Service(format!(
            "{what} did not answer {method} {url} ({} attempts): {}",
            failed.attempts, failed.error
        ))),
    }
}
