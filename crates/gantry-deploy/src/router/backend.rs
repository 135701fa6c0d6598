//! Model servers behind the router: started from a serve command (or
//! adopted after a router restart, or reached at a given URL), health-checked,
//! restarted on crash with backoff, and stopped on retire with SIGTERM, a
//! grace period and SIGKILL.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio::sync::{oneshot, watch};

use super::metrics::{Sample, Samples, VersionHandles};
use crate::api::{BackendSpec, BackendView, Health};
use crate::error::{Error, Result};

/// Lines of a server's log shown with an error.
const LOG_TAIL_LINES: usize = 20;
/// The longest wait between two restarts of a crashing server.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One version's server.
pub(crate) struct Backend {
    pub(crate) spec: BackendSpec,
    /// `http://127.0.0.1:PORT` or the given URL, without a trailing slash.
    pub(crate) url: String,
    pub(crate) authority: http::uri::Authority,
    /// `x-gantry-version`'s value, made once.
    pub(crate) header: Option<http::HeaderValue>,
    /// The port the router gave the server (`{port}`), if it runs it.
    pub(crate) port: Option<u16>,
    pid: AtomicU32,
    health: AtomicU8,
    pub(crate) restarts: AtomicU32,
    pub(crate) in_flight: AtomicU64,
    samples: Mutex<Samples>,
    pub(crate) handles: VersionHandles,
    log_path: Option<PathBuf>,
    retire: watch::Sender<bool>,
}

impl Backend {
    /// A backend for `spec`, not yet started. `port` is the port to give a
    /// serve command (a free one is picked when `None`).
    pub(crate) fn new(
        spec: BackendSpec,
        port: Option<u16>,
        logs: &Path,
        handles: VersionHandles,
    ) -> Result<Backend> {
        validate_spec(&spec)?;
        let (url, port, log_path) = match (&spec.url, &spec.serve_command) {
            (Some(url), None) => (url.trim_end_matches('/').to_owned(), None, None),
            (None, Some(_)) => {
                let port = match port {
                    Some(port) => port,
                    None => free_port()?,
                };
                let log = logs.join(format!("{}.log", file_safe(&spec.version)));
                (format!("http://127.0.0.1:{port}"), Some(port), Some(log))
            }
            _ => {
                return Err(Error::Input(format!(
                    "backend {}: give exactly one of serve_command (a server the router starts) and url (one already running)",
                    spec.version
                )));
            }
        };
        let parsed: http::Uri = url.parse().map_err(|error| {
            Error::Input(format!("backend {}: url {url:?}: {error}", spec.version))
        })?;
        if parsed.scheme_str() != Some("http") {
            return Err(Error::Input(format!(
                "backend {}: url {url:?} must be http:// (model servers are reached on the host or its network)",
                spec.version
            )));
        }
        let authority = parsed.authority().cloned().ok_or_else(|| {
            Error::Input(format!("backend {}: url {url:?} has no host", spec.version))
        })?;
        let (retire, _) = watch::channel(false);
        let header = http::HeaderValue::from_str(&spec.version).ok();
        Ok(Backend {
            spec,
            url,
            authority,
            header,
            port,
            pid: AtomicU32::new(0),
            health: AtomicU8::new(Health::Starting as u8),
            restarts: AtomicU32::new(0),
            in_flight: AtomicU64::new(0),
            samples: Mutex::new(Samples::default()),
            handles,
            log_path,
            retire,
        })
    }

    pub(crate) fn version(&self) -> &str {
        &self.spec.version
    }

    pub(crate) fn health(&self) -> Health {
        match self.health.load(Ordering::Acquire) {
            0 => Health::Starting,
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Stopping,
        }
    }

    fn set_health(&self, health: Health) {
        self.health.store(health as u8, Ordering::Release);
        self.handles
            .healthy
            .set(i64::from(health == Health::Healthy));
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::Acquire)).filter(|pid| *pid != 0)
    }

    pub(crate) fn record(&self, sample: Sample) {
        self.handles.record(&sample);
        lock(&self.samples).push(sample);
    }

    pub(crate) fn metrics_since(&self, since_ms: u64, until_ms: u64) -> crate::api::VersionMetrics {
        lock(&self.samples).since(self.version(), since_ms, until_ms)
    }

    /// The last lines of the server's log.
    pub(crate) fn log_tail(&self) -> Vec<String> {
        self.log_path.as_deref().map(log_tail).unwrap_or_default()
    }

    pub(crate) fn view(&self, weight: u32) -> BackendView {
        BackendView {
            version: self.spec.version.clone(),
            digest: self.spec.digest.clone(),
            model_dir: self.spec.model_dir.clone(),
            url: self.url.clone(),
            pid: self.pid(),
            health: self.health(),
            weight,
            restarts: self.restarts.load(Ordering::Relaxed),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            log_tail: self.log_tail(),
        }
    }

    /// Asks the supervisor to stop the server (after in-flight requests end).
    pub(crate) fn retire(&self) {
        self.set_health(Health::Stopping);
        let _ = self.retire.send(true);
    }

    fn health_timeout(&self, default: Duration) -> Duration {
        self.spec
            .health_timeout_seconds
            .map_or(default, Duration::from_secs)
    }

    fn error(&self, message: String) -> Error {
        Error::Backend {
            message,
            log_tail: self.log_tail(),
        }
    }
}

