//! `gantry registry fsck`: every manifest, blob and event of a registry
//! checked, damage named, and for the file registry repairs that lose
//! nothing (what is damaged is set aside, never deleted).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gantry_core::Digest;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::file::{FileRegistry, blob_is_whole};
use crate::{Registry, Resolved};

/// One piece of damage: where, what, and what a repair does about it.
#[derive(Debug, Clone, Serialize)]
pub struct Damage {
    /// The file, or the model and version.
    pub place: String,
    /// What is wrong.
    pub problem: String,
    /// What `--repair` does (or did) about it; `None` when nothing can be
    /// done without the original bytes.
    pub repair: Option<String>,
    /// Whether the repair was made.
    pub repaired: bool,
}

/// What a check of a whole registry found.
#[derive(Debug, Clone, Serialize)]
pub struct FsckReport {
    /// The registry.
    pub uri: String,
    /// Models checked.
    pub models: usize,
    /// Versions whose manifests read.
    pub versions: usize,
    /// Blobs hashed.
    pub blobs: usize,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Blobs no manifest names (left by an interrupted registration, or by
    /// versions set aside); kept.
    pub unreferenced_blobs: usize,
    /// Their bytes.
    pub unreferenced_bytes: u64,
    /// Everything found wrong.
    pub damage: Vec<Damage>,
    /// Versions an earlier repair set aside (unusable, kept in the model's
    /// `damaged/`): known, so no longer damage.
    pub set_aside: Vec<String>,
}

impl FsckReport {
    /// Whether nothing is (still) wrong.
    pub fn ok(&self) -> bool {
        self.damage.iter().all(|damage| damage.repaired)
    }
}

/// Checks any registry through its trait: every version of every model is
/// verified (files and documents re-hashed, the manifest against its
/// registered digest). Repairs need the file registry's own layout.
pub fn check_registry(registry: &dyn Registry) -> Result<FsckReport> {
    let mut report = FsckReport {
        uri: registry.uri(),
        models: 0,
        versions: 0,
        blobs: 0,
        blob_bytes: 0,
        unreferenced_blobs: 0,
        unreferenced_bytes: 0,
        damage: Vec::new(),
        set_aside: Vec::new(),
    };
    for name in registry.models()? {
        report.models += 1;
        for problem in registry.damage(&name)? {
            report.damage.push(Damage {
                place: name.clone(),
                problem,
                repair: None,
                repaired: false,
            });
        }
        for resolved in registry.versions(&name)? {
            report.versions += 1;
            let verified = crate::verify(registry, &resolved)?;
            report.blobs += verified.files.len() + verified.documents.len();
            report.blob_bytes += resolved.manifest.total_size();
            for problem in verified.problems() {
                report.damage.push(Damage {
                    place: format!("{name}@{}", resolved.manifest.version),
                    problem,
                    repair: None,
                    repaired: false,
                });
            }
        }
    }
    Ok(report)
}

impl FileRegistry {
    /// Checks every blob (re-hashed), leftover temporary file, manifest and
    /// event of the registry; with `repair`, sets damage aside where it
    /// cannot mislead: a blob whose bytes are not its digest's goes to
    /// `quarantine/` (registering the same files again restores it), a
    /// manifest that does not read, or was edited after registration, goes
    /// to its model's `damaged/`, event lines that do not parse or move an
    /// alias to a digest its version does not have go to
    /// `events.jsonl.damaged`, and temporary blobs of dead registrations are
    /// removed. Nothing a version needs is deleted.
    pub fn fsck(&self, repair: bool) -> Result<FsckReport> {
        let mut damage = Vec::new();
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();

        // Temporary blobs nobody is writing any more.
        for path in self.stale_temporaries() {
            let removed = repair && std::fs::remove_file(&path).is_ok();
            damage.push(Damage {
                place: path.display().to_string(),
                problem: "a temporary blob a killed registration left".to_owned(),
                repair: Some("remove it (it is an incomplete copy nothing refers to)".to_owned()),
                repaired: removed,
            });
        }

        // Every blob, re-hashed in parallel.
        let blob_dir = self.root().join("blobs").join("sha256");
        let mut blobs: Vec<(PathBuf, u64, Option<Digest>)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&blob_dir) {
            for entry in entries.flatten() {
                let size = entry.metadata().map(|metadata| metadata.len()).unwrap_or(0);
                let digest = format!("sha256:{}", entry.file_name().to_string_lossy())
                    .parse::<Digest>()
                    .ok();
                blobs.push((entry.path(), size, digest));
            }
        }
        let whole = crate::parallel_largest_first(
            &blobs,
            |(_, size, _)| *size,
            |(path, _, digest)| {
                Ok::<_, Error>(digest.is_some_and(|digest| blob_is_whole(path, &digest)))
            },
        )?;
        let mut present: BTreeSet<Digest> = BTreeSet::new();
        let quarantine = self.root().join("quarantine").join("blobs");
        for ((path, _, digest), whole) in blobs.iter().zip(&whole) {
            if *whole {
                if let Some(digest) = digest {
                    present.insert(*digest);
                }
                continue;
            }
            let repaired = repair && set_aside(path, &quarantine, &stamp).is_ok();
            damage.push(Damage {
                place: path.display().to_string(),
                problem: match digest {
                    Some(digest) => {
                        format!("its bytes do not hash to {digest} (damaged or tampered with)")
                    }
                    None => "its name is not a sha256 digest".to_owned(),
                },
                repair: Some(format!(
                    "move it to {} (register the same files again to restore it)",
                    quarantine.display()
                )),
                repaired,
            });
        }

