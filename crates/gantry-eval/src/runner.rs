//! `gantry eval`: run an eval set against an OpenAI-compatible endpoint and
//! write gantry-native results, one line per item and repeat.
//!
//! Requests go out with bounded concurrency, a timeout each, and retries with
//! full-jitter backoff on 429, 5xx and connection errors (honouring
//! `Retry-After`, through the same policy as gantry's forge calls). An item
//! whose every attempt failed is written with its error and no scores, so
//! eval-gate counts it against the candidate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_core::RetryPolicy;
use gantry_core::Secret;
use gantry_core::retry::{Answered, Attempt, retry};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, jsonl_lines, read_text};

/// A scorer: how a response is compared with the item's expected answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Scorer {
    /// The response equals `expected` exactly.
    Exact,
    /// Equal after lowercasing, trimming, dropping punctuation and collapsing spaces.
    NormalizedExact,
    /// The normalized response contains the normalized `expected`.
    Contains,
    /// `expected` (or the item's `pattern`) is a regular expression the response matches.
    Regex,
    /// Multiple choice: the response names the expected choice (its text or its letter).
    Choice,
    /// The response is valid JSON.
    JsonValid,
    /// The first number in the response is within the tolerance of `expected`.
    Numeric,
}

impl Scorer {
    /// Every scorer.
    pub const ALL: [Scorer; 7] = [
        Scorer::Exact,
        Scorer::NormalizedExact,
        Scorer::Contains,
        Scorer::Regex,
        Scorer::Choice,
        Scorer::JsonValid,
        Scorer::Numeric,
    ];

    /// The scorer whose results carry the metric `name`.
    pub fn from_name(name: &str) -> Option<Scorer> {
        Scorer::ALL.into_iter().find(|scorer| scorer.name() == name)
    }

    /// The metric name in results.
    pub fn name(self) -> &'static str {
        match self {
            Scorer::Exact => "exact",
            Scorer::NormalizedExact => "normalized_exact",
            Scorer::Contains => "contains",
            Scorer::Regex => "regex",
            Scorer::Choice => "choice",
            Scorer::JsonValid => "json_valid",
            Scorer::Numeric => "numeric",
        }
    }
}

/// Which endpoint to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST {endpoint}/chat/completions` with `messages`.
    Chat,
    /// `POST {endpoint}/completions` with `prompt`.
    Completions,
}

/// One eval item.
#[derive(Debug, Clone, Deserialize)]
pub struct Item {
    /// Stable id.
    pub id: Value,
    /// Task name (default `default`).
    #[serde(default)]
    pub task: Option<String>,
    /// Chat messages.
    #[serde(default)]
    pub messages: Option<Vec<Value>>,
    /// Or a plain prompt.
    #[serde(default)]
    pub prompt: Option<String>,
    /// The expected answer.
    #[serde(default)]
    pub expected: Option<Value>,
    /// Multiple-choice options.
    #[serde(default)]
    pub choices: Option<Vec<String>>,
    /// A regular expression for the `regex` scorer (else `expected` is the pattern).
    #[serde(default)]
    pub pattern: Option<String>,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Base URL, e.g. `http://127.0.0.1:8000/v1`.
    pub endpoint: String,
    /// Model name sent with each request.
    pub model: String,
    /// The eval items (JSONL).
    pub dataset: PathBuf,
    /// Scorers.
    pub scorers: Vec<Scorer>,
    /// Chat or completions.
    pub api: Api,
    /// Times each item is asked.
    pub repeats: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Timeout and retries.
    pub retry: RetryPolicy,
    /// `max_tokens` of each request.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f64,
    /// Relative tolerance of the `numeric` scorer.
    pub tolerance: f64,
    /// Bearer token, if the endpoint needs one.
    pub api_key: Option<Secret>,
}

