//! Markdown summaries: appended to `$GITHUB_STEP_SUMMARY`, or written to a file elsewhere.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// GitHub aborts the upload of a step summary over 1 MiB (with an error
/// annotation, but the step passes), so gantry keeps each summary file under it.
pub const SUMMARY_LIMIT_BYTES: u64 = 1024 * 1024;

/// What appending to a summary did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryWrite {
    /// The whole report was appended.
    Whole,
    /// It was cut at a line, with a note, to stay under the limit.
    Cut,
    /// The file is at its limit already (earlier steps filled it): nothing
    /// was appended.
    Full,
}

/// Appends `markdown` to the summary file at `path`, truncating it at a line
/// boundary with a note when the file would pass `limit_bytes`. `full_report`
/// names where the untruncated report lives.
pub fn append_summary(
    path: &Path,
    markdown: &str,
    limit_bytes: u64,
    full_report: Option<&str>,
) -> Result<SummaryWrite> {
    let write_error = |source| Error::Write {
        path: path.display().to_string(),
        error: source,
    };
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    let used = std::fs::metadata(path)
        .map(|metadata| metadata.len())
        .unwrap_or(0);
    let note = format!(
        "\n\n> [!WARNING]\n> This summary was cut to stay under GitHub's 1 MiB limit.{}\n",
        full_report
            .map(|report| format!(" The full report is in `{report}`."))
            .unwrap_or_default()
    );
    let room = limit_bytes.saturating_sub(used);
    let (text, truncated) = if (markdown.len() as u64) < room {
        (format!("{markdown}\n"), false)
    } else {
        let keep = usize::try_from(room.saturating_sub(note.len() as u64))
            .unwrap_or(usize::MAX)
            .min(markdown.len());
        // Cut at a line boundary (and so at a char boundary) so no table row or
        // multi-byte character is split.
        let cut = markdown[..floor_char_boundary(markdown, keep)]
            .rfind('\n')
            .unwrap_or(0);
        if cut == 0 && room < note.len() as u64 {
            return Ok(SummaryWrite::Full);
        }
        (format!("{}{note}", &markdown[..cut]), true)
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(write_error)?;
    file.write_all(text.as_bytes()).map_err(write_error)?;
    Ok(if truncated {
        SummaryWrite::Cut
    } else {
        SummaryWrite::Whole
    })
}

fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_summaries_are_appended_whole() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("summary.md");
        assert_eq!(
            append_summary(&path, "# one", 1000, None).expect("append"),
            SummaryWrite::Whole
        );
        assert_eq!(
            append_summary(&path, "# two", 1000, None).expect("append"),
            SummaryWrite::Whole
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "# one\n# two\n"
        );
    }

    #[test]
    fn large_summaries_are_cut_at_a_line_and_stay_under_the_limit() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("summary.md");
        std::fs::write(&path, "x".repeat(100)).expect("seed");
        let rows: String = (0..2000).map(|i| format!("| row {i} | é |\n")).collect();
        let written = append_summary(&path, &rows, 4096, Some("report.md")).expect("append");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(written, SummaryWrite::Cut);
        assert!(text.len() as u64 <= 4096, "{}", text.len());
        assert!(text.contains("The full report is in `report.md`"));
        let before_note = text.split("\n\n> [!WARNING]").next().expect("note");
        assert!(
            before_note.ends_with("| é |"),
            "cut mid-row: {:?}",
            &before_note[before_note.len() - 20..]
        );
        // A file at its limit takes nothing more, and says so.
        assert_eq!(
            append_summary(&path, "# more", 4096, None).expect("append"),
            SummaryWrite::Full
        );
    }
}
