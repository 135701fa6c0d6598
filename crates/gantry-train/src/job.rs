//! One training run from start to record: directories, the trainer's
//! environment, the attempt loop, tracking, the outputs' hashes, `run.json`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use gantry_core::Digest;

use crate::checkpoint;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::launch::{self, Backend, Cancellation, Event, Policy};
use crate::record::{
    CheckpointState, ConfigState, DataState, GitState, GpuState, HashedFile, OutputFile,
    RUN_RECORD_VERSION, RunEnvironment, RunRecord,
};
use crate::summary::Series;
use crate::tracking::{Tracker, TrackingConfig};

/// Everything a run needs, resolved from flags.
#[derive(Debug, Clone)]
pub struct TrainJob {
    /// The run's id.
    pub run_id: String,
    /// argv, or a script for `sh -c` when `shell`.
    pub command: Vec<String>,
    /// Whether `command` is a shell script.
    pub shell: bool,
    /// Where `run.json`, the chart and (by default) everything else go.
    pub run_dir: PathBuf,
    /// `GANTRY_CHECKPOINT_DIR`.
    pub checkpoint_dir: PathBuf,
    /// How the trainer lays out checkpoints there (`--checkpoint-layout`).
    pub checkpoint_layout: checkpoint::Layout,
    /// `--checkpoint-marker`: a file a plain-directory checkpoint must hold.
    pub checkpoint_marker: Option<String>,
    /// `GANTRY_OUTPUT_DIR`.
    pub output_dir: PathBuf,
    /// `GANTRY_METRICS_FILE`.
    pub metrics_file: PathBuf,
    /// `GANTRY_SEED`, when given.
    pub seed: Option<u64>,
    /// Restarts, timeouts, grace period.
    pub policy: Policy,
    /// The GPUs leased to the run (local backend).
    pub gpus: Vec<Gpu>,
    /// `CUDA_VISIBLE_DEVICES` for the command; `None` leaves it alone.
    pub cuda_visible_devices: Option<String>,
    /// The CUDA version the driver supports.
    pub cuda_version: Option<String>,
    /// The source state.
    pub git: Option<GitState>,
    /// `--config` files.
    pub config: Option<ConfigState>,
    /// `--data-lock`.
    pub data: Option<DataState>,
    /// `--tracking-uri`.
    pub tracking: Option<TrackingConfig>,
    /// Extra environment variables for the command.
    pub env: Vec<(String, String)>,
    /// What `run.json` passes through before it is written: a server can
    /// echo a credential into an error the record keeps.
    pub redactor: gantry_core::Redactor,
}

/// What a finished run left.
#[derive(Debug)]
pub struct Finished {
    /// The record, as written to `run.json`.
    pub record: RunRecord,
    /// Where it was written.
    pub record_path: PathBuf,
    /// The metrics' histories, for the summary.
    pub series: Vec<Series>,
    /// The loss curve, when there were metrics.
    pub chart_path: Option<PathBuf>,
}

/// A new run id: the UTC time and 8 random hex digits.
pub fn new_run_id() -> String {
    format!(
        "{}-{:08x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>()
    )
}

