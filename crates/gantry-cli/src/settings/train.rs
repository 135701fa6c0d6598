//! train's settings: the command, the GPU request, the run's id and directories.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use gantry_train::GpuRequest;

use crate::cli::{CheckpointLayoutArg, TrainArgs};

/// `gantry train`, resolved.
#[derive(Debug)]
pub(crate) struct TrainSettings<'a> {
    /// The flags as given.
    pub(crate) args: &'a TrainArgs,
    /// The training command's words (one word, the whole line, with `--shell`).
    pub(crate) command: Vec<String>,
    /// The GPUs to lease.
    pub(crate) request: GpuRequest,
    /// `--run-id`, or a new one.
    pub(crate) run_id: String,
    /// `--run-dir`.
    pub(crate) run_dir: PathBuf,
    /// `--checkpoint-dir`, default `RUN_DIR/checkpoints`.
    pub(crate) checkpoint_dir: PathBuf,
    /// `--output-dir`, default `RUN_DIR/output`.
    pub(crate) output_dir: PathBuf,
    /// `--metrics-file`, default `RUN_DIR/metrics.jsonl`.
    pub(crate) metrics_file: PathBuf,
}

impl<'a> TrainSettings<'a> {
    pub(crate) fn resolve(args: &'a TrainArgs) -> Result<TrainSettings<'a>> {
        let command = training_command(args)?;
        let request: GpuRequest = args.gpus.parse()?;
        if args.checkpoint_marker.is_some()
            && !matches!(
                args.checkpoint_layout,
                CheckpointLayoutArg::Auto | CheckpointLayoutArg::Dir
            )
        {
            bail!(
                "--checkpoint-marker marks complete plain-directory checkpoints; it does not apply to --checkpoint-layout {} (use --checkpoint-layout dir)",
                clap::ValueEnum::to_possible_value(&args.checkpoint_layout)
                    .map(|value| value.get_name().to_owned())
                    .unwrap_or_default()
            );
        }
        let run_dir = args.run_dir.clone();
        Ok(TrainSettings {
            args,
            command,
            request,
            run_id: args
                .run_id
                .clone()
                .unwrap_or_else(gantry_train::job::new_run_id),
            checkpoint_dir: args
                .checkpoint_dir
                .clone()
                .unwrap_or_else(|| run_dir.join("checkpoints")),
            output_dir: args
                .output_dir
                .clone()
                .unwrap_or_else(|| run_dir.join("output")),
            metrics_file: args
                .metrics_file
                .clone()
                .unwrap_or_else(|| run_dir.join("metrics.jsonl")),
            run_dir,
        })
    }
}

/// The training command's words: `--command` split like a shell would (or
/// whole with `--shell`), or the words after `--`.
fn training_command(args: &TrainArgs) -> Result<Vec<String>> {
    let words = match (&args.command, args.trailing.is_empty()) {
        (Some(_), false) => {
            bail!("give the training command once: --command CMD or after --, not both")
        }
        (Some(line), true) if args.shell => vec![line.clone()],
        (Some(line), true) => {
            shlex::split(line).with_context(|| format!("--command {line:?}: unbalanced quotes"))?
        }
        (None, false) if args.shell => vec![args.trailing.join(" ")],
        (None, false) => args.trailing.clone(),
        (None, true) => Vec::new(),
    };
    if words.iter().all(|word| word.trim().is_empty()) {
        bail!(
            "no training command: give --command CMD (the action's command input) or put the command after --"
        );
    }
    Ok(words)
}
