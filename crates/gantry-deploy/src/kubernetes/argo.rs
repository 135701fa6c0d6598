//! `--k8s-engine argo-rollouts`: Argo Rollouts steps the traffic and runs
//! its AnalysisRuns; gantry sets the model on the user's `Rollout`, follows
//! its status (a watch), mirrors every step to the state file, the forge
//! deployment and the summary, and moves the registry alias only when the
//! Rollout is healthy on the new model.

use std::time::Duration;

use serde_json::Value;

use crate::analysis::{CheckResult, Outcome};
use crate::controller::{Action, ModelVersion, Models, Observer, gate_allows};
use crate::error::{Error, Result, now_ms};
use crate::kubernetes::cluster::{Cluster, Kind, check_name};
use crate::kubernetes::{keys, render};
use crate::rollout::{
    Phase, RolloutLock, RolloutState, Step, Strategy, VersionRef, Window, WindowSide,
};

/// What following a Rollout needs.
#[derive(Debug, Clone)]
pub struct ArgoOptions {
    /// `--model`.
    pub model: String,
    /// `--stable-alias`.
    pub stable_alias: String,
    /// `--argo-rollout`: the user's Rollout.
    pub rollout: String,
    /// `--state-file`.
    pub state_file: std::path::PathBuf,
    /// `--allow-ungated`.
    pub allow_ungated: bool,
    /// `--k8s-force-conflicts`.
    pub force_conflicts: bool,
    /// The longest one watch waits before reading the Rollout again.
    pub poll: Duration,
}

/// Follows one Rollout for `action`; returns the final state.
pub async fn follow(
    cluster: &Cluster,
    models: &dyn Models,
    observer: &mut dyn Observer,
    options: &ArgoOptions,
    action: Action,
) -> Result<RolloutState> {
    check_name("--argo-rollout", &options.rollout)?;
    let state_file = &options.state_file;
    if action == Action::Status {
        return RolloutState::load(state_file)?
            .ok_or_else(|| Error::Input(format!("no rollout state in {}", state_file.display())));
    }
    let _lock = RolloutLock::acquire(state_file)?;
    let existing = RolloutState::load(state_file)?;
    let mut follower = Follower {
        cluster,
        models,
        observer,
        options,
        seen: Seen::default(),
    };
    match action {
        Action::Start => follower.start(existing).await,
        _ => {
            let Some(mut state) = existing.filter(|state| state.phase.open()) else {
                return Err(Error::Input(format!(
                    "no rollout in progress in {}; start one with --action start",
                    state_file.display()
                )));
            };
            match action {
                Action::Promote => {
                    let (spec, status) = render::rollout_promote();
                    cluster
                        .merge_patch(Kind::ROLLOUT, &options.rollout, &spec, false)
                        .await?;
                    cluster
                        .merge_patch(Kind::ROLLOUT, &options.rollout, &status, true)
                        .await?;
                    state.phase = Phase::Progressing;
                    state.reason = None;
                    follower.decide(
                        &mut state,
                        "promote",
                        "a person promoted the Rollout past its pause (--action promote)"
                            .to_owned(),
                    )?;
                }
                Action::Abort | Action::Cancelled => {
                    cluster
                        .merge_patch(
                            Kind::ROLLOUT,
                            &options.rollout,
                            &render::rollout_abort(),
                            true,
                        )
                        .await?;
                    let reason = if action == Action::Cancelled {
                        "aborted: the job was cancelled (SIGTERM or SIGINT) mid-rollout"
                    } else {
                        "aborted on request (--action abort)"
                    };
                    state.phase = Phase::Aborted;
                    state.reason = Some(reason.to_owned());
                    state.weight = 0;
                    follower.decide(
                        &mut state,
                        "abort",
                        format!(
                            "{reason}; Argo Rollouts returns all traffic to the stable ReplicaSet"
                        ),
                    )?;
                    return Ok(state);
                }
                _ => {
                    state.phase = Phase::Progressing;
                    follower.decide(
                        &mut state,
                        "resume",
                        format!("following Rollout {} again", options.rollout),
                    )?;
                }
            }
            follower.follow(&mut state).await?;
            Ok(state)
        }
    }
}

