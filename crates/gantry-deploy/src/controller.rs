//! `gantry deploy-canary`: the controller. It verifies the model, brings the
//! canary up beside stable, moves traffic step by step under a lease,
//! judges each window, and promotes (moving the alias with compare-and-swap)
//! or rolls back, writing every decision to the state file first.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use crate::analysis::{
    self, AnalysisConfig, CheckResult, Observed, Outcome, Provider, providers, stats,
};
use crate::api::{BackendSpec, RouterView, VERSION_HEADER, VersionMetrics, WeightsRequest};
use crate::error::{Error, Result, now_ms, rfc3339};
use crate::rollout::{
    Counters, Decision, Phase, RolloutLock, RolloutState, Step, Strategy, VersionRef, Window,
    WindowSide,
};
use crate::smoke::{Smoke, start_smoke};
use crate::target::Target;

/// Smoke requests sent to a new server before it is judged.
const WARM_UP_REQUESTS: usize = 5;

/// Whether a model version passed its evaluation gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateStatus {
    /// Its lineage records a passing gate.
    Passed,
    /// Its gate said this.
    Failed(String),
    /// No gate in its lineage.
    Missing,
}

/// A registered model version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelVersion {
    /// The model's name.
    pub name: String,
    /// The version.
    pub version: String,
    /// The manifest digest.
    pub digest: String,
    /// Its gate.
    pub gate: GateStatus,
}

/// The registry, as the controller needs it (the CLI wires a backend in).
pub trait Models: Send + Sync {
    /// Resolves `NAME@VERSION`, `NAME@ALIAS` or `NAME@sha256:…`.
    fn resolve(&self, reference: &str) -> Result<ModelVersion>;
    /// Where `alias` of `name` points, if it exists.
    fn alias(&self, name: &str, alias: &str) -> Result<Option<ModelVersion>>;
    /// Pulls the version into `directory` and verifies every file digest,
    /// the manifest's identity and its lineage chain.
    fn fetch(&self, version: &ModelVersion, directory: &Path) -> Result<()>;
    /// Points `alias` at `version` if it still points at `expected` (absent: unset).
    fn promote(&self, version: &ModelVersion, alias: &str, expected: Option<&str>) -> Result<()>;
}

/// Hears every decision as it is made (the CLI logs it and updates the
/// forge's deployment).
pub trait Observer: Send {
    /// A decision was made; the state is saved after this returns, so an
    /// observer may record what it created (a forge deployment's id in
    /// `state.deployments`).
    fn decided(&mut self, state: &mut RolloutState, decision: &Decision);
}

/// What `--action` asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start a rollout (or continue the same one).
    Start,
    /// Continue from the saved step.
    Resume,
    /// Approve the current (pause or inconclusive) step and continue.
    Promote,
    /// Return all traffic to stable and stop the canary.
    Abort,
    /// Abort because the CI job was cancelled (SIGTERM or SIGINT).
    Cancelled,
    /// Report the saved state; change nothing.
    Status,
}

/// Everything a rollout needs besides the target and the registry.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// `--model`.
    pub model: String,
    /// `--stable-alias`.
    pub stable_alias: String,
    /// `--strategy`.
    pub strategy: Strategy,
    /// `--steps`.
    pub steps: Vec<Step>,
    /// `--step-duration`: one analysis window.
    pub step_duration: Duration,
    /// `--min-requests` per version per window.
    pub min_requests: u64,
    /// `--analysis`.
    pub analysis: AnalysisConfig,
    /// `--lease`.
    pub lease: Duration,
    /// `--smoke-traffic` and `--smoke-rps`.
    pub smoke: Option<Smoke>,
    /// `--serve-command`.
    pub serve_command: Option<String>,
    /// Where versions are pulled.
    pub models_dir: PathBuf,
    /// `--state-file`.
    pub state_file: PathBuf,
    /// `--allow-ungated`.
    pub allow_ungated: bool,
    /// How long a model server may take to become healthy.
    pub health_timeout: Option<u64>,
    /// Versions run on this host (the router): pulled and verified here
    /// first. On a cluster they are pulled and verified where they run.
    pub pull_locally: bool,
}

impl ControllerOptions {
    /// The checks each window is judged by: the analysis file's (or the
    /// defaults), plus the smoke-quality check when answers are scored and
    /// the file names none.
    pub fn checks(&self) -> Vec<analysis::Check> {
        let mut checks = self.analysis.checks();
        let scored = self
            .smoke
            .as_ref()
            .is_some_and(|smoke| smoke.scorer.is_some());
        if scored
            && !checks
                .iter()
                .any(|check| check.provider == Provider::SmokeQuality)
        {
            checks.push(analysis::default_quality_check());
        }
        checks
    }

