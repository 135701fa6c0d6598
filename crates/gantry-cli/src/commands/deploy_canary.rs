//! `gantry deploy-canary`: wires the registry, the router and the forge into
//! the rollout controller, and publishes its outcome.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use gantry_ci::{Deployment, DeploymentRecord, DeploymentState, EnvVars, ForgeClient, Platform};
use gantry_core::{ExitCode, Secret, Verdict};
use gantry_deploy::analysis::AnalysisConfig;
use gantry_deploy::controller::{
    Action, Controller, ControllerOptions, GateStatus, ModelVersion, Models, Observer,
};
use gantry_deploy::kubernetes::argo::{self, ArgoOptions};
use gantry_deploy::kubernetes::{
    Cluster, ClusterSource, Engine, KubeOptions, KubeTarget, ModelSource,
};
use gantry_deploy::rollout::{Decision, Phase, RolloutState, Step, Strategy, parse_steps};
use gantry_deploy::smoke::{Smoke, SmokeScorer, load_smoke};
use gantry_deploy::target::{LocalRouter, Target};
use gantry_registry::{Expectation, Registry, Resolved};

use crate::cli::{DeployAction, DeployCanaryArgs, DeployStrategy, DeployTarget, K8sEngine};
use crate::commands::Session;
use crate::commands::publish::{Outcome, publish};
use crate::commands::registries::{open_registry, parse_reference};
use crate::commands::signals::terminated;
use crate::packaging::Output;
use crate::printer::Printer;

pub(crate) fn run(
    args: &DeployCanaryArgs,
    session: &Session<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    let action = match args.action {
        DeployAction::Start => Action::Start,
        DeployAction::Resume => Action::Resume,
        DeployAction::Promote => Action::Promote,
        DeployAction::Abort => Action::Abort,
        DeployAction::Status => Action::Status,
    };
    let kube = &args.kubernetes;
    let cluster_target = args.target == DeployTarget::Kubernetes;
    if action == Action::Status && cluster_target && !kube.dry_run {
        // The state file answers; no cluster is asked.
        let state = RolloutState::load(&args.state_file)?
            .ok_or_else(|| anyhow::anyhow!("no rollout state in {}", args.state_file.display()))?;
        return outcome(args, &state, action, session, printer);
    }
    if !cluster_target && kube.dry_run {
        bail!("--dry-run prints what --target kubernetes would send: give --target kubernetes");
    }
    let mut options = controller_options(args, action)?;
    let engine = match kube.k8s_engine {
        K8sEngine::GatewayApi => Engine::GatewayApi,
        K8sEngine::Kserve => Engine::Kserve,
        K8sEngine::ArgoRollouts => Engine::ArgoRollouts,
    };
    if cluster_target {
        options.pull_locally = false;
        if args.strategy == DeployStrategy::BlueGreen && engine != Engine::ArgoRollouts {
            bail!(
                "--strategy blue-green previews with smoke traffic pinned by the router's header, which a Gateway does not route: on Kubernetes use --steps 100 (one judged step), or Argo Rollouts' blueGreen strategy"
            );
        }
        if options.smoke.is_some() && kube.gateway_url.is_none() {
            bail!("--smoke-traffic on Kubernetes is sent through the Gateway: give --gateway-url");
        }
        if engine != Engine::ArgoRollouts && action != Action::Status && !kube.dry_run {
            options.analysis = options
                .analysis
                .clone()
                .for_cluster("--target kubernetes")
                .map_err(|error| anyhow::anyhow!("--analysis: {error}"))?;
        }
    }
    let registry = open_registry(&args.registry, session)?;
    let models = RegistryModels {
        registry: registry.as_ref(),
        actor: session
            .context
            .actor
            .clone()
            .unwrap_or_else(|| "gantry".to_owned()),
    };
    let policy = gantry_ci::retry_policy(session.environment);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The forge client spawns its connection pool's tasks when built.
    let _entered = runtime.enter();
    let kube_options = if cluster_target {
        Some(kube_options(args, engine, &options)?)
    } else {
        None
    };
    if let Some(kube_options) = &kube_options
        && kube.dry_run
    {
        return dry_run(args, kube_options, &models, printer);
    }
    let forge = if session.platform == Platform::Local || action == Action::Status {
        None
    } else {
        match ForgeClient::from_context(&session.context, session.environment, session.redactor()) {
            Ok(forge) => Some(forge),
            Err(error) => {
                printer.warning(&format!(
                    "the rollout is not recorded as a forge deployment: {error}"
                ));
                None
            }
        }
    };
    let mut observer = CliObserver {
        printer,
        session,
        forge,
        environment: args.environment.clone(),
        records: BTreeMap::new(),
    };
    let result = match kube_options {
        None => {
            let token = session
                .environment
                .get(EnvVars::GANTRY_ROUTER_TOKEN)
                .filter(|token| !token.is_empty())
                .map(Secret::new);
            let mut target = LocalRouter::new(&args.router, token, policy)?;
            target.bring_up_timeout = args.health_timeout + std::time::Duration::from_secs(60);
            drive(
                &runtime,
                &target,
                &models,
                &mut observer,
                &options,
                action,
                printer,
            )
        }
        Some(kube_options) => {
            let source = cluster_source(args, session);
            let cluster =
                runtime.block_on(Cluster::connect(&source, kube.namespace.as_deref(), policy));
            match cluster {
                Err(error) => Err(error),
                Ok(cluster) if engine == Engine::ArgoRollouts => {
                    let argo = ArgoOptions {
                        model: options.model.clone(),
                        stable_alias: options.stable_alias.clone(),
                        rollout: kube_options.route.clone(),
                        state_file: options.state_file.clone(),
                        allow_ungated: options.allow_ungated,
                        force_conflicts: kube.k8s_force_conflicts,
                        poll: std::time::Duration::from_secs(60),
                    };
                    follow_argo(
                        &runtime,
                        &cluster,
                        &models,
                        &mut observer,
                        &argo,
                        action,
                        printer,
                    )
                }
                Ok(cluster) => match KubeTarget::new(cluster, kube_options) {
                    Err(error) => Err(error),
                    Ok(target) => match runtime.block_on(target.preflight()) {
                        Err(error) => Err(error),
                        Ok(()) => drive(
                            &runtime,
                            &target,
                            &models,
                            &mut observer,
                            &options,
                            action,
                            printer,
                        ),
                    },
                },
            }
        }
    };
    let state = match result {
        Ok(state) => state,
        Err(error) => {
            // A tool fault mid-rollout: say so on the forge deployment too.
            if let Ok(Some(state)) = RolloutState::load(&args.state_file) {
                runtime.block_on(observer.set_state(
                    &state,
                    DeploymentState::Error,
                    &format!("gantry could not go on: {error}"),
                ));
            }
            return Err(anyhow::Error::new(error));
        }
    };
    drop(observer);
    outcome(args, &state, action, session, printer)
}

