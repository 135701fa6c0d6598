//! `gantry registry …`: list, show, versions, alias, verify, pull, diff, events — on any backend.

use std::fmt::Write as _;

use anyhow::{Context as _, Result, bail};
use gantry_core::{Digest, ExitCode};
use gantry_registry::{Expectation, FileRegistry, Registry, Resolved};
use serde_json::json;

use crate::cli::{OutputFormat, RegistryArgs, RegistryCommand};
use crate::commands::Session;
use crate::commands::registries::{open_registry, parse_reference};
use crate::printer::Printer;

pub(crate) fn run(
    args: &RegistryArgs,
    session: &Session<'_>,
    printer: &Printer,
) -> Result<ExitCode> {
    let registry = open_registry(&args.registry, session)?;
    let actor = session
        .context
        .actor
        .clone()
        .unwrap_or_else(|| "unknown".to_owned());
    match &args.command {
        RegistryCommand::List => list(registry.as_ref(), printer),
        RegistryCommand::Show { reference } => {
            let resolved = registry.resolve(&parse_reference(reference)?)?;
            printer.json(&serde_json::to_value(&resolved.manifest)?);
            Ok(ExitCode::PASS)
        }
        RegistryCommand::Versions { name } => versions(registry.as_ref(), name, printer),
        RegistryCommand::Alias {
            reference,
            alias,
            expect,
        } => {
            let target = registry.resolve(&parse_reference(reference)?)?;
            let expectation = match expect.as_deref() {
                None => Expectation::Any,
                Some("none") => Expectation::Absent,
                Some(digest) => {
                    Expectation::Digest(digest.parse::<Digest>().with_context(|| {
                        format!("--expect {digest:?}: expected a sha256:… digest or none")
                    })?)
                }
            };
            let event = registry.move_alias(alias, &target, &expectation, &actor)?;
            match printer.format() {
                OutputFormat::Json => printer.json(&serde_json::to_value(&event)?),
                OutputFormat::Text => {
                    let from = event.previous.as_ref().map_or_else(
                        || "unset".to_owned(),
                        |previous| format!("{} ({})", previous.version, previous.digest),
                    );
                    if event.action == "alias-unchanged" {
                        printer.info(&format!(
                            "{}@{alias} already points at {} ({})",
                            target.manifest.name, target.manifest.version, target.digest
                        ));
                    } else {
                        printer.info(&format!(
                            "{}@{alias}: {from} → {} ({})",
                            target.manifest.name, target.manifest.version, target.digest
                        ));
                    }
                }
            }
            Ok(ExitCode::PASS)
        }
        RegistryCommand::Verify { reference } => {
            let resolved = registry.resolve(&parse_reference(reference)?)?;
            let report = gantry_registry::verify(registry.as_ref(), &resolved)?;
            let problems = report.problems();
            match printer.format() {
                OutputFormat::Json => {
                    let mut value = serde_json::to_value(&report)?;
                    value["ok"] = json!(report.ok());
                    printer.json(&value);
                }
                OutputFormat::Text => {
                    for check in &report.chain {
                        printer.info(&format!(
                            "lineage {}: {} ({})",
                            check.check, check.outcome, check.detail
                        ));
                    }
                    if problems.is_empty() {
                        printer.info(&format!(
                            "{} ({}): {} files and {} lineage documents verified, {} bytes",
                            report.model,
                            report.digest,
                            report.files.len(),
                            report.documents.len(),
                            resolved.manifest.total_size()
                        ));
                    }
                }
            }
            for problem in &problems {
                printer.error(problem);
            }
            Ok(if problems.is_empty() {
                ExitCode::PASS
            } else {
                ExitCode::VERDICT_NO
            })
        }
        RegistryCommand::Pull { reference, to } => {
            let resolved = registry.resolve(&parse_reference(reference)?)?;
            let report = gantry_registry::pull(registry.as_ref(), &resolved, to)?;
            match printer.format() {
                OutputFormat::Json => {
                    let mut value = serde_json::to_value(&report)?;
                    value["digest"] = json!(resolved.digest);
                    value["version"] = json!(resolved.manifest.version);
                    printer.json(&value);
                }
                OutputFormat::Text => printer.info(&format!(
                    "pulled {}@{} ({}) into {}: {} files written and verified ({} bytes), {} already present",
                    resolved.manifest.name,
                    resolved.manifest.version,
                    resolved.digest,
                    to.display(),
                    report.written,
                    report.bytes,
                    report.already_present
                )),
            }
            Ok(ExitCode::PASS)
        }
        RegistryCommand::Diff { from, to } => {
            let a = registry.resolve(&parse_reference(from)?)?;
            let b = registry.resolve(&parse_reference(to)?)?;
            let diff = gantry_registry::diff(&a, &b);
            match printer.format() {
                OutputFormat::Json => printer.json(&serde_json::to_value(&diff)?),
                OutputFormat::Text => printer.data(&render_diff(&diff)),
            }
            Ok(ExitCode::PASS)
        }
        RegistryCommand::Fsck { repair } => {
            fsck(&args.registry, registry.as_ref(), *repair, printer)
        }
        RegistryCommand::Events { name } => {
            gantry_registry::validate_name(name)?;
            let events = registry.events(name)?;
            match printer.format() {
                OutputFormat::Json => printer.json(&serde_json::to_value(&events)?),
                OutputFormat::Text => {
                    for event in &events {
                        let line = match (&event.alias, &event.previous) {
                            (Some(alias), previous) => format!(
                                "{}  {}  {alias}: {} → {} ({})",
                                event.time,
                                event.actor,
                                previous
                                    .as_ref()
                                    .map_or("unset".to_owned(), |p| p.version.clone()),
                                event.version,
                                event.digest
                            ),
                            (None, _) => format!(
                                "{}  {}  registered {} ({})",
                                event.time, event.actor, event.version, event.digest
                            ),
                        };
                        printer.data(&line);
                    }
                }
            }
            Ok(ExitCode::PASS)
        }
    }
}

