//! `gantry router`: a weighted reverse proxy for OpenAI-compatible model
//! servers, with an admin API on a separate port, supervised model-server
//! processes, per-version metrics, state kept on disk and a dead-man switch
//! on canary weights.
//!
//! ```text
//! STATE_DIR/router.json      backends, weights, stable, lease (written atomically on every change)
//! STATE_DIR/router.lock      held (flock) while a router uses the directory
//! STATE_DIR/logs/VERSION.log each served backend's stdout and stderr
//! ```

mod admin;
mod backend;
mod metrics;
mod proxy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use gantry_core::Secret;
use serde::{Deserialize, Serialize};

use self::backend::{Backend, Start, Supervision, lock};
use crate::api::{BackendSpec, Health, Lease, Reversion, RouterView, WeightsRequest};
use crate::error::{Error, Result, now_ms, rfc3339, write_atomic};

/// Where the router's own messages go (the CLI prints them to stderr).
pub type Logger = Arc<dyn Fn(&str) + Send + Sync>;

/// How to run the router.
#[derive(Clone)]
pub struct RouterOptions {
    /// The data address clients use.
    pub listen: SocketAddr,
    /// The admin API's address.
    pub admin: SocketAddr,
    /// Where state and logs live.
    pub state_dir: PathBuf,
    /// The admin token; required when the admin address is not loopback.
    pub token: Option<Secret>,
    /// Route by a hash of this request header, so a user sees one version.
    pub sticky_header: Option<http::HeaderName>,
    /// Default time a model server has to become healthy.
    pub health_timeout: Duration,
    /// Time a retired server has to finish requests and exit after SIGTERM.
    pub grace: Duration,
    /// Stop the model servers when the router exits (by default they keep
    /// running and the next router adopts them).
    pub stop_backends_on_exit: bool,
    /// Threads answering the data port, each with its own single-threaded
    /// runtime and listener (`SO_REUSEPORT`); 0 means one per core.
    pub workers: usize,
    /// The router's messages.
    pub log: Logger,
}

impl std::fmt::Debug for RouterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterOptions")
            .field("listen", &self.listen)
            .field("admin", &self.admin)
            .field("state_dir", &self.state_dir)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// The routing snapshot each request reads: healthy backends with weight,
/// canaries first so that sticky buckets move monotonically to the canary.
#[derive(Default)]
pub(crate) struct Table {
    pub(crate) entries: Vec<(Arc<Backend>, u32)>,
    pub(crate) total: u32,
    pub(crate) stable: Option<Arc<Backend>>,
    pub(crate) all: Vec<Arc<Backend>>,
}

impl Table {
    pub(crate) fn by_version(&self, version: &[u8]) -> Option<&Arc<Backend>> {
        self.all.iter().find(|backend| {
            backend.version().as_bytes() == version && backend.health() == Health::Healthy
        })
    }

    /// The backend for a point in `0..total`.
    pub(crate) fn pick(&self, point: u32) -> Option<&Arc<Backend>> {
        let mut end = 0;
        for (backend, weight) in &self.entries {
            end += weight;
            if point < end {
                return Some(backend);
            }
        }
        self.stable.as_ref()
    }
}

/// What the router keeps: the admin API's view and the file.
#[derive(Default)]
pub(crate) struct Inner {
    pub(crate) backends: BTreeMap<String, Arc<Backend>>,
    pub(crate) weights: BTreeMap<String, u32>,
    pub(crate) stable: Option<String>,
    pub(crate) lease: Option<Lease>,
    pub(crate) reverted: Option<Reversion>,
}

/// The file `router.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Persisted {
    format: u32,
    stable: Option<String>,
    weights: BTreeMap<String, u32>,
    lease: Option<Lease>,
    reverted: Option<Reversion>,
    backends: Vec<PersistedBackend>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PersistedBackend {
    spec: BackendSpec,
    port: Option<u16>,
    pid: Option<u32>,
}

/// State shared by the data path, the admin API and the supervisors.
pub(crate) struct Shared {
    pub(crate) listen: SocketAddr,
    pub(crate) options: RouterOptions,
    pub(crate) inner: Mutex<Inner>,
    pub(crate) table: RwLock<Arc<Table>>,
    pub(crate) exported: metrics::Exported,
    pub(crate) supervision: Arc<Supervision>,
    /// Serializes backend additions and removals (which wait on processes).
    pub(crate) changes: tokio::sync::Mutex<()>,
}

impl Shared {
    fn state_path(&self) -> PathBuf {
        self.options.state_dir.join("router.json")
    }

