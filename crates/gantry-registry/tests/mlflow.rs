//! The MLflow backend against a real `mlflow server` (SQLite store,
//! artifacts through its proxy): round trips, idempotence by the digest tag,
//! concurrent registrations, aliases with compare-and-swap and their events.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};

use common::register;
use gantry_core::Digest;
use gantry_registry::{LineageInput, LineageSources, MlflowOptions, MlflowRegistry, Registry};
use gantry_test::MlflowServer;

fn model_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(dir.join("tokenizer")).unwrap();
    let header = r#"{"w":{"dtype":"F16","shape":[2,3],"data_offsets":[0,12]}}"#;
    let mut weights = (header.len() as u64).to_le_bytes().to_vec();
    weights.extend_from_slice(header.as_bytes());
    weights.extend_from_slice(&[1; 12]);
    std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"hidden": 4}"#).unwrap();
    std::fs::write(dir.join("tokenizer/vocab file.json"), r#"{"a": 1}"#).unwrap();
    dir
}

fn registry(server: &MlflowServer) -> MlflowRegistry {
    let options = MlflowOptions {
        auth: None,
        retry: gantry_core::RetryPolicy {
            base_delay: std::time::Duration::from_millis(5),
            ..gantry_core::RetryPolicy::default()
        },
    };
    MlflowRegistry::new(&format!("mlflow+{}", server.url), options).unwrap()
}

#[test]
fn mlflow_round_trips_versions_aliases_and_events() {
    let Some(server) = MlflowServer::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dir = model_dir(work.path(), "model");
    let results = work.path().join("results.jsonl");
    std::fs::write(&results, "{\"id\":\"1\",\"scores\":{\"acc\":1}}\n").unwrap();
    let lineage = LineageSources {
        eval_results: Some(results.clone()),
        ..LineageSources::default()
    }
    .read()
    .unwrap();
    let registry = registry(&server);

    let (first, _) = common::round_trip(&registry, &dir, &lineage, work.path());

    // What MLflow itself shows: tags on the version, files in the run.
    let client = reqwest::blocking::Client::new();
    let found: serde_json::Value = client
        .get(format!(
            "{}/api/2.0/mlflow/model-versions/search",
            server.url
        ))
        .query(&[(
            "filter",
            format!("name='tiny' AND tags.`gantry.digest`='{}'", first.digest),
        )])
        .send()
        .unwrap()
        .json()
        .unwrap();
    let version = &found["model_versions"][0];
    let source = version["source"].as_str().unwrap();
    assert!(
        source.starts_with("mlflow-artifacts:/") && source.ends_with("/artifacts/model"),
        "{source}"
    );
    let path = source.trim_start_matches("mlflow-artifacts:/");
    let weights = client
        .get(format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{path}/model.safetensors",
            server.url
        ))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(
        Digest::of_bytes(&weights),
        first.manifest.file("model.safetensors").unwrap().digest
    );
}

#[test]
fn concurrent_registrations_get_distinct_versions() {
    let Some(server) = MlflowServer::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dir = model_dir(work.path(), "model");
    let url = server.url.clone();
    let versions: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|index| {
                let (dir, url) = (&dir, &url);
                scope.spawn(move || {
                    let registry =
                        MlflowRegistry::new(&format!("mlflow+{url}"), MlflowOptions::default())
                            .unwrap();
                    let run = index.to_string();
                    register(
                        &registry,
                        dir,
                        &LineageInput::default(),
                        &[("run", &run)],
                        &[],
                    )
                    .unwrap()
                    .manifest
                    .version
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let mut sorted = versions.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 4, "{versions:?}");
    assert_eq!(registry(&server).versions("tiny").unwrap().len(), 4);

    // The same content registered four times at once is one version.
    let digests: Vec<(Digest, bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (dir, url) = (&dir, &url);
                scope.spawn(move || {
                    let registry =
                        MlflowRegistry::new(&format!("mlflow+{url}"), MlflowOptions::default())
                            .unwrap();
                    let registered = register(
                        &registry,
                        dir,
                        &LineageInput::default(),
                        &[("run", "same")],
                        &[],
                    )
                    .unwrap();
                    (registered.digest, registered.created)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    assert!(digests.iter().all(|(digest, _)| *digest == digests[0].0));
    assert_eq!(
        digests.iter().filter(|(_, created)| *created).count(),
        1,
        "{digests:?}"
    );
    assert_eq!(registry(&server).versions("tiny").unwrap().len(), 5);

    let unreachable = MlflowRegistry::new(
        "mlflow+http://127.0.0.1:1",
        MlflowOptions {
            retry: gantry_core::RetryPolicy {
                attempts: 1,
                ..gantry_core::RetryPolicy::default()
            },
            ..MlflowOptions::default()
        },
    )
    .unwrap();
    let error = unreachable.versions("tiny").unwrap_err().to_string();
    assert!(
        error.contains("http://127.0.0.1:1/api/2.0/mlflow/model-versions/search"),
        "{error}"
    );
}