/// Runs the controller on `target`. A cancelled job (SIGTERM or SIGINT)
/// stops the rollout where it is and returns traffic to stable at once,
/// rather than when the lease runs out.
fn drive<T: Target>(
    runtime: &tokio::runtime::Runtime,
    target: &T,
    models: &dyn Models,
    observer: &mut CliObserver<'_>,
    options: &ControllerOptions,
    action: Action,
    printer: &Printer,
) -> gantry_deploy::Result<RolloutState> {
    let finished = runtime.block_on(async {
        let mut controller = Controller::new(target, models, observer, options)?;
        tokio::select! {
            result = controller.run(action) => result.map(Some),
            () = terminated() => Ok(None),
        }
    });
    match finished {
        Ok(Some(state)) => Ok(state),
        Ok(None) => {
            printer.warning("cancelled: returning all traffic to stable");
            runtime.block_on(async {
                let mut controller = Controller::new(target, models, observer, options)?;
                controller.run(Action::Cancelled).await
            })
        }
        Err(error) => Err(error),
    }
}

/// Follows an Argo Rollout; a cancelled job aborts it.
fn follow_argo(
    runtime: &tokio::runtime::Runtime,
    cluster: &Cluster,
    models: &dyn Models,
    observer: &mut CliObserver<'_>,
    options: &ArgoOptions,
    action: Action,
    printer: &Printer,
) -> gantry_deploy::Result<RolloutState> {
    let finished = runtime.block_on(async {
        tokio::select! {
            result = argo::follow(cluster, models, observer, options, action) => result.map(Some),
            () = terminated() => Ok(None),
        }
    });
    match finished {
        Ok(Some(state)) => Ok(state),
        Ok(None) => {
            printer.warning("cancelled: aborting the Rollout (Argo returns all traffic to stable)");
            runtime.block_on(argo::follow(
                cluster,
                models,
                observer,
                options,
                Action::Cancelled,
            ))
        }
        Err(error) => Err(error),
    }
}

