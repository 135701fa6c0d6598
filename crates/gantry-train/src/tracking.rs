//! Experiment tracking on an MLflow server, over its REST API.
//!
//! A thread of its own does the HTTP, so a slow or dead server never holds up
//! the launcher's loop (signals, timeouts). The run is created when training
//! starts; metrics are logged by step as they arrive, in batches; at the end
//! the params, tags and `run.json` (as an artifact) follow and the run is
//! closed with its status. Whatever did not get through — the server was
//! down, a request failed — stays buffered and is retried at the end, a few
//! rounds with backoff; the run completes either way, and the record says
//! whether the server has all of it.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gantry_mlflow::{MlflowApi, MlflowOptions};
use reqwest::Method;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::metrics::MetricPoint;
use crate::record::{Status, TrackingState};

/// Metrics per `log-batch` request (MLflow's limit is 1000).
const BATCH: usize = 1000;

/// Params or tags per `log-batch` request (MLflow's limit is 100).
const BATCH_PARAMS: usize = 100;

/// MLflow's longest param value.
const PARAM_VALUE_LIMIT: usize = 6000;

/// Metric points buffered while the server is unreachable; beyond this the
/// oldest are thinned.
const PENDING_LIMIT: usize = 1_000_000;

/// After a failure, how long before the next try during the run.
const RETRY_DURING_RUN: Duration = Duration::from_secs(30);

/// Rounds of tries at the end; the wait between them starts at four times
/// the retry policy's base delay (two seconds by default) and doubles.
const FINAL_ROUNDS: u32 = 5;

/// What to track and where.
#[derive(Debug, Clone)]
pub struct TrackingConfig {
    /// `http(s)://HOST[:PORT][/PATH]` of the tracking server.
    pub uri: String,
    /// The experiment (created when missing).
    pub experiment: String,
    /// The run's name (gantry's run id).
    pub run_name: String,
    /// Params logged with the run.
    pub params: Vec<(String, String)>,
    /// Tags set when the run is created.
    pub tags: Vec<(String, String)>,
    /// Credentials and retries.
    pub options: MlflowOptions,
}

enum Message {
    Metrics(Vec<MetricPoint>),
    Finish {
        status: Status,
        record: Vec<u8>,
        tags: Vec<(String, String)>,
    },
}

/// A run being tracked.
#[derive(Debug)]
pub struct Tracker {
    sender: Sender<Message>,
    thread: JoinHandle<TrackingState>,
}

impl Tracker {
    /// Starts tracking: checks the URI, then creates the run on the server
    /// in the background.
    pub fn start(mut config: TrackingConfig) -> Result<Tracker> {
        let (base, credentials) = base_url(&config.uri)?;
        // Credentials in the URI are used, never recorded or printed.
        if let Some((user, password)) = credentials
            && config.options.auth.is_none()
        {
            config.options.auth = Some(gantry_mlflow::MlflowAuth::Basic(
                user,
                gantry_core::Secret::new(password),
            ));
        }
        config.uri.clone_from(&base);
        let api = MlflowApi::new(&base, config.options.clone())
            .map_err(|error| Error::Input(error.to_string()))?;
        let (sender, receiver) = channel();
        let thread = std::thread::Builder::new()
            .name("gantry-tracking".to_owned())
            .spawn(move || Worker::new(api, base, config).serve(&receiver))
            .map_err(|error| Error::Input(format!("cannot start the tracking thread: {error}")))?;
        Ok(Tracker { sender, thread })
    }

    /// Queues metric points for the server.
    pub fn log(&self, points: &[MetricPoint]) {
        let _ = self.sender.send(Message::Metrics(points.to_vec()));
    }

    /// Sends what is left, the final `tags`, the run record and the status;
    /// retries what fails; returns what reached the server.
    pub fn finish(
        self,
        status: Status,
        record: Vec<u8>,
        tags: Vec<(String, String)>,
    ) -> TrackingState {
        let Tracker { sender, thread } = self;
        let _ = sender.send(Message::Finish {
            status,
            record,
            tags,
        });
        drop(sender);
        thread.join().unwrap_or_else(|_| TrackingState {
            uri: String::new(),
            experiment: String::new(),
            run_id: None,
            url: None,
            synced: false,
            error: Some("the tracking thread panicked".to_owned()),
            retries: 0,
        })
    }
}

