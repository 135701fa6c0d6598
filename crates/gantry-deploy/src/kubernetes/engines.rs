//! The gateway-api and kserve engines as a [`Target`]: the controller,
//! its analysis, state and promotion are the local router's.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::api::{
    BackendSpec, BackendView, Health, Lease, RouterView, VersionMetrics, WeightsRequest,
};
use crate::error::{Error, Result, now_ms};
use crate::kubernetes::cluster::{Cluster, Kind, check_name};
pub use crate::kubernetes::render::ModelSource;
use crate::kubernetes::render::{self, Predictor, Workload, refers_to};
use crate::kubernetes::{keys, object_name};
use crate::target::Target;

/// The exact version on gantry's objects (label values are cut to 63).
const VERSION_ANNOTATION: &str = "gantry.dev/version";

/// Which engine splits the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// Weights on the user's HTTPRoute.
    GatewayApi,
    /// `canaryTrafficPercent` on an InferenceService.
    Kserve,
    /// The user's Argo Rollout steps the traffic; gantry follows it.
    ArgoRollouts,
}

impl Engine {
    /// Its `--k8s-engine` name.
    pub fn name(self) -> &'static str {
        match self {
            Engine::GatewayApi => "gateway-api",
            Engine::Kserve => "kserve",
            Engine::ArgoRollouts => "argo-rollouts",
        }
    }
}

/// How versions run on the cluster.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// The engine.
    pub engine: Engine,
    /// The model's name.
    pub model: String,
    /// gateway-api: the user's HTTPRoute.
    pub route: String,
    /// kserve: the InferenceService (default: the model's name).
    pub inference_service: String,
    /// gateway-api: the model server's image.
    pub server_image: Option<String>,
    /// gateway-api: the server's arguments (`--serve-command`, split).
    pub server_args: Vec<String>,
    /// The server's port.
    pub port: u16,
    /// Replicas per version.
    pub replicas: i32,
    /// GPUs per replica.
    pub gpus: u32,
    /// gateway-api: where the model files come from.
    pub source: ModelSource,
    /// kserve: the storage URI; `{name}`, `{version}` and `{digest}` replaced.
    pub storage_uri: String,
    /// kserve: `modelFormat.name`.
    pub model_format: String,
    /// kserve: the ServingRuntime.
    pub runtime: Option<String>,
    /// Take ownership of fields another field manager holds.
    pub force_conflicts: bool,
    /// Where clients reach the model (smoke traffic goes there).
    pub gateway_url: Option<String>,
    /// How long a version may take to become ready.
    pub ready_timeout: Duration,
    /// How long the engine may take to show new weights in its status.
    pub status_timeout: Duration,
}

impl KubeOptions {
    /// kserve: a version's storage URI — `{name}`, `{version}`, `{digest}`
    /// (`sha256:…`) and `{digest_hex}` replaced.
    pub fn storage_uri(&self, version: &str, digest: &str) -> String {
        self.storage_uri
            .replace("{name}", &self.model)
            .replace("{version}", version)
            .replace("{digest_hex}", digest.trim_start_matches("sha256:"))
            .replace("{digest}", digest)
    }
}

/// A Kubernetes cluster as a [`Target`] (gateway-api or kserve).
#[derive(Debug, Clone)]
pub struct KubeTarget {
    cluster: Cluster,
    options: KubeOptions,
}

