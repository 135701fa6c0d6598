//! The OCI backend against the real CNCF distribution registry with token
//! authentication: round trips, plain-HTTP reads, resumed uploads after
//! dropped connections, and the errors users see.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};

use common::register;
use gantry_core::Digest;
use gantry_registry::{
    Credentials, LineageInput, LineageSources, OciOptions, OciRegistry, Reference, Registry,
};
use gantry_test::{DroppingProxy, OCI_PASSWORD, OCI_USER, OciRegistryServer};

fn safetensors(elements: usize) -> Vec<u8> {
    let header = format!(
        r#"{{"w":{{"dtype":"F32","shape":[{elements}],"data_offsets":[0,{}]}}}}"#,
        elements * 4
    );
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend((0..elements * 4).map(|index| (index * 7 % 251) as u8));
    bytes
}

/// A model with a 3 MiB weights file (three 1 MiB chunks) and small files.
fn model_dir(root: &Path) -> PathBuf {
    let dir = root.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.safetensors"), safetensors(3 << 18)).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"hidden": 4}"#).unwrap();
    std::fs::write(dir.join("README.md"), "# tiny\n").unwrap();
    dir
}

fn options(password: Option<&str>) -> OciOptions {
    OciOptions {
        credentials: password.map(|password| Credentials {
            username: OCI_USER.to_owned(),
            password: gantry_core::Secret::new(password),
        }),
        retry: gantry_core::RetryPolicy {
            attempts: 4,
            base_delay: std::time::Duration::from_millis(5),
            ..gantry_core::RetryPolicy::default()
        },
        chunk_size: 1 << 20,
        concurrency: 4,
    }
}

/// A bearer token for `scope`, fetched the way any client would.
fn token(server: &OciRegistryServer, scope: &str) -> String {
    let client = reqwest::blocking::Client::new();
    let challenge = client
        .get(format!("http://{}/v2/", server.address))
        .send()
        .unwrap();
    assert_eq!(challenge.status(), 401);
    let header = challenge.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let realm = header
        .split("realm=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let service = header
        .split("service=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let response: serde_json::Value = client
        .get(realm)
        .query(&[("service", service), ("scope", scope)])
        .basic_auth(OCI_USER, Some(OCI_PASSWORD))
        .send()
        .unwrap()
        .json()
        .unwrap();
    response["token"].as_str().unwrap().to_owned()
}

#[test]
fn a_model_round_trips_and_reads_back_as_a_plain_oci_artifact() {
    let Some(server) = OciRegistryServer::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dir = model_dir(work.path());
    let lock = work.path().join("data.lock");
    std::fs::write(
        &lock,
        format!(r#"{{"dataset_digest":"{}"}}"#, Digest::of_bytes(b"data")),
    )
    .unwrap();
    let lineage = LineageSources {
        data_lock: Some(lock),
        ..LineageSources::default()
    }
    .read()
    .unwrap();
    let uri = format!("oci://{}/models", server.address);
    let registry = OciRegistry::new(&uri, options(Some(OCI_PASSWORD))).unwrap();

    let (first, _) = common::round_trip(&registry, &dir, &lineage, work.path());
    assert_eq!(
        first.bytes_stored,
        first.manifest.total_size() + first.manifest.lineage.data.as_ref().unwrap().document.size
    );

    // Any OCI client can read it: plain HTTP with a token.
    let bearer = token(&server, "repository:models/tiny:pull");
    let client = reqwest::blocking::Client::new();
    let manifest: serde_json::Value = client
        .get(format!(
            "http://{}/v2/models/tiny/manifests/0.1.0",
            server.address
        ))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .bearer_auth(&bearer)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.gantry.model.manifest.v1+json"
    );
    assert_eq!(
        manifest["annotations"]["org.gantry.model.digest"],
        first.digest.to_string()
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 4, "three files and the data lock");
    let weights = layers
        .iter()
        .find(|layer| layer["annotations"]["org.cncf.model.filepath"] == "model.safetensors")
        .unwrap();
    assert_eq!(
        weights["mediaType"],
        "application/vnd.cncf.model.weight.v1.raw"
    );
    for descriptor in layers.iter().chain([&manifest["config"]]) {
        let digest = descriptor["digest"].as_str().unwrap();
        let bytes = client
            .get(format!(
                "http://{}/v2/models/tiny/blobs/{digest}",
                server.address
            ))
            .bearer_auth(&bearer)
            .send()
            .unwrap()
            .bytes()
            .unwrap();
        assert_eq!(Digest::of_bytes(&bytes).to_string(), digest);
        assert_eq!(bytes.len() as u64, descriptor["size"].as_u64().unwrap());
    }
    assert!(
        server
            .token_requests
            .0
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
    );
}

#[test]
fn uploads_resume_after_dropped_connections_and_fail_cleanly_when_they_keep_dropping() {
    let Some(server) = OciRegistryServer::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dir = model_dir(work.path());
    let lineage = LineageInput::default();

    // Two connections are cut mid-body; the upload resumes where the
    // registry's copy ends and the blob is whole.
    let flaky = DroppingProxy::start(&server.address, 1_500_000, 2);
    let registry = OciRegistry::new(
        &format!("oci://{}/models", flaky.address),
        options(Some(OCI_PASSWORD)),
    )
    .unwrap();
    let registered = register(&registry, &dir, &lineage, &[], &[]).unwrap();
    assert!(flaky.cuts.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let direct = OciRegistry::new(
        &format!("oci://{}/models", server.address),
        options(Some(OCI_PASSWORD)),
    )
    .unwrap();
    let resolved = direct
        .resolve(&"tiny".parse::<Reference>().unwrap())
        .unwrap();
    assert_eq!(resolved.digest, registered.digest);
    let report = gantry_registry::verify(&direct, &resolved).unwrap();
    assert!(report.ok(), "{:?}", report.problems());

    // A connection that always drops: a clean failure naming the file and
    // host, and no version appears.
    std::fs::write(dir.join("model.safetensors"), safetensors(3 << 18 | 1)).unwrap();
    let dead = DroppingProxy::start(&server.address, 1_500_000, u64::MAX);
    let registry = OciRegistry::new(
        &format!("oci://{}/models", dead.address),
        options(Some(OCI_PASSWORD)),
    )
    .unwrap();
    let error = register(&registry, &dir, &lineage, &[("try", "dead")], &[])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("uploading model.safetensors") && error.contains(&dead.address),
        "{error}"
    );
    assert_eq!(
        direct.versions("tiny").unwrap().len(),
        1,
        "no broken version is visible"
    );
}

#[test]
fn bad_or_missing_credentials_name_the_host_and_the_fix() {
    let Some(server) = OciRegistryServer::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dir = model_dir(work.path());
    let uri = format!("oci://{}/models", server.address);
    let wrong = OciRegistry::new(&uri, options(Some("wrong"))).unwrap();
    let error = register(&wrong, &dir, &LineageInput::default(), &[], &[])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("refused user \"gantry\"") && error.contains("GANTRY_REGISTRY_PASSWORD"),
        "{error}"
    );
    assert!(
        !error.contains("wrong"),
        "the password never shows: {error}"
    );
    let anonymous = OciRegistry::new(&uri, options(None)).unwrap();
    let error = anonymous.versions("tiny").unwrap_err().to_string();
    assert!(error.contains("refused anonymous access"), "{error}");
    let unreachable = OciRegistry::new("oci://127.0.0.1:1/models", options(None)).unwrap();
    let error = unreachable.versions("tiny").unwrap_err().to_string();
    assert!(error.contains("127.0.0.1:1"), "{error}");
}
