//! End-to-end tests of the `gantry` binary: one test binary, one module per area.

/// Help, version, exit codes, inputs and their errors.
mod cli;
/// `gantry router` and `gantry deploy-canary` with tiny-lm servers, Prometheus and the fake GitHub API.
mod deploy;
/// `gantry deploy-canary --target kubernetes` against the fake API server and a real Prometheus.
mod deploy_kubernetes;
/// `gantry eval` against tiny-lm's OpenAI-compatible server.
mod eval;
/// `gantry eval-gate` on tiny-lm's real evaluation results.
mod eval_gate;
/// Planted credentials never reach anything gantry writes.
mod leaks;
/// `gantry monitor` with tiny-lm servers, Prometheus, Alertmanager and the fake GitHub API.
mod monitor;
/// What gantry ships (actions, templates, image, installer), checked with the real tools.
mod packaging;
/// `gantry prepare` with tiny-lm's conversions and a worse model as variants.
mod prepare;
/// `gantry quickstart` end to end, and the bundled tiny-lm.
mod quickstart;
/// `gantry register` and `gantry registry` on a trained tiny-lm.
mod register;
/// `gantry report` against the fake GitHub and GitLab APIs.
mod report;
/// Shared helpers: a sandboxed `gantry` command.
mod support;
/// `gantry train` running tiny-lm: restarts, cancels, GPU locks, MLflow.
mod train;
/// `gantry validate-data` on small datasets with planted defects.
mod validate_data;