/// `http(s)://…` without credentials, and the credentials it held (an
/// `mlflow+` prefix, as `--registry` takes, is accepted too).
fn base_url(uri: &str) -> Result<(String, Option<(String, String)>)> {
    let rest = uri.strip_prefix("mlflow+").unwrap_or(uri);
    let mut parsed = url::Url::parse(rest)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
        .ok_or_else(|| {
            crate::error::given(
                "tracking server",
                format!("{:?}", without_password(uri)),
                "expected the MLflow server's http(s)://HOST[:PORT][/PATH]",
            )
        })?;
    let credentials = (!parsed.username().is_empty()).then(|| {
        let decode = |text: &str| {
            url::form_urlencoded::parse(format!("x={text}").as_bytes())
                .next()
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default()
        };
        (
            decode(parsed.username()),
            decode(parsed.password().unwrap_or_default()),
        )
    });
    let _ = parsed.set_username("");
    let _ = parsed.set_password(None);
    Ok((
        parsed.as_str().trim_end_matches('/').to_owned(),
        credentials,
    ))
}

/// `scheme://user@host…` for an error message: the password never shows.
fn without_password(uri: &str) -> String {
    match (uri.split_once("://"), uri.rfind('@')) {
        (Some((scheme, rest)), Some(at)) if at > scheme.len() => {
            let user = rest.split([':', '@']).next().unwrap_or_default();
            format!("{scheme}://{user}@{}", &uri[at + 1..])
        }
        _ => uri.to_owned(),
    }
}

struct Worker {
    api: MlflowApi,
    base: String,
    config: TrackingConfig,
    experiment_id: Option<String>,
    run_id: Option<String>,
    pending: Vec<MetricPoint>,
    params_logged: bool,
    last_failure: Option<Instant>,
    error: Option<String>,
}

impl Worker {
    fn new(api: MlflowApi, base: String, config: TrackingConfig) -> Worker {
        Worker {
            api,
            base,
            config,
            experiment_id: None,
            run_id: None,
            pending: Vec::new(),
            params_logged: false,
            last_failure: None,
            error: None,
        }
    }

    fn serve(mut self, receiver: &Receiver<Message>) -> TrackingState {
        self.attempt(|worker| worker.ensure_run());
        loop {
            match receiver.recv_timeout(RETRY_DURING_RUN) {
                Ok(Message::Metrics(points)) => {
                    self.pending.extend(points);
                    if self.pending.len() > PENDING_LIMIT {
                        let mut index = 0;
                        self.pending.retain(|_| {
                            index += 1;
                            index % 2 == 0
                        });
                    }
                    if self.ready() {
                        self.attempt(Worker::flush_metrics);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    if self.ready() && (self.run_id.is_none() || !self.pending.is_empty()) {
                        self.attempt(Worker::flush_metrics);
                    }
                }
                Ok(Message::Finish {
                    status,
                    record,
                    tags,
                }) => return self.finish(status, &record, &tags),
                Err(RecvTimeoutError::Disconnected) => {
                    return self.state(false, 0);
                }
            }
        }
    }

    /// Whether it is time to talk to the server (not right after a failure).
    fn ready(&self) -> bool {
        self.last_failure
            .is_none_or(|failed| failed.elapsed() >= RETRY_DURING_RUN)
    }

    fn attempt(&mut self, step: impl FnOnce(&mut Worker) -> Result<()>) -> bool {
        match step(self) {
            Ok(()) => {
                self.last_failure = None;
                true
            }
            Err(error) => {
                self.error = Some(error.to_string());
                self.last_failure = Some(Instant::now());
                false
            }
        }
    }

    fn finish(mut self, status: Status, record: &[u8], tags: &[(String, String)]) -> TrackingState {
        let mut retries = 0;
        let mut delay = self.config.options.retry.base_delay.saturating_mul(4);
        loop {
            let done = self.attempt(|worker| worker.sync_all(status, record, tags));
            if done {
                self.error = None;
                return self.state(true, retries);
            }
            if retries + 1 >= FINAL_ROUNDS {
                return self.state(false, retries);
            }
            retries += 1;
            std::thread::sleep(delay);
            delay *= 2;
        }
    }

    fn state(&self, synced: bool, retries: u32) -> TrackingState {
        TrackingState {
            uri: self.config.uri.clone(),
            experiment: self.config.experiment.clone(),
            run_id: self.run_id.clone(),
            url: match (&self.experiment_id, &self.run_id) {
                (Some(experiment), Some(run)) => Some(format!(
                    "{}/#/experiments/{experiment}/runs/{run}",
                    self.base
                )),
                _ => None,
            },
            synced,
            error: self.error.clone(),
            retries,
        }
    }

    fn sync_all(&mut self, status: Status, record: &[u8], tags: &[(String, String)]) -> Result<()> {
        self.ensure_run()?;
        self.flush_metrics()?;
        let run_id = self.run_id.clone().unwrap_or_default();
        if !self.params_logged {
            let params: Vec<Value> = self
                .config
                .params
                .iter()
                .map(|(key, value)| {
                    json!({"key": sanitize_key(key), "value": truncate(value, PARAM_VALUE_LIMIT)})
                })
                .collect();
            for chunk in params.chunks(BATCH_PARAMS) {
                self.call("runs/log-batch", json!({"run_id": run_id, "params": chunk}))?;
            }
            self.params_logged = true;
        }
        let tags: Vec<Value> = tags
            .iter()
            .map(|(key, value)| json!({"key": key, "value": value}))
            .collect();
        for chunk in tags.chunks(BATCH_PARAMS) {
            self.call("runs/log-batch", json!({"run_id": run_id, "tags": chunk}))?;
        }
        let run_path = self.api.run_path(&run_id).map_err(remote)?;
        self.api
            .put_artifact(&run_path, "run.json", record)
            .map_err(remote)?;
        let mlflow_status = match status {
            Status::Succeeded => "FINISHED",
            Status::Failed | Status::TimedOut => "FAILED",
            Status::Cancelled => "KILLED",
        };
        self.call(
            "runs/update",
            json!({
                "run_id": run_id,
                "status": mlflow_status,
                "end_time": chrono::Utc::now().timestamp_millis(),
            }),
        )?;
        Ok(())
    }

    fn ensure_run(&mut self) -> Result<()> {
        if self.run_id.is_some() {
            return Ok(());
        }
        let experiment_id = match &self.experiment_id {
            Some(id) => id.clone(),
            None => {
                let id = self
                    .api
                    .experiment_id(&self.config.experiment)
                    .map_err(remote)?;
                self.experiment_id = Some(id.clone());
                id
            }
        };
        let tags: Vec<Value> =
            std::iter::once(("mlflow.runName".to_owned(), self.config.run_name.clone()))
                .chain(self.config.tags.iter().cloned())
                .map(|(key, value)| json!({"key": key, "value": value}))
                .collect();
        let created = self.call(
            "runs/create",
            json!({
                "experiment_id": experiment_id,
                "run_name": self.config.run_name,
                "start_time": chrono::Utc::now().timestamp_millis(),
                "tags": tags,
            }),
        )?;
        let run_id = created["run"]["info"]["run_id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| {
                Error::Remote(format!(
                    "{}: runs/create answered without a run id",
                    self.base
                ))
            })?;
        self.run_id = Some(run_id.to_owned());
        Ok(())
    }