/// Where the cluster's credentials come from: --kubeconfig, KUBECONFIG
/// (its first file), ~/.kube/config, or the pod's service account.
fn cluster_source(args: &DeployCanaryArgs, session: &Session<'_>) -> ClusterSource {
    let environment = session.environment;
    let kubeconfig = args.kubernetes.kubeconfig.clone().or_else(|| {
        environment
            .get("KUBECONFIG")
            .and_then(|list| list.split(':').find(|path| !path.is_empty()))
            .map(std::path::PathBuf::from)
    });
    ClusterSource {
        kubeconfig,
        context: args.kubernetes.kube_context.clone(),
        home_kubeconfig: environment
            .get("HOME")
            .map(|home| Path::new(home).join(".kube").join("config")),
        in_cluster: environment
            .get("KUBERNETES_SERVICE_HOST")
            .is_some_and(|host| !host.is_empty()),
    }
}

/// The model's name: from --model, or from the rollout in the state file.
fn model_name(args: &DeployCanaryArgs) -> Result<String> {
    if let Some(model) = &args.model {
        return Ok(parse_reference(model)
            .map(|reference| reference.name)
            .unwrap_or_else(|_| model.split('@').next().unwrap_or_default().to_owned()));
    }
    match RolloutState::load(&args.state_file) {
        Ok(Some(state)) => Ok(state.model),
        _ => bail!(
            "--model is needed: no rollout in {} names the model",
            args.state_file.display()
        ),
    }
}

fn kube_options(
    args: &DeployCanaryArgs,
    engine: Engine,
    options: &ControllerOptions,
) -> Result<KubeOptions> {
    let kube = &args.kubernetes;
    let model = model_name(args)?;
    let route = match engine {
        Engine::GatewayApi => kube.http_route.clone().ok_or_else(|| {
            anyhow::anyhow!(
                "--k8s-engine gateway-api sets the weights of your HTTPRoute: give --http-route NAME"
            )
        })?,
        Engine::ArgoRollouts => kube.argo_rollout.clone().ok_or_else(|| {
            anyhow::anyhow!("--k8s-engine argo-rollouts follows your Rollout: give --argo-rollout NAME")
        })?,
        Engine::Kserve => String::new(),
    };
    let source = match kube.model_source.split_once(':') {
        None if kube.model_source == "registry" => ModelSource::Registry {
            registry: args.registry.clone(),
            image: kube.gantry_image.clone().unwrap_or_else(|| {
                format!(
                    "{}:{}",
                    crate::packaging::IMAGE_REPOSITORY,
                    env!("CARGO_PKG_VERSION")
                )
            }),
            secret: kube.registry_secret.clone(),
        },
        Some(("pvc", claim)) if !claim.is_empty() => ModelSource::Pvc {
            claim: claim.to_owned(),
        },
        Some(("image", reference)) if !reference.is_empty() => ModelSource::Image {
            reference: reference.to_owned(),
        },
        _ => bail!(
            "--model-source {:?}: give registry, pvc:CLAIM or image:REFERENCE",
            kube.model_source
        ),
    };
    if engine == Engine::GatewayApi
        && matches!(source, ModelSource::Registry { .. })
        && args.registry.starts_with("file:")
    {
        bail!(
            "--registry {}: a file registry is on this host, out of the cluster's reach; use an oci:// or mlflow registry, or --model-source pvc:CLAIM",
            args.registry
        );
    }
    let storage_uri = match engine {
        // The version's reference in an OCI registry (its gantry digest
        // tag), unless the model lives elsewhere for KServe.
        Engine::Kserve => match (&kube.storage_uri, args.registry.strip_prefix("oci://")) {
            (Some(uri), _) => uri.clone(),
            (None, Some(repository)) => format!(
                "oci://{}/{{name}}:digest-{{digest_hex}}",
                repository.trim_end_matches('/')
            ),
            (None, None) => bail!(
                "--k8s-engine kserve needs --storage-uri with a --registry that is not oci://: where KServe loads a version from, e.g. oci://registry.example/models/{{name}}:{{version}} (a modelcar image) or s3://bucket/{{name}}/{{version}}"
            ),
        },
        _ => String::new(),
    };
    let server_args = match &options.serve_command {
        Some(command) => shlex::split(command)
            .ok_or_else(|| anyhow::anyhow!("--serve-command {command:?}: unbalanced quotes"))?,
        None => Vec::new(),
    };
    if kube.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    Ok(KubeOptions {
        engine,
        inference_service: kube.inference_service.clone().unwrap_or_else(|| {
            gantry_deploy::kubernetes::object_name(&model, "isvc")
                .trim_end_matches("-isvc")
                .to_owned()
        }),
        model,
        route,
        server_image: kube.server_image.clone(),
        server_args,
        port: kube.server_port,
        replicas: i32::from(kube.replicas),
        gpus: kube.gpus_per_replica,
        source,
        storage_uri,
        model_format: kube.model_format.clone(),
        runtime: kube.serving_runtime.clone(),
        force_conflicts: kube.k8s_force_conflicts,
        gateway_url: kube.gateway_url.clone(),
        ready_timeout: args.health_timeout,
        status_timeout: std::time::Duration::from_secs(120),
    })
}

