//! Where versions run and how traffic is split: a [`Target`]. The controller
//! and the analysis only talk to this trait; `local` drives the embedded
//! router's admin API (a Kubernetes target implements the same calls on
//! HTTPRoute weights or an InferenceService).

use std::future::Future;
use std::time::Duration;

use gantry_core::retry::{Attempt, retry};
use gantry_core::{RetryPolicy, Secret};

use crate::api::{ApiError, BackendSpec, RouterView, VersionMetrics, WeightsRequest};
use crate::error::{Error, Result};

/// What the controller needs from a place that serves versions.
pub trait Target: Send + Sync {
    /// The target in words, for messages (`router http://127.0.0.1:8081`).
    fn describe(&self) -> String;
    /// The versions, their health and weights, the lease.
    fn observe(&self) -> impl Future<Output = Result<RouterView>> + Send;
    /// Brings a version up and waits until it is healthy. Idempotent.
    fn bring_up(&self, spec: &BackendSpec) -> impl Future<Output = Result<()>> + Send;
    /// Splits traffic.
    fn set_weights(
        &self,
        request: &WeightsRequest,
    ) -> impl Future<Output = Result<RouterView>> + Send;
    /// Stops a version that gets no traffic. Idempotent.
    fn retire(&self, version: &str) -> impl Future<Output = Result<()>> + Send;
    /// A version's requests since `since_ms`.
    fn metrics(
        &self,
        version: &str,
        since_ms: u64,
    ) -> impl Future<Output = Result<VersionMetrics>> + Send;
}

/// The embedded router, through its admin API.
#[derive(Debug, Clone)]
pub struct LocalRouter {
    admin: url::Url,
    token: Option<Secret>,
    http: reqwest::Client,
    policy: RetryPolicy,
    /// How long bringing a version up may take.
    pub bring_up_timeout: Duration,
}

impl LocalRouter {
    /// A client of the router whose admin API is at `admin`.
    pub fn new(admin: &str, token: Option<Secret>, policy: RetryPolicy) -> Result<LocalRouter> {
        let parsed = url::Url::parse(admin).map_err(|error| {
            Error::Input(format!(
                "--router {admin:?}: not a URL ({error}); e.g. http://127.0.0.1:8081"
            ))
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::Input(format!(
                "--router {admin:?}: use an http:// or https:// URL"
            )));
        }
        if parsed.password().is_some() || !parsed.username().is_empty() {
            return Err(Error::Input(
                "--router: put no credentials in the URL; the admin token goes in GANTRY_ROUTER_TOKEN".to_owned(),
            ));
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|error| Error::Service(format!("cannot build an HTTP client: {error}")))?;
        Ok(LocalRouter {
            admin: parsed,
            token,
            http,
            policy,
            bring_up_timeout: Duration::from_secs(600),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.admin.as_str().trim_end_matches('/'))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>)> {
        let url = self.url(path);
        let answered = retry(
            &self.policy,
            || {
                let mut request = self.http.request(method.clone(), &url).timeout(timeout);
                if let Some(token) = &self.token {
                    request = request.bearer_auth(token.expose());
                }
                if let Some(body) = &body {
                    request = request.json(body);
                }
                async move {
                    match request.send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let headers = response.headers().clone();
                            match response.bytes().await {
                                Ok(bytes) => Attempt::Answer((status, headers, bytes.to_vec())),
                                Err(error) => {
                                    Attempt::Failed(gantry_core::transport_reason(&error))
                                }
                            }
                        }
                        Err(error) => Attempt::Failed(gantry_core::transport_reason(&error)),
                    }
                }
            },
            |(status, headers, _)| (*status, headers),
            tokio::time::sleep,
        )
        .await
        .map_err(|no| {
            Error::Service(format!(
                "{method} {url}: the router did not answer after {} attempts: {}",
                no.attempts, no.error
            ))
        })?;
        let (status, _, body) = answered.answer;
        Ok((status, body))
    }

    fn refusal(method: &str, url: &str, status: u16, body: &[u8]) -> Error {
        match serde_json::from_slice::<ApiError>(body) {
            Ok(error) if !error.log_tail.is_empty() => Error::Backend {
                message: error.error,
                log_tail: error.log_tail,
            },
            Ok(error) if status == 401 => Error::Input(format!(
                "{method} {url}: {} (set GANTRY_ROUTER_TOKEN to the router's token)",
                error.error
            )),
            Ok(error) if status == 400 => Error::Input(error.error),
            Ok(error) => {
                Error::Service(format!("{method} {url} answered {status}: {}", error.error))
            }
            Err(_) => Error::Service(format!(
                "{method} {url} answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )),
        }
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<T> {
        serde_json::from_slice(body).map_err(|error| {
            Error::Service(format!(
                "{} answered a body gantry cannot read: {error}",
                self.url(path)
            ))
        })
    }
}

impl Target for LocalRouter {
    fn describe(&self) -> String {
        format!("router {}", self.admin.as_str().trim_end_matches('/'))
    }

    async fn observe(&self) -> Result<RouterView> {
        let path = "/v1/backends";
        let (status, body) = self
            .call(reqwest::Method::GET, path, None, self.policy.timeout)
            .await?;
        if status != 200 {
            return Err(Self::refusal("GET", &self.url(path), status, &body));
        }
        self.parse(path, &body)
    }

    async fn bring_up(&self, spec: &BackendSpec) -> Result<()> {
        let path = "/v1/backends";
        let body = serde_json::to_value(spec).map_err(|error| Error::Service(error.to_string()))?;
        let (status, answer) = self
            .call(
                reqwest::Method::POST,
                path,
                Some(body),
                self.bring_up_timeout,
            )
            .await?;
        match status {
            200 | 201 => Ok(()),
            _ => Err(Self::refusal("POST", &self.url(path), status, &answer)),
        }
    }

    async fn set_weights(&self, request: &WeightsRequest) -> Result<RouterView> {
        let path = "/v1/weights";
        let body =
            serde_json::to_value(request).map_err(|error| Error::Service(error.to_string()))?;
        let (status, answer) = self
            .call(reqwest::Method::PUT, path, Some(body), self.policy.timeout)
            .await?;
        if status != 200 {
            return Err(Self::refusal("PUT", &self.url(path), status, &answer));
        }
        self.parse(path, &answer)
    }

    async fn retire(&self, version: &str) -> Result<()> {
        let path = format!("/v1/backends/{version}");
        let (status, answer) = self
            .call(
                reqwest::Method::DELETE,
                &path,
                None,
                self.policy.timeout + Duration::from_secs(60),
            )
            .await?;
        match status {
            204 | 404 => Ok(()),
            _ => Err(Self::refusal("DELETE", &self.url(&path), status, &answer)),
        }
    }

    async fn metrics(&self, version: &str, since_ms: u64) -> Result<VersionMetrics> {
        let path = format!("/v1/metrics/{version}?since_ms={since_ms}");
        let (status, answer) = self
            .call(reqwest::Method::GET, &path, None, self.policy.timeout)
            .await?;
        if status != 200 {
            return Err(Self::refusal("GET", &self.url(&path), status, &answer));
        }
        self.parse(&path, &answer)
    }
}
