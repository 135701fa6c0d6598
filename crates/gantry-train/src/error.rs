//! Errors of train-on-runner: each names the flag, file or tool at fault.

/// What can go wrong while preparing or running a training job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag, the host or a file is not usable as given.
    #[error("{0}")]
    Input(String),
    /// A server (MLflow, Slurm's controller) failed or could not be reached.
    #[error("{0}")]
    Remote(String),
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
