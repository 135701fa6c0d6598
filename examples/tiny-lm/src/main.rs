//! The `tiny-lm` command line: an example workload for gantry (see the library docs).

use std::process::ExitCode;

/// candle allocates a fresh buffer per tensor op; glibc returns large ones to
/// the kernel each time, and the page faults cost more than the arithmetic.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let code = tiny_lm::cli::main_from(std::env::args_os());
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
