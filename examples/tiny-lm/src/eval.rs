//! `tiny-lm eval`: scores a model on eval items.
//!
//! Metrics per item: `exact_match` (greedy answer equals the expected one),
//! `acc` (multiple choice by log-likelihood, as lm-evaluation-harness does)
//! and `logprob` (mean log-probability per byte of the expected answer).
//!
//! Writes gantry-native results JSONL and, optionally, files shaped like
//! lm-evaluation-harness's `results_<ts>.json` and `samples_<task>_<ts>.jsonl`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::chat::render_prompt;
use crate::data::{EvalItem, read_eval_items};
use crate::model::Model;

/// Flags of `tiny-lm eval`.
#[derive(Debug)]
pub struct EvalOptions {
    /// Model directory.
    pub model: PathBuf,
    /// Eval items.
    pub data: PathBuf,
    /// Native results JSONL.
    pub out: PathBuf,
    /// Directory for lm-eval-shaped files.
    pub lm_eval_dir: Option<PathBuf>,
    /// Model name recorded in the results.
    pub model_name: String,
    /// Only the first N items.
    pub limit: Option<usize>,
}

/// Means per task and overall.
#[derive(Debug, Serialize)]
pub struct EvalSummary {
    /// Items scored.
    pub items: usize,
    /// Mean of each metric over all items.
    pub metrics: BTreeMap<String, f64>,
    /// Mean of each metric per task.
    pub tasks: BTreeMap<String, BTreeMap<String, f64>>,
    /// Files written.
    pub files: Vec<PathBuf>,
}

