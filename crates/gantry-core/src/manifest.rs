//! The model manifest: what a registered model version is, and its identity.
//!
//! A manifest lists every file of a model (path, size, sha256, media type,
//! and what could be read from safetensors headers or pickle opcodes without
//! loading the weights), the lineage it came from, and free metadata. Its
//! identity — [`ModelManifest::digest`] — is the sha256 of the canonical JSON
//! of everything except the two fields a registry assigns (`version` and
//! `created`): the same files, lineage and metadata under the same name are
//! the same model, however often they are registered.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, canonical_json_digest};
use crate::error::Result;
use crate::verdict::Verdict;

/// Version of the manifest format written by this build.
pub const MANIFEST_SCHEMA_VERSION: u32 = 1;

/// One registered model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelManifest {
    /// Version of this format (1).
    pub schema_version: u32,
    /// The model's name in the registry.
    pub name: String,
    /// The version the registry assigned (not part of the identity).
    pub version: String,
    /// When the version was registered, RFC 3339 UTC (not part of the identity).
    pub created: String,
    /// Every file of the model, sorted by path.
    pub files: Vec<ManifestFile>,
    /// Where the model came from.
    pub lineage: Lineage,
    /// Free `key = value` metadata given at registration.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// The fields of a manifest that make up its identity, borrowed.
#[derive(Serialize)]
struct Identity<'a> {
    schema_version: u32,
    name: &'a str,
    files: &'a [ManifestFile],
    lineage: &'a Lineage,
    metadata: &'a BTreeMap<String, String>,
}

impl ModelManifest {
    /// The model's identity: sha256 over the canonical JSON of the schema
    /// version, name, files, lineage and metadata.
    pub fn digest(&self) -> Result<Digest> {
        canonical_json_digest(&Identity {
            schema_version: self.schema_version,
            name: &self.name,
            files: &self.files,
            lineage: &self.lineage,
            metadata: &self.metadata,
        })
    }

    /// The total size of the model's files in bytes (saturating: a forged
    /// manifest can claim sizes that overflow).
    pub fn total_size(&self) -> u64 {
        self.files
            .iter()
            .fold(0_u64, |total, file| total.saturating_add(file.size))
    }

    /// The file at `path`, if the manifest lists it.
    pub fn file(&self, path: &str) -> Option<&ManifestFile> {
        self.files.iter().find(|file| file.path == path)
    }
}

/// One file of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Path relative to the model directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the bytes.
    #[schemars(with = "String")]
    pub digest: Digest,
    /// ModelPack media type, e.g. `application/vnd.cncf.model.weight.v1.raw`.
    pub media_type: String,
    /// What the safetensors header says, for `.safetensors` files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safetensors: Option<SafetensorsSummary>,
    /// The imports a pickle-based checkpoint makes, for `.bin`/`.pt`/`.pkl`/`.ckpt` files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pickle: Option<PickleSummary>,
    /// Its GGUF header, for `.gguf` files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gguf: Option<GgufSummary>,
}

/// A safetensors header, summarized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SafetensorsSummary {
    /// Number of tensors.
    pub tensors: u64,
    /// Number of parameters (elements) over all tensors.
    pub parameters: u64,
    /// Parameters per dtype (`F32`, `BF16`, …).
    pub dtypes: BTreeMap<String, u64>,
    /// The header's `__metadata__` (string to string).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// A GGUF header, summarized: the footprint without the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GgufSummary {
    /// The format version (1 to 3).
    pub version: u32,
    /// Number of tensors.
    pub tensors: u64,
    /// Number of parameters (elements) over all tensors.
    pub parameters: u64,
    /// Bytes of tensor data (from each tensor's type and element count).
    pub tensor_bytes: u64,
    /// Parameters per tensor type (`F16`, `Q8_0`, `Q4_K`, …), from the tensors themselves.
    pub types: BTreeMap<String, u64>,
    /// The metadata: scalars and strings as text (strings cut at 256
    /// characters), arrays as `[N items]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// What a pickle scan found in a file that was allowed in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PickleSummary {
    /// Every `module.name` the pickle imports, sorted.
    pub imports: Vec<String>,
    /// The imports no allow-list vouches for (registered only with `--allow-pickle`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsafe_imports: Vec<String>,
}

/// Where a model came from: each link is the digest of the file that
/// describes the previous step, so the chain can be re-checked later.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Lineage {
    /// The source commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitLineage>,
    /// The training run record (`run.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunLink>,
    /// The training data lock (`data.lock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataLink>,
    /// The eval-gate report (`gate.json`) the model passed through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateLink>,
    /// The model's own evaluation results, the baseline later gates compare with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<DocumentLink>,
    /// The eval set (items) those results were produced from, so a later
    /// run (monitor) asks the same questions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_set: Option<DocumentLink>,
    /// The training data's `summary.json` (validate-data), the reference
    /// that production traffic's drift is measured against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_summary: Option<DocumentLink>,
    /// The registered model this one was made from (quantized, converted,
    /// distilled) by `gantry prepare`, and how.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derived_from: Option<DerivedFrom>,
}

/// The parent of a derived model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DerivedFrom {
    /// The parent's manifest digest: its identity.
    #[schemars(with = "String")]
    pub parent: Digest,
    /// The parent's name.
    pub name: String,
    /// The parent's version.
    pub version: String,
    /// How this model relates to it: `quantized`, `converted`, `distilled`,
    /// `finetuned`, `merged` (the Hugging Face model card's `base_model_relation`).
    pub relation: String,
    /// The stored transformation record (`transformation.json`): the command,
    /// its timings and what it reported.
    pub transformation: DocumentLink,
}

