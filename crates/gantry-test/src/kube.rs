//! A recording fake Kubernetes API server: no API server can be installed
//! on these machines, so the Kubernetes engines are driven against this.
//!
//! It answers what deploy-canary uses the way the API server does:
//! discovery (`/api/v1`, `/apis/GROUP/VERSION`, with a CRD that is not
//! installed answering 404), get, list with a label selector, watch (with
//! `resourceVersion`, a field selector on the name, bookmarks, and `410
//! Gone` for a version older than what it keeps), server-side apply with
//! field managers (lists are atomic; a field another manager owns with
//! another value is a 409 `FieldManagerConflict` unless `force=true`),
//! JSON merge patches on the object and on the `status` subresource, a 409
//! on a stale `metadata.resourceVersion`, delete, 401 for a wrong token,
//! 403 for what a test forbids (the API server's RBAC message), and any
//! status a test asks for next (429, 500…).
//!
//! Stand-ins for the controllers run beside it: Deployments become
//! available (or never do), a Gateway accepts HTTPRoutes (ResolvedRefs is
//! false for a Service that does not exist), KServe creates revisions and
//! splits traffic per `canaryTrafficPercent`, and Argo Rollouts walks its
//! steps (an analysis step fails for a bad version and aborts). Simulated
//! traffic follows the weights each of them holds, per version, and
//! `/metrics` exposes it in vLLM's and Knative's names with a `version`
//! label for a real Prometheus to scrape: a bad version's 5xx show up only
//! as far as it gets traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash as _, Hasher as _};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::serve;

/// The bearer token the fake accepts.
pub const KUBE_TOKEN: &str = "fake-kube-token-5f1c";

/// How a model version behaves in the simulated cluster.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Behavior {
    /// Share of requests answered 5xx.
    pub error_rate: f64,
    /// Each request's latency, seconds.
    pub latency: f64,
    /// Its pods never become ready (and a KServe revision fails to load).
    pub crash: bool,
}

impl Default for Behavior {
    fn default() -> Behavior {
        Behavior {
            error_rate: 0.0,
            latency: 0.08,
            crash: false,
        }
    }
}

/// One request the fake answered.
#[derive(Debug, Clone)]
pub struct KubeRequest {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Content-Type.
    pub content_type: String,
    /// Status answered.
    pub status: u16,
}

#[derive(Debug, Clone, Default)]
struct Stored {
    value: Value,
    /// Field manager → (operation, owned leaf paths as JSON pointers).
    managers: BTreeMap<String, (String, BTreeSet<String>)>,
}

#[derive(Debug)]
struct Failure {
    method: String,
    path_contains: String,
    status: u16,
    remaining: usize,
}

#[derive(Debug, Default)]
struct Counters {
    ok: f64,
    failed: f64,
    latency: BTreeMap<String, f64>,
}