        // Every model: manifests, their blobs, the event log.
        let mut referenced: BTreeSet<Digest> = BTreeSet::new();
        let mut versions_read = 0;
        let mut set_aside_before = Vec::new();
        let names = self.model_names()?;
        for name in &names {
            let _lock = self.lock_model(name)?;
            let scan = self.scan_versions(name)?;
            let events = self.scan_events(name)?;
            let registered: BTreeMap<&str, (usize, Digest)> = events
                .events
                .iter()
                .filter(|(_, event)| event.action == "registered")
                .map(|(line, event)| (event.version.as_str(), (*line, event.digest)))
                .collect();
            let damaged_dir = self.model_root(name).join("damaged");
            for damaged in &scan.damaged {
                let repaired = repair && set_aside(&damaged.path, &damaged_dir, &stamp).is_ok();
                damage.push(Damage {
                    place: damaged.path.display().to_string(),
                    problem: format!("{name} {}: {}", damaged.version, damaged.problem),
                    repair: Some(format!(
                        "move it to {} (the version stays unusable; its number is not reused)",
                        damaged_dir.display()
                    )),
                    repaired,
                });
            }
            let mut good: Vec<Resolved> = Vec::new();
            let mut accounted: BTreeSet<String> = scan
                .damaged
                .iter()
                .map(|damaged| damaged.version.clone())
                .collect();
            for resolved in scan.good {
                accounted.insert(resolved.manifest.version.clone());
                let version = resolved.manifest.version.clone();
                let manifest_path = self
                    .model_root(name)
                    .join("versions")
                    .join(format!("{version}.json"));
                if let Some((line, digest)) = registered.get(version.as_str())
                    && *digest != resolved.digest
                {
                    let repaired =
                        repair && set_aside(&manifest_path, &damaged_dir, &stamp).is_ok();
                    damage.push(Damage {
                        place: manifest_path.display().to_string(),
                        problem: format!(
                            "{name} {version}: edited after registration (registered as {digest} on line {line} of its event log, now {})",
                            resolved.digest
                        ),
                        repair: Some(format!(
                            "move it to {}: a manifest that is not the registered one must not be pulled",
                            damaged_dir.display()
                        )),
                        repaired,
                    });
                    continue;
                }
                versions_read += 1;
                let manifest = &resolved.manifest;
                let needed = manifest
                    .files
                    .iter()
                    .map(|file| (file.path.clone(), file.digest))
                    .chain(
                        manifest
                            .lineage
                            .documents()
                            .into_iter()
                            .map(|(role, link)| {
                                (format!("{role} {}", link.file_name), link.digest)
                            }),
                    );
                for (what, digest) in needed {
                    referenced.insert(digest);
                    if !present.contains(&digest) {
                        damage.push(Damage {
                            place: format!("{name}@{version}"),
                            problem: format!("{what}: blob {digest} is missing or damaged"),
                            repair: None,
                            repaired: false,
                        });
                    }
                }
                good.push(resolved);
            }
            for version in registered.keys() {
                let earlier = std::fs::read_dir(&damaged_dir)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|entry| {
                        entry
                            .file_name()
                            .to_string_lossy()
                            .starts_with(&format!("{version}.json."))
                    });
                if !accounted.contains(*version) && earlier {
                    set_aside_before.push(format!(
                        "{name}@{version} (its manifest is in {})",
                        damaged_dir.display()
                    ));
                } else if !accounted.contains(*version) {
                    damage.push(Damage {
                        place: format!("{name}@{version}"),
                        problem: "registered (its event log says so) but its manifest is missing"
                            .to_owned(),
                        repair: None,
                        repaired: false,
                    });
                }
            }
            // Event lines that are not events, or move an alias to a digest
            // its version does not have: out of the log, kept beside it.
            let passed_over = FileRegistry::checked_aliases(&events.events, &good).1;
            let mut bad_lines: BTreeMap<usize, String> = events
                .bad_lines
                .iter()
                .map(|(line, _, problem)| (*line, format!("not an event: {problem}")))
                .collect();
            bad_lines.extend(passed_over);
            if !bad_lines.is_empty() {
                let repaired = repair && self.set_event_lines_aside(name, &bad_lines).is_ok();
                let events_path = self.model_root(name).join("events.jsonl");
                for (line, problem) in &bad_lines {
                    damage.push(Damage {
                        place: format!("{}:{line}", events_path.display()),
                        problem: problem.clone(),
                        repair: Some(format!(
                            "move the line to {}.damaged (it is passed over already)",
                            events_path.display()
                        )),
                        repaired,
                    });
                }
            }
        }
        let (unreferenced_blobs, unreferenced_bytes) = blobs
            .iter()
            .zip(&whole)
            .filter(|((_, _, digest), whole)| {
                **whole && digest.is_some_and(|digest| !referenced.contains(&digest))
            })
            .fold((0, 0), |(count, bytes), ((_, size, _), _)| {
                (count + 1, bytes + size)
            });
        Ok(FsckReport {
            uri: self.uri(),
            models: names.len(),
            versions: versions_read,
            blobs: blobs.len(),
            blob_bytes: blobs.iter().map(|(_, size, _)| size).sum(),
            unreferenced_blobs,
            unreferenced_bytes,
            damage,
            set_aside: set_aside_before,
        })
    }
}

/// Moves `path` into `directory`, stamped, keeping every byte.
fn set_aside(path: &Path, directory: &Path, stamp: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(directory).map_err(Error::io("cannot create", directory))?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let target = directory.join(format!("{name}.{stamp}"));
    std::fs::rename(path, &target).map_err(Error::io("cannot move", path))?;
    Ok(target)
}
