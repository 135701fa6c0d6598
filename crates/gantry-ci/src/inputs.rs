//! Action inputs (GitHub `INPUT_*`, GitLab `GANTRY_INPUT_*`) turned into command-line flags.
//!
//! The runner puts every input of a container action in the environment but
//! enforces none of `required`, types or names, so this module does: it
//! follows the toolkit's rules (values trimmed, booleans only in six
//! spellings, lists split on newlines with empty lines dropped) and turns each
//! input into the flag of the same name. Flags already on the command line
//! win, so a workflow can override an input in `args:`.

use crate::environment::{EnvVars, Environment, Platform};
use crate::error::{Error, Result};

/// How an input's text becomes flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A boolean flag: `true` adds `--name`, `false` adds nothing.
    Switch,
    /// One value: `--name=value`.
    Value,
    /// Several values, one per line: `--name=line` for each non-empty line.
    List,
}

/// One input of a command, derived from its flag definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputSpec {
    /// The kebab-case name of the input.
    pub name: String,
    /// The long flag it becomes: the name, unless the name would clash with
    /// an output's (`gantry report`'s `given-verdict` is `--verdict`).
    pub flag: String,
    /// How its text becomes flags.
    pub kind: InputKind,
    /// Whether the command cannot run without it.
    pub required: bool,
}

/// Inputs every action has that are not flags: the action hands them to
/// gantry another way (`github-token` becomes `GITHUB_TOKEN`).
pub(crate) const WRAPPER_INPUTS: &[&str] = &["github-token"];

/// The environment variable an input arrives in on `platform`: `INPUT_EVAL-SET`
/// on GitHub (upper-cased, spaces to `_`, hyphens kept, as the runner does),
/// `GANTRY_INPUT_EVAL_SET` on GitLab (variable names cannot hold hyphens).
pub fn input_env_name(platform: Platform, name: &str) -> Option<String> {
    match platform {
        Platform::GitHub => Some(format!(
            "{}{}",
            EnvVars::GITHUB_INPUT_PREFIX,
            name.replace(' ', "_").to_uppercase()
        )),
        Platform::GitLab => Some(format!(
            "{}{}",
            EnvVars::GITLAB_INPUT_PREFIX,
            name.replace(['-', ' '], "_").to_uppercase()
        )),
        Platform::Local => None,
    }
}

/// The flags that the inputs in `environment` stand for, to be appended to
/// the command line. `given` holds the long names of flags already on the
/// command line: their inputs are skipped. Off CI this returns nothing.
pub fn args_from_inputs(
    platform: Platform,
    environment: &Environment,
    command: &str,
    specs: &[InputSpec],
    given: &[String],
) -> Result<Vec<String>> {
    let Some(prefix) = (match platform {
        Platform::GitHub => Some(EnvVars::GITHUB_INPUT_PREFIX),
        Platform::GitLab => Some(EnvVars::GITLAB_INPUT_PREFIX),
        Platform::Local => None,
    }) else {
        return Ok(Vec::new());
    };

    let variable_of = |spec: &InputSpec| input_env_name(platform, &spec.name).unwrap_or_default();
    let wrapper_input = |variable: &str| {
        WRAPPER_INPUTS
            .iter()
            .any(|name| input_env_name(platform, name).as_deref() == Some(variable))
    };
    for (variable, _) in environment.with_prefix(prefix) {
        if !specs.iter().any(|spec| variable_of(spec) == variable) && !wrapper_input(variable) {
            let known: Vec<&str> = specs.iter().map(|spec| spec.name.as_str()).collect();
            return Err(Error::UnknownInput {
                input: variable[prefix.len()..].to_lowercase().replace('_', "-"),
                variable: variable.to_owned(),
                command: command.to_owned(),
                known: if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                },
            });
        }
    }

    let mut args = Vec::new();
    for spec in specs {
        let flag_given = given.iter().any(|name| name == &spec.flag);
        let value = environment
            .get(&variable_of(spec))
            .map(str::trim)
            .unwrap_or_default();
        if flag_given {
            continue;
        }
        if value.is_empty() {
            if spec.required {
                return Err(Error::MissingInput {
                    input: spec.name.clone(),
                    command: command.to_owned(),
                });
            }
            continue;
        }
        match spec.kind {
            InputKind::Switch => {
                if parse_boolean(&spec.name, value)? {
                    args.push(format!("--{}", spec.flag));
                }
            }
            InputKind::Value => args.push(format!("--{}={value}", spec.flag)),
            InputKind::List => {
                for line in value.lines().map(str::trim).filter(|line| !line.is_empty()) {
                    args.push(format!("--{}={line}", spec.flag));
                }
            }
        }
    }
    Ok(args)
}

