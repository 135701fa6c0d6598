//! A Kubernetes manifest for the same run, for GPUs that live in a cluster:
//! a `batch/v1` Job for one node, a Kubeflow `PyTorchJob` (Master and
//! Workers) for several.
//!
//! Rendered with minijinja from a built-in template (or the user's), then
//! checked against the typed Kubernetes definitions of `k8s-openapi`: the
//! manifest is parsed into them and serialized back, and anything that does
//! not survive the round trip unchanged — a misspelled field, a string where
//! a number belongs, a field Kubernetes does not have — is an error naming
//! the path. A malformed manifest is never written.
//!
//! The pod follows the same contract as a local run: the `GANTRY_*`
//! variables (paths relative to `/workspace`), a failed pod replaced by a
//! new one up to `--max-restarts` (`backoffLimit`), `--timeout` as
//! `activeDeadlineSeconds`, `--grace-period` as
//! `terminationGracePeriodSeconds`. A small `sh` prologue resumes from the
//! checkpoint directory when it holds a complete checkpoint, so a replaced
//! pod continues where the last one stopped — keep the run directory on a
//! volume (`--volume-claim`) for that.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};

const TEMPLATE: &str = include_str!("../templates/kubernetes.yaml.j2");

/// Where the pod's working directory is.
pub const WORKSPACE: &str = "/workspace";

/// What the manifest describes.
#[derive(Debug, Clone)]
pub struct ManifestSpec {
    /// The run's id (names the Job, labels the pods).
    pub run_id: String,
    /// The container image holding the trainer.
    pub image: String,
    /// The namespace, if any.
    pub namespace: Option<String>,
    /// Pods (nodes): 1 gives a Job, more a PyTorchJob.
    pub nodes: u32,
    /// `nvidia.com/gpu` per pod.
    pub gpus: Option<u32>,
    /// The training command (argv, or one script when `shell`).
    pub command: Vec<String>,
    /// Whether `command` is a shell script.
    pub shell: bool,
    /// Environment variables (the training contract's).
    pub env: Vec<(String, String)>,
    /// The run directory, relative to the working directory.
    pub run_dir: String,
    /// A PersistentVolumeClaim mounted at the run directory.
    pub claim: Option<String>,
    /// Pod replacements after failures.
    pub max_restarts: u32,
    /// `activeDeadlineSeconds`.
    pub deadline_seconds: Option<u64>,
    /// `terminationGracePeriodSeconds`.
    pub grace_period_seconds: u64,
}

/// The prologue: resume from the checkpoint directory when it holds a
/// complete checkpoint by the layout's rule (`GANTRY_CHECKPOINT_LAYOUT`;
/// `auto` takes any layout's completion mark, so a plain-directory layout
/// must be named); the rank variables torchrun wants.
const PROLOGUE: &str = r#"unset GANTRY_RESUME_FROM
d="$GANTRY_CHECKPOINT_DIR"
found() { for f in "$@"; do [ -e "$f" ] && return 0; done; return 1; }
case "${GANTRY_CHECKPOINT_LAYOUT:-auto}" in
  hf) found "$d"/checkpoint-*/trainer_state.json ;;
  dir) found "$d"/checkpoint-* ;;
  lightning) found "$d"/*.ckpt ;;
  deepspeed) found "$d"/latest ;;
  dcp) found "$d"/*/.metadata ;;
  *) found "$d"/checkpoint-*/trainer_state.json "$d"/latest "$d"/*.ckpt "$d"/*/.metadata ;;
esac && export GANTRY_RESUME_FROM="$d"
export NNODES="${WORLD_SIZE:-1}" NODE_RANK="${RANK:-0}"
exec "$@""#;

/// A name Kubernetes accepts: lowercase letters, digits and '-', at most 63.
fn object_name(run_id: &str) -> String {
    let mut name: String = format!("gantry-train-{run_id}")
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name.truncate(63);
    name.trim_end_matches('-').to_owned()
}

/// Renders and checks the manifest; `template` replaces the built-in one.
pub fn render(spec: &ManifestSpec, template: Option<&str>) -> Result<String> {
    let mut environment = minijinja::Environment::new();
    environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    // Values are written with `tojson`; nothing else is escaped.
    environment.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    environment
        .add_template("manifest", template.unwrap_or(TEMPLATE))
        .map_err(|error| crate::error::given("Kubernetes template", "", format!("{error:#}")))?;
    let command: Vec<String> = ["sh", "-c", PROLOGUE, "gantry-train"]
        .into_iter()
        .map(str::to_owned)
        .chain(if spec.shell {
            vec!["sh".to_owned(), "-c".to_owned(), spec.command.join(" ")]
        } else {
            spec.command.clone()
        })
        .collect();
    let env: Vec<Value> = spec
        .env
        .iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    let multi_node = spec.nodes > 1;
    let context = json!({
        "run_id": spec.run_id,
        "name": object_name(&spec.run_id),
        "namespace": spec.namespace,
        "image": spec.image,
        "nodes": spec.nodes.max(1),
        "gpus": spec.gpus.filter(|gpus| *gpus > 0).map(|gpus| gpus.to_string()),
        "command": command,
        "env": env,
        "claim": spec.claim,
        "mount_path": format!("{WORKSPACE}/{}", spec.run_dir.trim_start_matches("./")),
        "backoff_limit": spec.max_restarts,
        "deadline_seconds": spec.deadline_seconds,
        "grace_period_seconds": spec.grace_period_seconds,
        "restart_policy": if multi_node { "OnFailure" } else { "Never" },
        // The PyTorchJob operator finds its container by this name.
        "container_name": if multi_node { "pytorch" } else { "trainer" },
    });
    let text = environment
        .get_template("manifest")
        .and_then(|template| template.render(&context))
        .map_err(|error| Error::Input(format!("rendering the Kubernetes manifest: {error:#}")))?;
    check(&text)?;
    Ok(format!("{}\n", text.trim()))
}

