//! Errors of reading a model directory: each names the file involved.

use std::path::PathBuf;

/// What can go wrong while reading, inspecting or hashing a model directory.
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
    /// A file of the directory is not usable (a symlink out of it, a FIFO, a
    /// file that is not what its name says).
    #[error("{0}")]
    Input(String),
    /// The directory as given is not usable: `{path}: {reason}`. `what` says
    /// what it was given as, so the CLI can name the flag that gave it.
    #[error("{path}: {reason}")]
    Given {
        /// What the path was given as (`model directory`).
        what: &'static str,
        /// The path as given.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A pickle-based checkpoint imports something that can run code.
    #[error(
        "{path}: pickle imports that can run code on load: {}; convert the checkpoint to safetensors, or pass --allow-pickle if you trust its producer",
        imports.join(", ")
    )]
    UnsafePickle {
        /// The file, relative to the model directory.
        path: String,
        /// The imports no allow-list vouches for.
        imports: Vec<String>,
    },
    /// A file changed while it was being hashed.
    #[error("{} changed while it was being hashed ({what}); wait for the writer to finish and register again", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// What changed.
        what: String,
    },
    /// A safetensors header is invalid.
    #[error(transparent)]
    Core(#[from] gantry_core::Error),
}

impl Error {
    /// An I/O error on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |error| Error::Io {
            action,
            path,
            error,
        }
    }
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
