//! The `gantry` binary: hands the process's arguments and environment to [`gantry_cli::run`].

fn main() -> std::process::ExitCode {
    gantry_cli::quiet_panics();
    let environment = gantry_ci::Environment::from_process();
    let code = gantry_cli::run(std::env::args_os().collect(), &environment);
    std::process::ExitCode::from(code.as_u8())
}