impl KubeTarget {
    /// A target on `cluster`.
    pub fn new(cluster: Cluster, options: KubeOptions) -> Result<KubeTarget> {
        match options.engine {
            Engine::GatewayApi => {
                check_name("--http-route", &options.route)?;
                if options.server_image.is_none() {
                    return Err(Error::Input(
                        "--k8s-engine gateway-api runs each version as a Deployment: give --server-image (e.g. vllm/vllm-openai:v0.11.0)".to_owned(),
                    ));
                }
            }
            Engine::Kserve => check_name("--inference-service", &options.inference_service)?,
            Engine::ArgoRollouts => {
                return Err(Error::Input(
                    "argo-rollouts steps the traffic itself: it is followed, not driven, by deploy-canary".to_owned(),
                ));
            }
        }
        Ok(KubeTarget { cluster, options })
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Checks before anything is written: the CRD is served, the HTTPRoute
    /// exists.
    pub async fn preflight(&self) -> Result<()> {
        match self.options.engine {
            Engine::GatewayApi => {
                self.cluster.ensure_served(Kind::HTTP_ROUTE).await?;
                let route = self.route().await?;
                self.refuse_owned(
                    Kind::HTTP_ROUTE,
                    &self.options.route,
                    &route,
                    &["spec", "rules"],
                )
            }
            _ => {
                self.cluster.ensure_served(Kind::INFERENCE_SERVICE).await?;
                match self.inference_service().await? {
                    Some(isvc) => self.refuse_owned(
                        Kind::INFERENCE_SERVICE,
                        &self.options.inference_service,
                        &isvc,
                        &["spec", "predictor"],
                    ),
                    None => Ok(()),
                }
            }
        }
    }

    /// Before anything is created: a field gantry must write that another
    /// field manager owns would make server-side apply refuse it (409)
    /// halfway; say so now, unless `--k8s-force-conflicts`.
    fn refuse_owned(&self, kind: Kind, name: &str, object: &Value, field: &[&str]) -> Result<()> {
        if self.options.force_conflicts {
            return Ok(());
        }
        let owners: Vec<String> = object["metadata"]["managedFields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|entry| entry["manager"] != crate::kubernetes::FIELD_MANAGER)
            .filter(|entry| {
                let mut fields = &entry["fieldsV1"];
                for part in field {
                    fields = &fields[format!("f:{part}")];
                }
                !fields.is_null()
            })
            .map(|entry| {
                format!(
                    "{:?} ({})",
                    entry["manager"].as_str().unwrap_or("?"),
                    entry["operation"].as_str().unwrap_or("?")
                )
            })
            .collect();
        if owners.is_empty() {
            return Ok(());
        }
        Err(Error::Conflict(format!(
            "{} {name} in namespace {}: .{} is owned by field manager {}, and gantry must write it (server-side apply would answer 409); nothing was changed. Run once with --k8s-force-conflicts to let gantry own it, and tell your GitOps tool to ignore it (docs/deploy-kubernetes.md)",
            kind.kind,
            self.cluster.namespace,
            field.join("."),
            owners.join(", ")
        )))
    }

    async fn route(&self) -> Result<Value> {
        self.cluster
            .get(Kind::HTTP_ROUTE, &self.options.route)
            .await?
            .ok_or_else(|| {
                Error::Input(format!(
                    "HTTPRoute {} was not found in namespace {}: create the route your Gateway serves the model on, with a backendRef to the stable version's Service (docs/deploy-kubernetes.md)",
                    self.options.route, self.cluster.namespace
                ))
            })
    }

    fn workload<'a>(&'a self, version: &'a str, digest: &'a str) -> Workload<'a> {
        Workload {
            model: &self.options.model,
            version,
            digest,
            image: self.options.server_image.as_deref().unwrap_or_default(),
            args: &self.options.server_args,
            port: self.options.port,
            replicas: self.options.replicas,
            gpus: self.options.gpus,
            source: &self.options.source,
        }
    }

    fn service_of(&self, version: &str) -> String {
        object_name(&self.options.model, version)
    }

    /// gantry's Deployments of this model, by version.
    async fn deployments(&self) -> Result<BTreeMap<String, Value>> {
        let selector = format!(
            "{}={},{}=gantry",
            keys::NAME,
            render::label_value(&self.options.model),
            keys::MANAGED_BY
        );
        let listed = self.cluster.list(Kind::DEPLOYMENT, &selector).await?;
        Ok(listed
            .into_iter()
            .filter_map(|deployment| {
                let version = deployment["metadata"]["annotations"][VERSION_ANNOTATION]
                    .as_str()?
                    .to_owned();
                Some((version, deployment))
            })
            .collect())
    }

