//! The gate policy: which metrics are gated and how, in TOML.
//!
//! ```toml
//! [defaults]
//! alpha = 0.05          # two-sided, Holm-corrected across blocking rules
//! confidence = 0.95     # interval level
//! resamples = 10000     # bootstrap resamples
//! min_items = 30        # fewer paired items: inconclusive
//! seed = 0              # resampling seed (in the report)
//! inconclusive = "warn" # or "block"
//!
//! [baseline]
//! from_registry = true  # only registry:NAME@ALIAS baselines
//! max_age_days = 30     # registered at most 30 days ago
//!
//! [[rule]]
//! name = "accuracy"
//! select = { source = "lm-eval", task = "mmlu*", metric = "acc,*" }
//! direction = "auto"    # higher_is_better from the producer; or "higher" / "lower"
//! floor = 0.60          # the candidate must reach this, whatever the baseline
//! margin = 0.01         # non-inferiority margin: a drop smaller than this is allowed
//! max_new_failures = 25 # items that passed in the baseline and fail now
//! severity = "block"    # or "warn" / "info"
//! ```
//!
//! A metric is gated by the first rule whose selector matches it (globs on
//! source, task and metric). Without a policy file, one rule gates every
//! metric: block on a statistically significant regression, warn when
//! inconclusive.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, read_text};
use crate::results::{MetricKey, Source};

/// The whole policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Statistical settings.
    #[serde(default)]
    pub defaults: Defaults,
    /// What the baseline must be.
    #[serde(default)]
    pub baseline: BaselineRequirements,
    /// Rules, first match wins.
    #[serde(default, rename = "rule")]
    pub rules: Vec<Rule>,
}

/// What a baseline must be before anything is compared with it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineRequirements {
    /// The baseline must come from a registry (`--baseline registry:NAME@ALIAS`): the blessed results, not any file.
    pub from_registry: bool,
    /// The baseline's version must have been registered at most this many days ago.
    pub max_age_days: Option<f64>,
}

/// What is known about the baseline when the requirements are checked.
#[derive(Debug, Clone, Default)]
pub struct BaselineFacts {
    /// Whether it was resolved from a registry.
    pub from_registry: bool,
    /// Days since its version was registered, when known.
    pub age_days: Option<f64>,
}

impl BaselineRequirements {
    /// Checks the baseline; every unmet requirement is one difference of
    /// an [`Error::NotComparable`].
    pub fn check(&self, facts: &BaselineFacts) -> Result<()> {
        let mut differences = Vec::new();
        if self.from_registry && !facts.from_registry {
            differences.push(
                "the policy requires a registry baseline (--baseline registry:NAME@ALIAS); a file was given"
                    .to_owned(),
            );
        }
        if let Some(limit) = self.max_age_days {
            match facts.age_days {
                Some(age) if age > limit => differences.push(format!(
                    "the baseline was registered {age:.1} days ago; the policy allows {limit} (baseline.max_age_days): evaluate and register a fresh one"
                )),
                Some(_) => {}
                None => differences.push(format!(
                    "the policy allows a baseline at most {limit} days old, but a file's age is unknown: use a registry baseline"
                )),
            }
        }
        if differences.is_empty() {
            Ok(())
        } else {
            Err(Error::NotComparable { differences })
        }
    }
}

/// Statistical settings shared by every rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Defaults {
    /// Two-sided significance level, Holm-corrected across blocking rules.
    pub alpha: f64,
    /// Confidence level of the intervals.
    pub confidence: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Fewer paired items than this: inconclusive.
    pub min_items: usize,
    /// Seed of the resampling stream.
    pub seed: u64,
    /// What an inconclusive blocking rule does to the verdict.
    pub inconclusive: InconclusiveIs,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            alpha: 0.05,
            confidence: 0.95,
            resamples: 10_000,
            min_items: 30,
            seed: 0,
            inconclusive: InconclusiveIs::Warn,
        }
    }
}

/// What an inconclusive blocking rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum InconclusiveIs {
    /// A warning: the check passes with a note.
    Warn,
    /// A failure: not enough evidence is a no.
    Block,
}

