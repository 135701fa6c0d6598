//! Located findings: what a check saw, where, and how bad it is.

use serde::{Deserialize, Serialize};

/// How much a finding matters. Ordered from least to most severe.
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
pub enum Severity {
    /// Informational: shown, never blocks.
    Notice,
    /// Worth a look; blocks only under a strict policy.
    Warning,
    /// Blocks the gate.
    Error,
}

impl Severity {
    /// The lowercase word used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Notice => "notice",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Where in a file a finding points. Lines and columns are 1-based.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    /// Path relative to the workspace root, with `/` separators.
    pub path: String,
    /// First line, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Last line, if the finding spans several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_line: Option<u64>,
    /// First column, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
    /// Last column, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_column: Option<u64>,
}

impl Location {
    /// A location covering a whole file.
    pub fn file(path: impl Into<String>) -> Location {
        Location {
            path: path.into(),
            ..Location::default()
        }
    }

    /// A location at one line of a file.
    pub fn line(path: impl Into<String>, line: u64) -> Location {
        Location {
            path: path.into(),
            line: Some(line),
            ..Location::default()
        }
    }
}

/// One observation of a check, ready to become an annotation, a Code Quality
/// entry, a SARIF result or a row in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Stable kebab-case code of the check that produced it, e.g. `duplicate-record`.
    pub code: String,
    /// How bad it is.
    pub severity: Severity,
    /// One-line title.
    pub title: String,
    /// The full message: what is wrong and what would be right.
    pub message: String,
    /// Where it is, if it points into a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl Finding {
    /// A finding without a location.
    pub fn new(
        code: impl Into<String>,
        severity: Severity,
        title: impl Into<String>,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            code: code.into(),
            severity,
            title: title.into(),
            message: message.into(),
            location: None,
        }
    }

    /// The same finding, pointing at `location`.
    #[must_use]
    pub fn at(mut self, location: Location) -> Finding {
        self.location = Some(location);
        self
    }
}

/// The JSON Schema of a findings file: an array of [`Finding`].
pub fn findings_schema() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(Vec<Finding>)).unwrap_or_default();
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "$id".to_owned(),
            serde_json::json!("https://gantry.dev/schemas/findings.schema.json"),
        );
        object.insert("title".to_owned(), serde_json::json!("gantry findings"));
        object.insert(
            "description".to_owned(),
            serde_json::json!("Findings for `gantry report --findings`: what a check saw, where, and how bad it is."),
        );
    }
    schema
}