    fn flush_metrics(&mut self) -> Result<()> {
        self.ensure_run()?;
        let run_id = self.run_id.clone().unwrap_or_default();
        while !self.pending.is_empty() {
            let take = self.pending.len().min(BATCH);
            let metrics: Vec<Value> = self.pending[..take]
                .iter()
                .map(|point| {
                    json!({
                        "key": sanitize_key(&point.key),
                        "value": point.value,
                        "timestamp": point.timestamp_ms,
                        "step": point.step,
                    })
                })
                .collect();
            self.call(
                "runs/log-batch",
                json!({"run_id": run_id, "metrics": metrics}),
            )?;
            self.pending.drain(..take);
        }
        Ok(())
    }

    fn call(&self, path: &str, body: Value) -> Result<Value> {
        self.api
            .call(Method::POST, path, &[], Some(body))
            .map_err(remote)?
            .ok_or_else(|| {
                Error::Remote(format!(
                    "{}: {path}: the run or experiment is gone",
                    self.base
                ))
            })
    }
}

fn remote(error: gantry_mlflow::Error) -> Error {
    Error::Remote(error.to_string())
}

/// MLflow keys: letters, digits, `_ - . / ` and spaces; anything else becomes `_`.
fn sanitize_key(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' ') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_uris() {
        assert_eq!(sanitize_key("eval/acc@1"), "eval/acc_1");
        assert_eq!(truncate("ééé", 3), "é");
        assert_eq!(
            base_url("http://127.0.0.1:5000/").unwrap(),
            ("http://127.0.0.1:5000".to_owned(), None)
        );
        assert_eq!(
            base_url("mlflow+https://mlflow.example/prefix").unwrap().0,
            "https://mlflow.example/prefix"
        );
        assert_eq!(
            base_url("https://ci%40org:p%3Ass@mlflow.example").unwrap(),
            (
                "https://mlflow.example".to_owned(),
                Some(("ci@org".to_owned(), "p:ss".to_owned()))
            )
        );
        let error = base_url("ftp://user:hunter2@host").unwrap_err().to_string();
        assert!(
            !error.contains("hunter2") && error.contains("user@host"),
            "{error}"
        );
        assert!(base_url("file:./mlruns").is_err());
    }
}
