//! `gantry quickstart`: the documented workflow, end to end, on the bundled
//! example (tiny-lm) with embedded defaults and no services.
//!
//! Every stage is the real command a team would run — this binary started
//! again with the stage's flags, in the quickstart directory, its output in
//! `logs/` — so what people watch is what their CI will do: the commands are
//! printed, and the files each stage writes are the ones the next one reads.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use gantry_core::ExitCode;
use serde_json::{Value, json};

use crate::cli::{OutputFormat, QuickstartArgs};
use crate::commands::Session;
use crate::printer::Printer;

/// The model's name in the registry.
const MODEL: &str = "tiny";

/// The gate a team would write for this model: per task, multiple-choice
/// accuracy may not drop by more than 0.20 and answer likelihood by more than
/// 0.25 nats per byte (non-inferiority, one-sided at 95%: with 32 to 100
/// items a task, a smaller margin is more than the eval set can resolve);
/// exact match is shown, not gated (a 137k-parameter model rarely answers
/// verbatim).
const POLICY: &str = r#"# eval-gate policy for the quickstart's model (schema: schemas/eval-policy.schema.json).
[defaults]
inconclusive = "warn"

[[rule]]
name = "accuracy"
select = { metric = "acc" }
margin = 0.20
severity = "block"

[[rule]]
name = "likelihood"
select = { metric = "logprob" }
margin = 0.25
severity = "block"

[[rule]]
name = "exact-match"
select = { metric = "exact_match" }
severity = "info"
"#;

/// The canary analysis: the defaults' error-rate check, and latency judged
/// loosely — two tiny models answer with different lengths, so their
/// latencies differ by more than a real model's would for the same reason.
const ANALYSIS: &str = r#"# deploy-canary analysis for the quickstart (schema: schemas/analysis.schema.json).
min-requests = 10

[[checks]]
name = "latency-p95"
metric = "latency"
quantile = 0.95
max-increase = 1.0
min-difference-ms = 50

[[checks]]
name = "ttft-p95"
metric = "ttft"
quantile = 0.95
max-increase = 1.0
min-difference-ms = 50
"#;

pub(crate) fn run(
    args: &QuickstartArgs,
    _session: &Session<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    if args.steps < 12 {
        bail!(
            "--steps {}: give at least 12 (a checkpoint, a crash after it, and the rest)",
            args.steps
        );
    }
    let started = Instant::now();
    let dir = prepare_dir(args.dir.as_deref())?;
    let exe = std::env::current_exe().context("cannot find the gantry binary that is running")?;
    // SIGTERM (a cancelled job) or SIGINT (Ctrl-C): the running stage is
    // stopped, then the router and its model servers, before exiting.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, std::sync::Arc::clone(&stop))
            .context("cannot watch for SIGTERM and SIGINT")?;
    }
    let mut quickstart = Quickstart {
        stop,
        dir: dir.clone(),
        exe,
        printer,
        stage: 0,
        commands: Vec::new(),
        record: serde_json::Map::new(),
        progress: None,
    };
    printer.info(&format!(
        "gantry quickstart: the documented workflow on the bundled example (tiny-lm), in {}\n\
         No services: the file registry, the embedded router and embedded defaults. Each stage's output is in logs/.\n",
        dir.display()
    ));
    std::fs::write(dir.join("policy.toml"), POLICY).context("writing policy.toml")?;
    std::fs::write(dir.join("analysis.toml"), ANALYSIS).context("writing analysis.toml")?;

    let mut router = None;
    let outcome = quickstart.stages(args, &mut router);
    if let Some(router) = router.take() {
        router.stop();
    }
    outcome?;

    let elapsed = started.elapsed();
    quickstart
        .record
        .insert("dir".into(), json!(dir.display().to_string()));
    quickstart
        .record
        .insert("seconds".into(), json!(elapsed.as_secs_f64()));
    quickstart
        .record
        .insert("commands".into(), json!(quickstart.commands));
    let record = Value::Object(quickstart.record.clone());
    let text = serde_json::to_string_pretty(&record).context("serializing quickstart.json")?;
    std::fs::write(dir.join("quickstart.json"), text).context("writing quickstart.json")?;
    match printer.format() {
        OutputFormat::Json => printer.json(&record),
        OutputFormat::Text => printer.data(&summary(&record, &dir, elapsed)),
    }
    Ok(ExitCode::PASS)
}

