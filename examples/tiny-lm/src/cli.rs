//! The `tiny-lm` command line, shared by the `tiny-lm` binary and by
//! `gantry tiny-lm` (the copy of this example bundled with gantry for its
//! quickstart).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::model::Config;
use crate::{data, eval, serve, train};

/// tiny-lm: an example language model for gantry's pipeline (train, eval, serve) on a CPU.
#[derive(Debug, Parser)]
#[command(name = "tiny-lm", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a deterministic synthetic instruction dataset (train/validation/eval JSONL).
    GenData(GenDataArgs),
    /// Train the model, following the gantry training contract (GANTRY_* variables).
    Train(TrainArgs),
    /// Evaluate a model on eval items; write gantry-native and lm-eval-shaped results.
    Eval(EvalArgs),
    /// Serve a model over an OpenAI-compatible HTTP API with Prometheus metrics.
    Serve(ServeArgs),
    /// Convert a model: half-precision safetensors (f16, bf16) or a Q8_0 GGUF (q8_0).
    Export(ExportArgs),
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Model directory (config.json + model.safetensors).
    #[arg(long, env = "GANTRY_INPUT_MODEL_DIR")]
    model: PathBuf,
    /// Where the variant is written (config.json + model.safetensors or model.gguf).
    #[arg(long, env = "GANTRY_OUTPUT_DIR")]
    out: PathBuf,
    /// f16, bf16 or q8_0.
    #[arg(long, default_value = "q8_0")]
    format: String,
}

