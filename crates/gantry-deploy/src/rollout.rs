//! The rollout state: what a controller did and decided, written atomically
//! after every change so that a later invocation (`--action
//! resume|promote|abort|status`) continues from it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::analysis::{CheckResult, Outcome};
use crate::error::{Error, Result, write_atomic};

/// The state file's format.
pub const STATE_FORMAT: u32 = 1;

/// One step of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub enum Step {
    /// Send this percentage of traffic to the canary, then judge windows.
    Weight(u32),
    /// Wait for `--action promote`.
    Pause,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Weight(weight) => write!(f, "{weight}"),
            Step::Pause => f.write_str("pause"),
        }
    }
}

impl Serialize for Step {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Step, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_step(&text).map_err(serde::de::Error::custom)
    }
}

fn parse_step(text: &str) -> std::result::Result<Step, String> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("pause") {
        return Ok(Step::Pause);
    }
    let weight: u32 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{text:?} is neither a percentage (1 to 100) nor `pause`"))?;
    if !(1..=100).contains(&weight) {
        return Err(format!("{weight} is not a percentage from 1 to 100"));
    }
    Ok(Step::Weight(weight))
}

/// Parses `--steps`: canary percentages, strictly increasing, with `pause`
/// where a person must promote; a final 100 is added when missing.
pub fn parse_steps(text: &str) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    let mut last = 0;
    for word in text.split(',').filter(|word| !word.trim().is_empty()) {
        let step =
            parse_step(word).map_err(|why| Error::Input(format!("--steps {text:?}: {why}")))?;
        if let Step::Weight(weight) = step {
            if weight <= last {
                return Err(Error::Input(format!(
                    "--steps {text:?}: weights must increase, but {weight} follows {last}"
                )));
            }
            last = weight;
        }
        steps.push(step);
    }
    if !steps.iter().any(|step| matches!(step, Step::Weight(_))) {
        return Err(Error::Input(format!(
            "--steps {text:?}: give at least one canary percentage, e.g. 5,25,50,100"
        )));
    }
    if last != 100 {
        steps.push(Step::Weight(100));
    }
    Ok(steps)
}

/// How traffic moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Weights in steps, canary judged against stable at each.
    Canary,
    /// The new version previewed with smoke traffic, then all traffic at once.
    BlueGreen,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Steps under way.
    Progressing,
    /// Waiting for a person: traffic on stable, the canary kept running.
    Paused,
    /// The canary is stable now.
    Promoted,
    /// The analysis said no: traffic on stable, the canary stopped.
    RolledBack,
    /// Stopped on request.
    Aborted,
}

impl Phase {
    /// The word reported as the `outcome` output.
    pub fn outcome(self) -> &'static str {
        match self {
            Phase::Progressing => "progressing",
            Phase::Paused => "paused",
            Phase::Promoted => "promoted",
            Phase::RolledBack => "rolled-back",
            Phase::Aborted => "aborted",
        }
    }

    /// Whether a later invocation can continue it.
    pub fn open(self) -> bool {
        matches!(self, Phase::Progressing | Phase::Paused)
    }
}

/// A model version taking part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VersionRef {
    /// The version (the router's key).
    pub version: String,
    /// Its manifest digest.
    pub digest: String,
    /// Where its files were pulled.
    pub model_dir: Option<PathBuf>,
}

/// A per-version summary of one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WindowSide {
    /// Requests finished in the window.
    pub requests: u64,
    /// Server and connection errors.
    pub errors: u64,
    /// p95 end-to-end latency, milliseconds.
    pub latency_p95_ms: Option<f64>,
    /// p95 time to first token, milliseconds.
    pub ttft_p95_ms: Option<f64>,
}

/// One judged window.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Window {
    /// The step's index.
    pub step: usize,
    /// The canary's weight during it.
    pub weight: u32,
    /// Start, milliseconds since the epoch.
    pub started_ms: u64,
    /// End.
    pub ended_ms: u64,
    /// The verdict.
    pub outcome: Outcome,
    /// Each check.
    pub checks: Vec<CheckResult>,
    /// The canary's numbers.
    pub canary: WindowSide,
    /// Stable's numbers (absent when stable took no traffic).
    pub stable: Option<WindowSide>,
}

/// A decision, with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Decision {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The step's index.
    pub step: usize,
    /// The canary's weight after it.
    pub weight: u32,
    /// What was done (`started`, `set-weight`, `window`, `advance`, `hold`, `pause`, `rollback`, `promote`, `abort`, `resume`, `reconcile`).
    pub action: String,
    /// Why.
    pub reason: String,
}

/// Counters of the analysis across windows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Counters {
    /// Successful windows in a row at this step.
    pub consecutive_successes: u32,
    /// Failed windows in the rollout.
    pub failures: u32,
    /// Metric-source errors in a row.
    pub consecutive_errors: u32,
    /// Inconclusive windows in a row.
    pub consecutive_inconclusive: u32,
}