/// `gantry registry fsck [--repair]`: the file registry's own deep check
/// (with repairs), any other backend's versions verified one by one.
fn fsck(uri: &str, registry: &dyn Registry, repair: bool, printer: &Printer) -> Result<ExitCode> {
    let report = match uri.strip_prefix("file:") {
        Some(path) => FileRegistry::new(path).fsck(repair)?,
        None => {
            if repair {
                bail!(
                    "--repair sets damage aside in a file registry's own directory; {uri} keeps its records on its server (fsck reports, the server repairs)"
                );
            }
            gantry_registry::check_registry(registry)?
        }
    };
    match printer.format() {
        OutputFormat::Json => {
            let mut value = serde_json::to_value(&report)?;
            value["ok"] = json!(report.ok());
            printer.json(&value);
        }
        OutputFormat::Text => {
            for damage in &report.damage {
                let what = format!("{}: {}", damage.place, damage.problem);
                match (&damage.repair, damage.repaired) {
                    (Some(repair), true) => printer.info(&format!("repaired {what}: {repair}")),
                    (Some(repair), false) => {
                        printer.error(&format!("{what} (fsck --repair would {repair})"))
                    }
                    (None, _) => {
                        printer.error(&format!("{what} (no repair without the original bytes)"))
                    }
                }
            }
            for version in &report.set_aside {
                printer.info(&format!("set aside by an earlier repair: {version}"));
            }
            printer.info(&format!(
                "{}: {} models, {} versions, {} blobs ({} bytes) checked; {} unreferenced blobs ({} bytes) kept; {}",
                report.uri,
                report.models,
                report.versions,
                report.blobs,
                report.blob_bytes,
                report.unreferenced_blobs,
                report.unreferenced_bytes,
                match (report.damage.len(), report.ok()) {
                    (0, _) => "no damage".to_owned(),
                    (1, true) => "1 problem, repaired".to_owned(),
                    (1, false) => "1 problem".to_owned(),
                    (n, true) => format!("{n} problems, all repaired"),
                    (n, false) => format!("{n} problems"),
                }
            ));
        }
    }
    Ok(if report.ok() {
        ExitCode::PASS
    } else {
        ExitCode::VERDICT_NO
    })
}

