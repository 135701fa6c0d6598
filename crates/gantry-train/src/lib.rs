/*!
train-on-runner: run a user's training command on a self-hosted GPU runner
(or through Slurm) as a reproducible, tracked, resumable CI step.

- [`gpu`] — the host's GPUs from `nvidia-smi`, which are free, and leases
  held with kernel locks (`flock`) so that two jobs on one host never share a
  GPU and a killed job never leaves a stale lock.
- [`launch`] — the attempt loop every backend shares — restarts from the
  newest complete [`checkpoint`], signal forwarding with a grace period,
  timeouts, [`metrics`] following.
- [`kubernetes`] — the same run as a Kubernetes Job or Kubeflow PyTorchJob
  manifest, checked against the typed Kubernetes definitions.
- [`local`] — the command as a process group on the runner.
- [`slurm`] — each attempt a batch job: `sbatch`, output and state
  followed, `scancel` on cancel, resubmission after preemption.
- [`tracking`] — the run on an MLflow tracking server.
- [`job`] — one run from flags to `run.json`.
- [`record`] — `run.json`.
- [`summary`] — the job summary: attempts and a loss curve.
*/

pub mod checkpoint;
mod error;
pub mod gpu;
pub mod job;
pub mod kubernetes;
pub mod launch;
pub mod local;
pub mod metrics;
pub mod record;
pub mod slurm;
pub mod summary;
pub mod tracking;

pub use crate::error::{Error, Result};
pub use crate::gpu::{Gpu, GpuLease, GpuRequest, acquire, inventory, inventory_from};
pub use crate::record::{RunRecord, Status, run_record_schema};
