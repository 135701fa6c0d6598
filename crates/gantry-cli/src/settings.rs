//! Settings: the command line completed by CI inputs before clap parses it
//! ([`resolve_argv`]), then flags and environment resolved once into typed
//! settings ([`GlobalSettings`], [`CommandSettings`]) that the handlers take,
//! so no handler converts arguments or reads the environment for them.

mod eval;
mod train;
mod validate_data;

use anyhow::{Context as _, Result};
use gantry_ci::{Environment, Platform, PlatformChoice, args_from_inputs};
use gantry_core::Secret;

pub(crate) use self::eval::{EvalGateSettings, EvalSettings};
pub(crate) use self::train::{KubernetesSettings, TrainSettings};
pub(crate) use self::validate_data::{ValidateDataSettings, with_flag as with_data_flag};
use crate::cli::{
    CiChoice, Cli, Command, DeployCanaryArgs, InitArgs, MonitorArgs, PrepareArgs, QuickstartArgs,
    RegisterArgs, RegistryArgs, ReportArgs, RouterArgs, TinyLmArgs,
};

/// What every command shares, resolved before anything prints.
#[derive(Debug)]
pub(crate) struct GlobalSettings {
    /// `--ci`.
    pub(crate) platform: PlatformChoice,
    /// Every credential to mask before anything prints: the tokens gantry
    /// reads from the environment, and any a command's flags name (eval's
    /// `--api-key-env`), by variable name.
    pub(crate) credentials: Vec<(String, Secret)>,
}

impl GlobalSettings {
    pub(crate) fn resolve(cli: &Cli, environment: &Environment) -> GlobalSettings {
        let platform = match cli.global.ci {
            CiChoice::Auto => PlatformChoice::Auto,
            CiChoice::Github => PlatformChoice::GitHub,
            CiChoice::Gitlab => PlatformChoice::GitLab,
            CiChoice::Local => PlatformChoice::Local,
        };
        let mut credentials: Vec<(String, Secret)> = gantry_ci::secrets_in_environment(environment)
            .into_iter()
            .map(|(name, secret)| (name.to_owned(), secret))
            .collect();
        let named = match &cli.command {
            Command::Eval(args) => {
                eval::api_key(args, environment).map(|key| (args.api_key_env.clone(), key))
            }
            Command::Monitor(args) => environment
                .get(&args.api_key_env)
                .filter(|key| !key.is_empty())
                .map(|key| (args.api_key_env.clone(), Secret::new(key))),
            _ => None,
        };
        if let Some((name, key)) = named
            && !credentials.iter().any(|(known, _)| *known == name)
        {
            credentials.push((name, key));
        }
        GlobalSettings {
            platform,
            credentials,
        }
    }
}

