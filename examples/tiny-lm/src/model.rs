//! A small byte-level decoder-only transformer (GPT-style, pre-norm) on candle.
//!
//! Parameters live in named [`Var`]s and are initialised from a seeded ChaCha
//! stream, so the same seed gives the same weights on every machine (candle's
//! CPU RNG cannot be seeded). Checkpoints are safetensors files with a
//! `config.json` beside them.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::{D, DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Vocabulary: raw bytes.
pub const VOCAB: usize = 256;

/// Model shape, saved as `config.json` next to the weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Always `tiny-lm`.
    pub model_type: String,
    /// Vocabulary size (bytes).
    pub vocab_size: usize,
    /// Context length in bytes.
    pub block_size: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block.
    pub n_head: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            model_type: "tiny-lm".into(),
            vocab_size: VOCAB,
            block_size: 96,
            d_model: 64,
            n_layer: 2,
            n_head: 4,
        }
    }
}

impl Config {
    /// Parameter names and shapes, in a fixed order.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let d = self.d_model;
        let mut shapes = vec![
            ("tok_emb.weight".to_owned(), vec![self.vocab_size, d]),
            ("pos_emb.weight".to_owned(), vec![self.block_size, d]),
        ];
        for l in 0..self.n_layer {
            let p = format!("blocks.{l}");
            shapes.push((format!("{p}.ln1.weight"), vec![d]));
            shapes.push((format!("{p}.attn.qkv.weight"), vec![3 * d, d]));
            shapes.push((format!("{p}.attn.proj.weight"), vec![d, d]));
            shapes.push((format!("{p}.ln2.weight"), vec![d]));
            shapes.push((format!("{p}.mlp.fc.weight"), vec![4 * d, d]));
            shapes.push((format!("{p}.mlp.proj.weight"), vec![d, 4 * d]));
        }
        shapes.push(("ln_f.weight".to_owned(), vec![d]));
        shapes.push(("head.weight".to_owned(), vec![self.vocab_size, d]));
        shapes
    }

    fn validate(&self) -> Result<()> {
        if self.model_type != "tiny-lm" {
            bail!(
                "config.json: model_type is {:?}, expected \"tiny-lm\"",
                self.model_type
            );
        }
        if self.vocab_size != VOCAB
            || self.d_model == 0
            || self.n_head == 0
            || !self.d_model.is_multiple_of(self.n_head)
        {
            bail!("config.json: vocab_size must be 256 and d_model a positive multiple of n_head");
        }
        Ok(())
    }
}

/// The model: a config and its parameters.
#[derive(Debug)]
pub struct Model {
    /// The shape.
    pub config: Config,
    /// Named trainable parameters.
    pub params: BTreeMap<String, Var>,
    device: Device,
}

/// Standard normal samples from a seeded stream (Box–Muller).
fn normal(rng: &mut ChaCha8Rng, n: usize, std: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f32 = rng.random::<f32>().max(f32::MIN_POSITIVE);
            let u2: f32 = rng.random();
            std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
        })
        .collect()
}

impl Model {
    /// Fresh weights from `seed`.
    pub fn init(config: Config, seed: u64) -> Result<Self> {
        config.validate()?;
        let device = Device::Cpu;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut params = BTreeMap::new();
        // GPT-2 style: N(0, 0.02), residual projections scaled by 1/sqrt(2 * layers).
        let residual_std = 0.02 / (2.0 * config.n_layer as f32).sqrt();
        for (name, shape) in config.parameter_shapes() {
            let n: usize = shape.iter().product();
            let data = if name.contains(".ln") || name.starts_with("ln_") {
                vec![1.0f32; n]
            } else if name.ends_with("proj.weight") {
                normal(&mut rng, n, residual_std)
            } else {
                normal(&mut rng, n, 0.02)
            };
            params.insert(name, Var::from_vec(data, shape, &device)?);
        }
        Ok(Self {
            config,
            params,
            device,
        })
    }

