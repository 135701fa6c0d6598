//! The file registry: idempotence, concurrency, aliases with compare-and-swap,
//! tamper detection, streaming pulls, pickle refusal and the lineage chain.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{reference, register_as as register};
use gantry_core::{Digest, Verdict};
use gantry_registry::{
    Error, Expectation, FileRegistry, LineageInput, LineageSources, ModelSource, Registry,
    VersionRequest,
};

/// A safetensors file with one F32 tensor of `values`.
fn safetensors(values: &[f32]) -> Vec<u8> {
    let header = format!(
        r#"{{"__metadata__":{{"format":"pt"}},"w":{{"dtype":"F32","shape":[{}],"data_offsets":[0,{}]}}}}"#,
        values.len(),
        values.len() * 4
    );
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    bytes
}

fn model_dir(root: &Path, values: &[f32]) -> PathBuf {
    let dir = root.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.safetensors"), safetensors(values)).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"hidden": 4}"#).unwrap();
    std::fs::write(dir.join("README.md"), "# tiny\n").unwrap();
    dir
}

#[test]
fn the_file_registry_passes_the_round_trip_every_backend_passes() {
    let work = tempfile::tempdir().unwrap();
    let dir = model_dir(work.path(), &[1.0, 2.0, 3.0]);
    let registry = FileRegistry::new(work.path().join("registry"));
    common::round_trip(&registry, &dir, &LineageInput::default(), work.path());
}

#[test]
fn the_same_content_registers_once() {
    let work = tempfile::tempdir().unwrap();
    let dir = model_dir(work.path(), &[1.0, 2.0]);
    let registry = FileRegistry::new(work.path().join("registry"));
    let lineage = LineageInput::default();
    let first = register(&registry, &dir, &lineage, &[], VersionRequest::Auto, &[]).unwrap();
    assert!(first.created);
    assert_eq!(first.manifest.version, "0.1.0");
    assert_eq!(first.bytes_stored, first.manifest.total_size());
    let weights = first.manifest.file("model.safetensors").unwrap();
    let summary = weights.safetensors.as_ref().unwrap();
    assert_eq!((summary.tensors, summary.parameters), (1, 2));
    assert_eq!(
        weights.media_type,
        "application/vnd.cncf.model.weight.v1.raw"
    );

    let second = register(&registry, &dir, &lineage, &[], VersionRequest::Auto, &[]).unwrap();
    assert!(!second.created);
    assert_eq!(second.digest, first.digest);
    assert_eq!(second.bytes_stored, 0);
    assert_eq!(registry.versions("tiny").unwrap().len(), 1);

    // Different metadata is a different model; an explicit version that is
    // taken by other content is refused.
    let third = register(
        &registry,
        &dir,
        &lineage,
        &[("owner", "ml")],
        VersionRequest::Auto,
        &[],
    )
    .unwrap();
    assert_eq!(third.manifest.version, "0.1.1");
    let taken = register(
        &registry,
        &dir,
        &lineage,
        &[("owner", "other")],
        VersionRequest::Exact(semver::Version::new(0, 1, 0)),
        &[],
    )
    .unwrap_err();
    assert!(matches!(taken, Error::VersionTaken { .. }), "{taken}");
    assert!(
        taken.to_string().contains(&first.digest.to_string()),
        "{taken}"
    );
}