    /// Checks that what the checks need was given.
    pub fn validate(&self) -> Result<()> {
        let scored = self
            .smoke
            .as_ref()
            .is_some_and(|smoke| smoke.scorer.is_some());
        if let Some(check) = self
            .checks()
            .iter()
            .find(|check| check.provider == Provider::SmokeQuality)
            && !scored
        {
            return Err(Error::Input(format!(
                "the check {} scores smoke answers: give --smoke-traffic and --smoke-scorer",
                check.name
            )));
        }
        Ok(())
    }
}

/// Drives one rollout.
pub struct Controller<'a, T: Target> {
    target: &'a T,
    models: &'a dyn Models,
    observer: &'a mut dyn Observer,
    options: &'a ControllerOptions,
    http: reqwest::Client,
}

fn block<R>(work: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(work)
}

impl<'a, T: Target> Controller<'a, T> {
    /// A controller of `target` with models from `models`.
    pub fn new(
        target: &'a T,
        models: &'a dyn Models,
        observer: &'a mut dyn Observer,
        options: &'a ControllerOptions,
    ) -> Result<Controller<'a, T>> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(|error| Error::Service(format!("cannot build an HTTP client: {error}")))?;
        Ok(Controller {
            target,
            models,
            observer,
            options,
            http,
        })
    }

    /// Does what `action` asks; returns the final state.
    pub async fn run(&mut self, action: Action) -> Result<RolloutState> {
        let state_file = &self.options.state_file;
        if action == Action::Status {
            return RolloutState::load(state_file)?.ok_or_else(|| {
                Error::Input(format!("no rollout state in {}", state_file.display()))
            });
        }
        let _lock = RolloutLock::acquire(state_file)?;
        let existing = RolloutState::load(state_file)?;
        match action {
            Action::Start => self.start(existing).await,
            Action::Resume | Action::Promote | Action::Abort | Action::Cancelled => {
                let Some(mut state) = existing.filter(|state| state.phase.open()) else {
                    return Err(Error::Input(format!(
                        "no rollout in progress in {} to {}; start one with --action start",
                        state_file.display(),
                        match action {
                            Action::Resume => "resume",
                            Action::Promote => "promote",
                            Action::Cancelled => "abort after the cancel",
                            _ => "abort",
                        }
                    )));
                };
                match action {
                    Action::Abort | Action::Cancelled => {
                        let reason = if action == Action::Cancelled {
                            "aborted: the job was cancelled (SIGTERM or SIGINT) mid-rollout"
                        } else {
                            "aborted on request (--action abort)"
                        };
                        self.end(&mut state, Phase::Aborted, reason.to_owned())
                            .await?;
                        Ok(state)
                    }
                    Action::Promote => {
                        let reason = match state.steps.get(state.step_index) {
                            Some(Step::Pause) => "a person promoted past the pause step",
                            _ => "a person approved the current step (--action promote)",
                        };
                        state.step_index += 1;
                        state.phase = Phase::Progressing;
                        state.reason = None;
                        state.counters = Counters {
                            failures: state.counters.failures,
                            ..Counters::default()
                        };
                        self.decide(&mut state, "promote", reason.to_owned())?;
                        self.reconcile(&mut state).await?;
                        self.steps(&mut state).await?;
                        Ok(state)
                    }
                    _ => {
                        if state.steps.get(state.step_index) == Some(&Step::Pause)
                            && state.phase == Phase::Paused
                        {
                            self.decide(
                                &mut state,
                                "hold",
                                "resume asked, but this is a pause step: it waits for --action promote".to_owned(),
                            )?;
                            return Ok(state);
                        }
                        state.phase = Phase::Progressing;
                        state.reason = None;
                        state.counters.consecutive_errors = 0;
                        state.counters.consecutive_inconclusive = 0;
                        let reason = format!("resumed at step {}", state.step_index + 1);
                        self.decide(&mut state, "resume", reason)?;
                        self.reconcile(&mut state).await?;
                        self.steps(&mut state).await?;
                        Ok(state)
                    }
                }
            }
            Action::Status => unreachable_status(),
        }
    }

    async fn start(&mut self, existing: Option<RolloutState>) -> Result<RolloutState> {
        let options = self.options;
        let canary = block(|| self.models.resolve(&options.model))?;
        gate_allows(&canary, options.allow_ungated)?;
        if let Some(state) = existing.filter(|state| state.phase.open()) {
            if state.canary.digest == canary.digest {
                let mut state = state;
                self.decide(
                    &mut state,
                    "resume",
                    "start asked again for the version being rolled out".to_owned(),
                )?;
                state.phase = Phase::Progressing;
                self.reconcile(&mut state).await?;
                self.steps(&mut state).await?;
                return Ok(state);
            }
            return Err(Error::Input(format!(
                "a rollout of {}@{} is {} in {}; finish it first with --action resume, promote or abort",
                state.model,
                state.canary.version,
                state.phase.outcome(),
                options.state_file.display()
            )));
        }
        let stable = block(|| self.models.alias(&canary.name, &options.stable_alias))?;
        let canary_dir = self.model_dir(&canary);
        let mut state = RolloutState::begin(
            &canary.name,
            VersionRef {
                version: canary.version.clone(),
                digest: canary.digest.clone(),
                model_dir: Some(canary_dir.clone()),
            },
            stable.as_ref().map(|stable| VersionRef {
                version: stable.version.clone(),
                digest: stable.digest.clone(),
                model_dir: Some(self.model_dir(stable)),
            }),
            self.target.describe(),
            &options.stable_alias,
            options.strategy,
            match options.strategy {
                Strategy::Canary => options.steps.clone(),
                Strategy::BlueGreen => vec![Step::Weight(100)],
            },
        );
        if stable
            .as_ref()
            .is_some_and(|stable| stable.digest == canary.digest)
        {
            state.phase = Phase::Promoted;
            state.weight = 100;
            self.decide(
                &mut state,
                "promote",
                format!(
                    "{}@{} is already {} ({}): nothing to roll out",
                    canary.name, canary.version, options.stable_alias, canary.digest
                ),
            )?;
            return Ok(state);
        }
        if options.serve_command.is_none() && options.pull_locally {
            return Err(Error::Input(
                "--serve-command is needed to start a version (e.g. \"vllm serve {model_dir} --port {port}\")".to_owned(),
            ));
        }
        // Verified before the rollout exists: a model that fails leaves no state behind.
        if options.pull_locally {
            block(|| self.models.fetch(&canary, &canary_dir))?;
        }
        self.router_is_free(&state.id).await?;
        self.decide(
            &mut state,
            "started",
            match &stable {
                Some(stable) => format!(
                    "rolling out {}@{} ({}) beside stable {} ({}) with {}",
                    canary.name,
                    canary.version,
                    canary.digest,
                    stable.version,
                    stable.digest,
                    self.target.describe()
                ),
                None => format!(
                    "first deploy of {}@{} ({}): no {} alias yet",
                    canary.name, canary.version, canary.digest, options.stable_alias
                ),
            },
        )?;
        self.decide(
            &mut state,
            "verified",
            if options.pull_locally {
                format!(
                    "pulled into {} and verified: file digests, manifest identity, lineage",
                    canary_dir.display()
                )
            } else {
                format!(
                    "resolved {} in the registry; pulled by digest and verified where it runs",
                    canary.digest
                )
            },
        )?;
        let moved = self.roll_out(&mut state, stable.as_ref(), &canary).await;
        match moved {
            // Refused before any traffic reached the canary (a route that
            // does not carry stable, a field another manager owns, a verb
            // RBAC does not allow): stop the canary, so nothing is left
            // running half-applied. A service that did not answer leaves
            // the rollout open, for --action resume.
            Err(error)
                if state.weight == 0
                    && state.phase == Phase::Progressing
                    && matches!(error, Error::Input(_) | Error::Conflict(_)) =>
            {
                let stopped = self.target.retire(&state.canary.version).await;
                state.phase = Phase::RolledBack;
                state.reason = Some(error.to_string());
                let note = match stopped {
                    Ok(()) => "the canary was stopped; stable was not touched".to_owned(),
                    Err(stop) => format!("stopping the canary failed too: {stop}"),
                };
                self.decide(&mut state, "rollback", format!("{error}; {note}"))?;
                Err(error)
            }
            Err(error) => Err(error),
            Ok(()) => Ok(state),
        }
    }

    async fn roll_out(
        &mut self,
        state: &mut RolloutState,
        stable: Option<&ModelVersion>,
        canary: &ModelVersion,
    ) -> Result<()> {
        if let Some(stable) = stable {
            self.ensure_stable(state, stable).await?;
        }
        if !self.bring_up_canary(state).await? {
            return Ok(());
        }
        if stable.is_none() {
            self.first_deploy(state, canary).await
        } else {
            self.steps(state).await
        }
    }

    fn model_dir(&self, version: &ModelVersion) -> PathBuf {
        self.options
            .models_dir
            .join(&version.name)
            .join(&version.version)
    }

    fn spec(&self, version: &VersionRef) -> BackendSpec {
        BackendSpec {
            version: version.version.clone(),
            digest: Some(version.digest.clone()),
            model_dir: version.model_dir.clone(),
            serve_command: self.options.serve_command.clone(),
            url: None,
            health_timeout_seconds: self.options.health_timeout,
        }
    }

    /// Makes sure the stable version is up on the target (a fresh router).
    async fn ensure_stable(
        &mut self,
        state: &mut RolloutState,
        stable: &ModelVersion,
    ) -> Result<()> {
        let view = self.target.observe().await?;
        if view.backend(&stable.version).is_some() {
            return Ok(());
        }
        let dir = self.model_dir(stable);
        if self.options.pull_locally {
            block(|| self.models.fetch(stable, &dir))?;
        }
        let Some(stable_ref) = state.stable.clone() else {
            return Ok(());
        };
        self.target.bring_up(&self.spec(&stable_ref)).await?;
        self.decide(
            state,
            "reconcile",
            format!(
                "stable {} was not running on the target: started it",
                stable.version
            ),
        )?;
        self.target
            .set_weights(&WeightsRequest::all_to(&stable.version))
            .await?;
        Ok(())
    }

    /// Starts the canary; on a server that will not come up, rolls back
    /// (with its last log lines) and answers false.
    async fn bring_up_canary(&mut self, state: &mut RolloutState) -> Result<bool> {
        let spec = self.spec(&state.canary);
        match self.target.bring_up(&spec).await {
            Ok(()) => {
                let warmed = self.warm_up(&state.canary.version).await;
                let note = if warmed > 0 {
                    format!("; warmed up with {warmed} smoke requests (not judged)")
                } else {
                    String::new()
                };
                let reason = format!("canary {} is healthy{note}", state.canary.version);
                self.decide(state, "bring-up", reason)?;
                Ok(true)
            }
            Err(Error::Backend { message, log_tail }) => {
                state.log_tail = log_tail;
                self.end(state, Phase::RolledBack, message).await?;
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Sends a few smoke requests straight to a new server, so that its
    /// first (cold) requests are not what the first window judges.
    async fn warm_up(&self, version: &str) -> usize {
        let (Some(smoke), Ok(view)) = (&self.options.smoke, self.target.observe().await) else {
            return 0;
        };
        let mut sent = 0;
        for request in smoke.requests.iter().cycle().take(WARM_UP_REQUESTS) {
            let answered = self
                .http
                .post(format!("{}{}", view.listen, request.path))
                .header(VERSION_HEADER, version)
                .json(&request.body)
                .timeout(Duration::from_secs(60))
                .send()
                .await;
            if let Ok(response) = answered {
                let _ = response.bytes().await;
                sent += 1;
            }
        }
        sent
    }

    /// Reconciles the target with the saved state after a restart: both
    /// versions running, the router's weights as they really are.
    /// Refuses when another rollout holds a live lease on the target's
    /// weights (a controller with another state file on the same router).
    async fn router_is_free(&self, id: &str) -> Result<()> {
        let view = self.target.observe().await?;
        match view.lease {
            Some(lease) if lease.holder != id && lease.expires_at_ms > now_ms() => {
                Err(Error::Busy(format!(
                    "{} already has a canary weight held by rollout {} until {}; wait for it, or abort it with its own --state-file",
                    self.target.describe(),
                    lease.holder,
                    rfc3339(lease.expires_at_ms)
                )))
            }
            _ => Ok(()),
        }
    }

    async fn reconcile(&mut self, state: &mut RolloutState) -> Result<()> {
        self.router_is_free(&state.id).await?;
        let view = self.target.observe().await?;
        if let Some(stable) = state.stable.clone()
            && view.backend(&stable.version).is_none()
        {
            self.target.bring_up(&self.spec(&stable)).await?;
            self.decide(
                state,
                "reconcile",
                format!("stable {} was not running: started it", stable.version),
            )?;
        }
        if view.backend(&state.canary.version).is_none() && !self.bring_up_canary(state).await? {
            return Ok(());
        }
        let observed = view.weight_of(&state.canary.version);
        if observed != state.weight {
            let why = view.reverted_note();
            self.decide(
                state,
                "reconcile",
                format!(
                    "the target sends {observed}% to the canary, the state said {}%{why}",
                    state.weight
                ),
            )?;
            state.weight = observed;
        }
        Ok(())
    }

    async fn first_deploy(
        &mut self,
        state: &mut RolloutState,
        canary: &ModelVersion,
    ) -> Result<()> {
        let version = state.canary.version.clone();
        self.apply(state, 100, &version).await?;
        if self.options.smoke.is_some() {
            let window = self.window(state, true).await?;
            let outcome = window.outcome;
            if outcome != Outcome::Success {
                let reason = format!(
                    "the first deploy's smoke check came out {outcome:?}: {}",
                    summary_of(&window.checks)
                );
                self.end(state, Phase::RolledBack, reason).await?;
                return Ok(());
            }
        } else {
            self.decide(
                state,
                "window",
                "no --smoke-traffic: the first deploy is checked by its health checks only"
                    .to_owned(),
            )?;
        }
        block(|| {
            self.models
                .promote(canary, &self.options.stable_alias, None)
        })?;
        state.phase = Phase::Promoted;
        self.decide(
            state,
            "promote",
            format!(
                "{} is stable at 100% and {} points at it",
                version, self.options.stable_alias
            ),
        )?;
        Ok(())
    }

    /// Runs the steps from the saved index until promoted, paused or rolled back.
    async fn steps(&mut self, state: &mut RolloutState) -> Result<()> {
        let analysis = &self.options.analysis;
        while state.phase == Phase::Progressing {
            let Some(step) = state.steps.get(state.step_index).copied() else {
                return self.promote(state).await;
            };
            let weight = match step {
                Step::Pause => {
                    self.pause(state, "pause step: waiting for --action promote".to_owned())
                        .await?;
                    return Ok(());
                }
                Step::Weight(weight) => weight,
            };
            if state.strategy == Strategy::BlueGreen
                && state.weight == 0
                && self.options.smoke.is_some()
                && !state.windows.iter().any(|window| window.weight == 0)
            {
                // Preview: smoke traffic pinned to the new version, no users.
                let window = self.window(state, true).await?;
                if window.outcome != Outcome::Success {
                    let reason = format!(
                        "the preview came out {:?}: {}",
                        window.outcome,
                        summary_of(&window.checks)
                    );
                    self.end(state, Phase::RolledBack, reason).await?;
                    return Ok(());
                }
            }
            let stable = state
                .stable
                .as_ref()
                .map(|stable| stable.version.clone())
                .unwrap_or_default();
            if state.weight != weight || self.lease_expired(state) {
                self.apply(state, weight, &stable).await?;
            }
            let window = self.window(state, false).await?;
            let counters = &mut state.counters;
            let decision: (&str, String) = match window.outcome {
                Outcome::Success => {
                    counters.consecutive_successes += 1;
                    counters.consecutive_errors = 0;
                    counters.consecutive_inconclusive = 0;
                    if counters.consecutive_successes >= analysis.consecutive_successes {
                        counters.consecutive_successes = 0;
                        state.step_index += 1;
                        (
                            "advance",
                            format!("step at {weight}% passed: {}", summary_of(&window.checks)),
                        )
                    } else {
                        (
                            "hold",
                            format!(
                                "window passed ({} of {} in a row needed)",
                                counters.consecutive_successes, analysis.consecutive_successes
                            ),
                        )
                    }
                }
                Outcome::Failure => {
                    counters.failures += 1;
                    counters.consecutive_successes = 0;
                    if counters.failures > analysis.failure_limit {
                        let reason = format!(
                            "at {weight}%: {} (failed windows {} > failure-limit {})",
                            failures_of(&window.checks),
                            counters.failures,
                            analysis.failure_limit
                        );
                        self.end(state, Phase::RolledBack, reason).await?;
                        return Ok(());
                    }
                    (
                        "hold",
                        format!(
                            "window failed ({} of {} tolerated): {}",
                            counters.failures,
                            analysis.failure_limit,
                            failures_of(&window.checks)
                        ),
                    )
                }
                Outcome::Error => {
                    counters.consecutive_errors += 1;
                    if counters.consecutive_errors > analysis.consecutive_error_limit {
                        let reason = format!(
                            "metric source errors in {} windows in a row (limit {}): {}",
                            counters.consecutive_errors,
                            analysis.consecutive_error_limit,
                            errors_of(&window.checks)
                        );
                        match analysis.on_error {
                            analysis::OnError::Rollback => {
                                self.end(state, Phase::RolledBack, reason).await?
                            }
                            analysis::OnError::Pause => self.pause(state, reason).await?,
                        }
                        return Ok(());
                    }
                    (
                        "hold",
                        format!(
                            "holding {weight}%: metric source error {} of {} tolerated: {}",
                            counters.consecutive_errors,
                            analysis.consecutive_error_limit,
                            errors_of(&window.checks)
                        ),
                    )
                }
                Outcome::Inconclusive | Outcome::Skipped => {
                    counters.consecutive_inconclusive += 1;
                    counters.consecutive_successes = 0;
                    if counters.consecutive_inconclusive >= analysis.inconclusive_limit {
                        let reason = format!(
                            "{} inconclusive windows in a row at {weight}% ({}); never promoted on too little data",
                            counters.consecutive_inconclusive,
                            summary_of(&window.checks)
                        );
                        self.pause(state, reason).await?;
                        return Ok(());
                    }
                    (
                        "hold",
                        format!("window inconclusive: {}", summary_of(&window.checks)),
                    )
                }
            };
            self.decide(state, decision.0, decision.1)?;
        }
        Ok(())
    }

    fn lease_expired(&self, state: &RolloutState) -> bool {
        state
            .lease_expires_ms
            .is_none_or(|expires| expires <= now_ms())
    }

    /// Sets the canary's weight (stable gets the rest) under a lease.
    async fn apply(
        &mut self,
        state: &mut RolloutState,
        weight: u32,
        stable: &str,
    ) -> Result<RouterView> {
        let canary = state.canary.version.clone();
        let (weights, stable_version, lease) = if stable.is_empty() || stable == canary {
            (
                BTreeMap::from([(canary.clone(), 100)]),
                canary.clone(),
                None,
            )
        } else if weight >= 100 {
            (
                BTreeMap::from([(canary.clone(), 100), (stable.to_owned(), 0)]),
                stable.to_owned(),
                Some(self.options.lease),
            )
        } else {
            (
                BTreeMap::from([(canary.clone(), weight), (stable.to_owned(), 100 - weight)]),
                stable.to_owned(),
                Some(self.options.lease),
            )
        };
        let view = self
            .target
            .set_weights(&WeightsRequest {
                weights,
                stable: stable_version,
                lease_seconds: lease.map(|lease| lease.as_secs().max(1)),
                holder: Some(state.id.clone()),
            })
            .await?;
        state.lease_expires_ms = view.lease.as_ref().map(|lease| lease.expires_at_ms);
        if state.weight != weight {
            state.weight = weight;
            self.decide(
                state,
                "set-weight",
                format!(
                    "canary {} at {weight}%{}",
                    canary,
                    state
                        .lease_expires_ms
                        .map_or(String::new(), |expires| format!(
                            ", lease until {}",
                            rfc3339(expires)
                        ))
                ),
            )?;
        } else {
            state.save(&self.options.state_file)?;
        }
        Ok(view)
    }

    /// Holds the current weight for one window (renewing the lease and
    /// sending smoke traffic), then judges it.
    async fn window(&mut self, state: &mut RolloutState, pinned: bool) -> Result<Window> {
        let started_ms = now_ms();
        let view = self.target.observe().await?;
        let smoke = self.options.smoke.clone().map(|smoke| {
            let pin = pinned.then(|| state.canary.version.clone());
            start_smoke(self.http.clone(), view.listen.clone(), smoke, pin)
        });
        let deadline = tokio::time::Instant::now() + self.options.step_duration;
        let renew_every = (self.options.lease / 3).max(Duration::from_millis(500));
        let mut drift = None;
        loop {
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            tokio::time::sleep((deadline - now).min(renew_every)).await;
            if state.lease_expires_ms.is_some() && !pinned {
                let view = self.target.observe().await?;
                let observed = view.weight_of(&state.canary.version);
                if observed != state.weight {
                    drift = Some(format!(
                        "the target's canary weight changed to {observed}% during the window{}",
                        view.reverted_note()
                    ));
                }
                let stable = state
                    .stable
                    .as_ref()
                    .map(|stable| stable.version.clone())
                    .unwrap_or_default();
                let weight = state.weight;
                self.apply(state, weight, &stable).await?;
            }
        }
        let mut scores = BTreeMap::new();
        if let Some((stop, task)) = smoke {
            let _ = stop.send(true);
            if let Ok(scored) = task.await {
                scores = scored;
            }
        }
        let ended_ms = now_ms();
        let mut window = self
            .judge(state, started_ms, ended_ms, pinned, &scores)
            .await;
        if let Some(drift) = drift {
            window.outcome = Outcome::Error;
            window.checks.push(CheckResult {
                name: "weights".to_owned(),
                outcome: Outcome::Error,
                canary: None,
                stable: None,
                p_value: None,
                reason: drift,
            });
        }
        state.windows.push(window.clone());
        let (ok, all) = state.step_windows();
        self.decide(
            state,
            "window",
            format!(
                "{:?} at {}% ({ok} of {all} windows ok at this step): {}",
                window.outcome,
                window.weight,
                summary_of(&window.checks)
            ),
        )?;
        Ok(window)
    }

    async fn judge(
        &self,
        state: &RolloutState,
        started_ms: u64,
        ended_ms: u64,
        pinned: bool,
        scores: &BTreeMap<String, Vec<f64>>,
    ) -> Window {
        let canary = self.target.metrics(&state.canary.version, started_ms).await;
        let stable = match &state.stable {
            Some(stable) if !pinned && state.weight < 100 => {
                Some(self.target.metrics(&stable.version, started_ms).await)
            }
            _ => None,
        };
        let router_error = match (&canary, &stable) {
            (Err(error), _) | (_, Some(Err(error))) => Some(error.to_string()),
            _ => None,
        };
        let observed = Observed {
            canary: canary.as_ref().ok().cloned(),
            stable: stable
                .as_ref()
                .and_then(|stable| stable.as_ref().ok().cloned()),
        };
        let min_requests = self
            .options
            .analysis
            .min_requests
            .unwrap_or(self.options.min_requests);
        let window_seconds = (ended_ms.saturating_sub(started_ms) / 1000).max(1);
        let mut checks = Vec::new();
        for check in self.options.checks() {
            let result = match check.provider {
                Provider::Router => match &router_error {
                    Some(error) => CheckResult {
                        name: check.name.clone(),
                        outcome: Outcome::Error,
                        canary: None,
                        stable: None,
                        p_value: None,
                        reason: format!("cannot read the router's metrics: {error}"),
                    },
                    None => analysis::judge_router(&check, &observed, min_requests),
                },
                Provider::Prometheus => {
                    // Stable is asked too for a relative judge, while it takes traffic.
                    let stable = state
                        .stable
                        .as_ref()
                        .filter(|_| check.max_increase.is_some() && !pinned && state.weight < 100)
                        .map(|stable| stable.version.as_str());
                    providers::prometheus_check(
                        &self.http,
                        self.options.analysis.prometheus.as_ref(),
                        &check,
                        &state.canary.version,
                        stable,
                        window_seconds,
                    )
                    .await
                }
                Provider::Http => {
                    providers::http_check(&self.http, &check, &state.canary.version).await
                }
                Provider::SmokeQuality => {
                    let stable = match &state.stable {
                        Some(stable) if !pinned && state.weight < 100 => {
                            scores.get(&stable.version).map(Vec::as_slice)
                        }
                        _ => None,
                    };
                    let canary = scores
                        .get(&state.canary.version)
                        .map_or(&[][..], Vec::as_slice);
                    analysis::judge_quality(&check, canary, stable)
                }
            };
            checks.push(result);
        }
        let outcome = analysis::combine(&checks);
        Window {
            step: state.step_index,
            weight: if pinned { 0 } else { state.weight },
            started_ms,
            ended_ms,
            outcome,
            checks,
            canary: side(observed.canary.as_ref()),
            stable: observed.stable.as_ref().map(|stable| side(Some(stable))),
        }
    }

    async fn pause(&mut self, state: &mut RolloutState, reason: String) -> Result<()> {
        if let Some(stable) = state.stable.clone() {
            self.target
                .set_weights(&WeightsRequest::all_to(&stable.version))
                .await?;
            state.weight = 0;
            state.lease_expires_ms = None;
        }
        state.phase = Phase::Paused;
        state.reason = Some(reason.clone());
        self.decide(
            state,
            "pause",
            format!("{reason}; traffic is on stable, the canary keeps running"),
        )
    }

    /// Ends the rollout without promoting: traffic to stable, canary stopped.
    async fn end(&mut self, state: &mut RolloutState, phase: Phase, reason: String) -> Result<()> {
        if let Some(stable) = state.stable.clone() {
            self.target
                .set_weights(&WeightsRequest::all_to(&stable.version))
                .await?;
        }
        state.weight = 0;
        state.lease_expires_ms = None;
        let retired = self.target.retire(&state.canary.version).await;
        state.phase = phase;
        state.reason = Some(reason.clone());
        let action = if phase == Phase::Aborted {
            "abort"
        } else {
            "rollback"
        };
        let note = match retired {
            Ok(()) => String::new(),
            Err(error) => format!(" (stopping the canary failed: {error})"),
        };
        let traffic = if state.stable.is_some() {
            "all traffic on stable"
        } else {
            "a first deploy: no stable version to return to"
        };
        self.decide(state, action, format!("{reason}; {traffic}{note}"))
    }

    async fn promote(&mut self, state: &mut RolloutState) -> Result<()> {
        let canary = ModelVersion {
            name: state.model.clone(),
            version: state.canary.version.clone(),
            digest: state.canary.digest.clone(),
            gate: GateStatus::Passed,
        };
        let expected = state.stable.as_ref().map(|stable| stable.digest.clone());
        block(|| {
            self.models
                .promote(&canary, &state.stable_alias, expected.as_deref())
        })?;
        let version = state.canary.version.clone();
        self.target
            .set_weights(&WeightsRequest::all_to(&version))
            .await?;
        state.weight = 100;
        state.lease_expires_ms = None;
        if let Some(old) = state.stable.clone()
            && let Err(error) = self.target.retire(&old.version).await
        {
            self.decide(
                state,
                "retire",
                format!("stopping the old stable {} failed: {error}", old.version),
            )?;
        }
        state.phase = Phase::Promoted;
        self.decide(
            state,
            "promote",
            format!(
                "{} is stable at 100%; {} moved from {} to {}",
                version,
                state.stable_alias,
                expected.as_deref().unwrap_or("unset"),
                state.canary.digest
            ),
        )
    }

    /// Records a decision, saves the state, tells the observer.
    fn decide(&mut self, state: &mut RolloutState, action: &str, reason: String) -> Result<()> {
        record(
            self.observer,
            state,
            action,
            reason,
            &self.options.state_file,
        )
    }
}

/// Records a decision in `state`, tells `observer`, then saves the state
/// (so what the observer noted, a forge deployment's id, is saved with it).
pub(crate) fn record(
    observer: &mut dyn Observer,
    state: &mut RolloutState,
    action: &str,
    reason: String,
    state_file: &Path,
) -> Result<()> {
    let decision = Decision {
        at: rfc3339(now_ms()),
        step: state.step_index,
        weight: state.weight,
        action: action.to_owned(),
        reason,
    };
    state.decisions.push(decision.clone());
    observer.decided(state, &decision);
    state.save(state_file)
}

/// Refuses a version whose lineage has no passing gate, unless allowed.
pub fn gate_allows(canary: &ModelVersion, allow_ungated: bool) -> Result<()> {
    match &canary.gate {
        GateStatus::Failed(verdict) if !allow_ungated => Err(Error::Input(format!(
            "{}@{} ({}) failed its evaluation gate (verdict {verdict}); deploy a version that passed, or pass --allow-ungated",
            canary.name, canary.version, canary.digest
        ))),
        GateStatus::Missing if !allow_ungated => Err(Error::Input(format!(
            "{}@{} ({}) has no evaluation gate in its lineage; register it with --gate-report, or pass --allow-ungated",
            canary.name, canary.version, canary.digest
        ))),
        _ => Ok(()),
    }
}

fn unreachable_status() -> Result<RolloutState> {
    Err(Error::Service(
        "status is answered before the lock".to_owned(),
    ))
}

fn side(metrics: Option<&VersionMetrics>) -> WindowSide {
    let Some(metrics) = metrics else {
        return WindowSide::default();
    };
    WindowSide {
        requests: metrics.requests,
        errors: metrics.errors(),
        latency_p95_ms: stats::quantile(&metrics.latency_ms, 0.95),
        ttft_p95_ms: stats::quantile(&metrics.ttft_ms, 0.95),
    }
}

fn summary_of(checks: &[CheckResult]) -> String {
    checks
        .iter()
        .filter(|check| check.outcome != Outcome::Skipped)
        .map(|check| format!("{}: {}", check.name, check.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

fn failures_of(checks: &[CheckResult]) -> String {
    of_outcome(checks, Outcome::Failure)
}

fn errors_of(checks: &[CheckResult]) -> String {
    of_outcome(checks, Outcome::Error)
}

fn of_outcome(checks: &[CheckResult], outcome: Outcome) -> String {
    checks
        .iter()
        .filter(|check| check.outcome == outcome)
        .map(|check| format!("{}: {}", check.name, check.reason))
        .collect::<Vec<_>>()
        .join("; ")
}
