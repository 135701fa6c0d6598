//! The run record, `run.json`: what ran, where, how each attempt ended, on
//! which data, with which metrics, and what it produced.
//!
//! Versioned (`version`), with a JSON Schema (`schemas/run-record.schema.json`).
//! `gantry register --run-record` reads `run_id`, `data.dataset_digest`,
//! `data.lock_digest` and `outputs[].path`/`sha256` from it for lineage.

use std::collections::BTreeMap;
use std::path::Path;

use gantry_core::Digest;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The version of the run record format this gantry writes.
pub const RUN_RECORD_VERSION: u32 = 1;

/// A training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunRecord {
    /// Format version (1).
    pub version: u32,
    /// The run's id: `<UTC time>-<8 hex digits>` unless given.
    pub run_id: String,
    /// How the run ended.
    pub status: Status,
    /// Where it ran: `local` or `slurm`.
    pub backend: String,
    /// The training command: argv, or one shell script when `shell` is true.
    pub command: Vec<String>,
    /// Whether `command` ran through `sh -c`.
    pub shell: bool,
    /// When gantry started the run (RFC 3339, UTC).
    pub started: String,
    /// When it ended.
    pub ended: String,
    /// Wall time of the whole run, restarts and backoff included.
    pub duration_s: f64,
    /// Each launch of the command, in order.
    pub attempts: Vec<Attempt>,
    /// The source the run trained from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitState>,
    /// The configuration files given with `--config` and their combined digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ConfigState>,
    /// The data the run trained on, from validate-data's `data.lock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataState>,
    /// The machine the run used.
    pub environment: RunEnvironment,
    /// What the trainer reported in its metrics file.
    pub metrics: MetricsState,
    /// Complete checkpoints left in the checkpoint directory at the end.
    pub checkpoints: Vec<CheckpointState>,
    /// The directory the final model was written to (`GANTRY_OUTPUT_DIR`).
    pub output_dir: String,
    /// Every file in it, with its sha256.
    pub outputs: Vec<OutputFile>,
    /// The experiment tracking server's copy of the run, when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking: Option<TrackingState>,
    /// Things worth a look that did not stop the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// How a run (or an attempt) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The command exited 0.
    Succeeded,
    /// The command failed and no restart was left (or allowed).
    Failed,
    /// `--timeout` ran out; the command was stopped.
    TimedOut,
    /// The job was cancelled (gantry got SIGTERM, SIGINT or SIGHUP); the
    /// command was stopped.
    Cancelled,
}

impl Status {
    /// The word used in logs and outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Cancelled => "cancelled",
        }
    }
}

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// Exit status 0.
    Succeeded,
    /// A non-zero exit status or a signal gantry did not send.
    Failed,
    /// The scheduler preempted the job or its node failed (Slurm).
    Preempted,
    /// Stopped by gantry because `--timeout` ran out.
    TimedOut,
    /// Stopped by gantry because the job was cancelled.
    Cancelled,
}

/// One launch of the training command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attempt {
    /// 1 for the first launch.
    pub number: u32,
    /// When it started (RFC 3339, UTC).
    pub started: String,
    /// When it ended.
    pub ended: String,
    /// How long it ran.
    pub duration_s: f64,
    /// The checkpoint it resumed from (`GANTRY_RESUME_FROM`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resumed_from: Option<String>,
    /// Its exit status, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did (e.g. `SIGKILL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// Why, in words.
    pub reason: String,
    /// The scheduler's job id (Slurm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The scheduler's final state (Slurm: COMPLETED, FAILED, PREEMPTED, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_state: Option<String>,
}

/// The repository state the run trained from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GitState {
    /// The commit.
    pub commit: String,
    /// Whether tracked files differed from the commit when the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dirty: Option<bool>,
    /// The branch or tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// The repository (owner/name, or the remote URL without credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

/// Configuration files and their combined digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ConfigState {
    /// sha256 of the canonical JSON of `files`: one value to compare runs by.
    #[schemars(with = "String")]
    pub digest: Digest,
    /// Each file as given and its sha256.
    pub files: Vec<HashedFile>,
}

/// A file and its sha256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HashedFile {
    /// The path as given.
    pub path: String,
    /// Its sha256.
    #[schemars(with = "String")]
    pub sha256: Digest,
}

