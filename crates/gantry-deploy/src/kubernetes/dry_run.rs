//! `--dry-run`: the requests a rollout would send, in order, built by the
//! same code that sends them, with no cluster.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::kubernetes::engines::{Engine, KubeOptions};
use crate::kubernetes::render::{self, Predictor, Workload};
use crate::kubernetes::{FIELD_MANAGER, Kind, keys, object_name};
use crate::rollout::Step;

/// A rollout's requests.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// `--k8s-engine`.
    pub engine: String,
    /// The namespace.
    pub namespace: String,
    /// In the order they are sent.
    pub requests: Vec<Planned>,
}

/// One request (or a wait, with no method).
#[derive(Debug, Clone, Serialize)]
pub struct Planned {
    /// When it is sent.
    pub when: String,
    /// `PATCH`, `DELETE`, or `WAIT`.
    pub method: String,
    /// The API path.
    pub path: String,
    /// The body's content type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
}

struct Planner<'a> {
    namespace: &'a str,
    requests: Vec<Planned>,
}

impl Planner<'_> {
    fn path(&self, kind: Kind, name: &str) -> String {
        let base = if kind.group.is_empty() {
            format!("/api/{}", kind.version)
        } else {
            format!("/apis/{}/{}", kind.group, kind.version)
        };
        format!(
            "{base}/namespaces/{}/{}/{name}",
            self.namespace, kind.plural
        )
    }

    fn apply(&mut self, when: &str, kind: Kind, name: &str, body: Value, force: bool) {
        let mut path = format!("{}?fieldManager={FIELD_MANAGER}", self.path(kind, name));
        if force {
            path.push_str("&force=true");
        }
        self.requests.push(Planned {
            when: when.to_owned(),
            method: "PATCH".to_owned(),
            path,
            content_type: Some("application/apply-patch+yaml".to_owned()),
            body: Some(body),
        });
    }

    fn merge(&mut self, when: &str, kind: Kind, name: &str, body: Value, status: bool) {
        let mut path = self.path(kind, name);
        if status {
            path.push_str("/status");
        }
        self.requests.push(Planned {
            when: when.to_owned(),
            method: "PATCH".to_owned(),
            path,
            content_type: Some("application/merge-patch+json".to_owned()),
            body: Some(body),
        });
    }

    fn delete(&mut self, when: &str, kind: Kind, name: &str) {
        self.requests.push(Planned {
            when: when.to_owned(),
            method: "DELETE".to_owned(),
            path: format!("{}?propagationPolicy=Background", self.path(kind, name)),
            content_type: None,
            body: None,
        });
    }

    fn wait(&mut self, when: &str, kind: Kind, name: &str) {
        self.requests.push(Planned {
            when: when.to_owned(),
            method: "WAIT".to_owned(),
            path: self.path(kind, name),
            content_type: None,
            body: None,
        });
    }
}

