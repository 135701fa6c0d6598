//! `cargo xtask bench`: runs the benchmark suite in `bench/` (see BENCHMARKS.md).

use std::process::ExitCode;

use anyhow::{Context as _, Result};

/// Arguments of `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Runs per command (hyperfine `--runs`).
    #[arg(long, default_value_t = 30)]
    runs: u32,
}

pub(crate) fn run(args: &BenchArgs) -> Result<ExitCode> {
    let root = crate::repository_root();
    let status = std::process::Command::new("bash")
        .arg(root.join("bench/run.sh"))
        .env("BENCH_RUNS", args.runs.to_string())
        .current_dir(&root)
        .status()
        .context("running bench/run.sh")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
