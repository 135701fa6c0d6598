/*!
MLflow's REST API as gantry uses it.

[`MlflowApi`] makes JSON calls of the tracking API and moves artifacts
through the server's artifact proxy (`--serve-artifacts`), with gantry's
retry loop and the credentials of [`MlflowAuth`]. The model registry's MLflow
backend and train-on-runner's run tracking both use it; neither depends on
the other.
*/

mod api;

use gantry_core::{RetryPolicy, Secret};

pub use crate::api::MlflowApi;

/// How gantry authenticates to MLflow.
#[derive(Debug, Clone)]
pub enum MlflowAuth {
    /// `Authorization: Bearer` (`MLFLOW_TRACKING_TOKEN`, a GitLab token).
    Token(Secret),
    /// HTTP Basic (`MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD`).
    Basic(String, Secret),
}

/// How a client talks to its server.
#[derive(Debug, Clone, Default)]
pub struct MlflowOptions {
    /// Credentials, when the server needs them.
    pub auth: Option<MlflowAuth>,
    /// Retries and timeouts.
    pub retry: RetryPolicy,
}

/// What can go wrong talking to MLflow; each names the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server's address or a request could not be used.
    #[error("{0}")]
    Input(String),
    /// A run or artifact is not there.
    #[error("{0}")]
    NotFound(String),
    /// The server failed or answered something unusable.
    #[error("{0}")]
    Remote(String),
}

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