#[derive(Debug, Default)]
struct KubeState {
    /// (collection path, namespace, name) → object.
    objects: BTreeMap<(String, String, String), Stored>,
    version: u64,
    /// Oldest resourceVersion a watch may start from.
    compacted: u64,
    /// (resourceVersion, collection, namespace, name, type, object).
    events: Vec<(u64, String, String, String, &'static str, Value)>,
    requests: Vec<KubeRequest>,
    failures: Vec<Failure>,
    forbidden: Vec<(String, String, String)>,
    not_served: BTreeSet<String>,
    behaviors: BTreeMap<String, Behavior>,
    /// Version → simulated requests.
    traffic: BTreeMap<String, Counters>,
    /// When a Deployment or revision started (its readiness delay).
    started: BTreeMap<String, Instant>,
    /// KServe revisions → version.
    revisions: BTreeMap<String, String>,
    /// Argo pod-template hash → version.
    pod_hashes: BTreeMap<String, String>,
    ready_delay: Duration,
    stopping: bool,
}

/// The resources it serves: (group/version path, plural, kind).
const RESOURCES: &[(&str, &str, &str)] = &[
    ("api/v1", "services", "Service"),
    ("apis/apps/v1", "deployments", "Deployment"),
    (
        "apis/gateway.networking.k8s.io/v1",
        "httproutes",
        "HTTPRoute",
    ),
    (
        "apis/serving.kserve.io/v1beta1",
        "inferenceservices",
        "InferenceService",
    ),
    ("apis/argoproj.io/v1alpha1", "rollouts", "Rollout"),
    ("apis/argoproj.io/v1alpha1", "analysisruns", "AnalysisRun"),
];

/// The fake API server, its controllers and its simulated traffic.
#[derive(Debug)]
pub struct FakeKube {
    url: String,
    state: Arc<Mutex<KubeState>>,
    ticker: Option<std::thread::JoinHandle<()>>,
    _served: serve::Served,
}

impl FakeKube {
    /// Starts it on a loopback port, with its controllers ticking every 100 ms.
    pub fn start() -> FakeKube {
        let state = Arc::new(Mutex::new(KubeState {
            version: 100,
            compacted: 0,
            ready_delay: Duration::from_millis(400),
            ..KubeState::default()
        }));
        let server_state = Arc::clone(&state);
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = Arc::clone(&server_state);
                async move { handle(&state, &method, &uri, &headers, &body) }
            },
        );
        let served = serve::serve(app);
        let ticking = Arc::clone(&state);
        let ticker = std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(100));
                let mut state = lock(&ticking);
                if state.stopping {
                    return;
                }
                reconcile(&mut state);
                simulate_traffic(&mut state, 0.1);
            }
        });
        FakeKube {
            url: format!("http://{}", served.address),
            state,
            ticker: Some(ticker),
            _served: served,
        }
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `/metrics`, for Prometheus to scrape (`127.0.0.1:PORT`).
    pub fn metrics_target(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    fn lock(&self) -> MutexGuard<'_, KubeState> {
        lock(&self.state)
    }

    /// Writes a kubeconfig with contexts `fake` (current, namespace
    /// `namespace`) and `elsewhere` (a wrong token).
    pub fn kubeconfig(&self, path: &std::path::Path, namespace: &str) {
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\nclusters:\n- name: fake\n  cluster:\n    server: {url}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: gantry\n    namespace: {namespace}\n- name: elsewhere\n  context:\n    cluster: fake\n    user: stranger\nusers:\n- name: gantry\n  user:\n    token: {KUBE_TOKEN}\n- name: stranger\n  user:\n    token: not-the-token\n",
            url = self.url
        );
        std::fs::write(path, text).expect("write kubeconfig");
    }

    /// Stores an object as `manager` would have created it (an Update, as
    /// `kubectl create` or client-side apply does).
    pub fn create(&self, object: Value, manager: &str) {
        let mut state = self.lock();
        let (collection, namespace, name) = key_of(&object);
        let paths = leaf_paths(&object);
        state.version += 1;
        let mut value = object;
        let version = state.version;
        stamp(&mut value, version, 1);
        let stored = Stored {
            value: value.clone(),
            managers: BTreeMap::from([(manager.to_owned(), ("Update".to_owned(), paths))]),
        };
        state.objects.insert(
            (collection.clone(), namespace.clone(), name.clone()),
            stored,
        );
        emit(&mut state, &collection, &namespace, &name, "ADDED");
        reconcile(&mut state);
    }

    /// The object at `collection` (`apis/apps/v1/deployments`), `namespace`, `name`.
    pub fn get(&self, collection: &str, namespace: &str, name: &str) -> Option<Value> {
        let state = self.lock();
        state
            .objects
            .get(&(collection.to_owned(), namespace.to_owned(), name.to_owned()))
            .map(rendered)
    }

    /// Every object of a collection in a namespace.
    pub fn list(&self, collection: &str, namespace: &str) -> Vec<Value> {
        let state = self.lock();
        state
            .objects
            .iter()
            .filter(|((c, n, _), _)| c == collection && n == namespace)
            .map(|(_, stored)| rendered(stored))
            .collect()
    }

    /// Changes an object as another client would (an Update by `manager`).
    pub fn edit(
        &self,
        collection: &str,
        namespace: &str,
        name: &str,
        manager: &str,
        change: impl FnOnce(&mut Value),
    ) {
        let mut state = self.lock();
        let key = (collection.to_owned(), namespace.to_owned(), name.to_owned());
        let Some(stored) = state.objects.get_mut(&key) else {
            return;
        };
        change(&mut stored.value);
        let paths = leaf_paths(&stored.value);
        stored
            .managers
            .entry(manager.to_owned())
            .or_insert_with(|| ("Update".to_owned(), BTreeSet::new()))
            .1
            .extend(paths);
        bump(&mut state, &key);
    }

    /// How `version` behaves from now on.
    pub fn behave(&self, version: &str, behavior: Behavior) {
        self.lock().behaviors.insert(version.to_owned(), behavior);
    }

    /// Fails the next `times` requests with `method` whose path contains
    /// `path_contains` with `status`.
    pub fn fail_next(&self, method: &str, path_contains: &str, status: u16, times: usize) {
        self.lock().failures.push(Failure {
            method: method.to_owned(),
            path_contains: path_contains.to_owned(),
            status,
            remaining: times,
        });
    }

    /// Refuses `verb` (get, list, watch, patch, delete) on `plural` in
    /// `namespace` with RBAC's 403.
    pub fn forbid(&self, verb: &str, plural: &str, namespace: &str) {
        self.lock()
            .forbidden
            .push((verb.to_owned(), plural.to_owned(), namespace.to_owned()));
    }

    /// Stops serving a group/version (`apis/serving.kserve.io/v1beta1`):
    /// its CRDs are not installed.
    pub fn uninstall(&self, group_version: &str) {
        self.lock().not_served.insert(group_version.to_owned());
    }

    /// Forgets watch events so far: a watch from an older resourceVersion
    /// gets 410 Gone.
    pub fn compact(&self) {
        let mut state = self.lock();
        state.compacted = state.version;
        state.events.clear();
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<KubeRequest> {
        self.lock().requests.clone()
    }

    /// Simulated requests `version` answered so far (ok, failed).
    pub fn served(&self, version: &str) -> (f64, f64) {
        let state = self.lock();
        state
            .traffic
            .get(version)
            .map_or((0.0, 0.0), |counters| (counters.ok, counters.failed))
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.lock().stopping = true;
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

fn lock(state: &Arc<Mutex<KubeState>>) -> MutexGuard<'_, KubeState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn status_body(code: u16, reason: &str, message: &str, details: Value) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": details, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn json_response(code: u16, value: &Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        [("content-type", "application/json")],
        value.to_string(),
    )
        .into_response()
}

/// A parsed object path.
struct Target {
    group_version: String,
    plural: String,
    group: String,
    namespace: String,
    name: Option<String>,
    status: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group_version, group, rest) = match *parts.first()? {
        "api" => (format!("api/{}", parts.get(1)?), String::new(), &parts[2..]),
        "apis" => (
            format!("apis/{}/{}", parts.get(1)?, parts.get(2)?),
            (*parts.get(1)?).to_owned(),
            &parts[3..],
        ),
        _ => return None,
    };
    if rest.first() != Some(&"namespaces") || rest.len() < 3 {
        return None;
    }
    Some(Target {
        group_version,
        group,
        namespace: rest[1].to_owned(),
        plural: rest[2].to_owned(),
        name: rest.get(3).map(|name| (*name).to_owned()),
        status: rest.get(4) == Some(&"status"),
    })
}

fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .map(|query| {
            url::form_urlencoded::parse(query.as_bytes())
                .map(|(key, value)| (key.into_owned(), value.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn handle(
    state: &Arc<Mutex<KubeState>>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let content_type = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if path == "/metrics" {
        return (StatusCode::OK, metrics(&lock(state))).into_response();
    }
    let record = |status: u16| KubeRequest {
        method: method.to_string(),
        path: uri.to_string(),
        content_type: content_type.clone(),
        status,
    };
    let authorized = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        == Some(&format!("Bearer {KUBE_TOKEN}"));
    let mut guard = lock(state);
    if !authorized {
        guard.requests.push(record(401));
        return status_body(401, "Unauthorized", "Unauthorized", json!({}));
    }
    if let Some(failure) = guard.failures.iter_mut().find(|failure| {
        failure.remaining > 0
            && failure.method == method.as_str()
            && uri.to_string().contains(&failure.path_contains)
    }) {
        failure.remaining -= 1;
        let status = failure.status;
        guard.requests.push(record(status));
        let mut response = status_body(status, "InternalError", "injected by the test", json!({}));
        if status == 429 {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        return response;
    }
    let answer = route(&mut guard, state, method, uri, &content_type, body);
    let status = answer.status().as_u16();
    guard.requests.push(record(status));
    answer
}

fn route(
    guard: &mut MutexGuard<'_, KubeState>,
    shared: &Arc<Mutex<KubeState>>,
    method: &Method,
    uri: &Uri,
    content_type: &str,
    body: &Bytes,
) -> Response {
    let path = uri.path();
    let not_found_resource = || {
        status_body(
            404,
            "NotFound",
            "the server could not find the requested resource",
            json!({}),
        )
    };
    // Discovery.
    let trimmed = path.trim_matches('/');
    let depth = trimmed.split('/').count();
    if (trimmed.starts_with("api/") && depth == 2) || (trimmed.starts_with("apis/") && depth == 3) {
        let group_version = trimmed;
        if guard.not_served.contains(group_version) {
            return not_found_resource();
        }
        let resources: Vec<Value> = RESOURCES
            .iter()
            .filter(|(gv, _, _)| *gv == group_version)
            .map(|(_, plural, kind)| json!({"name": plural, "namespaced": true, "kind": kind, "verbs": ["get","list","watch","patch","delete"]}))
            .collect();
        if resources.is_empty() {
            return not_found_resource();
        }
        return json_response(
            200,
            &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version.trim_start_matches("apis/").trim_start_matches("api/"), "resources": resources}),
        );
    }
    let Some(target) = parse_path(path) else {
        return not_found_resource();
    };
    let Some((_, _, kind)) = RESOURCES
        .iter()
        .find(|(gv, plural, _)| *gv == target.group_version && *plural == target.plural)
    else {
        return not_found_resource();
    };
    if guard.not_served.contains(&target.group_version) {
        return not_found_resource();
    }
    let query = query_map(uri);
    let verb = match (method.as_str(), &target.name) {
        ("GET", Some(_)) => "get",
        ("GET", None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => "watch",
        ("GET", None) => "list",
        ("PATCH", _) => "patch",
        ("DELETE", _) => "delete",
        _ => "unknown",
    };
    let resource = if target.group.is_empty() {
        target.plural.clone()
    } else {
        format!("{}.{}", target.plural, target.group)
    };
    if guard.forbidden.iter().any(|(v, plural, namespace)| {
        v == verb && *plural == target.plural && *namespace == target.namespace
    }) {
        let name = target.name.clone().unwrap_or_default();
        return status_body(
            403,
            "Forbidden",
            &format!(
                "{resource} \"{name}\" is forbidden: User \"system:serviceaccount:ci:gantry\" cannot {verb} resource \"{}\" in API group \"{}\" in the namespace \"{}\"",
                target.plural, target.group, target.namespace
            ),
            json!({"name": name, "group": target.group, "kind": target.plural}),
        );
    }
    let collection = format!("{}/{}", target.group_version, target.plural);
    let missing = |name: &str| {
        status_body(
            404,
            "NotFound",
            &format!("{resource} \"{name}\" not found"),
            json!({"name": name, "group": target.group, "kind": target.plural}),
        )
    };
    match verb {
        "get" => {
            let name = target.name.clone().unwrap_or_default();
            match guard
                .objects
                .get(&(collection, target.namespace.clone(), name.clone()))
            {
                Some(stored) => json_response(200, &rendered(stored)),
                None => missing(&name),
            }
        }
        "list" => {
            let selector = query.get("labelSelector").cloned().unwrap_or_default();
            let items: Vec<Value> = guard
                .objects
                .iter()
                .filter(|((c, n, _), stored)| {
                    *c == collection
                        && *n == target.namespace
                        && matches_labels(&stored.value, &selector)
                })
                .map(|(_, stored)| rendered(stored))
                .collect();
            json_response(
                200,
                &json!({"kind": format!("{kind}List"), "apiVersion": target.group_version.trim_start_matches("apis/").trim_start_matches("api/"), "metadata": {"resourceVersion": guard.version.to_string()}, "items": items}),
            )
        }
        "watch" => watch(guard, shared, &collection, &target.namespace, &query),
        "patch" => {
            let name = target.name.clone().unwrap_or_default();
            let manager = query
                .get("fieldManager")
                .cloned()
                .unwrap_or_else(|| "unknown".to_owned());
            let force = query.get("force").is_some_and(|f| f == "true");
            let Ok(patch) = serde_json::from_slice::<Value>(body) else {
                return status_body(
                    400,
                    "BadRequest",
                    "the body is not JSON (this fake reads JSON bodies only)",
                    json!({}),
                );
            };
            let key = (collection.clone(), target.namespace.clone(), name.clone());
            if let Some(expected) = patch["metadata"]["resourceVersion"].as_str()
                && let Some(stored) = guard.objects.get(&key)
                && stored.value["metadata"]["resourceVersion"].as_str() != Some(expected)
            {
                return status_body(
                    409,
                    "Conflict",
                    &format!(
                        "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
                    ),
                    json!({"name": name, "group": target.group, "kind": target.plural}),
                );
            }
            if content_type.starts_with("application/apply-patch") {
                if target.status {
                    return status_body(
                        400,
                        "BadRequest",
                        "this fake applies to the object, not its status",
                        json!({}),
                    );
                }
                apply(guard, &key, kind, patch, &manager, force)
            } else if content_type.starts_with("application/merge-patch+json") {
                if !guard.objects.contains_key(&key) {
                    return missing(&name);
                }
                merge(guard, &key, patch, &manager, target.status)
            } else {
                status_body(
                    415,
                    "UnsupportedMediaType",
                    &format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
                    ),
                    json!({}),
                )
            }
        }
        "delete" => {
            let name = target.name.clone().unwrap_or_default();
            let key = (collection.clone(), target.namespace.clone(), name.clone());
            if guard.objects.remove(&key).is_none() {
                return missing(&name);
            }
            guard.version += 1;
            let version = guard.version;
            guard.events.push((
                version,
                collection,
                target.namespace.clone(),
                name.clone(),
                "DELETED",
                json!({"metadata": {"name": name, "resourceVersion": version.to_string()}}),
            ));
            json_response(
                200,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}}),
            )
        }
        _ => status_body(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
            json!({}),
        ),
    }
}

