/*!
The `gantry` command: argument definitions, settings resolution and command handlers.

The binary (`main.rs`) is a thin shell around [`run`]. The argument
definitions in [`cli`] are the one source of truth for every face of gantry:
`cargo xtask codegen` turns them, together with [`packaging`], into the
GitHub action metadata and the GitLab template headers.
*/

pub mod cli;
mod commands;
pub mod packaging;
mod printer;
mod settings;

use gantry_ci::Environment;
use gantry_core::ExitCode;

/// Runs gantry with `argv` (program name first) in `environment`, printing
/// to the process's stdout and stderr. Returns the exit code to end with.
pub fn run(argv: Vec<std::ffi::OsString>, environment: &Environment) -> ExitCode {
    let mut printer = printer::Printer::new(environment);
    let argv = match settings::resolve_argv(argv, environment) {
        Ok(argv) => argv,
        Err(error) => {
            printer.error(&format!("{error:#}"));
            return ExitCode::ERROR;
        }
    };
    let cli = match <cli::Cli as clap::Parser>::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.exit_code() == 0 {
                ExitCode::PASS
            } else {
                ExitCode::ERROR
            };
            printer.clap_error(&error);
            return code;
        }
    };
    printer.configure(&cli.global);
    match commands::dispatch(&cli, environment, &mut printer) {
        Ok(code) => code,
        Err(error) => {
            printer.error(&format!("{error:#}"));
            ExitCode::ERROR
        }
    }
}
