//! One retry loop for every HTTP call gantry makes: forge APIs, registries,
//! MLflow and evaluated endpoints.
//!
//! [`RetryPolicy`] says how hard to try; [`retry`] is the loop. Attempts are
//! counted in one place, so the n-th retry of any caller waits up to the same
//! ceiling: `base_delay × 2^(n-1)`, capped at `max_delay`, with full jitter,
//! unless the server asks for a wait (`Retry-After`, GitHub's rate-limit
//! reset). The loop is written once, as an `async fn` that sleeps through the
//! function it is given; blocking callers run it with [`block_on_ready`],
//! whose futures are always ready.

use std::future::Future;
use std::time::Duration;

use rand::Rng as _;

/// How hard gantry tries before it gives up on a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The longest backoff before the second attempt; doubles each retry, with full jitter.
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
    /// Full-jitter exponential backoff before retry `retry` (1 for the
    /// second attempt): a uniform draw up to `base_delay × 2^(retry-1)`,
    /// capped at `max_delay`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1_u32 << retry.saturating_sub(1).min(16))
            .min(self.max_delay);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=ceiling_ms))
    }

    /// How long to wait before retry `retry` (1-based) of an answer with
    /// `status`, or `None` when it must not be retried. `Err` carries why a
    /// retryable answer is not retried (the server asked for a longer wait
    /// than `max_delay`).
    pub fn retry_delay(
        &self,
        retry: u32,
        status: u16,
        headers: &http::HeaderMap,
    ) -> Option<Result<Duration, String>> {
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

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt<T, E> {
    /// An answer with an HTTP status: returned, or tried again when the
    /// status is a retryable one and attempts are left.
    Answer(T),
    /// No answer (refused, reset, timed out): tried again while attempts are left.
    Failed(E),
    /// An error trying again cannot mend (a request that cannot be built).
    Fatal(E),
}

/// The answer the loop settled on.
#[derive(Debug)]
pub struct Answered<T> {
    /// The last answer: a success, one that must not be retried, or a
    /// retryable one when attempts ran out.
    pub answer: T,
    /// Attempts made, this one included.
    pub attempts: u32,
    /// Why a retryable answer was not retried, when the server asked for a
    /// wait longer than the policy's ceiling.
    pub note: Option<String>,
}

/// No answer came.
#[derive(Debug)]
pub struct NoAnswer<E> {
    /// The last attempt's error.
    pub error: E,
    /// Attempts made.
    pub attempts: u32,
}

/// Makes `attempt` until it gives an answer worth returning: 2xx and
/// non-retryable answers at once, retryable ones (429, 5xx, a rate-limited
/// 403) and failures after up to `policy.attempts` attempts, waiting
/// through `sleep` in between. `status` reads an answer's status and headers.
pub async fn retry<T, E, A, AF, S, SF>(
    policy: &RetryPolicy,
    mut attempt: A,
    status: impl Fn(&T) -> (u16, &http::HeaderMap),
    mut sleep: S,
) -> Result<Answered<T>, NoAnswer<E>>
where
    A: FnMut() -> AF,
    AF: Future<Output = Attempt<T, E>>,
    S: FnMut(Duration) -> SF,
    SF: Future<Output = ()>,
{
    let attempts = policy.attempts.max(1);
    let mut made = 0;
    loop {
        made += 1;
        let more = made < attempts;
        let wait = match attempt().await {
            Attempt::Answer(answer) => {
                let (code, headers) = status(&answer);
                if (200..300).contains(&code) {
                    return Ok(Answered {
                        answer,
                        attempts: made,
                        note: None,
                    });
                }
                match policy.retry_delay(made, code, headers) {
                    Some(Ok(wait)) if more => wait,
                    Some(Err(note)) => {
                        return Ok(Answered {
                            answer,
                            attempts: made,
                            note: Some(note),
                        });
                    }
                    _ => {
                        return Ok(Answered {
                            answer,
                            attempts: made,
                            note: None,
                        });
                    }
                }
            }
            Attempt::Failed(_) if more => policy.backoff(made),
            Attempt::Failed(error) | Attempt::Fatal(error) => {
                return Err(NoAnswer {
                    error,
                    attempts: made,
                });
            }
        };
        sleep(wait).await;
    }
}

/// Runs a future whose every await is ready at once (the blocking callers of
/// [`retry`]: their attempts and sleeps block and return ready futures).
/// `None` if it was not ready, which is a bug in the caller.
pub fn block_on_ready<F: Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// [`retry`] for blocking callers: `attempt` blocks, and waits sleep the thread.
pub fn retry_blocking<T, E>(
    policy: &RetryPolicy,
    mut attempt: impl FnMut() -> Attempt<T, E>,
    status: impl Fn(&T) -> (u16, &http::HeaderMap),
) -> Result<Answered<T>, NoAnswer<E>> {
    let looped = retry(
        policy,
        || std::future::ready(attempt()),
        status,
        |wait| {
            std::thread::sleep(wait);
            std::future::ready(())
        },
    );
    match block_on_ready(looped) {
        Some(result) => result,
        // Unreachable: every future above is ready when made.
        None => unreachable_blocking(),
    }
}

#[cold]
fn unreachable_blocking<T>() -> T {
    unreachable!("a blocking retry loop awaited a pending future")
}

/// The innermost cause of a transport error: "connection refused" rather
/// than a chain of wrappers.
pub fn transport_reason(error: &dyn std::error::Error) -> String {
    let mut reason = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        reason = cause.to_string();
        source = cause.source();
    }
    reason
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

    fn policy(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn retry_decisions() {
        let policy = policy(3);
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
    }

    #[test]
    fn backoff_ceilings_double_from_the_base() {
        let policy = policy(8);
        for (retry, ceiling) in [(1, 100), (2, 200), (3, 400), (4, 800)] {
            for _ in 0..200 {
                let wait = policy.backoff(retry);
                assert!(wait <= Duration::from_millis(ceiling), "{retry}: {wait:?}");
            }
        }
        let capped = RetryPolicy {
            max_delay: Duration::from_millis(150),
            ..policy
        };
        assert!(capped.backoff(30) <= Duration::from_millis(150));
    }

    #[derive(Debug)]
    struct Response {
        status: u16,
        headers: http::HeaderMap,
    }

    fn status(response: &Response) -> (u16, &http::HeaderMap) {
        (response.status, &response.headers)
    }

    #[test]
    fn retryable_answers_are_retried_until_the_attempts_run_out() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(1),
            ..policy(3)
        };
        let mut calls = 0;
        let answered = retry_blocking::<_, ()>(
            &policy,
            || {
                calls += 1;
                Attempt::Answer(Response {
                    status: 502,
                    headers: http::HeaderMap::new(),
                })
            },
            status,
        )
        .expect("an answer");
        assert_eq!(
            (calls, answered.attempts, answered.answer.status),
            (3, 3, 502)
        );

        let mut calls = 0;
        let answered = retry_blocking::<_, ()>(
            &policy,
            || {
                calls += 1;
                Attempt::Answer(Response {
                    status: if calls < 2 { 503 } else { 200 },
                    headers: http::HeaderMap::new(),
                })
            },
            status,
        )
        .expect("an answer");
        assert_eq!((answered.attempts, answered.answer.status), (2, 200));

        let answered = retry_blocking::<_, ()>(
            &policy,
            || {
                Attempt::Answer(Response {
                    status: 404,
                    headers: http::HeaderMap::new(),
                })
            },
            status,
        )
        .expect("an answer");
        assert_eq!(answered.attempts, 1, "a 404 is final");
    }

    #[test]
    fn failures_are_retried_and_fatal_errors_are_not() {
        let policy = RetryPolicy {
            base_delay: Duration::from_millis(1),
            ..policy(4)
        };
        let mut calls = 0;
        let failed = retry_blocking::<Response, _>(
            &policy,
            || {
                calls += 1;
                Attempt::Failed("connection refused")
            },
            status,
        )
        .expect_err("no answer");
        assert_eq!(
            (calls, failed.attempts, failed.error),
            (4, 4, "connection refused")
        );
        let fatal = retry_blocking::<Response, _>(&policy, || Attempt::Fatal("bad URL"), status)
            .expect_err("no answer");
        assert_eq!(fatal.attempts, 1);
    }

    #[test]
    fn a_wait_longer_than_the_ceiling_is_not_taken() {
        let answered = retry_blocking::<_, ()>(
            &policy(5),
            || {
                Attempt::Answer(Response {
                    status: 429,
                    headers: headers(&[("retry-after", "3600")]),
                })
            },
            status,
        )
        .expect("an answer");
        assert_eq!(answered.attempts, 1);
        assert!(answered.note.expect("a note").contains("3600s"));
    }
}