/// One result line (gantry-native format).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemResult {
    /// Item id.
    pub id: String,
    /// Task.
    pub task: String,
    /// Repeat index (0-based).
    pub repeat: usize,
    /// `sha256:` of the request's prompt (messages or prompt, canonical JSON).
    pub prompt_hash: String,
    /// The model's answer.
    pub response: Option<String>,
    /// The expected answer.
    pub expected: Option<Value>,
    /// Scores by metric (`null` when the request failed).
    pub scores: BTreeMap<String, Option<f64>>,
    /// Milliseconds from sending to the full answer (the successful attempt).
    pub latency_ms: Option<f64>,
    /// Token usage as the endpoint reported it.
    pub tokens: Option<Value>,
    /// Attempts made.
    pub attempts: u32,
    /// Why no answer came back.
    pub error: Option<String>,
    /// The model asked.
    pub model: String,
}

/// What a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Items in the dataset.
    pub items: usize,
    /// Requests made (items × repeats).
    pub requests: usize,
    /// Requests that failed after every retry.
    pub errors: usize,
    /// Requests answered by an earlier, interrupted run (`--resume`).
    pub resumed: usize,
    /// Mean of each metric by task (over successful requests).
    pub metrics: BTreeMap<String, BTreeMap<String, f64>>,
    /// Median latency in milliseconds.
    pub latency_p50_ms: Option<f64>,
    /// 95th percentile latency in milliseconds.
    pub latency_p95_ms: Option<f64>,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// Reads eval items from JSONL.
pub fn read_items(path: &Path) -> Result<Vec<Item>> {
    let text = read_text(path)?;
    let mut items = Vec::new();
    let mut seen: std::collections::HashMap<(String, String), usize> =
        std::collections::HashMap::new();
    for (number, line) in jsonl_lines(&text) {
        let err = |message: String| Error::input(path, Some(number), message);
        let item: Item = serde_json::from_str(line).map_err(|e| {
            err(format!(
                "not an eval item: {}",
                crate::error::quoted_safely(&e)
            ))
        })?;
        if item.messages.is_none() && item.prompt.is_none() {
            return Err(err(
                "an item needs `messages` (chat) or `prompt` (text)".into()
            ));
        }
        if matches!(item.id, Value::Null | Value::Object(_) | Value::Array(_)) {
            return Err(err("`id` must be a string or a number".into()));
        }
        // Two items with one id would be averaged as repeats of one item.
        let id = id_text(&item.id);
        let task = item.task.clone().unwrap_or_default();
        if let Some(first) = seen.insert((task, id.clone()), number) {
            return Err(err(format!(
                "id `{id}` is also the id of the item on line {first}: ids are unique within a task (use --repeats to ask an item several times)"
            )));
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(Error::Input {
            path: path.to_owned(),
            line: None,
            message: "no eval items".into(),
        });
    }
    Ok(items)
}

fn normalize(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn expected_text(item: &Item) -> Option<String> {
    match item.expected.as_ref()? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn first_number(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let mut start = None;
    for (i, c) in text.char_indices() {
        let numeric = c.is_ascii_digit()
            || ((c == '-' || c == '+') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit));
        if numeric {
            start = Some(i);
            break;
        }
    }
    let start = start?;
    let end = text[start..]
        .char_indices()
        .skip(1)
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == 'E'))
        .map_or(text.len(), |(i, _)| start + i);
    text[start..end]
        .trim_end_matches('.')
        .replace(',', "")
        .parse()
        .ok()
}