    pub(crate) fn logs_dir(&self) -> PathBuf {
        self.options.state_dir.join("logs")
    }

    pub(crate) fn log(&self, message: &str) {
        (self.options.log)(message);
    }

    /// Rebuilds the routing table from `inner`.
    pub(crate) fn rebuild(&self, inner: &Inner) {
        let stable = inner
            .stable
            .as_ref()
            .and_then(|version| inner.backends.get(version))
            .filter(|backend| backend.health() == Health::Healthy)
            .cloned();
        let mut entries: Vec<(Arc<Backend>, u32)> = inner
            .backends
            .values()
            .filter(|backend| backend.health() == Health::Healthy)
            .filter_map(|backend| {
                let weight = inner.weights.get(backend.version()).copied().unwrap_or(0);
                (weight > 0).then(|| (backend.clone(), weight))
            })
            .collect();
        entries.sort_by_key(|(backend, _)| Some(backend.version()) == inner.stable.as_deref());
        for backend in inner.backends.values() {
            let weight = inner.weights.get(backend.version()).copied().unwrap_or(0);
            backend.handles.weight.set(i64::from(weight));
        }
        let total = entries.iter().map(|(_, weight)| weight).sum();
        let table = Table {
            entries,
            total,
            stable,
            all: inner.backends.values().cloned().collect(),
        };
        *self
            .table
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(table);
    }

    /// Writes `inner` to `router.json`.
    pub(crate) fn persist(&self, inner: &Inner) -> Result<()> {
        let persisted = Persisted {
            format: 1,
            stable: inner.stable.clone(),
            weights: inner.weights.clone(),
            lease: inner.lease.clone(),
            reverted: inner.reverted.clone(),
            backends: inner
                .backends
                .values()
                .map(|backend| PersistedBackend {
                    spec: backend.spec.clone(),
                    port: backend.port,
                    pid: backend.pid(),
                })
                .collect(),
        };
        let bytes = serde_json::to_vec_pretty(&persisted).map_err(|error| {
            Error::Service(format!("cannot serialize the router state: {error}"))
        })?;
        write_atomic(&self.state_path(), &bytes)
    }

    /// Rebuilds and persists after a change.
    pub(crate) fn commit(&self, inner: &Inner) -> Result<()> {
        self.rebuild(inner);
        self.persist(inner)
    }

    pub(crate) fn view(&self) -> RouterView {
        let inner = lock(&self.inner);
        RouterView {
            listen: format!("http://{}", self.listen),
            stable: inner.stable.clone(),
            backends: inner
                .backends
                .values()
                .map(|backend| {
                    backend.view(inner.weights.get(backend.version()).copied().unwrap_or(0))
                })
                .collect(),
            lease: inner.lease.clone(),
            reverted: inner.reverted.clone(),
        }
    }

    /// Applies new weights (the admin API's `PUT /v1/weights`).
    pub(crate) fn set_weights(&self, request: &WeightsRequest) -> Result<()> {
        let mut inner = lock(&self.inner);
        let weights = check_weights(&inner, request)?;
        let canary_traffic = weights
            .iter()
            .any(|(version, weight)| *weight > 0 && *version != request.stable);
        let lease = match (canary_traffic, request.lease_seconds) {
            (false, _) => None,
            (true, Some(seconds)) if seconds > 0 => Some(Lease {
                holder: request
                    .holder
                    .clone()
                    .unwrap_or_else(|| "unnamed".to_owned()),
                expires_at_ms: now_ms().saturating_add(seconds.saturating_mul(1000)),
            }),
            (true, _) => {
                return Err(Error::Input(
                    "weights that send traffic to a version other than stable need lease_seconds (the dead-man switch: traffic returns to stable when no controller renews it)".to_owned(),
                ));
            }
        };
        inner.weights = weights;
        inner.stable = Some(request.stable.clone());
        inner.lease = lease;
        self.commit(&inner)
    }

    /// Returns traffic to stable if the lease expired.
    fn expire_lease(&self) {
        let mut inner = lock(&self.inner);
        let Some(lease) = inner.lease.clone() else {
            return;
        };
        let now = now_ms();
        if now < lease.expires_at_ms {
            return;
        }
        let Some(stable) = inner.stable.clone() else {
            return;
        };
        let reason = format!(
            "the lease held by {} expired at {} without renewal (its controller stopped or lost contact); all traffic returned to stable {stable}",
            lease.holder,
            rfc3339(lease.expires_at_ms)
        );
        inner.reverted = Some(Reversion {
            at: rfc3339(now),
            reason: reason.clone(),
            weights_before: inner.weights.clone(),
        });
        inner.weights = BTreeMap::from([(stable, 100)]);
        inner.lease = None;
        self.exported.reverted();
        if let Err(error) = self.commit(&inner) {
            self.log(&format!("cannot save the reverted weights: {error}"));
        }
        drop(inner);
        self.log(&reason);
    }
}

