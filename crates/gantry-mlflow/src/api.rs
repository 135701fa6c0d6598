//! The client: JSON calls of the tracking API and artifacts through the
//! server's artifact proxy, every request through gantry's one retry loop.

use std::time::Duration;

use reqwest::blocking::{Body, Client, Response};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use gantry_core::retry::{Attempt, retry_blocking};

use crate::{Error, MlflowAuth, MlflowOptions, Result};

/// A client of one MLflow server.
#[derive(Debug)]
pub struct MlflowApi {
    base: String,
    client: Client,
    options: MlflowOptions,
}

impl MlflowApi {
    /// A client of the server at `base` (`http(s)://HOST[:PORT][/PATH]`, no trailing slash).
    pub fn new(base: &str, options: MlflowOptions) -> Result<MlflowApi> {
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(None)
            .user_agent(concat!("gantry/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| Error::Input(format!("cannot start an HTTP client: {error}")))?;
        Ok(MlflowApi {
            base: base.trim_end_matches('/').to_owned(),
            client,
            options,
        })
    }

    /// HOST[:PORT] of the server, for messages.
    pub fn host(&self) -> String {
        url::Url::parse(&self.base)
            .ok()
            .and_then(|url| {
                url.host_str().map(|host| match url.port() {
                    Some(port) => format!("{host}:{port}"),
                    None => host.to_owned(),
                })
            })
            .unwrap_or_else(|| self.base.clone())
    }
    /// Adds the credentials, if any.
    pub fn authorize(
        &self,
        request: reqwest::blocking::RequestBuilder,
    ) -> reqwest::blocking::RequestBuilder {
        match &self.options.auth {
            Some(MlflowAuth::Token(token)) => request.bearer_auth(token.expose()),
            Some(MlflowAuth::Basic(user, password)) => {
                request.basic_auth(user, Some(password.expose()))
            }
            None => request,
        }
    }
    /// The options it was made with.
    pub fn options(&self) -> &MlflowOptions {
        &self.options
    }
    /// Sends a request, retrying 429/5xx and connection errors; each attempt
    /// may take the policy's timeout or a minute, whichever is longer.
    pub fn send(
        &self,
        method: Method,
        url: &str,
        body: &dyn Fn() -> Option<Body>,
        json_body: bool,
    ) -> Result<Response> {
        self.send_within(method, url, body, json_body, Duration::from_secs(60))
    }
    /// [`MlflowApi::send`] whose attempts may take up to `at_least` (uploads
    /// of large files).
    pub fn send_within(
        &self,
        method: Method,
        url: &str,
        body: &dyn Fn() -> Option<Body>,
        json_body: bool,
        at_least: Duration,
    ) -> Result<Response> {
        let what = format!("{method} {}", url.split('?').next().unwrap_or(url));
        let answered = retry_blocking(
            &self.options.retry,
            || {
                let mut request = self
                    .authorize(self.client.request(method.clone(), url))
                    .timeout(self.options.retry.timeout.max(at_least));
                if let Some(body) = body() {
                    if json_body {
                        request = request.header("content-type", "application/json");
                    }
                    request = request.body(body);
                }
                match request.send() {
                    Ok(response) => Attempt::Answer(response),
                    Err(error) if error.is_builder() => Attempt::Fatal(error),
                    Err(error) => Attempt::Failed(error),
                }
            },
            |response| (response.status().as_u16(), response.headers()),
        );
        match answered {
            Ok(answered) => Ok(answered.answer),
            Err(failed) => Err(Error::Remote(format!(
                "{what}: {} (after {} attempts)",
                gantry_core::transport_reason(&failed.error),
                failed.attempts
            ))),
        }
    }
    /// A JSON call of the tracking API; `Ok(None)` for `RESOURCE_DOES_NOT_EXIST`.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<Option<Value>> {
        let mut url = url::Url::parse(&format!("{}/api/2.0/mlflow/{path}", self.base))
            .map_err(|error| Error::Input(format!("bad MLflow URL: {error}")))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let text = body.map(|body| body.to_string());
        let response = self.send(
            method.clone(),
            url.as_str(),
            &|| text.clone().map(Body::from),
            true,
        )?;
        let status = response.status();
        let payload: Value = response.json().unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Some(payload));
        }
        let code = payload["error_code"].as_str().unwrap_or_default();
        let message = payload["message"].as_str().unwrap_or_default();
        // A missing alias is INVALID_PARAMETER_VALUE "… alias X not found".
        let missing = code == "RESOURCE_DOES_NOT_EXIST"
            || (status == StatusCode::NOT_FOUND && code.is_empty())
            || (code == "INVALID_PARAMETER_VALUE" && message.ends_with("not found."));
        if missing {
            return Ok(None);
        }
        let hint = if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            "; set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"
        } else {
            ""
        };
        Err(Error::Remote(format!(
            "{method} /api/2.0/mlflow/{path} on {}: {status} {code}: {message}{hint}",
            self.host()
        )))
    }
    /// The artifact proxy URL of `path` in a run's artifact directory.
    pub fn artifact_url(&self, run_path: &str, path: &str) -> String {
        let encoded: Vec<String> = path
            .split('/')
            .map(|part| {
                url::form_urlencoded::byte_serialize(part.as_bytes())
                    .collect::<String>()
                    .replace('+', "%20")
            })
            .collect();
        format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{run_path}/{}",
            self.base,
            encoded.join("/")
        )
    }
    /// Uploads `bytes` as artifact `path` of a run.
    pub fn put_artifact(&self, run_path: &str, path: &str, bytes: &[u8]) -> Result<()> {
        let url = self.artifact_url(run_path, path);
        let response = self.send(
            Method::PUT,
            &url,
            &|| Some(Body::from(bytes.to_vec())),
            false,
        )?;
        self.expect_ok(response, &format!("uploading {path}"))
    }
    /// `Ok` for a 2xx answer, the status and body otherwise.
    pub fn expect_ok(&self, response: Response, what: &str) -> Result<()> {
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().unwrap_or_default();
        Err(Error::Remote(format!(
            "{what} to {}: {status}: {}",
            self.host(),
            text.chars().take(300).collect::<String>()
        )))
    }
    /// The id of experiment `experiment`, created when missing.
    pub fn experiment_id(&self, experiment: &str) -> Result<String> {
        if let Some(found) = self.call(
            Method::GET,
            "experiments/get-by-name",
            &[("experiment_name", experiment)],
            None,
        )? {
            return Ok(found["experiment"]["experiment_id"]
                .as_str()
                .unwrap_or("0")
                .to_owned());
        }
        match self.call(
            Method::POST,
            "experiments/create",
            &[],
            Some(json!({"name": experiment})),
        ) {
            Ok(Some(created)) => Ok(created["experiment_id"].as_str().unwrap_or("0").to_owned()),
            // Created by a concurrent registration in between.
            _ => self
                .call(
                    Method::GET,
                    "experiments/get-by-name",
                    &[("experiment_name", experiment)],
                    None,
                )?
                .map(|found| {
                    found["experiment"]["experiment_id"]
                        .as_str()
                        .unwrap_or("0")
                        .to_owned()
                })
                .ok_or_else(|| {
                    Error::Remote(format!(
                        "cannot create the {experiment} experiment on {}",
                        self.host()
                    ))
                }),
        }
    }
    /// A run's artifact directory under the artifact proxy.
    pub fn run_path(&self, run_id: &str) -> Result<String> {
        let run = self
            .call(Method::GET, "runs/get", &[("run_id", run_id)], None)?
            .ok_or_else(|| Error::NotFound(format!("run {run_id} is gone from {}", self.host())))?;
        let artifact_uri = run["run"]["info"]["artifact_uri"]
            .as_str()
            .unwrap_or_default();
        artifact_uri
            .strip_prefix("mlflow-artifacts:/")
            .map(|path| path.trim_start_matches('/').to_owned())
            .ok_or_else(|| {
                Error::Remote(format!(
                    "run {run_id} on {} stores artifacts at {artifact_uri:?}, not through the artifact proxy; start the server with --serve-artifacts",
                    self.host()
                ))
            })
    }
    /// Downloads artifact `path` of a run.
    pub fn read_artifact(&self, run_path: &str, path: &str) -> Result<Response> {
        let url = self.artifact_url(run_path, path);
        let response = self.send(Method::GET, &url, &|| None, false)?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(Error::NotFound(format!(
                "artifact {path} is missing from {}",
                self.host()
            )));
        }
        if !response.status().is_success() {
            return Err(Error::Remote(format!(
                "GET artifact {path} from {}: {}",
                self.host(),
                response.status()
            )));
        }
        Ok(response)
    }
}
