//! Command handlers: one module per subcommand, and what they share.

mod deploy_canary;
mod eval;
mod eval_gate;
pub(crate) mod init;
mod lineage;
mod markdown;
mod monitor;
mod prepare;
mod publish;
mod quickstart;
mod register;
mod registries;
mod registry;
mod report;
mod router;
mod signals;
mod train;
mod validate_data;

use anyhow::Result;
use gantry_ci::{Environment, Masker, Platform, RunContext};
use gantry_core::ExitCode;

use crate::cli::{Cli, Command};
use crate::printer::Printer;
use crate::settings::{CommandSettings, GlobalSettings};

pub(crate) fn dispatch(
    cli: &Cli,
    environment: &Environment,
    printer: &mut Printer,
) -> Result<ExitCode> {
    let global = GlobalSettings::resolve(cli, environment);
    let session = Session::start(&global, environment, printer)?;
    let settings = CommandSettings::resolve(&cli.command, environment);
    let printer = &*printer;
    match settings {
        Err(error) => Err(match &cli.command {
            Command::Train(_) => with_train_flag(error),
            Command::EvalGate(_)
            | Command::Register(_)
            | Command::Registry(_)
            | Command::DeployCanary(_)
            | Command::Monitor(_)
            | Command::Prepare(_) => with_registry_flag(error),
            _ => error,
        }),
        Ok(CommandSettings::Report(args)) => report::run(args, &session, printer),
        Ok(CommandSettings::EvalGate(settings)) => {
            eval_gate::run(&settings, &session, printer).map_err(with_registry_flag)
        }
        Ok(CommandSettings::Eval(settings)) => eval::run(&settings, &session, printer),
        Ok(CommandSettings::ValidateData(settings)) => {
            validate_data::run(&settings, &session, printer)
        }
        Ok(CommandSettings::Register(args)) => verdicts_of_registry(
            register::run(args, &session, printer).map_err(with_registry_flag),
            printer,
        ),
        Ok(CommandSettings::Registry(args)) => verdicts_of_registry(
            registry::run(args, &session, printer).map_err(with_registry_flag),
            printer,
        ),
        Ok(CommandSettings::Train(settings)) => {
            train::run(&settings, &session, printer).map_err(with_train_flag)
        }
        Ok(CommandSettings::DeployCanary(args)) => {
            deploy_canary::run(args, &session, printer).map_err(with_registry_flag)
        }
        Ok(CommandSettings::Router(args)) => router::run(args, &session, printer),
        Ok(CommandSettings::Monitor(args)) => {
            monitor::run(args, &session, printer).map_err(with_registry_flag)
        }
        Ok(CommandSettings::Prepare(args)) => verdicts_of_registry(
            prepare::run(args, &session, printer).map_err(with_registry_flag),
            printer,
        ),
        Ok(CommandSettings::Quickstart(args)) => quickstart::run(args, &session, printer),
        Ok(CommandSettings::Init(args)) => init::run(args, &session, printer),
        // Reached only with a global flag before `tiny-lm` (otherwise
        // `run` hands the arguments over before parsing them).
        Ok(CommandSettings::TinyLm(args)) => {
            let argv = std::iter::once(crate::cli::TINY_LM.into())
                .chain(args.args.iter().map(std::ffi::OsString::from));
            Ok(match tiny_lm::cli::main_from(argv) {
                0 => ExitCode::PASS,
                _ => ExitCode::ERROR,
            })
        }
    }
}

/// A registry error about something the command line gave, with its flag:
/// the library names the path and what it was given as, the flag is ours.
fn with_registry_flag(error: anyhow::Error) -> anyhow::Error {
    let flag = match error.downcast_ref::<gantry_registry::Error>() {
        Some(gantry_registry::Error::Given { what, .. }) if error.chain().count() == 1 => {
            match *what {
                "model directory" => "--model-dir",
                "run record" => "--run-record",
                "data lock" => "--data-lock",
                "gate report" => "--gate-report",
                "evaluation results" => "--eval-results",
                "registry" => "--registry",
                _ => return error,
            }
        }
        _ => return error,
    };
    anyhow::anyhow!("{flag} {error}")
}