/// How the supervisor begins.
pub(crate) enum Start {
    /// Start the server; a failure ends supervision (a new backend).
    Fresh,
    /// Adopt the process a previous router started if it still answers,
    /// else start it, retrying failures with backoff (a router restart).
    Restore { pid: Option<u32> },
}

/// What the supervisor needs from the router.
pub(crate) struct Supervision {
    pub(crate) http: reqwest::Client,
    pub(crate) health_timeout: Duration,
    pub(crate) grace: Duration,
    /// Called when a backend's health changes, to rebuild the routing table.
    pub(crate) changed: Arc<dyn Fn() + Send + Sync>,
    pub(crate) log: crate::router::Logger,
}

/// Runs `backend` until it is retired; `started` hears how the first
/// start went.
pub(crate) async fn supervise(
    backend: Arc<Backend>,
    start: Start,
    supervision: Arc<Supervision>,
    started: oneshot::Sender<Result<()>>,
) {
    let mut retire = backend.retire.subscribe();
    let log = &supervision.log;
    if backend.spec.serve_command.is_none() {
        // A server someone else runs: watch its health until retired.
        let first = wait_healthy(&backend, &supervision, None).await;
        let ok = first.is_ok();
        if ok {
            backend.set_health(Health::Healthy);
            (supervision.changed)();
        }
        let _ = started.send(first);
        if !ok {
            return;
        }
        watch_external(&backend, &supervision, &mut retire).await;
        return;
    }
    let (mut process, retry_first) = match start {
        Start::Fresh => (None, false),
        Start::Restore { pid } => (adopt(&backend, pid, &supervision).await, true),
    };
    if process.is_some() {
        log(&format!(
            "backend {}: adopted the running server (pid {})",
            backend.version(),
            backend.pid().unwrap_or(0)
        ));
        backend.set_health(Health::Healthy);
        (supervision.changed)();
    }
    let mut started = Some(started);
    let mut failures: u32 = 0;
    loop {
        if process.is_none() {
            match launch(&backend, &supervision).await {
                Ok(running) => {
                    process = Some(running);
                    failures = 0;
                    backend.set_health(Health::Healthy);
                    (supervision.changed)();
                    if let Some(started) = started.take() {
                        let _ = started.send(Ok(()));
                    }
                }
                Err(error) => {
                    if !retry_first && let Some(started) = started.take() {
                        backend.set_health(Health::Unhealthy);
                        let _ = started.send(Err(error));
                        return;
                    }
                    log(&format!("backend {}: {error}", backend.version()));
                    backend.set_health(Health::Unhealthy);
                    (supervision.changed)();
                    failures += 1;
                    let backoff = backoff(failures);
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => continue,
                        _ = retire.wait_for(|retired| *retired) => return,
                    }
                }
            }
        } else if let Some(started) = started.take() {
            let _ = started.send(Ok(()));
        }
        let Some(mut running) = process.take() else {
            continue;
        };
        let ended = tokio::select! {
            status = running.wait() => Some(status),
            _ = retire.wait_for(|retired| *retired) => None,
        };
        let Some(exited) = ended else {
            drain(&backend, supervision.grace).await;
            running.stop(supervision.grace).await;
            backend.pid.store(0, Ordering::Release);
            log(&format!("backend {}: stopped", backend.version()));
            return;
        };
        backend.pid.store(0, Ordering::Release);
        backend.set_health(Health::Unhealthy);
        (supervision.changed)();
        let restarts = backend.restarts.fetch_add(1, Ordering::Relaxed) + 1;
        failures += 1;
        let wait = backoff(failures);
        log(&format!(
            "backend {}: the server {exited}; restart {restarts} in {} s",
            backend.version(),
            wait.as_secs()
        ));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = retire.wait_for(|retired| *retired) => return,
        }
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1 << failures.saturating_sub(1).min(5)).min(MAX_BACKOFF)
}

