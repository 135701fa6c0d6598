//! The data lock: what exactly was validated, by content hash, and what changed since last time.

use std::path::Path;

use gantry_core::{Digest, canonical_json_digest};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Version of the data lock format.
pub const LOCK_VERSION: u32 = 1;

/// One file in the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockedFile {
    /// Path as given, with `/` separators.
    pub path: String,
    /// Size on disk in bytes (compressed size for compressed files).
    pub size: u64,
    /// SHA-256 of the bytes on disk.
    #[schemars(with = "String")]
    pub sha256: Digest,
    /// Records read from it.
    pub records: u64,
}

/// `data.lock`: per file hashes and counts, and the dataset's digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DataLock {
    /// Format version (1).
    pub version: u32,
    /// SHA-256 of the canonical JSON of the sorted file entries: the dataset's identity.
    #[schemars(with = "String")]
    pub dataset_digest: Digest,
    /// SHA-256 over the record format and the sorted set of field paths seen.
    #[schemars(with = "String")]
    pub schema_fingerprint: Digest,
    /// Records in all files.
    pub records: u64,
    /// The files, sorted by path.
    pub files: Vec<LockedFile>,
}

/// What changed between two locks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct LockDiff {
    /// Files only in the new lock.
    pub added: Vec<String>,
    /// Files only in the previous lock.
    pub removed: Vec<String>,
    /// Files in both whose hash differs: (path, previous records, new records).
    pub changed: Vec<(String, u64, u64)>,
    /// Whether the schema fingerprint changed.
    pub schema_changed: bool,
}

impl LockDiff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && !self.schema_changed
    }
}

impl DataLock {
    /// A lock for `files`, computing the dataset digest.
    pub fn new(mut files: Vec<LockedFile>, schema_fingerprint: Digest) -> Result<DataLock> {
        files.sort_by(|left, right| left.path.cmp(&right.path));
        let dataset_digest = canonical_json_digest(&files).map_err(|source| Error::Serialize {
            what: "the data lock",
            error: serde_json::Error::io(std::io::Error::other(source.to_string())),
        })?;
        let records = files.iter().map(|file| file.records).sum();
        Ok(DataLock {
            version: LOCK_VERSION,
            dataset_digest,
            schema_fingerprint,
            records,
            files,
        })
    }

    /// Reads a lock written earlier.
    pub fn read(path: &Path) -> Result<DataLock> {
        let error = |reason: String| Error::Lock {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|source| error(source.to_string()))?;
        let lock: DataLock = serde_json::from_str(&text)
            .map_err(|source| error(format!("not a gantry data lock: {source}")))?;
        if lock.version != LOCK_VERSION {
            return Err(error(format!(
                "version {} is not supported (expected {LOCK_VERSION})",
                lock.version
            )));
        }
        Ok(lock)
    }

    /// What changed from `previous` to this lock.
    pub fn diff(&self, previous: &DataLock) -> LockDiff {
        let mut diff = LockDiff {
            schema_changed: self.schema_fingerprint != previous.schema_fingerprint,
            ..LockDiff::default()
        };
        for file in &self.files {
            match previous.files.iter().find(|old| old.path == file.path) {
                None => diff.added.push(file.path.clone()),
                Some(old) if old.sha256 != file.sha256 => {
                    diff.changed
                        .push((file.path.clone(), old.records, file.records))
                }
                Some(_) => {}
            }
        }
        for old in &previous.files {
            if !self.files.iter().any(|file| file.path == old.path) {
                diff.removed.push(old.path.clone());
            }
        }
        diff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str, records: u64) -> LockedFile {
        LockedFile {
            path: path.to_owned(),
            size: content.len() as u64,
            sha256: Digest::of_bytes(content.as_bytes()),
            records,
        }
    }

    #[test]
    fn digest_ignores_file_order_and_diff_lists_changes() {
        let schema = Digest::of_bytes(b"openai-chat");
        let first = DataLock::new(
            vec![file("b.jsonl", "b", 1), file("a.jsonl", "a", 2)],
            schema,
        )
        .expect("lock");
        let same = DataLock::new(
            vec![file("a.jsonl", "a", 2), file("b.jsonl", "b", 1)],
            schema,
        )
        .expect("lock");
        assert_eq!(first.dataset_digest, same.dataset_digest);
        assert_eq!(first.records, 3);
        let next = DataLock::new(
            vec![file("a.jsonl", "a2", 3), file("c.jsonl", "c", 1)],
            schema,
        )
        .expect("lock");
        assert_ne!(next.dataset_digest, first.dataset_digest);
        let diff = next.diff(&first);
        assert_eq!(diff.added, ["c.jsonl"]);
        assert_eq!(diff.removed, ["b.jsonl"]);
        assert_eq!(diff.changed, [("a.jsonl".to_owned(), 2, 3)]);
        assert!(!diff.schema_changed);
        assert!(first.diff(&same).is_empty());
    }

    #[test]
    fn reading_a_lock_names_the_file_on_error() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("data.lock");
        std::fs::write(&path, "{\"version\": 1}").expect("write");
        let error = DataLock::read(&path).expect_err("incomplete");
        assert!(
            error
                .to_string()
                .contains("data.lock: not a gantry data lock: missing field"),
            "{error}"
        );
    }
}