/// `--dry-run`: the manifests and patches of a whole rollout, printed.
fn dry_run(
    args: &DeployCanaryArgs,
    kube: &KubeOptions,
    models: &RegistryModels<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    let Some(reference) = &args.model else {
        bail!("--dry-run plans a rollout: give --model");
    };
    let canary = models.resolve(reference)?;
    gantry_deploy::controller::gate_allows(&canary, args.allow_ungated)?;
    let stable = models.alias(&canary.name, &args.stable_alias)?;
    let namespace = args
        .kubernetes
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let steps = parse_steps(&args.steps)?;
    let plan = gantry_deploy::kubernetes::dry_run::plan(
        kube,
        &namespace,
        (&canary.version, &canary.digest),
        stable
            .as_ref()
            .map(|stable| (stable.version.as_str(), stable.digest.as_str())),
        &steps,
    )?;
    match printer.format() {
        crate::cli::OutputFormat::Json => printer.json(&serde_json::to_value(&plan)?),
        crate::cli::OutputFormat::Text => {
            printer.data(&gantry_deploy::kubernetes::dry_run::render_text(&plan)?);
        }
    }
    Ok(ExitCode::PASS)
}

fn controller_options(args: &DeployCanaryArgs, action: Action) -> Result<ControllerOptions> {
    if action == Action::Start && args.model.is_none() {
        bail!("--model is needed to start a rollout (NAME@VERSION, NAME@ALIAS or NAME@sha256:…)");
    }
    if args.step_duration.is_zero() {
        bail!("--step-duration must be longer than 0 (e.g. 5m)");
    }
    if args.lease < std::time::Duration::from_secs(1) {
        bail!("--lease must be at least 1s");
    }
    if !(args.smoke_rps.is_finite() && args.smoke_rps > 0.0 && args.smoke_rps <= 10_000.0) {
        bail!(
            "--smoke-rps {}: give a rate above 0 and at most 10000",
            args.smoke_rps
        );
    }
    if args.min_requests == 0 {
        bail!("--min-requests must be at least 1: a window without requests is never a pass");
    }
    let analysis = match &args.analysis {
        Some(path) => {
            AnalysisConfig::load(path).map_err(|error| anyhow::anyhow!("--analysis {error}"))?
        }
        None => AnalysisConfig::default(),
    };
    let smoke = args
        .smoke_traffic
        .as_deref()
        .map(|path| -> Result<Smoke> {
            Ok(Smoke {
                requests: load_smoke(path)
                    .map_err(|error| anyhow::anyhow!("--smoke-traffic {error}"))?,
                rps: args.smoke_rps,
                scorer: args
                    .smoke_scorer
                    .map(|scorer| Arc::new(EvalScorer(scorer.into())) as Arc<dyn SmokeScorer>),
            })
        })
        .transpose()?;
    if args.smoke_scorer.is_some() && args.smoke_traffic.is_none() {
        bail!("--smoke-scorer scores smoke answers: give --smoke-traffic too");
    }
    let options = ControllerOptions {
        model: args.model.clone().unwrap_or_default(),
        stable_alias: args.stable_alias.clone(),
        strategy: match args.strategy {
            DeployStrategy::Canary => Strategy::Canary,
            DeployStrategy::BlueGreen => Strategy::BlueGreen,
        },
        steps: parse_steps(&args.steps)?,
        step_duration: args.step_duration,
        min_requests: args.min_requests,
        analysis,
        lease: args.lease,
        smoke,
        serve_command: args.serve_command.clone(),
        // The router runs the servers from its own directory.
        models_dir: std::path::absolute(&args.models_dir)
            .with_context(|| format!("--models-dir {}", args.models_dir.display()))?,
        state_file: args.state_file.clone(),
        allow_ungated: args.allow_ungated,
        health_timeout: Some(args.health_timeout.as_secs().max(1)),
        pull_locally: true,
    };
    options
        .validate()
        .map_err(|error| anyhow::anyhow!("--analysis: {error}"))?;
    Ok(options)
}

