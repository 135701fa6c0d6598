//! `gantry train`: run the user's training command as a tracked, resumable CI step.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use gantry_core::{ExitCode, Verdict};
use gantry_train::launch::{Cancellation, Event};
use gantry_train::local::LocalBackend;
use gantry_train::record::GitState;
use gantry_train::slurm::SlurmBackend;
use gantry_train::tracking::TrackingConfig;
use gantry_train::{GpuRequest, Status};
use serde_json::json;

use crate::cli::{OutputFormat, PublishTarget, TrainArgs};
use crate::commands::Session;
use crate::commands::publish::{Outcome, publish};
use crate::packaging::Output;
use crate::printer::Printer;
use crate::settings::{KubernetesSettings, TrainSettings};

/// How often metric progress is printed while training.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

pub(crate) fn run(
    settings: &TrainSettings<'_>,
    session: &Session<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    let args = settings.args;
    let command = settings.command.clone();
    let request = settings.request.clone();
    let run_id = settings.run_id.clone();
    let config = gantry_train::job::config_state(&args.config)?;
    let data = args
        .data_lock
        .as_deref()
        .map(gantry_train::job::data_state)
        .transpose()?;
    let run_dir = settings.run_dir.clone();
    let checkpoint_dir = settings.checkpoint_dir.clone();
    let output_dir = settings.output_dir.clone();
    let metrics_file = settings.metrics_file.clone();
    let git = git_state(session);
    let tracking = args
        .tracking_uri
        .as_ref()
        .map(|uri| -> Result<TrackingConfig> {
            let mut params = vec![
                (
                    "gantry.command".to_owned(),
                    session.redactor().redact(&command.join(" ")).into_owned(),
                ),
                ("gantry.gpus".to_owned(), args.gpus.clone()),
                (
                    "gantry.max_restarts".to_owned(),
                    args.max_restarts.to_string(),
                ),
            ];
            if let Some(seed) = args.seed {
                params.push(("gantry.seed".to_owned(), seed.to_string()));
            }
            params.extend(args.param.iter().cloned());
            let mut tags = vec![("gantry.run_id".to_owned(), run_id.clone())];
            if let Some(actor) = &session.context.actor {
                tags.push(("mlflow.user".to_owned(), actor.clone()));
            }
            if let Some(git) = &git {
                tags.push(("mlflow.source.git.commit".to_owned(), git.commit.clone()));
            }
            if let Some(data) = &data {
                tags.push((
                    "gantry.data.dataset_digest".to_owned(),
                    data.dataset_digest.to_string(),
                ));
            }
            Ok(TrackingConfig {
                uri: uri.clone(),
                experiment: args.experiment.clone(),
                run_name: run_id.clone(),
                params,
                tags,
                options: crate::commands::registries::mlflow_options(session)?,
            })
        })
        .transpose()?;

    let job_without_gpus = gantry_train::job::TrainJob {
        run_id: run_id.clone(),
        command: command.clone(),
        shell: args.shell,
        run_dir: run_dir.clone(),
        checkpoint_dir,
        checkpoint_layout: args.checkpoint_layout.into(),
        checkpoint_marker: args.checkpoint_marker.clone(),
        output_dir,
        metrics_file,
        seed: args.seed,
        policy: settings.policy.clone(),
        gpus: Vec::new(),
        cuda_visible_devices: None,
        cuda_version: None,
        git,
        config,
        data,
        tracking,
        env: Vec::new(),
        redactor: session.redactor().clone(),
    };
    if let Some(kubernetes) = &settings.kubernetes {
        return kubernetes_manifest(args, kubernetes, &job_without_gpus, session, printer);
    }
    // Bad directories are bad input: say so before waiting for GPUs.
    job_without_gpus.prepare()?;
    let slurm = match &settings.slurm {
        Some(options) => {
            let version = gantry_train::slurm::check_installed()?;
            printer.info(&format!("submitting to Slurm ({version})"));
            Some(SlurmBackend {
                command: command.clone(),
                shell: args.shell,
                job_name: format!("gantry-{run_id}"),
                directory: gantry_train::slurm::directory(&run_dir),
                working_dir: std::env::current_dir().context("the working directory")?,
                options: options.clone(),
                output_to_stderr: printer.format() == OutputFormat::Json,
            })
        }
        None => None,
    };
    // Slurm allocates the GPUs of its jobs.
    let request = if slurm.is_some() {
        GpuRequest::None
    } else {
        request
    };
    let lease = gantry_train::acquire(
        &request,
        &args.lock_dir,
        args.wait_for_gpus,
        &gantry_train::inventory,
    )?;
    // Signals are taken over only now: a job cancelled while it waits for
    // GPUs simply ends (the kernel drops any lock it holds).
    let cancellation = Cancellation::on_signals()?;
    if slurm.is_some() {
        // Slurm sets CUDA_VISIBLE_DEVICES in each job.
    } else if lease.gpus.is_empty() {
        printer.info("training without a GPU (CUDA_VISIBLE_DEVICES is empty)");
    } else {
        printer.info(&format!(
            "leased {}: {}",
            if lease.gpus.len() == 1 { "GPU" } else { "GPUs" },
            lease
                .gpus
                .iter()
                .map(|gpu| format!("{} ({}, {})", gpu.index, gpu.name, gpu.uuid))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let job = gantry_train::job::TrainJob {
        cuda_visible_devices: slurm.is_none().then(|| lease.cuda_visible_devices()),
        cuda_version: if lease.gpus.is_empty() {
            None
        } else {
            gantry_train::job::cuda_version()
        },
        gpus: lease.gpus.clone(),
        ..job_without_gpus
    };
    let mut local = LocalBackend {
        command: command.clone(),
        shell: args.shell,
        working_dir: None,
        stdout_to_stderr: printer.format() == OutputFormat::Json,
    };
    let mut slurm = slurm;
    let backend: &mut dyn gantry_train::launch::Backend = match &mut slurm {
        Some(slurm) => slurm,
        None => &mut local,
    };
    printer.info(&format!(
        "run {run_id}: {} (run directory {})",
        command.join(" "),
        run_dir.display()
    ));
    let mut last_progress: Option<Instant> = None;
    let finished = job.execute(backend, &cancellation, &mut |event| match event {
        Event::Started {
            number,
            resumed_from,
        } => printer.info(&match resumed_from {
            Some(path) => format!("attempt {number}: resuming from {}", path.display()),
            None => format!("attempt {number}: starting"),
        }),
        Event::Ended(attempt) => {
            let text = format!(
                "attempt {}: {} after {}",
                attempt.number,
                attempt.reason,
                gantry_train::launch::humanize(Duration::from_secs_f64(attempt.duration_s))
            );
            if attempt.outcome == gantry_train::record::AttemptOutcome::Succeeded {
                printer.info(&text);
            } else {
                printer.warning(&text);
            }
        }
        Event::Metrics(points) => {
            if last_progress.is_none_or(|at| at.elapsed() >= PROGRESS_EVERY)
                && let Some(last) = points.last()
            {
                last_progress = Some(Instant::now());
                let at_step: Vec<String> = points
                    .iter()
                    .filter(|point| point.step == last.step)
                    .map(|point| format!("{} {:.4}", point.key, point.value))
                    .collect();
                printer.info(&format!("step {}: {}", last.step, at_step.join(", ")));
            }
        }
        Event::Info(text) => printer.info(&text),
        Event::Warning(text) => printer.warning(&text),
    })?;
    drop(lease);

    let record = &finished.record;
    let markdown = gantry_train::summary::markdown(record, &finished.series);
    let final_metrics: serde_json::Map<String, serde_json::Value> = record
        .metrics
        .last
        .iter()
        .map(|(key, value)| (key.clone(), json!(value.value)))
        .collect();
    if let Some(chart) = &finished.chart_path {
        printer.info(&format!("loss curve: {}", chart.display()));
    }
    let verdict = if record.status == Status::Succeeded {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    let mut outcome = Outcome::new(
        "train",
        format!("train: {} {}", record.run_id, record.status.as_str()),
        verdict,
    )
    .published_as(&args.name, vec![PublishTarget::Summary])
    .markdown(markdown)
    .full_report(&finished.record_path)
    .output(Output::RunId, &record.run_id)
    .output(Output::Status, record.status.as_str())
    .path_output(Output::RunRecord, &finished.record_path);
    if let Some(checkpoint) = record.newest_checkpoint() {
        outcome = outcome.output(Output::Checkpoint, &checkpoint.path);
    }
    let outcome = outcome
        .output(Output::ModelDir, &record.output_dir)
        .output(
            Output::FinalMetrics,
            serde_json::Value::Object(final_metrics),
        )
        .body(&json!({
            "run_record": finished.record_path,
            "record": record,
        }))?;
    publish(outcome, session, printer)
}

/// `--kubernetes-manifest` / `--backend kubernetes --dry-run`: writes the
/// run as a Kubernetes manifest and runs nothing.
fn kubernetes_manifest(
    args: &TrainArgs,
    kubernetes: &KubernetesSettings,
    job: &gantry_train::job::TrainJob,
    session: &Session<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    let spec = gantry_train::kubernetes::ManifestSpec {
        run_id: job.run_id.clone(),
        image: kubernetes.image.clone(),
        namespace: args.namespace.clone(),
        nodes: args.nodes,
        gpus: kubernetes.gpus,
        command: job.command.clone(),
        shell: job.shell,
        env: job.contract_env(),
        run_dir: job.run_dir.display().to_string(),
        claim: args.volume_claim.clone(),
        max_restarts: args.max_restarts,
        deadline_seconds: args.timeout.map(|timeout| timeout.as_secs().max(1)),
        grace_period_seconds: args.grace_period.as_secs(),
    };
    let manifest = gantry_train::kubernetes::render(&spec, kubernetes.template.as_deref())?;
    let path = &kubernetes.path;
    let kind = if args.nodes > 1 { "PyTorchJob" } else { "Job" };
    printer.info(&format!(
        "writing a Kubernetes {kind} for run {} to {}; apply it with kubectl apply -f {}",
        job.run_id,
        path.display(),
        path.display()
    ));
    let markdown = format!(
        "## gantry train: Kubernetes {kind} `{}`\n\n```yaml\n{}```\n",
        job.run_id, manifest
    );
    let outcome = Outcome::new(
        "train",
        format!("train: Kubernetes {kind} {}", job.run_id),
        Verdict::Pass,
    )
    .published_as(&args.name, vec![PublishTarget::Summary])
    .text_file(path, manifest.clone())
    .markdown(markdown)
    .output(Output::RunId, &job.run_id)
    .output(Output::Status, "rendered")
    .path_output(Output::Manifest, path)
    .body(&json!({"run_id": job.run_id, "manifest_path": path, "manifest": manifest}))?;
    publish(outcome, session, printer)
}

/// The command's argv (or, with --shell, its one script).
/// The commit, whether tracked files differ from it, the ref and the repository.
fn git_state(session: &Session<'_>) -> Option<GitState> {
    let lineage = crate::commands::lineage::git_lineage(session)?;
    let dirty = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| !output.stdout.is_empty());
    Some(GitState {
        commit: lineage.commit,
        dirty,
        git_ref: lineage.git_ref,
        repository: lineage.repository,
    })
}
