//! A model's footprint: what it weighs on disk and in parameters (from its
//! manifest — safetensors and GGUF headers — without loading it), and what
//! it costs to serve (from a smoke run through the serve command).

use std::collections::BTreeMap;

use gantry_core::ModelManifest;
use serde::{Deserialize, Serialize};

/// Serving measurements on a smoke set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Serving {
    /// Seconds from starting the serve command to its first healthy answer.
    pub load_seconds: f64,
    /// Requests sent.
    pub requests: u64,
    /// Median latency (ms).
    pub latency_p50_ms: Option<f64>,
    /// 95th percentile latency (ms).
    pub latency_p95_ms: Option<f64>,
    /// Output tokens per second over the smoke run.
    pub tokens_per_second: Option<f64>,
}

/// What a footprint reads of one file.
#[derive(Debug, Clone, Copy)]
pub struct FileFacts<'a> {
    /// Its size.
    pub size: u64,
    /// Its safetensors header.
    pub safetensors: Option<&'a gantry_core::SafetensorsSummary>,
    /// Its GGUF header.
    pub gguf: Option<&'a gantry_core::GgufSummary>,
    /// Whether it holds weights otherwise (a pickle checkpoint).
    pub weights: bool,
}

/// A model's footprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Footprint {
    /// Bytes of every file.
    pub total_bytes: u64,
    /// Bytes of the weight files (safetensors, GGUF, pickles).
    pub weight_bytes: u64,
    /// Parameters read from safetensors and GGUF headers.
    pub parameters: u64,
    /// Parameters per dtype or tensor type (`F32`, `BF16`, `Q8_0`…).
    pub types: BTreeMap<String, u64>,
    /// Bits per parameter of the weight files, when parameters are known.
    pub bits_per_parameter: Option<f64>,
    /// What serving it measured, when a serve command was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving: Option<Serving>,
}

impl Footprint {
    /// The footprint the manifest records.
    pub fn of(manifest: &ModelManifest) -> Footprint {
        Footprint::of_files(manifest.files.iter().map(|file| FileFacts {
            size: file.size,
            safetensors: file.safetensors.as_ref(),
            gguf: file.gguf.as_ref(),
            weights: file.pickle.is_some(),
        }))
    }

    /// The footprint of files read but not (yet) registered.
    pub fn of_files<'a>(files: impl IntoIterator<Item = FileFacts<'a>>) -> Footprint {
        let mut types: BTreeMap<String, u64> = BTreeMap::new();
        let mut parameters = 0_u64;
        let mut weight_bytes = 0_u64;
        let mut total_bytes = 0_u64;
        for file in files {
            total_bytes += file.size;
            if let Some(summary) = file.safetensors {
                parameters += summary.parameters;
                for (dtype, count) in &summary.dtypes {
                    *types.entry(dtype.clone()).or_default() += count;
                }
            }
            if let Some(summary) = file.gguf {
                parameters += summary.parameters;
                for (kind, count) in &summary.types {
                    *types.entry(kind.clone()).or_default() += count;
                }
            }
            if file.safetensors.is_some() || file.gguf.is_some() || file.weights {
                weight_bytes += file.size;
            }
        }
        Footprint {
            total_bytes,
            weight_bytes,
            parameters,
            types,
            bits_per_parameter: (parameters > 0)
                .then(|| weight_bytes as f64 * 8.0 / parameters as f64),
            serving: None,
        }
    }

    /// This footprint's weight bytes over `parent`'s (`None` when the parent has none).
    pub fn size_ratio(&self, parent: &Footprint) -> Option<f64> {
        (parent.weight_bytes > 0).then(|| self.weight_bytes as f64 / parent.weight_bytes as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_core::{GgufSummary, ManifestFile, SafetensorsSummary};

    fn file(path: &str, size: u64) -> ManifestFile {
        ManifestFile {
            path: path.into(),
            size,
            digest: gantry_core::Digest::of_bytes(path.as_bytes()),
            media_type: "application/octet-stream".into(),
            safetensors: None,
            pickle: None,
            gguf: None,
        }
    }

    fn manifest(files: Vec<ManifestFile>) -> ModelManifest {
        ModelManifest {
            schema_version: gantry_core::MANIFEST_SCHEMA_VERSION,
            name: "tiny".into(),
            version: "0.1.0".into(),
            created: "2026-12-05T00:00:00Z".into(),
            files,
            lineage: gantry_core::Lineage::default(),
            metadata: BTreeMap::new(),
        }
    }

    #[test]
    fn a_q8_variant_weighs_about_a_quarter_of_its_f32_parent() {
        let mut weights = file("model.safetensors", 4_000_000 + 200);
        weights.safetensors = Some(SafetensorsSummary {
            tensors: 2,
            parameters: 1_000_000,
            dtypes: BTreeMap::from([("F32".into(), 1_000_000)]),
            metadata: BTreeMap::new(),
        });
        let parent = Footprint::of(&manifest(vec![weights, file("config.json", 100)]));
        let mut gguf = file("model.gguf", 1_062_500 + 500);
        gguf.gguf = Some(GgufSummary {
            version: 3,
            tensors: 2,
            parameters: 1_000_000,
            tensor_bytes: 1_062_500,
            types: BTreeMap::from([("Q8_0".into(), 1_000_000)]),
            metadata: BTreeMap::new(),
        });
        let variant = Footprint::of(&manifest(vec![gguf, file("config.json", 100)]));
        assert_eq!(parent.total_bytes, 4_000_300);
        assert_eq!(parent.weight_bytes, 4_000_200);
        assert!((parent.bits_per_parameter.unwrap_or(0.0) - 32.0).abs() < 0.01);
        assert!((variant.bits_per_parameter.unwrap_or(0.0) - 8.5).abs() < 0.01);
        let ratio = variant.size_ratio(&parent).unwrap_or(0.0);
        assert!((ratio - 0.2657).abs() < 0.001, "{ratio}");
        assert_eq!(variant.types["Q8_0"], 1_000_000);
    }
}