    fn lease_of(object: &Value) -> Option<Lease> {
        let annotations = &object["metadata"]["annotations"];
        Some(Lease {
            holder: annotations[keys::LEASE_HOLDER].as_str()?.to_owned(),
            expires_at_ms: annotations[keys::LEASE_EXPIRES].as_str()?.parse().ok()?,
        })
    }

    /// The annotations gantry owns on a traffic object, for a request.
    fn traffic_annotations(request: &WeightsRequest) -> serde_json::Map<String, Value> {
        let mut annotations = serde_json::Map::new();
        annotations.insert(keys::STABLE.to_owned(), json!(request.stable));
        if let (Some(seconds), Some(holder)) = (request.lease_seconds, &request.holder) {
            annotations.insert(keys::LEASE_HOLDER.to_owned(), json!(holder));
            annotations.insert(
                keys::LEASE_EXPIRES.to_owned(),
                json!((now_ms() + seconds * 1000).to_string()),
            );
        }
        annotations
    }

    /// The annotations gantry owns as they are now (re-sent with every
    /// apply, or server-side apply would remove them).
    fn owned_annotations(object: &Value) -> serde_json::Map<String, Value> {
        let mut kept = serde_json::Map::new();
        for key in [keys::STABLE, keys::LEASE_HOLDER, keys::LEASE_EXPIRES] {
            if let Some(value) = object["metadata"]["annotations"][key].as_str() {
                kept.insert(key.to_owned(), json!(value));
            }
        }
        kept
    }

    fn listen(&self) -> String {
        self.options.gateway_url.clone().unwrap_or_default()
    }

    /// A version that never became ready: the rollout's backend error.
    fn ready_or_backend(
        &self,
        waited: std::result::Result<Value, String>,
        version: &str,
        object: &str,
    ) -> Result<()> {
        waited.map(|_| ()).map_err(|why| Error::Backend {
            message: format!(
                "{version} did not become ready on {}: {object}: {why}",
                self.cluster.describe
            ),
            log_tail: Vec::new(),
        })
    }

    // --- gateway-api ---

