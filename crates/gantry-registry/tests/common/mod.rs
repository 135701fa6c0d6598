//! What every backend's tests share: registering the test model, and the
//! round trip every registry must pass the same way.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use gantry_registry::{
    Error, Expectation, LineageInput, ModelSource, Reference, RegisterRequest, Registration,
    Registry, VersionRequest,
};

/// Registers `dir` as model `tiny` under `version`.
pub(crate) fn register_as(
    registry: &dyn Registry,
    dir: &Path,
    lineage: &LineageInput,
    metadata: &[(&str, &str)],
    version: VersionRequest,
    aliases: &[&str],
) -> Result<Registration, Error> {
    let source = ModelSource::read(dir, false)?;
    registry.register(&RegisterRequest {
        name: "tiny",
        version,
        source: &source,
        lineage,
        metadata: metadata
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        aliases: aliases.iter().map(|alias| (*alias).to_owned()).collect(),
        actor: "tester".to_owned(),
    })
}

/// Registers `dir` as model `name`, the next version.
pub(crate) fn register_as_named(
    registry: &dyn Registry,
    name: &str,
    dir: &Path,
    lineage: &LineageInput,
) -> Result<Registration, Error> {
    let source = ModelSource::read(dir, false)?;
    registry.register(&RegisterRequest {
        name,
        version: VersionRequest::Auto,
        source: &source,
        lineage,
        metadata: BTreeMap::new(),
        aliases: Vec::new(),
        actor: "tester".to_owned(),
    })
}

/// Registers `dir` as model `tiny`, the next version.
pub(crate) fn register(
    registry: &dyn Registry,
    dir: &Path,
    lineage: &LineageInput,
    metadata: &[(&str, &str)],
    aliases: &[&str],
) -> Result<Registration, Error> {
    register_as(
        registry,
        dir,
        lineage,
        metadata,
        VersionRequest::Auto,
        aliases,
    )
}

/// A reference that must parse.
pub(crate) fn reference(text: &str) -> Reference {
    text.parse().unwrap()
}

/// The round trip every backend passes: the same content registers once,
/// other metadata is the next version, an alias resolves, `verify` and
/// `pull` agree with the files on disk, an alias moves only by
/// compare-and-swap, and the moves are events. Returns the first and second
/// registrations.
pub(crate) fn round_trip(
    registry: &dyn Registry,
    dir: &Path,
    lineage: &LineageInput,
    work: &Path,
) -> (Registration, Registration) {
    let first = register(registry, dir, lineage, &[], &["candidate"]).unwrap();
    assert!(first.created);
    assert_eq!(first.manifest.version, "0.1.0");
    let again = register(registry, dir, lineage, &[], &[]).unwrap();
    assert!(!again.created);
    assert_eq!(again.digest, first.digest);
    assert_eq!(again.bytes_stored, 0);
    let second = register(registry, dir, lineage, &[("run", "2")], &[]).unwrap();
    assert_eq!(second.manifest.version, "0.1.1");
    let versions: Vec<String> = registry
        .versions("tiny")
        .unwrap()
        .into_iter()
        .map(|resolved| resolved.manifest.version)
        .collect();
    assert_eq!(versions, ["0.1.0", "0.1.1"]);
    assert_eq!(registry.models().unwrap(), vec!["tiny".to_owned()]);

    let resolved = registry.resolve(&reference("tiny@candidate")).unwrap();
    assert_eq!(resolved.digest, first.digest);
    let report = gantry_registry::verify(registry, &resolved).unwrap();
    assert!(report.ok(), "{:?}", report.problems());
    assert_eq!(report.documents.len(), lineage.documents.len());
    let pulled = work.join("pulled");
    gantry_registry::pull(registry, &resolved, &pulled).unwrap();
    for file in &resolved.manifest.files {
        assert_eq!(
            std::fs::read(pulled.join(&file.path)).unwrap(),
            std::fs::read(dir.join(&file.path)).unwrap(),
            "{}",
            file.path
        );
    }

    let v2 = registry.resolve(&reference("tiny@0.1.1")).unwrap();
    let conflict = registry
        .move_alias("candidate", &v2, &Expectation::Absent, "bob")
        .unwrap_err();
    assert!(
        matches!(conflict, Error::AliasConflict { .. }),
        "{conflict}"
    );
    assert!(conflict.is_verdict());
    registry
        .move_alias("candidate", &v2, &Expectation::Digest(first.digest), "bob")
        .unwrap();
    assert_eq!(
        registry.aliases("tiny").unwrap()["candidate"].version,
        "0.1.1"
    );
    let events = registry.events("tiny").unwrap();
    let moves: Vec<_> = events
        .iter()
        .filter(|event| event.action == "alias-moved")
        .collect();
    assert_eq!(moves.len(), 2);
    assert_eq!(moves[1].actor, "bob");
    assert_eq!(moves[1].previous.as_ref().unwrap().version, "0.1.0");
    let registered = events.iter().filter(|event| event.action == "registered");
    assert_eq!(registered.count(), 2);
    (first, second)
}