/// eval-gate's scorers on smoke answers.
struct EvalScorer(gantry_eval::runner::Scorer);

impl SmokeScorer for EvalScorer {
    fn score(&self, item: &serde_json::Value, answer: &str) -> Option<f64> {
        let item: gantry_eval::runner::Item = serde_json::from_value(item.clone()).ok()?;
        gantry_eval::runner::score(self.0, &item, answer, 1e-6)
            .ok()
            .flatten()
    }

    fn name(&self) -> &str {
        self.0.name()
    }
}

/// The registry as the controller sees it.
struct RegistryModels<'a> {
    registry: &'a dyn Registry,
    actor: String,
}

fn registry_error(error: impl std::fmt::Display) -> gantry_deploy::Error {
    gantry_deploy::Error::Input(error.to_string())
}

/// Ancestors followed through `derived_from` at most (as KitOps follows model references).
const MAX_DERIVATION_CHAIN: usize = 10;

impl RegistryModels<'_> {
    /// The version with its gate, following `derived_from` up the chain: a
    /// variant is deployable when it passed its gate against its parent and
    /// every ancestor passed its own.
    fn model_version(&self, resolved: &Resolved) -> ModelVersion {
        let mut version = model_version(resolved);
        if version.gate == GateStatus::Passed {
            version.gate = self.ancestry(resolved);
        }
        version
    }

    fn ancestry(&self, resolved: &Resolved) -> GateStatus {
        let mut seen = vec![resolved.digest];
        let mut next = resolved.manifest.lineage.derived_from.clone();
        for _ in 0..MAX_DERIVATION_CHAIN {
            let Some(derived) = next else {
                return GateStatus::Passed;
            };
            let named = format!("{}@{} ({})", derived.name, derived.version, derived.parent);
            if seen.contains(&derived.parent) {
                return GateStatus::Failed(format!(
                    "a cycle of derived models at its ancestor {named}"
                ));
            }
            let reference = gantry_registry::Reference {
                name: derived.name.clone(),
                selector: gantry_registry::Selector::Digest(derived.parent),
            };
            let parent = match self.registry.resolve(&reference) {
                Ok(parent) => parent,
                Err(error) => {
                    return GateStatus::Failed(format!(
                        "none checkable: its ancestor {named} is not in the registry ({error})"
                    ));
                }
            };
            match &parent.manifest.lineage.gate {
                Some(gate) if gate.verdict == Verdict::Fail => {
                    return GateStatus::Failed(format!("fail, of its ancestor {named}"));
                }
                Some(_) => {}
                None => {
                    return GateStatus::Failed(format!(
                        "none, of its ancestor {named}, which has no evaluation gate"
                    ));
                }
            }
            seen.push(parent.digest);
            next = parent.manifest.lineage.derived_from.clone();
        }
        GateStatus::Failed(format!(
            "unknown: more than {MAX_DERIVATION_CHAIN} derived models in its chain"
        ))
    }

    fn resolved(&self, version: &ModelVersion) -> gantry_deploy::Result<Resolved> {
        let reference = parse_reference(&format!("{}@{}", version.name, version.digest))
            .map_err(registry_error)?;
        let resolved = self.registry.resolve(&reference).map_err(registry_error)?;
        Ok(resolved)
    }
}

fn model_version(resolved: &Resolved) -> ModelVersion {
    let manifest = &resolved.manifest;
    ModelVersion {
        name: manifest.name.clone(),
        version: manifest.version.clone(),
        digest: resolved.digest.to_string(),
        gate: match &manifest.lineage.gate {
            Some(gate) if gate.verdict == Verdict::Fail => GateStatus::Failed("fail".to_owned()),
            Some(_) => GateStatus::Passed,
            None => GateStatus::Missing,
        },
    }
}

