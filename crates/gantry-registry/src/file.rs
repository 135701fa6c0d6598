//! The file registry: the embedded default, `file:PATH` (`.gantry/registry`).
//!
//! ```text
//! PATH/blobs/sha256/<hex>                 every file and lineage document, by content, read-only
//! PATH/tmp/                               blobs being written
//! PATH/models/<name>/versions/<v>.json    one manifest per version: the commit point
//! PATH/models/<name>/events.jsonl         registrations and alias moves; aliases are read from it
//! PATH/models/<name>/lock                 held (flock) while a version is allocated or an alias moves
//! ```
//!
//! Blobs are written to a temporary file, fsynced and renamed into place,
//! so a blob is either whole or absent. A version exists once its manifest
//! is renamed into `versions/`, which happens last, under the model's lock:
//! concurrent registrations never take the same version, and a crash at any
//! point leaves no half-registered version (at most unreferenced blobs). The
//! lock is a kernel `flock`, released when its holder dies, even by SIGKILL.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use gantry_core::{Digest, ModelManifest};

use crate::error::{Error, Result};
use crate::names::validate_name;
use crate::ops::build_manifest;
use crate::source::{hash_file, parallel_largest_first};
use crate::{
    AliasTarget, Event, Expectation, RegisterRequest, Registration, Registry, Resolved,
    VersionRequest, alias_event, check_expectation, move_aliases, next_version, now,
    unchanged_event,
};

/// Temporary files older than this are left over from a crash.
const STALE_TEMPORARY: Duration = Duration::from_secs(24 * 3600);

/// A registry in a local directory.
#[derive(Debug, Clone)]
pub struct FileRegistry {
    root: PathBuf,
}