    /// Loads `config.json` and `model.safetensors` from a directory.
    pub fn load(dir: &Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).with_context(|| {
            format!(
                "reading {} (is {} a tiny-lm model directory?)",
                config_path.display(),
                dir.display()
            )
        })?;
        let config: Config = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a tiny-lm config", config_path.display()))?;
        config
            .validate()
            .with_context(|| config_path.display().to_string())?;
        let device = Device::Cpu;
        // The weights: safetensors, or a GGUF variant (`tiny-lm export`),
        // whose quantized tensors are dequantized to F32 as they load.
        let (weights, mut tensors) =
            if dir.join("model.safetensors").is_file() || !dir.join("model.gguf").is_file() {
                let weights = dir.join("model.safetensors");
                let tensors = candle_core::safetensors::load(&weights, &device)
                    .with_context(|| format!("reading {}", weights.display()))?;
                (weights, tensors)
            } else {
                let weights = dir.join("model.gguf");
                let tensors = load_gguf(&weights, &device)?;
                (weights, tensors)
            };
        let mut params = BTreeMap::new();
        for (name, shape) in config.parameter_shapes() {
            let tensor = tensors
                .remove(&name)
                .with_context(|| format!("{}: missing tensor {name}", weights.display()))?;
            if tensor.dims() != shape.as_slice() {
                bail!(
                    "{}: tensor {name} has shape {:?}, config says {:?}",
                    weights.display(),
                    tensor.dims(),
                    shape
                );
            }
            params.insert(name, Var::from_tensor(&tensor.to_dtype(DType::F32)?)?);
        }
        Ok(Self {
            config,
            params,
            device,
        })
    }

    /// The parameter tensors by name (for saving).
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.params
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    }

    /// Number of scalar parameters.
    pub fn parameter_count(&self) -> usize {
        self.params.values().map(|v| v.elem_count()).sum()
    }

    fn p(&self, name: &str) -> Result<&Tensor> {
        self.params
            .get(name)
            .map(|v| v.as_tensor())
            .with_context(|| format!("missing parameter {name}"))
    }

    /// Logits `[batch, time, vocab]` for input bytes `[batch, time]` (`time <= block_size`).
    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let (b, t) = input.dims2()?;
        let c = &self.config;
        if t > c.block_size {
            bail!(
                "input of {t} bytes is longer than the context ({})",
                c.block_size
            );
        }
        let (d, h) = (c.d_model, c.n_head);
        let hd = d / h;
        let tok = self
            .p("tok_emb.weight")?
            .embedding(&input.flatten_all()?)?
            .reshape((b, t, d))?;
        let pos = self.p("pos_emb.weight")?.narrow(0, 0, t)?;
        let mut x = tok.broadcast_add(&pos)?;
        let mask = causal_mask(t, &self.device)?;
        let scale = 1.0 / (hd as f64).sqrt();
        for l in 0..c.n_layer {
            let p = format!("blocks.{l}");
            let y = rms_norm(&x, self.p(&format!("{p}.ln1.weight"))?)?;
            let qkv = linear(&y, self.p(&format!("{p}.attn.qkv.weight"))?)?;
            let heads = |i: usize| -> Result<Tensor> {
                Ok(qkv
                    .narrow(D::Minus1, i * d, d)?
                    .reshape((b, t, h, hd))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let (q, k, v) = (heads(0)?, heads(1)?, heads(2)?);
            let att = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&mask)?;
            let att = candle_nn::ops::softmax(&att, D::Minus1)?;
            let y = att
                .matmul(&v)?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b, t, d))?;
            x = (x + linear(&y, self.p(&format!("{p}.attn.proj.weight"))?)?)?;
            let y = rms_norm(&x, self.p(&format!("{p}.ln2.weight"))?)?;
            let y = linear(&y, self.p(&format!("{p}.mlp.fc.weight"))?)?.relu()?;
            x = (x + linear(&y, self.p(&format!("{p}.mlp.proj.weight"))?)?)?;
        }
        let x = rms_norm(&x, self.p("ln_f.weight")?)?;
        Ok(linear(&x, self.p("head.weight")?)?)
    }

    /// Weighted mean cross-entropy (nats per byte) of predicting `targets`
    /// from `inputs`; `weights` (same shape as `targets`) is 0 for padding.
    pub fn loss(&self, inputs: &Tensor, targets: &Tensor, weights: &Tensor) -> Result<Tensor> {
        let total = f64::from(weights.sum_all()?.to_scalar::<f32>()?).max(1e-6);
        self.weighted_loss(inputs, targets, weights, total)
    }

    /// Weighted cross-entropy summed over this batch and divided by `total_weight`
    /// (the weight of the whole step when the batch is one shard of it).
    pub fn weighted_loss(
        &self,
        inputs: &Tensor,
        targets: &Tensor,
        weights: &Tensor,
        total_weight: f64,
    ) -> Result<Tensor> {
        let logits = self.forward(inputs)?;
        let (b, t, v) = logits.dims3()?;
        let logp = candle_nn::ops::log_softmax(&logits.reshape((b * t, v))?, D::Minus1)?;
        let picked = logp
            .gather(&targets.reshape((b * t, 1))?, 1)?
            .reshape(b * t)?;
        Ok(((picked * weights.reshape(b * t)?)?.sum_all()?.neg()? / total_weight)?)
    }

    /// Log-probabilities of the next byte after `context` (the last `block_size` bytes are used).
    pub fn next_logprobs(&self, context: &[u8]) -> Result<Vec<f32>> {
        let window = &context[context.len().saturating_sub(self.config.block_size)..];
        let window = if window.is_empty() {
            &b"\n"[..]
        } else {
            window
        };
        let ids: Vec<u32> = window.iter().map(|&b| u32::from(b)).collect();
        let input = Tensor::from_vec(ids, (1, window.len()), &self.device)?;
        let logits = self
            .forward(&input)?
            .narrow(1, window.len() - 1, 1)?
            .flatten_all()?;
        Ok(candle_nn::ops::log_softmax(&logits, 0)?.to_vec1()?)
    }

    /// Log-probability of each byte of `continuation` after `context`, and
    /// whether each was the greedy choice, from one forward pass over the last
    /// `block_size` bytes.
    pub fn continuation_logprobs(
        &self,
        context: &[u8],
        continuation: &[u8],
    ) -> Result<Vec<(f32, bool)>> {
        if continuation.is_empty() {
            return Ok(Vec::new());
        }
        if continuation.len() >= self.config.block_size {
            bail!(
                "continuation of {} bytes does not fit the {}-byte context",
                continuation.len(),
                self.config.block_size
            );
        }
        let mut text = context.to_vec();
        text.extend_from_slice(continuation);
        let window = &text[text.len().saturating_sub(self.config.block_size + 1)..];
        let (input, targets) = (&window[..window.len() - 1], &window[1..]);
        let ids: Vec<u32> = input.iter().map(|&b| u32::from(b)).collect();
        let t = ids.len();
        let logits = self
            .forward(&Tensor::from_vec(ids, (1, t), &self.device)?)?
            .squeeze(0)?;
        let logprobs = candle_nn::ops::log_softmax(&logits, D::Minus1)?.to_vec2::<f32>()?;
        let first = t - continuation.len();
        Ok((first..t)
            .map(|i| {
                let row = &logprobs[i];
                let target = targets[i];
                (row[usize::from(target)], argmax(row) == target)
            })
            .collect())
    }

    /// Generates up to `max_bytes` after `prompt`, stopping after a byte in
    /// `stop` (not included). `temperature == 0` is greedy. Calls `on_byte`
    /// with each byte as it is produced; returns the bytes and whether a stop
    /// byte ended generation.
    pub fn generate(
        &self,
        prompt: &[u8],
        max_bytes: usize,
        temperature: f64,
        rng: &mut ChaCha8Rng,
        mut on_byte: impl FnMut(u8) -> bool,
    ) -> Result<(Vec<u8>, bool)> {
        let mut text = prompt.to_vec();
        let mut out = Vec::new();
        for _ in 0..max_bytes {
            let logprobs = self.next_logprobs(&text)?;
            let byte = if temperature <= 0.0 {
                argmax(&logprobs)
            } else {
                sample(&logprobs, temperature, rng)
            };
            if byte == b'\n' {
                return Ok((out, true));
            }
            text.push(byte);
            out.push(byte);
            if !on_byte(byte) {
                break;
            }
        }
        Ok((out, false))
    }
}

