//! Errors of the registry: each names the file, model, version or host involved.

use std::path::PathBuf;

use gantry_core::Digest;

/// What can go wrong while registering, resolving, verifying or pulling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{action} {}: {error}", path.display())]
    Io {
        /// What was being done (`cannot read`, `cannot write`, …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The model directory or a lineage file is not usable as given.
    #[error("{0}")]
    Input(String),
    /// A file or directory the caller named is not usable: `{path}: {reason}`.
    /// `what` says what it was given as (`model directory`, `run record`,
    /// `data lock`, `gate report`, `evaluation results`, `registry`), so the
    /// CLI can name the flag that gave it.
    #[error("{path}: {reason}")]
    Given {
        /// What the path was given as.
        what: &'static str,
        /// The path or URI as given.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A name, version or alias is not valid.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidName {
        /// `model name`, `version` or `alias`.
        what: &'static str,
        /// The rejected text.
        value: String,
        /// What a valid one looks like.
        reason: &'static str,
    },
    /// No such model, version, alias or digest.
    #[error("{0}")]
    NotFound(String),
    /// The requested version exists with different content.
    #[error(
        "{name} {version} is already registered with digest {existing}; this model's digest is {new}. Versions are immutable: register it as another version (or --version auto)"
    )]
    VersionTaken {
        /// The model.
        name: String,
        /// The version asked for.
        version: String,
        /// The digest registered under it.
        existing: Digest,
        /// The digest of what was being registered.
        new: Digest,
    },
    /// An alias moved between reading it and the compare-and-swap.
    #[error(
        "{name}@{alias} is {actual}, not the expected {expected}: someone else moved it; read the alias again and retry"
    )]
    AliasConflict {
        /// The model.
        name: String,
        /// The alias.
        alias: String,
        /// What the caller expected the alias to point at.
        expected: String,
        /// What it points at.
        actual: String,
    },
    /// Stored content does not match its digest.
    #[error("{what}: expected {expected}, found {actual}")]
    Tampered {
        /// The file or document.
        what: String,
        /// The digest recorded in the manifest.
        expected: Digest,
        /// The digest of the bytes found.
        actual: Digest,
    },
    /// A registry document is not what this build can read.
    #[error("{}: {reason}", path.display())]
    Corrupt {
        /// The document.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A remote registry failed or answered something unusable; names the host.
    #[error("{0}")]
    Remote(String),
    /// A manifest could not be serialized or digested.
    #[error(transparent)]
    Core(#[from] gantry_core::Error),
    /// The model directory: an unsafe pickle, a file that changed while it
    /// was hashed, a file that is not usable.
    #[error(transparent)]
    Model(gantry_model::Error),
}

/// A model directory given on the command line is the registry's `Given`
/// (the CLI names its flag), an I/O failure its `Io`; the rest stay the
/// model crate's own.
impl From<gantry_model::Error> for Error {
    fn from(error: gantry_model::Error) -> Error {
        match error {
            gantry_model::Error::Io {
                action,
                path,
                error,
            } => Error::Io {
                action,
                path,
                error,
            },
            gantry_model::Error::Given { what, path, reason } => {
                Error::Given { what, path, reason }
            }
            other => Error::Model(other),
        }
    }
}

impl From<gantry_mlflow::Error> for Error {
    fn from(error: gantry_mlflow::Error) -> Error {
        match error {
            gantry_mlflow::Error::NotFound(message) => Error::NotFound(message),
            gantry_mlflow::Error::Remote(message) => Error::Remote(message),
            other => Error::Input(other.to_string()),
        }
    }
}

impl Error {
    /// An I/O error on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            error: source,
        }
    }

    /// Whether the error is a verdict (the registry said no: a tampered file,
    /// an alias someone else moved, an unsafe pickle) rather than a failure to
    /// do the job. Verdicts exit 1, failures 2.
    pub fn is_verdict(&self) -> bool {
        matches!(
            self,
            Error::Tampered { .. }
                | Error::AliasConflict { .. }
                | Error::Model(gantry_model::Error::UnsafePickle { .. })
        )
    }
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