/// The outer shape of a Kubeflow `PyTorchJob` (a custom resource, so not in
/// `k8s-openapi`); its pod templates are checked as `PodTemplateSpec`s.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PyTorchJob {
    api_version: String,
    kind: String,
    metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    spec: PyTorchJobSpec,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PyTorchJobSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run_policy: Option<RunPolicy>,
    pytorch_replica_specs: std::collections::BTreeMap<String, ReplicaSpec>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RunPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backoff_limit: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    active_deadline_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    clean_pod_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ttl_seconds_after_finished: Option<i32>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReplicaSpec {
    replicas: i32,
    restart_policy: String,
    template: PodTemplateSpec,
}

/// Checks a rendered manifest against the typed definitions.
pub fn check(text: &str) -> Result<()> {
    let document: Value = serde_norway::from_str(text).map_err(|error| {
        Error::Input(format!(
            "the Kubernetes manifest is not valid YAML: {error}"
        ))
    })?;
    let kind = (
        document["apiVersion"].as_str().unwrap_or_default(),
        document["kind"].as_str().unwrap_or_default(),
    );
    let round_trip = match kind {
        ("batch/v1", "Job") => {
            let job: Job = serde_json::from_value(document.clone()).map_err(|error| {
                Error::Input(format!("the Kubernetes Job does not match batch/v1 Job: {error}"))
            })?;
            serde_json::to_value(&job)
        }
        ("kubeflow.org/v1", "PyTorchJob") => {
            let job: PyTorchJob = serde_json::from_value(document.clone()).map_err(|error| {
                Error::Input(format!(
                    "the PyTorchJob does not match kubeflow.org/v1 PyTorchJob: {error}"
                ))
            })?;
            for (role, replica) in &job.spec.pytorch_replica_specs {
                if !matches!(role.as_str(), "Master" | "Worker") {
                    return Err(Error::Input(format!(
                        "PyTorchJob replica {role:?}: expected Master or Worker"
                    )));
                }
                let containers = replica
                    .template
                    .spec
                    .as_ref()
                    .map(|spec| spec.containers.as_slice())
                    .unwrap_or_default();
                if !containers.iter().any(|container| container.name == "pytorch") {
                    return Err(Error::Input(format!(
                        "PyTorchJob {role}: the training operator needs a container named \"pytorch\""
                    )));
                }
            }
            serde_json::to_value(&job)
        }
        (api_version, kind) => {
            return Err(Error::Input(format!(
                "the Kubernetes manifest is {kind:?} of {api_version:?}; expected a batch/v1 Job or a kubeflow.org/v1 PyTorchJob"
            )));
        }
    }
    .map_err(|error| Error::Input(format!("re-encoding the manifest: {error}")))?;
    if let Some(path) = first_difference(&document, &round_trip, String::new()) {
        return Err(Error::Input(format!(
            "the Kubernetes manifest has {path}, which {} {} does not know (misspelled, or of the wrong type)",
            kind.1, kind.0
        )));
    }
    Ok(())
}

