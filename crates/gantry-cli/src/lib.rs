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

/// The example pipelines (`examples/github/`, `examples/gitlab/`): what
/// `gantry init` writes for the example project at `project`, as (path
/// relative to the repository root, contents). `cargo xtask codegen` writes them.
pub fn example_pipelines(
    project: &std::path::Path,
) -> anyhow::Result<Vec<(std::path::PathBuf, String)>> {
    commands::init::example_pipelines(project)
}

/// Runs gantry with `argv` (program name first) in `environment`, printing
/// to the process's stdout and stderr. Returns the exit code to end with.
pub fn run(argv: Vec<std::ffi::OsString>, environment: &Environment) -> ExitCode {
    // `gantry tiny-lm …` is the bundled example workload, with its own
    // command line: handed over whole, before gantry's flags and inputs.
    if argv.get(1).is_some_and(|command| command == cli::TINY_LM) {
        return match tiny_lm::cli::main_from(argv.into_iter().skip(1)) {
            0 => ExitCode::PASS,
            _ => ExitCode::ERROR,
        };
    }
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
    // A panic is a bug, but it still ends as an error (exit 2) with a
    // message that passes through the redactor, not as exit 101 with a
    // payload that may quote data.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        commands::dispatch(&cli, environment, &mut printer)
    }));
    match outcome {
        Ok(Ok(code)) => code,
        Ok(Err(error)) => {
            printer.error(&format!("{error:#}"));
            ExitCode::ERROR
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            let place = PANIC_PLACE
                .lock()
                .ok()
                .and_then(|place| place.clone())
                .unwrap_or_default();
            printer.error(&format!(
                "internal error, a bug in gantry: {what}{place}; please report it at https://github.com/gantry-dev/gantry/issues"
            ));
            ExitCode::ERROR
        }
    }
}

/// Where the last panic happened, kept by [`quiet_panics`]'s hook.
static PANIC_PLACE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Replaces the default panic hook (which prints the payload, unredacted,
/// to stderr) with one that only remembers where the panic happened; [`run`]
/// reports it through the redacting printer and exits 2.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        if let (Ok(mut place), Some(location)) = (PANIC_PLACE.lock(), info.location()) {
            *place = Some(format!(" at {}:{}", location.file(), location.line()));
        }
    }));
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
