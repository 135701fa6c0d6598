//! The `gantry` binary: hands the process's arguments and environment to [`gantry_cli::run`].

/// mimalloc in the static musl build: musl's own allocator takes a global
/// lock on every call, and validate-data's workers allocate per record on
/// every core at once. glibc's allocator keeps per-thread arenas; mimalloc
/// measured no faster there, so other builds keep it.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    gantry_cli::quiet_panics();
    let environment = gantry_ci::Environment::from_process();
    let code = gantry_cli::run(std::env::args_os().collect(), &environment);
    std::process::ExitCode::from(code.as_u8())
}
