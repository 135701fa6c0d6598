//! GitLab metrics reports: OpenMetrics text lines GitLab compares between a
//! merge request's pipeline and its target branch's.

use std::fmt::Write as _;

/// One sample: a metric name, its labels and a value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// The metric's name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
    pub name: &'static str,
    /// Label names and values.
    pub labels: Vec<(&'static str, String)>,
    /// The value; NaN and infinities are written as OpenMetrics spells them.
    pub value: f64,
}

/// The metrics as OpenMetrics text lines, label values escaped.
pub fn metrics_report(metrics: &[Metric]) -> String {
    let mut text = String::new();
    for metric in metrics {
        let labels: Vec<String> = metric
            .labels
            .iter()
            .map(|(name, value)| format!("{name}=\"{}\"", escape(value)))
            .collect();
        let value = if metric.value.is_nan() {
            "NaN".to_owned()
        } else if metric.value.is_infinite() {
            if metric.value > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
        } else {
            metric.value.to_string()
        };
        if labels.is_empty() {
            let _ = writeln!(text, "{} {value}", metric.name);
        } else {
            let _ = writeln!(text, "{}{{{}}} {value}", metric.name, labels.join(","));
        }
    }
    text
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_and_special_values_spelled() {
        let text = metrics_report(&[
            Metric {
                name: "eval_gate_delta",
                labels: vec![
                    ("task", "a\"b\\c\nd".to_owned()),
                    ("metric", "acc".to_owned()),
                ],
                value: -0.25,
            },
            Metric {
                name: "eval_gate_candidate",
                labels: Vec::new(),
                value: f64::NAN,
            },
        ]);
        assert_eq!(
            text,
            "eval_gate_delta{task=\"a\\\"b\\\\c\\nd\",metric=\"acc\"} -0.25\neval_gate_candidate NaN\n"
        );
    }
}
