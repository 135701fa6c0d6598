//! `tiny-lm train`: AdamW on random windows of the rendered training stream,
//! following the gantry training contract (see `docs/training-contract.md`).
//!
//! Determinism: the weights come from `--seed`; the batch of step `s` comes
//! from ChaCha8 stream `s + 1` of the same seed, so a run resumed at step `s`
//! draws exactly the batches an uninterrupted run would. A checkpoint holds the
//! weights, both AdamW moments and the step, so resuming gives bit-identical
//! final weights.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor, Var};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::chat::render_record;
use crate::data::{Message, read_chat_records};
use crate::model::{Config, Model};

/// Exit status after a SIGTERM/SIGINT checkpoint (128 + SIGTERM), as shells report it.
pub const EXIT_TERMINATED: i32 = 143;
/// Exit code of the crash `--crash-at-step` asks for.
pub const EXIT_CRASHED: i32 = 1;

/// Everything `train` needs, after flags and `GANTRY_*` variables are resolved.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Training JSONL (openai-chat).
    pub data: PathBuf,
    /// Validation JSONL for `val_loss`.
    pub validation: Option<PathBuf>,
    /// Optimizer steps in the whole run.
    pub steps: u64,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Seed for weights and batches.
    pub seed: u64,
    /// Where the final model goes.
    pub output_dir: PathBuf,
    /// Where `checkpoint-N` directories go.
    pub checkpoint_dir: PathBuf,
    /// Steps between checkpoints (0: only at the end and on SIGTERM).
    pub checkpoint_every: u64,
    /// Checkpoints kept (the newest).
    pub keep_checkpoints: usize,
    /// A `checkpoint-N` directory, or a checkpoint directory to take the newest from.
    pub resume_from: Option<PathBuf>,
    /// Metrics JSONL, appended to.
    pub metrics_file: Option<PathBuf>,
    /// Steps between validation-loss measurements.
    pub eval_every: u64,
    /// Fraction of records whose answer is replaced by another record's (a worse model on purpose).
    pub corrupt_fraction: f64,
    /// Crash (exit 1, no checkpoint) after this step in a run that did not
    /// resume: a failure for `gantry train` to restart from a checkpoint.
    /// A resumed run passes the step.
    pub crash_at_step: Option<u64>,
    /// Model shape.
    pub config: Config,
}

/// What is saved beside the weights in each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Completed optimizer steps.
    pub step: u64,
    /// Steps the run was started with (the learning-rate schedule depends on it).
    pub total_steps: u64,
    /// Seed of the run.
    pub seed: u64,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Fraction of corrupted records.
    pub corrupt_fraction: f64,
    /// sha256 of the training file.
    pub data_sha256: String,
    /// Training loss of the last step.
    pub loss: Option<f64>,
}

/// What a finished run reports.
#[derive(Debug, Serialize)]
pub struct TrainSummary {
    /// Steps completed.
    pub steps: u64,
    /// Loss of the first step of this process (None when resumed at the end).
    pub first_loss: Option<f64>,
    /// Loss of the last step.
    pub final_loss: Option<f64>,
    /// Last validation loss.
    pub val_loss: Option<f64>,
    /// Parameters.
    pub parameters: usize,
    /// Wall-clock seconds of this process's training.
    pub seconds: f64,
    /// Step this process started from.
    pub resumed_from_step: u64,
    /// The model directory written.
    pub output_dir: PathBuf,
}

/// AdamW with moments we can save (candle-nn's keeps them private).
struct AdamW {
    m: Vec<Var>,
    v: Vec<Var>,
    names: Vec<String>,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.99;
const EPS: f64 = 1e-8;
const WEIGHT_DECAY: f64 = 0.01;

impl AdamW {
    fn new(model: &Model) -> Result<Self> {
        let mut m = Vec::new();
        let mut v = Vec::new();
        let mut names = Vec::new();
        for (name, var) in &model.params {
            m.push(Var::zeros(var.shape(), var.dtype(), &Device::Cpu)?);
            v.push(Var::zeros(var.shape(), var.dtype(), &Device::Cpu)?);
            names.push(name.clone());
        }
        Ok(Self { m, v, names })
    }

