//! The objects and patches gantry sends, built from typed definitions:
//! `k8s-openapi` for Deployments and Services, the `gateway-api` crate for
//! HTTPRoute backend references, serde types here for KServe's
//! `InferenceService` and Argo Rollouts' `Rollout` (checked against their
//! upstream CRD schemas in the tests).

use std::collections::BTreeMap;

use gateway_api::httproutes::HttpRouteRulesBackendRefs;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, HTTPGetAction,
    ImageVolumeSource, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext, Service,
    ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::kubernetes::{Kind, keys, object_name};

/// Where a version's model files come from inside the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// An init container runs `gantry registry pull NAME@DIGEST`, which
    /// verifies every file's digest, into an emptyDir.
    Registry {
        /// The registry URI (`oci://…`, `mlflow+https://…`).
        registry: String,
        /// The gantry image the init container runs.
        image: String,
        /// A Secret whose keys become the init container's environment
        /// (registry credentials).
        secret: Option<String>,
    },
    /// Already on a PersistentVolumeClaim, at `/models/NAME/VERSION`.
    Pvc {
        /// The claim.
        claim: String,
    },
    /// An OCI image volume (Kubernetes 1.31+); `{name}`, `{version}` and
    /// `{digest}` are replaced in the reference.
    Image {
        /// The image reference template.
        reference: String,
    },
}

/// What a version's workload needs.
#[derive(Debug, Clone)]
pub struct Workload<'a> {
    /// The model.
    pub model: &'a str,
    /// The version.
    pub version: &'a str,
    /// Its manifest digest.
    pub digest: &'a str,
    /// The model server's image.
    pub image: &'a str,
    /// The server's arguments, `{model_dir}`, `{port}`, `{version}` and
    /// `{digest}` replaced in each word.
    pub args: &'a [String],
    /// The port it listens on.
    pub port: u16,
    /// Replicas.
    pub replicas: i32,
    /// GPUs per replica (`nvidia.com/gpu`).
    pub gpus: u32,
    /// Where the model comes from.
    pub source: &'a ModelSource,
}

const MODELS: &str = "/models";