#[test]
fn sixteen_concurrent_registrations_get_sixteen_versions() {
    let work = tempfile::tempdir().unwrap();
    let dir = model_dir(work.path(), &[1.0; 64]);
    let root = work.path().join("registry");
    let digests: Vec<Digest> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|index| {
                let (dir, root) = (&dir, &root);
                scope.spawn(move || {
                    // Separate registry values open separate lock files, as
                    // separate processes would.
                    let registry = FileRegistry::new(root);
                    let run = index.to_string();
                    register(
                        &registry,
                        dir,
                        &LineageInput::default(),
                        &[("run", &run)],
                        VersionRequest::Auto,
                        &[],
                    )
                    .unwrap()
                    .digest
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let registry = FileRegistry::new(&root);
    let versions = registry.versions("tiny").unwrap();
    assert_eq!(versions.len(), 16);
    let mut names: Vec<String> = versions
        .iter()
        .map(|v| v.manifest.version.clone())
        .collect();
    names.dedup();
    assert_eq!(names.len(), 16);
    assert_eq!(names.last().unwrap(), "0.1.15");
    for digest in digests {
        assert!(versions.iter().any(|v| v.digest == digest));
    }
    let registered = registry
        .events("tiny")
        .unwrap()
        .iter()
        .filter(|event| event.action == "registered")
        .count();
    assert_eq!(registered, 16);
    // Only three distinct blobs were stored, however many writers raced.
    let blobs = std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 3);
}

#[test]
fn aliases_move_by_compare_and_swap_and_are_logged() {
    let work = tempfile::tempdir().unwrap();
    let dir = model_dir(work.path(), &[1.0]);
    let registry = FileRegistry::new(work.path().join("registry"));
    let lineage = LineageInput::default();
    let one = register(
        &registry,
        &dir,
        &lineage,
        &[],
        VersionRequest::Auto,
        &["candidate"],
    )
    .unwrap();
    assert_eq!(one.alias_moves.len(), 1);
    let two = register(
        &registry,
        &dir,
        &lineage,
        &[("v", "2")],
        VersionRequest::Auto,
        &[],
    )
    .unwrap();
    let v1 = registry.resolve(&reference("tiny@0.1.0")).unwrap();
    let v2 = registry.resolve(&reference("tiny@0.1.1")).unwrap();
    assert_eq!(
        registry
            .resolve(&reference("tiny@candidate"))
            .unwrap()
            .digest,
        one.digest
    );
    assert_eq!(
        registry.resolve(&reference("tiny")).unwrap().digest,
        two.digest
    );
    assert_eq!(
        registry
            .resolve(&reference(&format!("tiny@{}", two.digest)))
            .unwrap()
            .manifest
            .version,
        "0.1.1"
    );

    registry
        .move_alias("production", &v1, &Expectation::Absent, "alice")
        .unwrap();
    let conflict = registry
        .move_alias("production", &v2, &Expectation::Absent, "bob")
        .unwrap_err();
    assert!(matches!(conflict, Error::AliasConflict { .. }));
    assert!(conflict.is_verdict());
    assert!(
        conflict.to_string().contains("someone else moved it"),
        "{conflict}"
    );
    let stale = registry
        .move_alias("production", &v2, &Expectation::Digest(two.digest), "bob")
        .unwrap_err();
    assert!(matches!(stale, Error::AliasConflict { .. }));
    let moved = registry
        .move_alias("production", &v2, &Expectation::Digest(one.digest), "bob")
        .unwrap();
    assert_eq!(moved.previous.unwrap().digest, one.digest);
    assert_eq!(
        registry.aliases("tiny").unwrap()["production"].version,
        "0.1.1"
    );

    let events = registry.events("tiny").unwrap();
    let moves: Vec<_> = events
        .iter()
        .filter(|event| event.action == "alias-moved")
        .collect();
    assert_eq!(moves.len(), 3);
    assert_eq!(moves[2].actor, "bob");
    assert_eq!(moves[2].alias.as_deref(), Some("production"));

    // A torn last line (a crash mid-append) is ignored and repaired.
    let log = work.path().join("registry/models/tiny/events.jsonl");
    let mut text = std::fs::read_to_string(&log).unwrap();
    text.push_str("{\"time\":\"2026");
    std::fs::write(&log, text).unwrap();
    assert_eq!(registry.events("tiny").unwrap().len(), events.len());
    registry
        .move_alias("production", &v1, &Expectation::Any, "carol")
        .unwrap();
    assert_eq!(registry.events("tiny").unwrap().len(), events.len() + 1);
    assert_eq!(
        registry.aliases("tiny").unwrap()["production"].version,
        "0.1.0"
    );
}

#[test]
fn verify_and_pull_catch_a_tampered_blob() {
    let work = tempfile::tempdir().unwrap();
    let dir = model_dir(work.path(), &[1.0, 2.0, 3.0]);
    let root = work.path().join("registry");
    let registry = FileRegistry::new(&root);
    let registration = register(
        &registry,
        &dir,
        &LineageInput::default(),
        &[],
        VersionRequest::Auto,
        &[],
    )
    .unwrap();
    let resolved = registry.resolve(&reference("tiny@0.1.0")).unwrap();
    let report = gantry_registry::verify(&registry, &resolved).unwrap();
    assert!(report.ok(), "{:?}", report.problems());
    assert_eq!(report.files.len(), 3);

    let pulled = work.path().join("pulled");
    let pull = gantry_registry::pull(&registry, &resolved, &pulled).unwrap();
    assert_eq!((pull.written, pull.already_present), (3, 0));
    assert_eq!(
        std::fs::read(pulled.join("model.safetensors")).unwrap(),
        std::fs::read(dir.join("model.safetensors")).unwrap()
    );
    let again = gantry_registry::pull(&registry, &resolved, &pulled).unwrap();
    assert_eq!((again.written, again.already_present), (0, 3));
    // A pulled directory registers as the same model (the manifest it
    // carries is hidden).
    let re = register(
        &registry,
        &pulled,
        &LineageInput::default(),
        &[],
        VersionRequest::Auto,
        &[],
    )
    .unwrap();
    assert_eq!(re.digest, registration.digest);

    let weights = resolved.manifest.file("model.safetensors").unwrap();
    let blob = root.join("blobs/sha256").join(weights.digest.hex());
    let mut permissions = std::fs::metadata(&blob).unwrap().permissions();
    assert!(permissions.readonly(), "blobs are stored read-only");
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&blob, permissions).unwrap();
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();

    let report = gantry_registry::verify(&registry, &resolved).unwrap();
    assert!(!report.ok());
    let problems = report.problems();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("model.safetensors: tampered"),
        "{}",
        problems[0]
    );
    assert!(problems[0].contains(&weights.digest.to_string()));
    assert!(problems[0].contains(&Digest::of_bytes(&bytes).to_string()));

    let fresh = work.path().join("fresh");
    let error = gantry_registry::pull(&registry, &resolved, &fresh).unwrap_err();
    assert!(matches!(error, Error::Tampered { .. }), "{error}");
    assert!(
        !fresh.join("model.safetensors").exists(),
        "a tampered file never lands"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&fresh)
        .unwrap()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().contains("partial"))
        .collect();
    assert!(leftovers.is_empty());

    // An edited manifest is caught by its registered digest.
    let manifest_path = root.join("models/tiny/versions/0.1.0.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    std::fs::write(
        &manifest_path,
        text.replace("\"format\": \"pt\"", "\"format\": \"tf\""),
    )
    .unwrap();
    let edited = registry.resolve(&reference("tiny@0.1.0")).unwrap();
    let report = gantry_registry::verify(&registry, &edited).unwrap();
    assert!(
        report
            .problems()
            .iter()
            .any(|problem| problem.contains("edited after registration"))
    );
    // …and pull refuses it as verify does: every blob in it may be whole,
    // but they need not be this version's.
    let elsewhere = work.path().join("edited");
    let error = gantry_registry::pull(&registry, &edited, &elsewhere).unwrap_err();
    assert!(matches!(error, Error::Tampered { .. }), "{error}");
    assert!(
        error.to_string().contains("edited after registration"),
        "{error}"
    );
    assert!(!elsewhere.join("model.safetensors").exists());
}

