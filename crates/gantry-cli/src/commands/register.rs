//! `gantry register`: hash, inspect and store a model directory as a version with lineage.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use gantry_core::{ExitCode, Verdict};
use gantry_registry::{LineageSources, ModelSource, RegisterRequest, VersionRequest};
use serde_json::json;

use crate::cli::{PublishTarget, RegisterArgs};
use crate::commands::Session;
use crate::commands::lineage::git_lineage;
use crate::commands::markdown::files_table;
use crate::commands::publish::{Outcome, publish};
use crate::commands::registries::{open_registry, redacted_metadata};
use crate::packaging::Output;
use crate::printer::Printer;

pub(crate) fn run(
    args: &RegisterArgs,
    session: &Session<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    gantry_registry::validate_name(&args.name).context("--name")?;
    for alias in &args.alias {
        gantry_registry::validate_alias(alias).context("--alias")?;
    }
    let version = match args.version.as_str() {
        "auto" => VersionRequest::Auto,
        text => VersionRequest::Exact(gantry_registry::parse_version(text).context("--version")?),
    };
    let registry = open_registry(&args.registry, session)?;
    let started = std::time::Instant::now();
    let source = ModelSource::read(&args.model_dir, args.allow_pickle)
        .map_err(gantry_registry::Error::from)?;
    if !source.skipped.is_empty() {
        printer.info(&format!(
            "left out hidden entries of {}: {}",
            args.model_dir.display(),
            source.skipped.join(", ")
        ));
    }
    for file in &source.files {
        if let Some(pickle) = &file.pickle {
            if pickle.unsafe_imports.is_empty() {
                printer.warning(&format!(
                    "{}: a pickle checkpoint (tensor imports only); safetensors loads without running code",
                    file.path
                ));
            } else {
                printer.warning(&format!(
                    "{}: registered with --allow-pickle although loading it imports {}",
                    file.path,
                    pickle.unsafe_imports.join(", ")
                ));
            }
        }
    }
    let lineage = LineageSources {
        run_record: args.run_record.clone(),
        data_lock: args.data_lock.clone(),
        gate_report: args.gate_report.clone(),
        eval_results: args.eval_results.clone(),
        eval_set: args.eval_set.clone(),
        data_summary: args.data_summary.clone(),
        git: git_lineage(session),
    }
    .read()?;
    if let Some(gate) = &lineage.lineage.gate
        && gate.verdict == Verdict::Fail
    {
        printer.warning(&format!(
            "--gate-report {}: the gate's verdict is fail; the version records it for deploys to see",
            gate.document.file_name
        ));
    }
    let actor = session
        .context
        .actor
        .clone()
        .unwrap_or_else(|| "unknown".to_owned());
    let request = RegisterRequest {
        name: &args.name,
        version,
        source: &source,
        lineage: &lineage,
        metadata: redacted_metadata(session, &args.metadata).collect(),
        aliases: args.alias.clone(),
        actor,
    };
    if args.dry_run {
        return dry_run(&request, registry.as_ref(), started, printer);
    }
    let registration = registry.register(&request)?;
    let elapsed = started.elapsed();
    let manifest = &registration.manifest;
    let reference = format!("{}@{}", manifest.name, registration.digest);
    let total = manifest.total_size();
    printer.info(&format!(
        "{} {} {} ({}): {} files, {} bytes, {} stored, in {:.2}s ({:.0} MB/s) in {}",
        if registration.created {
            "registered"
        } else {
            "already registered:"
        },
        manifest.name,
        manifest.version,
        registration.digest,
        manifest.files.len(),
        total,
        registration.bytes_stored,
        elapsed.as_secs_f64(),
        total as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9),
        registry.uri()
    ));
    for event in &registration.alias_moves {
        printer.info(&format!(
            "alias {} → {} (was {})",
            event.alias.as_deref().unwrap_or_default(),
            event.version,
            event
                .previous
                .as_ref()
                .map_or("unset".to_owned(), |previous| previous.version.clone())
        ));
    }

    let statement = args
        .provenance
        .as_ref()
        .map(|path| (path, provenance(&registration, &registry.uri(), session)));
    if let Some((path, _)) = &statement {
        printer.info(&format!(
            "writing the provenance of {reference} (in-toto statement, SLSA provenance v1) to {}",
            path.display()
        ));
    }

    let mut markdown = String::new();
    let _ = writeln!(
        markdown,
        "## gantry register: {} {}\n",
        manifest.name, manifest.version
    );
    let _ = writeln!(
        markdown,
        "{} `{}` in `{}`: {} files, {} bytes.\n",
        if registration.created {
            "Registered"
        } else {
            "Already registered as"
        },
        registration.digest,
        registry.uri(),
        manifest.files.len(),
        total
    );
    markdown.push_str(&files_table(manifest));
    let lineage_lines: Vec<String> = manifest
        .lineage
        .documents()
        .into_iter()
        .map(|(role, link)| format!("- {role}: `{}` `{}`", link.file_name, link.digest))
        .chain(
            manifest
                .lineage
                .git
                .iter()
                .map(|git| format!("- commit: `{}`", git.commit)),
        )
        .collect();
    if !lineage_lines.is_empty() {
        let _ = writeln!(markdown, "\n### Lineage\n\n{}", lineage_lines.join("\n"));
    }
    let mut outcome = Outcome::new(
        "register",
        format!("register: {} {}", manifest.name, manifest.version),
        Verdict::Pass,
    )
    .published_as(&args.name, vec![PublishTarget::Summary])
    .markdown(markdown)
    .output(Output::Model, &manifest.name)
    .output(Output::Version, &manifest.version)
    .output(Output::Digest, registration.digest)
    .output(Output::Uri, registry.uri())
    .output(Output::Reference, &reference)
    .output(Output::Created, registration.created)
    .body(&json!({
        "name": manifest.name,
        "version": manifest.version,
        "digest": registration.digest,
        "uri": registry.uri(),
        "reference": reference,
        "created": registration.created,
        "bytes_stored": registration.bytes_stored,
        "alias_moves": registration.alias_moves,
        "manifest": manifest,
    }))?;
    if let Some((path, statement)) = &statement {
        outcome = outcome
            .json_file(path, statement)?
            .path_output(Output::ProvenanceFile, path);
    }
    publish(outcome, session, printer)
}

