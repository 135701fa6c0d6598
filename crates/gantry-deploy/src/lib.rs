//! deploy-canary: the embedded weighted router (`gantry router`), the rollout
//! state machine, its targets and the canary analysis.
//!
//! The controller never knows which target runs the versions: a
//! [`target::Target`] brings versions up, sets weights and reads metrics;
//! `local` drives the embedded router's admin API, Kubernetes comes next.

pub mod analysis;
pub mod api;
pub mod controller;
mod error;
pub mod report;
pub mod rollout;
pub mod router;
pub mod target;

pub use crate::error::{Error, Result};

/// The JSON Schemas of deploy-canary's files, by file name: the analysis
/// file (TOML, checked against this as data) and the rollout state.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "analysis.schema.json",
            serde_json::to_value(analysis::analysis_schema()).unwrap_or_default(),
        ),
        (
            "rollout-state.schema.json",
            serde_json::to_value(rollout::rollout_state_schema()).unwrap_or_default(),
        ),
    ]
}
