//! Errors of eval-gate: all mean "could not decide" (exit 2), never a verdict.

use std::path::PathBuf;

/// Why eval-gate could not reach a verdict.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}: {error}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A results file is not what it should be.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Input {
        /// The file.
        path: PathBuf,
        /// The line, when known.
        line: Option<usize>,
        /// What is wrong and what would be right.
        message: String,
    },
    /// The policy file is invalid.
    #[error("{}: {message}", path.display())]
    Policy {
        /// The policy file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The endpoint answered no request.
    #[error("{message}")]
    Unreachable {
        /// Which host failed and why.
        message: String,
    },
    /// The runs cannot be compared: different tasks, prompts, shots or limits.
    #[error("baseline and candidate are not comparable:\n  - {}", differences.join("\n  - "))]
    NotComparable {
        /// Each difference, named.
        differences: Vec<String>,
    },
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A problem with an input file, at a line when known.
    pub(crate) fn input(
        path: &std::path::Path,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Error {
        Error::Input {
            path: path.to_owned(),
            line,
            message: message.into(),
        }
    }
}

/// A whole text file, or an error naming it.
pub(crate) fn read_text(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        error: source,
    })
}

/// The non-blank lines of a JSONL text with their 1-based line numbers.
pub(crate) fn jsonl_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| (index + 1, line))
}

/// A parser's message about someone's file, with every quoted value that
/// does not look like a name replaced by its length: serde's "invalid type:
/// string \"…\"" quotes the data it complains about, and that data can be
/// a credential.
pub(crate) fn quoted_safely(error: &impl std::fmt::Display) -> String {
    gantry_core::redact::sanitize_quoted(&error.to_string(), gantry_core::redact::looks_like_a_name)
}
