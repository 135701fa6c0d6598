//! Registry requests through gantry's one retry loop ([`gantry_core::retry`]).

use gantry_core::RetryPolicy;
use gantry_core::retry::{Attempt, retry_blocking};
use reqwest::blocking::Response;

use crate::error::{Error, Result};

/// The HTTP client of a registry backend: a connect timeout, no overall
/// timeout (uploads of large files take what they take; each request sets
/// its own), gantry's user agent.
pub(crate) fn client() -> Result<reqwest::blocking::Client> {
    reqwest::blocking::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(None)
        .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| Error::Input(format!("cannot start an HTTP client: {error}")))
}

/// Why an attempt gave no answer.
enum Failure {
    Transport(reqwest::Error),
    Intercepted(Error),
}

/// Sends what `attempt` builds until it gets an answer worth returning:
/// 429 and 5xx (honouring `Retry-After`) and connection errors are retried
/// with jittered backoff up to the policy's attempts. `intercept` sees each
/// answer first and returns `true` to send again at once without counting
/// an attempt (an OCI registry's 401 that a fresh token answers). `what`
/// (`METHOD URL`) names the request in errors.
pub(crate) fn send_with_retries(
    policy: &RetryPolicy,
    what: &str,
    mut attempt: impl FnMut() -> reqwest::Result<Response>,
    mut intercept: impl FnMut(&Response) -> Result<bool>,
) -> Result<Response> {
    let answered = retry_blocking(
        policy,
        || loop {
            return match attempt() {
                Ok(response) => match intercept(&response) {
                    Ok(true) => continue,
                    Ok(false) => Attempt::Answer(response),
                    Err(error) => Attempt::Fatal(Failure::Intercepted(error)),
                },
                Err(error) if error.is_builder() => Attempt::Fatal(Failure::Transport(error)),
                Err(error) => Attempt::Failed(Failure::Transport(error)),
            };
        },
        |response| (response.status().as_u16(), response.headers()),
    );
    match answered {
        Ok(answered) => Ok(answered.answer),
        Err(failed) => Err(match failed.error {
            Failure::Intercepted(error) => error,
            Failure::Transport(error) => Error::Remote(format!(
                "{what}: {} (after {} attempts)",
                gantry_core::transport_reason(&error),
                failed.attempts
            )),
        }),
    }
}