/// Creates `dir` and checks that files can be written in it; `what` names
/// it in the error (`run directory`, …).
pub fn ensure_writable(dir: &Path, what: &'static str) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|error| {
        crate::error::given(what, dir.display(), format!("cannot create it: {error}"))
    })?;
    let probe = dir.join(format!(".gantry-write-test.{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|error| {
        crate::error::given(what, dir.display(), format!("not writable: {error}"))
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The digests of `--config` files.
pub fn config_state(paths: &[PathBuf]) -> Result<Option<ConfigState>> {
    if paths.is_empty() {
        return Ok(None);
    }
    let mut files = Vec::new();
    for path in paths {
        let file = std::fs::File::open(path).map_err(|error| {
            crate::error::given("config file", path.display(), error.to_string())
        })?;
        let (sha256, _) =
            Digest::of_reader(file, &path.display().to_string()).map_err(|error| {
                crate::error::given("config file", path.display(), error.to_string())
            })?;
        files.push(HashedFile {
            path: path.display().to_string(),
            sha256,
        });
    }
    let digest = gantry_core::canonical_json_digest(&files)
        .map_err(|error| crate::error::given("config file", "", error.to_string()))?;
    Ok(Some(ConfigState { digest, files }))
}

/// The data state from validate-data's `data.lock`.
pub fn data_state(lock: &Path) -> Result<DataState> {
    let bytes = std::fs::read(lock)
        .map_err(|error| crate::error::given("data lock", lock.display(), error.to_string()))?;
    #[derive(serde::Deserialize)]
    struct Lock {
        dataset_digest: Digest,
    }
    let parsed: Lock = serde_json::from_slice(&bytes).map_err(|error| {
        crate::error::given(
            "data lock",
            lock.display(),
            format!("not a data lock written by gantry validate-data ({error})"),
        )
    })?;
    Ok(DataState {
        lock: lock.display().to_string(),
        lock_digest: Digest::of_bytes(&bytes),
        dataset_digest: parsed.dataset_digest,
    })
}

/// This host's name.
pub fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The CUDA version in `nvidia-smi`'s banner (`CUDA Version: 12.4`).
pub fn cuda_version() -> Option<String> {
    let output = std::process::Command::new("nvidia-smi")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let rest = text.split("CUDA Version:").nth(1)?;
    let version: String = rest
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    (!version.is_empty()).then_some(version)
}

impl TrainJob {
    /// The variables of the training contract, for the command.
    pub fn contract_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("GANTRY_RUN_ID".to_owned(), self.run_id.clone()),
            (
                "GANTRY_RUN_DIR".to_owned(),
                self.run_dir.display().to_string(),
            ),
            (
                "GANTRY_OUTPUT_DIR".to_owned(),
                self.output_dir.display().to_string(),
            ),
            (
                "GANTRY_CHECKPOINT_DIR".to_owned(),
                self.checkpoint_dir.display().to_string(),
            ),
            (
                "GANTRY_METRICS_FILE".to_owned(),
                self.metrics_file.display().to_string(),
            ),
        ];
        // For information, and for the Kubernetes prologue's choice.
        env.push((
            "GANTRY_CHECKPOINT_LAYOUT".to_owned(),
            self.checkpoint_layout.as_str().to_owned(),
        ));
        if let Some(seed) = self.seed {
            env.push(("GANTRY_SEED".to_owned(), seed.to_string()));
        }
        if let Some(devices) = &self.cuda_visible_devices {
            env.push(("CUDA_VISIBLE_DEVICES".to_owned(), devices.clone()));
        }
        env.extend(self.env.iter().cloned());
        env
    }

    /// The checkpoints' place and layout.
    pub fn checkpoints(&self) -> checkpoint::Checkpoints {
        checkpoint::Checkpoints {
            dir: self.checkpoint_dir.clone(),
            layout: self.checkpoint_layout,
            marker: self.checkpoint_marker.clone(),
        }
    }

    /// Creates the directories and checks they can be written.
    pub fn prepare(&self) -> Result<()> {
        ensure_writable(&self.run_dir, "run directory")?;
        ensure_writable(&self.checkpoint_dir, "checkpoint directory")?;
        ensure_writable(&self.output_dir, "output directory")?;
        if let Some(parent) = self
            .metrics_file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            ensure_writable(parent, "metrics file")?;
        }
        Ok(())
    }

    /// Runs the job on `backend` and writes `run.json` into the run directory.
    pub fn execute(
        &self,
        backend: &mut dyn Backend,
        cancellation: &Cancellation,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> Result<Finished> {
        self.prepare()?;
        let started_at = launch::now();
        let started = Instant::now();
        let tracker = match &self.tracking {
            Some(config) => Some(Tracker::start(config.clone())?),
            None => None,
        };
        let env = self.contract_env();
        let outcome = launch::run(
            backend,
            &env,
            &self.checkpoints(),
            &self.metrics_file,
            &self.policy,
            cancellation,
            &mut |event| {
                if let (Event::Metrics(points), Some(tracker)) = (&event, &tracker) {
                    tracker.log(points);
                }
                on_event(event);
            },
        )?;
        let mut warnings = outcome.warnings;
        let outputs = match hash_outputs(&self.output_dir) {
            Ok(outputs) => outputs,
            Err(error) => {
                let text = format!(
                    "cannot hash the outputs in {}: {error}",
                    self.output_dir.display()
                );
                on_event(Event::Warning(text.clone()));
                warnings.push(text);
                Vec::new()
            }
        };
        if outputs.is_empty() && outcome.status == crate::Status::Succeeded {
            let text = format!(
                "the command succeeded but left no files in {} (GANTRY_OUTPUT_DIR): nothing to register",
                self.output_dir.display()
            );
            on_event(Event::Warning(text.clone()));
            warnings.push(text);
        }
        let layout = self.checkpoints();
        let checkpoints = layout
            .list()?
            .into_iter()
            .filter(|found| layout.check(found).is_ok())
            .map(|found| CheckpointState {
                step: found.step,
                path: found.path.display().to_string(),
                layout: found.layout.as_str().to_owned(),
            })
            .collect();
        let series: Vec<Series> = outcome
            .metrics
            .keys()
            .map(|key| (key.to_owned(), outcome.metrics.history(key).to_vec()))
            .collect();
        let mut record = RunRecord {
            version: RUN_RECORD_VERSION,
            run_id: self.run_id.clone(),
            status: outcome.status,
            backend: backend.name().to_owned(),
            command: self.command.clone(),
            shell: self.shell,
            started: started_at,
            ended: launch::now(),
            duration_s: started.elapsed().as_secs_f64(),
            attempts: outcome.attempts,
            git: self.git.clone(),
            config: self.config.clone(),
            data: self.data.clone(),
            environment: RunEnvironment {
                host: host_name(),
                platform: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
                gantry_version: env!("CARGO_PKG_VERSION").to_owned(),
                gpus: self
                    .gpus
                    .iter()
                    .map(|gpu| GpuState {
                        index: gpu.index,
                        uuid: gpu.uuid.clone(),
                        name: gpu.name.clone(),
                        memory_mib: gpu.memory_total_mib,
                    })
                    .collect(),
                cuda_visible_devices: self.cuda_visible_devices.clone(),
                driver_version: self.gpus.first().map(|gpu| gpu.driver.clone()),
                cuda_version: self.cuda_version.clone(),
            },
            metrics: outcome.metrics.state(),
            checkpoints,
            output_dir: self.output_dir.display().to_string(),
            outputs,
            tracking: None,
            warnings,
        };
        let record_path = self.run_dir.join("run.json");
        let chart_path = if series.is_empty() {
            None
        } else {
            let path = self.run_dir.join("metrics.svg");
            crate::record::write_atomic(
                &path,
                gantry_core::chart::line_chart(&crate::summary::shown(&series), |step| {
                    format!("step {step}")
                })
                .as_bytes(),
            )?;
            Some(path)
        };
        if let Some(tracker) = tracker {
            record.write(&record_path, &self.redactor)?;
            on_event(Event::Info(
                "sending the run to the tracking server".to_owned(),
            ));
            // The server gets what run.json holds: redacted.
            let tags = final_tags(&record)
                .into_iter()
                .map(|(key, value)| (key, self.redactor.redact(&value).into_owned()))
                .collect();
            let uploaded = self
                .redactor
                .to_json_pretty(&record)
                .unwrap_or_default()
                .into_bytes();
            let state = tracker.finish(record.status, uploaded, tags);
            if !state.synced {
                let text = format!(
                    "the tracking server {} does not have all of the run: {} (retried {} times at the end)",
                    state.uri,
                    state.error.as_deref().unwrap_or("unknown error"),
                    state.retries
                );
                on_event(Event::Warning(text.clone()));
                record.warnings.push(text);
            }
            record.tracking = Some(state);
        }
        record.write(&record_path, &self.redactor)?;
        Ok(Finished {
            record,
            record_path,
            series,
            chart_path,
        })
    }
}