/// Waits until no request is in flight on `backend`, at most `grace`.
async fn drain(backend: &Backend, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    while backend.in_flight.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn watch_external(
    backend: &Backend,
    supervision: &Supervision,
    retire: &mut watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = retire.wait_for(|retired| *retired) => return,
        }
        let healthy = probe(&supervision.http, &backend.url).await.is_ok();
        let was = backend.health() == Health::Healthy;
        if healthy != was {
            backend.set_health(if healthy {
                Health::Healthy
            } else {
                Health::Unhealthy
            });
            (supervision.changed)();
        }
    }
}

/// A running server.
enum Process {
    Child(tokio::process::Child, Pid),
    /// Started by an earlier router: watched by its pid.
    Adopted(Pid),
}

impl Process {
    /// Waits for the server to exit; says how.
    async fn wait(&mut self) -> String {
        loop {
            match self {
                Process::Child(child, _) => match child.try_wait() {
                    Ok(Some(status)) => return format!("exited ({status})"),
                    Ok(None) => {}
                    Err(error) => return format!("could not be waited for ({error})"),
                },
                Process::Adopted(pid) => {
                    if !alive(*pid) {
                        return "exited".to_owned();
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn stop(self, grace: Duration) {
        let group = match &self {
            Process::Child(_, group) | Process::Adopted(group) => *group,
        };
        let _ = rustix::process::kill_process_group(group, Signal::TERM);
        let deadline = tokio::time::Instant::now() + grace;
        while alive(group) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if alive(group) {
            let _ = rustix::process::kill_process_group(group, Signal::KILL);
        }
        if let Process::Child(mut child, _) = self {
            let _ = child.wait().await;
        }
    }
}

/// Whether the process `pid` still runs (a zombie child counts as gone).
fn alive(pid: Pid) -> bool {
    if rustix::process::test_kill_process(pid).is_err() {
        return false;
    }
    // A child that exited stays a zombie until reaped: read its state.
    std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero()))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|state| state != "Z"))
        })
        .unwrap_or(true)
}

async fn adopt(backend: &Backend, pid: Option<u32>, supervision: &Supervision) -> Option<Process> {
    let pid = pid
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(Pid::from_raw)?;
    if !alive(pid) || probe(&supervision.http, &backend.url).await.is_err() {
        return None;
    }
    backend
        .pid
        .store(pid.as_raw_nonzero().get().unsigned_abs(), Ordering::Release);
    Some(Process::Adopted(pid))
}

/// Starts the serve command and waits for it to answer.
async fn launch(backend: &Backend, supervision: &Supervision) -> Result<Process> {
    let words = serve_words(&backend.spec, backend.port.unwrap_or(0))?;
    let Some((program, arguments)) = words.split_first() else {
        return Err(Error::Input(format!(
            "backend {}: the serve command is empty",
            backend.version()
        )));
    };
    let log_path = backend
        .log_path
        .clone()
        .ok_or_else(|| Error::Input("a served backend has a log".to_owned()))?;
    if let Some(parent) = log_path.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(Error::io("cannot open", &log_path))?;
    let err_log = log
        .try_clone()
        .map_err(Error::io("cannot open", &log_path))?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(arguments)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err_log)
        // Its own process group: a retire stops the server's workers too,
        // and a signal to the router's group does not reach it.
        .process_group(0);
    let child = command.spawn().map_err(|error| {
        backend.error(format!(
            "backend {}: cannot start {program:?}: {error}{}",
            backend.version(),
            if error.kind() == std::io::ErrorKind::NotFound {
                " (not a program on PATH)"
            } else {
                ""
            }
        ))
    })?;
    let pid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(Pid::from_raw)
        .ok_or_else(|| {
            backend.error(format!(
                "backend {}: the server exited at once",
                backend.version()
            ))
        })?;
    backend
        .pid
        .store(pid.as_raw_nonzero().get().unsigned_abs(), Ordering::Release);
    let process = Process::Child(child, pid);
    match wait_healthy(backend, supervision, Some(&process)).await {
        Ok(()) => Ok(process),
        Err(error) => {
            process.stop(supervision.grace).await;
            backend.pid.store(0, Ordering::Release);
            Err(error)
        }
    }
}