/// An in-toto v1 statement with an SLSA provenance v1 predicate: the
/// subject is the manifest digest (the model's identity), the resolved
/// dependencies the commit and each lineage document.
fn provenance(
    registration: &gantry_registry::Registration,
    registry: &str,
    session: &Session<'_>,
) -> serde_json::Value {
    let manifest = &registration.manifest;
    let mut dependencies = Vec::new();
    if let Some(git) = &manifest.lineage.git {
        let uri = match (&git.repository, &git.git_ref) {
            (Some(repository), Some(git_ref)) => format!("git+{repository}@{git_ref}"),
            (Some(repository), None) => format!("git+{repository}"),
            _ => "git".to_owned(),
        };
        dependencies.push(json!({"uri": uri, "digest": {"gitCommit": git.commit}}));
    }
    for (role, link) in manifest.lineage.documents() {
        dependencies.push(json!({
            "name": link.file_name,
            "digest": {"sha256": link.digest.hex()},
            "annotations": {"role": role},
        }));
    }
    let builder = session
        .context
        .run_url
        .clone()
        .unwrap_or_else(|| "local".to_owned());
    json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{
            "name": format!("{}@{}", manifest.name, manifest.version),
            "digest": {"sha256": registration.digest.hex()},
        }],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://github.com/gantry-dev/gantry/register/v1",
                "externalParameters": {
                    "name": manifest.name,
                    "version": manifest.version,
                    "registry": registry,
                    "metadata": manifest.metadata,
                },
                "internalParameters": {"gantry": env!("CARGO_PKG_VERSION")},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": builder},
                "metadata": {"startedOn": manifest.created},
            },
        },
    })
}

/// `--dry-run`: the digest the model would have, and whether it is registered.
fn dry_run(
    request: &RegisterRequest<'_>,
    registry: &dyn gantry_registry::Registry,
    started: std::time::Instant,
    printer: &Printer,
) -> Result<ExitCode> {
    let digests = request.source.hash()?;
    let manifest = gantry_registry::build_manifest(
        request.name,
        &request.source.files,
        &digests,
        &request.lineage.lineage,
        &request.metadata,
    );
    let digest = manifest.digest()?;
    let existing = registry
        .versions(request.name)?
        .into_iter()
        .find(|resolved| resolved.digest == digest);
    let elapsed = started.elapsed().as_secs_f64();
    let total = request.source.total_size();
    match printer.format() {
        crate::cli::OutputFormat::Json => printer.json(&json!({
            "name": request.name,
            "digest": digest,
            "registered_as": existing.as_ref().map(|resolved| &resolved.manifest.version),
            "manifest": manifest,
        })),
        crate::cli::OutputFormat::Text => {
            printer.info(&format!(
                "dry run: {} files, {total} bytes hashed in {elapsed:.2}s ({:.0} MB/s); nothing stored",
                manifest.files.len(),
                total as f64 / 1e6 / elapsed.max(1e-9)
            ));
            printer.data(&format!(
                "{}@{digest} {}",
                request.name,
                match &existing {
                    Some(resolved) => format!("is registered as {}", resolved.manifest.version),
                    None => format!("is not registered in {}", registry.uri()),
                }
            ));
        }
    }
    Ok(ExitCode::PASS)
}
