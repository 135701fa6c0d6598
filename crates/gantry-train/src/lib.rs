/*!
train-on-runner: run a user's training command on a self-hosted GPU runner.

Built so far: [`gpu`] — the host's GPUs from `nvidia-smi`, which are free,
and leases held with kernel locks (`flock`) so that two jobs on one host
never share a GPU and a killed job never leaves a stale lock. The launcher
(restarts from checkpoints, signal forwarding, metrics, `run.json`), the
Slurm and Kubernetes backends and `gantry train` come next.
*/

mod error;
pub mod gpu;

pub use crate::error::{Error, Result};
pub use crate::gpu::{Gpu, GpuLease, GpuRequest, acquire, inventory, inventory_from};
