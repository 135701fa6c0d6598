//! The admin API (axum): backends, weights and per-version metrics as JSON,
//! `/metrics` for Prometheus. With a token configured, every route but
//! `/health` and `/metrics` needs `Authorization: Bearer TOKEN`, compared in
//! constant time.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use super::Shared;
use super::backend::{self, Backend, Start, lock};
use crate::api::{ApiError, BackendSpec, WeightsRequest};
use crate::error::{Error, now_ms};

pub(crate) async fn serve(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    let protected = axum::Router::new()
        .route("/v1/backends", get(list).post(add))
        .route("/v1/backends/{version}", delete(remove))
        .route("/v1/weights", put(weights))
        .route("/v1/metrics/{version}", get(version_metrics))
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            authorize,
        ));
    let app = axum::Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route("/metrics", get(prometheus))
        .merge(protected)
        .with_state(shared.clone());
    if let Err(error) = axum::serve(listener, app).await {
        shared.log(&format!("the admin API stopped: {error}"));
    }
}

async fn authorize(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if let Some(token) = &shared.options.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or_default();
        let matches: bool = given.as_bytes().ct_eq(token.expose().as_bytes()).into();
        if !matches {
            return failure(
                StatusCode::UNAUTHORIZED,
                "the admin API needs Authorization: Bearer <GANTRY_ROUTER_TOKEN>".to_owned(),
                Vec::new(),
            );
        }
    }
    next.run(request).await
}

fn failure(status: StatusCode, error: String, log_tail: Vec<String>) -> Response {
    (status, Json(ApiError { error, log_tail })).into_response()
}

fn error_response(error: Error) -> Response {
    match error {
        Error::Input(message) => failure(StatusCode::BAD_REQUEST, message, Vec::new()),
        Error::Busy(message) => failure(StatusCode::CONFLICT, message, Vec::new()),
        Error::Backend { message, log_tail } => {
            failure(StatusCode::UNPROCESSABLE_ENTITY, message, log_tail)
        }
        other => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            other.to_string(),
            Vec::new(),
        ),
    }
}

async fn list(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.view()).into_response()
}

async fn add(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let spec: BackendSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(error) => {
            return failure(
                StatusCode::BAD_REQUEST,
                format!("the backend is not valid JSON of the expected shape: {error}"),
                Vec::new(),
            );
        }
    };
    let _changing = shared.changes.lock().await;
    let version = spec.version.clone();
    let known = {
        let inner = lock(&shared.inner);
        inner.backends.get(&version).map(|existing| {
            let weight = inner.weights.get(&version).copied().unwrap_or(0);
            (existing.spec == spec, existing.view(weight))
        })
    };
    if let Some((same, view)) = known {
        if same {
            // The same request again (a controller resuming): already there.
            return (StatusCode::OK, Json(view)).into_response();
        }
        return failure(
            StatusCode::CONFLICT,
            format!("backend {version} already exists with another definition; remove it first"),
            Vec::new(),
        );
    }
    let backend = match Backend::new(
        spec,
        None,
        &shared.logs_dir(),
        shared.exported.handles(&version),
    ) {
        Ok(backend) => Arc::new(backend),
        Err(error) => return error_response(error),
    };
    {
        let mut inner = lock(&shared.inner);
        inner.backends.insert(version.clone(), backend.clone());
        if let Err(error) = shared.commit(&inner) {
            inner.backends.remove(&version);
            return error_response(error);
        }
    }
    let (started, outcome) = tokio::sync::oneshot::channel();
    tokio::spawn(backend::supervise(
        backend.clone(),
        Start::Fresh,
        shared.supervision.clone(),
        started,
    ));
    let outcome = outcome
        .await
        .unwrap_or_else(|_| Err(Error::Service("the supervisor stopped".to_owned())));
    match outcome {
        Ok(()) => {
            shared.log(&format!("backend {version}: healthy at {}", backend.url));
            (StatusCode::CREATED, Json(backend.view(0))).into_response()
        }
        Err(error) => {
            let mut inner = lock(&shared.inner);
            inner.backends.remove(&version);
            inner.weights.remove(&version);
            let _ = shared.commit(&inner);
            drop(inner);
            shared.exported.forget(&version);
            error_response(error)
        }
    }
}

async fn remove(State(shared): State<Arc<Shared>>, Path(version): Path<String>) -> Response {
    let _changing = shared.changes.lock().await;
    let backend = {
        let mut inner = lock(&shared.inner);
        let Some(backend) = inner.backends.get(&version).cloned() else {
            return failure(
                StatusCode::NOT_FOUND,
                format!("no backend {version}"),
                Vec::new(),
            );
        };
        let weight = inner.weights.get(&version).copied().unwrap_or(0);
        if weight > 0 {
            return failure(
                StatusCode::CONFLICT,
                format!("backend {version} still gets {weight}% of traffic; move its weight first"),
                Vec::new(),
            );
        }
        if inner.stable.as_deref() == Some(version.as_str()) {
            inner.stable = None;
        }
        inner.backends.remove(&version);
        if let Err(error) = shared.commit(&inner) {
            return error_response(error);
        }
        backend
    };
    backend.retire();
    // Wait for the server to finish its requests and exit.
    let deadline =
        tokio::time::Instant::now() + shared.options.grace + std::time::Duration::from_secs(2);
    while backend.pid().is_some() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    shared.exported.forget(&version);
    shared.log(&format!("backend {version}: retired"));
    StatusCode::NO_CONTENT.into_response()
}

async fn weights(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let request: WeightsRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return failure(
                StatusCode::BAD_REQUEST,
                format!("the weights are not valid JSON of the expected shape: {error}"),
                Vec::new(),
            );
        }
    };
    match shared.set_weights(&request) {
        Ok(()) => Json(shared.view()).into_response(),
        Err(error) => error_response(error),
    }
}

#[derive(Deserialize)]
struct Since {
    #[serde(default)]
    since_ms: u64,
}

async fn version_metrics(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    Query(since): Query<Since>,
) -> Response {
    let backend = lock(&shared.inner).backends.get(&version).cloned();
    match backend {
        Some(backend) => Json(backend.metrics_since(since.since_ms, now_ms())).into_response(),
        None => failure(
            StatusCode::NOT_FOUND,
            format!("no backend {version}"),
            Vec::new(),
        ),
    }
}

async fn prometheus(State(shared): State<Arc<Shared>>) -> Response {
    match shared.exported.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics".to_owned(),
            Vec::new(),
        ),
    }
}
