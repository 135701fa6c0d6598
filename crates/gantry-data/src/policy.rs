//! Thresholds and severities of the checks: defaults, and overrides from `--policy FILE` (TOML).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Every check validate-data runs: the one list of their ids, titles,
/// descriptions, units, directions and default thresholds, in report order.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum CheckId {
    /// `parse`: records that are not valid JSON (or CSV) — count
    Parse,
    /// `schema`: records that break the format's rules — count
    Schema,
    /// `empty-content`: records with an empty or whitespace-only text field — rate
    EmptyContent,
    /// `max-tokens`: records over --max-tokens — count
    MaxTokens,
    /// `exact-duplicates`: records identical to an earlier record — rate
    ExactDuplicates,
    /// `normalized-duplicates`: records whose text equals an earlier record's after lowercasing and removing punctuation and extra spaces (exact duplicates included) — rate
    NormalizedDuplicates,
    /// `near-duplicates`: records whose word 5-gram MinHash (14 bands × 8 rows) matches an earlier record's at estimated Jaccard ≥ 0.8 — rate
    NearDuplicates,
    /// `secrets`: records holding a credential (API keys, private keys, JWTs…) — count
    Secrets,
    /// `pii`: records holding personal data (emails, phones, public IPs, card numbers, IBANs) — rate
    Pii,
    /// `contamination`: eval items with at least half of their 13-grams (or, under 13 words, the whole item) in the training data — count
    Contamination,
    /// `contamination-partial`: eval items with any 13-gram in the training data — count
    ContaminationPartial,
    /// `outliers`: largest share of records beyond the median + 5 × MAD in characters, tokens or turns — rate
    Outliers,
    /// `drift-psi`: largest population stability index against --reference over characters, tokens, turns and roles
    DriftPsi,
    /// `drift-js`: largest Jensen–Shannon distance against --reference over the same distributions
    DriftJs,
    /// `drift-wasserstein`: largest Wasserstein-1 distance against --reference, in reference standard deviations
    DriftWasserstein,
    /// `min-records`: records in the dataset — count, fails below the threshold
    MinRecords,
}

/// What a check's value counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Records (or eval items).
    Count,
    /// A share of the records, in 0..=1.
    Rate,
    /// A distance between distributions.
    EffectSize,
}

impl Unit {
    /// How reports spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Rate => "rate",
            Unit::EffectSize => "effect size",
        }
    }
}

/// Which side of a threshold is worse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// A value above the threshold warns or fails.
    Above,
    /// A value below the threshold warns or fails (`min-records`).
    Below,
}

impl Direction {
    /// How reports spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::Above => "above",
            Direction::Below => "below",
        }
    }
}

impl CheckId {
    /// Every check, in report order.
    pub const ALL: [CheckId; 16] = [
        CheckId::Parse,
        CheckId::Schema,
        CheckId::EmptyContent,
        CheckId::MaxTokens,
        CheckId::ExactDuplicates,
        CheckId::NormalizedDuplicates,
        CheckId::NearDuplicates,
        CheckId::Secrets,
        CheckId::Pii,
        CheckId::Contamination,
        CheckId::ContaminationPartial,
        CheckId::Outliers,
        CheckId::DriftPsi,
        CheckId::DriftJs,
        CheckId::DriftWasserstein,
        CheckId::MinRecords,
    ];

