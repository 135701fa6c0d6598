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
//!
//! Damage stays where it is: a manifest that does not parse hides only its
//! own version (it still holds its number), a line of the event log that
//! does not parse is passed over, and an alias event that names a version
//! whose manifest has another digest moves nothing. Each is reported by
//! [`Registry::damage`] and repaired by [`FileRegistry::fsck`]. Temporary
//! blobs are named after their host and process, so a registration cleans
//! up what a killed one left.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use gantry_core::{Digest, ModelManifest};

use crate::error::{Error, Result};
use crate::names::validate_name;
use crate::ops::build_manifest;
use crate::{
    AliasTarget, Event, Expectation, RegisterRequest, Registration, Registry, Resolved,
    VersionRequest, alias_event, check_expectation, move_aliases, next_version, now,
    unchanged_event,
};
use gantry_model::{hash_file, parallel_largest_first};

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
            .prefix(&temporary_prefix())
            .tempfile_in(&tmp_dir)
            .map_err(Error::io("cannot create a temporary file in", &tmp_dir))?;
        let digest = write(temporary.as_file_mut())?;
        let target = self.blob_path(&digest);
        // A blob already there is kept only if it still holds its content:
        // registering the same files again heals one that was damaged.
        if target.exists() && blob_is_whole(&target, &digest) {
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

    /// Temporary blobs nobody is writing: those of a dead process on this
    /// host, and any over a day old.
    pub(crate) fn stale_temporaries(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.tmp_dir()) else {
            return Vec::new();
        };
        let now = SystemTime::now();
        entries
            .flatten()
            .filter(|entry| {
                let old = entry
                    .metadata()
                    .and_then(|metadata| metadata.modified())
                    .is_ok_and(|modified| {
                        now.duration_since(modified).unwrap_or_default() > STALE_TEMPORARY
                    });
                old || writer_is_gone(&entry.file_name().to_string_lossy())
            })
            .map(|entry| entry.path())
            .collect()
    }

    fn remove_stale_temporaries(&self) {
        for path in self.stale_temporaries() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// `models/<name>`.
    pub(crate) fn model_root(&self, name: &str) -> PathBuf {
        self.model_dir(name)
    }

    /// Takes `name`'s lock (fsck repairs under it).
    pub(crate) fn lock_model(&self, name: &str) -> Result<File> {
        self.ensure_dirs(name)?;
        self.lock(name)
    }

    /// Every model directory with a valid name and a version file or an
    /// event log, readable or not.
    pub(crate) fn model_names(&self) -> Result<Vec<String>> {
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
            if validate_name(&name).is_err() {
                continue;
            }
            let scan = self.scan_versions(&name)?;
            if !scan.good.is_empty() || !scan.damaged.is_empty() || self.events_path(&name).exists()
            {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Moves the event log lines numbered in `lines` to `events.jsonl.damaged`
    /// (appended, each with why) and rewrites the log without them,
    /// atomically; the caller holds the model's lock.
    pub(crate) fn set_event_lines_aside(
        &self,
        name: &str,
        lines: &BTreeMap<usize, String>,
    ) -> Result<()> {
        let path = self.events_path(name);
        let text = std::fs::read_to_string(&path).map_err(Error::io("cannot read", &path))?;
        let mut kept = String::new();
        let mut moved = String::new();
        for (index, line) in text.lines().enumerate() {
            match lines.get(&(index + 1)) {
                Some(problem) => {
                    moved.push_str(&format!("# line {}: {problem}\n{line}\n", index + 1));
                }
                None => {
                    kept.push_str(line);
                    kept.push('\n');
                }
            }
        }
        let side = self.model_dir(name).join("events.jsonl.damaged");
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&side)
            .map_err(Error::io("cannot open", &side))?;
        file.write_all(moved.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(Error::io("cannot write", &side))?;
        write_atomically(&path, kept.as_bytes())
    }

    fn read_versions(&self, name: &str) -> Result<Vec<Resolved>> {
        Ok(self.scan_versions(name)?.good)
    }

    /// Every version file of `name`: the ones that read as their own
    /// manifest, and the damaged ones (which keep their version number).
    pub(crate) fn scan_versions(&self, name: &str) -> Result<VersionScan> {
        let dir = self.model_dir(name).join("versions");
        let mut scan = VersionScan::default();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(scan),
            Err(error) => return Err(Error::io("cannot list", &dir)(error)),
        };
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
            let damaged = |problem: String| DamagedVersion {
                version: version.to_owned(),
                path: path.clone(),
                problem,
            };
            let manifest = std::fs::read_to_string(&path)
                .map_err(|error| format!("cannot read it: {error}"))
                .and_then(|text| {
                    serde_json::from_str::<ModelManifest>(&text)
                        .map_err(|error| format!("not a model manifest: {error}"))
                });
            match manifest {
                Err(problem) => scan.damaged.push(damaged(problem)),
                Ok(manifest) if manifest.version != version || manifest.name != name => {
                    scan.damaged.push(damaged(format!(
                        "holds {} {} but is filed as {name} {version}",
                        manifest.name, manifest.version
                    )));
                }
                Ok(manifest) => match Resolved::new(manifest) {
                    Ok(resolved) => scan.good.push(resolved),
                    Err(error) => scan.damaged.push(damaged(error.to_string())),
                },
            }
        }
        scan.good
            .sort_by(|a, b| version_order(&a.manifest.version, &b.manifest.version));
        scan.damaged
            .sort_by(|a, b| version_order(&a.version, &b.version));
        Ok(scan)
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
        Ok(self
            .scan_events(name)?
            .events
            .into_iter()
            .map(|(_, event)| event)
            .collect())
    }

    /// Every complete line of the event log: the events, and the lines
    /// that do not parse (passed over, so one bad line blocks nothing).
    pub(crate) fn scan_events(&self, name: &str) -> Result<EventScan> {
        let path = self.events_path(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(EventScan::default());
            }
            Err(error) => return Err(Error::io("cannot read", &path)(error)),
        };
        let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
        let mut scan = EventScan::default();
        for (index, line) in complete.lines().enumerate() {
            match serde_json::from_str::<Event>(line) {
                Ok(event) => scan.events.push((index + 1, event)),
                Err(error) => scan
                    .bad_lines
                    .push((index + 1, line.to_owned(), error.to_string())),
            }
        }
        Ok(scan)
    }

    /// The aliases the event log sets, each checked against the version it
    /// names: an event whose digest is not that version's manifest digest
    /// (forged, or left by an edited manifest) moves nothing, so `list` and
    /// `pull` agree on where every alias points. Returns the aliases and
    /// the events passed over, by line.
    pub(crate) fn checked_aliases(
        events: &[(usize, Event)],
        versions: &[Resolved],
    ) -> (BTreeMap<String, AliasTarget>, Vec<(usize, String)>) {
        let mut aliases = BTreeMap::new();
        let mut passed_over = Vec::new();
        for (line, event) in events {
            let (Some(alias), "alias-moved") = (&event.alias, event.action.as_str()) else {
                continue;
            };
            match versions
                .iter()
                .find(|resolved| resolved.manifest.version == event.version)
            {
                Some(resolved) if resolved.digest == event.digest => {
                    aliases.insert(
                        alias.clone(),
                        AliasTarget {
                            version: event.version.clone(),
                            digest: event.digest,
                        },
                    );
                }
                Some(resolved) => passed_over.push((
                    *line,
                    format!(
                        "moves {alias} to {} with digest {}, but that version's manifest has digest {}",
                        event.version, event.digest, resolved.digest
                    ),
                )),
                None => passed_over.push((
                    *line,
                    format!(
                        "moves {alias} to {}, which has no readable manifest",
                        event.version
                    ),
                )),
            }
        }
        (aliases, passed_over)
    }

    fn aliases_of(&self, name: &str) -> Result<BTreeMap<String, AliasTarget>> {
        let events = self.scan_events(name)?.events;
        let versions = self.read_versions(name)?;
        Ok(Self::checked_aliases(&events, &versions).0)
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
        let current = self.aliases_of(name)?.remove(alias);
        if !check_expectation(name, alias, current.as_ref(), expect, target)? {
            return Ok(None);
        }
        let event = alias_event(alias, target, actor, current);
        self.append_event(name, &event)?;
        Ok(Some(event))
    }
}

