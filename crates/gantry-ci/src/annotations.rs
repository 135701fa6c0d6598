//! Findings shown where people look: GitHub annotations (capped), GitLab Code Quality, plain lines.

use std::io::Write;

use gantry_core::{Digest, Finding, Severity};
use serde_json::json;

use crate::environment::Platform;
use crate::workflow_commands::{escape_data, escape_property};

/// How many annotations of one severity a step emits before it summarizes
/// the rest. GitHub shows about ten errors and ten warnings per step.
#[derive(Debug, Clone, Copy)]
pub struct AnnotationLimits {
    /// Annotations per severity.
    pub per_severity: usize,
}

impl Default for AnnotationLimits {
    fn default() -> AnnotationLimits {
        AnnotationLimits { per_severity: 10 }
    }
}

/// Emits findings as annotations for one step, counting what it leaves out.
#[derive(Debug)]
pub struct Annotations {
    platform: Platform,
    limits: AnnotationLimits,
    emitted: [usize; 3],
    omitted: [usize; 3],
}

impl Annotations {
    /// A fresh annotation budget for one step.
    pub fn new(platform: Platform, limits: AnnotationLimits) -> Annotations {
        Annotations {
            platform,
            limits,
            emitted: [0; 3],
            omitted: [0; 3],
        }
    }

    /// Writes one finding to `out`: a workflow command on GitHub, a readable
    /// line elsewhere. Past the per-severity cap it only counts the finding.
    pub fn emit(&mut self, finding: &Finding, out: &mut dyn Write) -> std::io::Result<()> {
        let slot = severity_slot(finding.severity);
        if self.platform == Platform::GitHub && self.emitted[slot] >= self.limits.per_severity {
            self.omitted[slot] += 1;
            return Ok(());
        }
        self.emitted[slot] += 1;
        writeln!(out, "{}", format_annotation(self.platform, finding))
    }

    /// Writes the line that says how many findings were left out, if any.
    pub fn finish(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.omitted.iter().all(|&count| count == 0) {
            return Ok(());
        }
        let parts: Vec<String> = [Severity::Error, Severity::Warning, Severity::Notice]
            .into_iter()
            .filter(|&severity| self.omitted[severity_slot(severity)] > 0)
            .map(|severity| {
                format!(
                    "{} more {}(s)",
                    self.omitted[severity_slot(severity)],
                    severity.as_str()
                )
            })
            .collect();
        writeln!(
            out,
            "::notice title=gantry::{}",
            escape_data(&format!(
                "{} not annotated; the step summary lists every finding",
                parts.join(", ")
            ))
        )
    }

    /// How many findings were counted but not annotated.
    pub fn n_omitted(&self) -> usize {
        self.omitted.iter().sum()
    }
}

fn severity_slot(severity: Severity) -> usize {
    match severity {
        Severity::Error => 0,
        Severity::Warning => 1,
        Severity::Notice => 2,
    }
}

fn format_annotation(platform: Platform, finding: &Finding) -> String {
    match platform {
        Platform::GitHub => {
            let mut properties = Vec::new();
            if let Some(location) = &finding.location {
                properties.push(format!("file={}", escape_property(&location.path)));
                let numbered = [
                    ("line", location.line),
                    ("endLine", location.end_line),
                    ("col", location.column),
                    ("endColumn", location.end_column),
                ];
                properties.extend(
                    numbered
                        .into_iter()
                        .filter_map(|(key, value)| Some(format!("{key}={}", value?))),
                );
            }
            properties.push(format!(
                "title={}",
                escape_property(&format!("{} ({})", finding.title, finding.code))
            ));
            format!(
                "::{} {}::{}",
                finding.severity.as_str(),
                properties.join(","),
                escape_data(&finding.message)
            )
        }
        Platform::GitLab | Platform::Local => {
            let location = finding
                .location
                .as_ref()
                .map(|location| match location.line {
                    Some(line) => format!("\n  --> {}:{line}", location.path),
                    None => format!("\n  --> {}", location.path),
                });
            format!(
                "{}[{}]: {}: {}{}",
                finding.severity.as_str(),
                finding.code,
                finding.title,
                finding.message,
                location.unwrap_or_default()
            )
        }
    }
}

/// A GitLab Code Quality report (a Code Climate JSON array) for the findings
/// that point into a file.
pub fn code_quality_report(findings: &[Finding]) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = findings
        .iter()
        .filter_map(|finding| {
            let location = finding.location.as_ref()?;
            let line = location.line.unwrap_or(1);
            let fingerprint = Digest::of_bytes(
                format!(
                    "{}\0{}\0{line}\0{}",
                    finding.code, location.path, finding.message
                )
                .as_bytes(),
            );
            Some(json!({
                "description": format!("{}: {}", finding.title, finding.message),
                "check_name": finding.code,
                "fingerprint": fingerprint.hex(),
                "severity": match finding.severity {
                    Severity::Error => "critical",
                    Severity::Warning => "minor",
                    Severity::Notice => "info",
                },
                "location": { "path": location.path, "lines": { "begin": line } },
            }))
        })
        .collect();
    serde_json::Value::Array(entries)
}

#[cfg(test)]
mod tests {
    use gantry_core::Location;

    use super::*;

    fn finding(severity: Severity, line: u64) -> Finding {
        Finding::new(
            "parse-error",
            severity,
            "Unparsable row",
            "expected `,` at byte 17\nrow: {\"a\": 1",
        )
        .at(Location::line("data/train,v2.jsonl", line))
    }

    #[test]
    fn github_annotations_escape_properties_and_message() {
        let mut out = Vec::new();
        let mut annotations = Annotations::new(Platform::GitHub, AnnotationLimits::default());
        annotations
            .emit(&finding(Severity::Error, 3), &mut out)
            .expect("emit");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "::error file=data/train%2Cv2.jsonl,line=3,title=Unparsable row (parse-error)::expected `,` at byte 17%0Arow: {\"a\": 1\n"
        );
    }

    #[test]
    fn annotations_are_capped_per_severity_and_summarized() {
        let mut out = Vec::new();
        let mut annotations =
            Annotations::new(Platform::GitHub, AnnotationLimits { per_severity: 2 });
        for line in 0..5 {
            annotations
                .emit(&finding(Severity::Error, line), &mut out)
                .expect("emit");
            annotations
                .emit(&finding(Severity::Warning, line), &mut out)
                .expect("emit");
        }
        annotations.finish(&mut out).expect("finish");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(text.matches("::error ").count(), 2);
        assert_eq!(text.matches("::warning ").count(), 2);
        assert!(text.ends_with("::notice title=gantry::3 more error(s), 3 more warning(s) not annotated; the step summary lists every finding\n"), "{text}");
        assert_eq!(annotations.n_omitted(), 6);
    }

    #[test]
    fn code_quality_entries_have_the_gitlab_fields() {
        let report = code_quality_report(&[
            finding(Severity::Warning, 7),
            Finding::new("x", Severity::Error, "no file", "m"),
        ]);
        let entries = report.as_array().expect("array");
        assert_eq!(entries.len(), 1);
        let entry = &entries[0];
        assert_eq!(entry["check_name"], "parse-error");
        assert_eq!(entry["severity"], "minor");
        assert_eq!(entry["location"]["path"], "data/train,v2.jsonl");
        assert_eq!(entry["location"]["lines"]["begin"], 7);
        assert_eq!(entry["fingerprint"].as_str().map(str::len), Some(64));
    }
}
