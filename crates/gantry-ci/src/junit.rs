//! JUnit XML reports: how GitLab shows check results in the merge request's test summary.

use std::fmt::Write as _;

/// The outcome of one test case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JunitOutcome {
    /// Passed; the text goes to `system-out`.
    Passed(String),
    /// Failed, with a one-line message and details.
    Failed {
        /// One line.
        message: String,
        /// Details (examples, values).
        details: String,
    },
    /// Not run, and why.
    Skipped(String),
}

/// One test case: a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JunitCase {
    /// The check's id.
    pub name: String,
    /// The group it belongs to (the command).
    pub class_name: String,
    /// What happened.
    pub outcome: JunitOutcome,
}

/// A JUnit XML document with one test suite holding `cases`.
pub fn junit_report(suite: &str, cases: &[JunitCase]) -> String {
    let failures = cases
        .iter()
        .filter(|case| matches!(case.outcome, JunitOutcome::Failed { .. }))
        .count();
    let skipped = cases
        .iter()
        .filter(|case| matches!(case.outcome, JunitOutcome::Skipped(_)))
        .count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">",
        escape(suite),
        cases.len()
    );
    let _ = writeln!(
        xml,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">",
        escape(suite),
        cases.len()
    );
    for case in cases {
        let _ = write!(
            xml,
            "    <testcase name=\"{}\" classname=\"{}\">",
            escape(&case.name),
            escape(&case.class_name)
        );
        match &case.outcome {
            JunitOutcome::Passed(text) if text.is_empty() => {}
            JunitOutcome::Passed(text) => {
                let _ = write!(xml, "<system-out>{}</system-out>", escape(text));
            }
            JunitOutcome::Failed { message, details } => {
                let _ = write!(
                    xml,
                    "<failure message=\"{}\">{}</failure>",
                    escape(message),
                    escape(details)
                );
            }
            JunitOutcome::Skipped(reason) => {
                let _ = write!(xml, "<skipped message=\"{}\"/>", escape(reason));
            }
        }
        xml.push_str("</testcase>\n");
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

/// Escapes text for XML attributes and content, dropping characters XML 1.0 forbids.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\t' | '\n' | '\r' => escaped.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {}
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_counts_and_escapes() {
        let cases = [
            JunitCase {
                name: "parse".into(),
                class_name: "validate-data".into(),
                outcome: JunitOutcome::Passed(String::new()),
            },
            JunitCase {
                name: "secrets".into(),
                class_name: "validate-data".into(),
                outcome: JunitOutcome::Failed {
                    message: "1 > 0".into(),
                    details: "a.jsonl:3 <key> & \"x\"\u{1}".into(),
                },
            },
            JunitCase {
                name: "max-tokens".into(),
                class_name: "validate-data".into(),
                outcome: JunitOutcome::Skipped("pass --max-tokens".into()),
            },
        ];
        let xml = junit_report("gantry validate-data", &cases);
        assert!(
            xml.contains(
                "<testsuite name=\"gantry validate-data\" tests=\"3\" failures=\"1\" skipped=\"1\">"
            ),
            "{xml}"
        );
        assert!(
            xml.contains(
                "<failure message=\"1 &gt; 0\">a.jsonl:3 &lt;key&gt; &amp; &quot;x&quot;</failure>"
            ),
            "{xml}"
        );
        assert!(xml.contains("<testcase name=\"max-tokens\" classname=\"validate-data\"><skipped message=\"pass --max-tokens\"/></testcase>"), "{xml}");
    }
}