impl Workload<'_> {
    /// The Deployment and Service's name.
    pub fn name(&self) -> String {
        object_name(self.model, self.version)
    }

    /// Where the server finds the model in the pod.
    pub fn model_dir(&self) -> String {
        match self.source {
            ModelSource::Registry { .. } | ModelSource::Image { .. } => {
                format!("{MODELS}/{}", self.version)
            }
            ModelSource::Pvc { .. } => format!("{MODELS}/{}/{}", self.model, self.version),
        }
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (keys::NAME.to_owned(), label_value(self.model)),
            (keys::VERSION.to_owned(), label_value(self.version)),
            (keys::MANAGED_BY.to_owned(), "gantry".to_owned()),
        ])
    }

    fn meta(&self, namespace: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(self.name()),
            namespace: Some(namespace.to_owned()),
            labels: Some(self.labels()),
            annotations: Some(BTreeMap::from([(
                keys::DIGEST.to_owned(),
                self.digest.to_owned(),
            )])),
            ..ObjectMeta::default()
        }
    }

    fn substitute(&self, word: &str) -> String {
        word.replace("{model_dir}", &self.model_dir())
            .replace("{port}", &self.port.to_string())
            .replace("{version}", self.version)
            .replace("{digest}", self.digest)
    }

    /// The Deployment running the version.
    pub fn deployment(&self, namespace: &str) -> Deployment {
        let restricted = SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        };
        let mount = VolumeMount {
            name: "models".to_owned(),
            mount_path: match self.source {
                ModelSource::Image { .. } => self.model_dir(),
                _ => MODELS.to_owned(),
            },
            read_only: Some(true),
            ..VolumeMount::default()
        };
        let volume = match self.source {
            ModelSource::Registry { .. } => Volume {
                name: "models".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            },
            ModelSource::Pvc { claim } => Volume {
                name: "models".to_owned(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: Some(true),
                }),
                ..Volume::default()
            },
            ModelSource::Image { reference } => Volume {
                name: "models".to_owned(),
                image: Some(ImageVolumeSource {
                    reference: Some(
                        reference
                            .replace("{name}", self.model)
                            .replace("{version}", self.version)
                            .replace("{digest}", self.digest),
                    ),
                    pull_policy: Some("IfNotPresent".to_owned()),
                }),
                ..Volume::default()
            },
        };
        let init_containers = match self.source {
            ModelSource::Registry {
                registry,
                image,
                secret,
            } => Some(vec![Container {
                name: "pull-model".to_owned(),
                image: Some(image.clone()),
                // Pulled by digest: every file is checked against the manifest.
                args: Some(vec![
                    "registry".to_owned(),
                    "pull".to_owned(),
                    format!("{}@{}", self.model, self.digest),
                    "--registry".to_owned(),
                    registry.clone(),
                    "--to".to_owned(),
                    self.model_dir(),
                ]),
                env_from: secret.as_ref().map(|secret| {
                    vec![k8s_openapi::api::core::v1::EnvFromSource {
                        secret_ref: Some(k8s_openapi::api::core::v1::SecretEnvSource {
                            name: secret.clone(),
                            optional: Some(false),
                        }),
                        ..Default::default()
                    }]
                }),
                volume_mounts: Some(vec![VolumeMount {
                    read_only: Some(false),
                    ..mount.clone()
                }]),
                security_context: Some(SecurityContext {
                    read_only_root_filesystem: Some(true),
                    ..restricted.clone()
                }),
                ..Container::default()
            }]),
            _ => None,
        };
        let resources = (self.gpus > 0).then(|| ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "nvidia.com/gpu".to_owned(),
                Quantity(self.gpus.to_string()),
            )])),
            ..ResourceRequirements::default()
        });
        let probe = |initial: i32, failures: i32| Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/health".to_owned()),
                port: IntOrString::Int(i32::from(self.port)),
                ..HTTPGetAction::default()
            }),
            initial_delay_seconds: Some(initial),
            period_seconds: Some(5),
            failure_threshold: Some(failures),
            ..Probe::default()
        };
        let server = Container {
            name: "server".to_owned(),
            image: Some(self.image.to_owned()),
            args: Some(self.args.iter().map(|word| self.substitute(word)).collect()),
            env: Some(vec![
                EnvVar {
                    name: "GANTRY_MODEL_VERSION".to_owned(),
                    value: Some(self.version.to_owned()),
                    ..EnvVar::default()
                },
                EnvVar {
                    name: "GANTRY_MODEL_DIGEST".to_owned(),
                    value: Some(self.digest.to_owned()),
                    ..EnvVar::default()
                },
            ]),
            ports: Some(vec![ContainerPort {
                name: Some("http".to_owned()),
                container_port: i32::from(self.port),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            }]),
            readiness_probe: Some(probe(5, 3)),
            // Loading a large model takes minutes: the startup probe allows 30.
            startup_probe: Some(probe(10, 360)),
            resources,
            volume_mounts: Some(vec![mount]),
            security_context: Some(restricted),
            ..Container::default()
        };
        let selector = BTreeMap::from([
            (keys::NAME.to_owned(), label_value(self.model)),
            (keys::VERSION.to_owned(), label_value(self.version)),
        ]);
        Deployment {
            metadata: self.meta(namespace),
            spec: Some(DeploymentSpec {
                replicas: Some(self.replicas),
                selector: LabelSelector {
                    match_labels: Some(selector),
                    ..LabelSelector::default()
                },
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".to_owned()),
                    ..DeploymentStrategy::default()
                }),
                progress_deadline_seconds: Some(1800),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(self.labels()),
                        annotations: Some(BTreeMap::from([(
                            keys::DIGEST.to_owned(),
                            self.digest.to_owned(),
                        )])),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        init_containers,
                        containers: vec![server],
                        volumes: Some(vec![volume]),
                        automount_service_account_token: Some(false),
                        security_context: Some(PodSecurityContext {
                            run_as_non_root: Some(true),
                            seccomp_profile: Some(SeccompProfile {
                                type_: "RuntimeDefault".to_owned(),
                                ..SeccompProfile::default()
                            }),
                            ..PodSecurityContext::default()
                        }),
                        ..PodSpec::default()
                    }),
                },
                ..DeploymentSpec::default()
            }),
            status: None,
        }
    }

    /// The Service in front of it: what the HTTPRoute's backendRef names.
    pub fn service(&self, namespace: &str) -> Service {
        Service {
            metadata: self.meta(namespace),
            spec: Some(ServiceSpec {
                selector: Some(BTreeMap::from([
                    (keys::NAME.to_owned(), label_value(self.model)),
                    (keys::VERSION.to_owned(), label_value(self.version)),
                ])),
                ports: Some(vec![ServicePort {
                    name: Some("http".to_owned()),
                    port: i32::from(self.port),
                    target_port: Some(IntOrString::String("http".to_owned())),
                    protocol: Some("TCP".to_owned()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            status: None,
        }
    }
}

/// A label value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at the ends.
pub fn label_value(value: &str) -> String {
    let cleaned: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    cleaned
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// An object as server-side apply takes it: apiVersion, kind and the
/// typed body, with what the API server fills in left out.
pub fn applied<T: Serialize>(kind: Kind, object: &T) -> Result<Value> {
    let mut value =
        serde_json::to_value(object).map_err(|error| Error::Service(error.to_string()))?;
    value["apiVersion"] = json!(kind.api_version());
    value["kind"] = json!(kind.kind);
    if let Some(map) = value.as_object_mut() {
        map.remove("status");
    }
    Ok(value)
}

/// A backendRef gantry adds for a Service (typed by the gateway-api crate).
pub fn backend_ref(service: &str, port: u16, weight: i32) -> Result<Value> {
    let typed = HttpRouteRulesBackendRefs {
        name: service.to_owned(),
        port: Some(i32::from(port)),
        weight: Some(weight),
        ..HttpRouteRulesBackendRefs::default()
    };
    serde_json::to_value(typed).map_err(|error| Error::Service(error.to_string()))
}

/// Whether a backendRef points at the Service `name` in the route's namespace.
pub fn refers_to(reference: &Value, name: &str) -> bool {
    reference["name"] == name
        && reference["group"].as_str().unwrap_or("").is_empty()
        && reference["kind"].as_str().unwrap_or("Service") == "Service"
        && reference["namespace"].is_null()
}

/// The HTTPRoute's rules with `weights` (Service name → weight) written
/// into the rules that carry the model: those referring to any of
/// `services`. A Service weighted but absent from such a rule is added to
/// it; a Service in `remove` is taken out. Everything else in the rules —
/// matches, filters, other backends, fields this gantry does not know — is
/// kept as it is: the rules are one atomic field, so what gantry applies is
/// the whole list.
pub fn route_rules(
    rules: &[Value],
    services: &[String],
    weights: &BTreeMap<String, i32>,
    remove: &[String],
    port: u16,
) -> Result<Vec<Value>> {
    let mut rules = rules.to_vec();
    for rule in &mut rules {
        let Some(refs) = rule["backendRefs"].as_array_mut() else {
            continue;
        };
        let carries = refs
            .iter()
            .any(|reference| services.iter().any(|service| refers_to(reference, service)));
        if !carries {
            continue;
        }
        refs.retain(|reference| !remove.iter().any(|service| refers_to(reference, service)));
        for (service, weight) in weights {
            match refs
                .iter_mut()
                .find(|reference| refers_to(reference, service))
            {
                Some(reference) => reference["weight"] = json!(weight),
                None => refs.push(backend_ref(service, port, *weight)?),
            }
        }
    }
    Ok(rules)
}

/// KServe's `InferenceService` (serving.kserve.io/v1beta1), the fields gantry sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceService {
    /// `serving.kserve.io/v1beta1`.
    pub api_version: String,
    /// `InferenceService`.
    pub kind: String,
    /// Name, namespace, gantry's annotations.
    pub metadata: ObjectMeta,
    /// The predictor.
    pub spec: InferenceServiceSpec,
}

/// `spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceSpec {
    /// `spec.predictor`.
    pub predictor: PredictorSpec,
}

/// `spec.predictor`: the model, and the canary's share in Serverless mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PredictorSpec {
    /// The model (format, runtime, storage URI).
    pub model: ModelSpec,
    /// The latest revision's share; absent once promoted, `0` rolls back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_traffic_percent: Option<i64>,
    /// Labels on the predictor's pods (the version, for metrics).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations on the predictor's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `spec.predictor.model`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// `modelFormat.name` (e.g. `huggingface`).
    pub model_format: ModelFormat,
    /// The ServingRuntime, when not chosen by format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Where the model is: `oci://…` (KServe's modelcar), `s3://…`, `pvc://…`.
    pub storage_uri: String,
}

/// `modelFormat`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelFormat {
    /// The format's name.
    pub name: String,
}

/// What the InferenceService for a version holds.
#[derive(Debug, Clone)]
pub struct Predictor<'a> {
    /// The InferenceService's name.
    pub name: &'a str,
    /// The model.
    pub model: &'a str,
    /// The version it serves.
    pub version: &'a str,
    /// Its digest.
    pub digest: &'a str,
    /// Its storage URI.
    pub storage_uri: String,
    /// `modelFormat.name`.
    pub format: &'a str,
    /// `runtime`.
    pub runtime: Option<&'a str>,
    /// The stable version, recorded in an annotation.
    pub stable: &'a str,
}

impl Predictor<'_> {
    /// The InferenceService with the canary at `percent` (`None`: promoted).
    pub fn inference_service(&self, namespace: &str, percent: Option<u32>) -> InferenceService {
        InferenceService {
            api_version: Kind::INFERENCE_SERVICE.api_version(),
            kind: Kind::INFERENCE_SERVICE.kind.to_owned(),
            metadata: ObjectMeta {
                name: Some(self.name.to_owned()),
                namespace: Some(namespace.to_owned()),
                labels: Some(BTreeMap::from([
                    (keys::NAME.to_owned(), label_value(self.model)),
                    (keys::MANAGED_BY.to_owned(), "gantry".to_owned()),
                ])),
                annotations: Some(BTreeMap::from([
                    (keys::STABLE.to_owned(), self.stable.to_owned()),
                    (keys::DIGEST.to_owned(), self.digest.to_owned()),
                    ("gantry.dev/version".to_owned(), self.version.to_owned()),
                ])),
                ..ObjectMeta::default()
            },
            spec: InferenceServiceSpec {
                predictor: PredictorSpec {
                    model: ModelSpec {
                        model_format: ModelFormat {
                            name: self.format.to_owned(),
                        },
                        runtime: self.runtime.map(str::to_owned),
                        storage_uri: self.storage_uri.clone(),
                    },
                    canary_traffic_percent: percent.map(i64::from),
                    labels: Some(BTreeMap::from([(
                        keys::VERSION.to_owned(),
                        label_value(self.version),
                    )])),
                    annotations: None,
                },
            },
        }
    }
}

