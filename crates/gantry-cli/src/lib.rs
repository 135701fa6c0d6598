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
    // Credentials inside URLs on the command line (`http://user:pw@host`)
    // are known before anything prints, clap's own errors included.
    register_url_credentials(
        argv.iter().map(|argument| argument.to_string_lossy()),
        printer.redactor(),
    );
    let argv = match settings::resolve_argv(argv, environment) {
        Ok(argv) => argv,
        Err(error) => {
            printer.error(&format!("{error:#}"));
            return ExitCode::ERROR;
        }
    };
    // Inputs (`INPUT_TRACKING_URI`) became flags: their URLs too.
    register_url_credentials(argv.iter().map(std::borrow::Cow::from), printer.redactor());
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

fn register_url_credentials<'a>(
    argv: impl Iterator<Item = std::borrow::Cow<'a, str>>,
    redactor: &gantry_core::Redactor,
) {
    for argument in argv {
        for secret in gantry_core::credentials_in_urls(&argument) {
            redactor.add(&secret);
        }
    }
}