/// A command's settings, resolved from its flags and the environment.
#[derive(Debug)]
pub(crate) enum CommandSettings<'a> {
    /// `gantry report`: its flags are its settings.
    Report(&'a ReportArgs),
    /// `gantry eval-gate`.
    EvalGate(EvalGateSettings<'a>),
    /// `gantry eval`.
    Eval(EvalSettings<'a>),
    /// `gantry validate-data`.
    ValidateData(ValidateDataSettings<'a>),
    /// `gantry register`: its flags are its settings (the registry is opened
    /// with the session's redactor).
    Register(&'a RegisterArgs),
    /// `gantry registry …`.
    Registry(&'a RegistryArgs),
    /// `gantry train`.
    Train(Box<TrainSettings<'a>>),
    DeployCanary(&'a DeployCanaryArgs),
    Router(&'a RouterArgs),
    Monitor(&'a MonitorArgs),
    Prepare(&'a PrepareArgs),
    Quickstart(&'a QuickstartArgs),
    Init(&'a InitArgs),
    TinyLm(&'a TinyLmArgs),
}

impl<'a> CommandSettings<'a> {
    /// Resolves the settings of `command`. Errors name the flag at fault.
    pub(crate) fn resolve(
        command: &'a Command,
        environment: &Environment,
    ) -> Result<CommandSettings<'a>> {
        Ok(match command {
            Command::Report(args) => CommandSettings::Report(args),
            Command::EvalGate(args) => CommandSettings::EvalGate(EvalGateSettings::resolve(args)?),
            Command::Eval(args) => CommandSettings::Eval(EvalSettings::resolve(args, environment)),
            Command::ValidateData(args) => {
                CommandSettings::ValidateData(ValidateDataSettings::resolve(args, environment)?)
            }
            Command::Register(args) => CommandSettings::Register(args),
            Command::Registry(args) => CommandSettings::Registry(args),
            Command::Train(args) => CommandSettings::Train(Box::new(TrainSettings::resolve(args)?)),
            Command::DeployCanary(args) => CommandSettings::DeployCanary(args),
            Command::Router(args) => CommandSettings::Router(args),
            Command::Monitor(args) => CommandSettings::Monitor(args),
            Command::Prepare(args) => CommandSettings::Prepare(args),
            Command::Quickstart(args) => CommandSettings::Quickstart(args),
            Command::Init(args) => CommandSettings::Init(args),
            Command::TinyLm(args) => CommandSettings::TinyLm(args),
        })
    }
}

/// The argument vector clap should parse: `argv` plus the flags that action
/// or template inputs stand for. Flags already present win over inputs.
pub(crate) fn resolve_argv(
    argv: Vec<std::ffi::OsString>,
    environment: &Environment,
) -> Result<Vec<String>> {
    let argv: Vec<String> = argv
        .into_iter()
        .enumerate()
        .map(|(index, arg)| {
            arg.into_string().map_err(|arg| {
                anyhow::anyhow!("argument {index} is not UTF-8: {}", arg.to_string_lossy())
            })
        })
        .collect::<Result<_>>()?;
    let platform = Platform::detect(ci_choice(&argv), environment);
    let asks_for_help = argv
        .iter()
        .take_while(|arg| *arg != "--")
        .any(|arg| matches!(arg.as_str(), "--help" | "-h" | "--version" | "-V" | "help"));
    if platform == Platform::Local || asks_for_help {
        return Ok(argv);
    }
    let root = crate::cli::command();
    let Some((position, subcommand)) = find_subcommand(&root, &argv) else {
        return Ok(argv);
    };
    let specs = crate::packaging::input_specs(subcommand);
    let given: Vec<String> = argv[position + 1..]
        .iter()
        .take_while(|arg| *arg != "--")
        .filter_map(|arg| arg.strip_prefix("--"))
        .map(|flag| flag.split('=').next().unwrap_or(flag).to_owned())
        .collect();
    let extra = args_from_inputs(platform, environment, subcommand.get_name(), &specs, &given)
        .with_context(|| format!("reading the inputs of `gantry {}`", subcommand.get_name()))?;
    let mut argv = argv;
    // Inputs go before a `--` separator, if the command line has one.
    let insert_at = argv
        .iter()
        .position(|arg| arg == "--")
        .unwrap_or(argv.len());
    argv.splice(insert_at..insert_at, extra);
    Ok(argv)
}

/// `--ci` as given on the command line, read before clap so inputs can be applied.
fn ci_choice(argv: &[String]) -> PlatformChoice {
    let mut value = None;
    for (index, arg) in argv.iter().enumerate() {
        if arg == "--" {
            break;
        }
        if let Some(choice) = arg.strip_prefix("--ci=") {
            value = Some(choice.to_owned());
        } else if arg == "--ci" {
            value = argv.get(index + 1).cloned();
        }
    }
    match value.as_deref() {
        Some("github") => PlatformChoice::GitHub,
        Some("gitlab") => PlatformChoice::GitLab,
        Some("local") => PlatformChoice::Local,
        _ => PlatformChoice::Auto,
    }
}

/// The first argument naming a subcommand, skipping global flags and their values.
fn find_subcommand<'a>(
    root: &'a clap::Command,
    argv: &[String],
) -> Option<(usize, &'a clap::Command)> {
    let mut skip_value = false;
    for (index, arg) in argv.iter().enumerate().skip(1) {
        if skip_value {
            skip_value = false;
            continue;
        }
        if arg == "--format" || arg == "--ci" {
            skip_value = true;
            continue;
        }
        if arg.starts_with('-') {
            continue;
        }
        return root.find_subcommand(arg).map(|command| (index, command));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(argv: &[&str], pairs: &[(&str, &str)]) -> Result<Vec<String>> {
        let environment = Environment::from_pairs(pairs.iter().copied());
        resolve_argv(argv.iter().map(Into::into).collect(), &environment)
    }

    #[test]
    fn inputs_complete_the_command_line_on_github() {
        let argv = resolve(
            &["gantry", "--format", "json", "report", "--name=nightly"],
            &[
                ("GITHUB_ACTIONS", "true"),
                ("INPUT_FILE", " r.md "),
                ("INPUT_NAME", "ignored"),
                ("INPUT_PUBLISH", "summary"),
            ],
        )
        .expect("resolve");
        assert_eq!(
            argv,
            [
                "gantry",
                "--format",
                "json",
                "report",
                "--name=nightly",
                "--file=r.md",
                "--publish=summary"
            ]
        );
    }

    #[test]
    fn local_runs_take_the_command_line_as_is() {
        let argv = resolve(
            &["gantry", "report", "--file", "a.md"],
            &[("INPUT_FILE", "b.md")],
        )
        .expect("resolve");
        assert_eq!(argv, ["gantry", "report", "--file", "a.md"]);
    }

    #[test]
    fn explicit_ci_flag_selects_gitlab_inputs() {
        let argv = resolve(
            &["gantry", "report", "--ci", "gitlab"],
            &[("GANTRY_INPUT_FILE", "c.md")],
        )
        .expect("resolve");
        assert_eq!(argv, ["gantry", "report", "--ci", "gitlab", "--file=c.md"]);
    }

    #[test]
    fn help_is_shown_even_when_inputs_are_missing() {
        let argv = resolve(
            &["gantry", "report", "--help"],
            &[("GITHUB_ACTIONS", "true")],
        )
        .expect("resolve");
        assert_eq!(argv, ["gantry", "report", "--help"]);
    }

    #[test]
    fn unknown_and_missing_inputs_are_errors() {
        let error = resolve(
            &["gantry", "report"],
            &[
                ("GITHUB_ACTIONS", "true"),
                ("INPUT_FILE", "a.md"),
                ("INPUT_FLIE", "x"),
            ],
        )
        .expect_err("unknown");
        assert!(
            format!("{error:#}").contains("unknown input `flie` (from `INPUT_FLIE`)"),
            "{error:#}"
        );
        let error =
            resolve(&["gantry", "report"], &[("GITHUB_ACTIONS", "true")]).expect_err("missing");
        assert!(
            format!("{error:#}").contains("input `file` is required"),
            "{error:#}"
        );
    }

    fn parse(argv: &[&str]) -> Cli {
        <Cli as clap::Parser>::try_parse_from(argv).expect("parses")
    }

    #[test]
    fn a_key_a_command_names_is_masked_like_those_gantry_reads() {
        let cli = parse(&[
            "gantry",
            "eval",
            "--endpoint",
            "http://127.0.0.1:1/v1",
            "--model",
            "m",
            "--dataset",
            "d.jsonl",
            "--api-key-env",
            "MY_KEY",
        ]);
        let environment = Environment::from_pairs([
            ("MY_KEY", "sk-key-from-a-variable-gantry-does-not-know"),
            ("GITHUB_TOKEN", "ghs_0123456789abcdefghijklmnopqrstuvwxyz"),
        ]);
        let global = GlobalSettings::resolve(&cli, &environment);
        let names: Vec<&str> = global
            .credentials
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert!(names.contains(&"MY_KEY"), "{names:?}");
        assert!(names.contains(&"GITHUB_TOKEN"), "{names:?}");
        let CommandSettings::Eval(settings) =
            CommandSettings::resolve(&cli.command, &environment).expect("settings")
        else {
            panic!("eval")
        };
        assert_eq!(
            settings.options.api_key.as_ref().map(Secret::expose),
            Some("sk-key-from-a-variable-gantry-does-not-know")
        );
    }

    #[test]
    fn the_environment_reaches_validate_data_as_options() {
        let cli = parse(&["gantry", "validate-data", "--data", "x.jsonl"]);
        for (pairs, mapped) in [(vec![], true), (vec![("GANTRY_NO_MMAP", "1")], false)] {
            let environment = Environment::from_pairs(pairs);
            let CommandSettings::ValidateData(settings) =
                CommandSettings::resolve(&cli.command, &environment).expect("settings")
            else {
                panic!("validate-data")
            };
            assert_eq!(settings.options.map_files, mapped);
        }
    }
}
