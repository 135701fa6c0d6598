//! Errors of the shared types: parsing digests and serializing canonical JSON.

/// What can go wrong while handling the shared types.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A digest string was not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid digest `{value}`: expected `sha256:` followed by 64 lowercase hex digits")]
    InvalidDigest {
        /// The text that failed to parse.
        value: String,
    },
    /// A value could not be serialized to JSON.
    #[error("cannot serialize to canonical JSON: {0}")]
    Json(serde_json::Error),
    /// A file is not a valid safetensors file.
    #[error("{file}: not a valid safetensors file: {reason}")]
    Safetensors {
        /// The file, as the caller names it.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A file is not a valid GGUF file.
    #[error("{file}: not a valid GGUF file: {reason}")]
    Gguf {
        /// The file, as the caller names it.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// Opening or reading a file failed.
    #[error("{action} {}: {error}", path.display())]
    Io {
        /// What was being done (`cannot open`, `cannot read`).
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// Reading the bytes to hash failed.
    #[error("cannot read {what} to hash it: {error}")]
    Read {
        /// What was being read (usually a path).
        what: String,
        /// The underlying I/O error.
        error: std::io::Error,
    },
}

// By hand rather than `#[from]`, which would also make the serde error this
// one's source: printed with its chain, the cause would appear twice.
impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Error {
        Error::Json(error)
    }
}

impl Error {
    /// An I/O error on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<std::path::PathBuf>,
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
