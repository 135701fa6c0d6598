/*!
register-model: content-addressed, verified model versions with lineage.

A model directory becomes a [`ModelManifest`]: every file hashed (in
parallel, in one read that also stores it), safetensors headers summarized
without reading the weights, pickle checkpoints scanned for imports that run
code, and the lineage documents (`run.json`, `data.lock`, `gate.json`,
evaluation results) digested and cross-checked. The manifest's digest is the
model's identity; registering the same content twice gives one version.

Backends implement [`Registry`]: [`FileRegistry`] (the embedded default,
`file:PATH`) [`OciRegistry`] (`oci://HOST/REPO`) and [`MlflowRegistry`]
(`mlflow+http(s)://HOST`). The CLI wires a URI to a backend; other crates see only the
trait and [`gantry_core`]'s manifest types. [`verify`], [`pull`] and
[`diff`] work on any backend.
*/

mod error;
mod file;
mod fsck;
mod http;
mod lineage;
mod mlflow;
mod names;
mod oci;
mod ops;

use std::collections::BTreeMap;
use std::io::Read;

use gantry_core::{Digest, ModelManifest};
use serde::{Deserialize, Serialize};

pub use crate::error::{Error, Result};
pub use crate::file::FileRegistry;
pub use crate::fsck::{Damage, FsckReport, check_registry};
pub use crate::lineage::{ChainCheck, LineageInput, LineageSources, chain_checks};
pub use crate::mlflow::MlflowRegistry;
pub use crate::names::{Reference, Selector, parse_version, validate_alias, validate_name};
pub use crate::oci::{Credentials, OciOptions, OciRegistry};
pub use crate::ops::{
    Diff, FileChange, FileCheck, PULLED_MANIFEST, PullReport, VerifyReport, build_manifest, diff,
    pull, verify,
};
pub use gantry_mlflow::{MlflowApi, MlflowAuth, MlflowOptions};
pub use gantry_model::{ModelSource, SourceFile, hash_file, media_type, parallel_largest_first};

/// Which version to register as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionRequest {
    /// The next patch version after the highest one (`0.1.0` first).
    Auto,
    /// Exactly this one.
    Exact(semver::Version),
}

/// Everything a registration needs.
#[derive(Debug)]
pub struct RegisterRequest<'a> {
    /// The model's name.
    pub name: &'a str,
    /// The version to take.
    pub version: VersionRequest,
    /// The model directory, read and inspected.
    pub source: &'a ModelSource,
    /// Lineage and its documents.
    pub lineage: &'a LineageInput,
    /// Free metadata.
    pub metadata: BTreeMap<String, String>,
    /// Aliases to point at the version.
    pub aliases: Vec<String>,
    /// Who registers (the CI actor or the local user), for the event log.
    pub actor: String,
}

/// The outcome of a registration.
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    /// The version's manifest (the existing one when nothing was new).
    pub manifest: ModelManifest,
    /// The manifest's digest: the model's identity.
    pub digest: Digest,
    /// False when the same content was already registered.
    pub created: bool,
    /// Bytes stored (zero for blobs the registry had).
    pub bytes_stored: u64,
    /// Aliases that moved.
    pub alias_moves: Vec<Event>,
}

/// A version and its identity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resolved {
    /// The manifest.
    pub manifest: ModelManifest,
    /// Its digest.
    pub digest: Digest,
}

impl Resolved {
    /// Pairs a manifest with its computed digest.
    pub fn new(manifest: ModelManifest) -> Result<Resolved> {
        let digest = manifest.digest()?;
        Ok(Resolved { manifest, digest })
    }
}

/// Where an alias points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasTarget {
    /// The version.
    pub version: String,
    /// The manifest digest.
    pub digest: Digest,
}

/// What a compare-and-swap of an alias expects to find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// Move it whatever it points at now.
    Any,
    /// The alias must not exist yet.
    Absent,
    /// The alias must point at this digest.
    Digest(Digest),
}

/// One entry of a model's event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When, RFC 3339 UTC.
    pub time: String,
    /// Who.
    pub actor: String,
    /// `registered` or `alias-moved`.
    pub action: String,
    /// The version registered, or the alias's new target.
    pub version: String,
    /// Its manifest digest.
    pub digest: Digest,
    /// The alias moved (for `alias-moved`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
    /// Where the alias pointed before (for `alias-moved`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<AliasTarget>,
}

/// A model registry: the file registry, an OCI registry or MLflow.
pub trait Registry: Send + Sync {
    /// The registry's URI, as given (credentials never included).
    fn uri(&self) -> String;