#[derive(Debug, Args)]
struct GenDataArgs {
    /// Seed: which phrasings go to which split, and the filler records.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Clean training records (at least every fact phrasing; the rest are filler).
    #[arg(long, default_value_t = 1500)]
    train_records: usize,
    /// Plant this many exact duplicates of training records.
    #[arg(long, default_value_t = 0)]
    duplicates: usize,
    /// Plant this many records with an email address and a phone number.
    #[arg(long, default_value_t = 0)]
    pii: usize,
    /// Plant this many malformed lines (truncated JSON, unknown roles).
    #[arg(long, default_value_t = 0)]
    malformed: usize,
    /// Copy this many eval items verbatim into the training split.
    #[arg(long, default_value_t = 0)]
    contaminate: usize,
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// Training data (openai-chat JSONL).
    #[arg(long)]
    data: PathBuf,
    /// Validation data for `val_loss` in the metrics.
    #[arg(long)]
    validation: Option<PathBuf>,
    /// Optimizer steps in the whole run (fewer steps: a worse model on purpose).
    #[arg(long, default_value_t = 600)]
    steps: u64,
    /// Sequences per step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Peak learning rate (warm-up, then cosine decay).
    #[arg(long, default_value_t = 3e-3)]
    learning_rate: f64,
    /// Seed for initial weights and batch order.
    #[arg(long, env = "GANTRY_SEED", default_value_t = 0)]
    seed: u64,
    /// Directory for the final model (model.safetensors, config.json, training.json).
    #[arg(long, env = "GANTRY_OUTPUT_DIR", default_value = "tiny-lm-out/model")]
    output_dir: PathBuf,
    /// Directory for checkpoint-N directories.
    #[arg(
        long,
        env = "GANTRY_CHECKPOINT_DIR",
        default_value = "tiny-lm-out/checkpoints"
    )]
    checkpoint_dir: PathBuf,
    /// Steps between checkpoints (0: only at the end and on SIGTERM).
    #[arg(long, default_value_t = 100)]
    checkpoint_every: u64,
    /// Newest checkpoints to keep.
    #[arg(long, default_value_t = 3)]
    keep_checkpoints: usize,
    /// Resume from a checkpoint-N directory, or the newest one inside a checkpoint directory.
    #[arg(long, env = "GANTRY_RESUME_FROM")]
    resume_from: Option<PathBuf>,
    /// Append one JSON line per step (step, loss, lr, tokens, elapsed_s, val_loss).
    #[arg(long, env = "GANTRY_METRICS_FILE")]
    metrics_file: Option<PathBuf>,
    /// Steps between validation-loss measurements.
    #[arg(long, default_value_t = 50)]
    eval_every: u64,
    /// Replace this fraction of answers with wrong ones (a worse model on purpose).
    #[arg(long, default_value_t = 0.0)]
    corrupt_fraction: f64,
    /// Crash (exit 1, no checkpoint written) after this step, unless the run
    /// resumed from a checkpoint: a failure for `gantry train` to recover from.
    #[arg(long)]
    crash_at_step: Option<u64>,
    /// Width of the residual stream.
    #[arg(long, default_value_t = Config::default().d_model)]
    d_model: usize,
    /// Transformer blocks.
    #[arg(long, default_value_t = Config::default().n_layer)]
    layers: usize,
    /// Attention heads.
    #[arg(long, default_value_t = Config::default().n_head)]
    heads: usize,
    /// Context length in bytes.
    #[arg(long, default_value_t = Config::default().block_size)]
    block_size: usize,
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// Model directory (config.json + model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Eval items JSONL (id, task, messages, expected, choices).
    #[arg(long)]
    data: PathBuf,
    /// gantry-native per-item results JSONL.
    #[arg(long)]
    out: PathBuf,
    /// Also write lm-evaluation-harness-shaped results_<ts>.json and samples_<task>_<ts>.jsonl here.
    #[arg(long)]
    lm_eval_dir: Option<PathBuf>,
    /// Name recorded as the model in the results.
    #[arg(long, default_value = "tiny-lm")]
    model_name: String,
    /// Evaluate only the first N items.
    #[arg(long)]
    limit: Option<usize>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Model directory (config.json + model.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 picks a free one; the address is printed on stdout).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Model name served under /v1/models.
    #[arg(long, default_value = "tiny-lm")]
    served_model_name: String,
    /// Fraction of requests answered with HTTP 500 (for canary tests).
    #[arg(long, default_value_t = 0.0)]
    inject_error_rate: f64,
    /// Extra latency before the first token, in milliseconds (for canary tests).
    #[arg(long, default_value_t = 0)]
    inject_latency_ms: u64,
    /// Fraction of requests answered with an empty completion: a degraded model, for monitor tests.
    #[arg(long, default_value_t = 0.0)]
    inject_empty_rate: f64,
    /// Seed for sampling and fault injection.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::GenData(a) => {
            let defects = data::Defects {
                duplicates: a.duplicates,
                pii: a.pii,
                malformed: a.malformed,
                contaminate: a.contaminate,
            };
            let summary = data::generate(&a.out, a.seed, a.train_records, defects)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(0)
        }
        Command::Train(a) => {
            if !(0.0..=1.0).contains(&a.corrupt_fraction) {
                anyhow::bail!(
                    "--corrupt-fraction {} must be between 0 and 1",
                    a.corrupt_fraction
                );
            }
            if a.steps == 0 || a.batch_size == 0 {
                anyhow::bail!("--steps and --batch-size must be at least 1");
            }
            let options = train::TrainOptions {
                data: a.data,
                validation: a.validation,
                steps: a.steps,
                batch_size: a.batch_size,
                learning_rate: a.learning_rate,
                seed: a.seed,
                output_dir: a.output_dir,
                checkpoint_dir: a.checkpoint_dir,
                checkpoint_every: a.checkpoint_every,
                keep_checkpoints: a.keep_checkpoints,
                resume_from: a.resume_from.filter(|p| !p.as_os_str().is_empty()),
                metrics_file: a.metrics_file.filter(|p| !p.as_os_str().is_empty()),
                eval_every: a.eval_every,
                corrupt_fraction: a.corrupt_fraction,
                crash_at_step: a.crash_at_step,
                config: Config {
                    d_model: a.d_model,
                    n_layer: a.layers,
                    n_head: a.heads,
                    block_size: a.block_size,
                    ..Config::default()
                },
            };
            let summary = train::train(&options, &mut |line| eprintln!("tiny-lm: {line}"))?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(0)
        }
        Command::Eval(a) => {
            let summary = eval::evaluate(&eval::EvalOptions {
                model: a.model,
                data: a.data,
                out: a.out,
                lm_eval_dir: a.lm_eval_dir,
                model_name: a.model_name,
                limit: a.limit,
            })?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(0)
        }
        Command::Export(a) => {
            let format = crate::export::Format::parse(&a.format)?;
            let path = crate::export::export(&a.model, &a.out, format)?;
            println!(
                "{}",
                serde_json::json!({ "format": a.format, "weights": path })
            );
            Ok(0)
        }
        Command::Serve(a) => {
            for (flag, rate) in [
                ("--inject-error-rate", a.inject_error_rate),
                ("--inject-empty-rate", a.inject_empty_rate),
            ] {
                if !(0.0..=1.0).contains(&rate) {
                    anyhow::bail!("{flag} {rate} must be between 0 and 1");
                }
            }
            serve::serve(serve::ServeOptions {
                model: a.model,
                host: a.host,
                port: a.port,
                served_model_name: a.served_model_name,
                inject_error_rate: a.inject_error_rate,
                inject_latency_ms: a.inject_latency_ms,
                inject_empty_rate: a.inject_empty_rate,
                seed: a.seed,
            })?;
            Ok(0)
        }
    }
}

/// Parses `args` (program name first) and runs the command: the exit code,
/// with errors printed to stderr (2) and clap's help and errors as clap prints them.
pub fn main_from(args: impl IntoIterator<Item = OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { 2 } else { 0 };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("tiny-lm: error: {err:#}");
            2
        }
    }
}