    async fn observe_route(&self) -> Result<RouterView> {
        let route = self.route().await?;
        let deployments = self.deployments().await?;
        let rules = route["spec"]["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let services: BTreeMap<String, String> = deployments
            .keys()
            .map(|version| (self.service_of(version), version.clone()))
            .collect();
        let mut weights: BTreeMap<String, u64> = BTreeMap::new();
        if let Some(rule) = rules.iter().find(|rule| carries(rule, services.keys())) {
            for reference in rule["backendRefs"].as_array().into_iter().flatten() {
                if let Some(version) = services
                    .iter()
                    .find(|(service, _)| refers_to(reference, service))
                    .map(|(_, version)| version)
                {
                    *weights.entry(version.clone()).or_default() +=
                        reference["weight"].as_u64().unwrap_or(1);
                }
            }
        }
        let total: u64 = weights.values().sum();
        let backends = deployments
            .iter()
            .map(|(version, deployment)| {
                let weight = weights.get(version).copied().unwrap_or(0);
                BackendView {
                    version: version.clone(),
                    digest: deployment["metadata"]["annotations"][keys::DIGEST]
                        .as_str()
                        .map(str::to_owned),
                    model_dir: None,
                    url: format!(
                        "http://{}.{}.svc:{}",
                        self.service_of(version),
                        self.cluster.namespace,
                        self.options.port
                    ),
                    pid: None,
                    health: deployment_health(deployment),
                    weight: (weight * 100 + total / 2)
                        .checked_div(total)
                        .map_or(0, |percent| u32::try_from(percent).unwrap_or(100)),
                    restarts: 0,
                    in_flight: 0,
                    log_tail: Vec::new(),
                }
            })
            .collect();
        Ok(RouterView {
            listen: self.listen(),
            stable: route["metadata"]["annotations"][keys::STABLE]
                .as_str()
                .map(str::to_owned),
            backends,
            lease: Self::lease_of(&route),
            reverted: None,
        })
    }

    async fn bring_up_deployment(&self, spec: &BackendSpec) -> Result<()> {
        let digest = spec.digest.clone().unwrap_or_default();
        let workload = self.workload(&spec.version, &digest);
        let name = workload.name();
        let namespace = &self.cluster.namespace;
        let mut deployment = render::applied(Kind::DEPLOYMENT, &workload.deployment(namespace))?;
        let mut service = render::applied(Kind::SERVICE, &workload.service(namespace))?;
        for object in [&mut deployment, &mut service] {
            object["metadata"]["annotations"][VERSION_ANNOTATION] = json!(spec.version);
        }
        // gantry owns these objects whole: force, as the docs advise controllers.
        self.cluster
            .apply(Kind::DEPLOYMENT, &name, &deployment, true, None)
            .await?;
        self.cluster
            .apply(Kind::SERVICE, &name, &service, true, None)
            .await?;
        let waited = self
            .cluster
            .wait_for(
                Kind::DEPLOYMENT,
                &name,
                self.options.ready_timeout,
                |object| {
                    let object = object?;
                    if deployment_health(object) == Health::Healthy {
                        return Some(Ok(()));
                    }
                    failed_deployment(object).map(Err)
                },
            )
            .await?;
        self.ready_or_backend(waited, &spec.version, &format!("Deployment {name}"))
    }

    async fn set_route_weights(&self, request: &WeightsRequest) -> Result<RouterView> {
        let route = self.route().await?;
        let deployments = self.deployments().await?;
        let rules = route["spec"]["rules"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut known: Vec<String> = deployments
            .keys()
            .chain(request.weights.keys())
            .map(|version| self.service_of(version))
            .collect();
        known.sort();
        known.dedup();
        let mut weights: BTreeMap<String, i32> =
            known.iter().map(|service| (service.clone(), 0)).collect();
        for (version, weight) in &request.weights {
            weights.insert(
                self.service_of(version),
                i32::try_from(*weight).unwrap_or(100),
            );
        }
        // Versions without a Deployment and without weight are not added.
        weights.retain(|service, weight| {
            *weight > 0
                || deployments
                    .keys()
                    .any(|version| &self.service_of(version) == service)
        });
        let stable_service = self.service_of(&request.stable);
        let carrier_exists = rules.iter().any(|rule| carries(rule, known.iter()));
        let rules = if carrier_exists {
            render::route_rules(&rules, &known, &weights, &[], self.options.port)?
        } else if rules.len() == 1
            && route["metadata"]["annotations"][keys::STABLE].is_null()
            && request
                .weights
                .keys()
                .all(|version| *version == request.stable)
        {
            // A first deploy on a route with one rule: the model's backends join it.
            let mut rule = rules[0].clone();
            let mut refs = rule["backendRefs"].as_array().cloned().unwrap_or_default();
            for (service, weight) in &weights {
                refs.push(render::backend_ref(service, self.options.port, *weight)?);
            }
            rule["backendRefs"] = Value::Array(refs);
            vec![rule]
        } else {
            return Err(Error::Input(format!(
                "HTTPRoute {} in namespace {} does not reference the stable Service {stable_service} (version {}): add a backendRef {{name: {stable_service}, port: {}}} to the rule that serves the model",
                self.options.route, self.cluster.namespace, request.stable, self.options.port
            )));
        };
        self.apply_route(&rules, Self::traffic_annotations(request))
            .await?;
        self.observe_route().await
    }

    async fn apply_route(
        &self,
        rules: &[Value],
        annotations: serde_json::Map<String, Value>,
    ) -> Result<()> {
        let name = &self.options.route;
        let object = json!({
            "apiVersion": Kind::HTTP_ROUTE.api_version(),
            "kind": Kind::HTTP_ROUTE.kind,
            "metadata": {"name": name, "namespace": self.cluster.namespace, "annotations": annotations},
            "spec": {"rules": rules},
        });
        let applied = self
            .cluster
            .apply(
                Kind::HTTP_ROUTE,
                name,
                &object,
                self.options.force_conflicts,
                None,
            )
            .await?;
        let generation = applied["metadata"]["generation"].as_i64().unwrap_or(0);
        let waited = self
            .cluster
            .wait_for(
                Kind::HTTP_ROUTE,
                name,
                self.options.status_timeout,
                |object| route_accepted(object?, generation),
            )
            .await?;
        waited.map(|_| ()).map_err(|why| {
            Error::Service(format!(
                "HTTPRoute {name} in namespace {}: the Gateway did not take the new weights: {why}",
                self.cluster.namespace
            ))
        })
    }

    async fn retire_deployment(&self, version: &str) -> Result<()> {
        let service = self.service_of(version);
        if let Some(route) = self
            .cluster
            .get(Kind::HTTP_ROUTE, &self.options.route)
            .await?
        {
            let rules = route["spec"]["rules"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let referenced = rules
                .iter()
                .any(|rule| carries(rule, std::iter::once(&service)));
            if referenced {
                let rules = render::route_rules(
                    &rules,
                    std::slice::from_ref(&service),
                    &BTreeMap::new(),
                    std::slice::from_ref(&service),
                    self.options.port,
                )?;
                self.apply_route(&rules, Self::owned_annotations(&route))
                    .await?;
            }
        }
        self.cluster.delete(Kind::SERVICE, &service).await?;
        self.cluster.delete(Kind::DEPLOYMENT, &service).await
    }

    // --- kserve ---

    async fn inference_service(&self) -> Result<Option<Value>> {
        self.cluster
            .get(Kind::INFERENCE_SERVICE, &self.options.inference_service)
            .await
    }

    fn storage_uri(&self, version: &str, digest: &str) -> String {
        self.options.storage_uri(version, digest)
    }

    async fn observe_kserve(&self) -> Result<RouterView> {
        let Some(isvc) = self.inference_service().await? else {
            return Ok(RouterView {
                listen: self.listen(),
                stable: None,
                backends: Vec::new(),
                lease: None,
                reverted: None,
            });
        };
        let annotations = &isvc["metadata"]["annotations"];
        let latest = annotations[VERSION_ANNOTATION]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let stable = annotations[keys::STABLE]
            .as_str()
            .unwrap_or(&latest)
            .to_owned();
        let latest_percent = kserve_latest_percent(&isvc);
        let ready = kserve_ready(&isvc);
        let backend = |version: &str, weight: u32, health: Health| BackendView {
            version: version.to_owned(),
            digest: None,
            model_dir: None,
            url: isvc["status"]["url"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            pid: None,
            health,
            weight,
            restarts: 0,
            in_flight: 0,
            log_tail: Vec::new(),
        };
        let mut backends = vec![backend(
            &latest,
            latest_percent,
            if ready {
                Health::Healthy
            } else {
                Health::Starting
            },
        )];
        if stable != latest {
            backends.push(backend(
                &stable,
                100 - latest_percent.min(100),
                Health::Healthy,
            ));
        }
        Ok(RouterView {
            listen: self.listen(),
            stable: Some(stable),
            backends,
            lease: Self::lease_of(&isvc),
            reverted: None,
        })
    }

    fn predictor<'a>(
        &'a self,
        version: &'a str,
        digest: &'a str,
        stable: &'a str,
        storage_uri: String,
        format: &'a str,
        runtime: Option<&'a str>,
    ) -> Predictor<'a> {
        Predictor {
            name: &self.options.inference_service,
            model: &self.options.model,
            version,
            digest,
            storage_uri,
            format,
            runtime,
            stable,
        }
    }

    async fn apply_isvc(
        &self,
        predictor: &Predictor<'_>,
        percent: Option<u32>,
        annotations: serde_json::Map<String, Value>,
    ) -> Result<Value> {
        let mut object = render::applied(
            Kind::INFERENCE_SERVICE,
            &predictor.inference_service(&self.cluster.namespace, percent),
        )?;
        for (key, value) in annotations {
            object["metadata"]["annotations"][key] = value;
        }
        self.cluster
            .apply(
                Kind::INFERENCE_SERVICE,
                &self.options.inference_service,
                &object,
                self.options.force_conflicts,
                None,
            )
            .await
    }

    async fn bring_up_kserve(&self, spec: &BackendSpec) -> Result<()> {
        let digest = spec.digest.clone().unwrap_or_default();
        let existing = self.inference_service().await?;
        let before = existing
            .as_ref()
            .and_then(|isvc| {
                isvc["status"]["components"]["predictor"]["latestCreatedRevision"].as_str()
            })
            .map(str::to_owned);
        let current = existing
            .as_ref()
            .and_then(|isvc| isvc["metadata"]["annotations"][VERSION_ANNOTATION].as_str())
            .map(str::to_owned);
        let name = self.options.inference_service.clone();
        if current.as_deref() != Some(spec.version.as_str()) {
            let (stable, percent) = match &existing {
                None => (spec.version.clone(), None),
                Some(isvc) => {
                    let promoted = isvc["spec"]["predictor"]["canaryTrafficPercent"].is_null();
                    let stable = if promoted {
                        current.clone().unwrap_or_default()
                    } else {
                        isvc["metadata"]["annotations"][keys::STABLE]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned()
                    };
                    (stable, Some(0))
                }
            };
            let storage = self.storage_uri(&spec.version, &digest);
            let predictor = self.predictor(
                &spec.version,
                &digest,
                &stable,
                storage,
                &self.options.model_format,
                self.options.runtime.as_deref(),
            );
            let annotations = existing
                .as_ref()
                .map(Self::owned_annotations)
                .unwrap_or_default();
            self.apply_isvc(&predictor, percent, annotations).await?;
        }
        let fresh = current.as_deref() != Some(spec.version.as_str()) && before.is_some();
        let waited = self
            .cluster
            .wait_for(
                Kind::INFERENCE_SERVICE,
                &name,
                self.options.ready_timeout,
                |object| {
                    let object = object?;
                    if let Some(failed) = kserve_failed(object) {
                        return Some(Err(failed));
                    }
                    let created =
                        object["status"]["components"]["predictor"]["latestCreatedRevision"]
                            .as_str();
                    if fresh && created == before.as_deref() {
                        return None;
                    }
                    kserve_ready(object).then_some(Ok(()))
                },
            )
            .await?;
        self.ready_or_backend(waited, &spec.version, &format!("InferenceService {name}"))
    }

    async fn set_kserve_weights(&self, request: &WeightsRequest) -> Result<RouterView> {
        let Some(isvc) = self.inference_service().await? else {
            return Err(Error::Input(format!(
                "InferenceService {} is not in namespace {}: nothing to set weights on",
                self.options.inference_service, self.cluster.namespace
            )));
        };
        let annotations = &isvc["metadata"]["annotations"];
        let latest = annotations[VERSION_ANNOTATION]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let digest = annotations[keys::DIGEST]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let weight = request.weights.get(&latest).copied().unwrap_or(0).min(100);
        let promoted = request.stable == latest && weight == 100;
        let percent = (!promoted).then_some(weight);
        let model = &isvc["spec"]["predictor"]["model"];
        let storage = model["storageUri"].as_str().unwrap_or_default().to_owned();
        let format = model["modelFormat"]["name"]
            .as_str()
            .unwrap_or("huggingface")
            .to_owned();
        let runtime = model["runtime"].as_str().map(str::to_owned);
        let predictor = self.predictor(
            &latest,
            &digest,
            &request.stable,
            storage,
            &format,
            runtime.as_deref(),
        );
        let applied = self
            .apply_isvc(&predictor, percent, Self::traffic_annotations(request))
            .await?;
        let generation = applied["metadata"]["generation"].as_i64().unwrap_or(0);
        let name = self.options.inference_service.clone();
        let waited = self
            .cluster
            .wait_for(
                Kind::INFERENCE_SERVICE,
                &name,
                self.options.status_timeout,
                |object| {
                    let object = object?;
                    let observed = object["status"]["observedGeneration"].as_i64().unwrap_or(0);
                    (observed >= generation
                        && kserve_latest_percent(object) == weight
                        && kserve_has_traffic(object))
                    .then_some(Ok(()))
                },
            )
            .await?;
        waited.map_err(|why| {
            Error::Service(format!(
                "InferenceService {name} in namespace {}: the traffic did not move to {weight}%: {why}",
                self.cluster.namespace
            ))
        })?;
        self.observe_kserve().await
    }
}

impl Target for KubeTarget {
    fn describe(&self) -> String {
        match self.options.engine {
            Engine::GatewayApi => format!(
                "kubernetes gateway-api HTTPRoute {} ({})",
                self.options.route, self.cluster.describe
            ),
            _ => format!(
                "kubernetes kserve InferenceService {} ({})",
                self.options.inference_service, self.cluster.describe
            ),
        }
    }

    async fn observe(&self) -> Result<RouterView> {
        match self.options.engine {
            Engine::GatewayApi => self.observe_route().await,
            _ => self.observe_kserve().await,
        }
    }

    async fn bring_up(&self, spec: &BackendSpec) -> Result<()> {
        match self.options.engine {
            Engine::GatewayApi => self.bring_up_deployment(spec).await,
            _ => self.bring_up_kserve(spec).await,
        }
    }

    async fn set_weights(&self, request: &WeightsRequest) -> Result<RouterView> {
        match self.options.engine {
            Engine::GatewayApi => self.set_route_weights(request).await,
            _ => self.set_kserve_weights(request).await,
        }
    }

    async fn retire(&self, version: &str) -> Result<()> {
        match self.options.engine {
            Engine::GatewayApi => self.retire_deployment(version).await,
            // Knative keeps the revision at 0% and scales it to zero.
            _ => Ok(()),
        }
    }

    async fn metrics(&self, version: &str, _since_ms: u64) -> Result<VersionMetrics> {
        Err(Error::Input(format!(
            "{version}: on Kubernetes the analysis reads Prometheus; the router's per-request metrics are not there"
        )))
    }
}

fn carries<'a>(rule: &Value, mut services: impl Iterator<Item = &'a String>) -> bool {
    let refs = rule["backendRefs"].as_array();
    services.any(|service| {
        refs.into_iter()
            .flatten()
            .any(|reference| refers_to(reference, service))
    })
}

fn deployment_health(deployment: &Value) -> Health {
    let status = &deployment["status"];
    let wanted = deployment["spec"]["replicas"].as_i64().unwrap_or(1);
    let current = status["observedGeneration"].as_i64().unwrap_or(0)
        >= deployment["metadata"]["generation"].as_i64().unwrap_or(1);
    let updated = status["updatedReplicas"].as_i64().unwrap_or(0) >= wanted;
    let available = status["availableReplicas"].as_i64().unwrap_or(0) >= wanted;
    if current && updated && available {
        Health::Healthy
    } else {
        Health::Starting
    }
}

fn failed_deployment(deployment: &Value) -> Option<String> {
    deployment["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|condition| {
            condition["type"] == "Progressing"
                && condition["status"] == "False"
                && condition["reason"] == "ProgressDeadlineExceeded"
        })
        .map(|condition| {
            format!(
                "ProgressDeadlineExceeded: {}",
                condition["message"].as_str().unwrap_or_default()
            )
        })
}