    fn load(&mut self, tensors: &mut HashMap<String, Tensor>, path: &Path) -> Result<()> {
        for (i, name) in self.names.iter().enumerate() {
            for (kind, slot) in [("m", &self.m[i]), ("v", &self.v[i])] {
                let key = format!("{kind}.{name}");
                let t = tensors
                    .remove(&key)
                    .with_context(|| format!("{}: missing {key}", path.display()))?;
                slot.set(&t)?;
            }
        }
        Ok(())
    }

    fn tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, name) in self.names.iter().enumerate() {
            out.push((format!("m.{name}"), self.m[i].as_tensor().clone()));
            out.push((format!("v.{name}"), self.v[i].as_tensor().clone()));
        }
        out
    }

    /// One update; `t` is the 1-based step number.
    fn step(&self, model: &Model, grads: &HashMap<String, Tensor>, lr: f64, t: u64) -> Result<()> {
        let t = i32::try_from(t).unwrap_or(i32::MAX);
        let scale_m = 1.0 / (1.0 - BETA1.powi(t));
        let scale_v = 1.0 / (1.0 - BETA2.powi(t));
        for (i, name) in self.names.iter().enumerate() {
            let theta = &model.params[name];
            let Some(g) = grads.get(name) else { continue };
            let m = ((self.m[i].as_tensor() * BETA1)? + (g * (1.0 - BETA1))?)?;
            let v = ((self.v[i].as_tensor() * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            // No decay on norm gains.
            let decay = if name.contains("ln") {
                0.0
            } else {
                WEIGHT_DECAY
            };
            let update = ((&m * scale_m)? / ((&v * scale_v)?.sqrt()? + EPS)?)?;
            let next = ((theta.as_tensor() * (1.0 - lr * decay))? - (update * lr)?)?;
            self.m[i].set(&m)?;
            self.v[i].set(&v)?;
            theta.set(&next)?;
        }
        Ok(())
    }
}

/// Linear warm-up for 5% of the steps, then cosine decay to 10% of the peak.
fn learning_rate(step: u64, total: u64, peak: f64) -> f64 {
    let warmup = (total / 20).max(1);
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos()))
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Replaces the last assistant answer of `fraction` of the records with
/// another record's answer.
fn corrupt(records: &mut [Vec<Message>], fraction: f64, seed: u64) {
    if fraction <= 0.0 {
        return;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc0ff_ee00);
    let answers: Vec<String> = records
        .iter()
        .filter_map(|r| {
            r.iter()
                .rev()
                .find(|m| m.role == "assistant")
                .map(|m| m.content.clone())
        })
        .collect();
    for record in records.iter_mut() {
        if rng.random_bool(fraction.min(1.0))
            && let (Some(m), Some(a)) = (
                record.iter_mut().rev().find(|m| m.role == "assistant"),
                answers.choose(&mut rng),
            )
        {
            m.content = a.clone();
        }
    }
}

/// Weight of a prompt byte in the loss; answer bytes weigh 1. Mostly
/// "train on completions", with enough of the prompt to stay a language model.
const PROMPT_WEIGHT: f32 = 0.1;

/// One rendered record: its bytes and the loss weight of predicting each byte.
struct Example {
    bytes: Vec<u8>,
    weights: Vec<f32>,
}

fn example_of(record: &[Message], block: usize) -> Example {
    let mut bytes = b"\n".to_vec();
    let mut weights = vec![PROMPT_WEIGHT];
    for m in record {
        let line = render_record(std::slice::from_ref(m));
        // `render_record` ends with a blank line; keep one newline per message.
        let line = &line[..line.len() - 1];
        let label = line.iter().position(|&b| b == b' ').map_or(0, |i| i + 1);
        for (i, &b) in line.iter().enumerate() {
            bytes.push(b);
            weights.push(if m.role == "assistant" && i >= label {
                1.0
            } else {
                PROMPT_WEIGHT
            });
        }
    }
    // Keep the end (the answer) when the record is longer than the context.
    let excess = bytes.len().saturating_sub(block + 1);
    Example {
        bytes: bytes[excess..].to_vec(),
        weights: weights[excess..].to_vec(),
    }
}

