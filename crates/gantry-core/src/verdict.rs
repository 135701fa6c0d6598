//! The verdict of a check and the process exit codes every gantry face shares.

use serde::{Deserialize, Serialize};

/// The outcome of a gate or check, as opposed to an error of the tool itself.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Everything the check looked at is fine.
    Pass,
    /// Something is worth a look, but the check does not block.
    Warn,
    /// The check says no: the pipeline must not go on.
    Fail,
}

impl Verdict {
    /// The process exit code for this verdict: warnings pass.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Verdict::Pass | Verdict::Warn => ExitCode::PASS,
            Verdict::Fail => ExitCode::VERDICT_NO,
        }
    }

    /// The lowercase word used in outputs and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }

    /// The worse of two verdicts: used to fold many rule verdicts into one.
    #[must_use]
    pub fn worst(self, other: Verdict) -> Verdict {
        self.max(other)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A process exit code with the three meanings gantry promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitCode(u8);

impl ExitCode {
    /// `0`: the command did its job and the verdict (if any) passed.
    pub const PASS: ExitCode = ExitCode(0);
    /// `1`: the command did its job and the verdict said no.
    pub const VERDICT_NO: ExitCode = ExitCode(1);
    /// `2`: the command could not do its job (bad input, unreachable service, bug).
    pub const ERROR: ExitCode = ExitCode(2);

    /// The numeric code as an `i32`, for comparisons and reports.
    pub fn as_i32(self) -> i32 {
        i32::from(self.0)
    }

    /// The numeric code as a byte, for `std::process::ExitCode`.
    pub fn as_u8(self) -> u8 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_map_to_documented_exit_codes() {
        let table = [(Verdict::Pass, 0), (Verdict::Warn, 0), (Verdict::Fail, 1)];
        for (verdict, code) in table {
            assert_eq!(verdict.exit_code().as_i32(), code, "{verdict}");
        }
        assert_eq!(ExitCode::ERROR.as_i32(), 2);
    }

    #[test]
    fn worst_folds_to_the_most_severe() {
        assert_eq!(Verdict::Pass.worst(Verdict::Warn), Verdict::Warn);
        assert_eq!(Verdict::Fail.worst(Verdict::Warn), Verdict::Fail);
        assert_eq!(Verdict::Pass.worst(Verdict::Pass), Verdict::Pass);
    }
}