/// Every parent Gateway accepted this generation of the route and resolved
/// its backends; a refusal ends the wait with its reason.
fn route_accepted(route: &Value, generation: i64) -> Option<std::result::Result<(), String>> {
    let parents = route["status"]["parents"].as_array()?;
    if parents.is_empty() {
        return None;
    }
    for parent in parents {
        let conditions = parent["conditions"].as_array()?;
        for wanted in ["Accepted", "ResolvedRefs"] {
            let condition = conditions
                .iter()
                .find(|condition| condition["type"] == wanted)?;
            if condition["observedGeneration"].as_i64().unwrap_or(0) < generation {
                return None;
            }
            if condition["status"] != "True" {
                return Some(Err(format!(
                    "{wanted} is {} for parent {}: {} ({})",
                    condition["status"].as_str().unwrap_or("?"),
                    parent["parentRef"]["name"].as_str().unwrap_or("?"),
                    condition["reason"].as_str().unwrap_or("?"),
                    condition["message"].as_str().unwrap_or_default()
                )));
            }
        }
    }
    Some(Ok(()))
}

fn kserve_ready(isvc: &Value) -> bool {
    let status = &isvc["status"];
    let predictor = &status["components"]["predictor"];
    let generation = isvc["metadata"]["generation"].as_i64().unwrap_or(1);
    status["observedGeneration"].as_i64().unwrap_or(0) >= generation
        && predictor["latestReadyRevision"].is_string()
        && predictor["latestReadyRevision"] == predictor["latestCreatedRevision"]
        && status["conditions"].as_array().is_some_and(|conditions| {
            conditions
                .iter()
                .any(|condition| condition["type"] == "Ready" && condition["status"] == "True")
        })
}