/// Inputs, targets and loss weights for one step: `batch` records drawn from
/// ChaCha8 stream `step + 1` of `seed`, right-padded to the longest.
fn batch(
    examples: &[Example],
    batch: usize,
    seed: u64,
    step: u64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(step + 1);
    let picked: Vec<&Example> = (0..batch)
        .map(|_| &examples[rng.random_range(0..examples.len())])
        .collect();
    let t = picked.iter().map(|e| e.bytes.len() - 1).max().unwrap_or(1);
    let mut inputs = vec![0u32; batch * t];
    let mut targets = vec![0u32; batch * t];
    let mut weights = vec![0f32; batch * t];
    for (row, e) in picked.iter().enumerate() {
        for i in 0..e.bytes.len() - 1 {
            inputs[row * t + i] = u32::from(e.bytes[i]);
            targets[row * t + i] = u32::from(e.bytes[i + 1]);
            weights[row * t + i] = e.weights[i + 1];
        }
    }
    Ok((
        Tensor::from_vec(inputs, (batch, t), &Device::Cpu)?,
        Tensor::from_vec(targets, (batch, t), &Device::Cpu)?,
        Tensor::from_vec(weights, (batch, t), &Device::Cpu)?,
    ))
}

/// The batch of one step is split into this many fixed shards whose
/// gradients are computed on separate threads and added in shard order. The
/// number is a constant, not the core count, so the result is bit-identical on
/// any machine: only how many shards run at once depends on the cores.
const SHARDS: usize = 2;

/// Loss and gradients (by parameter name) of step `step`.
fn step_gradients(
    model: &Model,
    examples: &[Example],
    batch_size: usize,
    seed: u64,
    step: u64,
) -> Result<(f64, HashMap<String, Tensor>)> {
    let (x, y, w) = batch(examples, batch_size, seed, step)?;
    let total = f64::from(w.sum_all()?.to_scalar::<f32>()?).max(1e-6);
    let shards = SHARDS.min(batch_size);
    let rows = batch_size.div_ceil(shards);
    let parts: Vec<(Tensor, Tensor, Tensor)> = (0..shards)
        .filter_map(|i| {
            let start = i * rows;
            let len = rows.min(batch_size.saturating_sub(start));
            (len > 0).then(|| {
                Ok((
                    x.narrow(0, start, len)?,
                    y.narrow(0, start, len)?,
                    w.narrow(0, start, len)?,
                ))
            })
        })
        .collect::<Result<_>>()?;
    let run = |(x, y, w): &(Tensor, Tensor, Tensor)| -> Result<(f64, HashMap<String, Tensor>)> {
        let loss = model.weighted_loss(x, y, w, total)?;
        let grads = loss.backward()?;
        let by_name = model
            .params
            .iter()
            .filter_map(|(name, var)| grads.get(var).map(|g| (name.clone(), g.clone())))
            .collect();
        Ok((f64::from(loss.to_scalar::<f32>()?), by_name))
    };
    // On rayon's pool, so candle's own matmul threads nest instead of competing.
    let results: Vec<Result<(f64, HashMap<String, Tensor>)>> = parts.par_iter().map(run).collect();
    let mut loss = 0.0;
    let mut grads: HashMap<String, Tensor> = HashMap::new();
    for result in results {
        let (part_loss, part_grads) = result?;
        loss += part_loss;
        for (name, g) in part_grads {
            let summed = match grads.remove(&name) {
                Some(acc) => (acc + g)?,
                None => g,
            };
            grads.insert(name, summed);
        }
    }
    Ok((loss, grads))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

fn safetensors_bytes(tensors: Vec<(String, Tensor)>, step: u64) -> Result<Vec<u8>> {
    let metadata: HashMap<String, String> = [
        ("format".to_owned(), "pt".to_owned()),
        (
            "producer".to_owned(),
            format!("tiny-lm {}", env!("CARGO_PKG_VERSION")),
        ),
        ("step".to_owned(), step.to_string()),
    ]
    .into();
    let mut tensors = tensors;
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    canonical_header(safetensors::serialize(tensors, Some(metadata))?)
}

/// Rewrites a safetensors header with its JSON keys sorted. The crate writes
/// `__metadata__` from a `HashMap`, whose order changes from process to
/// process, so two runs with identical weights would give files with
/// different digests. Same content, same length: only the order changes.
fn canonical_header(mut bytes: Vec<u8>) -> Result<Vec<u8>> {
    let length = bytes
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| 8 + n <= bytes.len())
        .context("safetensors header length")?;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + length])?;
    // serde_json's maps are ordered by key.
    let mut sorted = serde_json::to_vec(&header)?;
    if sorted.len() > length {
        bail!(
            "sorted safetensors header grew from {length} to {} bytes",
            sorted.len()
        );
    }
    sorted.resize(length, b' ');
    bytes[8..8 + length].copy_from_slice(&sorted);
    Ok(bytes)
}