impl Models for RegistryModels<'_> {
    fn resolve(&self, reference: &str) -> gantry_deploy::Result<ModelVersion> {
        let parsed = parse_reference(reference)
            .map_err(|error| gantry_deploy::Error::Input(format!("--model {error:#}")))?;
        let resolved = self.registry.resolve(&parsed).map_err(|error| {
            gantry_deploy::Error::Input(format!("--model {reference}: {error}"))
        })?;
        Ok(self.model_version(&resolved))
    }

    fn alias(&self, name: &str, alias: &str) -> gantry_deploy::Result<Option<ModelVersion>> {
        let aliases = self.registry.aliases(name).map_err(registry_error)?;
        let Some(target) = aliases.get(alias) else {
            return Ok(None);
        };
        let reference =
            parse_reference(&format!("{name}@{}", target.digest)).map_err(registry_error)?;
        let resolved = self.registry.resolve(&reference).map_err(registry_error)?;
        Ok(Some(self.model_version(&resolved)))
    }

    fn fetch(&self, version: &ModelVersion, directory: &Path) -> gantry_deploy::Result<()> {
        let resolved = self.resolved(version)?;
        let report = gantry_registry::verify(self.registry, &resolved).map_err(registry_error)?;
        let problems = report.problems();
        if !problems.is_empty() {
            return Err(gantry_deploy::Error::Input(format!(
                "{}@{} failed verification, so it is not deployed: {}",
                version.name,
                version.version,
                problems.join("; ")
            )));
        }
        gantry_registry::pull(self.registry, &resolved, directory).map_err(|error| {
            gantry_deploy::Error::Input(format!(
                "pulling {}@{} into {}: {error}",
                version.name,
                version.version,
                directory.display()
            ))
        })?;
        Ok(())
    }

    fn promote(
        &self,
        version: &ModelVersion,
        alias: &str,
        expected: Option<&str>,
    ) -> gantry_deploy::Result<()> {
        let resolved = self.resolved(version)?;
        let expectation = match expected {
            None => Expectation::Absent,
            Some(digest) => Expectation::Digest(digest.parse().map_err(registry_error)?),
        };
        self.registry
            .move_alias(alias, &resolved, &expectation, &self.actor)
            .map_err(|error| {
                gantry_deploy::Error::Service(format!(
                    "promotion refused, nothing changed in the registry: {error}"
                ))
            })?;
        Ok(())
    }
}

/// Logs decisions and mirrors them on the forge's deployment.
struct CliObserver<'a> {
    printer: &'a Printer,
    session: &'a Session<'a>,
    forge: Option<ForgeClient>,
    environment: String,
    records: BTreeMap<String, u64>,
}

impl CliObserver<'_> {
    fn forge_key(&self) -> &'static str {
        match self.session.platform {
            Platform::GitLab => "gitlab",
            _ => "github",
        }
    }

    async fn set_state(
        &self,
        state: &RolloutState,
        deployment_state: DeploymentState,
        description: &str,
    ) {
        let Some(forge) = &self.forge else {
            return;
        };
        let Some(id) = state
            .deployments
            .get(self.forge_key())
            .or_else(|| self.records.get(self.forge_key()))
        else {
            return;
        };
        let record = DeploymentRecord { id: *id };
        if let Err(error) = forge
            .set_deployment_state(
                &record,
                deployment_state,
                description,
                self.session.context.run_url.as_deref(),
            )
            .await
        {
            self.printer
                .warning(&format!("the forge deployment was not updated: {error}"));
        }
    }

    async fn create(&mut self, state: &mut RolloutState) {
        let Some(forge) = &self.forge else {
            return;
        };
        let context = &self.session.context;
        if let Some(environment) = &context.job_environment {
            self.printer.info(&format!(
                "the job itself is GitLab's deployment to {environment}: no second one is created"
            ));
            return;
        }
        let Some(sha) = context.sha.clone() else {
            self.printer.warning(
                "the rollout is not recorded as a forge deployment: the run has no commit sha",
            );
            return;
        };
        let mut payload = serde_json::Map::new();
        payload.insert("model".to_owned(), state.model.clone().into());
        payload.insert("version".to_owned(), state.canary.version.clone().into());
        payload.insert("digest".to_owned(), state.canary.digest.clone().into());
        payload.insert("rollout".to_owned(), state.id.clone().into());
        let deployment = Deployment {
            environment: self.environment.clone(),
            git_ref: context.git_ref.clone().unwrap_or_else(|| sha.clone()),
            sha,
            description: format!(
                "{}@{} {}",
                state.model, state.canary.version, state.canary.digest
            ),
            production: self.environment == "production",
            payload,
        };
        match forge.create_deployment(&deployment).await {
            Ok(record) => {
                state
                    .deployments
                    .insert(self.forge_key().to_owned(), record.id);
                self.records.insert(self.forge_key().to_owned(), record.id);
            }
            Err(error) => self.printer.warning(&format!(
                "the rollout is not recorded as a forge deployment: {error}"
            )),
        }
    }
}

