//! `tiny-lm serve`: an OpenAI-compatible HTTP server.
//!
//! `/v1/chat/completions` and `/v1/completions` (both with SSE streaming),
//! `/v1/models`, `/health`, and `/metrics` in the OpenMetrics text format with
//! vLLM's metric names (`vllm:e2e_request_latency_seconds`,
//! `vllm:time_to_first_token_seconds`, `vllm:request_success_total`, …), so a
//! canary analysis written against vLLM works against this server unchanged.
//! One byte is one token.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::chat::{render_completion_prompt, render_prompt};
use crate::data::Message;
use crate::model::Model;

/// Flags of `tiny-lm serve`.
#[derive(Debug)]
pub struct ServeOptions {
    /// Model directory.
    pub model: std::path::PathBuf,
    /// Listen address.
    pub host: String,
    /// Listen port (0: any free port).
    pub port: u16,
    /// Name under `/v1/models`.
    pub served_model_name: String,
    /// Fraction of requests failed with HTTP 500.
    pub inject_error_rate: f64,
    /// Extra latency before the first token.
    pub inject_latency_ms: u64,
    /// Fraction of requests answered with an empty completion.
    pub inject_empty_rate: f64,
    /// Seed for sampling and fault injection.
    pub seed: u64,
}

type Labels = Vec<(String, String)>;

/// Latency buckets in seconds: this model answers in milliseconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

struct Metrics {
    registry: Registry,
    e2e: Family<Labels, Histogram, fn() -> Histogram>,
    ttft: Family<Labels, Histogram, fn() -> Histogram>,
    itl: Family<Labels, Histogram, fn() -> Histogram>,
    success: Family<Labels, Counter>,
    failure: Family<Labels, Counter>,
    prompt_tokens: Family<Labels, Counter>,
    generation_tokens: Family<Labels, Counter>,
    running: Family<Labels, Gauge>,
    /// vLLM's HTTP outcome counter (prometheus-fastapi-instrumentator's
    /// `http_requests_total{handler, method, status}`, status as `2xx`, `5xx`).
    http_requests: Family<Labels, Counter>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let e2e = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            histogram as fn() -> Histogram,
        );
        let ttft = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            histogram as fn() -> Histogram,
        );
        let itl = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            histogram as fn() -> Histogram,
        );
        let success = Family::<Labels, Counter>::default();
        let failure = Family::<Labels, Counter>::default();
        let prompt_tokens = Family::<Labels, Counter>::default();
        let generation_tokens = Family::<Labels, Counter>::default();
        let running = Family::<Labels, Gauge>::default();
        let http_requests = Family::<Labels, Counter>::default();
        registry.register(
            "http_requests",
            "Total number of requests by method, status and handler",
            http_requests.clone(),
        );
        registry.register(
            "vllm:e2e_request_latency_seconds",
            "End-to-end request latency in seconds",
            e2e.clone(),
        );
        registry.register(
            "vllm:time_to_first_token_seconds",
            "Time to first token in seconds",
            ttft.clone(),
        );
        registry.register(
            "vllm:inter_token_latency_seconds",
            "Latency between output tokens in seconds",
            itl.clone(),
        );
        registry.register(
            "vllm:request_success",
            "Finished requests by finish reason",
            success.clone(),
        );
        registry.register(
            "tiny_lm:request_failure",
            "Requests answered with an HTTP error, by status code and reason",
            failure.clone(),
        );
        registry.register(
            "vllm:prompt_tokens",
            "Prefill tokens processed",
            prompt_tokens.clone(),
        );
        registry.register(
            "vllm:generation_tokens",
            "Generation tokens processed",
            generation_tokens.clone(),
        );
        registry.register(
            "vllm:num_requests_running",
            "Requests being generated now",
            running.clone(),
        );
        Self {
            registry,
            e2e,
            ttft,
            itl,
            success,
            failure,
            prompt_tokens,
            generation_tokens,
            running,
            http_requests,
        }
    }
}

struct AppState {
    model: Arc<Model>,
    name: String,
    error_rate: f64,
    empty_rate: f64,
    latency: Duration,
    rng: Mutex<ChaCha8Rng>,
    metrics: Metrics,
    next_id: AtomicU64,
}

impl AppState {
    fn labels(&self) -> Labels {
        vec![("model_name".to_owned(), self.name.clone())]
    }

    fn with(&self, key: &str, value: &str) -> Labels {
        let mut labels = self.labels();
        labels.push((key.to_owned(), value.to_owned()));
        labels
    }
}

