//! The router against fake OpenAI-shaped servers on loopback: weights,
//! metering, streaming through weight changes, the admin token, the lease,
//! state across restarts and serve commands that fail.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use gantry_deploy::api::{RouterView, VersionMetrics};
use gantry_deploy::router::{Router, RouterOptions};
use serde_json::json;

/// A fake model server: `/health`, `/v1/models`, and chat completions that
/// answer JSON with usage, or stream `chunks` SSE events `gap` apart.
async fn fake_server(chunks: usize, gap: Duration) -> SocketAddr {
    let app = axum::Router::new()
        .route("/health", axum::routing::get(|| async { "ok" }))
        .route("/v1/models", axum::routing::get(|| async { axum::Json(json!({"data": []})) }))
        .route(
            "/v1/chat/completions",
            axum::routing::post(move |body: axum::Json<serde_json::Value>| async move {
                if body.get("stream").and_then(serde_json::Value::as_bool) == Some(true) {
                    let events = futures_util::stream::unfold(0usize, move |sent| async move {
                        if sent > chunks {
                            return None;
                        }
                        tokio::time::sleep(gap).await;
                        let line = if sent == chunks {
                            "data: [DONE]\n\n".to_owned()
                        } else {
                            format!("data: {{\"choices\":[{{\"delta\":{{\"content\":\"t{sent}\"}}}}]}}\n\n")
                        };
                        Some((Ok::<_, std::convert::Infallible>(line), sent + 1))
                    });
                    (
                        [(axum::http::header::CONTENT_TYPE, "text/event-stream")],
                        axum::body::Body::from_stream(events),
                    )
                        .into_response()
                } else {
                    axum::Json(json!({
                        "choices": [{"message": {"role": "assistant", "content": "hi"}}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
                    }))
                    .into_response()
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    address
}

struct Running {
    data: SocketAddr,
    admin: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<gantry_deploy::Result<()>>,
}

fn options(state_dir: &std::path::Path, admin: &str, token: Option<&str>) -> RouterOptions {
    RouterOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        admin: admin.parse().expect("address"),
        state_dir: state_dir.to_owned(),
        token: token.map(gantry_core::Secret::new),
        sticky_header: Some(http::HeaderName::from_static("x-user")),
        health_timeout: Duration::from_secs(5),
        grace: Duration::from_secs(2),
        stop_backends_on_exit: true,
        workers: 2,
        log: Arc::new(|_| {}),
    }
}

async fn start(options: RouterOptions) -> Running {
    let router = Router::bind(options).await.expect("binds");
    let data = router.listen_addr();
    let admin = router.admin_addr().expect("admin");
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(router.run(async {
        let _ = stopped.await;
    }));
    Running {
        data,
        admin,
        stop,
        task,
    }
}

impl Running {
    async fn shutdown(self) {
        let _ = self.stop.send(());
        self.task.await.expect("joins").expect("runs");
    }

    fn admin(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }
}

async fn add_url_backend(
    http: &reqwest::Client,
    router: &Running,
    version: &str,
    address: SocketAddr,
) {
    let response = http
        .post(router.admin("/v1/backends"))
        .json(&json!({"version": version, "url": format!("http://{address}")}))
        .send()
        .await
        .expect("answers");
    assert_eq!(
        response.status(),
        201,
        "{}",
        response.text().await.unwrap_or_default()
    );
}

async fn put_weights(
    http: &reqwest::Client,
    router: &Running,
    body: serde_json::Value,
) -> reqwest::Response {
    http.put(router.admin("/v1/weights"))
        .json(&body)
        .send()
        .await
        .expect("answers")
}

async fn view(http: &reqwest::Client, router: &Running) -> RouterView {
    http.get(router.admin("/v1/backends"))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_split_traffic_and_every_request_is_metered_per_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let router = start(options(dir.path(), "127.0.0.1:0", None)).await;
    let http = reqwest::Client::new();
    add_url_backend(
        &http,
        &router,
        "1.0.0",
        fake_server(3, Duration::ZERO).await,
    )
    .await;
    add_url_backend(
        &http,
        &router,
        "1.1.0",
        fake_server(3, Duration::ZERO).await,
    )
    .await;
    let set = put_weights(
        &http,
        &router,
        json!({"weights": {"1.0.0": 75, "1.1.0": 25}, "stable": "1.0.0", "lease_seconds": 60, "holder": "test"}),
    )
    .await;
    assert_eq!(set.status(), 200);
    let since = gantry_deploy_now_ms() - 1;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..400 {
        let response = http
            .post(format!("http://{}/v1/chat/completions", router.data))
            .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 200);
        let version = response.headers()["x-gantry-version"]
            .to_str()
            .expect("text")
            .to_owned();
        let _ = response.bytes().await;
        *counts.entry(version).or_default() += 1;
    }
    let canary = counts.get("1.1.0").copied().unwrap_or(0);
    assert!(
        (60..=140).contains(&canary),
        "25% of 400 expected, got {counts:?}"
    );
    let metrics: VersionMetrics = http
        .get(router.admin(&format!("/v1/metrics/1.1.0?since_ms={since}")))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(metrics.requests as usize, canary);
    assert_eq!(metrics.status.ok as usize, canary);
    assert_eq!(
        metrics.output_tokens as usize,
        canary * 2,
        "usage.completion_tokens is read"
    );
    assert_eq!(metrics.latency_ms.len(), canary);
    // A sticky header keeps one user on one version.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let response = http
            .post(format!("http://{}/v1/chat/completions", router.data))
            .header("x-user", "alice")
            .json(&json!({"messages": []}))
            .send()
            .await
            .expect("answers");
        seen.insert(
            response.headers()["x-gantry-version"]
                .to_str()
                .expect("text")
                .to_owned(),
        );
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    let exported = http
        .get(router.admin("/metrics"))
        .send()
        .await
        .expect("answers")
        .text()
        .await
        .expect("text");
    assert!(
        exported.contains(&format!(
            "gantry_router_requests_total{{version=\"1.1.0\",class=\"ok\"}} {}",
            canary
        )),
        "{exported}"
    );
    assert!(
        exported.contains("gantry_router_backend_weight_percent{version=\"1.1.0\"} 25"),
        "{exported}"
    );
    router.shutdown().await;
}

fn gantry_deploy_now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("fits")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_in_flight_completes_through_a_weight_change_and_its_first_token_is_timed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let router = start(options(dir.path(), "127.0.0.1:0", None)).await;
    let http = reqwest::Client::new();
    add_url_backend(
        &http,
        &router,
        "stable",
        fake_server(2, Duration::ZERO).await,
    )
    .await;
    add_url_backend(
        &http,
        &router,
        "canary",
        fake_server(10, Duration::from_millis(100)).await,
    )
    .await;
    let set = put_weights(
        &http,
        &router,
        json!({"weights": {"canary": 100}, "stable": "stable", "lease_seconds": 60}),
    )
    .await;
    assert_eq!(set.status(), 200);
    let since = gantry_deploy_now_ms() - 1;
    let streaming = {
        let http = http.clone();
        let url = format!("http://{}/v1/chat/completions", router.data);
        tokio::spawn(async move {
            let response = http
                .post(url)
                .json(&json!({"messages": [], "stream": true}))
                .send()
                .await
                .expect("answers");
            let version = response.headers()["x-gantry-version"]
                .to_str()
                .expect("text")
                .to_owned();
            (version, response.text().await.expect("whole body"))
        })
    };
    tokio::time::sleep(Duration::from_millis(250)).await;
    // Mid-stream: all traffic back to stable.
    let set = put_weights(
        &http,
        &router,
        json!({"weights": {"stable": 100}, "stable": "stable"}),
    )
    .await;
    assert_eq!(set.status(), 200);
    let after = http
        .post(format!("http://{}/v1/chat/completions", router.data))
        .json(&json!({"messages": []}))
        .send()
        .await
        .expect("answers");
    assert_eq!(after.headers()["x-gantry-version"], "stable");
    let (version, body) = streaming.await.expect("joins");
    assert_eq!(version, "canary");
    assert_eq!(body.matches("data: {").count(), 10, "{body}");
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    let metrics: VersionMetrics = http
        .get(router.admin(&format!("/v1/metrics/canary?since_ms={since}")))
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(metrics.requests, 1);
    assert_eq!(metrics.output_tokens, 10, "SSE chunks counted");
    assert_eq!(metrics.ttft_ms.len(), 1);
    assert!(
        metrics.ttft_ms[0] >= 90.0 && metrics.ttft_ms[0] < metrics.latency_ms[0],
        "{metrics:?}"
    );
    assert!(metrics.latency_ms[0] >= 1000.0, "{metrics:?}");
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_wants_its_token_and_refuses_weights_that_are_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Beyond loopback, no token is an error before anything binds.
    let refused = Router::bind(options(dir.path(), "0.0.0.0:0", None)).await;
    let error = refused.err().expect("refused").to_string();
    assert!(error.contains("GANTRY_ROUTER_TOKEN"), "{error}");

    let router = start(options(dir.path(), "0.0.0.0:0", Some("s3cret-token"))).await;
    let http = reqwest::Client::new();
    let anonymous = http
        .get(router.admin("/v1/backends"))
        .send()
        .await
        .expect("answers");
    assert_eq!(anonymous.status(), 401);
    let wrong = http
        .get(router.admin("/v1/backends"))
        .bearer_auth("s3cret-tokem")
        .send()
        .await
        .expect("answers");
    assert_eq!(wrong.status(), 401);
    let health = http
        .get(router.admin("/health"))
        .send()
        .await
        .expect("answers");
    assert_eq!(health.status(), 200, "health needs no token");
    let backend = fake_server(1, Duration::ZERO).await;
    for version in ["a", "b"] {
        let added = http
            .post(router.admin("/v1/backends"))
            .bearer_auth("s3cret-token")
            .json(&json!({"version": version, "url": format!("http://{backend}")}))
            .send()
            .await
            .expect("answers");
        assert_eq!(added.status(), 201);
    }
    for (body, expected) in [
        (
            json!({"weights": {"a": 50, "b": 40}, "stable": "a", "lease_seconds": 5}),
            "add up to 90, not 100",
        ),
        (
            json!({"weights": {"a": 50, "c": 50}, "stable": "a", "lease_seconds": 5}),
            "weight for c: not a backend",
        ),
        (
            json!({"weights": {"a": 50, "b": 50}, "stable": "a"}),
            "need lease_seconds",
        ),
        (
            json!({"weights": {"a": 100}, "stable": "z"}),
            "stable version z is not a backend",
        ),
    ] {
        let answer = http
            .put(router.admin("/v1/weights"))
            .bearer_auth("s3cret-token")
            .json(&body)
            .send()
            .await
            .expect("answers");
        assert_eq!(answer.status(), 400);
        let text = answer.text().await.expect("text");
        assert!(text.contains(expected), "{body}: {text}");
    }
    // A version with traffic cannot be removed.
    let set = http
        .put(router.admin("/v1/weights"))
        .bearer_auth("s3cret-token")
        .json(&json!({"weights": {"a": 100}, "stable": "a"}))
        .send()
        .await
        .expect("answers");
    assert_eq!(set.status(), 200);
    let removed = http
        .delete(router.admin("/v1/backends/a"))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .expect("answers");
    assert_eq!(removed.status(), 409);
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_returns_all_traffic_to_stable_and_a_restart_keeps_the_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let router = start(options(dir.path(), "127.0.0.1:0", None)).await;
    let http = reqwest::Client::new();
    let stable = fake_server(1, Duration::ZERO).await;
    let canary = fake_server(1, Duration::ZERO).await;
    add_url_backend(&http, &router, "1.0.0", stable).await;
    add_url_backend(&http, &router, "1.1.0", canary).await;
    let set = put_weights(
        &http,
        &router,
        json!({"weights": {"1.0.0": 50, "1.1.0": 50}, "stable": "1.0.0", "lease_seconds": 1, "holder": "rollout-7"}),
    )
    .await;
    assert_eq!(set.status(), 200);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let after = view(&http, &router).await;
    assert_eq!(after.weights().get("1.0.0"), Some(&100));
    assert_eq!(after.weights().get("1.1.0"), Some(&0));
    let reverted = after.reverted.expect("reverted");
    assert!(reverted.reason.contains("rollout-7"), "{}", reverted.reason);
    assert_eq!(reverted.weights_before.get("1.1.0"), Some(&50));
    assert!(after.lease.is_none());

    // Weights with a long lease, then a restart on the same state directory.
    let set = put_weights(
        &http,
        &router,
        json!({"weights": {"1.0.0": 75, "1.1.0": 25}, "stable": "1.0.0", "lease_seconds": 600, "holder": "rollout-8"}),
    )
    .await;
    assert_eq!(set.status(), 200);
    // A second router on the same directory is refused while this one runs.
    let second = Router::bind(options(dir.path(), "127.0.0.1:0", None)).await;
    assert!(
        second
            .err()
            .expect("refused")
            .to_string()
            .contains("another router")
    );
    router.shutdown().await;
    let router = start(options(dir.path(), "127.0.0.1:0", None)).await;
    let mut restored = view(&http, &router).await;
    for _ in 0..50 {
        if restored
            .backends
            .iter()
            .all(|backend| backend.health == gantry_deploy::api::Health::Healthy)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        restored = view(&http, &router).await;
    }
    assert_eq!(restored.weights().get("1.1.0"), Some(&25));
    assert_eq!(restored.stable.as_deref(), Some("1.0.0"));
    assert_eq!(
        restored.lease.as_ref().map(|lease| lease.holder.as_str()),
        Some("rollout-8")
    );
    let answer = http
        .post(format!("http://{}/v1/chat/completions", router.data))
        .header("x-gantry-version", "1.1.0")
        .json(&json!({"messages": []}))
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.headers()["x-gantry-version"], "1.1.0");
    router.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serve_command_that_exits_at_once_is_refused_with_its_last_log_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let router = start(options(dir.path(), "127.0.0.1:0", None)).await;
    let http = reqwest::Client::new();
    let answer = http
        .post(router.admin("/v1/backends"))
        .json(&json!({
            "version": "2.0.0",
            "serve_command": "sh -c 'echo loading {version} on port {port}; echo CUDA out of memory >&2; exit 3'",
        }))
        .send()
        .await
        .expect("answers");
    assert_eq!(answer.status(), 422);
    let error: gantry_deploy::api::ApiError = answer.json().await.expect("json");
    assert!(
        error
            .error
            .contains("exited before answering its health checks"),
        "{}",
        error.error
    );
    assert!(
        error
            .log_tail
            .iter()
            .any(|line| line.contains("CUDA out of memory")),
        "{:?}",
        error.log_tail
    );
    assert!(
        error
            .log_tail
            .iter()
            .any(|line| line.starts_with("loading 2.0.0 on port ")),
        "{:?}",
        error.log_tail
    );
    assert!(
        view(&http, &router).await.backends.is_empty(),
        "a failed backend is not kept"
    );
    let unhealthy = http
        .post(router.admin("/v1/backends"))
        .json(
            &json!({"version": "2.0.1", "serve_command": "sleep 30", "health_timeout_seconds": 1}),
        )
        .send()
        .await
        .expect("answers");
    assert_eq!(unhealthy.status(), 422);
    let error: gantry_deploy::api::ApiError = unhealthy.json().await.expect("json");
    assert!(
        error.error.contains("did not become healthy within 1 s"),
        "{}",
        error.error
    );
    router.shutdown().await;
}
