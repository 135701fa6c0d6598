//! Markdown the commands' reports share: verdict badges, table cells, a manifest's files.

use std::fmt::Write as _;

use gantry_core::ModelManifest;

/// The verdict as report headings show it: `✅ pass`, `⚠️ warn`, `❌ fail`.
pub(crate) fn verdict_badge(verdict: gantry_core::Verdict) -> &'static str {
    match verdict {
        gantry_core::Verdict::Pass => "✅ pass",
        gantry_core::Verdict::Warn => "⚠️ warn",
        gantry_core::Verdict::Fail => "❌ fail",
    }
}

/// Text safe inside a Markdown table cell.
pub(crate) fn markdown_cell(value: &str) -> String {
    value.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// A manifest's files as a Markdown table (for summaries).
pub(crate) fn files_table(manifest: &ModelManifest) -> String {
    let mut out = String::from("| file | size | sha256 | details |\n|---|---:|---|---|\n");
    for file in &manifest.files {
        let details = match (&file.safetensors, &file.pickle) {
            (None, None) if file.gguf.is_some() => {
                file.gguf.as_ref().map_or_else(String::new, |gguf| {
                    format!(
                        "GGUF v{}, {} tensors, {} parameters ({}), {:.2} bits per weight",
                        gguf.version,
                        gguf.tensors,
                        gguf.parameters,
                        gguf.types.keys().cloned().collect::<Vec<_>>().join(", "),
                        gguf.tensor_bytes as f64 * 8.0 / gguf.parameters.max(1) as f64
                    )
                })
            }
            (Some(summary), _) => format!(
                "{} tensors, {} parameters ({})",
                summary.tensors,
                summary.parameters,
                summary
                    .dtypes
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (None, Some(pickle)) if !pickle.unsafe_imports.is_empty() => {
                format!(
                    "⚠️ pickle with unsafe imports: {}",
                    pickle.unsafe_imports.join(", ")
                )
            }
            (None, Some(_)) => "pickle (tensor imports only)".to_owned(),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | `{}` | {} |",
            markdown_cell(&file.path),
            file.size,
            &file.digest.hex()[..16],
            markdown_cell(&details)
        );
    }
    out
}