/// Pickles made by CPython itself: a payload that runs `os.system`, in
/// every protocol, raw and inside a torch-style zip; and a harmless one.
fn python_pickles(dir: &Path) {
    let script = r#"
import collections, os, pickle, sys, zipfile
out = sys.argv[1]
class Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned",))
for protocol in range(0, 6):
    with open(f"{out}/evil-p{protocol}.pkl", "wb") as f:
        pickle.dump({"weights": Payload()}, f, protocol=protocol)
with zipfile.ZipFile(f"{out}/evil.pt", "w") as archive:
    archive.writestr("archive/data.pkl", pickle.dumps(Payload(), protocol=2))
    archive.writestr("archive/data/0", b"\0" * 16)
with open(f"{out}/safe.bin", "wb") as f:
    pickle.dump(collections.OrderedDict(a=[1, 2], b=(3.0, "x")), f, protocol=4)
# Names the scan does not know: the ImageNet example's checkpoint.pth.tar
# (a torch zip), a real tar of a checkpoint, a gzipped one, a bare pickle.
import shutil, tarfile
shutil.copy(f"{out}/evil.pt", f"{out}/checkpoint.pth.tar")
with tarfile.open(f"{out}/checkpoint.tar", "w") as archive:
    archive.add(f"{out}/evil-p2.pkl", arcname="run/model.pt")
with tarfile.open(f"{out}/checkpoint.tar.gz", "w:gz") as archive:
    archive.add(f"{out}/evil.pt", arcname="run/model.pt")
with open(f"{out}/weights.state", "wb") as f:
    pickle.dump({"weights": Payload()}, f, protocol=4)
"#;
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(dir)
        .status()
        .expect("python3 is needed to make real pickles");
    assert!(status.success());
}