fn matches_labels(object: &Value, selector: &str) -> bool {
    selector
        .split(',')
        .filter(|term| !term.is_empty())
        .all(|term| match term.split_once('=') {
            Some((key, value)) => object["metadata"]["labels"][key] == value,
            None => false,
        })
}

/// A watch: events after `resourceVersion` (or ADDED for what exists),
/// bookmarks every second, closed after `timeoutSeconds`.
fn watch(
    guard: &mut MutexGuard<'_, KubeState>,
    shared: &Arc<Mutex<KubeState>>,
    collection: &str,
    namespace: &str,
    query: &BTreeMap<String, String>,
) -> Response {
    let name = query
        .get("fieldSelector")
        .and_then(|selector| selector.strip_prefix("metadata.name="))
        .map(str::to_owned);
    let mut initial = Vec::new();
    let from = match query
        .get("resourceVersion")
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(version) if version < guard.compacted => {
            let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": format!("too old resource version: {version} ({})", guard.compacted), "reason": "Expired", "code": 410}});
            return (StatusCode::OK, format!("{gone}\n")).into_response();
        }
        Some(version) => version,
        None => {
            for ((c, n, object_name), stored) in &guard.objects {
                if c == collection
                    && n == namespace
                    && name.as_ref().is_none_or(|wanted| wanted == object_name)
                {
                    initial.push(json!({"type": "ADDED", "object": rendered(stored)}));
                }
            }
            guard.version
        }
    };
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(30)
        .min(60);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let shared = Arc::clone(shared);
    let collection = collection.to_owned();
    let namespace = namespace.to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    let state = (from, initial, tokio::time::Instant::now());
    let stream = futures_util::stream::unfold(
        state,
        move |(mut seen, mut pending, mut bookmark_at)| {
            let shared = Arc::clone(&shared);
            let collection = collection.clone();
            let namespace = namespace.clone();
            let name = name.clone();
            async move {
                loop {
                    if !pending.is_empty() {
                        let event: Value = pending.remove(0);
                        return Some((
                            Ok::<_, std::io::Error>(Bytes::from(format!("{event}\n"))),
                            (seen, pending, bookmark_at),
                        ));
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return None;
                    }
                    {
                        let state = lock(&shared);
                        if state.stopping {
                            return None;
                        }
                        for (version, c, n, object_name, kind, object) in &state.events {
                            if *version > seen
                                && *c == collection
                                && *n == namespace
                                && name.as_ref().is_none_or(|wanted| wanted == object_name)
                            {
                                pending.push(json!({"type": kind, "object": object}));
                            }
                        }
                        if bookmarks && tokio::time::Instant::now() >= bookmark_at {
                            pending.push(json!({"type": "BOOKMARK", "object": {"kind": "Bookmark", "metadata": {"resourceVersion": state.version.to_string()}}}));
                            bookmark_at = tokio::time::Instant::now() + Duration::from_secs(1);
                        }
                        seen = state.version;
                    }
                    if pending.is_empty() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        },
    );
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Leaf paths of an object as JSON pointers: maps are followed, lists are
/// one field (atomic), identity fields are left out.
fn leaf_paths(value: &Value) -> BTreeSet<String> {
    fn walk(value: &Value, path: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    let escaped = key.replace('~', "~0").replace('/', "~1");
                    walk(child, &format!("{path}/{escaped}"), out);
                }
            }
            _ => {
                out.insert(path.to_owned());
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(value, "", &mut out);
    for identity in [
        "/apiVersion",
        "/kind",
        "/metadata/name",
        "/metadata/namespace",
        "/metadata/resourceVersion",
    ] {
        out.remove(identity);
    }
    out.retain(|path| !path.starts_with("/status") && !path.starts_with("/metadata/managedFields"));
    out
}

fn related(a: &str, b: &str) -> bool {
    a == b || a.starts_with(&format!("{b}/")) || b.starts_with(&format!("{a}/"))
}

fn dotted(pointer: &str) -> String {
    pointer
        .replace('/', ".")
        .replace("~1", "/")
        .replace("~0", "~")
}

fn set_pointer(target: &mut Value, pointer: &str, value: Value) {
    let mut current = target;
    let parts: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|part| part.replace("~1", "/").replace("~0", "~"))
        .collect();
    for (index, part) in parts.iter().enumerate() {
        if !current.is_object() {
            *current = json!({});
        }
        let Some(map) = current.as_object_mut() else {
            return;
        };
        if index == parts.len() - 1 {
            map.insert(part.clone(), value);
            return;
        }
        current = map.entry(part.clone()).or_insert_with(|| json!({}));
    }
}

fn remove_pointer(target: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    if let Some(map) = target.pointer_mut(parent).and_then(Value::as_object_mut) {
        map.remove(&last);
    }
}

fn apply(
    guard: &mut MutexGuard<'_, KubeState>,
    key: &(String, String, String),
    kind: &str,
    patch: Value,
    manager: &str,
    force: bool,
) -> Response {
    let applied = leaf_paths(&patch);
    let api_version = patch["apiVersion"].clone();
    let created = !guard.objects.contains_key(key);
    let stored = guard.objects.entry(key.clone()).or_insert_with(|| Stored {
        value: json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": key.2, "namespace": key.1}}),
        managers: BTreeMap::new(),
    });
    let mut conflicts = Vec::new();
    for (other, (_, owned)) in &stored.managers {
        if other == manager {
            continue;
        }
        for path in &applied {
            for owned_path in owned.iter().filter(|owned_path| related(owned_path, path)) {
                let shorter = if owned_path.len() < path.len() {
                    owned_path
                } else {
                    path
                };
                let current = stored.value.pointer(shorter);
                let wanted = patch.pointer(shorter);
                if current != wanted {
                    conflicts.push((other.clone(), shorter.clone()));
                }
            }
        }
    }
    conflicts.sort();
    conflicts.dedup();
    if !conflicts.is_empty() && !force {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(other, path)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{other}\" using {}", patch["apiVersion"].as_str().unwrap_or("v1")), "field": dotted(path)}))
            .collect();
        let message = format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            conflicts
                .iter()
                .map(|(other, path)| format!("conflict with \"{other}\": {}", dotted(path)))
                .collect::<Vec<_>>()
                .join("\n")
        );
        if created {
            guard.objects.remove(key);
        }
        return status_body(409, "Conflict", &message, json!({"causes": causes}));
    }
    let before = stored.value.clone();
    // Fields this manager applied before and not now, owned by no one else, go.
    let previous = stored
        .managers
        .get(manager)
        .map(|(_, owned)| owned.clone())
        .unwrap_or_default();
    for path in previous.difference(&applied) {
        let shared = stored
            .managers
            .iter()
            .any(|(other, (_, owned))| other != manager && owned.iter().any(|o| related(o, path)));
        if !shared {
            remove_pointer(&mut stored.value, path);
        }
    }
    for path in &applied {
        if let Some(value) = patch.pointer(path) {
            set_pointer(&mut stored.value, path, value.clone());
        }
    }
    if force {
        for (other, (_, owned)) in stored.managers.iter_mut() {
            if other != manager {
                owned.retain(|o| !applied.iter().any(|path| related(o, path)));
            }
        }
        stored.managers.retain(|_, (_, owned)| !owned.is_empty());
    }
    stored
        .managers
        .insert(manager.to_owned(), ("Apply".to_owned(), applied));
    let changed_spec = before["spec"] != stored.value["spec"];
    let changed = before != stored.value;
    let key = key.clone();
    if created || changed {
        if changed_spec || created {
            let generation = stored.value["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
            stored.value["metadata"]["generation"] = json!(generation);
        }
        bump(guard, &key);
        reconcile(guard);
    }
    let stored = &guard.objects[&key];
    json_response(if created { 201 } else { 200 }, &rendered(stored))
}