/// Polls `/health` then `/v1/models` until both answer, the process exits,
/// or the health timeout passes.
async fn wait_healthy(
    backend: &Backend,
    supervision: &Supervision,
    process: Option<&Process>,
) -> Result<()> {
    let timeout = backend.health_timeout(supervision.health_timeout);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(Process::Child(_, pid)) = process
            && !alive(*pid)
        {
            // Give the log a moment to be flushed.
            tokio::time::sleep(Duration::from_millis(100)).await;
            return Err(backend.error(format!(
                "backend {}: the serve command exited before answering its health checks",
                backend.version()
            )));
        }
        let last = match probe(&supervision.http, &backend.url).await {
            Ok(()) => return Ok(()),
            Err(reason) => reason,
        };
        if tokio::time::Instant::now() >= deadline {
            return Err(backend.error(format!(
                "backend {}: {} did not become healthy within {} s (last: {last})",
                backend.version(),
                backend.url,
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One health check: `/health` answering 200 (or 404: a server without
/// one), then `/v1/models` answering 200.
async fn probe(http: &reqwest::Client, url: &str) -> std::result::Result<(), String> {
    let health = http
        .get(format!("{url}/health"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|error| {
            format!(
                "GET {url}/health: {}",
                gantry_core::transport_reason(&error)
            )
        })?;
    let status = health.status();
    if !(status.is_success() || status == reqwest::StatusCode::NOT_FOUND) {
        return Err(format!("GET {url}/health answered {status}"));
    }
    let models = http
        .get(format!("{url}/v1/models"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .map_err(|error| {
            format!(
                "GET {url}/v1/models: {}",
                gantry_core::transport_reason(&error)
            )
        })?;
    if !models.status().is_success() {
        return Err(format!("GET {url}/v1/models answered {}", models.status()));
    }
    Ok(())
}

/// The serve command's words with the placeholders replaced inside each
/// word (after splitting, so a substituted path with spaces stays one word).
pub(crate) fn serve_words(spec: &BackendSpec, port: u16) -> Result<Vec<String>> {
    let command = spec.serve_command.as_deref().unwrap_or_default();
    let words = shlex::split(command).ok_or_else(|| {
        Error::Input(format!(
            "backend {}: the serve command {command:?} has an unclosed quote",
            spec.version
        ))
    })?;
    let model_dir = spec
        .model_dir
        .as_ref()
        .map(|dir| dir.to_string_lossy().into_owned());
    let mut out = Vec::with_capacity(words.len());
    for word in words {
        if word.contains("{model_dir}") && model_dir.is_none() {
            return Err(Error::Input(format!(
                "backend {}: the serve command uses {{model_dir}} but no model directory was given",
                spec.version
            )));
        }
        out.push(
            word.replace("{model_dir}", model_dir.as_deref().unwrap_or_default())
                .replace("{port}", &port.to_string())
                .replace("{version}", &spec.version)
                .replace("{digest}", spec.digest.as_deref().unwrap_or_default()),
        );
    }
    Ok(out)
}

fn validate_spec(spec: &BackendSpec) -> Result<()> {
    let version = &spec.version;
    if version.is_empty()
        || version.len() > 128
        || !version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
    {
        return Err(Error::Input(format!(
            "backend version {version:?}: use 1 to 128 letters, digits, '.', '-', '_' or '+'"
        )));
    }
    Ok(())
}

fn file_safe(version: &str) -> String {
    version.replace('+', "_")
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|error| {
        Error::Service(format!("cannot find a free port on 127.0.0.1: {error}"))
    })?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| Error::Service(format!("cannot find a free port on 127.0.0.1: {error}")))
}

/// The last lines of a log file (its last 64 KiB read).
fn log_tail(path: &Path) -> Vec<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let length = file.metadata().map_or(0, |metadata| metadata.len());
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(64 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..]
        .iter()
        .map(|line| (*line).to_owned())
        .collect()
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &str) -> BackendSpec {
        BackendSpec {
            version: "1.2.0".into(),
            digest: Some("sha256:ab".into()),
            model_dir: Some(PathBuf::from("/models/my model")),
            serve_command: Some(command.into()),
            url: None,
            health_timeout_seconds: None,
        }
    }

    #[test]
    fn placeholders_are_replaced_inside_words_never_split_again() {
        let words = serve_words(
            &spec("tiny-lm serve --model {model_dir} --port={port} --served-model-name 'm {version}' --tag {digest}"),
            8123,
        )
        .expect("splits");
        assert_eq!(
            words,
            [
                "tiny-lm",
                "serve",
                "--model",
                "/models/my model",
                "--port=8123",
                "--served-model-name",
                "m 1.2.0",
                "--tag",
                "sha256:ab"
            ]
        );
    }

    #[test]
    fn a_shell_metacharacter_is_just_a_character() {
        let words = serve_words(&spec("server --x ';rm -rf /' $HOME"), 1).expect("splits");
        assert_eq!(words, ["server", "--x", ";rm -rf /", "$HOME"]);
    }

    #[test]
    fn bad_commands_and_versions_are_named() {
        let error = serve_words(&spec("server 'unclosed"), 1).expect_err("refused");
        assert!(error.to_string().contains("unclosed quote"), "{error}");
        let mut bad = spec("x");
        bad.version = "../etc".into();
        assert!(validate_spec(&bad).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_a_ceiling() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(4), Duration::from_secs(8));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