#[test]
fn pickles_that_run_code_are_refused_unless_allowed() {
    let work = tempfile::tempdir().unwrap();
    let pickles = work.path().join("pickles");
    std::fs::create_dir(&pickles).unwrap();
    python_pickles(&pickles);
    for protocol in 0..6 {
        let path = pickles.join(format!("evil-p{protocol}.pkl"));
        let summary = gantry_model::pickle::scan_file(&path, true)
            .unwrap()
            .unwrap();
        assert_eq!(
            summary.unsafe_imports,
            vec!["posix.system".to_owned()],
            "protocol {protocol}"
        );
    }
    let zipped = gantry_model::pickle::scan_file(&pickles.join("evil.pt"), true)
        .unwrap()
        .unwrap();
    assert_eq!(zipped.unsafe_imports, vec!["posix.system".to_owned()]);
    let safe = gantry_model::pickle::scan_file(&pickles.join("safe.bin"), true)
        .unwrap()
        .unwrap();
    assert!(safe.unsafe_imports.is_empty(), "{safe:?}");
    assert_eq!(safe.imports, vec!["collections.OrderedDict".to_owned()]);

    let dir = model_dir(work.path(), &[1.0]);
    std::fs::copy(pickles.join("evil.pt"), dir.join("pytorch_model.pt")).unwrap();
    let error = gantry_registry::Error::from(ModelSource::read(&dir, false).unwrap_err());
    assert!(error.is_verdict());
    let message = error.to_string();
    assert!(
        message.contains("pytorch_model.pt")
            && message.contains("posix.system")
            && message.contains("safetensors"),
        "{message}"
    );
    let allowed = ModelSource::read(&dir, true).unwrap();
    let file = allowed
        .files
        .iter()
        .find(|file| file.path == "pytorch_model.pt")
        .unwrap();
    assert_eq!(
        file.pickle.as_ref().unwrap().unsafe_imports,
        vec!["posix.system".to_owned()]
    );

    // By content, whatever the name.
    for name in [
        "checkpoint.pth.tar",
        "checkpoint.tar",
        "checkpoint.tar.gz",
        "weights.state",
    ] {
        let dir = model_dir(&work.path().join(name.replace('.', "-")), &[1.0]);
        std::fs::copy(pickles.join(name), dir.join(name)).unwrap();
        // A config that starts like a protocol 0 pickle is not one.
        std::fs::write(dir.join("config.yaml"), "checkpoint: every 500 steps\n").unwrap();
        let error = gantry_registry::Error::from(ModelSource::read(&dir, false).unwrap_err());
        assert!(error.is_verdict(), "{name}: {error}");
        assert!(
            error.to_string().contains(name) && error.to_string().contains("posix.system"),
            "{error}"
        );
        let allowed = ModelSource::read(&dir, true).unwrap();
        let config = allowed
            .files
            .iter()
            .find(|file| file.path == "config.yaml")
            .unwrap();
        assert!(
            config.pickle.is_none(),
            "{name}: the config is not a pickle"
        );
    }
}