/// Which metrics a rule gates: globs, `*` by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Selector {
    /// `gantry` or `lm-eval`.
    pub source: String,
    /// Task name glob.
    pub task: String,
    /// Metric name glob (lm-eval metrics are `metric,filter`).
    pub metric: String,
}

impl Default for Selector {
    fn default() -> Self {
        Self {
            source: "*".into(),
            task: "*".into(),
            metric: "*".into(),
        }
    }
}

/// Which way is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// The producer's `higher_is_better`; otherwise lower for names like
    /// loss, perplexity, error, latency, ter; otherwise higher.
    Auto,
    /// Higher is better.
    Higher,
    /// Lower is better.
    Lower,
}

/// What a failing rule does.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// Reported only.
    Info,
    /// A warning.
    Warn,
    /// Fails the gate.
    Block,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A name for reports (defaults to the selector).
    #[serde(default)]
    pub name: Option<String>,
    /// Which metrics.
    #[serde(default)]
    pub select: Selector,
    /// Which way is better.
    #[serde(default = "auto")]
    pub direction: Direction,
    /// An absolute floor (a ceiling when lower is better) the candidate must reach.
    #[serde(default)]
    pub floor: Option<f64>,
    /// Non-inferiority margin: a drop smaller than this is not a regression.
    #[serde(default)]
    pub margin: f64,
    /// Most items allowed to go from pass to fail (binary metrics).
    #[serde(default)]
    pub max_new_failures: Option<usize>,
    /// What failing does.
    #[serde(default = "block")]
    pub severity: Severity,
}

fn auto() -> Direction {
    Direction::Auto
}

fn block() -> Severity {
    Severity::Block
}

impl Rule {
    /// The rule that gates everything: the default policy's only rule.
    pub fn everything() -> Self {
        Self {
            name: Some("any metric".into()),
            select: Selector::default(),
            direction: Direction::Auto,
            floor: None,
            margin: 0.0,
            max_new_failures: None,
            severity: Severity::Block,
        }
    }

    /// The name shown in reports.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            format!(
                "{}:{}/{}",
                self.select.source, self.select.task, self.select.metric
            )
        })
    }

    fn matches(&self, source: Source, key: &MetricKey) -> bool {
        let glob =
            |pattern: &str, text: &str| glob::Pattern::new(pattern).is_ok_and(|p| p.matches(text));
        glob(&self.select.source, source.as_str())
            && glob(&self.select.task, &key.task)
            && glob(&self.select.metric, &key.metric)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            defaults: Defaults::default(),
            baseline: BaselineRequirements::default(),
            rules: vec![Rule::everything()],
        }
    }
}

impl Policy {
    /// Reads and checks a TOML policy file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = read_text(path)?;
        let policy: Policy = toml::from_str(&text).map_err(|e| Error::Policy {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        policy.check().map_err(|message| Error::Policy {
            path: path.to_owned(),
            message,
        })?;
        Ok(policy)
    }

    fn check(&self) -> std::result::Result<(), String> {
        let d = &self.defaults;
        if !(d.alpha > 0.0 && d.alpha < 1.0) {
            return Err(format!(
                "defaults.alpha = {} must be between 0 and 1",
                d.alpha
            ));
        }
        if !(d.confidence > 0.0 && d.confidence < 1.0) {
            return Err(format!(
                "defaults.confidence = {} must be between 0 and 1",
                d.confidence
            ));
        }
        if d.resamples < 100 {
            return Err(format!(
                "defaults.resamples = {} is too few for an interval; use at least 1000",
                d.resamples
            ));
        }
        if let Some(days) = self.baseline.max_age_days
            && !(days > 0.0 && days.is_finite())
        {
            return Err(format!(
                "baseline.max_age_days = {days} must be a positive number of days"
            ));
        }
        if self.rules.is_empty() {
            return Err("no [[rule]]: a policy that gates nothing would always pass".into());
        }
        for (i, rule) in self.rules.iter().enumerate() {
            for (field, pattern) in [
                ("source", &rule.select.source),
                ("task", &rule.select.task),
                ("metric", &rule.select.metric),
            ] {
                if let Err(e) = glob::Pattern::new(pattern) {
                    return Err(format!(
                        "rule[{i}].select.{field} = {pattern:?} is not a valid glob: {e}"
                    ));
                }
            }
            if let Some(floor) = rule.floor
                && !floor.is_finite()
            {
                // NaN compares false with everything: the floor would be off.
                return Err(format!(
                    "rule[{i}].floor = {floor} is not a number; a floor is a finite value of the metric (leave it out for none)"
                ));
            }
            if rule.margin < 0.0 || !rule.margin.is_finite() {
                return Err(format!(
                    "rule[{i}].margin = {} must be zero or positive",
                    rule.margin
                ));
            }
        }
        Ok(())
    }

    /// The first rule gating `key` from `source`, with its index.
    pub fn rule_for(&self, source: Source, key: &MetricKey) -> Option<(usize, &Rule)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.matches(source, key))
    }
}