    /// Registers a model: stores its files and lineage documents, commits
    /// the manifest under a version (the existing one when the digest is
    /// already registered), and points the requested aliases at it.
    fn register(&self, request: &RegisterRequest<'_>) -> Result<Registration>;

    /// Names of the registered models, sorted.
    fn models(&self) -> Result<Vec<String>>;

    /// Every version of `name`, oldest (lowest) first.
    fn versions(&self, name: &str) -> Result<Vec<Resolved>>;

    /// The aliases of `name`.
    fn aliases(&self, name: &str) -> Result<BTreeMap<String, AliasTarget>>;

    /// Points `alias` of the model at `target` if it currently matches
    /// `expect`, and records the move. Fails with [`Error::AliasConflict`]
    /// when it does not.
    fn move_alias(
        &self,
        alias: &str,
        target: &Resolved,
        expect: &Expectation,
        actor: &str,
    ) -> Result<Event>;

    /// The event log of `name`, oldest first.
    fn events(&self, name: &str) -> Result<Vec<Event>>;

    /// Opens a stored blob of `name` (a model file or lineage document).
    fn open_blob(&self, name: &str, digest: &Digest) -> Result<Box<dyn Read + Send>>;

    /// Damage found while reading `name`'s records (a manifest that does
    /// not parse, an event log line passed over), in words; nothing for
    /// backends whose server keeps the records.
    fn damage(&self, name: &str) -> Result<Vec<String>> {
        let _ = name;
        Ok(Vec::new())
    }

    /// Resolves a reference to one version.
    fn resolve(&self, reference: &Reference) -> Result<Resolved> {
        resolve_in(self, reference)
    }
}

/// [`Registry::resolve`]'s work on any backend's versions and aliases.
pub(crate) fn resolve_in<R: Registry + ?Sized>(
    registry: &R,
    reference: &Reference,
) -> Result<Resolved> {
    let versions = registry.versions(&reference.name)?;
    if versions.is_empty() {
        return Err(Error::NotFound(format!(
            "no model {:?} in {}",
            reference.name,
            registry.uri()
        )));
    }
    let found = match &reference.selector {
        Selector::Latest => versions.last().cloned(),
        Selector::Version(version) => {
            let wanted = version.to_string();
            versions
                .iter()
                .find(|resolved| resolved.manifest.version == wanted)
                .cloned()
        }
        Selector::Digest(digest) => versions
            .iter()
            .find(|resolved| resolved.digest == *digest)
            .cloned(),
        Selector::Alias(alias) => {
            let aliases = registry.aliases(&reference.name)?;
            let Some(target) = aliases.get(alias) else {
                return Err(Error::NotFound(format!(
                    "{} has no alias {alias:?} (aliases: {})",
                    reference.name,
                    if aliases.is_empty() {
                        "none".to_owned()
                    } else {
                        aliases.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                )));
            };
            versions
                .iter()
                .find(|resolved| resolved.digest == target.digest)
                .cloned()
        }
    };
    found.ok_or_else(|| {
        Error::NotFound(format!(
            "{reference} is not registered in {} (versions: {})",
            registry.uri(),
            versions
                .iter()
                .map(|resolved| resolved.manifest.version.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// Checks a compare-and-swap: `current` is where `alias` of `name` points
/// now. `Ok(true)` when the move is allowed and would change something,
/// `Ok(false)` when the alias already points at `target`.
pub(crate) fn check_expectation(
    name: &str,
    alias: &str,
    current: Option<&AliasTarget>,
    expect: &Expectation,
    target: &Resolved,
) -> Result<bool> {
    let matches = match expect {
        Expectation::Any => true,
        Expectation::Absent => current.is_none(),
        Expectation::Digest(digest) => current.is_some_and(|current| current.digest == *digest),
    };
    if !matches {
        return Err(Error::AliasConflict {
            name: name.to_owned(),
            alias: alias.to_owned(),
            expected: match expect {
                Expectation::Digest(digest) => digest.to_string(),
                _ => "unset".to_owned(),
            },
            actual: current.map_or("unset".to_owned(), |current| {
                format!("{} ({})", current.digest, current.version)
            }),
        });
    }
    Ok(current.is_none_or(|current| current.digest != target.digest))
}

/// The event of `alias` moving from `previous` to `target`.
pub(crate) fn alias_event(
    alias: &str,
    target: &Resolved,
    actor: &str,
    previous: Option<AliasTarget>,
) -> Event {
    Event {
        time: now(),
        actor: actor.to_owned(),
        action: "alias-moved".to_owned(),
        version: target.manifest.version.clone(),
        digest: target.digest,
        alias: Some(alias.to_owned()),
        previous,
    }
}

/// What `move_alias` answers when the alias already points at `target`.
pub(crate) fn unchanged_event(alias: &str, target: &Resolved, actor: &str) -> Event {
    let here = AliasTarget {
        version: target.manifest.version.clone(),
        digest: target.digest,
    };
    Event {
        action: "alias-unchanged".to_owned(),
        ..alias_event(alias, target, actor, Some(here))
    }
}

/// Points each alias of a registration at its version, with `mover`
/// (a backend's move without compare-and-swap); returns the moves made.
pub(crate) fn move_aliases(
    aliases: &[String],
    mut mover: impl FnMut(&str) -> Result<Option<Event>>,
) -> Result<Vec<Event>> {
    let mut moves = Vec::new();
    for alias in aliases {
        if let Some(event) = mover(alias)? {
            moves.push(event);
        }
    }
    Ok(moves)
}

/// The version after the highest of `existing`: its patch bumped, or `0.1.0`.
pub fn next_version<'a>(existing: impl IntoIterator<Item = &'a str>) -> semver::Version {
    existing
        .into_iter()
        .filter_map(|version| semver::Version::parse(version).ok())
        .max()
        .map(|highest| semver::Version::new(highest.major, highest.minor, highest.patch + 1))
        .unwrap_or_else(|| semver::Version::new(0, 1, 0))
}

/// The current time, RFC 3339 UTC with seconds.
pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
