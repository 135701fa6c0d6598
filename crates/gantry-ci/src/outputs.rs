//! Step outputs: `$GITHUB_OUTPUT` on GitHub, a dotenv report on GitLab, printed lines elsewhere.

use std::io::Write;
use std::path::PathBuf;

use crate::environment::{EnvVars, Environment, Platform};
use crate::error::{Error, Result};

/// GitLab refuses dotenv reports over 5 KB.
const DOTENV_LIMIT_BYTES: u64 = 5 * 1024;

/// Where step outputs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// Appended to the `$GITHUB_OUTPUT` file in the heredoc form.
    GitHub {
        /// The file named by `$GITHUB_OUTPUT`.
        path: PathBuf,
    },
    /// Appended to a dotenv file that the GitLab template declares as a `dotenv` report.
    GitLab {
        /// The dotenv file (`$GANTRY_DOTENV`, default `gantry.env`).
        path: PathBuf,
        /// Prefix of every key, e.g. `VALIDATE_DATA_`, so jobs do not clash.
        prefix: String,
    },
    /// Printed as `name=value` lines.
    Local,
}

impl OutputTarget {
    /// The target for `platform`. `default_prefix` is used on GitLab when
    /// `$GANTRY_OUTPUT_PREFIX` is unset; it is usually the command name.
    /// Returns a warning when GitHub is selected but `$GITHUB_OUTPUT` is unset.
    pub fn from_environment(
        platform: Platform,
        environment: &Environment,
        default_prefix: &str,
    ) -> (OutputTarget, Option<String>) {
        match platform {
            Platform::GitHub => match environment.get(EnvVars::GITHUB_OUTPUT) {
                Some(path) => (OutputTarget::GitHub { path: path.into() }, None),
                None => (
                    OutputTarget::Local,
                    Some(
                        "$GITHUB_OUTPUT is not set, so outputs are printed instead of set"
                            .to_owned(),
                    ),
                ),
            },
            Platform::GitLab => {
                let path = environment
                    .get(EnvVars::GANTRY_DOTENV)
                    .unwrap_or("gantry.env")
                    .into();
                let prefix = environment
                    .get(EnvVars::GANTRY_OUTPUT_PREFIX)
                    .map_or_else(|| dotenv_key("", default_prefix) + "_", str::to_owned);
                (OutputTarget::GitLab { path, prefix }, None)
            }
            Platform::Local => (OutputTarget::Local, None),
        }
    }
}

/// Writes `outputs` to `target`; local outputs go to `local`. Returns warnings
/// about outputs that a platform's limits forced gantry to drop.
pub fn write_outputs(
    target: &OutputTarget,
    outputs: &[(String, String)],
    local: &mut dyn Write,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    match target {
        OutputTarget::GitHub { path } => {
            let delimiter = format!("ghadelimiter_{}", random_hex(16));
            let mut text = String::new();
            for (name, value) in outputs {
                text.push_str(
                    &github_output_block(name, value, &delimiter).map_err(|reason| {
                        Error::Output {
                            name: name.clone(),
                            path: path.display().to_string(),
                            variable: EnvVars::GITHUB_OUTPUT.to_owned(),
                            reason,
                        }
                    })?,
                );
            }
            append(path, &text).map_err(|source| Error::Output {
                name: outputs
                    .first()
                    .map(|(name, _)| name.clone())
                    .unwrap_or_default(),
                path: path.display().to_string(),
                variable: EnvVars::GITHUB_OUTPUT.to_owned(),
                reason: source.to_string(),
            })?;
        }
        OutputTarget::GitLab { path, prefix } => {
            let mut used = std::fs::metadata(path)
                .map(|metadata| metadata.len())
                .unwrap_or(0);
            let mut text = String::new();
            for (name, value) in outputs {
                let key = dotenv_key(prefix, name);
                if value.contains(['\n', '\r']) {
                    warnings.push(format!("output `{name}` holds several lines, which a GitLab dotenv report cannot carry; it is left out of {}", path.display()));
                    continue;
                }
                let line = format!("{key}={value}\n");
                if used + line.len() as u64 > DOTENV_LIMIT_BYTES {
                    warnings.push(format!(
                        "output `{name}` would take {} past GitLab's 5 KB dotenv limit; it is left out",
                        path.display()
                    ));
                    continue;
                }
                used += line.len() as u64;
                text.push_str(&line);
            }
            append(path, &text).map_err(|source| Error::Output {
                name: outputs
                    .first()
                    .map(|(name, _)| name.clone())
                    .unwrap_or_default(),
                path: path.display().to_string(),
                variable: EnvVars::GANTRY_DOTENV.to_owned(),
                reason: source.to_string(),
            })?;
        }
        OutputTarget::Local => {
            for (name, value) in outputs {
                writeln!(local, "{name}={value}").map_err(|source| Error::Write {
                    path: "stdout".into(),
                    error: source,
                })?;
            }
        }
    }
    Ok(warnings)
}

