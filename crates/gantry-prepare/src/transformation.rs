//! `transformation.json`: how a derived model was made — stored in its
//! lineage (`derived_from.transformation`), so the chain from a production
//! GGUF back to the registered model it came from can be re-checked.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The record's file name in the lineage.
pub const TRANSFORMATION_FILE: &str = "transformation.json";

/// What the command may write to `$GANTRY_RUN_DIR` to report its tool,
/// versions and settings; gantry keeps it as `reported`.
pub const REPORTED_FILE: &str = "transformation.json";

/// The parent, as it was when the variant was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformationParent {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its manifest digest.
    pub digest: String,
}

/// `transformation.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Transformation {
    /// Always `gantry-transformation`.
    pub kind: String,
    /// Format version (1).
    pub version: u32,
    /// The parent.
    pub parent: TransformationParent,
    /// `quantized`, `converted`, `distilled`, `finetuned` or `merged`.
    pub relation: String,
    /// The command, as run (credentials redacted).
    pub command: Vec<String>,
    /// sha256 of the command line and every file it names that exists in
    /// the working directory (a config, a recipe): the transformation's identity.
    pub command_digest: String,
    /// When it started (RFC 3339, UTC).
    pub started: String,
    /// Seconds it ran.
    pub seconds: f64,
    /// What the command reported in `$GANTRY_RUN_DIR/transformation.json`
    /// (tool, versions, settings), when it wrote one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reported: Option<serde_json::Value>,
    /// Free annotations (`--metadata`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl Transformation {
    /// The record's kind.
    pub const KIND: &'static str = "gantry-transformation";
}

/// The JSON Schema of `transformation.json`.
pub fn transformation_schema() -> schemars::Schema {
    schemars::schema_for!(Transformation)
}
