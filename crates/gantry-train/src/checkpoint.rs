//! Checkpoints in `GANTRY_CHECKPOINT_DIR` and which one a restart resumes from.
//!
//! The training contract: one directory per checkpoint, named
//! `checkpoint-<step>`, built elsewhere and renamed into place, complete when
//! its `trainer_state.json` exists. gantry checks more than the contract
//! promises, because trainers break it: the state file must parse as a JSON
//! object, and every safetensors file's header must agree with its size. A
//! newest checkpoint that fails is passed over, with a warning, for the one
//! before it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The file whose presence marks a checkpoint complete.
pub const STATE_FILE: &str = "trainer_state.json";

/// A `checkpoint-<step>` directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The step in its name.
    pub step: u64,
    /// Its directory.
    pub path: PathBuf,
}

/// Where a restart resumes, and what was passed over on the way.
#[derive(Debug, Clone, Default)]
pub struct ResumePoint {
    /// The newest checkpoint that passed the checks.
    pub checkpoint: Option<Checkpoint>,
    /// Newer checkpoints that did not, each with the reason.
    pub skipped: Vec<(Checkpoint, String)>,
}

/// Every `checkpoint-<step>` directory under `dir`, oldest first; temporary
/// directories (`.checkpoint-…`) and other names are ignored. A missing
/// `dir` has none.
pub fn list(dir: &Path) -> Result<Vec<Checkpoint>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(Error::Input(format!(
                "--checkpoint-dir {}: {error}",
                dir.display()
            )));
        }
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| {
            Error::Input(format!("--checkpoint-dir {}: {error}", dir.display()))
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(step) = name
            .strip_prefix("checkpoint-")
            .and_then(|step| step.parse::<u64>().ok())
        else {
            continue;
        };
        if entry.path().is_dir() {
            found.push(Checkpoint {
                step,
                path: entry.path(),
            });
        }
    }
    found.sort_by_key(|checkpoint| checkpoint.step);
    Ok(found)
}

/// Checks that `checkpoint` is complete and readable: its state file is a
/// JSON object and every safetensors file is whole. The error says what is
/// wrong, for the warning.
pub fn check(checkpoint: &Path) -> std::result::Result<(), String> {
    let state = checkpoint.join(STATE_FILE);
    let text = match std::fs::read(&state) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "no {STATE_FILE}: half-written (a checkpoint is complete only once its state file exists)"
            ));
        }
        Err(error) => return Err(format!("{STATE_FILE}: {error}")),
    };
    match serde_json::from_slice::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(_)) => {}
        Ok(_) => return Err(format!("{STATE_FILE} is not a JSON object")),
        Err(error) => return Err(format!("{STATE_FILE} is not JSON: {error}")),
    }
    let entries = std::fs::read_dir(checkpoint).map_err(|error| error.to_string())?;
    for entry in entries {
        let entry = entry.map_err(|error| error.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let metadata = entry
            .metadata()
            .map_err(|error| format!("{name}: {error}"))?;
        if metadata.is_file() && name.ends_with(".safetensors") {
            gantry_registry::read_safetensors_header(&entry.path(), metadata.len(), &name)
                .map_err(|error| error.to_string())?;
        }
    }
    Ok(())
}

/// The newest checkpoint under `dir` that passes [`check`].
pub fn resume_point(dir: &Path) -> Result<ResumePoint> {
    let mut point = ResumePoint::default();
    for checkpoint in list(dir)?.into_iter().rev() {
        match check(&checkpoint.path) {
            Ok(()) => {
                point.checkpoint = Some(checkpoint);
                break;
            }
            Err(reason) => point.skipped.push((checkpoint, reason)),
        }
    }
    Ok(point)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn safetensors(bytes: usize) -> Vec<u8> {
        let header = format!(
            r#"{{"w":{{"dtype":"F32","shape":[{}],"data_offsets":[0,{}]}}}}"#,
            bytes / 4,
            bytes
        );
        let mut file = (header.len() as u64).to_le_bytes().to_vec();
        file.extend_from_slice(header.as_bytes());
        file.extend(std::iter::repeat_n(0_u8, bytes));
        file
    }

    fn write_checkpoint(dir: &Path, step: u64, state: Option<&str>, weights: &[u8]) -> PathBuf {
        let path = dir.join(format!("checkpoint-{step}"));
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("model.safetensors"), weights).unwrap();
        if let Some(state) = state {
            std::fs::write(path.join(STATE_FILE), state).unwrap();
        }
        path
    }

    #[test]
    fn the_newest_complete_checkpoint_wins_and_broken_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), 100, Some(r#"{"step":100}"#), &safetensors(64));
        write_checkpoint(dir.path(), 200, Some(r#"{"step":200}"#), &safetensors(64));
        let mut truncated = safetensors(64);
        truncated.truncate(truncated.len() - 10);
        write_checkpoint(dir.path(), 300, Some(r#"{"step":300}"#), &truncated);
        write_checkpoint(dir.path(), 400, None, &safetensors(64));
        write_checkpoint(dir.path(), 500, Some("{\"step\":5"), &safetensors(64));
        std::fs::create_dir_all(dir.path().join(".checkpoint-600.tmp.77")).unwrap();
        std::fs::create_dir_all(dir.path().join("logs")).unwrap();

        let point = resume_point(dir.path()).unwrap();
        assert_eq!(point.checkpoint.unwrap().step, 200);
        let skipped: Vec<(u64, &str)> = point
            .skipped
            .iter()
            .map(|(checkpoint, reason)| (checkpoint.step, reason.as_str()))
            .collect();
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        assert_eq!(skipped[0].0, 500);
        assert!(skipped[0].1.contains("not JSON"), "{}", skipped[0].1);
        assert_eq!(skipped[1].0, 400);
        assert!(skipped[1].1.contains("half-written"), "{}", skipped[1].1);
        assert_eq!(skipped[2].0, 300);
        assert!(
            skipped[2].1.contains("model.safetensors"),
            "{}",
            skipped[2].1
        );
    }

    #[test]
    fn a_missing_directory_has_no_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let point = resume_point(&dir.path().join("absent")).unwrap();
        assert!(point.checkpoint.is_none() && point.skipped.is_empty());
    }
}

#[cfg(test)]
mod hostile_input {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(gantry_test::adversarial::config())]

        /// A checkpoint whose state file, weights header and record are
        /// hostile bytes: a reason to pass it over, never a panic.
        #[test]
        fn hostile_checkpoints_are_passed_over(bytes in gantry_test::adversarial::bytes()) {
            let directory = tempfile::tempdir().expect("tempdir");
            let checkpoint = directory.path().join("checkpoint-7");
            std::fs::create_dir_all(&checkpoint).expect("mkdir");
            std::fs::write(checkpoint.join(super::STATE_FILE), &bytes).expect("write");
            let mut weights = (bytes.len() as u64).to_le_bytes().to_vec();
            weights.extend_from_slice(&bytes);
            std::fs::write(checkpoint.join("model.safetensors"), &weights).expect("write");
            let _ = super::check(&checkpoint);
            let _ = super::resume_point(directory.path());
            std::fs::write(directory.path().join("run.json"), &bytes).expect("write");
            let _ = crate::record::RunRecord::read(&directory.path().join("run.json"));
        }
    }
}