fn argmax(logprobs: &[f32]) -> u8 {
    let mut best = 0;
    for (i, &lp) in logprobs.iter().enumerate() {
        if lp > logprobs[best] {
            best = i;
        }
    }
    u8::try_from(best).unwrap_or(b'?')
}

fn sample(logprobs: &[f32], temperature: f64, rng: &mut ChaCha8Rng) -> u8 {
    let weights: Vec<f64> = logprobs
        .iter()
        .map(|&lp| (f64::from(lp) / temperature).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        x -= w;
        if x <= 0.0 {
            return u8::try_from(i).unwrap_or(b'?');
        }
    }
    argmax(logprobs)
}

fn linear(x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
    x.broadcast_matmul(&weight.t()?)
}

fn rms_norm(x: &Tensor, weight: &Tensor) -> candle_core::Result<Tensor> {
    let mean_square = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(mean_square + 1e-5)?.sqrt()?)?
        .broadcast_mul(weight)
}

fn causal_mask(t: usize, device: &Device) -> candle_core::Result<Tensor> {
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..t).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(mask, (t, t), device)
}

/// Every tensor of a GGUF file, dequantized.
fn load_gguf(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    use candle_core::quantized::gguf_file;
    let mut file = std::io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    );
    let content = gguf_file::Content::read(&mut file)
        .with_context(|| format!("{}: not a GGUF file", path.display()))?;
    let mut tensors = HashMap::new();
    for name in content.tensor_infos.keys() {
        let tensor = content
            .tensor(&mut file, name, device)
            .and_then(|quantized| quantized.dequantize(device))
            .with_context(|| format!("{}: tensor {name}", path.display()))?;
        tensors.insert(name.clone(), tensor);
    }
    Ok(tensors)
}