/// Scores one response. `None`: the scorer does not apply (e.g. no expected answer).
pub fn score(
    scorer: Scorer,
    item: &Item,
    response: &str,
    tolerance: f64,
) -> Result<Option<f64>, String> {
    let hit = |b: bool| Some(if b { 1.0 } else { 0.0 });
    let expected = expected_text(item);
    Ok(match scorer {
        Scorer::Exact => expected.map(|e| response.trim() == e.trim()).and_then(hit),
        Scorer::NormalizedExact => expected
            .map(|e| normalize(response) == normalize(&e))
            .and_then(hit),
        Scorer::Contains => expected
            .map(|e| normalize(response).contains(&normalize(&e)))
            .and_then(hit),
        Scorer::Regex => {
            let Some(pattern) = item.pattern.clone().or(expected) else {
                return Ok(None);
            };
            let regex = regex::Regex::new(&pattern)
                .map_err(|e| format!("pattern {pattern:?} is not a regular expression: {e}"))?;
            hit(regex.is_match(response))
        }
        Scorer::Choice => {
            let (Some(expected), Some(choices)) = (expected, item.choices.as_ref()) else {
                return Ok(None);
            };
            let answer = normalize(response);
            let index = choices
                .iter()
                .position(|c| normalize(c) == normalize(&expected));
            let letter = index
                .and_then(|i| u8::try_from(i).ok())
                .map(|i| char::from(b'a' + i).to_string());
            let named = choices
                .iter()
                .filter(|c| {
                    answer == normalize(c) || answer.starts_with(&format!("{} ", normalize(c)))
                })
                .count();
            hit(answer == normalize(&expected)
                || letter
                    .as_deref()
                    .is_some_and(|l| answer == l || answer.starts_with(&format!("{l} ")))
                || (named == 1 && answer.starts_with(&normalize(&expected))))
        }
        Scorer::JsonValid => hit(serde_json::from_str::<Value>(response.trim()).is_ok()),
        Scorer::Numeric => {
            let Some(target) = expected.and_then(|e| first_number(&e)) else {
                return Ok(None);
            };
            hit(first_number(response)
                .is_some_and(|v| (v - target).abs() <= tolerance * target.abs().max(1.0)))
        }
    })
}

/// `sha256:` of the canonical JSON of an item's messages or prompt: what
/// results record as `prompt_hash`, so two runs can tell they asked the same.
pub fn prompt_hash(item: &Item) -> String {
    let value = match (&item.messages, &item.prompt) {
        (Some(m), _) => json!({ "messages": m }),
        (None, Some(p)) => json!({ "prompt": p }),
        (None, None) => Value::Null,
    };
    // serde_json sorts object keys: the hash does not depend on field order.
    let canonical = serde_json::to_string(&value).unwrap_or_default();
    format!("sha256:{:x}", Sha256::digest(canonical.as_bytes()))
}

fn request_body(options: &RunOptions, item: &Item) -> Value {
    match options.api {
        Api::Chat => {
            let messages = item.messages.clone().unwrap_or_else(|| {
                vec![json!({ "role": "user", "content": item.prompt.clone().unwrap_or_default() })]
            });
            json!({ "model": options.model, "messages": messages, "max_tokens": options.max_tokens, "temperature": options.temperature })
        }
        Api::Completions => {
            let prompt = item.prompt.clone().unwrap_or_else(|| {
                item.messages
                    .iter()
                    .flatten()
                    .filter_map(|m| m.get("content").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            json!({ "model": options.model, "prompt": prompt, "max_tokens": options.max_tokens, "temperature": options.temperature })
        }
    }
}

struct Answer {
    text: String,
    tokens: Option<Value>,
    latency_ms: f64,
}

/// One answer of the endpoint, read whole.
struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
    latency_ms: f64,
}

/// Calls the endpoint for one item through gantry's retry loop.
async fn ask(
    client: &reqwest::Client,
    options: &RunOptions,
    url: &str,
    body: &Value,
) -> (std::result::Result<Answer, String>, u32) {
    let answered = retry(
        &options.retry,
        || async {
            let mut request = client.post(url).json(body).timeout(options.retry.timeout);
            if let Some(key) = &options.api_key {
                request = request.bearer_auth(key.expose());
            }
            let started = Instant::now();
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    let text = response.text().await.unwrap_or_default();
                    Attempt::Answer(Reply {
                        status,
                        headers,
                        text,
                        latency_ms: started.elapsed().as_secs_f64() * 1000.0,
                    })
                }
                Err(error) if error.is_builder() => Attempt::Fatal(error),
                Err(error) => Attempt::Failed(error),
            }
        },
        |reply| (reply.status, &reply.headers),
        tokio::time::sleep,
    )
    .await;
    let answered = match answered {
        Ok(answered) => answered,
        Err(failed) => {
            let reason = gantry_core::transport_reason(&failed.error);
            return (
                Err(format!(
                    "POST {url}: {reason} after {} attempts",
                    failed.attempts
                )),
                failed.attempts,
            );
        }
    };
    let Answered {
        answer: reply,
        attempts,
        note,
    } = answered;
    if (200..300).contains(&reply.status) {
        return match parse_answer(options.api, &reply.text) {
            Ok((content, tokens)) => (
                Ok(Answer {
                    text: content,
                    tokens,
                    latency_ms: reply.latency_ms,
                }),
                attempts,
            ),
            Err(e) => (Err(format!("POST {url}: {e}")), attempts),
        };
    }
    let message = serde_json::from_str::<Value>(&reply.text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| reply.text.chars().take(200).collect());
    let failure = format!("POST {url}: HTTP {}: {message}", reply.status);
    let failure = match note {
        Some(note) => format!("{failure} ({note})"),
        None if attempts > 1 => format!("{failure} after {attempts} attempts"),
        None => failure,
    };
    (Err(failure), attempts)
}