impl Observer for CliObserver<'_> {
    fn decided(&mut self, state: &mut RolloutState, decision: &Decision) {
        self.printer.info(&format!(
            "deploy-canary [step {} at {}%] {}: {}",
            decision.step + 1,
            decision.weight,
            decision.action,
            decision.reason
        ));
        if self.forge.is_none() {
            return;
        }
        let handle = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                if decision.action == "started" && !state.deployments.contains_key(self.forge_key())
                {
                    self.create(state).await;
                }
                let (ok, all) = state.step_windows();
                let (deployment_state, description) = match decision.action.as_str() {
                    "promote" if state.phase == Phase::Promoted => (
                        DeploymentState::Success,
                        format!("promoted: {}", decision.reason),
                    ),
                    "rollback" => (
                        DeploymentState::Failure,
                        format!("rolled back: {}", decision.reason),
                    ),
                    "abort" => (
                        DeploymentState::Inactive,
                        format!("aborted: {}", decision.reason),
                    ),
                    "pause" => (
                        DeploymentState::InProgress,
                        format!("paused: {}", decision.reason),
                    ),
                    "started" | "set-weight" | "window" | "advance" | "resume" => (
                        DeploymentState::InProgress,
                        format!("{}%, {ok} of {all} windows ok", state.weight),
                    ),
                    _ => return,
                };
                self.set_state(state, deployment_state, &description).await;
            });
        });
    }
}

fn outcome(
    args: &DeployCanaryArgs,
    state: &RolloutState,
    action: Action,
    session: &Session<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    // A pause step is a pause as asked; a pause on inconclusive data or
    // failing metric sources is not a pass.
    let paused_as_asked = state.steps.get(state.step_index) == Some(&Step::Pause);
    let verdict = match (state.phase, action) {
        (Phase::Promoted, _) => Verdict::Pass,
        (_, Action::Status) => Verdict::Warn,
        (Phase::RolledBack, _) => Verdict::Fail,
        (Phase::Paused, _) if !paused_as_asked => Verdict::Fail,
        _ => Verdict::Warn,
    };
    let report_path = args.out.join("report.md");
    let chart_path = args.out.join("timeline.svg");
    let result_path = args.out.join("rollout.json");
    let mut markdown = gantry_deploy::report::markdown(state);
    if !state.windows.is_empty() {
        markdown.push_str(&format!(
            "\nChart of weights and p95 latency: `{}` (in the job's artifacts).\n",
            chart_path.display()
        ));
    }
    let stable_version = match (state.phase, &state.stable) {
        (Phase::Promoted, _) => state.canary.version.clone(),
        (_, Some(stable)) => stable.version.clone(),
        (_, None) => String::new(),
    };
    printer.info(&format!(
        "deploy-canary: {} {}@{} (canary weight {}%){}",
        state.phase.outcome(),
        state.model,
        state.canary.version,
        state.weight,
        state
            .reason
            .as_deref()
            .map_or(String::new(), |reason| format!(": {reason}"))
    ));
    let outcome = Outcome::new(
        "deploy-canary",
        format!(
            "deploy-canary: {}@{} {}",
            state.model,
            state.canary.version,
            state.phase.outcome()
        ),
        verdict,
    )
    .publishing(&args.publishing)
    .markdown(markdown.clone())
    .text_file(&report_path, markdown)
    .text_file(&chart_path, gantry_deploy::report::timeline_svg(state))
    .json_file(&result_path, state)?
    .full_report(&report_path)
    .output(Output::RolloutOutcome, state.phase.outcome())
    .output(Output::FinalWeight, state.weight)
    .output(Output::StableVersion, stable_version)
    .output(Output::CanaryVersion, &state.canary.version)
    .path_output(Output::Report, &report_path)
    .output(Output::DeploymentId, &state.id)
    .body(state)?;
    publish(outcome, session, printer)
}
