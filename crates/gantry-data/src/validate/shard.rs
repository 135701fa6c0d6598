//! Shards: one job checks every N-th record and writes a shard file; a merge folds them into one run's report.

use std::path::PathBuf;

use super::engine::{Scan, finish, scan_data, settings_of};
use super::record::{Partial, Shard};
use super::{ValidateOptions, Validation};
use crate::error::{Error, Result};
use crate::formats::RecordFormat;
use crate::lock::LockedFile;
use crate::source::DataFile;

/// Version of shard files. 2: word, shingle and n-gram hashes are
/// polynomial window hashes (signatures and duplicate keys differ from 1's).
pub const SHARD_VERSION: u32 = 2;

/// What one shard of a CI matrix found: merged by [`merge_shards`] into the
/// same report, lock and summary as one unsharded run.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardFile {
    /// Always `gantry-data-shard`.
    pub kind: String,
    /// Format version.
    pub version: u32,
    /// Which shard this is.
    pub shard: Shard,
    /// The options that change what is found; every shard must agree.
    pub settings: String,
    /// The tokenizer behind the token counts.
    pub(crate) tokenizer: String,
    /// The token limit the shards checked against.
    pub(crate) max_tokens: Option<u64>,
    pub(crate) format: Option<RecordFormat>,
    pub(crate) files: Vec<DataFile>,
    pub(crate) locked: Vec<LockedFile>,
    pub(crate) eval_items: Option<Vec<crate::contamination::EvalItem>>,
    pub(crate) partial: Partial,
}

/// Checks only `shard`'s records, for a CI matrix job; [`merge_shards`] combines the shards.
pub fn validate_shard(options: &ValidateOptions, shard: Shard) -> Result<ShardFile> {
    let scan = scan_data(options, Some(shard), &mut |_| {})?;
    Ok(ShardFile {
        kind: "gantry-data-shard".to_owned(),
        version: SHARD_VERSION,
        shard,
        settings: settings_of(options),
        tokenizer: options.tokenizer.clone(),
        max_tokens: options.max_tokens,
        format: scan.format,
        files: scan.files,
        locked: scan.locked,
        eval_items: scan.eval_items,
        partial: scan.total,
    })
}

/// Merges shard files into one validation. `options` give the policy,
/// reference and previous lock; the data options come from the shards.
pub fn merge_shards(options: &ValidateOptions, paths: &[String]) -> Result<Validation> {
    let mut shard_paths: Vec<PathBuf> = Vec::new();
    for pattern in paths {
        if pattern.contains(['*', '?', '[']) {
            let matches = glob::glob(pattern).map_err(|error| Error::BadPattern {
                pattern: pattern.clone(),
                reason: error.to_string(),
            })?;
            shard_paths.extend(matches.filter_map(std::result::Result::ok));
        } else {
            shard_paths.push(PathBuf::from(pattern));
        }
    }
    shard_paths.sort();
    if shard_paths.is_empty() {
        return Err(Error::Merge {
            reason: format!("{} matched no shard files", paths.join(" ")),
        });
    }
    let mut shards: Vec<(PathBuf, ShardFile)> = Vec::new();
    for path in shard_paths {
        let error = |reason: String| Error::Merge {
            reason: format!("{}: {reason}", path.display()),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| error(source.to_string()))?;
        let shard: ShardFile = serde_json::from_str(&text)
            .map_err(|source| error(format!("not a gantry shard file: {source}")))?;
        if shard.kind != "gantry-data-shard" {
            return Err(error(
                "not a gantry shard file (kind is not gantry-data-shard)".to_owned(),
            ));
        }
        if shard.version != SHARD_VERSION {
            return Err(error(format!(
                "shard format {} is not this gantry's ({SHARD_VERSION}); run every shard and the merge with the same gantry version",
                shard.version
            )));
        }
        shards.push((path, shard));
    }
    shards.sort_by_key(|(_, shard)| shard.shard.index);
    let count = shards[0].1.shard.count;
    let indices: Vec<u32> = shards.iter().map(|(_, shard)| shard.shard.index).collect();
    let expected: Vec<u32> = (1..=count).collect();
    if indices != expected || shards.iter().any(|(_, shard)| shard.shard.count != count) {
        return Err(Error::Merge {
            reason: format!("expected shards 1..={count} of {count} once each, got {indices:?}"),
        });
    }
    let (first_path, first) = &shards[0];
    for (path, shard) in &shards[1..] {
        let differs = |what: &str| Error::Merge {
            reason: format!(
                "{} and {} disagree on {what}: they did not run on the same data and options",
                first_path.display(),
                path.display()
            ),
        };
        if shard.settings != first.settings {
            return Err(differs("options"));
        }
        let hashes = |files: &[LockedFile]| {
            files
                .iter()
                .map(|file| (file.path.clone(), file.sha256, file.size))
                .collect::<Vec<_>>()
        };
        if hashes(&shard.locked) != hashes(&first.locked) {
            return Err(differs("the data files (paths, sizes or SHA-256)"));
        }
    }
    let mut shards = shards.into_iter().map(|(_, shard)| shard);
    let Some(first) = shards.next() else {
        return Err(Error::Merge {
            reason: "no shard files".to_owned(),
        });
    };
    let mut scan = Scan {
        files: first.files,
        format: first.format,
        total: first.partial,
        locked: first.locked,
        eval_items: first.eval_items,
    };
    for shard in shards {
        scan.format = scan.format.or(shard.format);
        for (locked, other) in scan.locked.iter_mut().zip(&shard.locked) {
            locked.records += other.records;
        }
        scan.total.merge(shard.partial);
    }
    // Settings come from the shards, thresholds from the merge job.
    let mut merged_options = options.clone();
    merged_options.max_tokens = first.max_tokens;
    merged_options.tokenizer = first.tokenizer;
    finish(&merged_options, scan)
}
