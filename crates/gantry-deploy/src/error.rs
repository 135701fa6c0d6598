//! Errors of the router, the controller and the analysis.

/// What can go wrong while deploying.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag, file or request was wrong: the message says which and what
    /// would be right.
    #[error("{0}")]
    Input(String),
    /// A file could not be read or written.
    #[error("{action} {}: {error}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The router (or another service) refused or failed a request.
    #[error("{0}")]
    Service(String),
    /// A model server could not be started or never became healthy.
    #[error("{message}")]
    Backend {
        /// What happened.
        message: String,
        /// The server's last log lines.
        log_tail: Vec<String>,
    },
    /// Another controller holds the rollout.
    #[error("{0}")]
    Busy(String),
    /// Another field manager owns a field gantry must write (server-side
    /// apply's 409), or the object changed under gantry's write.
    #[error("{0}")]
    Conflict(String),
}

/// This crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

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

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, fsync'd, renamed over it, and the directory fsync'd.
pub(crate) fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(parent).map_err(Error::io("cannot create", parent))?;
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = parent.join(format!(".{name}.tmp.{}", std::process::id()));
    let written = std::fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    written
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(Error::io("cannot write", path))?;
    if let Ok(directory) = std::fs::File::open(parent) {
        let _ = directory.sync_all();
    }
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// `ms` since the epoch as RFC 3339 UTC.
pub(crate) fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}
