//! Lineage: the documents a model came from (`run.json`, `data.lock`,
//! `gate.json`, evaluation results), their digests, and the cross-checks
//! that make them a chain rather than a pile.
//!
//! The fields read, so that producers know what links:
//! - `data.lock` (validate-data): `dataset_digest`.
//! - `gate.json` (eval-gate): `verdict`.
//! - `run.json` (train-on-runner): `run_id`; `data.dataset_digest` and
//!   `data.lock_digest` when the run was given a data lock; `outputs`, a
//!   list of `{path, sha256}` relative to the run's output directory.

use std::path::{Path, PathBuf};

use gantry_core::{
    DataLink, Digest, DocumentLink, GateLink, GitLineage, Lineage, ManifestFile, RunLink, Verdict,
};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Largest lineage document read into memory.
const MAX_DOCUMENT: u64 = 1 << 30;

/// Paths of the lineage documents given at registration.
#[derive(Debug, Clone, Default)]
pub struct LineageSources {
    /// `--run-record`.
    pub run_record: Option<PathBuf>,
    /// `--data-lock`.
    pub data_lock: Option<PathBuf>,
    /// `--gate-report`.
    pub gate_report: Option<PathBuf>,
    /// `--eval-results`.
    pub eval_results: Option<PathBuf>,
    /// `--eval-set`.
    pub eval_set: Option<PathBuf>,
    /// `--data-summary`.
    pub data_summary: Option<PathBuf>,
    /// The commit, from the CI context or the local checkout.
    pub git: Option<GitLineage>,
}

/// Lineage read and digested, with the documents to store beside the model.
#[derive(Debug, Clone, Default)]
pub struct LineageInput {
    /// What goes into the manifest.
    pub lineage: Lineage,
    /// Each document's bytes, to be stored as a blob.
    pub documents: Vec<(Digest, Vec<u8>)>,
}

#[derive(Deserialize)]
struct LockFields {
    dataset_digest: Digest,
}

#[derive(Deserialize)]
struct SummaryFields {
    kind: String,
    dataset_digest: Digest,
}

#[derive(Deserialize)]
struct GateFields {
    verdict: Verdict,
}

#[derive(Deserialize, Default)]
struct RunFields {
    #[serde(default)]
    run_id: Option<String>,
    #[serde(default)]
    data: Option<RunData>,
    #[serde(default)]
    outputs: Vec<RunOutput>,
}

#[derive(Deserialize, Default)]
struct RunData {
    #[serde(default)]
    dataset_digest: Option<Digest>,
    #[serde(default)]
    lock_digest: Option<Digest>,
}

#[derive(Deserialize)]
struct RunOutput {
    path: String,
    sha256: Digest,
}

/// An unusable lineage document, named by what it was given as.
fn given(what: &'static str, path: &Path, reason: String) -> Error {
    Error::Given {
        what,
        path: path.display().to_string(),
        reason,
    }
}

