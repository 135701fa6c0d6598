//! `gantry prepare`: a variant of a registered model — quantized, converted,
//! distilled — made by the user's command under a small contract, gated
//! non-inferior to its parent, measured beside it, and registered with
//! `derived_from` lineage.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use gantry_core::{Digest, ExitCode, Verdict};
use gantry_eval::runner::{Api, ItemResult, RunOptions, Scorer, read_items, run as run_eval};
use gantry_eval::{GateReport, evaluate_gate};
use gantry_prepare::{
    FileFacts, Footprint, PrepareReport, Quality, QualityRow, Serving, Transformation,
    TransformationParent, Variant,
};
use gantry_registry::{
    LineageInput, ModelSource, RegisterRequest, Registry, Resolved, VersionRequest,
};
use gantry_train::launch::{Cancellation, Event, Policy};
use gantry_train::local::LocalBackend;

use crate::cli::PrepareArgs;
use crate::commands::Session;
use crate::commands::lineage::git_lineage;
use crate::commands::publish::{Outcome, publish};
use crate::commands::registries::{
    fetch_document, open_registry, parse_reference, redacted_metadata,
};
use crate::packaging::Output;
use crate::printer::Printer;

pub(crate) fn run(
    args: &PrepareArgs,
    session: &Session<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    gantry_registry::validate_name(&args.name).context("--name")?;
    for alias in &args.alias {
        gantry_registry::validate_alias(alias).context("--alias")?;
    }
    let version = match args.version.as_str() {
        "auto" => VersionRequest::Auto,
        text => VersionRequest::Exact(gantry_registry::parse_version(text).context("--version")?),
    };
    let command = conversion_command(args)?;
    let registry = open_registry(&args.registry, session)?;
    let parent = registry.resolve(&parse_reference(&args.from).context("--from")?)?;
    let manifest = &parent.manifest;
    if manifest.name == args.name {
        bail!(
            "--name {}: a variant needs a name of its own (e.g. {}-int8), so its versions do not mix with its parent's",
            args.name,
            args.name
        );
    }

    // The run directory: the parent pulled (verified as it streams), an empty output.
    let input = args.run_dir.join("input");
    let output = args.run_dir.join("output");
    let run_files = args.run_dir.join("run");
    // Cleared, so nothing of an earlier run (another parent's files, a
    // half-written variant) is served, converted or registered.
    for dir in [&input, &output, &run_files] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let pulled = gantry_registry::pull(registry.as_ref(), &parent, &input)?;
    printer.info(&format!(
        "parent {} {} ({}) verified into {} ({} files, {} bytes written)",
        manifest.name,
        manifest.version,
        parent.digest,
        input.display(),
        pulled.written + pulled.already_present,
        pulled.bytes
    ));

    // The conversion, through train's launch loop: a process group, the
    // job's signals, the timeout, SIGTERM then SIGKILL after the grace.
    let started = chrono::Utc::now();
    let clock = Instant::now();
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let env = vec![
        (
            "GANTRY_INPUT_MODEL_DIR".to_owned(),
            absolute(&input).display().to_string(),
        ),
        (
            "GANTRY_OUTPUT_DIR".to_owned(),
            absolute(&output).display().to_string(),
        ),
        (
            "GANTRY_RUN_DIR".to_owned(),
            absolute(&run_files).display().to_string(),
        ),
    ];
    printer.info(&format!(
        "running {}",
        session.redactor().redact(&command.join(" "))
    ));
    let mut backend = LocalBackend {
        command: command.clone(),
        shell: false,
        working_dir: None,
        stdout_to_stderr: true,
    };
    let policy = Policy {
        max_restarts: 0,
        restart_backoff: Duration::from_secs(1),
        timeout: args.timeout,
        grace_period: args.grace,
        metrics_silence: None,
    };
    let checkpoints = gantry_train::checkpoint::Checkpoints::new(
        run_files.join("checkpoints"),
        gantry_train::checkpoint::Layout::Auto,
    );
    let cancellation = Cancellation::on_signals()?;
    let outcome = gantry_train::launch::run(
        &mut backend,
        &env,
        &checkpoints,
        &run_files.join("metrics.jsonl"),
        &policy,
        &cancellation,
        &mut |event| match event {
            Event::Warning(text) => printer.warning(&text),
            Event::Info(text) => printer.info(&text),
            _ => {}
        },
    )?;
    let seconds = clock.elapsed().as_secs_f64();
    if outcome.status != gantry_train::Status::Succeeded {
        let why = outcome.attempts.last().map_or_else(
            || format!("{:?}", outcome.status),
            |attempt| attempt.reason.clone(),
        );
        bail!("the conversion command did not succeed: {why}");
    }
    let wrote_something = std::fs::read_dir(&output)
        .with_context(|| format!("cannot list {}", output.display()))?
        .flatten()
        .any(|entry| !entry.file_name().to_string_lossy().starts_with('.'));
    if !wrote_something {
        bail!(
            "the conversion command wrote nothing to GANTRY_OUTPUT_DIR ({}): it must write the variant there",
            output.display()
        );
    }
    let source = ModelSource::read(&output, false).map_err(gantry_registry::Error::from)?;

    let transformation = Transformation {
        kind: Transformation::KIND.to_owned(),
        version: 1,
        parent: TransformationParent {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            digest: parent.digest.to_string(),
        },
        relation: args.relation.as_str().to_owned(),
        command: command
            .iter()
            .map(|word| session.redactor().redact(word).into_owned())
            .collect(),
        command_digest: command_digest(&command)?.to_string(),
        started: started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        seconds,
        reported: reported(&run_files, printer),
        metadata: args.metadata.iter().cloned().collect(),
    };
    let mut parent_footprint = Footprint::of(manifest);
    let mut variant_footprint = Footprint::of_files(source.files.iter().map(|file| FileFacts {
        size: file.size,
        safetensors: file.safetensors.as_ref(),
        gguf: file.gguf.as_ref(),
        weights: file.pickle.is_some(),
    }));
    printer.info(&format!(
        "variant: {} files, {} bytes of weights ({} for the parent), {} parameters",
        source.files.len(),
        variant_footprint.weight_bytes,
        parent_footprint.weight_bytes,
        variant_footprint.parameters
    ));

    // The gate: non-inferior to the parent on the same items.
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut notes = Vec::new();
    let gate = gate(
        args,
        session,
        printer,
        registry.as_ref(),
        &parent,
        &input,
        &output,
        &mut parent_footprint,
        &mut variant_footprint,
    )?;
    let verdict = match &gate {
        Some(gated) => gated.report.verdict,
        None => {
            notes.push(
                "no quality gate ran: give --serve-command (parent and variant asked the eval set) or --eval-results; deploys refuse a version without a passing gate"
                    .to_owned(),
            );
            Verdict::Warn
        }
    };

    // Register: unless the gate said no (then only with --register-failed).
    let mut variant = Variant {
        name: args.name.clone(),
        version: None,
        digest: None,
    };
    let register = verdict != Verdict::Fail || args.register_failed;
    if register {
        let lineage = variant_lineage(
            session,
            registry.as_ref(),
            &parent,
            &transformation,
            gate.as_ref(),
            args,
        )?;
        let request = RegisterRequest {
            name: &args.name,
            version,
            source: &source,
            lineage: &lineage,
            metadata: redacted_metadata(session, &args.metadata)
                .chain([
                    (
                        "gantry.derived_from".to_owned(),
                        format!("{}@{}", manifest.name, parent.digest),
                    ),
                    (
                        "gantry.relation".to_owned(),
                        args.relation.as_str().to_owned(),
                    ),
                ])
                .collect(),
            aliases: if verdict == Verdict::Fail {
                Vec::new()
            } else {
                args.alias.clone()
            },
            actor: session
                .context
                .actor
                .clone()
                .unwrap_or_else(|| "unknown".to_owned()),
        };
        let registration = registry.register(&request)?;
        printer.info(&format!(
            "registered {} {} ({}) derived from {} {}",
            registration.manifest.name,
            registration.manifest.version,
            registration.digest,
            manifest.name,
            manifest.version
        ));
        variant.version = Some(registration.manifest.version.clone());
        variant.digest = Some(registration.digest.to_string());
    } else {
        notes.push(format!(
            "not registered: the variant is worse than its parent by more than --max-drop {} (--register-failed registers it with the failed gate, so deploys refuse it)",
            args.max_drop
        ));
    }

    let report = PrepareReport {
        version: 1,
        verdict,
        parent: transformation.parent.clone(),
        variant,
        size_ratio: variant_footprint.size_ratio(&parent_footprint),
        transformation,
        parent_footprint,
        variant_footprint,
        quality: gate.map(|gated| gated.quality),
        notes,
    };
    let report_path = args.out.join("prepare.json");
    let markdown = gantry_prepare::markdown(&report);
    let title = format!(
        "prepare: {} {} → {}",
        report.parent.name, report.parent.version, report.variant.name
    );
    let mut outcome = Outcome::new("prepare", title, verdict)
        .published_as(&args.name, args.publish.clone())
        .json_file(&report_path, &report)?
        .text_file(&args.out.join("prepare.md"), markdown.clone())
        .markdown(markdown)
        .full_report(&report_path)
        .path_output(Output::Report, &report_path)
        .output(
            Output::SizeRatio,
            report
                .size_ratio
                .map_or(String::new(), |ratio| format!("{ratio:.4}")),
        )
        .output(
            Output::QualityDelta,
            report
                .quality_delta()
                .map_or(String::new(), |delta| format!("{delta:.4}")),
        );
    if let (Some(version), Some(digest)) = (&report.variant.version, &report.variant.digest) {
        outcome = outcome
            .output(
                Output::Reference,
                format!("{}@{digest}", report.variant.name),
            )
            .output(Output::Digest, digest)
            .output(Output::Version, version);
    }
    publish(outcome.body(&report)?, session, printer)
}