/// Damage the registry noticed while reading `name`, as warnings.
fn warn_damage(registry: &dyn Registry, name: &str, printer: &Printer) -> Result<()> {
    for problem in registry.damage(name)? {
        printer.warning(&problem);
    }
    Ok(())
}

fn list(registry: &dyn Registry, printer: &Printer) -> Result<ExitCode> {
    let mut rows = Vec::new();
    for name in registry.models()? {
        warn_damage(registry, &name, printer)?;
        let versions = registry.versions(&name)?;
        let aliases = registry.aliases(&name)?;
        rows.push((name, versions, aliases));
    }
    match printer.format() {
        OutputFormat::Json => printer.json(&json!(rows.iter().map(|(name, versions, aliases)| json!({
            "name": name,
            "versions": versions.len(),
            "latest": versions.last().map(|latest| json!({"version": latest.manifest.version, "digest": latest.digest})),
            "aliases": aliases,
        })).collect::<Vec<_>>())),
        OutputFormat::Text => {
            if rows.is_empty() {
                printer.info(&format!("no models in {}", registry.uri()));
            }
            for (name, versions, aliases) in &rows {
                let latest = versions.last().map_or("-".to_owned(), |latest| latest.manifest.version.clone());
                let aliases = aliases
                    .iter()
                    .map(|(alias, target)| format!("{alias}={}", target.version))
                    .collect::<Vec<_>>()
                    .join(" ");
                printer.data(&format!("{name}  {} versions, latest {latest}  {aliases}", versions.len()));
            }
        }
    }
    Ok(ExitCode::PASS)
}

fn versions(registry: &dyn Registry, name: &str, printer: &Printer) -> Result<ExitCode> {
    gantry_registry::validate_name(name)?;
    warn_damage(registry, name, printer)?;
    let versions = registry.versions(name)?;
    if versions.is_empty() {
        bail!("no model {name:?} in {}", registry.uri());
    }
    let aliases = registry.aliases(name)?;
    let aliases_of = |resolved: &Resolved| -> Vec<String> {
        aliases
            .iter()
            .filter(|(_, target)| target.digest == resolved.digest)
            .map(|(alias, _)| alias.clone())
            .collect()
    };
    match printer.format() {
        OutputFormat::Json => printer.json(&json!(
            versions
                .iter()
                .map(|resolved| json!({
                    "version": resolved.manifest.version,
                    "digest": resolved.digest,
                    "created": resolved.manifest.created,
                    "files": resolved.manifest.files.len(),
                    "size": resolved.manifest.total_size(),
                    "aliases": aliases_of(resolved),
                }))
                .collect::<Vec<_>>()
        )),
        OutputFormat::Text => {
            for resolved in &versions {
                printer.data(&format!(
                    "{}  {}  {}  {} files  {} bytes  {}",
                    resolved.manifest.version,
                    resolved.digest,
                    resolved.manifest.created,
                    resolved.manifest.files.len(),
                    resolved.manifest.total_size(),
                    aliases_of(resolved).join(",")
                ));
            }
        }
    }
    Ok(ExitCode::PASS)
}

fn render_diff(diff: &gantry_registry::Diff) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{} → {}", diff.from, diff.to);
    if diff.identical {
        let _ = writeln!(out, "identical content");
        return out;
    }
    for path in &diff.added {
        let _ = writeln!(out, "+ {path}");
    }
    for path in &diff.removed {
        let _ = writeln!(out, "- {path}");
    }
    for change in &diff.changed {
        let _ = writeln!(
            out,
            "~ {}  {} bytes → {} bytes  {} → {}",
            change.path, change.from.1, change.to.1, change.from.0, change.to.0
        );
    }
    let _ = writeln!(out, "{} files unchanged", diff.unchanged);
    if diff.parameters.0 != diff.parameters.1 {
        let _ = writeln!(
            out,
            "parameters: {} → {}",
            diff.parameters.0, diff.parameters.1
        );
    }
    for line in &diff.lineage {
        let _ = writeln!(out, "lineage {line}");
    }
    for (key, from, to) in &diff.metadata {
        let _ = writeln!(
            out,
            "metadata {key}: {} → {}",
            from.as_deref().unwrap_or("unset"),
            to.as_deref().unwrap_or("unset")
        );
    }
    out
}
