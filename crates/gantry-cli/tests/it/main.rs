//! End-to-end tests of the `gantry` binary: one test binary, one module per area.

/// Help, version, exit codes, inputs and their errors.
mod cli;
/// `gantry report` against the fake GitHub and GitLab APIs.
mod report;
/// Shared helpers: a sandboxed `gantry` command.
mod support;
