//! train's settings: the command, the GPU request, the run's id and directories.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use gantry_train::GpuRequest;
use gantry_train::launch::Policy;
use gantry_train::slurm::SlurmOptions;

use crate::cli::{CheckpointLayoutArg, TrainArgs, TrainBackend};

/// torchrun's rendezvous port on the first node of a multi-node Slurm job.
const MASTER_PORT: u16 = 29500;

/// Warn when a trainer wrote no metric this long after an attempt started.
const METRICS_SILENCE: Duration = Duration::from_secs(300);

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
    /// Restarts, backoff, timeout and grace period.
    pub(crate) policy: Policy,
    /// How each job is submitted, with `--backend slurm`.
    pub(crate) slurm: Option<SlurmOptions>,
    /// With `--backend kubernetes --dry-run` or `--kubernetes-manifest`: the
    /// run is rendered as a manifest, not run.
    pub(crate) kubernetes: Option<KubernetesSettings>,
}

/// What a Kubernetes manifest needs beyond the run.
#[derive(Debug)]
pub(crate) struct KubernetesSettings {
    /// `--container-image`: the image with the trainer.
    pub(crate) image: String,
    /// `--gpus-per-node` as the count `nvidia.com/gpu` takes.
    pub(crate) gpus: Option<u32>,
    /// `--kubernetes-template`'s text.
    pub(crate) template: Option<String>,
    /// `--kubernetes-manifest`, default `RUN_DIR/kubernetes.yaml`.
    pub(crate) path: PathBuf,
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
        let kubernetes =
            if args.backend == TrainBackend::Kubernetes || args.kubernetes_manifest.is_some() {
                Some(kubernetes_settings(args)?)
            } else {
                None
            };
        Ok(TrainSettings {
            policy: Policy {
                max_restarts: args.max_restarts,
                restart_backoff: args.restart_backoff,
                timeout: args.timeout,
                grace_period: args.grace_period,
                metrics_silence: Some(METRICS_SILENCE),
            },
            slurm: (args.backend == TrainBackend::Slurm).then(|| SlurmOptions {
                nodes: args.nodes,
                gpus_per_node: args.gpus_per_node.clone(),
                partition: args.partition.clone(),
                time: args.time.clone(),
                extra: args.slurm_arg.clone(),
                master_port: MASTER_PORT,
            }),
            kubernetes,
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

/// `--backend kubernetes` (with `--dry-run`) or `--kubernetes-manifest`:
/// the image, GPU count and template a manifest needs.
fn kubernetes_settings(args: &TrainArgs) -> Result<KubernetesSettings> {
    if args.backend == TrainBackend::Kubernetes && !args.dry_run {
        bail!(
            "--backend kubernetes: gantry does not submit to a cluster itself; add --dry-run to render the manifest, then kubectl apply -f it"
        );
    }
    let image = args
        .container_image
        .clone()
        .context("a Kubernetes manifest needs --container-image: the image with your trainer")?;
    let gpus = args
        .gpus_per_node
        .as_deref()
        .map(|text| {
            let count = text.rsplit(':').next().unwrap_or(text);
            count.parse::<u32>().with_context(|| {
                format!(
                    "--gpus-per-node {text:?}: Kubernetes needs a count (nvidia.com/gpu), e.g. 8"
                )
            })
        })
        .transpose()?;
    let template = args
        .kubernetes_template
        .as_ref()
        .map(|path| {
            std::fs::read_to_string(path)
                .with_context(|| format!("--kubernetes-template {}", path.display()))
        })
        .transpose()?;
    Ok(KubernetesSettings {
        image,
        gpus,
        template,
        path: args
            .kubernetes_manifest
            .clone()
            .unwrap_or_else(|| args.run_dir.join("kubernetes.yaml")),
    })
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