/// Writes `model.safetensors` and `config.json` into `dir` (each atomically).
pub fn save_model(model: &Model, dir: &Path, step: u64) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_atomic(
        &dir.join("model.safetensors"),
        &safetensors_bytes(model.tensors().into_iter().collect(), step)?,
    )?;
    write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&model.config)?.as_bytes(),
    )?;
    Ok(())
}

/// Writes `checkpoint-<step>` under `root`: built in a temporary directory and
/// renamed into place, so a reader never sees half a checkpoint.
fn save_checkpoint(
    root: &Path,
    model: &Model,
    opt: &AdamW,
    state: &TrainerState,
    keep: usize,
) -> Result<PathBuf> {
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let final_dir = root.join(format!("checkpoint-{}", state.step));
    let tmp = root.join(format!(
        ".checkpoint-{}.tmp.{}",
        state.step,
        std::process::id()
    ));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    save_model(model, &tmp, state.step)?;
    write_atomic(
        &tmp.join("optimizer.safetensors"),
        &safetensors_bytes(opt.tensors(), state.step)?,
    )?;
    write_atomic(
        &tmp.join("trainer_state.json"),
        serde_json::to_string_pretty(state)?.as_bytes(),
    )?;
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir)?;
    }
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), final_dir.display()))?;
    if let Ok(dir) = File::open(root) {
        let _ = dir.sync_all();
    }
    let mut existing = list_checkpoints(root)?;
    while existing.len() > keep.max(1) {
        let (_, old) = existing.remove(0);
        let _ = std::fs::remove_dir_all(old);
    }
    Ok(final_dir)
}

/// Complete checkpoints under `root`, oldest first.
pub fn list_checkpoints(root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(out);
    };
    for entry in entries {
        let path = entry?.path();
        let Some(step) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if path.join("trainer_state.json").is_file() {
            out.push((step, path));
        }
    }
    out.sort();
    Ok(out)
}

/// A checkpoint directory, or the newest complete one inside a checkpoint root.
fn resolve_resume(path: &Path) -> Result<PathBuf> {
    if path.join("trainer_state.json").is_file() {
        return Ok(path.to_owned());
    }
    list_checkpoints(path)?.pop().map(|(_, p)| p).with_context(|| {
        format!("GANTRY_RESUME_FROM={}: neither a checkpoint (no trainer_state.json) nor a directory holding checkpoint-N", path.display())
    })
}

struct Metrics(Option<File>);