/// One output in the toolkit's heredoc form. Fails when the value or name
/// contains the delimiter, which would let a value set other outputs.
fn github_output_block(
    name: &str,
    value: &str,
    delimiter: &str,
) -> std::result::Result<String, String> {
    if name.contains(delimiter) || value.contains(delimiter) {
        return Err(format!("the value contains the delimiter `{delimiter}`"));
    }
    if name.contains(['\n', '\r']) {
        return Err("output names cannot contain line breaks".to_owned());
    }
    Ok(format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"))
}

/// `prefix` + `name` upper-cased, with every character outside `[A-Za-z0-9_]` as `_`.
fn dotenv_key(prefix: &str, name: &str) -> String {
    let mut key = prefix.to_owned();
    key.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    key
}

fn append(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.flush()
}

/// `n_bytes` random bytes as hex: delimiters and stop-commands tokens.
pub(crate) fn random_hex(n_bytes: usize) -> String {
    use rand::RngCore as _;
    let mut bytes = vec![0_u8; n_bytes];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn github_outputs_use_heredoc_with_random_delimiter() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("output");
        let target = OutputTarget::GitHub { path: path.clone() };
        let mut local = Vec::new();
        write_outputs(
            &target,
            &outputs(&[("verdict", "pass"), ("report", "line one\nline two")]),
            &mut local,
        )
        .expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let delimiter = text
            .lines()
            .next()
            .and_then(|line| line.strip_prefix("verdict<<"))
            .expect("heredoc");
        assert!(
            delimiter.starts_with("ghadelimiter_") && delimiter.len() == "ghadelimiter_".len() + 32,
            "{delimiter}"
        );
        assert_eq!(
            text,
            format!(
                "verdict<<{delimiter}\npass\n{delimiter}\nreport<<{delimiter}\nline one\nline two\n{delimiter}\n"
            )
        );
        assert!(local.is_empty());
    }

    #[test]
    fn a_value_holding_the_delimiter_is_refused() {
        let error = github_output_block("verdict", "pass\nEOF_X\nverdict=fail", "EOF_X")
            .expect_err("refused");
        assert!(error.contains("delimiter"), "{error}");
    }

    #[test]
    fn unwritable_github_output_names_the_file() {
        let target = OutputTarget::GitHub {
            path: "/nonexistent-dir/output".into(),
        };
        let error = write_outputs(&target, &outputs(&[("verdict", "pass")]), &mut Vec::new())
            .expect_err("unwritable");
        let message = error.to_string();
        assert!(
            message.contains("/nonexistent-dir/output") && message.contains("$GITHUB_OUTPUT"),
            "{message}"
        );
    }

    #[test]
    fn gitlab_dotenv_respects_key_charset_lines_and_size() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("gantry.env");
        let target = OutputTarget::GitLab {
            path: path.clone(),
            prefix: "VALIDATE_DATA_".into(),
        };
        let big = "x".repeat(6000);
        let warnings = write_outputs(
            &target,
            &outputs(&[
                ("dataset-digest", "sha256:ab"),
                ("report", "a\nb"),
                ("huge", &big),
                ("verdict", "warn"),
            ]),
            &mut Vec::new(),
        )
        .expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "VALIDATE_DATA_DATASET_DIGEST=sha256:ab\nVALIDATE_DATA_VERDICT=warn\n"
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("`report` holds several lines"));
        assert!(warnings[1].contains("`huge` would take") && warnings[1].contains("5 KB"));
    }

    #[test]
    fn gitlab_prefix_defaults_to_the_command() {
        let environment = Environment::from_pairs([("GITLAB_CI", "true")]);
        let (target, warning) =
            OutputTarget::from_environment(Platform::GitLab, &environment, "validate-data");
        assert_eq!(
            target,
            OutputTarget::GitLab {
                path: "gantry.env".into(),
                prefix: "VALIDATE_DATA_".into()
            }
        );
        assert!(warning.is_none());
    }

    #[test]
    fn local_outputs_are_printed() {
        let mut local = Vec::new();
        write_outputs(
            &OutputTarget::Local,
            &outputs(&[("verdict", "fail")]),
            &mut local,
        )
        .expect("write");
        assert_eq!(String::from_utf8(local).expect("utf8"), "verdict=fail\n");
    }
}