fn kserve_failed(isvc: &Value) -> Option<String> {
    let transition = isvc["status"]["modelStatus"]["transitionStatus"].as_str();
    if matches!(transition, Some("BlockedByFailedLoad" | "InvalidSpec")) {
        let info = &isvc["status"]["modelStatus"]["lastFailureInfo"];
        return Some(format!(
            "{}: {} {}",
            transition.unwrap_or_default(),
            info["reason"].as_str().unwrap_or_default(),
            info["message"].as_str().unwrap_or_default()
        ));
    }
    None
}

fn kserve_has_traffic(isvc: &Value) -> bool {
    isvc["status"]["components"]["predictor"]["traffic"]
        .as_array()
        .is_some_and(|traffic| !traffic.is_empty())
}

/// The latest revision's share, from the status (Knative's traffic targets).
fn kserve_latest_percent(isvc: &Value) -> u32 {
    let traffic = isvc["status"]["components"]["predictor"]["traffic"].as_array();
    let Some(traffic) = traffic.filter(|traffic| !traffic.is_empty()) else {
        return 0;
    };
    traffic
        .iter()
        .filter(|target| target["latestRevision"] == true)
        .map(|target| target["percent"].as_u64().unwrap_or(0))
        .sum::<u64>()
        .min(100) as u32
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Engine, KubeOptions, ModelSource};

    fn options(storage_uri: &str) -> KubeOptions {
        KubeOptions {
            engine: Engine::Kserve,
            model: "chat".to_owned(),
            route: String::new(),
            inference_service: "chat".to_owned(),
            server_image: None,
            server_args: Vec::new(),
            port: 8000,
            replicas: 1,
            gpus: 0,
            source: ModelSource::Pvc {
                claim: "models".to_owned(),
            },
            storage_uri: storage_uri.to_owned(),
            model_format: "huggingface".to_owned(),
            runtime: None,
            force_conflicts: false,
            gateway_url: None,
            ready_timeout: Duration::from_secs(1),
            status_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn storage_uris_name_the_version_by_content() {
        let digest = "sha256:ab12";
        assert_eq!(
            options("oci://ghcr.io/acme/models/{name}:digest-{digest_hex}")
                .storage_uri("1.2.0", digest),
            "oci://ghcr.io/acme/models/chat:digest-ab12"
        );
        assert_eq!(
            options("s3://bucket/{name}/{version}/{digest}").storage_uri("1.2.0", digest),
            "s3://bucket/chat/1.2.0/sha256:ab12"
        );
    }
}
