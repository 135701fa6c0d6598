//! What works on any backend: building a manifest, verifying a version,
//! pulling it, and comparing two versions.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use gantry_core::{Digest, Lineage, MANIFEST_SCHEMA_VERSION, ManifestFile, ModelManifest};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::lineage::{ChainCheck, chain_checks, check_document};
use crate::{Registry, Resolved};
use gantry_model::{SourceFile, hash_stream, parallel_largest_first};

/// The name a pulled model's manifest is written under (hidden, so that
/// registering a pulled directory again gives the same identity).
pub const PULLED_MANIFEST: &str = ".gantry-manifest.json";

/// Builds the manifest of `files` with their `digests` (same order). The
/// version and creation time are left empty for the registry to assign.
pub fn build_manifest(
    name: &str,
    files: &[SourceFile],
    digests: &[Digest],
    lineage: &Lineage,
    metadata: &BTreeMap<String, String>,
) -> ModelManifest {
    let mut entries: Vec<ManifestFile> = files
        .iter()
        .zip(digests)
        .map(|(file, digest)| ManifestFile {
            path: file.path.clone(),
            size: file.size,
            digest: *digest,
            media_type: file.media_type.to_owned(),
            safetensors: file.safetensors.clone(),
            pickle: file.pickle.clone(),
            gguf: file.gguf.clone(),
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    ModelManifest {
        schema_version: MANIFEST_SCHEMA_VERSION,
        name: name.to_owned(),
        version: String::new(),
        created: String::new(),
        files: entries,
        lineage: lineage.clone(),
        metadata: metadata.clone(),
    }
}

/// One file's check.
#[derive(Debug, Clone, Serialize)]
pub struct FileCheck {
    /// The file (or lineage document).
    pub path: String,
    /// The digest the manifest records.
    pub expected: Digest,
    /// The digest of the stored bytes (absent when they could not be read).
    pub actual: Option<Digest>,
    /// Bytes found.
    pub size: u64,
    /// Why it failed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl FileCheck {
    /// Whether the stored bytes are what the manifest records.
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// What `gantry registry verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// `name@version`.
    pub model: String,
    /// The manifest's digest, recomputed.
    pub digest: Digest,
    /// The digest recorded when the version was registered, if the registry
    /// keeps one; a difference means the manifest was edited.
    pub registered_digest: Option<Digest>,
    /// Every file.
    pub files: Vec<FileCheck>,
    /// Every lineage document.
    pub documents: Vec<FileCheck>,
    /// Cross-checks of the lineage chain.
    pub chain: Vec<ChainCheck>,
}

impl VerifyReport {
    /// Whether everything checked out.
    pub fn ok(&self) -> bool {
        self.registered_digest
            .is_none_or(|digest| digest == self.digest)
            && self.files.iter().all(FileCheck::ok)
            && self.documents.iter().all(FileCheck::ok)
            && self.chain.iter().all(|check| check.outcome != "mismatch")
    }

    /// One line per problem.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(registered) = self.registered_digest
            && registered != self.digest
        {
            problems.push(format!(
                "the manifest of {} was edited after registration: registered as {registered}, now {}",
                self.model, self.digest
            ));
        }
        for check in self.files.iter().chain(&self.documents) {
            if let Some(problem) = &check.problem {
                problems.push(format!("{}: {problem}", check.path));
            }
        }
        for check in &self.chain {
            if check.outcome == "mismatch" {
                problems.push(format!("{}: {}", check.check, check.detail));
            }
        }
        problems
    }
}

fn check_of(
    path: &str,
    expected: Digest,
    expected_size: u64,
    found: Result<(Digest, u64)>,
) -> FileCheck {
    match found {
        Ok((actual, size)) => FileCheck {
            path: path.to_owned(),
            expected,
            actual: Some(actual),
            size,
            problem: if actual != expected {
                Some(format!(
                    "tampered: the manifest records {expected}, the stored bytes are {actual}"
                ))
            } else if size != expected_size {
                Some(format!(
                    "the manifest records {expected_size} bytes, {size} are stored"
                ))
            } else {
                None
            },
        },
        Err(error) => FileCheck {
            path: path.to_owned(),
            expected,
            actual: None,
            size: 0,
            problem: Some(error.to_string()),
        },
    }
}

/// The parent a derived model names is registered here, with that digest.
fn parent_check(registry: &dyn Registry, derived: &gantry_core::DerivedFrom) -> ChainCheck {
    let check = "derived from".to_owned();
    let reference = crate::Reference {
        name: derived.name.clone(),
        selector: crate::Selector::Digest(derived.parent),
    };
    match registry.resolve(&reference) {
        Ok(parent) if parent.digest == derived.parent => ChainCheck {
            check,
            outcome: "ok",
            detail: format!(
                "{} from {}@{} ({})",
                derived.relation, derived.name, derived.version, derived.parent
            ),
        },
        Ok(parent) => ChainCheck {
            check,
            outcome: "mismatch",
            detail: format!(
                "the parent {}@{} is {} here, not {}",
                derived.name, derived.version, parent.digest, derived.parent
            ),
        },
        Err(error) => ChainCheck {
            check,
            outcome: "mismatch",
            detail: format!(
                "the parent {}@{} ({}) is not in this registry: {error}",
                derived.name, derived.version, derived.parent
            ),
        },
    }
}

/// Re-hashes every stored file and lineage document of `resolved` and
/// checks the lineage chain.
pub fn verify(registry: &dyn Registry, resolved: &Resolved) -> Result<VerifyReport> {
    let manifest = &resolved.manifest;
    let registered_digest = registered_digest(registry, resolved)?;
    let files = parallel_largest_first(
        &manifest.files,
        |file| file.size,
        |file| {
            let found = registry
                .open_blob(&manifest.name, &file.digest)
                .and_then(|reader| Ok(hash_stream(reader, None, &file.path)?));
            Ok::<_, Error>(check_of(&file.path, file.digest, file.size, found))
        },
    )?;
    let mut documents = Vec::new();
    let mut run_json = None;
    for (role, link) in manifest.lineage.documents() {
        let label = format!("{role} {}", link.file_name);
        let mut bytes = Vec::new();
        let found = registry
            .open_blob(&manifest.name, &link.digest)
            .and_then(|mut reader| {
                reader
                    .read_to_end(&mut bytes)
                    .map_err(Error::io("cannot read", label.as_str()))
            })
            .and_then(|_| {
                check_document(role, link, &bytes)
                    .map(|()| (Digest::of_bytes(&bytes), bytes.len() as u64))
            });
        let found = match found {
            Err(Error::Tampered { actual, .. }) => Ok((actual, bytes.len() as u64)),
            other => other,
        };
        let check = check_of(&label, link.digest, link.size, found);
        if role == "run record" && check.ok() {
            run_json = Some(bytes);
        }
        documents.push(check);
    }
    let mut chain = chain_checks(&manifest.lineage, run_json.as_deref(), &manifest.files);
    if let Some(derived) = &manifest.lineage.derived_from {
        chain.push(parent_check(registry, derived));
    }
    Ok(VerifyReport {
        model: format!("{}@{}", manifest.name, manifest.version),
        digest: resolved.digest,
        registered_digest,
        files,
        documents,
        chain,
    })
}

/// The digest the version's `registered` event recorded, if the registry
/// keeps events: the manifest's identity when it was registered.
fn registered_digest(registry: &dyn Registry, resolved: &Resolved) -> Result<Option<Digest>> {
    let manifest = &resolved.manifest;
    Ok(registry
        .events(&manifest.name)?
        .into_iter()
        .find(|event| event.action == "registered" && event.version == manifest.version)
        .map(|event| event.digest))
}

/// Removes `.gantry-partial-*` files under `directory`: what a killed pull
/// left (the caller holds the directory's pull lock).
fn remove_partials(directory: &Path) -> Result<()> {
    for entry in walkdir::WalkDir::new(directory).into_iter().flatten() {
        if entry.file_type().is_file()
            && entry
                .file_name()
                .to_string_lossy()
                .starts_with(".gantry-partial-")
        {
            std::fs::remove_file(entry.path()).map_err(Error::io("cannot remove", entry.path()))?;
        }
    }
    Ok(())
}

/// What `gantry registry pull` did.
#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    /// Where the files are.
    pub directory: PathBuf,
    /// Files written (verified while streaming).
    pub written: usize,
    /// Files already present with the right digest.
    pub already_present: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// A manifest path as a safe relative path: no `..`, no root, no empty parts.
fn safe_relative(path: &str) -> Result<PathBuf> {
    let candidate = Path::new(path);
    let safe = !path.is_empty()
        && !path.contains('\\')
        && candidate
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
    if safe {
        Ok(candidate.to_path_buf())
    } else {
        Err(Error::Input(format!(
            "the manifest lists a file at {path:?}, which would land outside the target directory; refusing to pull"
        )))
    }
}

/// Downloads every file of `resolved` into `directory`, hashing while
/// streaming: a file lands under its name only once its digest matched,
/// so a tampered or truncated blob never appears as a model file. Files
/// already present with the right digest are kept. The manifest is written
/// as `.gantry-manifest.json`.
pub fn pull(registry: &dyn Registry, resolved: &Resolved, directory: &Path) -> Result<PullReport> {
    let manifest = &resolved.manifest;
    // Every file is checked against the manifest as it streams; the
    // manifest itself is checked against what was registered, as verify
    // does, or an edited manifest could hand out another version's files.
    if let Some(registered) = registered_digest(registry, resolved)?
        && registered != resolved.digest
    {
        return Err(Error::Tampered {
            what: format!(
                "the manifest of {}@{} in {} (edited after registration)",
                manifest.name,
                manifest.version,
                registry.uri()
            ),
            expected: registered,
            actual: resolved.digest,
        });
    }
    let targets: Vec<PathBuf> = manifest
        .files
        .iter()
        .map(|file| safe_relative(&file.path).map(|relative| directory.join(relative)))
        .collect::<Result<_>>()?;
    // One pull into a directory at a time; holding the lock, any partial
    // file there is a killed pull's and goes.
    std::fs::create_dir_all(directory).map_err(Error::io("cannot create", directory))?;
    let lock_path = directory.join(".gantry-pull.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(Error::io("cannot open", &lock_path))?;
    lock.lock().map_err(Error::io("cannot lock", &lock_path))?;
    remove_partials(directory)?;
    let jobs: Vec<(&ManifestFile, &PathBuf)> = manifest.files.iter().zip(&targets).collect();
    let outcomes = parallel_largest_first(
        &jobs,
        |(file, _)| file.size,
        |(file, target)| -> Result<bool> {
            if let Ok(existing) = std::fs::File::open(target)
                && let Ok((digest, _)) = hash_stream(existing, None, &file.path)
                && digest == file.digest
            {
                return Ok(false);
            }
            let parent = target.parent().unwrap_or(directory);
            std::fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
            let mut temporary = tempfile::Builder::new()
                .prefix(".gantry-partial-")
                .tempfile_in(parent)
                .map_err(Error::io("cannot create a temporary file in", parent))?;
            let reader = registry.open_blob(&manifest.name, &file.digest)?;
            let (digest, size) = hash_stream(reader, Some(temporary.as_file_mut()), &file.path)?;
            if digest != file.digest || size != file.size {
                return Err(Error::Tampered {
                    what: format!("{} from {}", file.path, registry.uri()),
                    expected: file.digest,
                    actual: digest,
                });
            }
            temporary
                .as_file()
                .sync_all()
                .map_err(Error::io("cannot sync", temporary.path()))?;
            // Temporary files are private (0600); a pulled model is not.
            std::fs::set_permissions(
                temporary.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o644),
            )
            .map_err(Error::io("cannot set the mode of", temporary.path()))?;
            temporary
                .persist(target)
                .map_err(|error| Error::io("cannot write", target.as_path())(error.error))?;
            Ok(true)
        },
    )?;
    let mut text = serde_json::to_vec_pretty(manifest).map_err(gantry_core::Error::from)?;
    text.push(b'\n');
    let manifest_path = directory.join(PULLED_MANIFEST);
    std::fs::write(&manifest_path, text).map_err(Error::io("cannot write", &manifest_path))?;
    let written = outcomes.iter().filter(|written| **written).count();
    let bytes = manifest
        .files
        .iter()
        .zip(&outcomes)
        .filter(|(_, written)| **written)
        .map(|(file, _)| file.size)
        .sum();
    Ok(PullReport {
        directory: directory.to_path_buf(),
        written,
        already_present: outcomes.len() - written,
        bytes,
    })
}

/// One file that differs between two versions.
#[derive(Debug, Clone, Serialize)]
pub struct FileChange {
    /// The path.
    pub path: String,
    /// Its digest and size in the first version.
    pub from: (Digest, u64),
    /// Its digest and size in the second.
    pub to: (Digest, u64),
}

/// How two versions differ.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// `name@version (digest)` of the first.
    pub from: String,
    /// `name@version (digest)` of the second.
    pub to: String,
    /// Whether their identities are equal.
    pub identical: bool,
    /// Files only in the second.
    pub added: Vec<String>,
    /// Files only in the first.
    pub removed: Vec<String>,
    /// Files in both with different content.
    pub changed: Vec<FileChange>,
    /// Files in both with the same content.
    pub unchanged: usize,
    /// Parameters (from safetensors headers) in each.
    pub parameters: (u64, u64),
    /// Lineage differences, one line each.
    pub lineage: Vec<String>,
    /// Metadata keys whose values differ: (key, first, second).
    pub metadata: Vec<(String, Option<String>, Option<String>)>,
}