#[derive(Default)]
struct Seen {
    step: Option<i64>,
    weight: Option<u32>,
    analysis: Option<(String, String)>,
}

struct Follower<'a> {
    cluster: &'a Cluster,
    models: &'a dyn Models,
    observer: &'a mut dyn Observer,
    options: &'a ArgoOptions,
    seen: Seen,
}

impl Follower<'_> {
    fn describe(&self) -> String {
        format!(
            "kubernetes argo-rollouts Rollout {} ({})",
            self.options.rollout, self.cluster.describe
        )
    }

    async fn rollout(&self) -> Result<Value> {
        self.cluster
            .get(Kind::ROLLOUT, &self.options.rollout)
            .await?
            .ok_or_else(|| {
                Error::Input(format!(
                    "Rollout {} was not found in namespace {}: create it (its pod template reads the model from the gantry.dev/model annotation, docs/deploy-kubernetes.md)",
                    self.options.rollout, self.cluster.namespace
                ))
            })
    }

    async fn start(&mut self, existing: Option<RolloutState>) -> Result<RolloutState> {
        let options = self.options;
        let canary = tokio::task::block_in_place(|| self.models.resolve(&options.model))?;
        gate_allows(&canary, options.allow_ungated)?;
        if let Some(mut state) = existing.filter(|state| state.phase.open()) {
            if state.canary.digest == canary.digest {
                self.decide(
                    &mut state,
                    "resume",
                    "start asked again for the version being rolled out".to_owned(),
                )?;
                state.phase = Phase::Progressing;
                self.follow(&mut state).await?;
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
        self.cluster.ensure_served(Kind::ROLLOUT).await?;
        let rollout = self.rollout().await?;
        let steps = steps_of(&rollout);
        let stable =
            tokio::task::block_in_place(|| self.models.alias(&canary.name, &options.stable_alias))?;
        let mut state = RolloutState::begin(
            &canary.name,
            VersionRef {
                version: canary.version.clone(),
                digest: canary.digest.clone(),
                model_dir: None,
            },
            stable.as_ref().map(|stable| VersionRef {
                version: stable.version.clone(),
                digest: stable.digest.clone(),
                model_dir: None,
            }),
            self.describe(),
            &options.stable_alias,
            if rollout["spec"]["strategy"]["blueGreen"].is_object() {
                Strategy::BlueGreen
            } else {
                Strategy::Canary
            },
            steps,
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
        // Written before the rollout is recorded: a refusal (a field another
        // manager owns, RBAC) leaves no rollout behind.
        let patch = render::rollout_model(
            &options.rollout,
            &self.cluster.namespace,
            &canary.name,
            &canary.version,
            &canary.digest,
        );
        self.cluster
            .apply(
                Kind::ROLLOUT,
                &options.rollout,
                &patch,
                options.force_conflicts,
                None,
            )
            .await?;
        let count = state.steps.len();
        self.decide(
            &mut state,
            "started",
            format!(
                "setting {}@{} ({}) on {}; Argo Rollouts steps the traffic ({} steps)",
                canary.name,
                canary.version,
                canary.digest,
                self.describe(),
                count
            ),
        )?;
        self.decide(
            &mut state,
            "bring-up",
            format!(
                "the Rollout's pod template now carries {}={}@{}: a new ReplicaSet starts",
                keys::MODEL,
                canary.name,
                canary.digest
            ),
        )?;
        self.follow(&mut state).await?;
        Ok(state)
    }

    /// Watches the Rollout until it is healthy on the model, degraded, or
    /// paused for a person.
    async fn follow(&mut self, state: &mut RolloutState) -> Result<()> {
        let expected = format!("{}@{}", state.model, state.canary.digest);
        loop {
            let rollout = self.rollout().await?;
            let carried = rollout["spec"]["template"]["metadata"]["annotations"][keys::MODEL]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if carried != expected {
                state.phase = Phase::Aborted;
                let reason = format!(
                    "the Rollout's model changed under gantry to {:?} (someone else set {})",
                    carried,
                    keys::MODEL
                );
                state.reason = Some(reason.clone());
                self.decide(state, "abort", reason)?;
                return Ok(());
            }
            let status = &rollout["status"];
            let current = status["observedGeneration"].as_str().unwrap_or_default()
                == rollout["metadata"]["generation"]
                    .as_i64()
                    .map(|generation| generation.to_string())
                    .unwrap_or_default();
            if current {
                self.mirror(state, &rollout)?;
                if status["abort"] == true || status["phase"] == "Degraded" {
                    let message = status["message"].as_str().unwrap_or("aborted").to_owned();
                    state.phase = Phase::RolledBack;
                    state.weight = 0;
                    state.reason = Some(message.clone());
                    self.decide(
                        state,
                        "rollback",
                        format!(
                            "Argo Rollouts aborted the update: {message}; all traffic on the stable ReplicaSet, {} not moved",
                            state.stable_alias
                        ),
                    )?;
                    return Ok(());
                }
                let healthy = status["phase"] == "Healthy"
                    && status["stableRS"].is_string()
                    && status["stableRS"] == status["currentPodHash"];
                if healthy {
                    return self.promote(state).await;
                }
                if status["phase"] == "Paused" {
                    let reasons: Vec<String> = status["pauseConditions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|condition| condition["reason"].as_str().map(str::to_owned))
                        .collect();
                    let untimed = reasons.iter().any(|reason| reason != "CanaryPauseStep")
                        || current_step_is_untimed_pause(&rollout);
                    if untimed && state.phase != Phase::Paused {
                        state.phase = Phase::Paused;
                        let reason = format!(
                            "Argo Rollouts paused at step {} ({}): waiting for --action promote (or abort)",
                            state.step_index + 1,
                            if reasons.is_empty() {
                                "paused".to_owned()
                            } else {
                                reasons.join(", ")
                            }
                        );
                        state.reason = Some(reason.clone());
                        self.decide(state, "pause", reason)?;
                        return Ok(());
                    }
                }
            }
            let version = rollout["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            // Wait for the next change (a watch from this resourceVersion).
            let _ = self
                .cluster
                .wait_for(
                    Kind::ROLLOUT,
                    &self.options.rollout,
                    self.options.poll,
                    |object| {
                        let changed = object.is_none_or(|object| {
                            object["metadata"]["resourceVersion"].as_str() != Some(version.as_str())
                        });
                        changed.then_some(Ok(()))
                    },
                )
                .await?;
        }
    }

    /// Records what changed since the last look: the step, the weight, the
    /// step's AnalysisRun.
    fn mirror(&mut self, state: &mut RolloutState, rollout: &Value) -> Result<()> {
        let status = &rollout["status"];
        let step = status["currentStepIndex"].as_i64();
        let weight = status["canary"]["weights"]["canary"]["weight"]
            .as_u64()
            .map(|weight| u32::try_from(weight.min(100)).unwrap_or(100));
        if let Some(weight) = weight
            && self.seen.weight != Some(weight)
        {
            self.seen.weight = Some(weight);
            if state.weight != weight {
                state.weight = weight;
                self.decide(
                    state,
                    "set-weight",
                    format!("Argo Rollouts sends {weight}% to the canary"),
                )?;
            }
        }
        if let Some(step) = step
            && self.seen.step != Some(step)
        {
            self.seen.step = Some(step);
            let index = usize::try_from(step).unwrap_or(0);
            if index != state.step_index || state.decisions.iter().all(|d| d.action != "advance") {
                state.step_index = index;
                let total = state.steps.len();
                self.decide(
                    state,
                    "advance",
                    if index >= total {
                        format!("all {total} steps done")
                    } else {
                        format!("at step {} of {total}", index + 1)
                    },
                )?;
            }
        }
        let analysis = &status["canary"]["currentStepAnalysisRunStatus"];
        if let (Some(name), Some(phase)) = (analysis["name"].as_str(), analysis["status"].as_str())
        {
            let key = (name.to_owned(), phase.to_owned());
            if self.seen.analysis.as_ref() != Some(&key) {
                self.seen.analysis = Some(key);
                let outcome = match phase {
                    "Successful" => Some(Outcome::Success),
                    "Failed" => Some(Outcome::Failure),
                    "Error" => Some(Outcome::Error),
                    "Inconclusive" => Some(Outcome::Inconclusive),
                    _ => None,
                };
                let message = analysis["message"].as_str().unwrap_or_default();
                if let Some(outcome) = outcome {
                    let now = now_ms();
                    state.windows.push(Window {
                        step: state.step_index,
                        weight: state.weight,
                        started_ms: now,
                        ended_ms: now,
                        outcome,
                        checks: vec![CheckResult {
                            name: name.to_owned(),
                            outcome,
                            canary: None,
                            stable: None,
                            p_value: None,
                            reason: format!(
                                "AnalysisRun {name}: {phase}{}",
                                if message.is_empty() {
                                    String::new()
                                } else {
                                    format!(": {message}")
                                }
                            ),
                        }],
                        canary: WindowSide::default(),
                        stable: None,
                    });
                }
                self.decide(
                    state,
                    "window",
                    format!(
                        "AnalysisRun {name} is {phase}{}",
                        if message.is_empty() {
                            String::new()
                        } else {
                            format!(": {message}")
                        }
                    ),
                )?;
            }
        }
        Ok(())
    }

    async fn promote(&mut self, state: &mut RolloutState) -> Result<()> {
        let canary = ModelVersion {
            name: state.model.clone(),
            version: state.canary.version.clone(),
            digest: state.canary.digest.clone(),
            gate: crate::controller::GateStatus::Passed,
        };
        let expected = state.stable.as_ref().map(|stable| stable.digest.clone());
        tokio::task::block_in_place(|| {
            self.models
                .promote(&canary, &state.stable_alias, expected.as_deref())
        })?;
        state.phase = Phase::Promoted;
        state.weight = 100;
        state.step_index = state.steps.len();
        self.decide(
            state,
            "promote",
            format!(
                "the Rollout is Healthy on {} (stable ReplicaSet = the new pods); {} moved from {} to {}",
                state.canary.version,
                state.stable_alias,
                expected.as_deref().unwrap_or("unset"),
                state.canary.digest
            ),
        )
    }

    fn decide(&mut self, state: &mut RolloutState, action: &str, reason: String) -> Result<()> {
        crate::controller::record(
            self.observer,
            state,
            action,
            reason,
            &self.options.state_file,
        )
    }
}

/// The Rollout's canary steps as gantry's: `setWeight` is a weight, an
/// untimed `pause` waits for a person, other steps (timed pauses, analysis,
/// experiments) hold the weight before them, so the indexes stay Argo's.
pub fn steps_of(rollout: &Value) -> Vec<Step> {
    let mut weight = 0;
    rollout["spec"]["strategy"]["canary"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|step| {
            if let Some(set) = step["setWeight"].as_u64() {
                weight = u32::try_from(set.min(100)).unwrap_or(100);
                Step::Weight(weight)
            } else if step["pause"].is_object() && step["pause"]["duration"].is_null() {
                Step::Pause
            } else {
                Step::Weight(weight)
            }
        })
        .collect()
}

fn current_step_is_untimed_pause(rollout: &Value) -> bool {
    let index = rollout["status"]["currentStepIndex"]
        .as_u64()
        .unwrap_or(u64::MAX);
    rollout["spec"]["strategy"]["canary"]["steps"]
        .as_array()
        .and_then(|steps| steps.get(usize::try_from(index).ok()?))
        .is_some_and(|step| step["pause"].is_object() && step["pause"]["duration"].is_null())
}