/// The directory to work in: the one given (new or empty), or a new one in
/// the temporary directory that is kept afterwards.
fn prepare_dir(given: Option<&Path>) -> Result<PathBuf> {
    let dir = match given {
        Some(dir) => {
            if dir.exists() {
                let mut entries = std::fs::read_dir(dir)
                    .with_context(|| format!("--dir {}: cannot read it", dir.display()))?;
                if entries.next().is_some() {
                    bail!(
                        "--dir {}: not empty; give a new or empty directory (the quickstart writes a registry, models and reports there)",
                        dir.display()
                    );
                }
            }
            std::fs::create_dir_all(dir)
                .with_context(|| format!("--dir {}: cannot create it", dir.display()))?;
            dir.to_path_buf()
        }
        None => tempfile::Builder::new()
            .prefix("gantry-quickstart-")
            .tempdir()
            .context("cannot create a directory in the system's temporary directory; give --dir")?
            .keep(),
    };
    let dir = dir
        .canonicalize()
        .with_context(|| format!("--dir {}", dir.display()))?;
    std::fs::create_dir_all(dir.join("logs")).context("creating logs/")?;
    Ok(dir)
}

struct Quickstart<'a> {
    /// Set by SIGTERM or SIGINT.
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    dir: PathBuf,
    exe: PathBuf,
    printer: &'a Printer,
    stage: usize,
    /// Every command run, as a person would type it in the directory.
    commands: Vec<String>,
    /// quickstart.json: what each stage produced.
    record: serde_json::Map<String, Value>,
    /// For the next command: a metrics file to follow and the steps it will reach.
    progress: Option<(String, String)>,
}

/// Stages, for the `[n/N]` counter.
const STAGES: usize = 12;