fn parse_answer(api: Api, text: &str) -> std::result::Result<(String, Option<Value>), String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let choice = &value["choices"][0];
    let content = match api {
        Api::Chat => choice["message"]["content"].as_str(),
        Api::Completions => choice["text"].as_str(),
    }
    .ok_or_else(|| "the answer has no choices[0] text".to_owned())?;
    Ok((content.to_owned(), value.get("usage").cloned()))
}

fn id_text(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn item_result(
    options: &RunOptions,
    item: &Item,
    repeat: usize,
    answer: std::result::Result<Answer, String>,
    attempts: u32,
) -> Result<ItemResult> {
    let mut scores = BTreeMap::new();
    let (response, latency_ms, tokens, error) = match answer {
        Ok(answer) => {
            for scorer in &options.scorers {
                let value =
                    score(*scorer, item, &answer.text, options.tolerance).map_err(|message| {
                        Error::Input {
                            path: options.dataset.clone(),
                            line: None,
                            message: format!("item {}: {message}", id_text(&item.id)),
                        }
                    })?;
                if let Some(value) = value {
                    scores.insert(scorer.name().to_owned(), Some(value));
                }
            }
            (
                Some(answer.text),
                Some(answer.latency_ms),
                answer.tokens,
                None,
            )
        }
        Err(error) => {
            for scorer in &options.scorers {
                scores.insert(scorer.name().to_owned(), None);
            }
            (None, None, None, Some(error))
        }
    };
    Ok(ItemResult {
        id: id_text(&item.id),
        task: item.task.clone().unwrap_or_else(|| "default".into()),
        repeat,
        prompt_hash: prompt_hash(item),
        response,
        expected: item.expected.clone(),
        scores,
        latency_ms,
        tokens,
        attempts,
        error,
        model: options.model.clone(),
    })
}

/// Where results are appended as they complete, so an interrupted run loses
/// at most the requests in flight and `--resume` asks only what is missing.
pub struct Journal<'a> {
    /// The JSONL file appended to (one whole line per result, flushed).
    pub path: PathBuf,
    /// Keep the successful results already in it and skip those requests.
    pub resume: bool,
    /// Every line passes through it before it is written: answers can
    /// quote anything, a key included. Redacted value by value, so every
    /// line stays valid JSON.
    pub redactor: &'a gantry_core::Redactor,
}

impl std::fmt::Debug for Journal<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.path)
            .field("resume", &self.resume)
            .finish()
    }
}

/// Successful results already in a journal, by (id, repeat). A torn last line
/// (an interrupted write) does not parse and is asked again.
fn journaled(path: &Path) -> Result<BTreeMap<(String, usize), ItemResult>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(Error::Read {
                path: path.to_owned(),
                error: source,
            });
        }
    };
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<ItemResult>(line).ok())
        .filter(|r| r.error.is_none())
        .map(|r| ((r.id.clone(), r.repeat), r))
        .collect())
}

/// The endpoint's URL with `path` appended to its path, its query kept:
/// Azure OpenAI's `…/deployments/NAME?api-version=2024-10-21` becomes
/// `…/deployments/NAME/chat/completions?api-version=2024-10-21`.
pub fn request_url(endpoint: &str, path: &str) -> std::result::Result<String, String> {
    let mut url = reqwest::Url::parse(endpoint).map_err(|error| {
        format!(
            "endpoint {endpoint:?} is not a URL ({error}); expected e.g. http://127.0.0.1:8000/v1"
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "endpoint {endpoint:?}: expected an http:// or https:// URL"
        ));
    }
    let joined = format!("{}/{path}", url.path().trim_end_matches('/'));
    url.set_path(&joined);
    Ok(url.to_string())
}