#[test]
fn the_lineage_chain_links_data_run_model_and_gate() {
    let work = tempfile::tempdir().unwrap();
    let dir = model_dir(work.path(), &[4.0, 5.0]);
    let dataset = Digest::of_bytes(b"dataset");
    let lock = work.path().join("data.lock");
    std::fs::write(
        &lock,
        format!(r#"{{"version":1,"dataset_digest":"{dataset}","records":3}}"#),
    )
    .unwrap();
    let lock_digest = Digest::of_bytes(&std::fs::read(&lock).unwrap());
    let weights_digest = Digest::of_bytes(&std::fs::read(dir.join("model.safetensors")).unwrap());
    let run = work.path().join("run.json");
    let gate = work.path().join("gate.json");
    std::fs::write(&gate, r#"{"schema_version":1,"verdict":"pass"}"#).unwrap();
    let write_run = |dataset: Digest, weights: Digest| {
        std::fs::write(
            &run,
            serde_json::json!({
                "run_id": "run-7",
                "data": {"dataset_digest": dataset, "lock_digest": lock_digest},
                "outputs": [{"path": "model.safetensors", "sha256": weights}],
            })
            .to_string(),
        )
        .unwrap();
    };
    let sources = LineageSources {
        run_record: Some(run.clone()),
        data_lock: Some(lock.clone()),
        gate_report: Some(gate.clone()),
        eval_results: None,
        eval_set: None,
        data_summary: None,
        git: None,
    };

    // A data summary of other data does not link to this lock; one that is
    // not validate-data's summary is refused by name.
    let summary = work.path().join("summary.json");
    std::fs::write(
        &summary,
        serde_json::json!({"kind": "gantry-data-summary", "dataset_digest": Digest::of_bytes(b"other data")}).to_string(),
    )
    .unwrap();
    let with_summary = LineageSources {
        data_summary: Some(summary.clone()),
        ..sources.clone()
    };
    write_run(dataset, weights_digest);
    let error = with_summary.read().unwrap_err().to_string();
    assert!(
        error.contains("the data summary") && error.contains("same validate-data run"),
        "{error}"
    );
    std::fs::write(
        &summary,
        r#"{"kind": "gate", "dataset_digest": "sha256:00"}"#,
    )
    .unwrap();
    let error = with_summary.read().unwrap_err().to_string();
    assert!(error.contains("summary.json"), "{error}");

    // A run that trained on other data does not link to this lock.
    write_run(Digest::of_bytes(b"other data"), weights_digest);
    let error = sources.read().unwrap_err().to_string();
    assert!(
        error.contains("lineage does not link up") && error.contains("data.lock"),
        "{error}"
    );

    write_run(dataset, weights_digest);
    let lineage = sources.read().unwrap();
    assert_eq!(
        lineage.lineage.data.as_ref().unwrap().dataset_digest,
        dataset
    );
    assert_eq!(
        lineage.lineage.gate.as_ref().unwrap().verdict,
        Verdict::Pass
    );
    assert_eq!(
        lineage.lineage.run.as_ref().unwrap().run_id.as_deref(),
        Some("run-7")
    );
    let registry = FileRegistry::new(work.path().join("registry"));
    register(&registry, &dir, &lineage, &[], VersionRequest::Auto, &[]).unwrap();
    let resolved = registry.resolve(&reference("tiny")).unwrap();
    let report = gantry_registry::verify(&registry, &resolved).unwrap();
    assert!(report.ok(), "{:?}", report.problems());
    assert_eq!(report.documents.len(), 3);
    let outcomes: Vec<(&str, &str)> = report
        .chain
        .iter()
        .map(|check| (check.check.as_str(), check.outcome))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("data.lock → run.json", "ok"),
            ("run.json → model files", "ok"),
            ("gate.json", "ok")
        ]
    );

    // A run whose recorded output is not the registered file is caught by verify.
    write_run(dataset, Digest::of_bytes(b"other weights"));
    let lineage = sources.read().unwrap();
    register(&registry, &dir, &lineage, &[], VersionRequest::Auto, &[]).unwrap();
    let resolved = registry.resolve(&reference("tiny@0.1.1")).unwrap();
    let report = gantry_registry::verify(&registry, &resolved).unwrap();
    assert!(!report.ok());
    assert!(
        report.problems()[0].contains("the run wrote"),
        "{:?}",
        report.problems()
    );
}