/// The conversion command's words: `--command` split like a shell would, or the words after `--`.
fn conversion_command(args: &PrepareArgs) -> Result<Vec<String>> {
    let words = match (&args.command, args.trailing.is_empty()) {
        (Some(_), false) => {
            bail!("give the conversion command once: --command CMD or after --, not both")
        }
        (Some(line), true) => {
            shlex::split(line).with_context(|| format!("--command {line:?}: unbalanced quotes"))?
        }
        (None, false) => args.trailing.clone(),
        (None, true) => Vec::new(),
    };
    if words.iter().all(|word| word.trim().is_empty()) {
        bail!(
            "no conversion command: give --command CMD (the action's command input) or put the command after --"
        );
    }
    Ok(words)
}

/// sha256 over the command's words and the contents of every word that
/// names a file here (a config, a recipe): the same command with another
/// config is another transformation.
fn command_digest(command: &[String]) -> Result<Digest> {
    let mut parts = Vec::new();
    for word in command {
        let path = Path::new(word);
        let contents = if path.is_file() {
            Some(Digest::of_bytes(
                &std::fs::read(path).with_context(|| format!("cannot read {word}"))?,
            ))
        } else {
            None
        };
        parts.push(
            serde_json::json!({ "word": word, "file": contents.map(|digest| digest.to_string()) }),
        );
    }
    Ok(Digest::of_bytes(
        serde_json::Value::Array(parts).to_string().as_bytes(),
    ))
}

