//! deploy-canary: the embedded weighted router (`gantry router`), the rollout
//! state machine, its targets and the canary analysis.
//!
//! The controller never knows which target runs the versions: a
//! [`target::Target`] brings versions up, sets weights and reads metrics;
//! `local` drives the embedded router's admin API, Kubernetes comes next.

pub mod analysis;
pub mod api;
mod error;
pub mod router;

pub use crate::error::{Error, Result};