struct Scored {
    item: EvalItem,
    prompt: Vec<u8>,
    response: String,
    exact_match: f64,
    acc: f64,
    logprob: f64,
    choice_logprobs: Vec<(f64, bool)>,
    latency_ms: f64,
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

fn score(model: &Model, item: EvalItem) -> Result<Scored> {
    let started = Instant::now();
    let prompt = render_prompt(&item.messages);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (bytes, _) = model.generate(&prompt, 48, 0.0, &mut rng, |_| true)?;
    let response = String::from_utf8_lossy(&bytes).trim().to_owned();
    let exact_match = f64::from(u8::from(response == item.expected.trim()));
    let mut choice_logprobs = Vec::with_capacity(item.choices.len());
    for choice in &item.choices {
        let continuation = format!("{choice}\n");
        let lps = model.continuation_logprobs(&prompt, continuation.as_bytes())?;
        let total: f64 = lps.iter().map(|(lp, _)| f64::from(*lp)).sum();
        choice_logprobs.push((total, lps.iter().all(|(_, greedy)| *greedy)));
    }
    let best = choice_logprobs
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.0.total_cmp(&b.1.0))
        .map(|(i, _)| i);
    let acc = f64::from(u8::from(
        best.is_some_and(|i| item.choices[i] == item.expected),
    ));
    let expected = format!("{}\n", item.expected);
    let lps = model.continuation_logprobs(&prompt, expected.as_bytes())?;
    let logprob = lps.iter().map(|(lp, _)| f64::from(*lp)).sum::<f64>() / lps.len().max(1) as f64;
    Ok(Scored {
        item,
        prompt,
        response,
        exact_match,
        acc,
        logprob,
        choice_logprobs,
        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
    })
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// Sample standard error of the mean, as lm-evaluation-harness reports it.
fn stderr(values: &[f64]) -> serde_json::Value {
    if values.len() < 2 {
        return json!("N/A");
    }
    let m = mean(values.iter().copied());
    let var = values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
    json!((var / values.len() as f64).sqrt())
}

/// Runs the evaluation and writes the results files.
pub fn evaluate(options: &EvalOptions) -> Result<EvalSummary> {
    let model = Model::load(&options.model)?;
    let mut items = read_eval_items(&options.data)?;
    if let Some(limit) = options.limit {
        items.truncate(limit);
    }
    let scored = items
        .into_iter()
        .map(|item| score(&model, item))
        .collect::<Result<Vec<_>>>()?;

    if let Some(parent) = options.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut out = BufWriter::new(
        File::create(&options.out)
            .with_context(|| format!("creating {}", options.out.display()))?,
    );
    for s in &scored {
        let line = json!({
            "id": s.item.id,
            "task": s.item.task,
            "prompt_hash": format!("sha256:{}", sha256_hex(&s.prompt)),
            "response": s.response,
            "expected": s.item.expected,
            "scores": { "exact_match": s.exact_match, "acc": s.acc, "logprob": s.logprob },
            "latency_ms": s.latency_ms,
            "tokens": { "prompt": s.prompt.len(), "completion": s.response.len() },
            "error": null,
            "model": options.model_name,
        });
        writeln!(out, "{line}")?;
    }
    out.flush()?;
    let mut files = vec![options.out.clone()];

    let mut by_task: BTreeMap<String, Vec<&Scored>> = BTreeMap::new();
    for s in &scored {
        by_task.entry(s.item.task.clone()).or_default().push(s);
    }
    let metric_means = |group: &[&Scored]| -> BTreeMap<String, f64> {
        [
            ("exact_match", mean(group.iter().map(|s| s.exact_match))),
            ("acc", mean(group.iter().map(|s| s.acc))),
            ("logprob", mean(group.iter().map(|s| s.logprob))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    };
    let all: Vec<&Scored> = scored.iter().collect();
    let summary_tasks = by_task
        .iter()
        .map(|(task, group)| (task.clone(), metric_means(group)))
        .collect();

    if let Some(dir) = &options.lm_eval_dir {
        files.extend(write_lm_eval(dir, options, &model, &by_task)?);
    }
    Ok(EvalSummary {
        items: scored.len(),
        metrics: metric_means(&all),
        tasks: summary_tasks,
        files,
    })
}

fn write_lm_eval(
    dir: &Path,
    options: &EvalOptions,
    model: &Model,
    by_task: &BTreeMap<String, Vec<&Scored>>,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ts = chrono::Utc::now()
        .format("%Y-%m-%dT%H-%M-%S%.6f")
        .to_string();
    let mut files = Vec::new();
    let mut results = serde_json::Map::new();
    let mut configs = serde_json::Map::new();
    let mut versions = serde_json::Map::new();
    let mut n_shot = serde_json::Map::new();
    let mut higher = serde_json::Map::new();
    let mut n_samples = serde_json::Map::new();
    let mut task_hashes = serde_json::Map::new();
    for (task, group) in by_task {
        let name = format!("tiny_{task}");
        let acc: Vec<f64> = group.iter().map(|s| s.acc).collect();
        let em: Vec<f64> = group.iter().map(|s| s.exact_match).collect();
        results.insert(
            name.clone(),
            json!({
                "alias": name,
                "sample_len": group.len(),
                "acc,none": mean(acc.iter().copied()),
                "acc_stderr,none": stderr(&acc),
                "exact_match,none": mean(em.iter().copied()),
                "exact_match_stderr,none": stderr(&em),
            }),
        );
        configs.insert(
            name.clone(),
            json!({ "task": name, "output_type": "multiple_choice", "num_fewshot": 0 }),
        );
        versions.insert(name.clone(), json!(1.0));
        n_shot.insert(name.clone(), json!(0));
        higher.insert(name.clone(), json!({ "acc": true, "exact_match": true }));
        n_samples.insert(
            name.clone(),
            json!({ "original": group.len(), "effective": group.len() }),
        );
        let mut task_hasher = Sha256::new();
        let path = dir.join(format!("samples_{name}_{ts}.jsonl"));
        let mut out = BufWriter::new(
            File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        );
        for (doc_id, s) in group.iter().enumerate() {
            let doc = json!({ "id": s.item.id, "messages": s.item.messages, "choices": s.item.choices, "expected": s.item.expected });
            let doc_hash = sha256_hex(serde_json::to_string(&doc)?.as_bytes());
            task_hasher.update(doc_hash.as_bytes());
            let ctx = String::from_utf8_lossy(&s.prompt).into_owned();
            let arguments: serde_json::Map<String, serde_json::Value> = s
                .item
                .choices
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    (
                        format!("gen_args_{i}"),
                        json!({ "arg_0": ctx, "arg_1": format!("{c}\n") }),
                    )
                })
                .collect();
            let resps: Vec<serde_json::Value> = s
                .choice_logprobs
                .iter()
                .map(|(lp, greedy)| {
                    json!([[lp.to_string(), if *greedy { "True" } else { "False" }]])
                })
                .collect();
            let filtered: Vec<serde_json::Value> = s
                .choice_logprobs
                .iter()
                .map(|(lp, greedy)| json!([lp.to_string(), if *greedy { "True" } else { "False" }]))
                .collect();
            let line = json!({
                "doc_id": doc_id,
                "doc": doc,
                "target": s.item.expected,
                "arguments": arguments,
                "resps": resps,
                "filtered_resps": filtered,
                "filter": "none",
                "metrics": ["acc", "exact_match"],
                "doc_hash": doc_hash,
                "prompt_hash": sha256_hex(&s.prompt),
                "target_hash": sha256_hex(s.item.expected.as_bytes()),
                "acc": s.acc,
                "exact_match": s.exact_match,
            });
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        files.push(path);
        task_hashes.insert(name, json!(format!("{:x}", task_hasher.finalize())));
    }
    let weights = options.model.join("model.safetensors");
    let model_sha = File::open(&weights)
        .and_then(|mut f| {
            let mut h = Sha256::new();
            std::io::copy(&mut f, &mut h)?;
            Ok(format!("{:x}", h.finalize()))
        })
        .unwrap_or_default();
    let doc = json!({
        "results": results,
        "groups": {},
        "group_subtasks": {},
        "configs": configs,
        "versions": versions,
        "n-shot": n_shot,
        "higher_is_better": higher,
        "n-samples": n_samples,
        "config": {
            "model": "tiny-lm",
            "model_args": format!("pretrained={}", options.model.display()),
            "model_num_parameters": model.parameter_count(),
            "model_sha": model_sha,
            "batch_size": 1,
            "limit": options.limit,
            "bootstrap_iters": 0,
            "random_seed": 0,
        },
        "task_hashes": task_hashes,
        "git_hash": null,
        "lm_eval_version": format!("tiny-lm {} (lm-evaluation-harness 0.4 results shape)", env!("CARGO_PKG_VERSION")),
        "model_name": options.model_name,
        "chat_template_sha": null,
    });
    let path = dir.join(format!("results_{ts}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&doc)?)
        .with_context(|| format!("writing {}", path.display()))?;
    files.insert(0, path);
    Ok(files)
}
