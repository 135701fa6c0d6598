//! The report: every check with its measured value next to its threshold, and the worst examples.

use gantry_core::{Digest, Verdict};
use serde::Serialize;

use crate::formats::RecordFormat;
use crate::lock::LockDiff;
use crate::policy::{CheckId, CheckPolicy, Direction};

/// Version of `report.json`.
pub const REPORT_VERSION: u32 = 1;

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    /// Within thresholds.
    Pass,
    /// Past the warning threshold.
    Warn,
    /// Past the error threshold.
    Fail,
    /// Not run (disabled, or lacking what it needs).
    Skipped,
}

/// Where an example sits and what it shows, redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct Example {
    /// The data file.
    pub file: String,
    /// 1-based line (JSONL, CSV, text) or, for JSON arrays, absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Byte offset in the decompressed file of the record or error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub byte: Option<u64>,
    /// 0-based index of the record in a JSON array file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    /// What is wrong here.
    pub message: String,
    /// A short, redacted excerpt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub excerpt: Option<String>,
}

/// Thresholds shown beside the value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Threshold {
    /// Warn past this.
    pub warn: Option<f64>,
    /// Fail past this.
    pub error: Option<f64>,
    /// `above` (higher is worse) or `below` (lower is worse).
    pub direction: &'static str,
}

/// One check's result.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CheckResult {
    /// Which check; serialized as its stable kebab-case id.
    pub id: CheckId,
    /// What it measures.
    pub description: &'static str,
    /// `count` or `rate`.
    pub unit: &'static str,
    /// The severity when it fails.
    pub severity: &'static str,
    /// pass, warn, fail or skipped.
    pub status: CheckStatus,
    /// The measured value (a count, or a rate in 0..=1).
    pub value: f64,
    /// The thresholds it was held to.
    pub threshold: Threshold,
    /// How many records it concerns.
    pub count: u64,
    /// The first examples, by file and line.
    pub findings: Vec<Example>,
    /// Why it was skipped, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl CheckResult {
    /// Scores `value` of check `id` against `policy`.
    pub fn scored(
        id: CheckId,
        policy: CheckPolicy,
        value: f64,
        count: u64,
        findings: Vec<Example>,
    ) -> CheckResult {
        let direction = id.direction();
        let past = |limit: Option<f64>| {
            limit.is_some_and(|limit| match direction {
                Direction::Below => value < limit,
                Direction::Above => value > limit,
            })
        };
        let status = if !policy.enabled {
            CheckStatus::Skipped
        } else if past(policy.error) {
            CheckStatus::Fail
        } else if past(policy.warn) {
            CheckStatus::Warn
        } else {
            CheckStatus::Pass
        };
        CheckResult {
            id,
            description: id.description(),
            unit: id.unit().as_str(),
            severity: if policy.error.is_some() {
                "error"
            } else {
                "warning"
            },
            status,
            value,
            threshold: Threshold {
                warn: policy.warn,
                error: policy.error,
                direction: direction.as_str(),
            },
            count,
            findings,
            note: (!policy.enabled).then(|| "disabled by the policy".to_owned()),
        }
    }

    /// Check `id`, not run, and why.
    pub fn skipped(id: CheckId, note: String) -> CheckResult {
        CheckResult {
            id,
            description: id.description(),
            unit: id.unit().as_str(),
            severity: "error",
            status: CheckStatus::Skipped,
            value: 0.0,
            threshold: Threshold {
                warn: None,
                error: None,
                direction: id.direction().as_str(),
            },
            count: 0,
            findings: Vec::new(),
            note: Some(note),
        }
    }
}

/// A group of identical records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct DuplicateCluster {
    /// `exact`, `normalized` or `near`.
    pub kind: &'static str,
    /// Records in the cluster.
    pub size: u64,
    /// The first member and up to 9 more, as `file:line` (or `file#record`).
    pub members: Vec<String>,
}

/// Distribution summaries shown in the report.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Distribution {
    /// Smallest value.
    pub min: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest value.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

/// Per-file counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct FileReport {
    /// Path.
    pub path: String,
    /// Records read.
    pub records: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

/// `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Report {
    /// Format version (1).
    pub version: u32,
    /// pass, warn or fail.
    #[schemars(with = "String")]
    pub verdict: Verdict,
    /// The record format checked against.
    #[schemars(with = "Option<String>")]
    pub format: Option<RecordFormat>,
    /// The tokenizer used for token counts.
    pub tokenizer: String,
    /// Records read.
    pub records: u64,
    /// The dataset digest from the data lock.
    #[schemars(with = "String")]
    pub dataset_digest: Digest,
    /// Files read.
    pub files: Vec<FileReport>,
    /// Every check.
    pub checks: Vec<CheckResult>,
    /// The largest duplicate clusters.
    pub duplicate_clusters: Vec<DuplicateCluster>,
    /// Characters per record.
    pub characters: Distribution,
    /// Tokens per record.
    pub tokens: Distribution,
    /// Turns (messages) per record.
    pub turns: Distribution,
    /// Messages by role.
    pub roles: std::collections::BTreeMap<String, u64>,
    /// Conversations with no message of a role (`system`, `user`), as
    /// OpenAI's data-preparation notebook counts them; empty for formats
    /// without conversations.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub conversations_without: std::collections::BTreeMap<String, u64>,
    /// Sensitive matches by kind (secrets and personal data).
    pub sensitive: std::collections::BTreeMap<String, u64>,
    /// Drift against `--reference`, by distribution, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drift: Option<std::collections::BTreeMap<String, crate::drift::DriftMeasure>>,
    /// Changes since `--previous-lock`, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lock_changes: Option<LockDiff>,
}

impl Report {
    /// Folds the check statuses into the verdict.
    pub fn verdict_of(checks: &[CheckResult]) -> Verdict {
        checks
            .iter()
            .fold(Verdict::Pass, |verdict, check| match check.status {
                CheckStatus::Fail => verdict.worst(Verdict::Fail),
                CheckStatus::Warn => verdict.worst(Verdict::Warn),
                CheckStatus::Pass | CheckStatus::Skipped => verdict,
            })
    }
}
