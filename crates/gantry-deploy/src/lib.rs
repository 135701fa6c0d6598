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
pub mod kubernetes;
pub mod report;
pub mod rollout;
pub mod router;
pub mod smoke;
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

#[cfg(test)]
mod hostile_input {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(gantry_test::adversarial::config())]

        /// The analysis file, the rollout state, the router's state, smoke
        /// traffic and step lists: hostile bytes are a value or an error,
        /// never a panic or an abort.
        #[test]
        fn hostile_files_are_values_or_errors(bytes in gantry_test::adversarial::bytes()) {
            let directory = tempfile::tempdir().expect("tempdir");
            let path = directory.path().join("input");
            std::fs::write(&path, &bytes).expect("write");
            let _ = crate::analysis::AnalysisConfig::load(&path);
            let _ = crate::rollout::RolloutState::load(&path);
            let _ = crate::smoke::load_smoke(&path);
            let text = String::from_utf8_lossy(&bytes);
            let _ = crate::rollout::parse_steps(&text);
            let _ = crate::smoke::answer_text(&text);
            let _ = serde_json::from_slice::<crate::api::WeightsRequest>(&bytes);
            let _ = serde_json::from_slice::<crate::api::BackendSpec>(&bytes);
        }
    }
}