/// A train error about something the command line gave, with its flag.
fn with_train_flag(error: anyhow::Error) -> anyhow::Error {
    let (flag, no_value) = match error.downcast_ref::<gantry_train::Error>() {
        Some(gantry_train::Error::Given { what, value, .. }) if error.chain().count() == 1 => {
            let flag = match *what {
                "GPU request" => "--gpus",
                "config file" => "--config",
                "data lock" => "--data-lock",
                "run directory" => "--run-dir",
                "checkpoint directory" => "--checkpoint-dir",
                "output directory" => "--output-dir",
                "metrics file" => "--metrics-file",
                "Kubernetes template" => "--kubernetes-template",
                "tracking server" => "--tracking-uri",
                "training command" => "--command",
                _ => return error,
            };
            (flag, value.is_empty())
        }
        _ => return error,
    };
    if no_value {
        anyhow::anyhow!("{flag}: {error}")
    } else {
        anyhow::anyhow!("{flag} {error}")
    }
}

/// A registry error that is a verdict (a tampered file, an alias someone
/// else moved, an unsafe pickle) exits 1, not 2.
fn verdicts_of_registry(result: Result<ExitCode>, printer: &Printer) -> Result<ExitCode> {
    match result {
        Err(error)
            if error
                .downcast_ref::<gantry_registry::Error>()
                .is_some_and(gantry_registry::Error::is_verdict) =>
        {
            printer.error(&format!("{error:#}"));
            Ok(ExitCode::VERDICT_NO)
        }
        other => other,
    }
}

/// What every command knows about where it runs.
#[derive(Debug)]
pub(crate) struct Session<'a> {
    pub(crate) environment: &'a Environment,
    pub(crate) platform: Platform,
    pub(crate) context: RunContext,
    pub(crate) masker: Masker,
}

impl<'a> Session<'a> {
    /// Detects the platform, reads the run context and masks every token in
    /// the environment before anything else prints.
    fn start(
        global: &GlobalSettings,
        environment: &'a Environment,
        printer: &mut Printer,
    ) -> Result<Session<'a>> {
        let platform = Platform::detect(global.platform, environment);
        printer.set_platform(platform);
        let mut masker = Masker::new(printer.redactor().clone());
        let mut announce = printer.raw_commands();
        for (name, secret) in &global.credentials {
            let admission = masker.add(platform, secret, &mut announce)?;
            if let Some(reason) = admission.refusal() {
                printer.warning(&format!(
                    "${name} is not masked in gantry's output: {reason}; use a generated credential"
                ));
            }
        }
        drop(announce);
        let context = RunContext::from_environment(platform, environment)?;
        Ok(Session {
            environment,
            platform,
            context,
            masker,
        })
    }

    /// The redactor every byte the command writes passes through.
    pub(crate) fn redactor(&self) -> &gantry_core::Redactor {
        self.masker.redactor()
    }

    /// A single-threaded runtime for the forge calls of one command.
    pub(crate) fn block_on<F: std::future::Future>(&self, future: F) -> Result<F::Output> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(runtime.block_on(future))
    }
}

#[cfg(test)]
mod tests {
    /// Handlers share helpers through modules of their own (`markdown`,
    /// `registries`, `lineage`, `publish`), never through each other.
    #[test]
    fn handlers_do_not_import_each_other() {
        let handlers = [
            ("deploy_canary", include_str!("commands/deploy_canary.rs")),
            ("eval", include_str!("commands/eval.rs")),
            ("eval_gate", include_str!("commands/eval_gate.rs")),
            ("monitor", include_str!("commands/monitor.rs")),
            ("prepare", include_str!("commands/prepare.rs")),
            ("register", include_str!("commands/register.rs")),
            ("registry", include_str!("commands/registry.rs")),
            ("report", include_str!("commands/report.rs")),
            ("router", include_str!("commands/router.rs")),
            ("train", include_str!("commands/train.rs")),
            ("validate_data", include_str!("commands/validate_data.rs")),
        ];
        for (name, source) in handlers {
            for (other, _) in handlers {
                assert!(
                    other == name
                        || !(source.contains(&format!("commands::{other}::"))
                            || source.contains(&format!("commands::{other}}}"))
                            || source.contains(&format!("super::{other}::"))),
                    "commands/{name}.rs imports the {other} handler"
                );
            }
        }
    }
}