/// Tags the tracked run gets at the end.
fn final_tags(record: &RunRecord) -> Vec<(String, String)> {
    let mut tags = vec![
        ("gantry.run_id".to_owned(), record.run_id.clone()),
        (
            "gantry.status".to_owned(),
            record.status.as_str().to_owned(),
        ),
        (
            "gantry.attempts".to_owned(),
            record.attempts.len().to_string(),
        ),
        ("gantry.host".to_owned(), record.environment.host.clone()),
    ];
    if let Some(git) = &record.git {
        tags.push(("mlflow.source.git.commit".to_owned(), git.commit.clone()));
        if let Some(dirty) = git.dirty {
            tags.push(("gantry.git.dirty".to_owned(), dirty.to_string()));
        }
    }
    if let Some(data) = &record.data {
        tags.push((
            "gantry.data.dataset_digest".to_owned(),
            data.dataset_digest.to_string(),
        ));
        tags.push((
            "gantry.data.lock_digest".to_owned(),
            data.lock_digest.to_string(),
        ));
    }
    if let Some(config) = &record.config {
        tags.push(("gantry.config_digest".to_owned(), config.digest.to_string()));
    }
    if let Some(gpu) = record.environment.gpus.first() {
        tags.push((
            "gantry.gpu".to_owned(),
            format!("{}x {}", record.environment.gpus.len(), gpu.name),
        ));
    }
    tags
}

/// Every file under the output directory with its sha256; none when it is empty.
fn hash_outputs(dir: &Path) -> Result<Vec<OutputFile>> {
    let empty = std::fs::read_dir(dir)
        .map(|mut entries| entries.next().is_none())
        .unwrap_or(true);
    if empty {
        return Ok(Vec::new());
    }
    let source = gantry_model::ModelSource::read(dir, true)
        .map_err(|error| Error::Input(error.to_string()))?;
    let digests = source
        .hash()
        .map_err(|error| Error::Input(error.to_string()))?;
    Ok(source
        .files
        .iter()
        .zip(digests)
        .map(|(file, sha256)| OutputFile {
            path: file.path.clone(),
            size: file.size,
            sha256,
        })
        .collect())
}