fn parameters(manifest: &ModelManifest) -> u64 {
    manifest
        .files
        .iter()
        .map(|file| {
            file.safetensors
                .as_ref()
                .map_or(0, |summary| summary.parameters)
                + file.gguf.as_ref().map_or(0, |summary| summary.parameters)
        })
        .sum()
}

/// Compares two versions.
pub fn diff(a: &Resolved, b: &Resolved) -> Diff {
    let (first, second) = (&a.manifest, &b.manifest);
    let files_a: BTreeMap<&str, &ManifestFile> = first
        .files
        .iter()
        .map(|file| (file.path.as_str(), file))
        .collect();
    let files_b: BTreeMap<&str, &ManifestFile> = second
        .files
        .iter()
        .map(|file| (file.path.as_str(), file))
        .collect();
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let mut changed = Vec::new();
    let mut unchanged = 0;
    for (path, file) in &files_a {
        match files_b.get(path) {
            None => removed.push((*path).to_owned()),
            Some(other) if other.digest == file.digest => unchanged += 1,
            Some(other) => changed.push(FileChange {
                path: (*path).to_owned(),
                from: (file.digest, file.size),
                to: (other.digest, other.size),
            }),
        }
    }
    for path in files_b.keys() {
        if !files_a.contains_key(path) {
            added.push((*path).to_owned());
        }
    }
    let mut lineage = Vec::new();
    let mut compare = |what: &str, x: Option<String>, y: Option<String>| {
        if x != y {
            let show = |value: Option<String>| value.unwrap_or_else(|| "none".to_owned());
            lineage.push(format!("{what}: {} → {}", show(x), show(y)));
        }
    };
    let (la, lb) = (&first.lineage, &second.lineage);
    compare(
        "git commit",
        la.git.as_ref().map(|git| git.commit.clone()),
        lb.git.as_ref().map(|git| git.commit.clone()),
    );
    compare(
        "dataset",
        la.data.as_ref().map(|data| data.dataset_digest.to_string()),
        lb.data.as_ref().map(|data| data.dataset_digest.to_string()),
    );
    compare(
        "run",
        la.run.as_ref().map(|run| {
            run.run_id
                .clone()
                .unwrap_or_else(|| run.document.digest.to_string())
        }),
        lb.run.as_ref().map(|run| {
            run.run_id
                .clone()
                .unwrap_or_else(|| run.document.digest.to_string())
        }),
    );
    compare(
        "derived from",
        la.derived_from.as_ref().map(|derived| {
            format!(
                "{}@{} ({}, {})",
                derived.name, derived.version, derived.parent, derived.relation
            )
        }),
        lb.derived_from.as_ref().map(|derived| {
            format!(
                "{}@{} ({}, {})",
                derived.name, derived.version, derived.parent, derived.relation
            )
        }),
    );
    compare(
        "gate report",
        la.gate
            .as_ref()
            .map(|gate| format!("{} ({:?})", gate.document.digest, gate.verdict)),
        lb.gate
            .as_ref()
            .map(|gate| format!("{} ({:?})", gate.document.digest, gate.verdict)),
    );
    compare(
        "evaluation",
        la.evaluation.as_ref().map(|link| link.digest.to_string()),
        lb.evaluation.as_ref().map(|link| link.digest.to_string()),
    );
    let keys: BTreeSet<&String> = first
        .metadata
        .keys()
        .chain(second.metadata.keys())
        .collect();
    let metadata = keys
        .into_iter()
        .filter(|key| first.metadata.get(*key) != second.metadata.get(*key))
        .map(|key| {
            (
                (*key).clone(),
                first.metadata.get(key).cloned(),
                second.metadata.get(key).cloned(),
            )
        })
        .collect();
    Diff {
        from: format!("{}@{} ({})", first.name, first.version, a.digest),
        to: format!("{}@{} ({})", second.name, second.version, b.digest),
        identical: a.digest == b.digest,
        added,
        removed,
        changed,
        unchanged,
        parameters: (parameters(first), parameters(second)),
        lineage,
        metadata,
    }
}