fn merge_into(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(map), Some(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    map.remove(key);
                } else {
                    merge_into(map.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn merge(
    guard: &mut MutexGuard<'_, KubeState>,
    key: &(String, String, String),
    patch: Value,
    manager: &str,
    status: bool,
) -> Response {
    let Some(stored) = guard.objects.get_mut(key) else {
        return status_body(404, "NotFound", "not found", json!({}));
    };
    let before = stored.value.clone();
    if status {
        if let Some(status_patch) = patch.get("status") {
            let mut status_value = stored.value.get("status").cloned().unwrap_or(json!({}));
            merge_into(&mut status_value, status_patch);
            stored.value["status"] = status_value;
        }
    } else {
        let mut patch = patch;
        if let Some(map) = patch.as_object_mut() {
            map.remove("status");
        }
        merge_into(&mut stored.value, &patch);
        let paths = leaf_paths(&patch);
        for (other, (_, owned)) in stored.managers.iter_mut() {
            if other != manager {
                owned.retain(|o| !paths.iter().any(|path| related(o, path)));
            }
        }
        stored
            .managers
            .entry(manager.to_owned())
            .or_insert_with(|| ("Update".to_owned(), BTreeSet::new()))
            .1
            .extend(paths);
    }
    if before["spec"] != stored.value["spec"] {
        let generation = stored.value["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        stored.value["metadata"]["generation"] = json!(generation);
    }
    let key = key.clone();
    if before != guard.objects[&key].value {
        bump(guard, &key);
        reconcile(guard);
    }
    json_response(200, &rendered(&guard.objects[&key]))
}

/// The object with managedFields as the API server shows them.
fn rendered(stored: &Stored) -> Value {
    let mut value = stored.value.clone();
    let managed: Vec<Value> = stored
        .managers
        .iter()
        .map(|(manager, (operation, owned))| {
            let mut fields = serde_json::Map::new();
            for path in owned {
                let parts: Vec<String> = path
                    .split('/')
                    .skip(1)
                    .map(|part| part.replace("~1", "/").replace("~0", "~"))
                    .collect();
                insert_field(&mut fields, &parts);
            }
            json!({"manager": manager, "operation": operation, "fieldsType": "FieldsV1", "fieldsV1": fields})
        })
        .collect();
    value["metadata"]["managedFields"] = Value::Array(managed);
    value
}

fn insert_field(fields: &mut serde_json::Map<String, Value>, parts: &[String]) {
    if let Some((first, rest)) = parts.split_first() {
        let entry = fields
            .entry(format!("f:{first}"))
            .or_insert_with(|| json!({}));
        if let Some(map) = entry.as_object_mut() {
            insert_field(map, rest);
        }
    }
}

fn stamp(value: &mut Value, version: u64, generation: i64) {
    value["metadata"]["resourceVersion"] = json!(version.to_string());
    if value["metadata"]["generation"].is_null() {
        value["metadata"]["generation"] = json!(generation);
    }
    if value["metadata"]["uid"].is_null() {
        value["metadata"]["uid"] = json!(format!("uid-{version}"));
    }
}

fn key_of(object: &Value) -> (String, String, String) {
    let api_version = object["apiVersion"].as_str().unwrap_or("v1");
    let kind = object["kind"].as_str().unwrap_or_default();
    let group_version = if api_version.contains('/') {
        format!("apis/{api_version}")
    } else {
        format!("api/{api_version}")
    };
    let plural = RESOURCES
        .iter()
        .find(|(gv, _, k)| *gv == group_version && *k == kind)
        .map_or_else(
            || format!("{}s", kind.to_lowercase()),
            |(_, plural, _)| (*plural).to_owned(),
        );
    (
        format!("{group_version}/{plural}"),
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_owned(),
        object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

/// A new resourceVersion for the object, and a MODIFIED event.
fn bump(state: &mut KubeState, key: &(String, String, String)) {
    state.version += 1;
    let version = state.version;
    if let Some(stored) = state.objects.get_mut(key) {
        stamp(&mut stored.value, version, 1);
    }
    emit(state, &key.0, &key.1, &key.2, "MODIFIED");
}

fn emit(state: &mut KubeState, collection: &str, namespace: &str, name: &str, kind: &'static str) {
    let key = (collection.to_owned(), namespace.to_owned(), name.to_owned());
    let Some(stored) = state.objects.get(&key) else {
        return;
    };
    let object = rendered(stored);
    let version = state.version;
    state
        .events
        .push((version, key.0, key.1, key.2, kind, object));
}

fn behavior(state: &KubeState, version: &str) -> Behavior {
    state.behaviors.get(version).copied().unwrap_or_default()
}

/// The controllers' stand-ins: status for each object that needs it.
fn reconcile(state: &mut KubeState) {
    let keys: Vec<(String, String, String)> = state.objects.keys().cloned().collect();
    for key in keys {
        let Some(stored) = state.objects.get(&key) else {
            continue;
        };
        let object = stored.value.clone();
        let status = match key.0.as_str() {
            "apis/apps/v1/deployments" => deployment_status(state, &key, &object),
            "apis/gateway.networking.k8s.io/v1/httproutes" => {
                Some(route_status(state, &key, &object))
            }
            "apis/serving.kserve.io/v1beta1/inferenceservices" => isvc_status(state, &key, &object),
            "apis/argoproj.io/v1alpha1/rollouts" => rollout_status(state, &key, &object),
            _ => None,
        };
        if let Some(status) = status
            && status != object["status"]
        {
            if let Some(stored) = state.objects.get_mut(&key) {
                stored.value["status"] = status;
            }
            bump(state, &key);
        }
    }
}

fn deployment_status(
    state: &mut KubeState,
    key: &(String, String, String),
    object: &Value,
) -> Option<Value> {
    let generation = object["metadata"]["generation"].as_i64().unwrap_or(1);
    let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1);
    let version = object["metadata"]["annotations"]["gantry.dev/version"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let started_key = format!("deploy/{}/{}/{generation}", key.1, key.2);
    let started = *state
        .started
        .entry(started_key)
        .or_insert_with(Instant::now);
    let elapsed = started.elapsed();
    let crash = behavior(state, &version).crash;
    let ready = !crash && elapsed >= state.ready_delay;
    let mut conditions = vec![
        json!({"type": "Available", "status": if ready { "True" } else { "False" }, "reason": if ready { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }}),
    ];
    if crash && elapsed >= Duration::from_secs(1) {
        conditions.push(json!({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": format!("ReplicaSet \"{}-7d9f\" has timed out progressing: container server: CrashLoopBackOff", key.2)}));
    } else {
        conditions.push(
            json!({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}),
        );
    }
    Some(json!({
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": if ready { replicas } else { 0 },
        "availableReplicas": if ready { replicas } else { 0 },
        "conditions": conditions,
    }))
}

fn route_status(state: &KubeState, key: &(String, String, String), route: &Value) -> Value {
    let generation = route["metadata"]["generation"].as_i64().unwrap_or(1);
    let mut resolved = (true, String::new());
    for rule in route["spec"]["rules"].as_array().into_iter().flatten() {
        for reference in rule["backendRefs"].as_array().into_iter().flatten() {
            let name = reference["name"].as_str().unwrap_or_default();
            if !state.objects.contains_key(&(
                "api/v1/services".to_owned(),
                key.1.clone(),
                name.to_owned(),
            )) {
                resolved = (false, format!("Service \"{name}\" not found"));
            }
        }
    }
    let parents: Vec<Value> = route["spec"]["parentRefs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|parent| {
            json!({
                "parentRef": parent,
                "controllerName": "gantry.dev/fake-gateway",
                "conditions": [
                    {"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": generation, "message": ""},
                    {"type": "ResolvedRefs", "status": if resolved.0 { "True" } else { "False" }, "reason": if resolved.0 { "ResolvedRefs" } else { "BackendNotFound" }, "observedGeneration": generation, "message": resolved.1},
                ],
            })
        })
        .collect();
    json!({"parents": parents})
}

fn isvc_status(
    state: &mut KubeState,
    key: &(String, String, String),
    isvc: &Value,
) -> Option<Value> {
    let generation = isvc["metadata"]["generation"].as_i64().unwrap_or(1);
    let predictor = &isvc["spec"]["predictor"];
    let version = predictor["labels"]["app.kubernetes.io/version"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let current = &isvc["status"]["components"]["predictor"];
    // A new revision when what the pods run changes (not the traffic split).
    let template = json!({"model": predictor["model"], "labels": predictor["labels"]}).to_string();
    let revision_key = format!("isvc-template/{}/{}", key.1, key.2);
    let known_template = state.revisions.get(&revision_key).cloned();
    let mut created = current["latestCreatedRevision"].as_str().map(str::to_owned);
    if known_template.as_deref() != Some(template.as_str()) {
        let count = state
            .revisions
            .keys()
            .filter(|k| k.starts_with(&format!("{}-predictor-", key.2)))
            .count()
            + 1;
        let revision = format!("{}-predictor-{count:05}", key.2);
        state.revisions.insert(revision.clone(), version.clone());
        state.revisions.insert(revision_key, template);
        state
            .started
            .insert(format!("revision/{revision}"), Instant::now());
        created = Some(revision);
    }
    let created = created?;
    let started = state
        .started
        .get(&format!("revision/{created}"))
        .copied()
        .unwrap_or_else(Instant::now);
    let crash = behavior(state, &version).crash;
    let mut ready_revision = current["latestReadyRevision"].as_str().map(str::to_owned);
    if !crash && started.elapsed() >= state.ready_delay {
        ready_revision = Some(created.clone());
    }
    let rolled_out = current["latestRolledoutRevision"]
        .as_str()
        .map(str::to_owned);
    let percent = predictor["canaryTrafficPercent"].as_i64();
    let mut traffic = Vec::new();
    let mut new_rolled_out = rolled_out.clone();
    if let Some(ready) = &ready_revision {
        match (percent, &rolled_out) {
            (Some(percent), Some(previous)) if percent < 100 && previous != ready => {
                traffic.push(
                    json!({"latestRevision": true, "percent": percent, "revisionName": ready}),
                );
                traffic.push(json!({"latestRevision": false, "percent": 100 - percent, "revisionName": previous, "tag": "prev"}));
            }
            _ => {
                traffic
                    .push(json!({"latestRevision": true, "percent": 100, "revisionName": ready}));
                new_rolled_out = Some(ready.clone());
            }
        }
    }
    let ready = ready_revision.as_deref() == Some(created.as_str());
    let mut status = json!({
        "observedGeneration": generation,
        "url": format!("http://{}.{}.example.com", key.2, key.1),
        "components": {"predictor": {
            "latestCreatedRevision": created,
            "latestReadyRevision": ready_revision,
            "latestRolledoutRevision": new_rolled_out,
            "previousRolledoutRevision": rolled_out.filter(|previous| Some(previous) != new_rolled_out.as_ref()),
            "traffic": traffic,
        }},
        "conditions": [
            {"type": "PredictorReady", "status": if ready { "True" } else { "False" }},
            {"type": "Ready", "status": if ready { "True" } else { "False" }},
        ],
        "modelStatus": {"transitionStatus": if ready { "UpToDate" } else { "InProgress" }},
    });
    if crash && started.elapsed() >= Duration::from_secs(1) {
        status["modelStatus"] = json!({"transitionStatus": "BlockedByFailedLoad", "lastFailureInfo": {"reason": "ModelLoadFailed", "message": "the model server exited: CUDA out of memory"}});
    }
    Some(status)
}

fn pod_hash(template: &Value) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    template.to_string().hash(&mut hasher);
    format!("{:010x}", hasher.finish() & 0xff_ffff_ffff)
}

fn rollout_status(
    state: &mut KubeState,
    key: &(String, String, String),
    rollout: &Value,
) -> Option<Value> {
    let generation = rollout["metadata"]["generation"].as_i64().unwrap_or(1);
    let template = &rollout["spec"]["template"];
    let hash = pod_hash(template);
    let version = template["metadata"]["annotations"]["gantry.dev/version"]
        .as_str()
        .unwrap_or("initial")
        .to_owned();
    state.pod_hashes.insert(hash.clone(), version.clone());
    let steps = rollout["spec"]["strategy"]["canary"]["steps"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut status = rollout["status"].clone();
    if !status.is_object() {
        // First seen: what it runs now is stable.
        status = json!({"phase": "Healthy", "currentPodHash": hash, "stableRS": hash, "currentStepIndex": steps.len(), "canary": {"weights": {"canary": {"weight": 0}, "stable": {"weight": 100}}}});
    }
    status["observedGeneration"] = json!(generation.to_string());
    if status["currentPodHash"] != hash.as_str() {
        status["currentPodHash"] = json!(hash);
        status["currentStepIndex"] = json!(0);
        status["phase"] = json!("Progressing");
        status["abort"] = json!(false);
        status["message"] = Value::Null;
        status["canary"]["currentStepAnalysisRunStatus"] = Value::Null;
        status["pauseConditions"] = Value::Null;
        state
            .started
            .insert(format!("step/{}/{}", key.2, hash), Instant::now());
        return Some(status);
    }
    let phase = status["phase"].as_str().unwrap_or_default().to_owned();
    if status["abort"] == true {
        if phase != "Degraded" {
            status["phase"] = json!("Degraded");
            status["message"] = json!(format!(
                "RolloutAborted: Rollout aborted update to revision {generation}"
            ));
            status["canary"]["weights"]["canary"]["weight"] = json!(0);
        }
        return Some(status);
    }
    if phase == "Healthy" || phase == "Degraded" {
        return Some(status);
    }
    let index = status["currentStepIndex"].as_u64().unwrap_or(0) as usize;
    let step_key = format!("step/{}/{}", key.2, hash);
    let step_started = *state
        .started
        .entry(step_key.clone())
        .or_insert_with(Instant::now);
    let ticked = step_started.elapsed() >= Duration::from_millis(300);
    let Some(step) = steps.get(index) else {
        status["stableRS"] = json!(hash);
        status["phase"] = json!("Healthy");
        status["canary"]["weights"]["canary"]["weight"] = json!(0);
        status["canary"]["weights"]["stable"]["weight"] = json!(100);
        status["message"] = Value::Null;
        return Some(status);
    };
    let advance = |status: &mut Value, state: &mut KubeState| {
        status["currentStepIndex"] = json!(index + 1);
        state.started.insert(step_key.clone(), Instant::now());
    };
    if let Some(weight) = step["setWeight"].as_i64() {
        status["canary"]["weights"]["canary"]["weight"] = json!(weight);
        status["canary"]["weights"]["stable"]["weight"] = json!(100 - weight);
        if ticked {
            advance(&mut status, state);
        }
    } else if step["pause"].is_object() {
        let duration = step["pause"]["duration"]
            .as_str()
            .and_then(|d| d.trim_end_matches('s').parse::<u64>().ok());
        let paused = status["pauseConditions"]
            .as_array()
            .is_some_and(|c| !c.is_empty());
        match duration {
            Some(seconds) if step_started.elapsed() >= Duration::from_secs(seconds) => {
                status["pauseConditions"] = Value::Null;
                status["phase"] = json!("Progressing");
                advance(&mut status, state);
            }
            Some(_) => {
                status["pauseConditions"] =
                    json!([{"reason": "CanaryPauseStep", "startTime": "2026-12-05T00:00:00Z"}]);
            }
            None if status["phase"] == "Paused" && !paused => {
                // Promoted: the pause conditions were cleared.
                status["phase"] = json!("Progressing");
                status["controllerPause"] = json!(false);
                advance(&mut status, state);
            }
            None => {
                status["pauseConditions"] =
                    json!([{"reason": "CanaryPauseStep", "startTime": "2026-12-05T00:00:00Z"}]);
                status["controllerPause"] = json!(true);
                status["phase"] = json!("Paused");
            }
        }
    } else if step["analysis"].is_object() {
        let name = format!("{}-{}-{}", key.2, hash, index);
        let bad = behavior(state, &version).error_rate > 0.01;
        if !ticked {
            status["canary"]["currentStepAnalysisRunStatus"] =
                json!({"name": name, "status": "Running"});
        } else if bad {
            status["canary"]["currentStepAnalysisRunStatus"] = json!({"name": name, "status": "Failed", "message": "Metric \"error-rate\" assessed Failed due to failed (1) > failureLimit (0)"});
            status["abort"] = json!(true);
            status["phase"] = json!("Degraded");
            status["message"] = json!(format!(
                "RolloutAborted: Rollout aborted update to revision {generation}: Metric \"error-rate\" assessed Failed due to failed (1) > failureLimit (0)"
            ));
            status["canary"]["weights"]["canary"]["weight"] = json!(0);
            status["canary"]["weights"]["stable"]["weight"] = json!(100);
        } else {
            status["canary"]["currentStepAnalysisRunStatus"] =
                json!({"name": name, "status": "Successful"});
            advance(&mut status, state);
        }
    } else {
        advance(&mut status, state);
    }
    Some(status)
}

/// Sends `seconds` of simulated traffic (200 requests a second per traffic
/// object) where each engine's weights say.
fn simulate_traffic(state: &mut KubeState, seconds: f64) {
    let mut shares: Vec<(String, f64)> = Vec::new();
    for ((collection, namespace, _), stored) in &state.objects {
        let object = &stored.value;
        match collection.as_str() {
            "apis/gateway.networking.k8s.io/v1/httproutes" => {
                let Some(rule) = object["spec"]["rules"]
                    .as_array()
                    .and_then(|rules| rules.first())
                else {
                    continue;
                };
                let refs = rule["backendRefs"].as_array().cloned().unwrap_or_default();
                let total: f64 = refs
                    .iter()
                    .map(|r| r["weight"].as_f64().unwrap_or(1.0))
                    .sum();
                for reference in refs {
                    let weight = reference["weight"].as_f64().unwrap_or(1.0);
                    let service = reference["name"].as_str().unwrap_or_default();
                    let deployment = state.objects.get(&(
                        "apis/apps/v1/deployments".to_owned(),
                        namespace.clone(),
                        service.to_owned(),
                    ));
                    let Some(deployment) = deployment else {
                        continue;
                    };
                    let available = deployment.value["status"]["availableReplicas"]
                        .as_i64()
                        .unwrap_or(0)
                        > 0;
                    let version = deployment.value["metadata"]["annotations"]["gantry.dev/version"]
                        .as_str()
                        .unwrap_or_default();
                    if available && total > 0.0 {
                        shares.push((version.to_owned(), weight / total));
                    }
                }
            }
            "apis/serving.kserve.io/v1beta1/inferenceservices" => {
                for target in object["status"]["components"]["predictor"]["traffic"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    let revision = target["revisionName"].as_str().unwrap_or_default();
                    if let Some(version) = state.revisions.get(revision) {
                        shares.push((
                            version.clone(),
                            target["percent"].as_f64().unwrap_or(0.0) / 100.0,
                        ));
                    }
                }
            }
            "apis/argoproj.io/v1alpha1/rollouts" => {
                let status = &object["status"];
                let canary = status["canary"]["weights"]["canary"]["weight"]
                    .as_f64()
                    .unwrap_or(0.0)
                    / 100.0;
                let current = status["currentPodHash"]
                    .as_str()
                    .and_then(|hash| state.pod_hashes.get(hash));
                let stable = status["stableRS"]
                    .as_str()
                    .and_then(|hash| state.pod_hashes.get(hash));
                if let (Some(current), Some(stable)) = (current, stable) {
                    if current == stable {
                        shares.push((stable.clone(), 1.0));
                    } else {
                        shares.push((current.clone(), canary));
                        shares.push((stable.clone(), 1.0 - canary));
                    }
                }
            }
            _ => {}
        }
    }
    for (version, share) in shares {
        let behavior = behavior(state, &version);
        let requests = 200.0 * seconds * share;
        let counters = state.traffic.entry(version).or_default();
        counters.failed += requests * behavior.error_rate;
        counters.ok += requests * (1.0 - behavior.error_rate);
        for bound in BUCKETS {
            if behavior.latency <= *bound {
                *counters.latency.entry(format!("{bound}")).or_default() += requests;
            }
        }
        *counters.latency.entry("+Inf".to_owned()).or_default() += requests;
    }
}

const BUCKETS: &[f64] = &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// The simulated traffic in vLLM's and Knative's names.
fn metrics(state: &KubeState) -> String {
    let mut out = String::new();
    out.push_str("# TYPE http_requests_total counter\n");
    for (version, counters) in &state.traffic {
        out.push_str(&format!(
            "http_requests_total{{version=\"{version}\",status=\"2xx\"}} {}\n",
            counters.ok
        ));
        out.push_str(&format!(
            "http_requests_total{{version=\"{version}\",status=\"5xx\"}} {}\n",
            counters.failed
        ));
    }
    out.push_str("# TYPE revision_app_request_count counter\n");
    for (version, counters) in &state.traffic {
        out.push_str(&format!(
            "revision_app_request_count{{version=\"{version}\",response_code_class=\"2xx\"}} {}\n",
            counters.ok
        ));
        out.push_str(&format!(
            "revision_app_request_count{{version=\"{version}\",response_code_class=\"5xx\"}} {}\n",
            counters.failed
        ));
    }
    for (name, scale) in [
        ("vllm:e2e_request_latency_seconds", 1.0),
        ("vllm:time_to_first_token_seconds", 0.25),
        ("revision_app_request_latencies", 1000.0),
    ] {
        out.push_str(&format!("# TYPE {name} histogram\n"));
        for (version, counters) in &state.traffic {
            let mut bounds: Vec<&f64> = BUCKETS.iter().collect();
            bounds.sort_by(|a, b| a.total_cmp(b));
            for bound in bounds {
                let count = counters
                    .latency
                    .get(&format!("{bound}"))
                    .copied()
                    .unwrap_or(0.0);
                out.push_str(&format!(
                    "{name}_bucket{{version=\"{version}\",le=\"{}\"}} {count}\n",
                    bound * scale
                ));
            }
            let total = counters.latency.get("+Inf").copied().unwrap_or(0.0);
            out.push_str(&format!(
                "{name}_bucket{{version=\"{version}\",le=\"+Inf\"}} {total}\n"
            ));
            out.push_str(&format!("{name}_count{{version=\"{version}\"}} {total}\n"));
        }
    }
    out
}
