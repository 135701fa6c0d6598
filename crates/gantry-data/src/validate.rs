//! The validation engine: streams every file once, in parallel chunks, and folds the results.
//!
//! Files are read in order. A reader thread decompresses and hashes the
//! bytes on disk and cuts the text into ~4 MiB chunks at line boundaries
//! (found with memchr); while rayon workers parse (sonic-rs) and check one
//! group of chunks, it reads the next. Each chunk yields a [`Partial`];
//! partials are merged in chunk order, so the result does not depend on
//! thread timing.
//!
//! Memory: the chunks in flight (about 4 MiB × 2 × threads, twice over
//! while the reader runs ahead) plus, for
//! duplicate detection, one entry per distinct record in each of two hash
//! maps — a 128-bit hash, a position and a count, about 80 bytes per distinct
//! record per map.

pub(crate) mod engine;
mod partition;
pub(crate) mod read;
pub(crate) mod record;
mod report;
mod shard;

use std::path::PathBuf;

use self::engine::{finish, scan_data};
use crate::drift::Summary;
use crate::error::Result;
use crate::formats::RecordFormat;
use crate::lock::DataLock;
use crate::policy::Policy;
use crate::report::Report;

pub use self::partition::{PARTITION_VERSION, PartitionFile, merge_partition, merge_partitions};
pub use self::record::Shard;
pub use self::shard::{SHARD_VERSION, ShardFile, merge_shards, validate_shard};

/// What to validate and how.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// Files, directories or glob patterns.
    pub data: Vec<String>,
    /// The record format; detected from the first record when `None`.
    pub format: Option<RecordFormat>,
    /// `o200k_base`, `cl100k_base` or `chars`.
    pub tokenizer: String,
    /// Records with more tokens than this fail the `max-tokens` check.
    pub max_tokens: Option<u64>,
    /// A data lock from an earlier run, to list what changed.
    pub previous_lock: Option<PathBuf>,
    /// Eval or benchmark files to check for contamination (any format).
    pub eval_set: Vec<String>,
    /// A reference for drift: a `summary.json` from an earlier run, or data paths.
    pub reference: Option<String>,
    /// A JSON Schema every record must match (for custom record shapes).
    pub schema: Option<PathBuf>,
    /// Thresholds.
    pub policy: Policy,
    /// Whether uncompressed files may be mapped into memory (faster). A file
    /// truncated by another process while mapped ends the process with
    /// SIGBUS; `false` reads every file with read(2) instead. The CLI sets it
    /// from `GANTRY_NO_MMAP`.
    pub map_files: bool,
}

/// The result of a validation: the report, the lock and the summary.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Every check, with values, thresholds and examples.
    pub report: Report,
    /// Hashes and counts of what was read.
    pub lock: DataLock,
    /// The distributions, for later drift checks.
    pub summary: Summary,
    /// The secrets found in the data (at most 10,000 distinct ones), for the
    /// redactor every writer of gantry shares. Written nowhere.
    pub found_secrets: Vec<String>,
}

/// How far a validation has come, for progress lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes on disk read so far.
    pub bytes_read: u64,
    /// Bytes on disk in all files.
    pub bytes_total: u64,
    /// Records checked so far.
    pub records: u64,
}

/// Validates the data `options` names.
pub fn validate(options: &ValidateOptions) -> Result<Validation> {
    validate_with_progress(options, &mut |_| {})
}

/// Validates the data `options` names, calling `progress` as the files are read.
pub fn validate_with_progress(
    options: &ValidateOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Validation> {
    let scan = scan_data(options, None, progress)?;
    finish(options, scan)
}