/// What the command reported in `$GANTRY_RUN_DIR/transformation.json`.
fn reported(run_files: &Path, printer: &Printer) -> Option<serde_json::Value> {
    let path = run_files.join(gantry_prepare::REPORTED_FILE);
    let text = std::fs::read_to_string(&path).ok()?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(value) if value.is_object() => Some(value),
        _ => {
            printer.warning(&format!(
                "{}: not a JSON object; what the command reported there is left out",
                path.display()
            ));
            None
        }
    }
}

/// A gate that ran: its report, file and the rows for `prepare.json`.
struct Gated {
    report: GateReport,
    quality: Quality,
    gate_path: PathBuf,
    variant_results: Option<PathBuf>,
    eval_set: Option<PathBuf>,
}

/// The quality gate, when the flags give one: with `--serve-command` parent
/// and variant are both served and asked the eval set (and measured); with
/// `--eval-results` the variant's results meet the parent's registered evaluation.
#[allow(clippy::too_many_arguments)]
fn gate(
    args: &PrepareArgs,
    session: &Session<'_>,
    printer: &Printer,
    registry: &dyn Registry,
    parent: &Resolved,
    input: &Path,
    output: &Path,
    parent_footprint: &mut Footprint,
    variant_footprint: &mut Footprint,
) -> Result<Option<Gated>> {
    let scratch = args.out.join("lineage");
    std::fs::create_dir_all(&scratch)?;
    let lineage = &parent.manifest.lineage;
    let registered_results = match &lineage.evaluation {
        Some(link) => Some(fetch_document(
            registry,
            parent,
            link,
            "the parent's evaluation results",
            &scratch,
        )?),
        None => None,
    };
    let (baseline_path, candidate_path, eval_set, baseline) = if let Some(serve) =
        &args.serve_command
    {
        let eval_set = match (&args.eval_set, &lineage.eval_set) {
            (Some(path), _) => path.clone(),
            (None, Some(link)) => {
                fetch_document(registry, parent, link, "the parent's eval set", &scratch)?
            }
            (None, None) => bail!(
                "--serve-command needs an eval set: --eval-set, or the one registered with {} {} (register --eval-set)",
                parent.manifest.name,
                parent.manifest.version
            ),
        };
        let scorers = match &registered_results {
            Some(path) => {
                let registered = gantry_eval::read(path)?;
                let scorers: Vec<Scorer> = Scorer::ALL
                    .into_iter()
                    .filter(|scorer| {
                        registered
                            .metrics
                            .keys()
                            .any(|key| key.metric == scorer.name())
                    })
                    .collect();
                if scorers.is_empty() {
                    args.scorer.iter().map(|scorer| (*scorer).into()).collect()
                } else {
                    scorers
                }
            }
            None => args.scorer.iter().map(|scorer| (*scorer).into()).collect(),
        };
        let items = read_items(&eval_set)?.len();
        let served_model = args
            .served_model
            .clone()
            .unwrap_or_else(|| parent.manifest.name.clone());
        let ask = |which: &str, model_dir: &Path, footprint: &mut Footprint| -> Result<PathBuf> {
            printer.info(&format!(
                "serving the {which} and asking it the {items} items of {}",
                eval_set.display()
            ));
            let (results, serving) = serve_and_ask(
                session,
                serve,
                model_dir,
                &eval_set,
                &scorers,
                &served_model,
                args,
            )
            .with_context(|| format!("the {which}"))?;
            footprint.serving = Some(serving);
            let path = args.out.join(format!("{which}-results.jsonl"));
            let mut text = String::new();
            for result in &results {
                text.push_str(&session.redactor().to_json_line(result)?);
                text.push('\n');
            }
            std::fs::write(&path, text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        };
        let baseline = ask("parent", input, parent_footprint)?;
        let candidate = ask("variant", output, variant_footprint)?;
        (baseline, candidate, Some(eval_set), "served")
    } else if let Some(results) = &args.eval_results {
        let Some(registered) = registered_results else {
            bail!(
                "--eval-results needs the parent's registered evaluation to compare with, and {} {} has none: register the parent with --eval-results, or give --serve-command to ask both",
                parent.manifest.name,
                parent.manifest.version
            );
        };
        (registered, results.clone(), None, "registered")
    } else {
        return Ok(None);
    };
    let baseline_set = gantry_eval::read(&baseline_path)?;
    let candidate_set = gantry_eval::read(&candidate_path)?;
    gantry_eval::same_items(&baseline_set, &candidate_set).map_err(|reason| {
        anyhow::anyhow!(
            "the variant was not asked what its parent was, so they are not comparable: {reason}"
        )
    })?;
    let mut policy = gantry_eval::Policy::default();
    for rule in &mut policy.rules {
        rule.margin = args.max_drop;
    }
    let report = evaluate_gate(&baseline_set, &candidate_set, &policy, "prepare --max-drop")
        .map_err(|error| {
            anyhow::anyhow!("the variant was not asked what its parent was: {error}")
        })?;
    let gate_path = args.out.join("gate.json");
    std::fs::write(
        &gate_path,
        session
            .redactor()
            .redact(&serde_json::to_string_pretty(&report)?)
            .as_bytes(),
    )
    .with_context(|| format!("cannot write {}", gate_path.display()))?;
    let rows = report
        .rows
        .iter()
        .map(|row| QualityRow {
            task: row.task.clone(),
            metric: row.metric.clone(),
            parent: row.comparison.baseline,
            variant: row.comparison.candidate,
            delta: row.comparison.delta,
            ci_low: row.comparison.ci_low,
            ci_high: row.comparison.ci_high,
            n: row.comparison.n,
            verdict: format!("{:?}", row.verdict).to_lowercase(),
        })
        .collect();
    let quality = Quality {
        max_drop: args.max_drop,
        baseline: baseline.to_owned(),
        verdict: report.verdict,
        rows,
        gate_report: gate_path.display().to_string(),
    };
    printer.info(&format!(
        "gate against the parent ({baseline}): {:?}, {} regressed, {} inconclusive",
        report.verdict, report.regressions, report.inconclusive
    ));
    Ok(Some(Gated {
        report,
        quality,
        gate_path,
        variant_results: Some(candidate_path),
        eval_set,
    }))
}

/// A served model: the serve command in a process group of its own,
/// stopped (SIGTERM, then SIGKILL) on drop.
struct Served {
    child: std::process::Child,
}

impl Drop for Served {
    fn drop(&mut self) {
        let Some(group) = rustix::process::Pid::from_raw(self.child.id().cast_signed()) else {
            return;
        };
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}

/// Serves `model_dir` with the serve command, waits until it answers, asks
/// it the eval set, and measures it.
fn serve_and_ask(
    session: &Session<'_>,
    serve: &str,
    model_dir: &Path,
    eval_set: &Path,
    scorers: &[Scorer],
    served_model: &str,
    args: &PrepareArgs,
) -> Result<(Vec<ItemResult>, Serving)> {
    use std::os::unix::process::CommandExt as _;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .context("no free port for the served model")?;
    let model_dir = std::path::absolute(model_dir).unwrap_or_else(|_| model_dir.to_owned());
    let words: Vec<String> = shlex::split(serve)
        .with_context(|| format!("--serve-command {serve:?}: unbalanced quotes"))?
        .into_iter()
        .map(|word| {
            word.replace("{model_dir}", &model_dir.display().to_string())
                .replace("{port}", &port.to_string())
        })
        .collect();
    let Some((program, rest)) = words.split_first() else {
        bail!("--serve-command is empty");
    };
    let started = Instant::now();
    let child = std::process::Command::new(program)
        .args(rest)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .process_group(0)
        .spawn()
        .with_context(|| format!("cannot start --serve-command {program:?}"))?;
    let mut served = Served { child };
    let endpoint = format!("http://127.0.0.1:{port}/v1");
    let models = format!("{endpoint}/models");
    let ready = session.block_on(async {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + args.health_timeout;
        while Instant::now() < deadline {
            if let Ok(response) = client
                .get(&models)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                && response.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    })?;
    if !ready {
        if let Ok(Some(status)) = served.child.try_wait() {
            bail!("--serve-command exited ({status}) before it answered {models}");
        }
        bail!(
            "--serve-command did not answer {models} within --health-timeout {}s",
            args.health_timeout.as_secs()
        );
    }
    let load_seconds = started.elapsed().as_secs_f64();
    let options = RunOptions {
        endpoint,
        model: served_model.to_owned(),
        dataset: eval_set.to_owned(),
        scorers: scorers.to_vec(),
        api: Api::Chat,
        repeats: 1,
        concurrency: args.concurrency as usize,
        retry: gantry_ci::retry_policy(session.environment),
        max_tokens: args.max_tokens,
        temperature: 0.0,
        tolerance: 1e-6,
        api_key: None,
    };
    let (results, summary) = run_eval(&options, None)?;
    drop(served);
    if summary.errors == summary.requests && summary.requests > 0 {
        bail!(
            "the served model answered none of {} requests: {}",
            summary.requests,
            results
                .iter()
                .find_map(|result| result.error.clone())
                .unwrap_or_default()
        );
    }
    let output_tokens: f64 = results
        .iter()
        .filter_map(|result| result.tokens.as_ref())
        .filter_map(|tokens| {
            tokens
                .get("completion_tokens")
                .or_else(|| tokens.get("completion"))
                .and_then(serde_json::Value::as_f64)
        })
        .sum();
    let serving = Serving {
        load_seconds,
        requests: summary.requests as u64,
        latency_p50_ms: summary.latency_p50_ms,
        latency_p95_ms: summary.latency_p95_ms,
        tokens_per_second: (summary.seconds > 0.0 && output_tokens > 0.0)
            .then(|| output_tokens / summary.seconds),
    };
    Ok((results, serving))
}

/// The variant's lineage: derived from the parent (with the transformation
/// record), the gate against it, its own answers as the evaluation later
/// gates and monitor compare with, the eval set, the commit, and the
/// parent's training data (lock and summary, copied and re-checked), which
/// is the variant's too.
fn variant_lineage(
    session: &Session<'_>,
    registry: &dyn Registry,
    parent: &Resolved,
    transformation: &Transformation,
    gate: Option<&Gated>,
    args: &PrepareArgs,
) -> Result<LineageInput> {
    let mut input = LineageInput::default();
    input.lineage.git = git_lineage(session);
    let mut document = |file_name: &str, bytes: Vec<u8>| {
        let link = gantry_core::DocumentLink {
            digest: Digest::of_bytes(&bytes),
            size: bytes.len() as u64,
            file_name: file_name.to_owned(),
        };
        input.documents.push((link.digest, bytes));
        link
    };
    let record = session
        .redactor()
        .redact(&serde_json::to_string_pretty(transformation)?)
        .into_owned()
        .into_bytes();
    let transformation_link = document(gantry_prepare::TRANSFORMATION_FILE, record);
    let mut gate_link = None;
    let mut evaluation = None;
    let mut eval_set = None;
    if let Some(gated) = gate {
        let bytes = std::fs::read(&gated.gate_path)?;
        gate_link = Some(gantry_core::GateLink {
            document: document("gate.json", bytes),
            verdict: gated.report.verdict,
        });
        if let Some(path) = &gated.variant_results {
            let bytes = std::fs::read(path)?;
            evaluation = Some(document("results.jsonl", bytes));
        }
        if let Some(path) = &gated.eval_set {
            let bytes = std::fs::read(path)?;
            eval_set = Some(document(
                &path.file_name().map_or_else(
                    || "eval.jsonl".to_owned(),
                    |name| name.to_string_lossy().into_owned(),
                ),
                bytes,
            ));
        }
    }
    input.lineage.derived_from = Some(gantry_core::DerivedFrom {
        parent: parent.digest,
        name: parent.manifest.name.clone(),
        version: parent.manifest.version.clone(),
        relation: args.relation.as_str().to_owned(),
        transformation: transformation_link,
    });
    let scratch = args.out.join("lineage");
    std::fs::create_dir_all(&scratch)?;
    let parent_lineage = &parent.manifest.lineage;
    if let Some(data) = &parent_lineage.data {
        let path = fetch_document(
            registry,
            parent,
            &data.document,
            "the parent's data lock",
            &scratch,
        )?;
        let link = document(&data.document.file_name, std::fs::read(&path)?);
        input.lineage.data = Some(gantry_core::DataLink {
            document: link,
            dataset_digest: data.dataset_digest,
        });
    }
    if let Some(summary) = &parent_lineage.data_summary {
        let path = fetch_document(
            registry,
            parent,
            summary,
            "the parent's data summary",
            &scratch,
        )?;
        input.lineage.data_summary = Some(document(&summary.file_name, std::fs::read(&path)?));
    }
    input.lineage.gate = gate_link;
    input.lineage.evaluation = evaluation;
    input.lineage.eval_set = eval_set;
    input.documents.sort_by_key(|(digest, _)| *digest);
    input.documents.dedup_by_key(|(digest, _)| *digest);
    Ok(input)
}
