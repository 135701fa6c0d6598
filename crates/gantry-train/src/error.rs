//! Errors of train-on-runner: each names the file, value or tool at fault;
//! which flag gave a value is the CLI's to say.

/// What can go wrong while preparing or running a training job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The host or a file is not usable as given.
    #[error("{0}")]
    Input(String),
    /// A value the caller gave is not usable: `{value}: {reason}` (or just
    /// the reason when there is no value to show). `what` says what it was
    /// given as (`GPU request`, `config file`, `data lock`, `run directory`,
    /// `checkpoint directory`, `output directory`, `metrics file`,
    /// `Kubernetes template`, `tracking server`, `training command`), so the
    /// CLI can name the flag that gave it.
    #[error("{}{reason}", if value.is_empty() { String::new() } else { format!("{value}: ") })]
    Given {
        /// What the value was given as.
        what: &'static str,
        /// The value as given (may be empty).
        value: String,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// A server (MLflow, Slurm's controller) failed or could not be reached.
    #[error("{0}")]
    Remote(String),
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A [`Error::Given`].
pub(crate) fn given(
    what: &'static str,
    value: impl std::fmt::Display,
    reason: impl Into<String>,
) -> Error {
    Error::Given {
        what,
        value: value.to_string(),
        reason: reason.into(),
    }
}