/// What fsck found, in words, for assertions.
fn problems(report: &gantry_registry::FsckReport) -> Vec<String> {
    report
        .damage
        .iter()
        .map(|damage| format!("{}: {}", damage.place, damage.problem))
        .collect()
}

#[test]
fn damage_affects_only_itself_and_fsck_repairs_without_losing_anything() {
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("registry");
    let registry = FileRegistry::new(&root);
    let lineage = LineageInput::default();
    let dir = model_dir(&work.path().join("a"), &[1.0, 2.0]);
    let first = register(
        &registry,
        &dir,
        &lineage,
        &[],
        VersionRequest::Auto,
        &["production"],
    )
    .unwrap();
    let second = register(
        &registry,
        &dir,
        &lineage,
        &[("run", "2")],
        VersionRequest::Auto,
        &[],
    )
    .unwrap();
    let other_dir = model_dir(&work.path().join("b"), &[3.0]);
    let other = common::register_as_named(&registry, "other", &other_dir, &lineage).unwrap();
    assert_eq!(
        registry.fsck(false).unwrap().damage.len(),
        0,
        "a fresh registry is clean"
    );

    // A truncated manifest hides its own version only.
    let truncated = root.join("models/tiny/versions/0.1.1.json");
    let text = std::fs::read_to_string(&truncated).unwrap();
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    assert_eq!(registry.models().unwrap(), ["other", "tiny"]);
    assert_eq!(registry.versions("tiny").unwrap().len(), 1);
    let error = registry
        .resolve(&reference("tiny@0.1.1"))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("is damaged") && error.contains("fsck"),
        "{error}"
    );
    assert!(registry.resolve(&reference("tiny@production")).is_ok());
    assert_eq!(registry.damage("tiny").unwrap().len(), 1);
    // …and keeps its number.
    let third = register(
        &registry,
        &dir,
        &lineage,
        &[("run", "3")],
        VersionRequest::Auto,
        &[],
    )
    .unwrap();
    assert_eq!(third.manifest.version, "0.1.2");

    // A bad line in the middle of the event log blocks nothing.
    let events = root.join("models/tiny/events.jsonl");
    let mut lines: Vec<String> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.insert(1, "{not an event".to_owned());
    // A forged event: production to 0.1.2's version name with 0.1.0's digest.
    lines.push(
        serde_json::json!({"time": "2026-01-01T00:00:00Z", "actor": "mallory", "action": "alias-moved", "version": "0.1.2", "digest": first.digest, "alias": "production"})
            .to_string(),
    );
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    // list and pull agree: the forged event moves nothing.
    let aliases = registry.aliases("tiny").unwrap();
    assert_eq!(aliases["production"].version, "0.1.0");
    let pulled = registry.resolve(&reference("tiny@production")).unwrap();
    assert_eq!(pulled.manifest.version, "0.1.0");
    let moved = registry
        .move_alias(
            "staging",
            &registry.resolve(&reference("tiny@0.1.2")).unwrap(),
            &Expectation::Absent,
            "ci",
        )
        .unwrap();
    assert_eq!(moved.action, "alias-moved");

    // A tampered blob is healed by registering the same files again.
    let weights = other.manifest.file("model.safetensors").unwrap().digest;
    let blob = root.join("blobs/sha256").join(weights.hex());
    let mut permissions = std::fs::metadata(&blob).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    permissions.set_readonly(false);
    std::fs::set_permissions(&blob, permissions).unwrap();
    std::fs::write(&blob, b"tampered").unwrap();
    let report = registry.fsck(false).unwrap();
    let found = problems(&report);
    assert!(!report.ok());
    for expected in [
        "0.1.1.json: tiny 0.1.1: not a model manifest",
        "events.jsonl:2: not an event",
        "moves production to 0.1.2 with digest",
        &format!("{}: its bytes do not hash to {weights}", blob.display()),
        "other@0.1.0: model.safetensors: blob",
    ] {
        assert!(
            found.iter().any(|problem| problem.contains(expected)),
            "{expected} not in {found:#?}"
        );
    }
    // A temporary blob of a registration that was killed.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let leftover = root.join(format!("tmp/blob-{host}-999999-abc"));
    std::fs::write(&leftover, b"half a blob").unwrap();

    // Repair: everything set aside, nothing deleted but the leftover.
    let repaired = registry.fsck(true).unwrap();
    let left: Vec<&gantry_registry::Damage> = repaired
        .damage
        .iter()
        .filter(|damage| !damage.repaired)
        .collect();
    assert_eq!(left.len(), 1, "{:#?}", problems(&repaired));
    assert!(left[0].problem.contains("is missing or damaged") && left[0].repair.is_none());
    assert!(!leftover.exists());
    assert!(!truncated.exists());
    let set_aside: Vec<_> = std::fs::read_dir(root.join("models/tiny/damaged"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(set_aside.len(), 1, "the damaged manifest is kept");
    let quarantined: Vec<_> = std::fs::read_dir(root.join("quarantine/blobs"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(quarantined.len(), 1, "the tampered blob is kept");
    let side = std::fs::read_to_string(root.join("models/tiny/events.jsonl.damaged")).unwrap();
    assert!(
        side.contains("{not an event") && side.contains("mallory"),
        "{side}"
    );
    // The missing blob cannot be repaired by fsck: registering the same
    // files again restores it.
    let after = registry.fsck(false).unwrap();
    assert_eq!(problems(&after).len(), 1, "{:#?}", problems(&after));
    assert_eq!(after.set_aside.len(), 1, "{:?}", after.set_aside);
    assert!(
        after.set_aside[0].starts_with("tiny@0.1.1"),
        "{:?}",
        after.set_aside
    );
    common::register_as_named(&registry, "other", &other_dir, &lineage).unwrap();
    let clean = registry.fsck(false).unwrap();
    assert!(clean.damage.is_empty(), "{:#?}", problems(&clean));
    assert_eq!(
        registry.aliases("tiny").unwrap()["production"].version,
        "0.1.0"
    );
    assert_eq!(second.manifest.version, "0.1.1");
}

#[test]
fn a_killed_pull_is_cleaned_up_by_the_next_and_pulled_files_are_readable() {
    let work = tempfile::tempdir().unwrap();
    let registry = FileRegistry::new(work.path().join("registry"));
    let dir = model_dir(work.path(), &[1.0, 2.0]);
    register(
        &registry,
        &dir,
        &LineageInput::default(),
        &[],
        VersionRequest::Auto,
        &[],
    )
    .unwrap();
    let resolved = registry.resolve(&reference("tiny")).unwrap();
    let target = work.path().join("pulled");
    std::fs::create_dir_all(&target).unwrap();
    let leftover = target.join(".gantry-partial-killed");
    std::fs::write(&leftover, b"half").unwrap();
    gantry_registry::pull(&registry, &resolved, &target).unwrap();
    assert!(
        !leftover.exists(),
        "a killed pull's partial file is removed"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(target.join("model.safetensors"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o644);
}