fn read_document(path: &Path, what: &'static str) -> Result<(DocumentLink, Vec<u8>)> {
    let metadata = std::fs::metadata(path).map_err(|error| given(what, path, error.to_string()))?;
    if metadata.len() > MAX_DOCUMENT {
        return Err(given(
            what,
            path,
            format!(
                "{} bytes is more than a lineage document may have ({MAX_DOCUMENT})",
                metadata.len()
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(Error::io("cannot read", path))?;
    let link = DocumentLink {
        digest: Digest::of_bytes(&bytes),
        size: bytes.len() as u64,
        file_name: path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    Ok((link, bytes))
}

fn parse<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    path: &Path,
    what: &'static str,
    description: &str,
) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|error| given(what, path, format!("not a {description}: {error}")))
}

impl LineageSources {
    /// Reads, parses and digests every document given, and checks that they
    /// agree with each other.
    pub fn read(&self) -> Result<LineageInput> {
        let mut input = LineageInput::default();
        input.lineage.git = self.git.clone();
        let mut run_fields = RunFields::default();
        if let Some(path) = &self.run_record {
            let (link, bytes) = read_document(path, "run record")?;
            run_fields = parse(&bytes, path, "run record", "run record (JSON object)")?;
            input.lineage.run = Some(RunLink {
                document: link.clone(),
                run_id: run_fields.run_id.clone(),
            });
            input.documents.push((link.digest, bytes));
        }
        if let Some(path) = &self.data_lock {
            let (link, bytes) = read_document(path, "data lock")?;
            let fields: LockFields = parse(
                &bytes,
                path,
                "data lock",
                "data lock (from gantry validate-data)",
            )?;
            input.lineage.data = Some(DataLink {
                document: link.clone(),
                dataset_digest: fields.dataset_digest,
            });
            input.documents.push((link.digest, bytes));
        }
        if let Some(path) = &self.gate_report {
            let (link, bytes) = read_document(path, "gate report")?;
            let fields: GateFields = parse(
                &bytes,
                path,
                "gate report",
                "gate report (gate.json from gantry eval-gate)",
            )?;
            input.lineage.gate = Some(GateLink {
                document: link.clone(),
                verdict: fields.verdict,
            });
            input.documents.push((link.digest, bytes));
        }
        if let Some(path) = &self.eval_results {
            let (link, bytes) = read_document(path, "evaluation results")?;
            input.lineage.evaluation = Some(link.clone());
            input.documents.push((link.digest, bytes));
        }
        if let Some(path) = &self.eval_set {
            let (link, bytes) = read_document(path, "eval set")?;
            input.lineage.eval_set = Some(link.clone());
            input.documents.push((link.digest, bytes));
        }
        if let Some(path) = &self.data_summary {
            let (link, bytes) = read_document(path, "data summary")?;
            let fields: SummaryFields = parse(
                &bytes,
                path,
                "data summary",
                "data summary (summary.json from gantry validate-data)",
            )?;
            if fields.kind != "gantry-data-summary" {
                return Err(given(
                    "data summary",
                    path,
                    format!(
                        "kind is {:?}, not \"gantry-data-summary\": pass the summary.json validate-data wrote",
                        fields.kind
                    ),
                ));
            }
            if let Some(data) = &input.lineage.data
                && data.dataset_digest != fields.dataset_digest
            {
                return Err(Error::Input(format!(
                    "lineage does not link up: the data summary {} describes dataset {}, but the data lock locks {}; pass the summary.json from the same validate-data run",
                    path.display(),
                    fields.dataset_digest,
                    data.dataset_digest
                )));
            }
            input.lineage.data_summary = Some(link.clone());
            input.documents.push((link.digest, bytes));
        }
        if let Some(problem) = checks_with(&input.lineage, &run_fields, &[])
            .into_iter()
            .find(|check| check.outcome == "mismatch")
        {
            return Err(Error::Input(format!(
                "lineage does not link up: {}: {}",
                problem.check, problem.detail
            )));
        }
        input.documents.sort_by_key(|(digest, _)| *digest);
        input.documents.dedup_by_key(|(digest, _)| *digest);
        Ok(input)
    }
}

/// One check of the lineage chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainCheck {
    /// What was compared.
    pub check: String,
    /// `ok`, `mismatch` or `skipped`.
    pub outcome: &'static str,
    /// The details.
    pub detail: String,
}

/// Cross-checks of the lineage documents: the run's data is the locked
/// data; the run's outputs are the model's files. With `files`, the run's
/// outputs are compared with the model's files.
pub fn chain_checks(
    lineage: &Lineage,
    run_json: Option<&[u8]>,
    files: &[ManifestFile],
) -> Vec<ChainCheck> {
    let run_fields: RunFields = run_json
        .and_then(|bytes| serde_json::from_slice(bytes).ok())
        .unwrap_or_default();
    checks_with(lineage, &run_fields, files)
}

fn checks_with(
    lineage: &Lineage,
    run_fields: &RunFields,
    files: &[ManifestFile],
) -> Vec<ChainCheck> {
    let mut checks = Vec::new();
    let data_check = match (&lineage.data, run_fields.data.as_ref()) {
        (Some(data), Some(run_data)) => {
            let mut problems = Vec::new();
            if let Some(digest) = run_data.dataset_digest
                && digest != data.dataset_digest
            {
                problems.push(format!(
                    "run.json trained on dataset {digest}, data.lock describes {}",
                    data.dataset_digest
                ));
            }
            if let Some(digest) = run_data.lock_digest
                && digest != data.document.digest
            {
                problems.push(format!(
                    "run.json names data lock {digest}, the registered data.lock is {}",
                    data.document.digest
                ));
            }
            if problems.is_empty() {
                ChainCheck {
                    check: "data.lock → run.json".to_owned(),
                    outcome: "ok",
                    detail: format!("the run trained on dataset {}", data.dataset_digest),
                }
            } else {
                ChainCheck {
                    check: "data.lock → run.json".to_owned(),
                    outcome: "mismatch",
                    detail: problems.join("; "),
                }
            }
        }
        (Some(_), None) => ChainCheck {
            check: "data.lock → run.json".to_owned(),
            outcome: "skipped",
            detail: "no run record, or it names no data".to_owned(),
        },
        (None, _) => ChainCheck {
            check: "data.lock → run.json".to_owned(),
            outcome: "skipped",
            detail: "no data lock registered".to_owned(),
        },
    };
    checks.push(data_check);
    if lineage.run.is_some() && !run_fields.outputs.is_empty() && !files.is_empty() {
        let mut problems = Vec::new();
        let mut matched = 0;
        for output in &run_fields.outputs {
            let path = output.path.trim_start_matches("./");
            if let Some(file) = files.iter().find(|file| file.path == path) {
                matched += 1;
                if file.digest != output.sha256 {
                    problems.push(format!(
                        "{path}: the run wrote {}, the model has {}",
                        output.sha256, file.digest
                    ));
                }
            }
        }
        checks.push(ChainCheck {
            check: "run.json → model files".to_owned(),
            outcome: if problems.is_empty() {
                "ok"
            } else {
                "mismatch"
            },
            detail: if problems.is_empty() {
                format!(
                    "{matched} of the run's {} outputs are model files, all identical",
                    run_fields.outputs.len()
                )
            } else {
                problems.join("; ")
            },
        });
    }
    checks.push(match &lineage.gate {
        Some(gate) => ChainCheck {
            check: "gate.json".to_owned(),
            outcome: "ok",
            detail: format!("verdict {}", verdict_word(gate.verdict)),
        },
        None => ChainCheck {
            check: "gate.json".to_owned(),
            outcome: "skipped",
            detail: "no gate report registered".to_owned(),
        },
    });
    checks
}

fn verdict_word(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Pass => "pass",
        Verdict::Warn => "warn",
        Verdict::Fail => "fail",
    }
}

/// Checks a stored lineage document against its link, returning its bytes.
pub(crate) fn check_document(role: &str, link: &DocumentLink, bytes: &[u8]) -> Result<()> {
    let actual = Digest::of_bytes(bytes);
    if actual != link.digest {
        return Err(Error::Tampered {
            what: format!("{role} {}", link.file_name),
            expected: link.digest,
            actual,
        });
    }
    Ok(())
}