/// Plans a rollout of `canary` (version, digest) beside `stable`.
pub fn plan(
    kube: &KubeOptions,
    namespace: &str,
    canary: (&str, &str),
    stable: Option<(&str, &str)>,
    steps: &[Step],
) -> Result<Plan> {
    let mut planner = Planner {
        namespace,
        requests: Vec::new(),
    };
    let stable_version = stable.map_or(canary.0, |stable| stable.0);
    match kube.engine {
        Engine::GatewayApi => {
            let workload = Workload {
                model: &kube.model,
                version: canary.0,
                digest: canary.1,
                image: kube.server_image.as_deref().unwrap_or("<--server-image>"),
                args: &kube.server_args,
                port: kube.port,
                replicas: kube.replicas,
                gpus: kube.gpus,
                source: &kube.source,
            };
            let name = workload.name();
            let mut deployment =
                render::applied(Kind::DEPLOYMENT, &workload.deployment(namespace))?;
            let mut service = render::applied(Kind::SERVICE, &workload.service(namespace))?;
            for object in [&mut deployment, &mut service] {
                object["metadata"]["annotations"]["gantry.dev/version"] = json!(canary.0);
            }
            planner.apply(
                "bring up the canary",
                Kind::DEPLOYMENT,
                &name,
                deployment,
                true,
            );
            planner.apply("bring up the canary", Kind::SERVICE, &name, service, true);
            planner.wait("until the Deployment is Available", Kind::DEPLOYMENT, &name);
            let route = |weights: &[(&str, i32)]| -> Result<Value> {
                let refs = weights
                    .iter()
                    .map(|(version, weight)| {
                        render::backend_ref(&object_name(&kube.model, version), kube.port, *weight)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok(json!({
                    "apiVersion": Kind::HTTP_ROUTE.api_version(),
                    "kind": Kind::HTTP_ROUTE.kind,
                    "metadata": {"name": kube.route, "namespace": namespace, "annotations": {
                        keys::STABLE: stable_version,
                        keys::LEASE_HOLDER: "<rollout id>",
                        keys::LEASE_EXPIRES: "<now + --lease, ms>",
                    }},
                    // Only the model's backendRefs are shown: the route's
                    // other rules and fields are sent back as they are.
                    "spec": {"rules": [{"backendRefs": refs}]},
                }))
            };
            for (index, step) in steps.iter().enumerate() {
                let when = format!("step {}", index + 1);
                match step {
                    Step::Pause => planner.wait(
                        &format!("{when}: pause, all traffic on stable until --action promote"),
                        Kind::HTTP_ROUTE,
                        &kube.route,
                    ),
                    Step::Weight(weight) => {
                        let weight = i32::try_from(*weight).unwrap_or(100);
                        let body = match stable {
                            Some(stable) if weight < 100 => {
                                route(&[(stable.0, 100 - weight), (canary.0, weight)])?
                            }
                            Some(stable) => route(&[(stable.0, 0), (canary.0, 100)])?,
                            None => route(&[(canary.0, 100)])?,
                        };
                        planner.apply(
                            &format!("{when}: canary at {weight}% (then one analysis window)"),
                            Kind::HTTP_ROUTE,
                            &kube.route,
                            body,
                            kube.force_conflicts,
                        );
                        planner.wait(
                            "until the Gateway accepts the route",
                            Kind::HTTP_ROUTE,
                            &kube.route,
                        );
                    }
                }
            }
            if let Some(stable) = stable {
                let old = object_name(&kube.model, stable.0);
                let mut body = route(&[(canary.0, 100)])?;
                body["metadata"]["annotations"] = json!({keys::STABLE: canary.0});
                planner.apply(
                    "promote: the old stable's backendRef is removed",
                    Kind::HTTP_ROUTE,
                    &kube.route,
                    body,
                    kube.force_conflicts,
                );
                planner.delete("promote", Kind::SERVICE, &old);
                planner.delete("promote", Kind::DEPLOYMENT, &old);
                let mut body = route(&[(stable.0, 100)])?;
                body["metadata"]["annotations"] = json!({keys::STABLE: stable.0});
                planner.apply(
                    "or, on a failed analysis: roll back, the canary's backendRef removed",
                    Kind::HTTP_ROUTE,
                    &kube.route,
                    body,
                    kube.force_conflicts,
                );
                planner.delete("roll back", Kind::SERVICE, &name);
                planner.delete("roll back", Kind::DEPLOYMENT, &name);
            }
        }
        Engine::Kserve => {
            let predictor = Predictor {
                name: &kube.inference_service,
                model: &kube.model,
                version: canary.0,
                digest: canary.1,
                storage_uri: kube.storage_uri(canary.0, canary.1),
                format: &kube.model_format,
                runtime: kube.runtime.as_deref(),
                stable: stable_version,
            };
            let isvc = |percent: Option<u32>| {
                render::applied(
                    Kind::INFERENCE_SERVICE,
                    &predictor.inference_service(namespace, percent),
                )
            };
            let name = &kube.inference_service;
            planner.apply(
                "bring up the canary: a new revision at 0%",
                Kind::INFERENCE_SERVICE,
                name,
                isvc(stable.map(|_| 0))?,
                kube.force_conflicts,
            );
            planner.wait(
                "until the new revision is Ready",
                Kind::INFERENCE_SERVICE,
                name,
            );
            for (index, step) in steps.iter().enumerate() {
                match step {
                    Step::Pause => planner.wait(
                        &format!(
                            "step {}: pause, canaryTrafficPercent 0 until --action promote",
                            index + 1
                        ),
                        Kind::INFERENCE_SERVICE,
                        name,
                    ),
                    Step::Weight(weight) if stable.is_some() && *weight < 100 => planner.apply(
                        &format!("step {}: canary at {weight}%", index + 1),
                        Kind::INFERENCE_SERVICE,
                        name,
                        isvc(Some(*weight))?,
                        kube.force_conflicts,
                    ),
                    Step::Weight(_) => {}
                }
            }
            planner.apply(
                "promote: canaryTrafficPercent removed",
                Kind::INFERENCE_SERVICE,
                name,
                isvc(None)?,
                kube.force_conflicts,
            );
            if stable.is_some() {
                planner.apply(
                    "or, on a failed analysis: roll back with 0",
                    Kind::INFERENCE_SERVICE,
                    name,
                    isvc(Some(0))?,
                    kube.force_conflicts,
                );
            }
        }
        Engine::ArgoRollouts => {
            let name = &kube.route;
            planner.apply(
                "set the model on the Rollout's pod template (Argo starts its steps)",
                Kind::ROLLOUT,
                name,
                render::rollout_model(name, namespace, &kube.model, canary.0, canary.1),
                kube.force_conflicts,
            );
            planner.wait(
                "follow the Rollout until Healthy (alias moved) or Degraded",
                Kind::ROLLOUT,
                name,
            );
            let (spec, status) = render::rollout_promote();
            planner.merge(
                "--action promote at an untimed pause",
                Kind::ROLLOUT,
                name,
                spec,
                false,
            );
            planner.merge(
                "--action promote at an untimed pause",
                Kind::ROLLOUT,
                name,
                status,
                true,
            );
            planner.merge(
                "--action abort, or a cancelled job",
                Kind::ROLLOUT,
                name,
                render::rollout_abort(),
                true,
            );
        }
    }
    Ok(Plan {
        engine: kube.engine.name().to_owned(),
        namespace: namespace.to_owned(),
        requests: planner.requests,
    })
}

/// The plan as commented YAML, one document per request with a body.
pub fn render_text(plan: &Plan) -> Result<String> {
    let mut out = format!(
        "# deploy-canary --dry-run: {} in namespace {}; nothing was sent\n",
        plan.engine, plan.namespace
    );
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for request in &plan.requests {
        *counts.entry(request.method.as_str()).or_default() += 1;
        out.push_str(&format!(
            "# {}\n# {} {}",
            request.when, request.method, request.path
        ));
        if let Some(content_type) = &request.content_type {
            out.push_str(&format!(" ({content_type})"));
        }
        out.push('\n');
        if let Some(body) = &request.body {
            out.push_str("---\n");
            out.push_str(
                &serde_norway::to_string(body)
                    .map_err(|error| Error::Service(error.to_string()))?,
            );
        }
    }
    Ok(out)
}