/// The rollout state file.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RolloutState {
    /// Format version.
    pub format: u32,
    /// The rollout's id (also the router lease holder).
    pub id: String,
    /// The model's name.
    pub model: String,
    /// The target, in words.
    pub target: String,
    /// The alias moved on promotion.
    pub stable_alias: String,
    /// The version serving before (absent on a first deploy).
    pub stable: Option<VersionRef>,
    /// The version rolled out.
    pub canary: VersionRef,
    /// How traffic moves.
    pub strategy: Strategy,
    /// The steps.
    pub steps: Vec<Step>,
    /// The current step.
    pub step_index: usize,
    /// The canary's current weight.
    pub weight: u32,
    /// Where it stands.
    pub phase: Phase,
    /// Why it is paused, rolled back or aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Analysis counters.
    pub counters: Counters,
    /// Every judged window.
    pub windows: Vec<Window>,
    /// Every decision.
    pub decisions: Vec<Decision>,
    /// Forge deployment ids by forge (`github`, `gitlab`).
    pub deployments: BTreeMap<String, u64>,
    /// When the current lease on the canary weight expires, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_ms: Option<u64>,
    /// The model server's last log lines when it failed to start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_tail: Vec<String>,
}

impl RolloutState {
    /// A rollout of `canary` (on `model`) that has moved no traffic yet.
    /// Its id is unique even for two starts in one second: it is the lease
    /// holder, which tells one controller from another.
    pub fn begin(
        model: &str,
        canary: VersionRef,
        stable: Option<VersionRef>,
        target: String,
        stable_alias: &str,
        strategy: Strategy,
        steps: Vec<Step>,
    ) -> RolloutState {
        RolloutState {
            format: STATE_FORMAT,
            id: format!(
                "{model}-{}-{}-{:04x}",
                canary.version,
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
                rand::random::<u16>()
            ),
            model: model.to_owned(),
            target,
            stable_alias: stable_alias.to_owned(),
            stable,
            canary,
            strategy,
            steps,
            step_index: 0,
            weight: 0,
            phase: Phase::Progressing,
            reason: None,
            counters: Counters::default(),
            windows: Vec::new(),
            decisions: Vec::new(),
            deployments: BTreeMap::new(),
            lease_expires_ms: None,
            log_tail: Vec::new(),
        }
    }

    /// Reads a state file; `None` when there is none yet.
    pub fn load(path: &Path) -> Result<Option<RolloutState>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(Error::io("cannot read", path)(error)),
        };
        let state: RolloutState = serde_json::from_slice(&bytes).map_err(|error| {
            Error::Input(format!(
                "{}: not a rollout state file: {error}",
                path.display()
            ))
        })?;
        if state.format != STATE_FORMAT {
            return Err(Error::Input(format!(
                "{}: rollout state format {} is not one this gantry reads ({STATE_FORMAT})",
                path.display(),
                state.format
            )));
        }
        Ok(Some(state))
    }

    /// Writes it atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|error| {
            Error::Service(format!("cannot serialize the rollout state: {error}"))
        })?;
        write_atomic(path, &bytes)
    }

    /// Successful windows at the current step, and all windows judged there.
    pub fn step_windows(&self) -> (usize, usize) {
        let here: Vec<&Window> = self
            .windows
            .iter()
            .filter(|window| window.step == self.step_index)
            .collect();
        (
            here.iter()
                .filter(|window| window.outcome == Outcome::Success)
                .count(),
            here.len(),
        )
    }
}

/// The JSON Schema of the rollout state file.
pub fn rollout_state_schema() -> schemars::Schema {
    schemars::schema_for!(RolloutState)
}

/// Holds a rollout's lock: one controller per state file at a time.
#[derive(Debug)]
pub struct RolloutLock {
    _file: std::fs::File,
}

impl RolloutLock {
    /// Takes the lock beside `state_file`, or says who holds it.
    pub fn acquire(state_file: &Path) -> Result<RolloutLock> {
        let mut name = state_file.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io("cannot open", &path))?;
        match file.try_lock() {
            Ok(()) => Ok(RolloutLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Busy(format!(
                "another deploy-canary controls this rollout (it holds {}); wait for it, or run --action status",
                path.display()
            ))),
            Err(std::fs::TryLockError::Error(error)) => Err(Error::io("cannot lock", &path)(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_increase_and_end_at_100() {
        assert_eq!(
            parse_steps("5,25,pause,50").expect("parses"),
            [
                Step::Weight(5),
                Step::Weight(25),
                Step::Pause,
                Step::Weight(50),
                Step::Weight(100)
            ]
        );
        assert_eq!(
            parse_steps("10%,100").expect("parses"),
            [Step::Weight(10), Step::Weight(100)]
        );
        for (bad, why) in [
            ("25,5", "must increase"),
            ("0,50", "from 1 to 100"),
            ("5,150", "from 1 to 100"),
            ("five", "neither"),
            ("pause", "at least one"),
        ] {
            let error = parse_steps(bad).expect_err(bad).to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn a_second_controller_is_refused_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("rollout.json");
        let _held = RolloutLock::acquire(&state).expect("first");
        let error = RolloutLock::acquire(&state).expect_err("second");
        assert!(
            error.to_string().contains("another deploy-canary"),
            "{error}"
        );
    }
}