/// The commit a model was built from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitLineage {
    /// `owner/name`, `group/project` or a remote URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// The commit SHA.
    pub commit: String,
    /// The branch, tag or PR ref.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
}

/// A lineage document stored beside the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentLink {
    /// sha256 of the document's bytes (also its blob in the registry).
    #[schemars(with = "String")]
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The file name it was registered from.
    pub file_name: String,
}

/// The training run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunLink {
    /// The stored `run.json`.
    pub document: DocumentLink,
    /// The run's id, when the record has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// The training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataLink {
    /// The stored `data.lock`.
    pub document: DocumentLink,
    /// The lock's dataset digest: the data's identity.
    #[schemars(with = "String")]
    pub dataset_digest: Digest,
}

/// The gate the model went through.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GateLink {
    /// The stored `gate.json`.
    pub document: DocumentLink,
    /// The gate's overall verdict.
    pub verdict: Verdict,
}

impl Lineage {
    /// Every stored lineage document, with the role it plays.
    pub fn documents(&self) -> Vec<(&'static str, &DocumentLink)> {
        let mut documents = Vec::new();
        if let Some(run) = &self.run {
            documents.push(("run record", &run.document));
        }
        if let Some(data) = &self.data {
            documents.push(("data lock", &data.document));
        }
        if let Some(gate) = &self.gate {
            documents.push(("gate report", &gate.document));
        }
        if let Some(evaluation) = &self.evaluation {
            documents.push(("evaluation results", evaluation));
        }
        if let Some(eval_set) = &self.eval_set {
            documents.push(("eval set", eval_set));
        }
        if let Some(summary) = &self.data_summary {
            documents.push(("data summary", summary));
        }
        if let Some(derived) = &self.derived_from {
            documents.push(("transformation record", &derived.transformation));
        }
        documents
    }
}

/// The JSON Schema of [`ModelManifest`].
pub fn manifest_schema() -> schemars::Schema {
    schemars::schema_for!(ModelManifest)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn manifest() -> ModelManifest {
        ModelManifest {
            schema_version: MANIFEST_SCHEMA_VERSION,
            name: "tiny".to_owned(),
            version: "0.1.0".to_owned(),
            created: "2026-01-01T00:00:00Z".to_owned(),
            files: vec![ManifestFile {
                path: "model.safetensors".to_owned(),
                size: 3,
                digest: Digest::of_bytes(b"abc"),
                media_type: "application/vnd.cncf.model.weight.v1.raw".to_owned(),
                safetensors: None,
                pickle: None,
                gguf: None,
            }],
            lineage: Lineage::default(),
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn identity_ignores_what_the_registry_assigns() {
        let first = manifest();
        let mut second = manifest();
        second.version = "0.2.0".to_owned();
        second.created = "2027-01-01T00:00:00Z".to_owned();
        assert_eq!(first.digest().unwrap(), second.digest().unwrap());
    }

    #[test]
    fn identity_covers_files_lineage_and_metadata() {
        let base = manifest().digest().unwrap();
        let mut changed = manifest();
        changed.files[0].digest = Digest::of_bytes(b"abd");
        assert_ne!(changed.digest().unwrap(), base);
        let mut changed = manifest();
        changed
            .metadata
            .insert("owner".to_owned(), "ml-platform".to_owned());
        assert_ne!(changed.digest().unwrap(), base);
        let mut changed = manifest();
        changed.lineage.git = Some(GitLineage {
            repository: None,
            commit: "abc".to_owned(),
            git_ref: None,
        });
        assert_ne!(changed.digest().unwrap(), base);
        let mut changed = manifest();
        changed.name = "other".to_owned();
        assert_ne!(changed.digest().unwrap(), base);
    }

    #[test]
    fn round_trips_through_json() {
        let manifest = manifest();
        let text = serde_json::to_string(&manifest).unwrap();
        let back: ModelManifest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, manifest);
        assert_eq!(back.digest().unwrap(), manifest.digest().unwrap());
    }
}

#[cfg(test)]
mod hostile_input {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(gantry_test::adversarial::config())]

        /// A manifest file of hostile bytes is a manifest or an error,
        /// never a panic or an abort.
        #[test]
        fn hostile_manifests_are_errors(bytes in gantry_test::adversarial::bytes()) {
            // Also a well-formed manifest that claims sizes which overflow.
            let forged = serde_json::json!({
                "schema_version": 1, "name": "m", "version": "1", "created": "2026-01-01T00:00:00Z",
                "files": [
                    {"path": "a", "size": u64::MAX, "sha256": format!("sha256:{}", "0".repeat(64)), "media_type": "application/octet-stream"},
                    {"path": "b", "size": u64::MAX, "sha256": format!("sha256:{}", "0".repeat(64)), "media_type": "application/octet-stream"},
                ],
                "lineage": {}, "metadata": {},
            });
            if let Ok(manifest) = serde_json::from_value::<super::ModelManifest>(forged) {
                prop_assert_eq!(manifest.total_size(), u64::MAX);
            }
            if let Ok(manifest) = serde_json::from_slice::<super::ModelManifest>(&bytes) {
                let _ = manifest.digest();
                let _ = manifest.total_size();
            }
        }
    }
}