impl Quickstart<'_> {
    fn stages(&mut self, args: &QuickstartArgs, router: &mut Option<RouterProcess>) -> Result<()> {
        let steps = args.steps.to_string();
        let worse_steps = (args.steps / 5).max(2).to_string();
        let checkpoint_every = (args.steps / 3).to_string();
        let crash_at = (args.steps / 2).to_string();
        let window = format!("{}ms", args.step_duration.as_millis());

        // 1. Data: two versions of the same dataset, last week's and this week's.
        self.begin("data", "a chat dataset as it is this week (v2) and as it was last week (v1, a third fewer records)");
        self.gantry(
            "gen-data",
            &["tiny-lm", "gen-data", "--seed", "0", "--out", "data/v2"],
            &[0],
        )?;
        self.previous_version()?;
        let lines = |path: &str| -> Result<usize> {
            let text = std::fs::read_to_string(self.dir.join(path))
                .with_context(|| format!("reading {path}"))?;
            Ok(text.lines().count())
        };
        self.done(&format!(
            "data/v1: {} training records · data/v2: {} training records, {} validation, {} eval items",
            lines("data/v1/train.jsonl")?,
            lines("data/v2/train.jsonl")?,
            lines("data/v2/validation.jsonl")?,
            lines("data/v2/eval.jsonl")?,
        ));

        // 2. validate-data: v1 makes the reference, v2 is checked against it.
        self.begin(
            "validate-data",
            "format, tokens, duplicates, secrets, contamination with the eval set, drift against v1",
        );
        for version in ["v1", "v2"] {
            let out = format!(".gantry/validate-data/{version}");
            let train = format!("data/{version}/train.jsonl");
            let validation = format!("data/{version}/validation.jsonl");
            let mut words = vec![
                "validate-data",
                "--ci",
                "local",
                "--data",
                &train,
                "--data",
                &validation,
                "--eval-set",
                "data/v2/eval.jsonl",
                "--out",
                &out,
                "--name",
                version,
                "--publish",
                "summary",
            ];
            if version == "v2" {
                words.extend([
                    "--reference",
                    ".gantry/validate-data/v1/summary.json",
                    "--previous-lock",
                    ".gantry/validate-data/v1/data.lock",
                ]);
            }
            self.gantry(&format!("validate-data-{version}"), &words, &[0])?;
        }
        let report = self.json(".gantry/validate-data/v2/report.json")?;
        let lock = self.json(".gantry/validate-data/v2/data.lock")?;
        let digest = text(&lock, "/dataset_digest");
        let drift = worst_status(&report, "drift-");
        self.record.insert(
            "data".into(),
            json!({
                "lock": ".gantry/validate-data/v2/data.lock",
                "dataset_digest": digest,
                "verdict": report["verdict"],
                "drift": drift,
            }),
        );
        self.done(&format!(
            "v2: {} · drift against v1 (PSI, Jensen–Shannon, Wasserstein): {} · data lock {}",
            text(&report, "/verdict"),
            drift,
            short(&digest)
        ));

        // 3-4. The model in production today: trained on v1, evaluated.
        self.begin(
            "train baseline",
            "last week's model, on v1 (gantry train runs tiny-lm under the training contract)",
        );
        self.train("baseline", "v1", &steps, &checkpoint_every, &[])?;
        self.begin("eval baseline", "the eval set, scored by the team's harness (tiny-lm eval, lm-evaluation-harness files too)");
        self.evaluate("baseline")?;

        // 5. Registered and deployed as the first production version.
        self.begin(
            "register + deploy baseline",
            "tiny@1.0.0, the first deploy: straight to 100% behind the router, alias production",
        );
        self.register("baseline", "1.0.0", "v1", None)?;
        *router = Some(RouterProcess::start(self)?);
        let router_admin = router
            .as_ref()
            .map(RouterProcess::admin)
            .unwrap_or_default();
        let serve = format!(
            "{} tiny-lm serve --model {{model_dir}} --port {{port}} --served-model-name {MODEL}",
            shlex::try_quote(&self.exe.to_string_lossy()).context("the gantry binary's path")?
        );
        let deploy_flags: Vec<String> = [
            "--ci",
            "local",
            "--router",
            &router_admin,
            "--serve-command",
            &serve,
            "--smoke-traffic",
            "data/v2/eval.jsonl",
            "--smoke-rps",
            "12",
            "--step-duration",
            &window,
            "--analysis",
            "analysis.toml",
            "--lease",
            "30s",
            "--health-timeout",
            "60s",
            "--publish",
            "summary",
        ]
        .iter()
        .map(|word| (*word).to_owned())
        .collect();
        let mut words = vec![
            "deploy-canary",
            "--model",
            "tiny@1.0.0",
            "--allow-ungated",
            "--out",
            ".gantry/deploy/1.0.0",
        ];
        words.extend(deploy_flags.iter().map(String::as_str));
        self.gantry("deploy-baseline", &words, &[0])?;
        self.done(&format!(
            "tiny@production → 1.0.0 · serving at {}",
            router
                .as_ref()
                .map(RouterProcess::endpoint)
                .unwrap_or_default()
        ));

        // 6-7. This week's candidate, with one crash on the way.
        self.begin(
            "train candidate",
            &format!("on v2; tiny-lm crashes at step {crash_at} on purpose and gantry train resumes it from its checkpoint"),
        );
        self.train(
            "candidate",
            "v2",
            &steps,
            &checkpoint_every,
            &["--crash-at-step", &crash_at],
        )?;
        self.begin("eval candidate", "the same eval set, the same harness");
        self.evaluate("candidate")?;

        // 8. The gate against production's registered evaluation.
        self.begin(
            "eval-gate candidate",
            "item by item against registry:tiny@production's evaluation, under policy.toml",
        );
        let gate = self.gate("candidate", &[0])?;
        self.done(&format!(
            "{} · {} regressed, {} inconclusive, {} improved · {}",
            text(&gate, "/verdict"),
            gate["regressions"],
            gate["inconclusive"],
            gate["improvements"],
            ".gantry/eval-gate/candidate/gate.md"
        ));

        // 9. A worse candidate, which the gate must stop.
        self.begin(
            "eval-gate worse candidate",
            &format!(
                "{worse_steps} steps on answers half of which were swapped: the gate must say no"
            ),
        );
        self.train(
            "worse",
            "v2",
            &worse_steps,
            &worse_steps,
            &["--corrupt-fraction", "0.5"],
        )?;
        self.evaluate("worse")?;
        let worse = self.gate("worse", &[1])?;
        self.done(&format!(
            "{} (exit 1, as a required check would) · {} regressed · not registered\n{}",
            text(&worse, "/verdict"),
            worse["regressions"],
            failing_table(&worse)
        ));

        // 10. The candidate registered with its lineage.
        self.begin(
            "register candidate",
            "tiny@1.1.0: files hashed, lineage data lock → run → gate, then verified",
        );
        let manifest = self.register(
            "candidate",
            "1.1.0",
            "v2",
            Some(".gantry/eval-gate/candidate/gate.json"),
        )?;
        self.gantry(
            "verify-candidate",
            &["registry", "--ci", "local", "verify", "tiny@1.1.0"],
            &[0],
        )?;
        self.done(&format!(
            "tiny@1.1.0 {} · lineage: data {} · run {} · gate {} · verified",
            short(&text(&manifest, "/digest")),
            short(&text(&manifest, "/lineage/data/document/digest")),
            short(&text(&manifest, "/lineage/run/document/digest")),
            short(&text(&manifest, "/lineage/gate/document/digest")),
        ));

        // 11-12. The canary, paused for a person, then promoted.
        self.begin(
            "deploy-canary",
            "1.1.0 beside 1.0.0: 50% of smoke traffic for one window, judged against stable, then a pause for approval",
        );
        let mut words = vec![
            "deploy-canary",
            "--model",
            "tiny@1.1.0",
            "--steps",
            "50,pause",
            "--out",
            ".gantry/deploy/1.1.0",
        ];
        words.extend(deploy_flags.iter().map(String::as_str));
        self.gantry("deploy-canary", &words, &[0])?;
        let state = self.json(".gantry/deploy/rollout.json")?;
        self.done(&format!(
            "{} · {}",
            text(&state, "/phase"),
            last_decision(&state)
        ));
        self.begin("promote", "deploy-canary --action promote: the last window at 100%, then the alias moves (compare-and-swap)");
        let mut words = vec![
            "deploy-canary",
            "--action",
            "promote",
            "--out",
            ".gantry/deploy/1.1.0",
        ];
        words.extend(deploy_flags.iter().map(String::as_str));
        self.gantry("promote", &words, &[0])?;
        let state = self.json(".gantry/deploy/rollout.json")?;
        let weights = router
            .as_ref()
            .map(RouterProcess::weights)
            .transpose()?
            .unwrap_or_default();
        let production = self.alias("production")?;
        if text(&state, "/phase") != "promoted" || production != "1.1.0" {
            bail!(
                "the rollout ended {} with production at {production}: see logs/ and .gantry/deploy/1.1.0/report.md",
                text(&state, "/phase")
            );
        }
        self.record.insert(
            "deploy".into(),
            json!({
                "state": ".gantry/deploy/rollout.json",
                "phase": state["phase"],
                "production": production,
                "router_weights": weights,
                "report": ".gantry/deploy/1.1.0/report.md",
            }),
        );
        let split = weights
            .as_object()
            .map(|weights| {
                weights
                    .iter()
                    .map(|(version, weight)| format!("{version} {weight}%"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        self.done(&format!(
            "promoted · tiny@production → 1.1.0 · router: {split}"
        ));
        Ok(())
    }

    /// Last week's data, `data/v1`: this week's without the records added
    /// since (every third), the same validation split and eval set.
    fn previous_version(&self) -> Result<()> {
        let v1 = self.dir.join("data/v1");
        std::fs::create_dir_all(&v1).context("creating data/v1")?;
        let train = std::fs::read_to_string(self.dir.join("data/v2/train.jsonl"))
            .context("reading data/v2/train.jsonl")?;
        let kept: String = train
            .lines()
            .enumerate()
            .filter(|(index, _)| index % 3 != 2)
            .map(|(_, line)| format!("{line}\n"))
            .collect();
        std::fs::write(v1.join("train.jsonl"), kept).context("writing data/v1/train.jsonl")?;
        for file in ["validation.jsonl", "eval.jsonl"] {
            std::fs::copy(self.dir.join("data/v2").join(file), v1.join(file))
                .with_context(|| format!("copying data/v2/{file} to data/v1"))?;
        }
        Ok(())
    }

    /// `gantry train` of tiny-lm on `data`: run directory `.gantry/train/NAME`.
    fn train(
        &mut self,
        name: &str,
        data: &str,
        steps: &str,
        checkpoint_every: &str,
        extra: &[&str],
    ) -> Result<()> {
        let run_dir = format!(".gantry/train/{name}");
        let lock = format!(".gantry/validate-data/{data}/data.lock");
        let train = format!("data/{data}/train.jsonl");
        let validation = format!("data/{data}/validation.jsonl");
        let exe = self.exe.to_string_lossy().into_owned();
        let mut words = vec![
            "train",
            "--ci",
            "local",
            "--gpus",
            "none",
            "--run-dir",
            &run_dir,
            "--data-lock",
            &lock,
            "--max-restarts",
            "1",
            "--restart-backoff",
            "1s",
            "--name",
            name,
            "--",
            &exe,
            "tiny-lm",
            "train",
            "--data",
            &train,
            "--validation",
            &validation,
            "--steps",
            steps,
            "--checkpoint-every",
            checkpoint_every,
            "--eval-every",
            checkpoint_every,
        ];
        words.extend(extra);
        self.progress = Some((format!("{run_dir}/metrics.jsonl"), steps.to_owned()));
        self.gantry(&format!("train-{name}"), &words, &[0])?;
        let run = self.json(&format!("{run_dir}/run.json"))?;
        let attempts = run["attempts"].as_array().cloned().unwrap_or_default();
        let mut story = Vec::new();
        for (index, attempt) in attempts.iter().enumerate() {
            let number = index + 1;
            match attempt["outcome"].as_str() {
                Some("succeeded") => match attempt["resumed_from"].as_str() {
                    Some(from) => story.push(format!(
                        "attempt {number} resumed from {}",
                        Path::new(from).file_name().map_or_else(
                            || from.to_owned(),
                            |name| name.to_string_lossy().into_owned()
                        )
                    )),
                    None => story.push(format!("attempt {number} ran through")),
                },
                other => story.push(format!(
                    "attempt {number} {} (exit {})",
                    other.unwrap_or("ended"),
                    attempt["exit_code"]
                )),
            }
        }
        let loss = run["metrics"]["final"]["val_loss"]["value"]
            .as_f64()
            .map_or_else(String::new, |loss| format!(" · validation loss {loss:.3}"));
        self.record.insert(
            format!("train_{name}"),
            json!({
                "run": format!("{run_dir}/run.json"),
                "status": run["status"],
                "attempts": attempts.len(),
            }),
        );
        self.done(&format!(
            "{} · {}{loss} · {run_dir}/run.json",
            text(&run, "/status"),
            story.join(", ")
        ));
        Ok(())
    }

    /// tiny-lm's evaluation of `.gantry/train/NAME/output` on the eval set.
    fn evaluate(&mut self, name: &str) -> Result<()> {
        let model = format!(".gantry/train/{name}/output");
        let out = format!(".gantry/eval/{name}/results.jsonl");
        let lm_eval = format!(".gantry/eval/{name}/lm-eval");
        self.gantry(
            &format!("eval-{name}"),
            &[
                "tiny-lm",
                "eval",
                "--model",
                &model,
                "--data",
                "data/v2/eval.jsonl",
                "--out",
                &out,
                "--lm-eval-dir",
                &lm_eval,
                "--model-name",
                name,
            ],
            &[0],
        )?;
        let results = std::fs::read_to_string(self.dir.join(&out))
            .with_context(|| format!("reading {out}"))?;
        let (mut items, mut accuracy) = (0_u32, 0.0);
        for line in results.lines().filter(|line| !line.trim().is_empty()) {
            let item: Value =
                serde_json::from_str(line).with_context(|| format!("{out}: not JSON"))?;
            items += 1;
            accuracy += item["scores"]["acc"].as_f64().unwrap_or(0.0);
        }
        if items == 0 {
            bail!("{out}: the evaluation wrote no items");
        }
        self.done(&format!(
            "{items} items · accuracy {:.3} · {out}",
            accuracy / f64::from(items)
        ));
        Ok(())
    }

    /// `gantry eval-gate` of NAME's results against production's.
    fn gate(&mut self, name: &str, expect: &[i32]) -> Result<Value> {
        let candidate = format!(".gantry/eval/{name}/results.jsonl");
        let out = format!(".gantry/eval-gate/{name}");
        self.gantry(
            &format!("eval-gate-{name}"),
            &[
                "eval-gate",
                "--ci",
                "local",
                "--baseline",
                "registry:tiny@production",
                "--candidate",
                &candidate,
                "--policy",
                "policy.toml",
                "--out",
                &out,
                "--name",
                name,
                "--publish",
                "summary",
            ],
            expect,
        )?;
        let gate = self.json(&format!("{out}/gate.json"))?;
        self.record.insert(
            format!("gate_{name}"),
            json!({ "report": format!("{out}/gate.json"), "verdict": gate["verdict"] }),
        );
        Ok(gate)
    }

    /// `gantry register` of NAME's model as VERSION with its lineage.
    fn register(
        &mut self,
        name: &str,
        version: &str,
        data: &str,
        gate: Option<&str>,
    ) -> Result<Value> {
        let model_dir = format!(".gantry/train/{name}/output");
        let run = format!(".gantry/train/{name}/run.json");
        let lock = format!(".gantry/validate-data/{data}/data.lock");
        let summary = format!(".gantry/validate-data/{data}/summary.json");
        let results = format!(".gantry/eval/{name}/results.jsonl");
        let mut words = vec![
            "--format",
            "json",
            "register",
            "--ci",
            "local",
            "--model-dir",
            &model_dir,
            "--name",
            MODEL,
            "--version",
            version,
            "--run-record",
            &run,
            "--data-lock",
            &lock,
            "--data-summary",
            &summary,
            "--eval-results",
            &results,
            "--eval-set",
            "data/v2/eval.jsonl",
        ];
        if let Some(gate) = gate {
            words.extend(["--gate-report", gate, "--alias", "candidate"]);
        }
        let output = self.gantry(&format!("register-{name}"), &words, &[0])?;
        let registered: Value = serde_json::from_str(&output).with_context(|| {
            format!(
                "gantry register printed no JSON: see logs/{:02}-register-{name}.log",
                self.stage
            )
        })?;
        let manifest = json!({
            "digest": registered["digest"],
            "lineage": registered["manifest"]["lineage"].clone(),
        });
        self.record.insert(
            format!("model_{name}"),
            json!({ "reference": format!("{MODEL}@{version}"), "digest": registered["digest"], "lineage": registered["manifest"]["lineage"] }),
        );
        Ok(manifest)
    }

    /// The version `tiny@ALIAS` names in the registry.
    fn alias(&mut self, alias: &str) -> Result<String> {
        let reference = format!("{MODEL}@{alias}");
        let output = self.gantry(
            &format!("show-{alias}"),
            &[
                "--format", "json", "registry", "--ci", "local", "show", &reference,
            ],
            &[0],
        )?;
        let shown: Value = serde_json::from_str(&output)
            .with_context(|| format!("gantry registry show {reference} printed no JSON"))?;
        Ok(text(&shown, "/version"))
    }

    fn begin(&mut self, title: &str, what: &str) {
        self.stage += 1;
        self.printer
            .info(&format!("[{}/{STAGES}] {title}: {what}", self.stage));
    }

    fn done(&self, what: &str) {
        for line in what.lines() {
            self.printer.info(&format!("      {line}"));
        }
    }

    fn json(&self, path: &str) -> Result<Value> {
        let text = std::fs::read_to_string(self.dir.join(path))
            .with_context(|| format!("reading {path} in {}", self.dir.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{path}: not JSON"))
    }

    /// Runs this gantry with `words` in the directory, output in
    /// `logs/NN-LOG.log`; an exit code outside `expect` is an error that
    /// quotes the log's end. Returns what it printed on stdout.
    fn gantry(&mut self, log: &str, words: &[&str], expect: &[i32]) -> Result<String> {
        let shown = std::iter::once("gantry".to_owned())
            .chain(words.iter().map(|word| {
                if *word == self.exe.to_string_lossy() {
                    "gantry".to_owned()
                } else {
                    shlex::try_quote(word)
                        .map_or_else(|_| (*word).to_owned(), |quoted| quoted.into_owned())
                }
            }))
            .collect::<Vec<_>>()
            .join(" ");
        self.commands.push(shown.clone());
        let log_path = self
            .dir
            .join("logs")
            .join(format!("{:02}-{log}.log", self.stage));
        let stderr = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;
        let started = Instant::now();
        let stdout_path = self
            .dir
            .join("logs")
            .join(format!("{:02}-{log}.stdout", self.stage));
        let stdout_file = std::fs::File::create(&stdout_path)
            .with_context(|| format!("creating {}", stdout_path.display()))?;
        let mut child = Command::new(&self.exe)
            .args(words)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(stdout_file)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        // Someone watching a terminal sees training move.
        let progress = self
            .progress
            .take()
            .filter(|_| self.printer.shows_progress(false));
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("waiting for `{shown}`"))?
            {
                break status;
            }
            if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
                // The stage stops as a cancelled CI step would: SIGTERM, 30 s, SIGKILL.
                terminate(&child);
                let deadline = Instant::now() + Duration::from_secs(30);
                while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = child.kill();
                break child
                    .wait()
                    .with_context(|| format!("waiting for `{shown}`"))?;
            }
            if let Some((metrics, total)) = &progress {
                let step = last_step(&self.dir.join(metrics));
                let _ = write!(
                    std::io::stderr().lock(),
                    "\r      … step {step}/{total} ({:.0}s)\x1b[K",
                    started.elapsed().as_secs_f64()
                );
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        if progress.is_some() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
        // Stopped (Ctrl-C reaches the stage too: one process group).
        if self.stop.load(std::sync::atomic::Ordering::Relaxed) {
            bail!(
                "stopped by a signal during stage {} (`{shown}`); what it had done is in {}",
                self.stage,
                self.dir.display()
            );
        }
        let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
        let _ = std::fs::remove_file(&stdout_path);
        {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&log_path)
                .with_context(|| format!("appending to {}", log_path.display()))?;
            writeln!(file, "\n--- stdout ---\n{stdout}")
                .with_context(|| format!("appending to {}", log_path.display()))?;
        }
        let code = status.code().unwrap_or(-1);
        self.printer.info(&format!(
            "      $ {shown}   ({:.1}s)",
            started.elapsed().as_secs_f64()
        ));
        if !expect.contains(&code) {
            let log_text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log_text.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "stage {} failed: `{shown}` exited {code} (expected {expect:?}); its output is in {}:\n{}",
                self.stage,
                log_path.display(),
                tail.join("\n")
            );
        }
        Ok(stdout)
    }
}

/// `gantry router` for the quickstart, stopped (with its model servers) at the end.
struct RouterProcess {
    child: Child,
    admin: String,
    listen: String,
}

impl RouterProcess {
    fn start(quickstart: &mut Quickstart<'_>) -> Result<RouterProcess> {
        let listen = format!("127.0.0.1:{}", free_port()?);
        let admin = format!("127.0.0.1:{}", free_port()?);
        let log = quickstart.dir.join("logs/router.log");
        let stderr =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let words = [
            "router",
            "--ci",
            "local",
            "--listen",
            &listen,
            "--admin",
            &admin,
            "--state-dir",
            ".gantry/router",
            "--grace",
            "2s",
            "--stop-backends-on-exit",
        ];
        quickstart
            .commands
            .push(format!("gantry {} &", words.join(" ")));
        let child = Command::new(&quickstart.exe)
            .args(words)
            .current_dir(&quickstart.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .context("starting gantry router")?;
        let router = RouterProcess {
            child,
            admin: format!("http://{admin}"),
            listen,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(&format!("{}/health", router.admin)).is_err() {
            if Instant::now() > deadline {
                router.stop();
                bail!(
                    "the router did not answer on {admin} within 30 s: see {}",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(router)
    }

    fn admin(&self) -> String {
        self.admin.clone()
    }

    fn endpoint(&self) -> String {
        format!("http://{}/v1", self.listen)
    }

    /// The router's weights now, version → percent.
    fn weights(&self) -> Result<Value> {
        let view: Value = serde_json::from_str(&get(&format!("{}/v1/backends", self.admin))?)
            .context("the router's /v1/backends is not JSON")?;
        let mut weights = serde_json::Map::new();
        for backend in view["backends"].as_array().into_iter().flatten() {
            weights.insert(text(backend, "/version"), backend["weight"].clone());
        }
        Ok(Value::Object(weights))
    }

    /// SIGTERM, then SIGKILL after 20 s: the router stops its model servers.
    fn stop(mut self) {
        terminate(&self.child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends SIGTERM to `child`.
fn terminate(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id())
        && let Some(pid) = rustix::process::Pid::from_raw(pid)
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

/// The last `step` in a metrics JSONL file (0 before the first).
fn last_step(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines()
                .rev()
                .find_map(|line| serde_json::from_str::<Value>(line).ok()?["step"].as_u64())
        })
        .unwrap_or(0)
}

/// A port nothing listens on now (the router binds it a moment later).
fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("cannot find a free local port")?;
    Ok(listener.local_addr().context("a local port")?.port())
}

/// A plain HTTP GET on loopback, the body as text.
fn get(url: &str) -> Result<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .with_context(|| format!("GET {url}"))?
            .error_for_status()
            .with_context(|| format!("GET {url}"))?;
        response.text().await.with_context(|| format!("GET {url}"))
    })
}

/// A string at `pointer`, or "?" (numbers and booleans as JSON).
fn text(value: &Value, pointer: &str) -> String {
    match value.pointer(pointer) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => "?".to_owned(),
        Some(other) => other.to_string(),
    }
}

/// The worst status among the report's checks whose id starts with
/// `prefix`, or "not measured" when there are none.
fn worst_status(report: &Value, prefix: &str) -> String {
    const ORDER: [&str; 5] = ["error", "fail", "warn", "pass", "skipped"];
    let statuses: Vec<&str> = report["checks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|check| {
            check["id"]
                .as_str()
                .is_some_and(|id| id.starts_with(prefix))
        })
        .filter_map(|check| check["status"].as_str())
        .collect();
    ORDER
        .iter()
        .find(|status| statuses.contains(status))
        .map_or_else(|| "not measured".to_owned(), |status| (*status).to_owned())
}

/// `sha256:0123456789ab…`
fn short(digest: &str) -> String {
    match digest.strip_prefix("sha256:") {
        Some(hex) if hex.len() > 12 => format!("sha256:{}…", &hex[..12]),
        _ => digest.to_owned(),
    }
}

/// The rows of a gate that failed, as a small table.
fn failing_table(gate: &Value) -> String {
    let mut lines = vec![format!(
        "{:<10} {:<10} {:>9} {:>9} {:>28}  {}",
        "task", "metric", "baseline", "candidate", "Δ (90% CI)", "verdict"
    )];
    for row in gate["rows"].as_array().into_iter().flatten() {
        if row["verdict"] != "fail" {
            continue;
        }
        let number = |key: &str| row[key].as_f64().unwrap_or(f64::NAN);
        lines.push(format!(
            "{:<10} {:<10} {:>9.3} {:>9.3} {:>28}  fail",
            text(row, "/task"),
            text(row, "/metric"),
            number("baseline"),
            number("candidate"),
            format!(
                "{:+.3} [{:+.3}, {:+.3}]",
                number("delta"),
                number("ci_low"),
                number("ci_high")
            ),
        ));
    }
    lines.join("\n")
}

/// The rollout's last decision and its reason.
fn last_decision(state: &Value) -> String {
    state["decisions"]
        .as_array()
        .and_then(|decisions| decisions.last())
        .map_or_else(
            || "no decision recorded".to_owned(),
            |decision| {
                format!(
                    "{}: {}",
                    text(decision, "/action"),
                    text(decision, "/reason")
                )
            },
        )
}

/// The closing summary: where things are and what to run next.
fn summary(record: &Value, dir: &Path, elapsed: Duration) -> String {
    let dir = dir.display();
    format!(
        "\nDone in {:.0} s. Everything is in {dir}:\n\
         \x20 data lock        {} ({})\n\
         \x20 model            tiny@1.1.0 {} — alias production\n\
         \x20 gates            .gantry/eval-gate/candidate/gate.md ({}), .gantry/eval-gate/worse/gate.md ({})\n\
         \x20 rollout          {}\n\
         \x20 reports          .gantry/reports/ · every command's output in logs/ · quickstart.json\n\
         \nNext, in {dir}:\n\
         \x20 gantry registry show tiny                 # versions, aliases, lineage\n\
         \x20 gantry registry verify tiny@production    # every file and the lineage chain, again\n\
         \x20 gantry registry diff tiny@1.0.0 tiny@1.1.0\n\
         \x20 gantry eval-gate --baseline registry:tiny@production --candidate .gantry/eval/worse/results.jsonl --policy policy.toml\n\
         \nAdd the same to a repository: `gantry init --forge github` (or `--forge gitlab`) writes the workflows;\n\
         docs/quickstart.md walks through each stage.",
        elapsed.as_secs_f64(),
        short(&text(record, "/data/dataset_digest")),
        text(record, "/data/lock"),
        short(&text(record, "/model_candidate/digest")),
        text(record, "/gate_candidate/verdict"),
        text(record, "/gate_worse/verdict"),
        text(record, "/deploy/report"),
    )
}
