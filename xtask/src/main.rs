//! Repository automation for gantry: `cargo xtask codegen`, `cargo xtask test`, `cargo xtask bench`.

mod bench;
mod codegen;
mod layering;
mod test;

use clap::{Parser, Subcommand};

/// gantry's repository automation.
#[derive(Debug, Parser)]
#[command(name = "xtask")]
struct Xtask {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Regenerate action.yml files and GitLab templates from the CLI's argument definitions.
    Codegen(codegen::CodegenArgs),
    /// Install the test tools (podman, zizmor, actionlint, gitlab-ci-local…) and run every test.
    Test(test::TestArgs),
    /// Time gantry against named peers and print ratios.
    Bench(bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let xtask = Xtask::parse();
    let result = match xtask.command {
        Task::Codegen(args) => codegen::run(&args),
        Task::Test(args) => test::run(&args),
        Task::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            #[expect(clippy::print_stderr, reason = "xtask reports its own errors")]
            {
                eprintln!("xtask: error: {error:#}");
            }
            std::process::ExitCode::from(2)
        }
    }
}

/// The repository root (the parent of `xtask/`).
fn repository_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}