/// Runs every item `repeats` times and returns the results in dataset order.
pub fn run(
    options: &RunOptions,
    journal: Option<&Journal<'_>>,
) -> Result<(Vec<ItemResult>, RunSummary)> {
    use std::io::Write as _;
    let items = read_items(&options.dataset)?;
    let mut done = match journal {
        Some(j) if j.resume => journaled(&j.path)?,
        _ => BTreeMap::new(),
    };
    let mut sink = match journal {
        Some(j) => {
            if let Some(parent) = j.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|source| Error::Write {
                    path: parent.to_owned(),
                    error: source,
                })?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(j.resume)
                .write(true)
                .truncate(!j.resume)
                .open(&j.path)
                .map_err(|source| Error::Write {
                    path: j.path.clone(),
                    error: source,
                })?;
            Some((file, j))
        }
        None => None,
    };
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Unreachable {
            message: format!("cannot start the HTTP runtime: {e}"),
        })?;
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::Input {
            path: options.dataset.clone(),
            line: None,
            message: format!("HTTP client: {e}"),
        })?;
    let url = request_url(
        &options.endpoint,
        match options.api {
            Api::Chat => "chat/completions",
            Api::Completions => "completions",
        },
    )
    .map_err(|message| Error::Unreachable { message })?;
    let items = Arc::new(items);
    let all_jobs: Vec<(usize, usize)> = (0..items.len())
        .flat_map(|i| (0..options.repeats.max(1)).map(move |r| (i, r)))
        .collect();
    let resumed: Vec<(usize, ItemResult)> = all_jobs
        .iter()
        .enumerate()
        .filter_map(|(order, &(i, r))| {
            done.remove(&(id_text(&items[i].id), r))
                .map(|result| (order, result))
        })
        .collect();
    let kept: std::collections::HashSet<usize> = resumed.iter().map(|(order, _)| *order).collect();
    let jobs: Vec<(usize, (usize, usize))> = all_jobs
        .iter()
        .copied()
        .enumerate()
        .filter(|(order, _)| !kept.contains(order))
        .collect();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(options.concurrency.max(1)));
    let answers = runtime.block_on(async {
        let mut handles = Vec::with_capacity(jobs.len());
        for &(_, (index, _)) in &jobs {
            let permit = Arc::clone(&semaphore);
            let client = client.clone();
            let options = options.clone();
            let url = url.clone();
            let body = request_body(&options, &items[index]);
            handles.push(tokio::spawn(async move {
                let _permit = permit.acquire_owned().await;
                ask(&client, &options, &url, &body).await
            }));
        }
        let mut built: Vec<(usize, ItemResult)> = Vec::with_capacity(handles.len());
        for (handle, &(order, (index, repeat))) in handles.into_iter().zip(&jobs) {
            let (answer, attempts) = handle
                .await
                .unwrap_or_else(|e| (Err(format!("request task failed: {e}")), 0));
            let result = item_result(options, &items[index], repeat, answer, attempts)?;
            if let Some((file, journal)) = sink.as_mut() {
                let line = journal.redactor.to_json_line(&result).unwrap_or_default() + "\n";
                // One write of a whole line, flushed: a crash tears at most this line.
                file.write_all(line.as_bytes())
                    .and_then(|()| file.flush())
                    .map_err(|source| Error::Write {
                        path: journal.path.clone(),
                        error: source,
                    })?;
            }
            built.push((order, result));
        }
        Ok::<_, Error>(built)
    })?;
    let resumed_count = resumed.len();
    let mut ordered: Vec<(usize, ItemResult)> = resumed.into_iter().chain(answers).collect();
    ordered.sort_by_key(|(order, _)| *order);
    let results: Vec<ItemResult> = ordered.into_iter().map(|(_, r)| r).collect();
    let mut latencies: Vec<f64> = results.iter().filter_map(|r| r.latency_ms).collect();
    let errors = results.iter().filter(|r| r.error.is_some()).count();
    if errors == results.len() {
        let first = results
            .first()
            .and_then(|r| r.error.clone())
            .unwrap_or_default();
        return Err(Error::Unreachable {
            message: format!("every request failed; the first: {first}"),
        });
    }
    let mut sums: BTreeMap<String, BTreeMap<String, (f64, usize)>> = BTreeMap::new();
    for result in &results {
        for (metric, value) in &result.scores {
            if let Some(v) = value {
                let entry = sums
                    .entry(result.task.clone())
                    .or_default()
                    .entry(metric.clone())
                    .or_default();
                entry.0 += v;
                entry.1 += 1;
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        (!latencies.is_empty())
            .then(|| latencies[((latencies.len() - 1) as f64 * q).round() as usize])
    };
    let summary = RunSummary {
        items: items.len(),
        requests: results.len(),
        errors,
        resumed: resumed_count,
        metrics: sums
            .into_iter()
            .map(|(task, metrics)| {
                (
                    task,
                    metrics
                        .into_iter()
                        .map(|(m, (s, n))| (m, s / n.max(1) as f64))
                        .collect(),
                )
            })
            .collect(),
        latency_p50_ms: quantile(0.5),
        latency_p95_ms: quantile(0.95),
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok((results, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(expected: &str, choices: Option<Vec<&str>>) -> Item {
        Item {
            id: json!("x"),
            task: None,
            messages: None,
            prompt: Some("q".into()),
            expected: Some(json!(expected)),
            choices: choices.map(|c| c.into_iter().map(str::to_owned).collect()),
            pattern: None,
        }
    }

    #[test]
    fn scorers() {
        let s = |scorer, item: &Item, response| score(scorer, item, response, 1e-6).ok().flatten();
        let paris = item("Paris", None);
        assert_eq!(s(Scorer::Exact, &paris, " Paris "), Some(1.0));
        assert_eq!(s(Scorer::Exact, &paris, "paris"), Some(0.0));
        assert_eq!(s(Scorer::NormalizedExact, &paris, "paris."), Some(1.0));
        assert_eq!(
            s(Scorer::Contains, &paris, "It is Paris, of course"),
            Some(1.0)
        );
        assert_eq!(
            s(Scorer::Regex, &item("^P[a-z]+s$", None), "Paris"),
            Some(1.0)
        );
        let choice = item("Lyon", Some(vec!["Paris", "Lyon", "Nice"]));
        assert_eq!(s(Scorer::Choice, &choice, "B"), Some(1.0));
        assert_eq!(s(Scorer::Choice, &choice, "b) Lyon"), Some(1.0));
        assert_eq!(s(Scorer::Choice, &choice, "Lyon"), Some(1.0));
        assert_eq!(s(Scorer::Choice, &choice, "A"), Some(0.0));
        assert_eq!(s(Scorer::JsonValid, &paris, "{\"a\": 1}"), Some(1.0));
        assert_eq!(s(Scorer::JsonValid, &paris, "{a: 1}"), Some(0.0));
        assert_eq!(
            s(Scorer::Numeric, &item("42", None), "The answer is 42."),
            Some(1.0)
        );
        assert_eq!(
            s(Scorer::Numeric, &item("-3.5", None), "x = -3.5"),
            Some(1.0)
        );
        assert_eq!(s(Scorer::Numeric, &item("42", None), "41"), Some(0.0));
        assert!(score(Scorer::Regex, &item("(", None), "x", 0.0).is_err());
    }
}

#[cfg(test)]
mod endpoint_tests {
    #[test]
    fn paths_go_before_the_query() {
        for (endpoint, expected) in [
            (
                "http://127.0.0.1:8000/v1",
                "http://127.0.0.1:8000/v1/chat/completions",
            ),
            (
                "http://127.0.0.1:8000/v1/",
                "http://127.0.0.1:8000/v1/chat/completions",
            ),
            (
                "https://res.openai.azure.com/openai/deployments/gpt?api-version=2024-10-21",
                "https://res.openai.azure.com/openai/deployments/gpt/chat/completions?api-version=2024-10-21",
            ),
        ] {
            assert_eq!(
                super::request_url(endpoint, "chat/completions").expect("a URL"),
                expected
            );
        }
        assert!(super::request_url("not a url", "completions").is_err());
        assert!(super::request_url("ftp://host/v1", "completions").is_err());
    }
}
