//! Errors of the CI layer. Each names the input, file, host or endpoint at fault.

/// What can go wrong while reading the CI environment or talking to a forge.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An action input (or GitLab input variable) that no flag of the command matches.
    #[error(
        "unknown input `{input}` (from `{variable}`) for `gantry {command}`; known inputs: {known}"
    )]
    UnknownInput {
        /// The input name as the user wrote it.
        input: String,
        /// The environment variable it arrived in.
        variable: String,
        /// The subcommand.
        command: String,
        /// A comma-separated list of valid inputs.
        known: String,
    },
    /// A required input was given neither as a flag nor as an input.
    #[error(
        "input `{input}` is required by `gantry {command}`: set it under `with:` (GitHub), `inputs:` (GitLab) or pass `--{input}`"
    )]
    MissingInput {
        /// The input name.
        input: String,
        /// The subcommand.
        command: String,
    },
    /// A boolean input held something other than the six accepted spellings.
    #[error(
        "input `{input}` must be a boolean (true, True, TRUE, false, False or FALSE), got `{value}`"
    )]
    InvalidBoolean {
        /// The input name.
        input: String,
        /// What it held.
        value: String,
    },
    /// Credentials in the environment or a credentials file are unusable.
    #[error("{0}")]
    Input(String),
    /// An output could not be written.
    #[error("cannot write output `{name}` to {path} (from ${variable}): {reason}")]
    Output {
        /// The output name.
        name: String,
        /// The file it was going to.
        path: String,
        /// The environment variable that named the file.
        variable: String,
        /// Why it failed.
        reason: String,
    },
    /// A file the CI layer writes (summary, report) could not be written.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The event payload or another CI-provided file was unreadable.
    #[error("cannot read {path} (from ${variable}): {reason}")]
    CiFile {
        /// The file.
        path: String,
        /// The variable that named it.
        variable: String,
        /// Why.
        reason: String,
    },
    /// The forge cannot be reached because something it needs is missing.
    #[error("{platform} API unavailable: {reason}")]
    ForgeUnavailable {
        /// GitHub or GitLab.
        platform: &'static str,
        /// What is missing, and how to provide it.
        reason: String,
    },
    /// The forge answered with an error status.
    #[error("{method} {url} answered {status}{}", message.as_deref().map(|message| format!(": {message}")).unwrap_or_default())]
    Http {
        /// The HTTP method.
        method: String,
        /// The URL (with no credentials).
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The forge's own error message, if it sent one.
        message: Option<String>,
    },
    /// The forge could not be reached at all.
    #[error("{method} {url} failed after {attempts} attempt(s): {reason}")]
    Connection {
        /// The HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// How many times it was tried.
        attempts: u32,
        /// The last transport error.
        reason: String,
    },
    /// The forge answered 2xx with a body gantry could not understand.
    #[error("{method} {url} answered with an unexpected body: {reason}")]
    UnexpectedBody {
        /// The HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// The parse error.
        reason: String,
    },
}

impl Error {
    /// The HTTP status, when the forge answered with an error status.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Error::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