    /// The stable kebab-case id, as reports, policies and annotations spell it.
    pub const fn id(self) -> &'static str {
        match self {
            CheckId::Parse => "parse",
            CheckId::Schema => "schema",
            CheckId::EmptyContent => "empty-content",
            CheckId::MaxTokens => "max-tokens",
            CheckId::ExactDuplicates => "exact-duplicates",
            CheckId::NormalizedDuplicates => "normalized-duplicates",
            CheckId::NearDuplicates => "near-duplicates",
            CheckId::Secrets => "secrets",
            CheckId::Pii => "pii",
            CheckId::Contamination => "contamination",
            CheckId::ContaminationPartial => "contamination-partial",
            CheckId::Outliers => "outliers",
            CheckId::DriftPsi => "drift-psi",
            CheckId::DriftJs => "drift-js",
            CheckId::DriftWasserstein => "drift-wasserstein",
            CheckId::MinRecords => "min-records",
        }
    }

    /// A short title for annotations.
    pub const fn title(self) -> &'static str {
        match self {
            CheckId::Parse => "Unparsable record",
            CheckId::Schema => "Format rule broken",
            CheckId::EmptyContent => "Empty content",
            CheckId::MaxTokens => "Too many tokens",
            CheckId::ExactDuplicates => "Exact duplicate",
            CheckId::NormalizedDuplicates => "Duplicate after normalization",
            CheckId::NearDuplicates => "Near duplicate",
            CheckId::Secrets => "Secret in training data",
            CheckId::Pii => "Personal data",
            CheckId::Contamination => "Eval item in training data",
            CheckId::ContaminationPartial => "Eval n-grams in training data",
            CheckId::Outliers => "Length outlier",
            CheckId::DriftPsi => "Distribution drift",
            CheckId::DriftJs => "Distribution drift",
            CheckId::DriftWasserstein => "Distribution drift",
            CheckId::MinRecords => "Too few records",
        }
    }

    /// What it measures.
    pub const fn description(self) -> &'static str {
        match self {
            CheckId::Parse => "records that are not valid JSON (or CSV) — count",
            CheckId::Schema => "records that break the format's rules — count",
            CheckId::EmptyContent => "records with an empty or whitespace-only text field — rate",
            CheckId::MaxTokens => "records over --max-tokens — count",
            CheckId::ExactDuplicates => "records identical to an earlier record — rate",
            CheckId::NormalizedDuplicates => {
                "records whose text equals an earlier record's after lowercasing and removing punctuation and extra spaces (exact duplicates included) — rate"
            }
            CheckId::NearDuplicates => {
                "records whose word 5-gram MinHash (14 bands × 8 rows) matches an earlier record's at estimated Jaccard ≥ 0.8 — rate"
            }
            CheckId::Secrets => {
                "records holding a credential (API keys, private keys, JWTs…) — count"
            }
            CheckId::Pii => {
                "records holding personal data (emails, phones, public IPs, card numbers, IBANs) — rate"
            }
            CheckId::Contamination => {
                "eval items with at least half of their 13-grams (or, under 13 words, the whole item) in the training data — count"
            }
            CheckId::ContaminationPartial => {
                "eval items with any 13-gram in the training data — count"
            }
            CheckId::Outliers => {
                "largest share of records beyond the median + 5 × MAD in characters, tokens or turns — rate"
            }
            CheckId::DriftPsi => {
                "largest population stability index against --reference over characters, tokens, turns and roles"
            }
            CheckId::DriftJs => {
                "largest Jensen–Shannon distance against --reference over the same distributions"
            }
            CheckId::DriftWasserstein => {
                "largest Wasserstein-1 distance against --reference, in reference standard deviations"
            }
            CheckId::MinRecords => "records in the dataset — count, fails below the threshold",
        }
    }

    /// What its value counts.
    pub const fn unit(self) -> Unit {
        match self {
            CheckId::Parse => Unit::Count,
            CheckId::Schema => Unit::Count,
            CheckId::EmptyContent => Unit::Rate,
            CheckId::MaxTokens => Unit::Count,
            CheckId::ExactDuplicates => Unit::Rate,
            CheckId::NormalizedDuplicates => Unit::Rate,
            CheckId::NearDuplicates => Unit::Rate,
            CheckId::Secrets => Unit::Count,
            CheckId::Pii => Unit::Rate,
            CheckId::Contamination => Unit::Count,
            CheckId::ContaminationPartial => Unit::Count,
            CheckId::Outliers => Unit::Rate,
            CheckId::DriftPsi => Unit::EffectSize,
            CheckId::DriftJs => Unit::EffectSize,
            CheckId::DriftWasserstein => Unit::EffectSize,
            CheckId::MinRecords => Unit::Count,
        }
    }

    /// Which side of its thresholds is worse.
    pub const fn direction(self) -> Direction {
        match self {
            CheckId::Parse => Direction::Above,
            CheckId::Schema => Direction::Above,
            CheckId::EmptyContent => Direction::Above,
            CheckId::MaxTokens => Direction::Above,
            CheckId::ExactDuplicates => Direction::Above,
            CheckId::NormalizedDuplicates => Direction::Above,
            CheckId::NearDuplicates => Direction::Above,
            CheckId::Secrets => Direction::Above,
            CheckId::Pii => Direction::Above,
            CheckId::Contamination => Direction::Above,
            CheckId::ContaminationPartial => Direction::Above,
            CheckId::Outliers => Direction::Above,
            CheckId::DriftPsi => Direction::Above,
            CheckId::DriftJs => Direction::Above,
            CheckId::DriftWasserstein => Direction::Above,
            CheckId::MinRecords => Direction::Below,
        }
    }

    /// Its thresholds when no policy says otherwise: (warn, error).
    pub const fn default_thresholds(self) -> (Option<f64>, Option<f64>) {
        match self {
            CheckId::Parse => (None, Some(0.0)),
            CheckId::Schema => (None, Some(0.0)),
            CheckId::EmptyContent => (Some(0.0), Some(0.001)),
            CheckId::MaxTokens => (None, Some(0.0)),
            CheckId::ExactDuplicates => (Some(0.01), Some(0.05)),
            CheckId::NormalizedDuplicates => (Some(0.01), Some(0.05)),
            CheckId::NearDuplicates => (Some(0.05), None),
            CheckId::Secrets => (None, Some(0.0)),
            CheckId::Pii => (Some(0.0), None),
            CheckId::Contamination => (None, Some(0.0)),
            CheckId::ContaminationPartial => (Some(0.0), None),
            CheckId::Outliers => (Some(0.01), None),
            CheckId::DriftPsi => (Some(0.1), Some(0.25)),
            CheckId::DriftJs => (Some(0.1), None),
            CheckId::DriftWasserstein => (Some(0.1), None),
            CheckId::MinRecords => (Some(10.0), Some(1.0)),
        }
    }

    /// The check with id `id`.
    pub fn from_id(id: &str) -> Option<CheckId> {
        CheckId::ALL.into_iter().find(|check| check.id() == id)
    }
}

