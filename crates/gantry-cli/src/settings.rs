//! Settings resolution: the command line, completed by CI inputs, before clap parses it.

use anyhow::{Context as _, Result};
use gantry_ci::{Environment, Platform, PlatformChoice, args_from_inputs};

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
}
