//! `gantry report`: publish a Markdown report where the people of this run will see it.

use anyhow::{Context as _, Result};
use gantry_ci::{
    EnvVars, ForgeWriteReport, OutputTarget, Platform, Publication, SUMMARY_LIMIT_BYTES, StickyKey,
    append_summary, publish_to_forge, write_outputs,
};
use gantry_core::{ExitCode, Verdict};
use serde_json::json;

use crate::cli::{OutputFormat, PublishTarget, ReportArgs};
use crate::commands::Session;
use crate::printer::Printer;

pub(crate) fn run(args: &ReportArgs, session: &Session<'_>, printer: &Printer) -> Result<ExitCode> {
    let markdown = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read the report --file {}", args.file.display()))?;
    let markdown = session.masker.redact(&markdown);
    let verdict = Verdict::from(args.verdict);
    let title = args.title.clone().unwrap_or_else(|| {
        first_heading(&markdown).unwrap_or_else(|| format!("gantry report: {verdict}"))
    });
    let wants = |target| args.publish.contains(&target);

    let mut published = Vec::new();
    let mut summary_file = None;
    if wants(PublishTarget::Summary) {
        let path = summary_path(session, &args.name);
        let truncated = append_summary(
            &path,
            &markdown,
            SUMMARY_LIMIT_BYTES,
            Some(&args.file.display().to_string()),
        )?;
        if truncated {
            printer.warning(&format!(
                "the summary was cut to stay under 1 MiB; the full report is {}",
                args.file.display()
            ));
        }
        if session.platform != Platform::GitHub
            || session
                .environment
                .get(EnvVars::GITHUB_STEP_SUMMARY)
                .is_none()
        {
            summary_file = Some(path.display().to_string());
        }
        published.push("summary");
    }

    let mut forge = ForgeWriteReport::default();
    if wants(PublishTarget::Comment) || wants(PublishTarget::Status) || wants(PublishTarget::Check)
    {
        let publication = Publication {
            key: StickyKey {
                workflow: session
                    .context
                    .workflow
                    .clone()
                    .unwrap_or_else(|| "local".to_owned()),
                command: "report".to_owned(),
                name: args.name.clone(),
            },
            title: title.clone(),
            markdown: markdown.clone(),
            verdict,
            comment: wants(PublishTarget::Comment),
            commit_status: wants(PublishTarget::Status),
            check_run: wants(PublishTarget::Check),
        };
        forge = session.block_on(publish_to_forge(
            &session.context,
            session.environment,
            &publication,
        ))?;
        published.extend(forge.done.iter().copied());
    }
    for note in &forge.notes {
        if session.platform != Platform::Local {
            printer.warning(&session.masker.redact(note));
        }
    }
    for (what, error) in &forge.errors {
        printer.error(
            &session
                .masker
                .redact(&format!("cannot publish the {what}: {error}")),
        );
    }

    let comment_url = forge.comment.as_ref().and_then(|comment| match comment {
        gantry_ci::CommentOutcome::Created { url, .. }
        | gantry_ci::CommentOutcome::Updated { url, .. } => url.clone(),
    });
    let mut outputs = vec![
        ("verdict".to_owned(), verdict.to_string()),
        ("published".to_owned(), published.join(",")),
    ];
    if let Some(url) = &comment_url {
        outputs.push(("comment-url".to_owned(), url.clone()));
    }
    if let Some(path) = &summary_file {
        outputs.push(("summary-file".to_owned(), path.clone()));
    }
    let (target, warning) =
        OutputTarget::from_environment(session.platform, session.environment, "report");
    if let Some(warning) = warning {
        printer.warning(&warning);
    }
    let local_outputs = target == OutputTarget::Local && printer.format() == OutputFormat::Text;
    let mut sink: Vec<u8> = Vec::new();
    for warning in write_outputs(&target, &outputs, &mut sink)? {
        printer.warning(&warning);
    }

    match printer.format() {
        OutputFormat::Json => printer.json(&json!({
            "verdict": verdict,
            "title": title,
            "published": published,
            "comment_url": comment_url,
            "summary_file": summary_file,
            "notes": forge.notes.iter().map(|note| session.masker.redact(note)).collect::<Vec<_>>(),
            "errors": forge.errors.iter().map(|(what, error)| json!({"target": what, "message": session.masker.redact(&error.to_string())})).collect::<Vec<_>>(),
        })),
        OutputFormat::Text => {
            printer.info(&format!("{title}: {verdict}; published to {}", if published.is_empty() { "nothing".to_owned() } else { published.join(", ") }));
            if local_outputs {
                printer.data(String::from_utf8_lossy(&sink).trim_end());
            }
        }
    }
    if !forge.errors.is_empty() {
        return Ok(ExitCode::ERROR);
    }
    Ok(verdict.exit_code())
}

/// Where the summary goes: `$GITHUB_STEP_SUMMARY` on GitHub, else a file in the report directory.
fn summary_path(session: &Session<'_>, name: &str) -> std::path::PathBuf {
    if session.platform == Platform::GitHub
        && let Some(path) = session.environment.get(EnvVars::GITHUB_STEP_SUMMARY)
    {
        return path.into();
    }
    let directory = session
        .environment
        .get(EnvVars::GANTRY_REPORT_DIR)
        .unwrap_or(".gantry/reports");
    std::path::Path::new(directory).join(format!("report-{name}.md"))
}

fn first_heading(markdown: &str) -> Option<String> {
    markdown
        .lines()
        .find_map(|line| {
            line.trim_start()
                .strip_prefix('#')
                .map(|rest| rest.trim_start_matches('#').trim().to_owned())
        })
        .filter(|heading| !heading.is_empty())
}
