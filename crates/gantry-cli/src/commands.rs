//! Command handlers: one module per subcommand, and what they share.

mod eval;
mod eval_gate;
mod lineage;
mod markdown;
mod publish;
mod register;
mod registries;
mod registry;
mod report;
mod train;
mod validate_data;

use anyhow::Result;
use gantry_ci::{Environment, Masker, Platform, PlatformChoice, RunContext};
use gantry_core::ExitCode;

use crate::cli::{CiChoice, Cli, Command};
use crate::printer::Printer;

pub(crate) fn dispatch(
    cli: &Cli,
    environment: &Environment,
    printer: &mut Printer,
) -> Result<ExitCode> {
    let session = Session::start(cli, environment, printer)?;
    match &cli.command {
        Command::Report(args) => report::run(args, &session, printer),
        Command::EvalGate(args) => {
            eval_gate::run(args, &session, printer).map_err(with_registry_flag)
        }
        Command::Eval(args) => eval::run(args, &session, printer),
        Command::ValidateData(args) => validate_data::run(args, &session, printer),
        Command::Register(args) => verdicts_of_registry(
            register::run(args, &session, printer).map_err(with_registry_flag),
            printer,
        ),
        Command::Registry(args) => verdicts_of_registry(
            registry::run(args, &session, printer).map_err(with_registry_flag),
            printer,
        ),
        Command::Train(args) => train::run(args, &session, printer).map_err(with_train_flag),
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
        cli: &Cli,
        environment: &'a Environment,
        printer: &mut Printer,
    ) -> Result<Session<'a>> {
        let choice = match cli.global.ci {
            CiChoice::Auto => PlatformChoice::Auto,
            CiChoice::Github => PlatformChoice::GitHub,
            CiChoice::Gitlab => PlatformChoice::GitLab,
            CiChoice::Local => PlatformChoice::Local,
        };
        let platform = Platform::detect(choice, environment);
        printer.set_platform(platform);
        let mut masker = Masker::new(printer.redactor().clone());
        let mut announce = printer.raw_commands();
        let mut credentials: Vec<(String, gantry_core::Secret)> =
            gantry_ci::secrets_in_environment(environment)
                .into_iter()
                .map(|(name, secret)| (name.to_owned(), secret))
                .collect();
        if let Command::Eval(args) = &cli.command
            && !credentials
                .iter()
                .any(|(name, _)| *name == args.api_key_env)
            && let Some(key) = environment
                .get(&args.api_key_env)
                .filter(|key| !key.is_empty())
        {
            credentials.push((args.api_key_env.clone(), gantry_core::Secret::new(key)));
        }
        for (name, secret) in credentials {
            let admission = masker.add(platform, &secret, &mut announce)?;
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
