//! `prepare.json` and its Markdown: the variant beside its parent —
//! footprint, quality against the parent, the transformation.

use std::fmt::Write as _;

use gantry_core::Verdict;
use serde::{Deserialize, Serialize};

use crate::footprint::Footprint;
use crate::transformation::{Transformation, TransformationParent};

/// One gated metric: the variant against its parent on the same items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QualityRow {
    /// Task.
    pub task: String,
    /// Metric.
    pub metric: String,
    /// The parent's mean.
    pub parent: f64,
    /// The variant's mean.
    pub variant: f64,
    /// variant − parent.
    pub delta: f64,
    /// The interval on the delta.
    pub ci_low: f64,
    /// The interval on the delta.
    pub ci_high: f64,
    /// Items compared.
    pub n: usize,
    /// pass, fail or inconclusive (eval-gate's row verdict).
    pub verdict: String,
}

/// The quality gate: non-inferiority to the parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Quality {
    /// The margin: a drop smaller than this is not a regression.
    pub max_drop: f64,
    /// Where the parent's side came from: `served` (both served and asked
    /// now) or `registered` (the parent's registered evaluation).
    pub baseline: String,
    /// The gate's verdict.
    pub verdict: Verdict,
    /// One row per gated metric.
    pub rows: Vec<QualityRow>,
    /// The gate report, beside `prepare.json`.
    pub gate_report: String,
}

/// The variant, registered or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Its name.
    pub name: String,
    /// The version registered, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Its manifest digest, when registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// `prepare.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrepareReport {
    /// Format version (1).
    pub version: u32,
    /// pass (registered, non-inferior or not gated), fail (the gate said no).
    pub verdict: Verdict,
    /// The parent.
    pub parent: TransformationParent,
    /// The variant.
    pub variant: Variant,
    /// How it was made.
    pub transformation: Transformation,
    /// The parent's footprint.
    pub parent_footprint: Footprint,
    /// The variant's footprint.
    pub variant_footprint: Footprint,
    /// The variant's weight bytes over the parent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_ratio: Option<f64>,
    /// The quality gate, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Quality>,
    /// What a reader should know (a gate that did not run, and why).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl PrepareReport {
    /// The largest drop over the gated metrics (negative: the variant is worse).
    pub fn quality_delta(&self) -> Option<f64> {
        self.quality
            .as_ref()
            .and_then(|quality| quality.rows.iter().map(|row| row.delta).reduce(f64::min))
    }
}

/// The JSON Schema of `prepare.json`.
pub fn report_schema() -> schemars::Schema {
    schemars::schema_for!(PrepareReport)
}

fn escape(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\n', " ")
}

fn bytes(value: u64) -> String {
    if value >= 1 << 30 {
        format!("{:.2} GiB", value as f64 / f64::from(1_u32 << 30))
    } else if value >= 1 << 20 {
        format!("{:.2} MiB", value as f64 / f64::from(1_u32 << 20))
    } else if value >= 1 << 10 {
        format!("{:.1} KiB", value as f64 / 1024.0)
    } else {
        format!("{value} B")
    }
}

fn optional(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "—".to_owned(), |value| format!("{value:.2}{unit}"))
}

/// The report as Markdown.
pub fn markdown(report: &PrepareReport) -> String {
    let mut out = String::new();
    let icon = match report.verdict {
        Verdict::Pass => "✅",
        Verdict::Warn => "⚠️",
        Verdict::Fail => "❌",
    };
    let variant = match (&report.variant.version, &report.variant.digest) {
        (Some(version), Some(digest)) => format!("{} {version} (`{digest}`)", report.variant.name),
        _ => format!("{} (not registered)", report.variant.name),
    };
    let _ = writeln!(
        out,
        "## {icon} gantry prepare: {} {} → {}\n",
        escape(&report.parent.name),
        escape(&report.parent.version),
        escape(&variant)
    );
    let _ = writeln!(
        out,
        "{} from `{}` by `{}` in {:.1} s.\n",
        escape(&report.transformation.relation),
        report.parent.digest,
        escape(&report.transformation.command.join(" ")),
        report.transformation.seconds
    );
    out.push_str("| | parent | variant |\n|---|---:|---:|\n");
    let (p, v) = (&report.parent_footprint, &report.variant_footprint);
    let _ = writeln!(
        out,
        "| weights | {} | {}{} |",
        bytes(p.weight_bytes),
        bytes(v.weight_bytes),
        report
            .size_ratio
            .map_or(String::new(), |ratio| format!(" (×{ratio:.2})"))
    );
    let _ = writeln!(
        out,
        "| all files | {} | {} |",
        bytes(p.total_bytes),
        bytes(v.total_bytes)
    );
    let _ = writeln!(out, "| parameters | {} | {} |", p.parameters, v.parameters);
    let types = |footprint: &Footprint| {
        footprint
            .types
            .iter()
            .map(|(kind, count)| format!("{kind} {count}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "| types | {} | {} |", types(p), types(v));
    let _ = writeln!(
        out,
        "| bits per parameter | {} | {} |",
        optional(p.bits_per_parameter, ""),
        optional(v.bits_per_parameter, "")
    );
    if p.serving.is_some() || v.serving.is_some() {
        let serving =
            |footprint: &Footprint, pick: fn(&crate::Serving) -> Option<f64>, unit: &str| {
                optional(footprint.serving.as_ref().and_then(pick), unit)
            };
        let _ = writeln!(
            out,
            "| load | {} | {} |",
            serving(p, |s| Some(s.load_seconds), " s"),
            serving(v, |s| Some(s.load_seconds), " s")
        );
        let _ = writeln!(
            out,
            "| latency p50 / p95 | {} / {} | {} / {} |",
            serving(p, |s| s.latency_p50_ms, " ms"),
            serving(p, |s| s.latency_p95_ms, " ms"),
            serving(v, |s| s.latency_p50_ms, " ms"),
            serving(v, |s| s.latency_p95_ms, " ms")
        );
        let _ = writeln!(
            out,
            "| output tokens/s | {} | {} |",
            serving(p, |s| s.tokens_per_second, ""),
            serving(v, |s| s.tokens_per_second, "")
        );
    }
    if let Some(quality) = &report.quality {
        let _ = writeln!(
            out,
            "\nQuality against the {} parent (non-inferior within {}): **{}**\n",
            quality.baseline,
            quality.max_drop,
            match quality.verdict {
                Verdict::Pass => "pass",
                Verdict::Warn => "warn",
                Verdict::Fail => "fail",
            }
        );
        out.push_str("| task | metric | parent | variant | Δ (CI) | n | verdict |\n|---|---|---:|---:|---|---:|---|\n");
        for row in &quality.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {:.4} | {:.4} | {:+.4} [{:+.4}, {:+.4}] | {} | {} |",
                escape(&row.task),
                escape(&row.metric),
                row.parent,
                row.variant,
                row.delta,
                row.ci_low,
                row.ci_high,
                row.n,
                row.verdict
            );
        }
    }
    for note in &report.notes {
        let _ = writeln!(out, "\n> {}", escape(note));
    }
    out
}
