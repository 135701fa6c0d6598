//! eval-gate: read evaluation results from any producer, compare a candidate
//! with a baseline item by item under a policy, and decide pass, fail or
//! inconclusive with the statistics shown.
//!
//! - [`results`]: readers (gantry-native JSONL, lm-evaluation-harness).
//! - [`stats`]: exact McNemar, paired BCa bootstrap, corpus-metric bootstrap
//!   over item indices, unpaired z-test, Holm.
//! - [`corpus`]: BLEU (sacrebleu), F1 and MCC from per-item statistics.
//! - [`policy`]: rules (selectors, direction, floor, margin, new failures,
//!   severity) and defaults, from TOML.
//! - [`gate`]: comparability checks, per-rule rows, verdicts, `gate.json`.
//! - [`runner`]: `gantry eval`, an eval set against an OpenAI-compatible endpoint.

pub mod corpus;
pub mod error;
pub mod gate;
pub mod policy;
pub mod results;
pub mod runner;
pub mod stats;

pub use error::{Error, Result};
pub use gate::{
    GATE_SCHEMA_VERSION, GateReport, RegisteredVersion, RowVerdict, RuleRow, evaluate_gate,
    same_items,
};
pub use policy::{BaselineFacts, BaselineRequirements, Direction, Policy, Rule, Severity};
pub use results::{MetricKey, ResultSet, Source, read};

/// JSON Schemas of the files eval-gate writes and reads, for `schemas/`.
pub fn schemas() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "gate.schema.json",
            serde_json::to_value(schemars::schema_for!(GateReport)).unwrap_or_default(),
        ),
        (
            "eval-policy.schema.json",
            serde_json::to_value(schemars::schema_for!(Policy)).unwrap_or_default(),
        ),
    ]
}
