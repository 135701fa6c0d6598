//! The router's admin API: the JSON documents `gantry router` answers and the
//! controller sends. One definition serves both sides.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The header each proxied response carries: the version that answered.
pub const VERSION_HEADER: &str = "x-gantry-version";

/// A backend to add (`POST /v1/backends`): a model server the router starts
/// from `serve_command`, or one already running at `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSpec {
    /// The model version it serves (the routing key).
    pub version: String,
    /// The model's manifest digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The model directory, substituted for `{model_dir}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<PathBuf>,
    /// The command that serves it, split like a shell would but run without
    /// one; `{model_dir}`, `{port}`, `{version}` and `{digest}` are replaced
    /// inside each word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serve_command: Option<String>,
    /// The base URL of a server that is already running (instead of a command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How long the server may take to answer `/health` and `/v1/models`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_timeout_seconds: Option<u64>,
}

/// A backend's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    /// Started, not yet answering its health checks.
    Starting,
    /// Answering: takes traffic.
    Healthy,
    /// Exited or stopped answering; being restarted.
    Unhealthy,
    /// Being retired.
    Stopping,
}

/// One backend as the router sees it (`GET /v1/backends`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendView {
    /// The model version.
    pub version: String,
    /// Its manifest digest, when given.
    pub digest: Option<String>,
    /// The model directory, when given.
    pub model_dir: Option<PathBuf>,
    /// Where the router sends its requests.
    pub url: String,
    /// The server's process id, when the router runs it.
    pub pid: Option<u32>,
    /// Health.
    pub health: Health,
    /// Its share of traffic, in percent.
    pub weight: u32,
    /// Restarts after crashes since it was added.
    pub restarts: u32,
    /// Requests being answered now.
    pub in_flight: u64,
    /// The last lines of its log (the router's own process only).
    pub log_tail: Vec<String>,
}

/// A lease on a canary weight: the dead-man switch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Who holds it (a controller's deployment id).
    pub holder: String,
    /// When it expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
}

/// The router taking all traffic back to stable by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reversion {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// Why.
    pub reason: String,
    /// The weights it replaced.
    pub weights_before: BTreeMap<String, u32>,
}

/// The router's whole state (`GET /v1/backends`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RouterView {
    /// The data address clients use.
    pub listen: String,
    /// The stable version: where traffic goes when a lease expires.
    pub stable: Option<String>,
    /// Every backend.
    pub backends: Vec<BackendView>,
    /// The lease on the current weights, if any.
    pub lease: Option<Lease>,
    /// The last time the router reverted to stable by itself.
    pub reverted: Option<Reversion>,
}

impl RouterView {
    /// The backend serving `version`.
    pub fn backend(&self, version: &str) -> Option<&BackendView> {
        self.backends
            .iter()
            .find(|backend| backend.version == version)
    }

    /// The share of traffic `version` gets, in percent (0 when unknown).
    pub fn weight_of(&self, version: &str) -> u32 {
        self.backend(version).map_or(0, |backend| backend.weight)
    }

    /// ` (why the router reverted to stable)`, or nothing.
    pub fn reverted_note(&self) -> String {
        self.reverted
            .as_ref()
            .map_or(String::new(), |reverted| format!(" ({})", reverted.reason))
    }

    /// The weights, by version.
    pub fn weights(&self) -> BTreeMap<String, u32> {
        self.backends
            .iter()
            .map(|backend| (backend.version.clone(), backend.weight))
            .collect()
    }
}

/// New weights (`PUT /v1/weights`): percentages that add up to 100.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightsRequest {
    /// Percent of traffic per version; versions left out get 0.
    pub weights: BTreeMap<String, u32>,
    /// The stable version, where traffic returns when the lease expires.
    pub stable: String,
    /// How long the weights hold without renewal; required when any version
    /// other than stable gets traffic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<u64>,
    /// Who holds the lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
}

impl WeightsRequest {
    /// All traffic to `version`, which becomes stable; no lease needed.
    pub fn all_to(version: &str) -> WeightsRequest {
        WeightsRequest {
            weights: BTreeMap::from([(version.to_owned(), 100)]),
            stable: version.to_owned(),
            lease_seconds: None,
            holder: None,
        }
    }
}

/// Counts of responses by class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCounts {
    /// 1xx, 2xx and 3xx.
    pub ok: u64,
    /// 4xx: the client's fault, not counted as errors.
    pub client_error: u64,
    /// 5xx from the server.
    pub server_error: u64,
    /// No answer: connection refused or reset, a reply cut short.
    pub connection_error: u64,
}

/// One version's requests since a time (`GET /v1/metrics/{version}?since_ms=`):
/// counts and the per-request samples the relative judge ranks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionMetrics {
    /// The version.
    pub version: String,
    /// The window's start, in milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// When the answer was made.
    pub until_ms: u64,
    /// Requests finished in the window.
    pub requests: u64,
    /// Their outcomes.
    pub status: StatusCounts,
    /// End-to-end latency of each successful request, milliseconds.
    pub latency_ms: Vec<f64>,
    /// Time to first token of each successful streamed request, milliseconds.
    pub ttft_ms: Vec<f64>,
    /// Output tokens of the window (from `usage`, or counted stream chunks).
    pub output_tokens: u64,
    /// True when older samples of the window were already dropped.
    pub truncated: bool,
}

impl VersionMetrics {
    /// Server and connection errors.
    pub fn errors(&self) -> u64 {
        self.status.server_error + self.status.connection_error
    }
}

/// An error answer of the admin API.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    /// What went wrong, in words.
    pub error: String,
    /// The last log lines of the model server concerned, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}