impl Metrics {
    fn open(path: Option<&Path>) -> Result<Self> {
        let Some(path) = path else {
            return Ok(Self(None));
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening metrics file {}", path.display()))?;
        Ok(Self(Some(file)))
    }

    fn write(&mut self, value: serde_json::Value) -> Result<()> {
        if let Some(f) = &mut self.0 {
            writeln!(f, "{value}")?;
            f.flush()?;
        }
        Ok(())
    }
}

fn validation_loss(model: &Model, examples: &[Example]) -> Result<f64> {
    // The same records every time, so successive measurements are comparable.
    let n = examples.len().min(64);
    let (x, y, w) = batch(&examples[..n], n, 0x7a1, 0)?;
    Ok(f64::from(model.loss(&x, &y, &w)?.to_scalar::<f32>()?))
}

/// Runs training. Returns the summary, or exits the process with
/// [`EXIT_TERMINATED`] after writing a checkpoint when a signal arrives.
pub fn train(options: &TrainOptions, log: &mut dyn FnMut(&str)) -> Result<TrainSummary> {
    let (mut records, skipped) = read_chat_records(&options.data)?;
    if records.is_empty() {
        bail!("{}: no usable chat records", options.data.display());
    }
    if skipped > 0 {
        log(&format!(
            "skipped {skipped} lines of {} that are not chat records",
            options.data.display()
        ));
    }
    corrupt(&mut records, options.corrupt_fraction, options.seed);
    let block = options.config.block_size;
    let examples: Vec<Example> = records
        .iter()
        .map(|r| example_of(r, block))
        .filter(|e| e.bytes.len() > 1)
        .collect();
    if examples.is_empty() {
        bail!("{}: too little text to train on", options.data.display());
    }
    let validation: Option<Vec<Example>> = match &options.validation {
        Some(path) => Some(
            read_chat_records(path)?
                .0
                .iter()
                .map(|r| example_of(r, block))
                .filter(|e| e.bytes.len() > 1)
                .collect(),
        )
        .filter(|v: &Vec<Example>| !v.is_empty()),
        None => None,
    };
    let data_sha256 = sha256_file(&options.data)?;

    let terminate = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&terminate))?;
    }

    let mut state = TrainerState {
        step: 0,
        total_steps: options.steps,
        seed: options.seed,
        batch_size: options.batch_size,
        learning_rate: options.learning_rate,
        corrupt_fraction: options.corrupt_fraction,
        data_sha256,
        loss: None,
    };
    let (model, opt) = match &options.resume_from {
        Some(path) => {
            let dir = resolve_resume(path)?;
            let state_path = dir.join("trainer_state.json");
            let saved: TrainerState = serde_json::from_str(&std::fs::read_to_string(&state_path)?)
                .with_context(|| {
                    format!("{}: not a tiny-lm trainer state", state_path.display())
                })?;
            let comparable = |s: &TrainerState| {
                (
                    s.total_steps,
                    s.seed,
                    s.batch_size,
                    s.learning_rate.to_bits(),
                    s.corrupt_fraction.to_bits(),
                    s.data_sha256.clone(),
                )
            };
            if comparable(&saved) != comparable(&state) {
                bail!(
                    "{}: checkpoint was made with steps={} seed={} batch_size={} lr={} corrupt={} data sha256 {}; \
                     this run has steps={} seed={} batch_size={} lr={} corrupt={} data sha256 {}: resuming would not reproduce the run",
                    state_path.display(),
                    saved.total_steps,
                    saved.seed,
                    saved.batch_size,
                    saved.learning_rate,
                    saved.corrupt_fraction,
                    saved.data_sha256,
                    state.total_steps,
                    state.seed,
                    state.batch_size,
                    state.learning_rate,
                    state.corrupt_fraction,
                    state.data_sha256,
                );
            }
            let model = Model::load(&dir)?;
            if model.config != options.config {
                bail!(
                    "{}: model shape differs from this run's flags",
                    dir.join("config.json").display()
                );
            }
            let mut opt = AdamW::new(&model)?;
            let opt_path = dir.join("optimizer.safetensors");
            let mut tensors = candle_core::safetensors::load(&opt_path, &Device::Cpu)
                .with_context(|| format!("reading {}", opt_path.display()))?;
            opt.load(&mut tensors, &opt_path)?;
            state = saved;
            log(&format!(
                "resumed from {} at step {}",
                dir.display(),
                state.step
            ));
            (model, opt)
        }
        None => {
            let model = Model::init(options.config.clone(), options.seed)?;
            let opt = AdamW::new(&model)?;
            (model, opt)
        }
    };
    let resumed_from_step = state.step;
    let mut metrics = Metrics::open(options.metrics_file.as_deref())?;
    let started = Instant::now();
    let mut first_loss = None;
    let mut val_loss = None;
    log(&format!(
        "training {} parameters for {} steps (batch {} x {} bytes) from step {}",
        model.parameter_count(),
        options.steps,
        options.batch_size,
        block,
        state.step
    ));
    while state.step < options.steps {
        if terminate.load(Ordering::Relaxed) {
            let dir = save_checkpoint(
                &options.checkpoint_dir,
                &model,
                &opt,
                &state,
                options.keep_checkpoints,
            )?;
            metrics
                .write(json!({ "step": state.step, "event": "terminated", "checkpoint": dir }))?;
            log(&format!(
                "signal received: wrote {} and stopped",
                dir.display()
            ));
            std::process::exit(EXIT_TERMINATED);
        }
        let lr = learning_rate(state.step, options.steps, options.learning_rate);
        let (loss, grads) = step_gradients(
            &model,
            &examples,
            options.batch_size,
            options.seed,
            state.step,
        )?;
        opt.step(&model, &grads, lr, state.step + 1)?;
        state.step += 1;
        if !loss.is_finite() {
            bail!(
                "loss became {loss} at step {}: lower --learning-rate",
                state.step
            );
        }
        first_loss.get_or_insert(loss);
        state.loss = Some(loss);
        let mut line = json!({
            "step": state.step,
            "loss": loss,
            "lr": lr,
            "sequences": state.step * options.batch_size as u64,
            "elapsed_s": started.elapsed().as_secs_f64(),
        });
        if options.eval_every > 0
            && (state.step.is_multiple_of(options.eval_every) || state.step == options.steps)
            && let Some(v) = &validation
        {
            let value = validation_loss(&model, v)?;
            val_loss = Some(value);
            line["val_loss"] = json!(value);
        }
        metrics.write(line)?;
        if options.crash_at_step == Some(state.step) && resumed_from_step == 0 {
            log(&format!(
                "crashing at step {} on purpose (--crash-at-step): no checkpoint written",
                state.step
            ));
            std::process::exit(EXIT_CRASHED);
        }
        if options.checkpoint_every > 0
            && state.step.is_multiple_of(options.checkpoint_every)
            && state.step < options.steps
        {
            save_checkpoint(
                &options.checkpoint_dir,
                &model,
                &opt,
                &state,
                options.keep_checkpoints,
            )?;
        }
    }
    save_checkpoint(
        &options.checkpoint_dir,
        &model,
        &opt,
        &state,
        options.keep_checkpoints,
    )?;
    save_model(&model, &options.output_dir, state.step)?;
    let summary = TrainSummary {
        steps: state.step,
        first_loss,
        final_loss: state.loss,
        val_loss,
        parameters: model.parameter_count(),
        seconds: started.elapsed().as_secs_f64(),
        resumed_from_step,
        output_dir: options.output_dir.clone(),
    };
    write_atomic(
        &options.output_dir.join("training.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_bytes_carry_the_loss() {
        let m = |role: &str, content: &str| Message {
            role: role.into(),
            content: content.into(),
        };
        let e = example_of(&[m("user", "hi"), m("assistant", "yo")], 64);
        assert_eq!(e.bytes, b"\nUser: hi\nAssistant: yo\n");
        let heavy: Vec<u8> = e
            .bytes
            .iter()
            .zip(&e.weights)
            .filter(|(_, w)| **w == 1.0)
            .map(|(b, _)| *b)
            .collect();
        assert_eq!(heavy, b"yo\n");
        let short = example_of(&[m("user", "a long question"), m("assistant", "yo")], 8);
        assert_eq!(short.bytes, b"tant: yo\n");
    }

    #[test]
    fn safetensors_files_do_not_depend_on_hash_order() -> Result<()> {
        let t = Tensor::from_vec(vec![1f32, 2.0], 2, &Device::Cpu)?;
        let first = safetensors_bytes(vec![("b".into(), t.clone()), ("a".into(), t.clone())], 3)?;
        for _ in 0..8 {
            assert_eq!(
                safetensors_bytes(vec![("a".into(), t.clone()), ("b".into(), t.clone())], 3)?,
                first
            );
        }
        let loaded = safetensors::SafeTensors::deserialize(&first)?;
        assert_eq!(loaded.names().len(), 2);
        Ok(())
    }

    #[test]
    fn schedule_warms_up_then_decays() {
        assert!(learning_rate(0, 100, 1.0) < learning_rate(4, 100, 1.0));
        assert!((learning_rate(5, 100, 1.0) - 1.0).abs() < 1e-9);
        assert!((learning_rate(100, 100, 1.0) - 0.1).abs() < 1e-9);
    }

    #[test]
    fn batches_depend_only_on_seed_and_step() -> Result<()> {
        let examples: Vec<Example> = (0..50)
            .map(|i| {
                let m = |role: &str, content: String| Message {
                    role: role.into(),
                    content,
                };
                example_of(
                    &[m("user", format!("q{i}")), m("assistant", format!("a{i}"))],
                    32,
                )
            })
            .collect();
        let a = batch(&examples, 4, 7, 3)?.0.to_vec2::<u32>()?;
        let b = batch(&examples, 4, 7, 3)?.0.to_vec2::<u32>()?;
        let c = batch(&examples, 4, 7, 4)?.0.to_vec2::<u32>()?;
        assert_eq!(a, b);
        assert_ne!(a, c);
        Ok(())
    }
}