/// The weights of `request` checked against the backends: known versions,
/// healthy where they get traffic, adding up to 100.
fn check_weights(inner: &Inner, request: &WeightsRequest) -> Result<BTreeMap<String, u32>> {
    if !inner.backends.contains_key(&request.stable) {
        return Err(Error::Input(format!(
            "stable version {} is not a backend of this router (backends: {})",
            request.stable,
            names(inner)
        )));
    }
    let mut sum: u64 = 0;
    for (version, weight) in &request.weights {
        let Some(backend) = inner.backends.get(version) else {
            return Err(Error::Input(format!(
                "weight for {version}: not a backend of this router (backends: {})",
                names(inner)
            )));
        };
        if *weight > 0 && backend.health() != Health::Healthy {
            return Err(Error::Input(format!(
                "weight {weight} for {version}: its server is {:?}, not healthy",
                backend.health()
            )));
        }
        sum += u64::from(*weight);
    }
    if sum != 100 {
        return Err(Error::Input(format!(
            "weights add up to {sum}, not 100: {}",
            request
                .weights
                .iter()
                .map(|(version, weight)| format!("{version}={weight}"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(request
        .weights
        .iter()
        .filter(|(_, weight)| **weight > 0)
        .map(|(version, weight)| (version.clone(), *weight))
        .collect())
}

fn names(inner: &Inner) -> String {
    if inner.backends.is_empty() {
        "none".to_owned()
    } else {
        inner
            .backends
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A router bound to its ports, not yet serving.
pub struct Router {
    shared: Arc<Shared>,
    data: std::net::TcpListener,
    admin: tokio::net::TcpListener,
    _lock: std::fs::File,
    restored: Vec<PersistedBackend>,
}

impl Router {
    /// Checks the options, takes the state directory's lock, reads its
    /// state and binds both ports.
    pub async fn bind(options: RouterOptions) -> Result<Router> {
        if !options.admin.ip().is_loopback() && options.token.is_none() {
            return Err(Error::Input(format!(
                "--admin {}: an admin API on a non-loopback address needs a token: set GANTRY_ROUTER_TOKEN",
                options.admin
            )));
        }
        let state_dir = &options.state_dir;
        std::fs::create_dir_all(state_dir).map_err(Error::io("cannot create", state_dir))?;
        let lock_path = state_dir.join("router.lock");
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(Error::io("cannot open", &lock_path))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Busy(format!(
                    "another router uses the state directory {} (it holds {})",
                    state_dir.display(),
                    lock_path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(error)) => {
                return Err(Error::io("cannot lock", &lock_path)(error));
            }
        }
        let persisted = read_state(&state_dir.join("router.json"))?;
        let data = reuseport_listener(options.listen).map_err(|error| {
            Error::Input(format!("--listen {}: cannot bind: {error}", options.listen))
        })?;
        let admin = tokio::net::TcpListener::bind(options.admin)
            .await
            .map_err(|error| {
                Error::Input(format!("--admin {}: cannot bind: {error}", options.admin))
            })?;
        let listen = data
            .local_addr()
            .map_err(|error| Error::Service(format!("cannot read the bound address: {error}")))?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|error| Error::Service(format!("cannot build an HTTP client: {error}")))?;
        let shared = Arc::new_cyclic(|weak: &std::sync::Weak<Shared>| {
            let weak = weak.clone();
            let changed: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                if let Some(shared) = weak.upgrade() {
                    // Health changed, or a server got a new pid: route by
                    // it, and save the pid for the next router to adopt.
                    let inner = lock(&shared.inner);
                    if let Err(error) = shared.commit(&inner) {
                        shared.log(&format!("cannot save the router state: {error}"));
                    }
                }
            });
            Shared {
                listen,
                supervision: Arc::new(Supervision {
                    http,
                    health_timeout: options.health_timeout,
                    grace: options.grace,
                    changed,
                    log: options.log.clone(),
                }),
                options,
                inner: Mutex::new(Inner::default()),
                table: RwLock::new(Arc::new(Table::default())),
                exported: metrics::Exported::new(),
                changes: tokio::sync::Mutex::new(()),
            }
        });
        let mut restored = Vec::new();
        if let Some(persisted) = persisted {
            let mut inner = lock(&shared.inner);
            inner.weights = persisted.weights;
            inner.stable = persisted.stable;
            inner.lease = persisted.lease;
            inner.reverted = persisted.reverted;
            drop(inner);
            restored = persisted.backends;
        }
        Ok(Router {
            shared,
            data,
            admin,
            _lock: lock_file,
            restored,
        })
    }

    /// The data address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.shared.listen
    }

    /// The admin address.
    pub fn admin_addr(&self) -> Result<SocketAddr> {
        self.admin
            .local_addr()
            .map_err(|error| Error::Service(format!("cannot read the bound address: {error}")))
    }

    /// Serves until `shutdown` completes: restores the saved backends
    /// (adopting servers still running), then answers both ports.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
        let Router {
            shared,
            data,
            admin,
            _lock,
            restored,
        } = self;
        for saved in restored {
            let version = saved.spec.version.clone();
            let backend = match Backend::new(
                saved.spec,
                saved.port,
                &shared.logs_dir(),
                shared.exported.handles(&version),
            ) {
                Ok(backend) => Arc::new(backend),
                Err(error) => {
                    shared.log(&format!("cannot restore backend {version}: {error}"));
                    continue;
                }
            };
            lock(&shared.inner)
                .backends
                .insert(version, backend.clone());
            let (started, _) = tokio::sync::oneshot::channel();
            tokio::spawn(backend::supervise(
                backend,
                Start::Restore { pid: saved.pid },
                shared.supervision.clone(),
                started,
            ));
        }
        {
            let inner = lock(&shared.inner);
            shared.commit(&inner)?;
        }
        let lease_watch = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    shared.expire_lease();
                }
            })
        };
        let (stop_workers, stopped) = tokio::sync::watch::channel(false);
        let workers = start_workers(&shared, data, &stopped)?;
        let admin_task = tokio::spawn(admin::serve(shared.clone(), admin));
        shutdown.await;
        let _ = stop_workers.send(true);
        for worker in workers {
            let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        }
        admin_task.abort();
        lease_watch.abort();
        if shared.options.stop_backends_on_exit {
            let backends: Vec<Arc<Backend>> =
                lock(&shared.inner).backends.values().cloned().collect();
            for backend in &backends {
                backend.retire();
            }
            let deadline =
                tokio::time::Instant::now() + shared.options.grace + Duration::from_secs(2);
            while backends.iter().any(|backend| backend.pid().is_some())
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            // Save the pids so the next router adopts the running servers.
            let inner = lock(&shared.inner);
            shared.persist(&inner)?;
        }
        Ok(())
    }
}