/// A model's version files, read.
#[derive(Debug, Default)]
pub(crate) struct VersionScan {
    /// Manifests that read as their version.
    pub(crate) good: Vec<Resolved>,
    /// The others.
    pub(crate) damaged: Vec<DamagedVersion>,
}

/// A version file that is not its version's manifest.
#[derive(Debug, Clone)]
pub(crate) struct DamagedVersion {
    /// The version its file name gives.
    pub(crate) version: String,
    /// The file.
    pub(crate) path: PathBuf,
    /// What is wrong with it.
    pub(crate) problem: String,
}

/// A model's event log, read.
#[derive(Debug, Default)]
pub(crate) struct EventScan {
    /// Events, by line number.
    pub(crate) events: Vec<(usize, Event)>,
    /// Lines that are not events: number, text, why.
    pub(crate) bad_lines: Vec<(usize, String, String)>,
}

/// The prefix of this process's temporary blobs: `blob-<host>-<pid>-`.
fn temporary_prefix() -> String {
    format!("blob-{}-{}-", host_name(), std::process::id())
}

fn host_name() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether the temporary file `file_name` was written by a process of this
/// host that is gone (killed mid-registration).
fn writer_is_gone(file_name: &str) -> bool {
    let prefix = format!("blob-{}-", host_name());
    let Some(rest) = file_name.strip_prefix(&prefix) else {
        return false;
    };
    let Some(pid) = rest
        .split('-')
        .next()
        .and_then(|pid| pid.parse::<i32>().ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Whether the blob at `path` still hashes to `digest`.
pub(crate) fn blob_is_whole(path: &Path, digest: &Digest) -> bool {
    File::open(path)
        .ok()
        .and_then(|file| Digest::of_reader(std::io::BufReader::new(file), "blob").ok())
        .is_some_and(|(actual, _)| actual == *digest)
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
            |file| self.store(|temporary| Ok(hash_file(file, Some(temporary))?)),
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
        let scan = self.scan_versions(request.name)?;
        // A damaged version, or one fsck set aside (its `registered` event
        // remains), still holds its number: it is never reused.
        let registered_versions: Vec<String> = self
            .scan_events(request.name)?
            .events
            .into_iter()
            .filter(|(_, event)| event.action == "registered")
            .map(|(_, event)| event.version)
            .collect();
        let taken_by_damage: Vec<&str> = scan
            .damaged
            .iter()
            .map(|damaged| damaged.version.as_str())
            .chain(registered_versions.iter().map(String::as_str))
            .filter(|version| {
                !scan
                    .good
                    .iter()
                    .any(|resolved| resolved.manifest.version == *version)
            })
            .collect();
        let versions = &scan.good;
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
                            .map(|resolved| resolved.manifest.version.as_str())
                            .chain(taken_by_damage.iter().copied()),
                    )
                    .to_string(),
                    VersionRequest::Exact(version) => version.to_string(),
                };
                if taken_by_damage.contains(&version.as_str()) {
                    return Err(Error::Input(format!(
                        "{} {version} was registered but its manifest is damaged or set aside (see `gantry registry fsck`); register as another version",
                        request.name
                    )));
                }
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
        // A model whose only manifest is damaged is still listed (with its
        // damage), so nothing disappears without a word.
        self.model_names()
    }

    fn versions(&self, name: &str) -> Result<Vec<Resolved>> {
        validate_name(name)?;
        self.read_versions(name)
    }

    fn aliases(&self, name: &str) -> Result<BTreeMap<String, AliasTarget>> {
        validate_name(name)?;
        self.aliases_of(name)
    }

    fn damage(&self, name: &str) -> Result<Vec<String>> {
        validate_name(name)?;
        let versions = self.scan_versions(name)?;
        let events = self.scan_events(name)?;
        let events_path = self.events_path(name);
        let mut damage: Vec<String> = versions
            .damaged
            .iter()
            .map(|damaged| {
                format!(
                    "{} {}: {} ({}); the version is unusable until `gantry registry fsck --repair` sets it aside",
                    name,
                    damaged.version,
                    damaged.problem,
                    damaged.path.display()
                )
            })
            .collect();
        damage.extend(events.bad_lines.iter().map(|(line, _, problem)| {
            format!(
                "{}:{line}: not an event ({problem}); passed over",
                events_path.display()
            )
        }));
        damage.extend(
            Self::checked_aliases(&events.events, &versions.good)
                .1
                .into_iter()
                .map(|(line, problem)| {
                    format!("{}:{line}: {problem}; passed over", events_path.display())
                }),
        );
        Ok(damage)
    }

    fn resolve(&self, reference: &crate::Reference) -> Result<Resolved> {
        // A damaged version is named as damaged, not as absent.
        if let crate::Selector::Version(version) = &reference.selector {
            let wanted = version.to_string();
            if let Some(damaged) = self
                .scan_versions(&reference.name)?
                .damaged
                .into_iter()
                .find(|damaged| damaged.version == wanted)
            {
                return Err(Error::Corrupt {
                    path: damaged.path,
                    reason: format!(
                        "{}@{wanted} is damaged: {}; see `gantry registry fsck`",
                        reference.name, damaged.problem
                    ),
                });
            }
        }
        crate::resolve_in(self, reference)
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
