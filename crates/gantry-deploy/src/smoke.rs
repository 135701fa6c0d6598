//! Smoke traffic: requests made from an eval set and sent through the
//! router at a steady rate during each window, for low-traffic services,
//! tests and the quickstart; with a scorer, their answers are scored
//! against the items' expected answers (the quality probe).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::VERSION_HEADER;
use crate::error::{Error, Result};

/// One smoke request: a path and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct SmokeRequest {
    /// `/v1/chat/completions` or `/v1/completions`.
    pub path: &'static str,
    /// The body sent.
    pub body: Value,
    /// The eval item it came from (its `expected` answer scores the reply).
    pub item: Value,
}

/// Scores a smoke answer against its eval item: the quality probe (the CLI
/// wires eval-gate's scorers in).
pub trait SmokeScorer: Send + Sync {
    /// The score of `answer` (0 to 1), or `None` when the item has nothing to score against.
    fn score(&self, item: &Value, answer: &str) -> Option<f64>;
    /// The scorer's name, for reports.
    fn name(&self) -> &str;
}

/// Reads an eval set (JSONL with `messages` or `prompt`) as smoke requests.
pub fn load_smoke(path: &Path) -> Result<Vec<SmokeRequest>> {
    let text = std::fs::read_to_string(path).map_err(Error::io("cannot read", path))?;
    let mut requests = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), index + 1);
        let item: Value = serde_json::from_str(line)
            .map_err(|error| Error::Input(format!("{at}: not JSON: {error}")))?;
        let request = if let Some(messages) = item.get("messages").filter(|m| m.is_array()) {
            SmokeRequest {
                path: "/v1/chat/completions",
                body: json!({ "messages": messages, "max_tokens": 16, "stream": true }),
                item: item.clone(),
            }
        } else if let Some(prompt) = item.get("prompt").and_then(Value::as_str) {
            SmokeRequest {
                path: "/v1/completions",
                body: json!({ "prompt": prompt, "max_tokens": 16, "stream": true }),
                item: item.clone(),
            }
        } else {
            return Err(Error::Input(format!(
                "{at}: a smoke request needs `messages` (an array) or `prompt` (a string)"
            )));
        };
        requests.push(request);
    }
    if requests.is_empty() {
        return Err(Error::Input(format!(
            "{}: no requests in the file",
            path.display()
        )));
    }
    Ok(requests)
}

/// Smoke traffic: requests from an eval set, sent at a steady rate.
#[derive(Clone)]
pub struct Smoke {
    /// The requests, sent round-robin.
    pub requests: Vec<SmokeRequest>,
    /// Requests per second.
    pub rps: f64,
    /// Scores the answers (the smoke-quality check), if given.
    pub scorer: Option<Arc<dyn SmokeScorer>>,
}

impl std::fmt::Debug for Smoke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smoke")
            .field("requests", &self.requests.len())
            .field("rps", &self.rps)
            .field(
                "scorer",
                &self.scorer.as_ref().map(|scorer| scorer.name().to_owned()),
            )
            .finish()
    }
}

/// The answer text of a reply: a stream's deltas (or texts) joined, or a
/// whole reply's message content (or text).
pub fn answer_text(body: &str) -> String {
    let piece = |value: &Value| -> Option<String> {
        let choice = value.get("choices")?.get(0)?;
        choice
            .get("delta")
            .and_then(|delta| delta.get("content"))
            .or_else(|| {
                choice
                    .get("message")
                    .and_then(|message| message.get("content"))
            })
            .or_else(|| choice.get("text"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if body.trim_start().starts_with('{') {
        return serde_json::from_str::<Value>(body)
            .ok()
            .as_ref()
            .and_then(piece)
            .unwrap_or_default();
    }
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .map(str::trim)
        .filter(|payload| *payload != "[DONE]")
        .filter_map(|payload| serde_json::from_str::<Value>(payload).ok())
        .filter_map(|value| piece(&value))
        .collect()
}

/// Scores of smoke answers, by the version that answered.
pub(crate) type Scores = BTreeMap<String, Vec<f64>>;

/// Sends smoke requests to the router until told to stop; answers the
/// scores of the replies by version (empty without a scorer).
pub(crate) fn start_smoke(
    http: reqwest::Client,
    base: String,
    smoke: Smoke,
    pin: Option<String>,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Scores>,
) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let scores: Arc<std::sync::Mutex<Scores>> = Arc::default();
        let limit = Arc::new(tokio::sync::Semaphore::new(64));
        let period = Duration::from_secs_f64(1.0 / smoke.rps.max(0.01));
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut index = 0;
        let mut running = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stopped.wait_for(|stop| *stop) => break,
            }
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                continue;
            };
            let request = smoke.requests[index % smoke.requests.len()].clone();
            index += 1;
            let mut builder = http
                .post(format!("{base}{}", request.path))
                .json(&request.body)
                .timeout(Duration::from_secs(60));
            if let Some(version) = &pin {
                builder = builder.header(VERSION_HEADER, version);
            }
            let scorer = smoke.scorer.clone();
            let scores = scores.clone();
            running.spawn(async move {
                if let Ok(response) = builder.send().await {
                    let version = response
                        .headers()
                        .get(VERSION_HEADER)
                        .and_then(|value| value.to_str().ok())
                        .map(str::to_owned);
                    let ok = response.status().is_success();
                    let body = response.text().await.unwrap_or_default();
                    if let (Some(scorer), Some(version), true) = (scorer, version, ok)
                        && let Some(score) = scorer.score(&request.item, &answer_text(&body))
                    {
                        scores
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .entry(version)
                            .or_default()
                            .push(score);
                    }
                }
                drop(permit);
            });
        }
        // Let requests under way finish so the window counts them.
        while running.join_next().await.is_some() {}
        std::mem::take(
            &mut *scores
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    });
    (stop, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_from_streams_and_whole_replies() {
        let stream = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"Par\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"is\"}}]}\n\ndata: [DONE]\n\n";
        assert_eq!(answer_text(stream), "Paris");
        assert_eq!(
            answer_text(r#"{"choices":[{"message":{"content":"Rome"}}]}"#),
            "Rome"
        );
        assert_eq!(
            answer_text("data: {\"choices\":[{\"text\":\"4\"}]}\n\n"),
            "4"
        );
    }

    #[test]
    fn smoke_requests_come_from_an_eval_set() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("eval.jsonl");
        std::fs::write(
            &path,
            "{\"id\": 1, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n\n{\"id\": 2, \"prompt\": \"2+2=\"}\n",
        )
        .expect("write");
        let requests = load_smoke(&path).expect("loads");
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].path, "/v1/chat/completions");
        assert_eq!(requests[1].body["prompt"], "2+2=");
        assert_eq!(requests[1].item["id"], 2);
        std::fs::write(&path, "{\"id\": 3}\n").expect("write");
        let error = load_smoke(&path).expect_err("no prompt").to_string();
        assert!(error.contains("eval.jsonl:1"), "{error}");
    }
}
