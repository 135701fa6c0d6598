//! `tiny-lm export`: a converted variant of a trained model, the kind of
//! transformation gantry's `prepare` stage runs — half-precision safetensors
//! (`f16`, `bf16`) or a `q8_0` GGUF through candle's quantized tensors. The
//! variant keeps `config.json`, so `serve` and `eval` load it like the parent.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{DType, Tensor};

use crate::model::Model;

/// What `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `model.safetensors` in IEEE half precision.
    F16,
    /// `model.safetensors` in bfloat16.
    Bf16,
    /// `model.gguf`: 8-bit blocks (Q8_0) for matrices whose rows divide into
    /// blocks of 32, F32 for the rest.
    Q8_0,
}

impl Format {
    /// Parses `f16`, `bf16` or `q8_0`.
    pub fn parse(text: &str) -> Result<Format> {
        Ok(match text {
            "f16" => Format::F16,
            "bf16" => Format::Bf16,
            "q8_0" => Format::Q8_0,
            other => bail!("--format {other:?}: expected f16, bf16 or q8_0"),
        })
    }
}

/// Converts the model in `model` into `out` (created), returning the weights file.
pub fn export(model: &Path, out: &Path, format: Format) -> Result<PathBuf> {
    let loaded = Model::load(model)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::copy(model.join("config.json"), out.join("config.json"))
        .with_context(|| format!("copying {}", model.join("config.json").display()))?;
    let mut tensors: Vec<(String, Tensor)> = loaded.tensors().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    match format {
        Format::F16 | Format::Bf16 => {
            let dtype = if format == Format::F16 {
                DType::F16
            } else {
                DType::BF16
            };
            let converted = tensors
                .iter()
                .map(|(name, tensor)| Ok((name.clone(), tensor.to_dtype(dtype)?)))
                .collect::<Result<std::collections::HashMap<_, _>>>()?;
            let path = out.join("model.safetensors");
            candle_core::safetensors::save(&converted, &path)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        }
        Format::Q8_0 => {
            let quantized = tensors
                .iter()
                .map(|(name, tensor)| {
                    let blocks =
                        tensor.rank() == 2 && tensor.dims()[1] % GgmlDType::Q8_0.block_size() == 0;
                    let dtype = if blocks {
                        GgmlDType::Q8_0
                    } else {
                        GgmlDType::F32
                    };
                    Ok((name.clone(), QTensor::quantize(tensor, dtype)?))
                })
                .collect::<Result<Vec<_>>>()?;
            let config = &loaded.config;
            let metadata = [
                (
                    "general.architecture",
                    gguf_file::Value::String("tinylm".into()),
                ),
                ("general.name", gguf_file::Value::String("tiny-lm".into())),
                ("general.quantization_version", gguf_file::Value::U32(2)),
                // llama_ftype MOSTLY_Q8_0.
                ("general.file_type", gguf_file::Value::U32(7)),
                (
                    "tinylm.context_length",
                    gguf_file::Value::U64(config.block_size as u64),
                ),
                (
                    "tinylm.embedding_length",
                    gguf_file::Value::U64(config.d_model as u64),
                ),
                (
                    "tinylm.block_count",
                    gguf_file::Value::U64(config.n_layer as u64),
                ),
                (
                    "tinylm.attention.head_count",
                    gguf_file::Value::U64(config.n_head as u64),
                ),
                (
                    "tinylm.vocab_size",
                    gguf_file::Value::U64(config.vocab_size as u64),
                ),
            ];
            let metadata: Vec<(&str, &gguf_file::Value)> =
                metadata.iter().map(|(key, value)| (*key, value)).collect();
            let tensors: Vec<(&str, &QTensor)> = quantized
                .iter()
                .map(|(name, tensor)| (name.as_str(), tensor))
                .collect();
            let path = out.join("model.gguf");
            let mut file = std::io::BufWriter::new(
                std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?,
            );
            gguf_file::write(&mut file, &metadata, &tensors)
                .with_context(|| format!("writing {}", path.display()))?;
            use std::io::Write as _;
            file.flush()?;
            Ok(path)
        }
    }
}