/// An OpenAI-shaped error body.
fn error(
    state: &AppState,
    status: StatusCode,
    kind: &str,
    code: &str,
    message: String,
) -> Response {
    state
        .metrics
        .failure
        .get_or_create(&{
            let mut l = state.with("code", status.as_str());
            l.push(("reason".to_owned(), code.to_owned()));
            l
        })
        .inc();
    (
        status,
        Json(json!({ "error": { "message": message, "type": kind, "param": null, "code": code } })),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StopSpec {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PromptSpec {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    messages: Option<Vec<Message>>,
    prompt: Option<PromptSpec>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f64>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    stop: Option<StopSpec>,
    seed: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Text,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs the server until SIGTERM/SIGINT.
pub fn serve(options: ServeOptions) -> Result<()> {
    let model = Model::load(&options.model)?;
    let state = Arc::new(AppState {
        model: Arc::new(model),
        name: options.served_model_name.clone(),
        error_rate: options.inject_error_rate,
        empty_rate: options.inject_empty_rate,
        latency: Duration::from_millis(options.inject_latency_ms),
        rng: Mutex::new(ChaCha8Rng::seed_from_u64(options.seed)),
        metrics: Metrics::new(),
        next_id: AtomicU64::new(1),
    });
    let app = Router::new()
        .route("/health", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/v1/models", get(models))
        .route(
            "/v1/chat/completions",
            post(|s, b| completions(s, b, Kind::Chat)),
        )
        .route(
            "/v1/completions",
            post(|s, b| completions(s, b, Kind::Text)),
        )
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            count_http,
        ))
        .with_state(state);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let addr = format!("{}:{}", options.host, options.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        println!(
            "tiny-lm: serving {} on http://{local}",
            options.served_model_name
        );
        use std::io::Write as _;
        std::io::stdout().flush()?;
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown())
            .await?;
        Ok(())
    })
}

/// Counts every answered request by handler, method and status class, as
/// vLLM's HTTP instrumentation does.
async fn count_http(
    State(state): State<Arc<AppState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let handler = request.uri().path().to_owned();
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = format!("{}xx", response.status().as_u16() / 100);
    state
        .metrics
        .http_requests
        .get_or_create(&vec![
            ("handler".to_owned(), handler),
            ("method".to_owned(), method),
            ("status".to_owned(), status),
        ])
        .inc();
    response
}

async fn shutdown() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{ "id": state.name, "object": "model", "created": 0, "owned_by": "tiny-lm", "max_model_len": state.model.config.block_size }],
    }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let mut body = String::new();
    if prometheus_client::encoding::text::encode(&mut body, &state.metrics.registry).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "encoding metrics failed").into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

/// What the generation thread reports.
enum Piece {
    Text(String),
    Done {
        finish_reason: &'static str,
        completion_tokens: usize,
    },
    Failed(String),
}