/// A listener on `address` that other sockets may share (`SO_REUSEPORT`):
/// the kernel spreads connections over the workers' listeners.
fn reuseport_listener(address: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(address)?;
    socket.listen(1024)?.into_std()
}

/// Starts the data workers: each a thread with a single-threaded runtime,
/// its own listener on the data address and its own connection pool, so a
/// request is accepted, forwarded and answered on one thread. The first
/// takes the listener `bind` made (the port is fixed by then).
fn start_workers(
    shared: &Arc<Shared>,
    first: std::net::TcpListener,
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> Result<Vec<std::thread::JoinHandle<()>>> {
    let count = match shared.options.workers {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        count => count,
    };
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(reuseport_listener(shared.listen).map_err(|error| {
            Error::Service(format!(
                "cannot add a listener on {}: {error}",
                shared.listen
            ))
        })?);
    }
    let mut workers = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let shared = shared.clone();
        let stopped = stopped.clone();
        let worker = std::thread::Builder::new()
            .name(format!("gantry-router-{index}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        shared.log(&format!("data worker {index} cannot start: {error}"));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => proxy::serve(shared, listener, stopped).await,
                        Err(error) => {
                            shared.log(&format!("data worker {index} cannot listen: {error}"))
                        }
                    }
                });
            })
            .map_err(|error| Error::Service(format!("cannot start a data worker: {error}")))?;
        workers.push(worker);
    }
    Ok(workers)
}

fn read_state(path: &std::path::Path) -> Result<Option<Persisted>> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(Error::io("cannot read", path)(error)),
    };
    let persisted: Persisted = serde_json::from_slice(&bytes).map_err(|error| {
        Error::Input(format!(
            "{}: not a router state file ({error}); move it away to start empty",
            path.display()
        ))
    })?;
    if persisted.format != 1 {
        return Err(Error::Input(format!(
            "{}: state format {} is not one this gantry reads (1)",
            path.display(),
            persisted.format
        )));
    }
    Ok(Some(persisted))
}