/// The path of the first value of `rendered` that `typed` lost or changed.
fn first_difference(rendered: &Value, typed: &Value, path: String) -> Option<String> {
    match (rendered, typed) {
        (Value::Object(rendered), Value::Object(typed)) => {
            rendered
                .iter()
                .find_map(|(key, value)| match typed.get(key) {
                    Some(other) => first_difference(value, other, format!("{path}.{key}")),
                    None if value.is_null() => None,
                    None => Some(format!("{path}.{key}")),
                })
        }
        (Value::Array(rendered), Value::Array(typed)) if rendered.len() == typed.len() => rendered
            .iter()
            .zip(typed)
            .enumerate()
            .find_map(|(index, (value, other))| {
                first_difference(value, other, format!("{path}[{index}]"))
            }),
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => None,
        (a, b) if a == b => None,
        _ => Some(if path.is_empty() {
            ".".to_owned()
        } else {
            path
        }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(nodes: u32) -> ManifestSpec {
        ManifestSpec {
            run_id: "20261128T120000Z-0a1b2c3d".to_owned(),
            image: "ghcr.io/org/trainer:1.2".to_owned(),
            namespace: Some("ml".to_owned()),
            nodes,
            gpus: Some(8),
            command: vec![
                "python".to_owned(),
                "train.py".to_owned(),
                "--name=it's \"x\"".to_owned(),
            ],
            shell: false,
            env: vec![
                (
                    "GANTRY_CHECKPOINT_DIR".to_owned(),
                    ".gantry/train/checkpoints".to_owned(),
                ),
                ("GANTRY_SEED".to_owned(), "7".to_owned()),
            ],
            run_dir: ".gantry/train".to_owned(),
            claim: Some("training-runs".to_owned()),
            max_restarts: 3,
            deadline_seconds: Some(7200),
            grace_period_seconds: 30,
        }
    }

    #[test]
    fn one_node_is_a_typed_job() {
        let text = render(&spec(1), None).unwrap();
        let job: Job = serde_norway::from_str(&text).unwrap();
        let job_spec = job.spec.unwrap();
        assert_eq!(
            job.metadata.name.as_deref(),
            Some("gantry-train-20261128t120000z-0a1b2c3d")
        );
        assert_eq!(job_spec.backoff_limit, Some(3));
        assert_eq!(job_spec.active_deadline_seconds, Some(7200));
        let pod = job_spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.termination_grace_period_seconds, Some(30));
        let container = &pod.containers[0];
        let command = container.command.clone().unwrap();
        assert_eq!(
            &command[command.len() - 3..],
            ["python", "train.py", "--name=it's \"x\""]
        );
        let limits = container
            .resources
            .as_ref()
            .unwrap()
            .limits
            .as_ref()
            .unwrap();
        assert_eq!(limits["nvidia.com/gpu"].0, "8");
        assert_eq!(
            container.volume_mounts.as_ref().unwrap()[0].mount_path,
            "/workspace/.gantry/train"
        );
        let env = container.env.as_ref().unwrap();
        assert_eq!(env[1].value.as_deref(), Some("7"));
    }

    #[test]
    fn several_nodes_are_a_pytorchjob_with_typed_pods() {
        let text = render(&spec(4), None).unwrap();
        let document: Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(document["kind"], "PyTorchJob");
        let replicas = &document["spec"]["pytorchReplicaSpecs"];
        assert_eq!(replicas["Master"]["replicas"], 1);
        assert_eq!(replicas["Worker"]["replicas"], 3);
        let pod: PodTemplateSpec =
            serde_json::from_value(replicas["Worker"]["template"].clone()).unwrap();
        assert_eq!(pod.spec.unwrap().containers[0].name, "pytorch");
        assert_eq!(document["spec"]["runPolicy"]["backoffLimit"], 3);
    }

    #[test]
    fn a_template_with_a_mistake_is_refused_with_its_path() {
        let misspelled =
            TEMPLATE.replace("terminationGracePeriodSeconds", "terminationGracePeriod");
        let error = render(&spec(1), Some(&misspelled)).unwrap_err().to_string();
        assert!(
            error.contains(".spec.template.spec.terminationGracePeriod"),
            "{error}"
        );
        let wrong_type = TEMPLATE.replace(
            "backoffLimit: {{ backoff_limit }}",
            "backoffLimit: \"three\"",
        );
        let error = render(&spec(1), Some(&wrong_type)).unwrap_err().to_string();
        assert!(error.contains("batch/v1 Job"), "{error}");
        let other = "apiVersion: v1\nkind: Pod\n";
        assert!(
            render(&spec(1), Some(other))
                .unwrap_err()
                .to_string()
                .contains("expected a batch/v1 Job")
        );
        let no_pytorch = TEMPLATE.replace("name: {{ container_name | tojson }}", "name: trainer");
        let error = render(&spec(2), Some(&no_pytorch)).unwrap_err().to_string();
        assert!(error.contains("container named \"pytorch\""), "{error}");
    }

    #[test]
    fn the_prologue_resumes_only_from_a_complete_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = dir.path().join("checkpoints");
        let run = |expected: &str| {
            let output = std::process::Command::new("sh")
                .args([
                    "-c",
                    PROLOGUE,
                    "gantry-train",
                    "sh",
                    "-c",
                    "echo \"$GANTRY_RESUME_FROM|$NNODES|$NODE_RANK\"",
                ])
                .env("GANTRY_CHECKPOINT_DIR", &checkpoints)
                .env("WORLD_SIZE", "4")
                .env("RANK", "2")
                .output()
                .unwrap();
            assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), expected);
        };
        run("|4|2");
        std::fs::create_dir_all(checkpoints.join("checkpoint-5")).unwrap();
        run("|4|2");
        std::fs::write(checkpoints.join("checkpoint-5/trainer_state.json"), "{}").unwrap();
        run(&format!("{}|4|2", checkpoints.display()));
        // Other layouts' completion marks count too.
        std::fs::remove_dir_all(&checkpoints).unwrap();
        std::fs::create_dir_all(checkpoints.join("step-100")).unwrap();
        run("|4|2");
        std::fs::write(checkpoints.join("step-100/.metadata"), "m").unwrap();
        run(&format!("{}|4|2", checkpoints.display()));
    }
}
