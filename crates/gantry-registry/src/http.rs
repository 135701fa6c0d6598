//! The retry loop every registry request goes through.

use gantry_ci::RetryPolicy;
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
    let mut retry = 0;
    loop {
        match attempt() {
            Ok(response) => {
                if intercept(&response)? {
                    continue;
                }
                let status = response.status().as_u16();
                match policy.retry_delay(retry, status, response.headers()) {
                    Some(Ok(delay)) if retry + 1 < policy.attempts => {
                        retry += 1;
                        std::thread::sleep(delay);
                    }
                    _ => return Ok(response),
                }
            }
            Err(error) if retry + 1 < policy.attempts && !error.is_builder() => {
                retry += 1;
                std::thread::sleep(policy.backoff(retry));
            }
            Err(error) => {
                return Err(Error::Remote(format!(
                    "{what}: {} (after {} attempts)",
                    gantry_ci::transport_reason(&error),
                    retry + 1
                )));
            }
        }
    }
}