/// The apply that sets the model on a Rollout's pod template: two
/// annotations gantry owns (the pod reads `gantry.dev/model` through the
/// downward API); a new pod-template hash starts Argo's steps.
pub fn rollout_model(
    name: &str,
    namespace: &str,
    model: &str,
    version: &str,
    digest: &str,
) -> Value {
    json!({
        "apiVersion": Kind::ROLLOUT.api_version(),
        "kind": Kind::ROLLOUT.kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"metadata": {"annotations": {
            keys::MODEL: format!("{model}@{digest}"),
            "gantry.dev/version": version,
        }}}}
    })
}

/// `kubectl argo rollouts promote`'s patches: unpause, clear the pause
/// conditions (status subresource).
pub fn rollout_promote() -> (Value, Value) {
    (
        json!({"spec": {"paused": false}}),
        json!({"status": {"pauseConditions": null}}),
    )
}

/// `kubectl argo rollouts abort`'s patch (status subresource).
pub fn rollout_abort() -> Value {
    json!({"status": {"abort": true}})
}

/// Renders objects as one YAML stream.
pub fn yaml_stream(objects: &[Value]) -> Result<String> {
    let mut out = String::new();
    for object in objects {
        out.push_str("---\n");
        out.push_str(
            &serde_norway::to_string(object).map_err(|error| Error::Service(error.to_string()))?,
        );
    }
    Ok(out)
}