/// The training data, from a `data.lock`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DataState {
    /// The lock file as given.
    pub lock: String,
    /// sha256 of the lock file.
    #[schemars(with = "String")]
    pub lock_digest: Digest,
    /// The dataset digest the lock records.
    #[schemars(with = "String")]
    pub dataset_digest: Digest,
}

/// The machine the run used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunEnvironment {
    /// Host name of the runner (for Slurm, of the submitting host).
    pub host: String,
    /// `linux-x86_64` and the like.
    pub platform: String,
    /// gantry's version.
    pub gantry_version: String,
    /// The GPUs leased to the run.
    pub gpus: Vec<GpuState>,
    /// `CUDA_VISIBLE_DEVICES` as given to the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_visible_devices: Option<String>,
    /// The NVIDIA driver version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_version: Option<String>,
    /// The CUDA version the driver supports (from `nvidia-smi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuda_version: Option<String>,
}

/// A GPU leased to the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GpuState {
    /// nvidia-smi's index.
    pub index: u32,
    /// The GPU's UUID.
    pub uuid: String,
    /// The model, e.g. `NVIDIA H100 80GB HBM3`.
    pub name: String,
    /// Memory in MiB.
    pub memory_mib: u64,
}

/// A metric's value at a step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MetricValue {
    /// The step it was reported at.
    pub step: u64,
    /// The value.
    pub value: f64,
}

/// What the trainer's metrics file held.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct MetricsState {
    /// The metrics file (`GANTRY_METRICS_FILE`).
    pub file: String,
    /// Lines read.
    pub lines: u64,
    /// Lines skipped as malformed.
    pub malformed: u64,
    /// The first malformed lines: `FILE:LINE: reason`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub malformed_examples: Vec<String>,
    /// The last value of every metric.
    #[serde(rename = "final")]
    pub last: BTreeMap<String, MetricValue>,
    /// The best value of metrics with a known direction (loss-like: lowest;
    /// accuracy-like: highest).
    pub best: BTreeMap<String, MetricValue>,
}

/// A complete checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CheckpointState {
    /// Its training step, when its name gives one (Lightning's
    /// `last.ckpt` does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
    /// Its directory or file.
    pub path: String,
    /// The layout it was read as (`hf`, `dir`, `lightning`, `deepspeed`, `dcp`).
    #[serde(default = "hf_layout")]
    pub layout: String,
}

fn hf_layout() -> String {
    "hf".to_owned()
}

/// A file the run produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct OutputFile {
    /// Path relative to the output directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Its sha256.
    #[schemars(with = "String")]
    pub sha256: Digest,
}

/// The tracking server's copy of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TrackingState {
    /// The tracking URI.
    pub uri: String,
    /// The experiment.
    pub experiment: String,
    /// The server's run id, once it created the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The run's page on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Whether everything (params, every metric, tags, run.json) reached the server.
    pub synced: bool,
    /// The last error, when something did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many times the sync was retried at the end of the run.
    pub retries: u32,
}

impl RunRecord {
    /// Writes the record to `path` atomically (a temporary file renamed
    /// into place), redacted by `redactor`.
    pub fn write(&self, path: &Path, redactor: &gantry_core::Redactor) -> Result<()> {
        let mut text = redactor
            .to_json_pretty(self)
            .map_err(|error| Error::Input(format!("cannot encode the run record: {error}")))?;
        text.push('\n');
        write_atomic(path, text.as_bytes())
    }

    /// Reads a record written by [`RunRecord::write`].
    pub fn read(path: &Path) -> Result<RunRecord> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| Error::Input(format!("{}: {error}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|error| Error::Input(format!("{}: not a run record: {error}", path.display())))
    }

    /// The newest checkpoint left, if any.
    pub fn newest_checkpoint(&self) -> Option<&CheckpointState> {
        // Listed oldest first, in the layout's own order.
        self.checkpoints.last()
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)
        .map_err(|error| Error::Input(format!("cannot create {}: {error}", parent.display())))?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = parent.join(format!(".{name}.tmp.{}", std::process::id()));
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|error| Error::Input(format!("cannot write {}: {error}", path.display())))
}

/// The JSON Schema of `run.json`.
pub fn run_record_schema() -> schemars::Schema {
    schemars::schema_for!(RunRecord)
}