/// Resolves `auto` for a metric.
pub fn higher_is_better(direction: Direction, producer_says: Option<bool>, metric: &str) -> bool {
    match direction {
        Direction::Higher => true,
        Direction::Lower => false,
        Direction::Auto => producer_says.unwrap_or_else(|| {
            let name = metric
                .split(',')
                .next()
                .unwrap_or(metric)
                .to_ascii_lowercase();
            ![
                "loss",
                "perplexity",
                "error",
                "latency",
                "ter",
                "bits_per_byte",
                "wer",
                "cer",
            ]
            .iter()
            .any(|lower| {
                name == *lower
                    || name.ends_with(&format!("_{lower}"))
                    || name.starts_with(&format!("{lower}_"))
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_policy() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|source| Error::Read {
            path: "tmp".into(),
            error: source,
        })?;
        let path = dir.path().join("policy.toml");
        std::fs::write(
            &path,
            "[defaults]\nalpha = 0.01\ninconclusive = \"block\"\n\n[[rule]]\nselect = { task = \"mmlu*\", metric = \"acc,*\" }\nfloor = 0.6\nmargin = 0.01\nmax_new_failures = 3\n",
        )
        .map_err(|source| Error::Read { path: path.clone(), error: source })?;
        let policy = Policy::from_file(&path)?;
        assert_eq!(policy.defaults.alpha, 0.01);
        assert_eq!(policy.defaults.resamples, 10_000);
        assert_eq!(policy.rules[0].severity, Severity::Block);
        let key = MetricKey {
            task: "mmlu_stem".into(),
            metric: "acc,none".into(),
        };
        assert!(policy.rule_for(Source::LmEval, &key).is_some());
        let other = MetricKey {
            task: "arc".into(),
            metric: "acc,none".into(),
        };
        assert!(policy.rule_for(Source::LmEval, &other).is_none());
        std::fs::write(&path, "[[rule]]\nmargin = 0.1\nthreshold = 3\n").map_err(|source| {
            Error::Read {
                path: path.clone(),
                error: source,
            }
        })?;
        let error = Policy::from_file(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("threshold"), "{error}");
        Ok(())
    }

    #[test]
    fn direction_from_names() {
        assert!(higher_is_better(Direction::Auto, None, "acc,none"));
        assert!(!higher_is_better(
            Direction::Auto,
            None,
            "word_perplexity,none"
        ));
        assert!(!higher_is_better(Direction::Auto, None, "loss"));
        assert!(higher_is_better(Direction::Auto, Some(true), "loss"));
    }

    #[test]
    fn values_that_are_not_numbers_are_errors_naming_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy.toml");
        for (text, key) in [
            ("[[rule]]\nfloor = nan\n", "rule[0].floor = NaN"),
            ("[[rule]]\nmargin = nan\n", "rule[0].margin = NaN"),
            ("[[rule]]\nmargin = inf\n", "rule[0].margin = inf"),
            (
                "[defaults]\nalpha = nan\n[[rule]]\n",
                "defaults.alpha = NaN",
            ),
            (
                "[defaults]\nconfidence = nan\n[[rule]]\n",
                "defaults.confidence = NaN",
            ),
            (
                "[baseline]\nmax_age_days = nan\n[[rule]]\n",
                "baseline.max_age_days = NaN",
            ),
        ] {
            std::fs::write(&path, text).expect("write");
            let error = Policy::from_file(&path).expect_err("refused").to_string();
            assert!(error.contains(key), "{text}: {error}");
        }
    }
}