/// Parses a boolean input the way `core.getBooleanInput` does: only six spellings.
fn parse_boolean(input: &str, value: &str) -> Result<bool> {
    match value {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        _ => Err(Error::InvalidBoolean {
            input: input.to_owned(),
            value: value.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs() -> Vec<InputSpec> {
        vec![
            InputSpec {
                name: "data".into(),
                flag: "data".into(),
                kind: InputKind::List,
                required: true,
            },
            InputSpec {
                name: "eval-set".into(),
                flag: "eval-set".into(),
                kind: InputKind::Value,
                required: false,
            },
            InputSpec {
                name: "dry-run".into(),
                flag: "dry-run".into(),
                kind: InputKind::Switch,
                required: false,
            },
        ]
    }

    fn check(
        platform: Platform,
        pairs: &[(&str, &str)],
        given: &[&str],
        expected: std::result::Result<&[&str], &str>,
    ) {
        let environment = Environment::from_pairs(pairs.iter().copied());
        let given: Vec<String> = given.iter().map(|name| (*name).to_owned()).collect();
        let actual = args_from_inputs(platform, &environment, "validate-data", &specs(), &given);
        match (actual, expected) {
            (Ok(args), Ok(expected)) => assert_eq!(args, expected, "{pairs:?}"),
            (Err(error), Err(expected)) => assert!(
                error.to_string().contains(expected),
                "{error} lacks {expected:?}"
            ),
            (actual, expected) => panic!("{pairs:?}: got {actual:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn github_inputs_become_flags() {
        check(
            Platform::GitHub,
            &[
                ("INPUT_DATA", " a.jsonl\n\n  b.jsonl \n"),
                ("INPUT_EVAL-SET", "  ev.jsonl "),
                ("INPUT_DRY-RUN", "True"),
            ],
            &[],
            Ok(&[
                "--data=a.jsonl",
                "--data=b.jsonl",
                "--eval-set=ev.jsonl",
                "--dry-run",
            ]),
        );
        check(
            Platform::GitHub,
            &[("INPUT_DATA", "a"), ("INPUT_DRY-RUN", "FALSE")],
            &[],
            Ok(&["--data=a"]),
        );
    }

    #[test]
    fn flags_on_the_command_line_win() {
        check(
            Platform::GitHub,
            &[("INPUT_DATA", "a"), ("INPUT_EVAL-SET", "x")],
            &["eval-set"],
            Ok(&["--data=a"]),
        );
        // A required input given as a flag needs no input.
        check(Platform::GitHub, &[], &["data"], Ok(&[]));
    }

    #[test]
    fn gitlab_inputs_use_underscored_names() {
        check(
            Platform::GitLab,
            &[("GANTRY_INPUT_DATA", "a"), ("GANTRY_INPUT_EVAL_SET", "b")],
            &[],
            Ok(&["--data=a", "--eval-set=b"]),
        );
    }

    #[test]
    fn bad_inputs_name_the_input() {
        check(
            Platform::GitHub,
            &[("INPUT_DATA", "a"), ("INPUT_DRY-RUN", "yes")],
            &[],
            Err(
                "input `dry-run` must be a boolean (true, True, TRUE, false, False or FALSE), got `yes`",
            ),
        );
        check(
            Platform::GitHub,
            &[("INPUT_DATA", "a"), ("INPUT_EVALSET", "b")],
            &[],
            Err(
                "unknown input `evalset` (from `INPUT_EVALSET`) for `gantry validate-data`; known inputs: data, eval-set, dry-run",
            ),
        );
        check(
            Platform::GitHub,
            &[("INPUT_DATA", "  \n ")],
            &[],
            Err("input `data` is required by `gantry validate-data`"),
        );
    }

    #[test]
    fn the_token_input_every_action_has_is_not_a_flag() {
        check(
            Platform::GitHub,
            &[("INPUT_DATA", "a"), ("INPUT_GITHUB-TOKEN", "ghs_token")],
            &[],
            Ok(&["--data=a"]),
        );
    }

    #[test]
    fn local_runs_ignore_input_variables() {
        check(Platform::Local, &[("INPUT_BOGUS", "x")], &[], Ok(&[]));
    }
}
