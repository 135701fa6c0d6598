//! The API server, as gantry talks to it: raw requests on kube-rs's client,
//! the shared retry policy, and refusals that say what to grant or fix.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use gantry_core::RetryPolicy;
use gantry_core::retry::{Attempt, retry};
use http_body_util::BodyExt as _;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::kubernetes::FIELD_MANAGER;

/// A kind of object gantry reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The API group (`""` for the core group).
    pub group: &'static str,
    /// The version.
    pub version: &'static str,
    /// The resource (plural, lowercase).
    pub plural: &'static str,
    /// The kind.
    pub kind: &'static str,
    /// What installs it, when it is not built in.
    pub installed_by: Option<&'static str>,
}

impl Kind {
    /// `apps/v1` Deployments.
    pub const DEPLOYMENT: Kind = Kind {
        group: "apps",
        version: "v1",
        plural: "deployments",
        kind: "Deployment",
        installed_by: None,
    };
    /// `v1` Services.
    pub const SERVICE: Kind = Kind {
        group: "",
        version: "v1",
        plural: "services",
        kind: "Service",
        installed_by: None,
    };
    /// Gateway API `HTTPRoute`.
    pub const HTTP_ROUTE: Kind = Kind {
        group: "gateway.networking.k8s.io",
        version: "v1",
        plural: "httproutes",
        kind: "HTTPRoute",
        installed_by: Some("the Gateway API CRDs (standard channel, v1.0 or later)"),
    };
    /// KServe `InferenceService`.
    pub const INFERENCE_SERVICE: Kind = Kind {
        group: "serving.kserve.io",
        version: "v1beta1",
        plural: "inferenceservices",
        kind: "InferenceService",
        installed_by: Some("KServe"),
    };
    /// Argo Rollouts `Rollout`.
    pub const ROLLOUT: Kind = Kind {
        group: "argoproj.io",
        version: "v1alpha1",
        plural: "rollouts",
        kind: "Rollout",
        installed_by: Some("Argo Rollouts"),
    };

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_owned()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn base(&self) -> String {
        if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` as RBAC and kubectl name it.
    pub fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

/// Where the credentials come from.
#[derive(Debug, Clone, Default)]
pub struct ClusterSource {
    /// `--kubeconfig` or `KUBECONFIG` (the first of a `:`-separated list).
    pub kubeconfig: Option<PathBuf>,
    /// `--kube-context`.
    pub context: Option<String>,
    /// `~/.kube/config`, tried when no kubeconfig is named and not in a pod.
    pub home_kubeconfig: Option<PathBuf>,
    /// In a pod: `KUBERNETES_SERVICE_HOST` is set.
    pub in_cluster: bool,
}

/// A connection to one namespace of one cluster.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    /// The namespace every object lives in.
    pub namespace: String,
    /// The cluster in words (context and server).
    pub describe: String,
    policy: RetryPolicy,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("namespace", &self.namespace)
            .field("describe", &self.describe)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects with the kubeconfig (or the pod's service account); nothing
    /// is asked of the server yet.
    pub async fn connect(
        source: &ClusterSource,
        namespace: Option<&str>,
        policy: RetryPolicy,
    ) -> Result<Cluster> {
        let named = source
            .kubeconfig
            .clone()
            .or_else(|| (!source.in_cluster).then(|| source.home_kubeconfig.clone())?);
        let (config, context) = match named {
            Some(path) => {
                if !path.exists() {
                    return Err(Error::Input(format!(
                        "no kubeconfig at {}: give --kubeconfig FILE (or KUBECONFIG), or run in a pod with a service account",
                        path.display()
                    )));
                }
                let kubeconfig = kube::config::Kubeconfig::read_from(&path).map_err(|error| {
                    Error::Input(format!("kubeconfig {}: {error}", path.display()))
                })?;
                let contexts: Vec<String> = kubeconfig
                    .contexts
                    .iter()
                    .map(|context| context.name.clone())
                    .collect();
                let context = source
                    .context
                    .clone()
                    .or_else(|| kubeconfig.current_context.clone());
                match &context {
                    Some(name) if !contexts.contains(name) => {
                        return Err(Error::Input(format!(
                            "--kube-context {name:?}: {} has no such context; it has {}",
                            path.display(),
                            if contexts.is_empty() {
                                "none".to_owned()
                            } else {
                                contexts.join(", ")
                            }
                        )));
                    }
                    None => {
                        return Err(Error::Input(format!(
                            "kubeconfig {}: no current-context; give --kube-context (one of: {})",
                            path.display(),
                            contexts.join(", ")
                        )));
                    }
                    Some(_) => {}
                }
                let options = kube::config::KubeConfigOptions {
                    context: context.clone(),
                    cluster: None,
                    user: None,
                };
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|error| {
                        Error::Input(format!(
                            "kubeconfig {} (context {}): {error}",
                            path.display(),
                            context.clone().unwrap_or_default()
                        ))
                    })?;
                (config, context.unwrap_or_default())
            }
            None if source.in_cluster => {
                if source.context.is_some() {
                    return Err(Error::Input(
                        "--kube-context needs a kubeconfig; in a pod, gantry uses the pod's service account".to_owned(),
                    ));
                }
                let config = kube::Config::incluster_env().map_err(|error| {
                    Error::Input(format!(
                        "in-cluster configuration (the pod's service account): {error}"
                    ))
                })?;
                (config, "in-cluster".to_owned())
            }
            None => {
                return Err(Error::Input(
                    "no kubeconfig: give --kubeconfig FILE (or KUBECONFIG), or run in a pod with a service account".to_owned(),
                ));
            }
        };
        let namespace = namespace
            .map(str::to_owned)
            .unwrap_or_else(|| config.default_namespace.clone());
        check_name("--namespace", &namespace)?;
        let describe = format!(
            "context {context} ({}), namespace {namespace}",
            config.cluster_url
        );
        let client = kube::Client::try_from(config).map_err(|error| {
            Error::Service(format!("cannot build a Kubernetes client: {error}"))
        })?;
        Ok(Cluster {
            client,
            namespace,
            describe,
            policy,
        })
    }

    fn object_path(&self, kind: Kind, name: Option<&str>) -> String {
        let mut path = format!(
            "{}/namespaces/{}/{}",
            kind.base(),
            self.namespace,
            kind.plural
        );
        if let Some(name) = name {
            path.push('/');
            path.push_str(name);
        }
        path
    }

    /// One request, retried on 429, 5xx and no answer.
    async fn call(
        &self,
        method: http::Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes)> {
        let answered = retry(
            &self.policy,
            || {
                let mut request = http::Request::builder()
                    .method(method.clone())
                    .uri(path)
                    .header(http::header::ACCEPT, "application/json");
                if let Some(content_type) = content_type {
                    request = request.header(http::header::CONTENT_TYPE, content_type);
                }
                let request = request.body(kube::client::Body::from(body.clone().unwrap_or_default()));
                let client = self.client.clone();
                let timeout = self.policy.timeout;
                async move {
                    let request = match request {
                        Ok(request) => request,
                        Err(error) => return Attempt::Fatal(error.to_string()),
                    };
                    let sent = tokio::time::timeout(timeout, async {
                        let response = client.send(request).await?;
                        let status = response.status().as_u16();
                        let headers = response.headers().clone();
                        let bytes = response.into_body().collect_bytes().await?;
                        Ok::<_, kube::Error>((status, headers, bytes))
                    })
                    .await;
                    match sent {
                        Ok(Ok(answer)) => Attempt::Answer(answer),
                        Ok(Err(error)) => Attempt::Failed(transport(&error)),
                        Err(_) => Attempt::Failed(format!("no answer within {timeout:?}")),
                    }
                }
            },
            |(status, headers, _)| (*status, headers),
            tokio::time::sleep,
        )
        .await
        .map_err(|no| {
            Error::Service(format!(
                "{method} {path}: the Kubernetes API server ({}) did not answer after {} attempts: {}",
                self.describe, no.attempts, no.error
            ))
        })?;
        let (status, _, body) = answered.answer;
        Ok((status, body))
    }

    /// Reads an object; `None` when it does not exist.
    pub async fn get(&self, kind: Kind, name: &str) -> Result<Option<Value>> {
        let path = self.object_path(kind, Some(name));
        let (status, body) = self.call(http::Method::GET, &path, None, None).await?;
        match status {
            200 => parse(&path, &body).map(Some),
            404 if is_missing_object(&body) => Ok(None),
            _ => Err(self.refusal("get", kind, Some(name), status, &body)),
        }
    }

    /// Lists the objects with `selector` (a label selector).
    pub async fn list(&self, kind: Kind, selector: &str) -> Result<Vec<Value>> {
        let path = format!(
            "{}?labelSelector={}",
            self.object_path(kind, None),
            encode(selector)
        );
        let (status, body) = self.call(http::Method::GET, &path, None, None).await?;
        if status != 200 {
            return Err(self.refusal("list", kind, None, status, &body));
        }
        let list = parse(&path, &body)?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }

    /// Server-side apply with field manager `gantry`; `force` takes fields
    /// other managers own (gantry does so only on objects it owns whole).
    pub async fn apply(
        &self,
        kind: Kind,
        name: &str,
        object: &Value,
        force: bool,
        subresource: Option<&str>,
    ) -> Result<Value> {
        let mut path = self.object_path(kind, Some(name));
        if let Some(subresource) = subresource {
            path.push('/');
            path.push_str(subresource);
        }
        path.push_str(&format!("?fieldManager={FIELD_MANAGER}"));
        if force {
            path.push_str("&force=true");
        }
        let body = serde_json::to_vec(object).map_err(|error| Error::Service(error.to_string()))?;
        let (status, answer) = self
            .call(
                http::Method::PATCH,
                &path,
                Some("application/apply-patch+yaml"),
                Some(body),
            )
            .await?;
        match status {
            200 | 201 => parse(&path, &answer),
            _ => Err(self.refusal("patch", kind, Some(name), status, &answer)),
        }
    }

    /// A JSON merge patch (what `kubectl argo rollouts` sends), on the
    /// `status` subresource when `status` is true, falling back to the
    /// object itself where the CRD has no such subresource.
    pub async fn merge_patch(
        &self,
        kind: Kind,
        name: &str,
        patch: &Value,
        status: bool,
    ) -> Result<Value> {
        let object = self.object_path(kind, Some(name));
        let body = serde_json::to_vec(patch).map_err(|error| Error::Service(error.to_string()))?;
        let paths = if status {
            vec![format!("{object}/status"), object.clone()]
        } else {
            vec![object.clone()]
        };
        let mut last = None;
        for path in paths {
            let query = format!("{path}?fieldManager={FIELD_MANAGER}");
            let (code, answer) = self
                .call(
                    http::Method::PATCH,
                    &query,
                    Some("application/merge-patch+json"),
                    Some(body.clone()),
                )
                .await?;
            match code {
                200 => return parse(&query, &answer),
                404 if path != object => last = Some((code, answer)),
                _ => return Err(self.refusal("patch", kind, Some(name), code, &answer)),
            }
        }
        let (code, answer) = last.unwrap_or((404, Bytes::new()));
        Err(self.refusal("patch", kind, Some(name), code, &answer))
    }

    /// Deletes an object (its dependents in the background); gone already is fine.
    pub async fn delete(&self, kind: Kind, name: &str) -> Result<()> {
        let path = format!(
            "{}?propagationPolicy=Background",
            self.object_path(kind, Some(name))
        );
        let (status, body) = self.call(http::Method::DELETE, &path, None, None).await?;
        match status {
            200 | 202 => Ok(()),
            404 if is_missing_object(&body) => Ok(()),
            _ => Err(self.refusal("delete", kind, Some(name), status, &body)),
        }
    }

    /// Checks that the API server serves `kind` (a CRD is installed).
    pub async fn ensure_served(&self, kind: Kind) -> Result<()> {
        let path = kind.base();
        let (status, body) = self.call(http::Method::GET, &path, None, None).await?;
        let served = match status {
            200 => parse(&path, &body)?["resources"]
                .as_array()
                .is_some_and(|resources| {
                    resources
                        .iter()
                        .any(|resource| resource["name"] == kind.plural)
                }),
            404 => false,
            _ => return Err(self.refusal("get", kind, None, status, &body)),
        };
        if served {
            return Ok(());
        }
        Err(Error::Input(format!(
            "{} does not serve {} ({}): the CRD is not installed; install {} first, or pick another --k8s-engine",
            self.describe,
            kind.kind,
            kind.api_version(),
            kind.installed_by.unwrap_or("it")
        )))
    }

    /// Waits until `done` says the object is ready (`Some(Ok)`) or never
    /// will be (`Some(Err)`): a get, then a watch from its
    /// resourceVersion (bookmarks keep it current), again after the
    /// server closes the watch or answers 410 Gone.
    pub async fn wait_for(
        &self,
        kind: Kind,
        name: &str,
        timeout: Duration,
        done: impl Fn(Option<&Value>) -> Option<std::result::Result<(), String>>,
    ) -> Result<std::result::Result<Value, String>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last_state = String::from("not seen yet");
        loop {
            let object = self.get(kind, name).await?;
            match done(object.as_ref()) {
                Some(Ok(())) => return Ok(Ok(object.unwrap_or(Value::Null))),
                Some(Err(why)) => return Ok(Err(why)),
                None => {}
            }
            if let Some(object) = &object {
                last_state = describe_conditions(object);
            }
            let version = object
                .as_ref()
                .and_then(|object| object["metadata"]["resourceVersion"].as_str())
                .map(str::to_owned);
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(Err(format!(
                    "not ready after {}s ({last_state})",
                    timeout.as_secs()
                )));
            }
            let remaining = deadline - now;
            match self
                .watch(kind, name, version.as_deref(), remaining, &done)
                .await?
            {
                Watched::Done(result) => return Ok(result),
                Watched::Again => {}
            }
        }
    }

    async fn watch(
        &self,
        kind: Kind,
        name: &str,
        resource_version: Option<&str>,
        remaining: Duration,
        done: &impl Fn(Option<&Value>) -> Option<std::result::Result<(), String>>,
    ) -> Result<Watched> {
        let seconds = remaining.as_secs().clamp(1, 290);
        let mut path = format!(
            "{}?watch=true&allowWatchBookmarks=true&timeoutSeconds={seconds}&fieldSelector={}",
            self.object_path(kind, None),
            encode(&format!("metadata.name={name}"))
        );
        if let Some(version) = resource_version {
            path.push_str(&format!("&resourceVersion={}", encode(version)));
        }
        let request = http::Request::builder()
            .method(http::Method::GET)
            .uri(&path)
            .body(kube::client::Body::empty())
            .map_err(|error| Error::Service(error.to_string()))?;
        let sent = tokio::time::timeout(remaining, self.client.send(request)).await;
        let response = match sent {
            Err(_) => return Ok(Watched::Again),
            Ok(Err(_)) => {
                // A watch that cannot start is retried by the next get.
                tokio::time::sleep(Duration::from_millis(500).min(remaining)).await;
                return Ok(Watched::Again);
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status().as_u16();
        if status != 200 {
            let body = response
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            if matches!(status, 410 | 429 | 500..=599) {
                tokio::time::sleep(Duration::from_millis(500).min(remaining)).await;
                return Ok(Watched::Again);
            }
            return Err(self.refusal("watch", kind, Some(name), status, &body));
        }
        let mut body = response.into_body();
        let mut pending: Vec<u8> = Vec::new();
        let deadline = tokio::time::Instant::now() + remaining;
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) | Ok(None) | Ok(Some(Err(_))) => return Ok(Watched::Again),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            pending.extend_from_slice(&data);
            while let Some(end) = pending.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                match event["type"].as_str() {
                    Some("ADDED" | "MODIFIED") => {
                        if let Some(result) = done(Some(&event["object"])) {
                            return Ok(Watched::Done(result.map(|()| event["object"].clone())));
                        }
                    }
                    Some("DELETED") => {
                        if let Some(result) = done(None) {
                            return Ok(Watched::Done(result.map(|()| Value::Null)));
                        }
                    }
                    // BOOKMARK moves the version on; ERROR (410 Gone) starts over.
                    Some("ERROR") => return Ok(Watched::Again),
                    _ => {}
                }
            }
        }
    }

    /// A refusal in words: what was refused, why, and what would mend it.
    pub(crate) fn refusal(
        &self,
        verb: &str,
        kind: Kind,
        name: Option<&str>,
        status: u16,
        body: &[u8],
    ) -> Error {
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let message = parsed["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
        let object = match name {
            Some(name) => format!("{} {name}", kind.kind),
            None => kind.kind.to_owned(),
        };
        let namespace = &self.namespace;
        match status {
            401 => Error::Input(format!(
                "{}: the credentials were not accepted (401): {message}",
                self.describe
            )),
            403 => Error::Input(format!(
                "forbidden: gantry may not {verb} {} in namespace {namespace} ({message}); grant the Role in docs/deploy-kubernetes.md to gantry's service account or user",
                kind.resource()
            )),
            404 => Error::Input(format!(
                "{object} was not found in namespace {namespace} ({})",
                self.describe
            )),
            409 if parsed["reason"] == "Conflict" && has_field_conflict(&parsed) => {
                let fields: Vec<String> = parsed["details"]["causes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|cause| {
                        format!(
                            "{} ({})",
                            cause["field"].as_str().unwrap_or("?"),
                            cause["message"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                Error::Conflict(format!(
                    "{object} in namespace {namespace}: another field manager owns what gantry must write: {}; nothing was changed. Let gantry own them once with --k8s-force-conflicts, and tell your GitOps tool to ignore them (docs/deploy-kubernetes.md)",
                    fields.join("; ")
                ))
            }
            409 => Error::Conflict(format!(
                "{object} in namespace {namespace} changed while gantry wrote it (409): {message}"
            )),
            422 | 400 => Error::Input(format!(
                "the API server refused {object} in namespace {namespace} ({status}): {message}"
            )),
            _ => Error::Service(format!(
                "{verb} {object} in namespace {namespace}: the API server answered {status}: {message}"
            )),
        }
    }
}

enum Watched {
    Done(std::result::Result<Value, String>),
    Again,
}

fn has_field_conflict(status: &Value) -> bool {
    status["details"]["causes"]
        .as_array()
        .is_some_and(|causes| {
            causes
                .iter()
                .any(|cause| cause["reason"] == "FieldManagerConflict")
        })
}

/// A 404 about a missing object (its `details` name it) rather than a
/// resource the server does not serve.
fn is_missing_object(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .is_ok_and(|status| status["reason"] == "NotFound" && status["details"]["name"].is_string())
}

fn parse(path: &str, body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body).map_err(|error| {
        Error::Service(format!(
            "{path}: the API server answered a body gantry cannot read: {error}"
        ))
    })
}

fn transport(error: &kube::Error) -> String {
    // The error's text never holds the credentials: kube-rs keeps them in
    // its auth layer, outside the request it reports.
    error.to_string()
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The object's conditions in a few words, for a timeout's message.
pub(crate) fn describe_conditions(object: &Value) -> String {
    let conditions = object["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if conditions.is_empty() {
        return "no status yet".to_owned();
    }
    conditions
        .iter()
        .map(|condition| {
            let mut text = format!(
                "{}={}",
                condition["type"].as_str().unwrap_or("?"),
                condition["status"].as_str().unwrap_or("?")
            );
            if let Some(reason) = condition["reason"].as_str() {
                text.push_str(&format!(" {reason}"));
            }
            if let Some(message) = condition["message"].as_str().filter(|m| !m.is_empty()) {
                text.push_str(&format!(": {message}"));
            }
            text
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks a name the user gave against RFC 1123 (what Kubernetes accepts).
pub(crate) fn check_name(flag: &str, name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(Error::Input(format!(
            "{flag} {name:?}: not a Kubernetes name (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit)"
        )))
    }
}