impl FileRegistry {
    /// A registry rooted at `root`, created on first write.
    pub fn new(root: impl Into<PathBuf>) -> FileRegistry {
        FileRegistry { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    fn model_dir(&self, name: &str) -> PathBuf {
        self.root.join("models").join(name)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn ensure_dirs(&self, name: &str) -> Result<()> {
        for dir in [
            self.root.join("blobs").join("sha256"),
            self.tmp_dir(),
            self.model_dir(name).join("versions"),
        ] {
            std::fs::create_dir_all(&dir).map_err(Error::io("cannot create", &dir))?;
        }
        Ok(())
    }

    /// Takes the model's lock, blocking until it is free.
    fn lock(&self, name: &str) -> Result<File> {
        let path = self.model_dir(name).join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(Error::io("cannot open", &path))?;
        file.lock().map_err(Error::io("cannot lock", &path))?;
        Ok(file)
    }

    /// Stores a blob written by `write` into a temporary file; `write`
    /// returns the digest of what it wrote. Returns the digest and whether
    /// the blob is new.
    fn store(&self, write: impl FnOnce(&mut File) -> Result<Digest>) -> Result<(Digest, bool)> {
        let tmp_dir = self.tmp_dir();
        let mut temporary = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&tmp_dir)
            .map_err(Error::io("cannot create a temporary file in", &tmp_dir))?;
        let digest = write(temporary.as_file_mut())?;
        let target = self.blob_path(&digest);
        if target.exists() {
            return Ok((digest, false));
        }
        temporary
            .as_file()
            .sync_all()
            .map_err(Error::io("cannot sync", temporary.path()))?;
        let mut permissions = temporary
            .as_file()
            .metadata()
            .map_err(Error::io("cannot read", temporary.path()))?
            .permissions();
        permissions.set_readonly(true);
        std::fs::set_permissions(temporary.path(), permissions)
            .map_err(Error::io("cannot protect", temporary.path()))?;
        temporary
            .persist(&target)
            .map_err(|error| Error::io("cannot store", &target)(error.error))?;
        sync_dir(target.parent().unwrap_or(&self.root))?;
        Ok((digest, true))
    }

    fn remove_stale_temporaries(&self) {
        let Ok(entries) = std::fs::read_dir(self.tmp_dir()) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|metadata| metadata.modified())
                .is_ok_and(|modified| {
                    now.duration_since(modified).unwrap_or_default() > STALE_TEMPORARY
                });
            if stale {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    fn read_versions(&self, name: &str) -> Result<Vec<Resolved>> {
        let dir = self.model_dir(name).join("versions");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(Error::io("cannot list", &dir)(error)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::io("cannot list", &dir))?;
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = file_name.strip_suffix(".json") else {
                continue;
            };
            if file_name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let text = std::fs::read_to_string(&path).map_err(Error::io("cannot read", &path))?;
            let manifest: ModelManifest =
                serde_json::from_str(&text).map_err(|error| Error::Corrupt {
                    path: path.clone(),
                    reason: format!("not a model manifest: {error}"),
                })?;
            if manifest.version != version || manifest.name != name {
                return Err(Error::Corrupt {
                    path,
                    reason: format!(
                        "holds {} {} but is filed as {name} {version}",
                        manifest.name, manifest.version
                    ),
                });
            }
            versions.push(Resolved::new(manifest)?);
        }
        versions.sort_by(|a, b| version_order(&a.manifest.version, &b.manifest.version));
        Ok(versions)
    }

    fn events_path(&self, name: &str) -> PathBuf {
        self.model_dir(name).join("events.jsonl")
    }

    /// Appends an event; the caller holds the lock. A line a crash left
    /// half-written is cut off first.
    fn append_event(&self, name: &str, event: &Event) -> Result<()> {
        let path = self.events_path(name);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(Error::io("cannot open", &path))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text)
            .map_err(Error::io("cannot read", &path))?;
        let complete = text
            .iter()
            .rposition(|&byte| byte == b'\n')
            .map_or(0, |position| position + 1);
        if complete != text.len() {
            file.set_len(complete as u64)
                .map_err(Error::io("cannot repair", &path))?;
        }
        file.seek(SeekFrom::Start(complete as u64))
            .map_err(Error::io("cannot seek", &path))?;
        let mut line = serde_json::to_vec(event).map_err(gantry_core::Error::from)?;
        line.push(b'\n');
        file.write_all(&line)
            .map_err(Error::io("cannot write", &path))?;
        file.sync_all().map_err(Error::io("cannot sync", &path))?;
        Ok(())
    }

    fn read_events(&self, name: &str) -> Result<Vec<Event>> {
        let path = self.events_path(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(Error::io("cannot read", &path)(error)),
        };
        let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
        complete
            .lines()
            .enumerate()
            .map(|(index, line)| {
                serde_json::from_str(line).map_err(|error| Error::Corrupt {
                    path: path.clone(),
                    reason: format!("line {}: {error}", index + 1),
                })
            })
            .collect()
    }

    fn aliases_from(events: &[Event]) -> BTreeMap<String, AliasTarget> {
        let mut aliases = BTreeMap::new();
        for event in events {
            if let (Some(alias), "alias-moved") = (&event.alias, event.action.as_str()) {
                aliases.insert(
                    alias.clone(),
                    AliasTarget {
                        version: event.version.clone(),
                        digest: event.digest,
                    },
                );
            }
        }
        aliases
    }

    /// Moves an alias; the caller holds the lock.
    fn move_alias_locked(
        &self,
        alias: &str,
        target: &Resolved,
        expect: &Expectation,
        actor: &str,
    ) -> Result<Option<Event>> {
        let name = &target.manifest.name;
        let current = Self::aliases_from(&self.read_events(name)?).remove(alias);
        if !check_expectation(name, alias, current.as_ref(), expect, target)? {
            return Ok(None);
        }
        let event = alias_event(alias, target, actor, current);
        self.append_event(name, &event)?;
        Ok(Some(event))
    }
}

/// Orders versions by semantic versioning, unparsable ones last by text.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(Error::io("cannot sync", dir))
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync,
/// rename, fsync of the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temporary = tempfile::Builder::new()
        .prefix(".commit-")
        .tempfile_in(dir)
        .map_err(Error::io("cannot create a temporary file in", dir))?;
    temporary
        .write_all(bytes)
        .and_then(|()| temporary.as_file().sync_all())
        .map_err(Error::io("cannot write", temporary.path()))?;
    temporary
        .persist(path)
        .map_err(|error| Error::io("cannot commit", path)(error.error))?;
    sync_dir(dir)
}

impl Registry for FileRegistry {
    fn uri(&self) -> String {
        format!("file:{}", self.root.display())
    }

