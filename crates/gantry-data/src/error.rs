//! Errors of validate-data: unusable input (exit 2), as opposed to failed checks (exit 1).

use std::path::PathBuf;

/// Why validate-data could not do its job. Each names the file, position or
/// field; the command line's flags are the CLI's to add (a reference read as
/// data must not be reported as `--data`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `--data` matched no data file.
    #[error(
        "{patterns} matched no data files: expected .jsonl, .json, .csv, .parquet or .txt files (optionally .gz or .zst), or directories holding them"
    )]
    NoData {
        /// The patterns as given.
        patterns: String,
    },
    /// A `--data` glob pattern is malformed.
    #[error("{pattern} is not a valid glob pattern: {reason}")]
    BadPattern {
        /// The pattern.
        pattern: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A file could not be opened or read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Compressed data is corrupt or truncated.
    #[error("{}: corrupt or truncated {codec} data after {offset} decompressed bytes: {reason}", path.display())]
    Decompress {
        /// The file.
        path: PathBuf,
        /// gzip or zstd.
        codec: &'static str,
        /// Decompressed bytes read before the failure.
        offset: u64,
        /// The decoder's message.
        reason: String,
    },
    /// The file has a data extension but holds binary content.
    #[error("{}: not a text file (NUL byte at byte {offset}); expected {expected}", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
        /// Where the NUL byte is.
        offset: u64,
        /// What the extension promised.
        expected: &'static str,
    },
    /// A data file kind gantry recognizes but cannot read yet.
    #[error("{}: {kind} files are not supported by this build; convert to JSONL or CSV", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// The kind.
        kind: &'static str,
    },
    /// `--shard` is not `I/N` with `1 <= I <= N`.
    #[error("{value} is invalid: expected I/N with 1 <= I <= N, e.g. 1/4")]
    BadShard {
        /// The value given.
        value: String,
    },
    /// The policy file is unreadable or invalid.
    #[error("{}: {reason}", path.display())]
    Policy {
        /// The policy file.
        path: PathBuf,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// A previous data lock is unreadable.
    #[error("{}: {reason}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The `--schema` file is unusable.
    #[error("{}: {reason}", path.display())]
    Schema {
        /// The schema file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Shard files cannot be merged.
    #[error("{reason}")]
    Merge {
        /// What is wrong and what would be right.
        reason: String,
    },
    /// An eval set is unusable for the contamination check.
    #[error("{}: {reason}", path.display())]
    EvalSet {
        /// The eval file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The drift reference is unusable.
    #[error("{}: {reason}", path.display())]
    Reference {
        /// The reference path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tokenizer could not be loaded.
    #[error("{name}: {reason}")]
    Tokenizer {
        /// The tokenizer name or path.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// An output file could not be written.
    #[error("cannot write {}: {error}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Serializing a report failed.
    #[error("cannot serialize {what}: {error}")]
    Serialize {
        /// What was being serialized.
        what: &'static str,
        /// The error.
        error: serde_json::Error,
    },
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
