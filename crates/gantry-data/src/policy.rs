//! Thresholds and severities of the checks: defaults, and overrides from `--policy FILE` (TOML).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Every check, by stable id, with its description, in report order.
pub const CHECKS: &[(&str, &str)] = &[
    ("parse", "records that are not valid JSON (or CSV) — count"),
    ("schema", "records that break the format's rules — count"),
    (
        "empty-content",
        "records with an empty or whitespace-only text field — rate",
    ),
    ("max-tokens", "records over --max-tokens — count"),
    (
        "exact-duplicates",
        "records identical to an earlier record — rate",
    ),
    (
        "normalized-duplicates",
        "records whose text equals an earlier record's after lowercasing and removing punctuation and extra spaces (exact duplicates included) — rate",
    ),
    (
        "near-duplicates",
        "records whose word 5-gram MinHash (14 bands × 8 rows) matches an earlier record's at estimated Jaccard ≥ 0.8 — rate",
    ),
    (
        "secrets",
        "records holding a credential (API keys, private keys, JWTs…) — count",
    ),
    (
        "pii",
        "records holding personal data (emails, phones, public IPs, card numbers, IBANs) — rate",
    ),
    (
        "contamination",
        "eval items with at least half of their 13-grams (or, under 13 words, the whole item) in the training data — count",
    ),
    (
        "contamination-partial",
        "eval items with any 13-gram in the training data — count",
    ),
    (
        "outliers",
        "largest share of records beyond the median + 5 × MAD in characters, tokens or turns — rate",
    ),
    (
        "drift-psi",
        "largest population stability index against --reference over characters, tokens, turns and roles",
    ),
    (
        "drift-js",
        "largest Jensen–Shannon distance against --reference over the same distributions",
    ),
    (
        "drift-wasserstein",
        "largest Wasserstein-1 distance against --reference, in reference standard deviations",
    ),
    (
        "min-records",
        "records in the dataset — count, fails below the threshold",
    ),
];

/// The thresholds of one check. A value above `warn` warns, above `error` fails
/// (below, for checks where lower is worse).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CheckPolicy {
    /// Whether the check runs.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// Warn past this value.
    #[serde(default)]
    pub warn: Option<f64>,
    /// Fail past this value.
    #[serde(default)]
    pub error: Option<f64>,
}

fn enabled() -> bool {
    true
}

/// All thresholds in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    checks: BTreeMap<String, CheckPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    checks: BTreeMap<String, CheckPolicy>,
}

impl Default for Policy {
    fn default() -> Policy {
        let check = |warn, error| CheckPolicy {
            enabled: true,
            warn,
            error,
        };
        let checks = [
            ("parse", check(None, Some(0.0))),
            ("schema", check(None, Some(0.0))),
            ("empty-content", check(Some(0.0), Some(0.001))),
            ("max-tokens", check(None, Some(0.0))),
            ("exact-duplicates", check(Some(0.01), Some(0.05))),
            ("normalized-duplicates", check(Some(0.01), Some(0.05))),
            ("near-duplicates", check(Some(0.05), None)),
            ("outliers", check(Some(0.01), None)),
            ("secrets", check(None, Some(0.0))),
            ("pii", check(Some(0.0), None)),
            ("contamination", check(None, Some(0.0))),
            ("contamination-partial", check(Some(0.0), None)),
            ("drift-psi", check(Some(0.1), Some(0.25))),
            ("drift-js", check(Some(0.1), None)),
            ("drift-wasserstein", check(Some(0.1), None)),
            ("min-records", check(Some(10.0), Some(1.0))),
        ];
        Policy {
            checks: checks
                .into_iter()
                .map(|(id, policy)| (id.to_owned(), policy))
                .collect(),
        }
    }
}

impl Policy {
    /// The defaults overridden by the TOML file at `path`.
    pub fn from_file(path: &Path) -> Result<Policy> {
        let error = |reason: String| Error::Policy {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|source| error(source.to_string()))?;
        let file: PolicyFile = toml::from_str(&text)
            .map_err(|source| error(source.to_string().trim_end().to_owned()))?;
        let mut policy = Policy::default();
        for (id, check) in file.checks {
            if !policy.checks.contains_key(&id) {
                let known: Vec<&str> = CHECKS.iter().map(|(id, _)| *id).collect();
                return Err(error(format!(
                    "unknown check `{id}` under [checks]; known checks: {}",
                    known.join(", ")
                )));
            }
            // NaN compares false with everything: a NaN threshold would
            // switch the check off without a word. Infinities likewise.
            for (key, value) in [("warn", check.warn), ("error", check.error)] {
                if let Some(value) = value
                    && !value.is_finite()
                {
                    return Err(error(format!(
                        "[checks.{id}] {key} = {value} is not a number; thresholds are finite numbers (leave the key out for no threshold, or set enabled = false)"
                    )));
                }
            }
            policy.checks.insert(id, check);
        }
        Ok(policy)
    }

    /// The policy of check `id` (disabled when unknown).
    pub fn check(&self, id: &str) -> CheckPolicy {
        self.checks.get(id).copied().unwrap_or(CheckPolicy {
            enabled: false,
            warn: None,
            error: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_has_a_description_and_a_default() {
        let defaults = Policy::default();
        let described: Vec<&str> = CHECKS.iter().map(|(id, _)| *id).collect();
        let with_defaults: Vec<&str> = defaults.checks.keys().map(String::as_str).collect();
        let mut sorted = described.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, with_defaults);
        assert!(
            CHECKS
                .iter()
                .all(|(_, description)| !description.is_empty())
        );
    }

    #[test]
    fn thresholds_that_are_not_numbers_are_errors_naming_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (text, key) in [
            (
                "[checks.duplicates]\nwarn = nan\n",
                "[checks.duplicates] warn = NaN",
            ),
            (
                "[checks.secrets]\nerror = inf\n",
                "[checks.secrets] error = inf",
            ),
            ("[checks.pii]\nwarn = -inf\n", "[checks.pii] warn = -inf"),
        ] {
            let path = dir.path().join("policy.toml");
            std::fs::write(&path, text.replace("duplicates", "exact-duplicates")).expect("write");
            let error = Policy::from_file(&path).expect_err("refused").to_string();
            assert!(
                error.contains(&key.replace("duplicates", "exact-duplicates")),
                "{error}"
            );
        }
    }

    #[test]
    fn files_override_defaults_and_reject_unknown_checks() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("policy.toml");
        std::fs::write(
            &path,
            "[checks.exact-duplicates]\nwarn = 0.2\nerror = 0.5\n[checks.pii]\nenabled = false\n",
        )
        .expect("write");
        let policy = Policy::from_file(&path).expect("policy");
        assert_eq!(
            policy.check("exact-duplicates"),
            CheckPolicy {
                enabled: true,
                warn: Some(0.2),
                error: Some(0.5)
            }
        );
        assert!(!policy.check("pii").enabled);
        assert_eq!(policy.check("secrets"), Policy::default().check("secrets"));

        std::fs::write(&path, "[checks.duplicates]\nwarn = 0.2\n").expect("write");
        let error = Policy::from_file(&path).expect_err("unknown");
        assert!(
            error
                .to_string()
                .contains("unknown check `duplicates` under [checks]; known checks: parse, schema"),
            "{error}"
        );
        std::fs::write(&path, "[checks.pii]\nwarn = \"high\"\n").expect("write");
        let error = Policy::from_file(&path).expect_err("bad type");
        assert!(
            error
                .to_string()
                .starts_with(&format!("{}: ", path.display())),
            "{error}"
        );
    }
}