async fn completions(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
    kind: Kind,
) -> Response {
    let started = Instant::now();
    let request: CompletionRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                &state,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_json",
                format!("request body: {e}"),
            );
        }
    };
    if let Some(model) = &request.model
        && model != &state.name
    {
        return error(
            &state,
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "model_not_found",
            format!(
                "The model `{model}` does not exist; this server serves `{}`",
                state.name
            ),
        );
    }
    let prompt = match (kind, &request.messages, &request.prompt) {
        (Kind::Chat, Some(messages), _) if !messages.is_empty() => render_prompt(messages),
        (Kind::Chat, _, _) => {
            return error(
                &state,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "missing_messages",
                "`messages` must be a non-empty array".into(),
            );
        }
        (Kind::Text, _, Some(PromptSpec::One(p))) => render_completion_prompt(p),
        (Kind::Text, _, Some(PromptSpec::Many(ps))) if ps.len() == 1 => {
            render_completion_prompt(&ps[0])
        }
        (Kind::Text, _, _) => {
            return error(
                &state,
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_prompt",
                "`prompt` must be a string (or an array of one string)".into(),
            );
        }
    };
    let default_max = if kind == Kind::Chat { 64 } else { 16 };
    let max_tokens = request
        .max_completion_tokens
        .or(request.max_tokens)
        .unwrap_or(default_max)
        .min(1024);
    let temperature = request.temperature.unwrap_or(0.0);
    let stops: Vec<String> = match request.stop {
        Some(StopSpec::One(s)) => vec![s],
        Some(StopSpec::Many(v)) => v,
        None => Vec::new(),
    }
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect();
    let (injected_failure, injected_empty) = {
        let mut rng = state.rng.lock().unwrap_or_else(|e| e.into_inner());
        (
            state.error_rate > 0.0 && rng.random_bool(state.error_rate),
            state.empty_rate > 0.0 && rng.random_bool(state.empty_rate),
        )
    };
    // A degraded model: nothing generated at all.
    let max_tokens = if injected_empty { 0 } else { max_tokens };
    if !state.latency.is_zero() {
        tokio::time::sleep(state.latency).await;
    }
    if injected_failure {
        return error(
            &state,
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "injected",
            "injected failure (--inject-error-rate)".into(),
        );
    }
    let seed = request
        .seed
        .unwrap_or_else(|| state.rng.lock().unwrap_or_else(|e| e.into_inner()).random());
    let prompt_tokens = prompt.len();
    state
        .metrics
        .prompt_tokens
        .get_or_create(&state.labels())
        .inc_by(prompt_tokens as u64);
    state.metrics.running.get_or_create(&state.labels()).inc();

    // Generate on a blocking thread, sending text as it is produced.
    let (tx, mut rx) = mpsc::unbounded_channel::<Piece>();
    let model = Arc::clone(&state.model);
    tokio::task::spawn_blocking(move || {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut pending: Vec<u8> = Vec::new();
        let mut produced = String::new();
        let mut stopped_by_sequence = false;
        let result = model.generate(&prompt, max_tokens, temperature, &mut rng, |byte| {
            pending.push(byte);
            // Emit only whole UTF-8 characters.
            let Ok(text) = std::str::from_utf8(&pending) else {
                return pending.len() < 4;
            };
            let text = text.to_owned();
            pending.clear();
            produced.push_str(&text);
            if let Some(stop) = stops.iter().find(|s| produced.ends_with(s.as_str())) {
                // Hold back the stop sequence itself.
                let keep = text.len().saturating_sub(stop.len());
                if keep > 0 {
                    let _ = tx.send(Piece::Text(text[..keep].to_owned()));
                }
                stopped_by_sequence = true;
                return false;
            }
            tx.send(Piece::Text(text)).is_ok()
        });
        let piece = match result {
            Ok((bytes, hit_newline)) => Piece::Done {
                finish_reason: if hit_newline || stopped_by_sequence {
                    "stop"
                } else {
                    "length"
                },
                completion_tokens: bytes.len(),
            },
            Err(e) => Piece::Failed(format!("{e:#}")),
        };
        let _ = tx.send(piece);
    });

    let id = format!(
        "{}-{}",
        if kind == Kind::Chat {
            "chatcmpl"
        } else {
            "cmpl"
        },
        state.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let created = now_unix();
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    if request.stream {
        let stream = StreamState {
            state,
            rx,
            kind,
            id,
            created,
            started,
            include_usage,
            prompt_tokens,
            first_at: None,
            last_at: None,
            role_sent: false,
            done: false,
            queue: Default::default(),
        };
        let events = futures_util::stream::unfold(stream, |mut s| async move {
            let event = s.next_event().await?;
            Some((Ok::<Event, Infallible>(event), s))
        });
        return Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response();
    }

    // Non-streaming: gather everything.
    let mut text = String::new();
    let mut first_at = None;
    let mut last_at: Option<Instant> = None;
    let (finish_reason, completion_tokens) = loop {
        match rx.recv().await {
            Some(Piece::Text(t)) => {
                let now = Instant::now();
                if first_at.is_none() {
                    first_at = Some(now);
                    state
                        .metrics
                        .ttft
                        .get_or_create(&state.labels())
                        .observe((now - started).as_secs_f64());
                } else if let Some(prev) = last_at {
                    state
                        .metrics
                        .itl
                        .get_or_create(&state.labels())
                        .observe((now - prev).as_secs_f64());
                }
                last_at = Some(now);
                text.push_str(&t);
            }
            Some(Piece::Done {
                finish_reason,
                completion_tokens,
            }) => break (finish_reason, completion_tokens),
            Some(Piece::Failed(e)) => {
                state.metrics.running.get_or_create(&state.labels()).dec();
                return error(
                    &state,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "generation_failed",
                    e,
                );
            }
            None => {
                state.metrics.running.get_or_create(&state.labels()).dec();
                return error(
                    &state,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "generation_failed",
                    "generation thread ended".into(),
                );
            }
        }
    };
    finish(&state, started, finish_reason, completion_tokens);
    let usage = json!({ "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens });
    let body = match kind {
        Kind::Chat => json!({
            "id": id, "object": "chat.completion", "created": created, "model": state.name,
            "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "logprobs": null, "finish_reason": finish_reason }],
            "usage": usage,
        }),
        Kind::Text => json!({
            "id": id, "object": "text_completion", "created": created, "model": state.name,
            "choices": [{ "index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason }],
            "usage": usage,
        }),
    };
    Json(body).into_response()
}

fn finish(state: &AppState, started: Instant, finish_reason: &str, completion_tokens: usize) {
    let m = &state.metrics;
    m.running.get_or_create(&state.labels()).dec();
    m.e2e
        .get_or_create(&state.labels())
        .observe(started.elapsed().as_secs_f64());
    m.success
        .get_or_create(&state.with("finished_reason", finish_reason))
        .inc();
    m.generation_tokens
        .get_or_create(&state.labels())
        .inc_by(completion_tokens as u64);
}

/// One streaming response: OpenAI's chunk objects as SSE `data:` events, then `[DONE]`.
struct StreamState {
    state: Arc<AppState>,
    rx: mpsc::UnboundedReceiver<Piece>,
    kind: Kind,
    id: String,
    created: u64,
    started: Instant,
    include_usage: bool,
    prompt_tokens: usize,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
    role_sent: bool,
    done: bool,
    queue: std::collections::VecDeque<Event>,
}

/// A client that hangs up mid-stream: the request is counted as aborted, as
/// vLLM does, and no longer as running.
impl Drop for StreamState {
    fn drop(&mut self) {
        if !self.done {
            let labels = self.state.labels();
            self.state.metrics.running.get_or_create(&labels).dec();
            self.state
                .metrics
                .success
                .get_or_create(&self.state.with("finished_reason", "abort"))
                .inc();
        }
    }
}

impl StreamState {
    fn chunk(&self, text: Option<&str>, finish_reason: Option<&str>) -> Value {
        match self.kind {
            Kind::Chat => {
                let mut delta = serde_json::Map::new();
                if !self.role_sent {
                    delta.insert("role".into(), json!("assistant"));
                }
                if let Some(t) = text {
                    delta.insert("content".into(), json!(t));
                }
                json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.state.name,
                    "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }],
                })
            }
            Kind::Text => json!({
                "id": self.id, "object": "text_completion", "created": self.created, "model": self.state.name,
                "choices": [{ "index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish_reason }],
            }),
        }
    }

    fn data(value: &Value) -> Event {
        Event::default().data(value.to_string())
    }

    async fn next_event(&mut self) -> Option<Event> {
        if let Some(event) = self.queue.pop_front() {
            return Some(event);
        }
        if self.done {
            return None;
        }
        if self.kind == Kind::Chat && !self.role_sent {
            let event = Self::data(&self.chunk(Some(""), None));
            self.role_sent = true;
            return Some(event);
        }
        match self.rx.recv().await {
            Some(Piece::Text(t)) => {
                let now = Instant::now();
                let labels = self.state.labels();
                if self.first_at.is_none() {
                    self.first_at = Some(now);
                    self.state
                        .metrics
                        .ttft
                        .get_or_create(&labels)
                        .observe((now - self.started).as_secs_f64());
                } else if let Some(prev) = self.last_at {
                    self.state
                        .metrics
                        .itl
                        .get_or_create(&labels)
                        .observe((now - prev).as_secs_f64());
                }
                self.last_at = Some(now);
                Some(Self::data(&self.chunk(Some(&t), None)))
            }
            Some(Piece::Done {
                finish_reason,
                completion_tokens,
            }) => {
                finish(&self.state, self.started, finish_reason, completion_tokens);
                let mut last = self.chunk(None, Some(finish_reason));
                if self.include_usage {
                    last["usage"] = json!({
                        "prompt_tokens": self.prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": self.prompt_tokens + completion_tokens,
                    });
                }
                // The final chunk, then the terminator.
                self.done = true;
                self.queue.push_back(Event::default().data("[DONE]"));
                Some(Self::data(&last))
            }
            Some(Piece::Failed(e)) => {
                self.done = true;
                self.state
                    .metrics
                    .running
                    .get_or_create(&self.state.labels())
                    .dec();
                self.state
                    .metrics
                    .success
                    .get_or_create(&self.state.with("finished_reason", "abort"))
                    .inc();
                self.queue.push_back(Event::default().data("[DONE]"));
                Some(Self::data(
                    &json!({ "error": { "message": e, "type": "server_error", "code": "generation_failed" } }),
                ))
            }
            None => {
                self.done = true;
                None
            }
        }
    }
}