    fn register(&self, request: &RegisterRequest<'_>) -> Result<Registration> {
        validate_name(request.name)?;
        for alias in &request.aliases {
            crate::names::validate_alias(alias)?;
        }
        self.ensure_dirs(request.name)?;
        self.remove_stale_temporaries();

        let files = &request.source.files;
        let stored = parallel_largest_first(
            files,
            |file| file.size,
            |file| self.store(|temporary| hash_file(file, Some(temporary))),
        )?;
        let mut bytes_stored: u64 = files
            .iter()
            .zip(&stored)
            .filter(|(_, (_, new))| *new)
            .map(|(file, _)| file.size)
            .sum();
        for (digest, bytes) in &request.lineage.documents {
            let (stored_digest, new) = self.store(|temporary| {
                temporary
                    .write_all(bytes)
                    .map_err(Error::io("cannot write", self.tmp_dir()))?;
                Ok(Digest::of_bytes(bytes))
            })?;
            debug_assert_eq!(stored_digest, *digest);
            if new {
                bytes_stored += bytes.len() as u64;
            }
        }
        let digests: Vec<Digest> = stored.iter().map(|(digest, _)| *digest).collect();
        let mut manifest = build_manifest(
            request.name,
            files,
            &digests,
            &request.lineage.lineage,
            &request.metadata,
        );
        let digest = manifest.digest()?;

        let _lock = self.lock(request.name)?;
        let versions = self.read_versions(request.name)?;
        let existing = versions.iter().find(|resolved| resolved.digest == digest);
        let (resolved, created) = match (existing, &request.version) {
            (Some(existing), VersionRequest::Exact(version))
                if existing.manifest.version != version.to_string() =>
            {
                return Err(Error::Input(format!(
                    "{} is already registered as {} {} (digest {digest}); the same content is not registered twice",
                    request.source.root.display(),
                    request.name,
                    existing.manifest.version
                )));
            }
            (Some(existing), _) => (existing.clone(), false),
            (None, version_request) => {
                let version = match version_request {
                    VersionRequest::Auto => next_version(
                        versions
                            .iter()
                            .map(|resolved| resolved.manifest.version.as_str()),
                    )
                    .to_string(),
                    VersionRequest::Exact(version) => version.to_string(),
                };
                if let Some(taken) = versions
                    .iter()
                    .find(|resolved| resolved.manifest.version == version)
                {
                    return Err(Error::VersionTaken {
                        name: request.name.to_owned(),
                        version,
                        existing: taken.digest,
                        new: digest,
                    });
                }
                manifest.version = version;
                manifest.created = now();
                let path = self
                    .model_dir(request.name)
                    .join("versions")
                    .join(format!("{}.json", manifest.version));
                let mut text =
                    serde_json::to_vec_pretty(&manifest).map_err(gantry_core::Error::from)?;
                text.push(b'\n');
                write_atomically(&path, &text)?;
                let resolved = Resolved { manifest, digest };
                self.append_event(
                    request.name,
                    &Event {
                        time: resolved.manifest.created.clone(),
                        actor: request.actor.clone(),
                        action: "registered".to_owned(),
                        version: resolved.manifest.version.clone(),
                        digest,
                        alias: None,
                        previous: None,
                    },
                )?;
                (resolved, true)
            }
        };
        let alias_moves = move_aliases(&request.aliases, |alias| {
            self.move_alias_locked(alias, &resolved, &Expectation::Any, &request.actor)
        })?;
        Ok(Registration {
            manifest: resolved.manifest,
            digest,
            created,
            bytes_stored,
            alias_moves,
        })
    }

    fn models(&self) -> Result<Vec<String>> {
        let dir = self.root.join("models");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => return Err(Error::io("cannot list", &dir)(error)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(Error::io("cannot list", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if validate_name(&name).is_ok() && !self.read_versions(&name)?.is_empty() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn versions(&self, name: &str) -> Result<Vec<Resolved>> {
        validate_name(name)?;
        self.read_versions(name)
    }

    fn aliases(&self, name: &str) -> Result<BTreeMap<String, AliasTarget>> {
        validate_name(name)?;
        Ok(Self::aliases_from(&self.read_events(name)?))
    }

    fn move_alias(
        &self,
        alias: &str,
        target: &Resolved,
        expect: &Expectation,
        actor: &str,
    ) -> Result<Event> {
        crate::names::validate_alias(alias)?;
        let name = &target.manifest.name;
        validate_name(name)?;
        self.ensure_dirs(name)?;
        let _lock = self.lock(name)?;
        Ok(self
            .move_alias_locked(alias, target, expect, actor)?
            .unwrap_or_else(|| unchanged_event(alias, target, actor)))
    }

    fn events(&self, name: &str) -> Result<Vec<Event>> {
        validate_name(name)?;
        self.read_events(name)
    }

    fn open_blob(&self, _name: &str, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let path = self.blob_path(digest);
        let file = File::open(&path).map_err(|error| {
            if error.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(format!("blob {digest} is missing from {}", self.uri()))
            } else {
                Error::io("cannot open", &path)(error)
            }
        })?;
        Ok(Box::new(file))
    }
}