impl std::fmt::Display for CheckId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.id())
    }
}

impl PartialEq<str> for CheckId {
    fn eq(&self, other: &str) -> bool {
        self.id() == other
    }
}

impl PartialEq<&str> for CheckId {
    fn eq(&self, other: &&str) -> bool {
        self.id() == *other
    }
}

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
    checks: BTreeMap<CheckId, CheckPolicy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    checks: BTreeMap<String, CheckPolicy>,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            checks: CheckId::ALL
                .into_iter()
                .map(|check| {
                    let (warn, error) = check.default_thresholds();
                    (
                        check,
                        CheckPolicy {
                            enabled: true,
                            warn,
                            error,
                        },
                    )
                })
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
            let Some(known) = CheckId::from_id(&id) else {
                let known: Vec<&str> = CheckId::ALL.iter().map(|check| check.id()).collect();
                return Err(error(format!(
                    "unknown check `{id}` under [checks]; known checks: {}",
                    known.join(", ")
                )));
            };
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
            policy.checks.insert(known, check);
        }
        Ok(policy)
    }

    /// The policy of check `id`.
    pub fn check(&self, id: CheckId) -> CheckPolicy {
        self.checks.get(&id).copied().unwrap_or(CheckPolicy {
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
    fn every_check_has_an_id_a_title_a_description_and_a_default() {
        let defaults = Policy::default();
        for check in CheckId::ALL {
            assert_eq!(CheckId::from_id(check.id()), Some(check));
            assert!(!check.title().is_empty() && !check.description().is_empty());
            assert!(defaults.check(check).enabled);
            assert_eq!(
                serde_json::to_value(check).expect("serializes"),
                serde_json::json!(check.id())
            );
        }
        assert_eq!(defaults.checks.len(), CheckId::ALL.len());
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
            policy.check(CheckId::ExactDuplicates),
            CheckPolicy {
                enabled: true,
                warn: Some(0.2),
                error: Some(0.5)
            }
        );
        assert!(!policy.check(CheckId::Pii).enabled);
        assert_eq!(
            policy.check(CheckId::Secrets),
            Policy::default().check(CheckId::Secrets)
        );

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
