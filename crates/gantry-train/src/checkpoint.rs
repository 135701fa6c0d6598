//! Checkpoints in `GANTRY_CHECKPOINT_DIR` and which one a restart resumes from.
//!
//! Trainers write checkpoints in their own layouts, and each says in its
//! own way when a checkpoint is complete. gantry reads the common ones
//! ([`Layout`]), by the rule each trainer keeps, and checks more than the
//! rule promises, because trainers break it: state files must parse as JSON
//! objects, every safetensors file's header must agree with its size, and a
//! torch checkpoint must be a whole zip archive or pickle. A newest
//! checkpoint that fails is passed over, with a warning, for the one before.
//!
//! | layout | a checkpoint | complete when | `GANTRY_RESUME_FROM` |
//! |---|---|---|---|
//! | `hf` | `checkpoint-<step>/` | its `trainer_state.json` exists (Trainer writes it last) | the directory |
//! | `dir` | `checkpoint-<step>/`, renamed into place | it exists under that name (temporary names never match), and the `--checkpoint-marker` file is in it when one is given | the directory |
//! | `lightning` | `*.ckpt` (`epoch=E-step=S.ckpt`, `last.ckpt`) | the file is a whole torch archive; `last.ckpt` is the newest | the file |
//! | `deepspeed` | `global_step<N>/`, named by the `latest` file | `latest` names it (DeepSpeed writes `latest` after the tag) and it holds `*model_states.pt` | the tag directory |
//! | `dcp` | `step-<N>/`, `step_<N>/` or `checkpoint-<N>/` of `torch.distributed.checkpoint` | its `.metadata` exists (written last, by the coordinator) | the directory |
//!
//! `auto` (the default) reads the directory: a `latest` file with
//! `global_step*` directories is DeepSpeed, `*.ckpt` files are Lightning,
//! directories holding `.metadata` are DCP, and `checkpoint-<step>`
//! directories are Hugging Face when one of them holds Trainer's files
//! (`trainer_state.json`, `optimizer.pt`, `scheduler.pt`, `rng_state*.pth`,
//! `training_args.bin`) — so one of them without `trainer_state.json` is
//! half-written — and plain atomic directories otherwise.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The Hugging Face Trainer's state file, written last into a checkpoint.
pub const STATE_FILE: &str = "trainer_state.json";

/// Files only the Hugging Face Trainer writes into a checkpoint.
const TRAINER_FILES: &[&str] = &[
    STATE_FILE,
    "optimizer.pt",
    "scheduler.pt",
    "training_args.bin",
    "rng_state.pth",
];

/// How the trainer lays out its checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Read the directory to tell.
    #[default]
    Auto,
    /// Hugging Face Trainer: `checkpoint-<step>/trainer_state.json`.
    Hf,
    /// Plain directories renamed into place: `checkpoint-<step>/`.
    Dir,
    /// PyTorch Lightning: `*.ckpt`, `last.ckpt`.
    Lightning,
    /// DeepSpeed: `latest` naming a `global_step<N>/` directory.
    Deepspeed,
    /// `torch.distributed.checkpoint`: directories holding `.metadata`.
    Dcp,
}

impl Layout {
    /// The name used in flags and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::Auto => "auto",
            Layout::Hf => "hf",
            Layout::Dir => "dir",
            Layout::Lightning => "lightning",
            Layout::Deepspeed => "deepspeed",
            Layout::Dcp => "dcp",
        }
    }
}

/// Where checkpoints are and how to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoints {
    /// `GANTRY_CHECKPOINT_DIR`.
    pub dir: PathBuf,
    /// The layout (`auto` reads the directory).
    pub layout: Layout,
    /// `--checkpoint-marker`: a file a `dir` checkpoint must hold to count.
    pub marker: Option<String>,
}

/// One checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The step its name gives, when it gives one (`last.ckpt` does not).
    pub step: Option<u64>,
    /// Its directory or file.
    pub path: PathBuf,
    /// The layout it was read as.
    pub layout: Layout,
}

/// Where a restart resumes, and what was passed over on the way.
#[derive(Debug, Clone, Default)]
pub struct ResumePoint {
    /// The newest checkpoint that passed the checks.
    pub checkpoint: Option<Checkpoint>,
    /// Newer checkpoints that did not, each with the reason.
    pub skipped: Vec<(Checkpoint, String)>,
}

/// The number after `prefix` in `name`, when the rest of `name` is digits.
fn step_after(name: &str, prefix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?.parse().ok()
}

fn entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|error| Error::Input(format!("{}: {error}", dir.display()))),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(Error::Input(format!("{}: {error}", dir.display()))),
    }
}

/// The layout `auto` sees in `dir`.
pub fn detect(dir: &Path) -> Result<Layout> {
    let entries = entries(dir)?;
    let names: Vec<String> = entries
        .iter()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    if names.iter().any(|name| name == "latest")
        && names.iter().any(|name| name.starts_with("global_step"))
    {
        return Ok(Layout::Deepspeed);
    }
    if names.iter().any(|name| name.ends_with(".ckpt")) {
        return Ok(Layout::Lightning);
    }
    if entries
        .iter()
        .any(|entry| entry.path().join(".metadata").is_file())
    {
        return Ok(Layout::Dcp);
    }
    let trainer_written = entries.iter().any(|entry| {
        step_after(&entry.file_name().to_string_lossy(), "checkpoint-").is_some()
            && std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
                .any(|file| {
                    let name = file.file_name().to_string_lossy().into_owned();
                    TRAINER_FILES.contains(&name.as_str()) || name.starts_with("rng_state")
                })
    });
    Ok(if trainer_written {
        Layout::Hf
    } else {
        Layout::Dir
    })
}

impl Checkpoints {
    /// Checkpoints in `dir`, by `layout`, with no marker.
    pub fn new(dir: impl Into<PathBuf>, layout: Layout) -> Checkpoints {
        Checkpoints {
            dir: dir.into(),
            layout,
            marker: None,
        }
    }

    /// The layout to read with: the given one, or what `auto` sees.
    pub fn layout(&self) -> Result<Layout> {
        match self.layout {
            Layout::Auto => detect(&self.dir),
            layout => Ok(layout),
        }
    }

    /// Every checkpoint, oldest first; temporary names and other files are
    /// ignored. A missing directory has none.
    pub fn list(&self) -> Result<Vec<Checkpoint>> {
        let layout = self.layout()?;
        let mut found: Vec<(Checkpoint, Option<std::time::SystemTime>)> = Vec::new();
        let mut push = |step: Option<u64>, path: PathBuf| {
            let modified = path
                .metadata()
                .and_then(|metadata| metadata.modified())
                .ok();
            found.push((Checkpoint { step, path, layout }, modified));
        };
        for entry in entries(&self.dir)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            match layout {
                Layout::Hf | Layout::Dir | Layout::Auto => {
                    if let Some(step) = step_after(&name, "checkpoint-")
                        && path.is_dir()
                    {
                        push(Some(step), path);
                    }
                }
                Layout::Lightning => {
                    if path.is_file() && name.ends_with(".ckpt") && !name.starts_with('.') {
                        let step = name
                            .split(['-', '.'])
                            .find_map(|part| step_after(part, "step="));
                        push(step, path);
                    }
                }
                Layout::Deepspeed => {
                    if let Some(step) = step_after(&name, "global_step")
                        && path.is_dir()
                    {
                        push(Some(step), path);
                    }
                }
                Layout::Dcp => {
                    let step = step_after(&name, "step-")
                        .or_else(|| step_after(&name, "step_"))
                        .or_else(|| step_after(&name, "checkpoint-"));
                    if let Some(step) = step
                        && path.is_dir()
                    {
                        push(Some(step), path);
                    }
                }
            }
        }
        // Oldest first: by step; Lightning's `last.ckpt` (no step) is the
        // newest by definition; otherwise by modification time.
        found.sort_by(|(left, left_time), (right, right_time)| {
            let last = |checkpoint: &Checkpoint| {
                checkpoint
                    .path
                    .file_name()
                    .is_some_and(|name| name == "last.ckpt")
            };
            last(left)
                .cmp(&last(right))
                .then(left.step.cmp(&right.step))
                .then(left_time.cmp(right_time))
        });
        Ok(found
            .into_iter()
            .map(|(checkpoint, _)| checkpoint)
            .collect())
    }

    /// Checks that `checkpoint` is complete by its layout's rule and
    /// readable. The error says what is wrong, for the warning.
    pub fn check(&self, checkpoint: &Checkpoint) -> std::result::Result<(), String> {
        match checkpoint.layout {
            Layout::Hf | Layout::Auto => {
                state_file(&checkpoint.path, STATE_FILE, "Trainer writes it last")?;
                readable_weights(&checkpoint.path)
            }
            Layout::Dir => {
                if let Some(marker) = &self.marker
                    && !checkpoint.path.join(marker).exists()
                {
                    return Err(format!(
                        "no {marker}: half-written (--checkpoint-marker {marker} marks a complete checkpoint)"
                    ));
                }
                for entry in
                    std::fs::read_dir(&checkpoint.path).map_err(|error| error.to_string())?
                {
                    let entry = entry.map_err(|error| error.to_string())?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".json") && entry.path().is_file() {
                        state_file(&checkpoint.path, &name, "")?;
                    }
                }
                readable_weights(&checkpoint.path)
            }
            Layout::Lightning => torch_archive(&checkpoint.path),
            Layout::Deepspeed => {
                let latest = self.dir.join("latest");
                let tag = std::fs::read_to_string(&latest).map_err(|_| {
                    "no `latest` file: DeepSpeed writes it once a checkpoint is complete".to_owned()
                })?;
                let name = checkpoint
                    .path
                    .file_name()
                    .map(|name| name.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // `latest` names the newest complete tag; older tags were
                // complete when `latest` moved past them.
                let latest_step = step_after(tag.trim(), "global_step");
                if checkpoint.step > latest_step {
                    return Err(format!(
                        "newer than `latest` ({}): half-written (DeepSpeed moves `latest` once a tag is complete)",
                        tag.trim()
                    ));
                }
                let states: Vec<PathBuf> = std::fs::read_dir(&checkpoint.path)
                    .map_err(|error| error.to_string())?
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|path| {
                        path.file_name()
                            .is_some_and(|file| file.to_string_lossy().ends_with("model_states.pt"))
                    })
                    .collect();
                if states.is_empty() {
                    return Err(format!("{name} holds no *model_states.pt"));
                }
                for state in states {
                    torch_archive(&state)?;
                }
                Ok(())
            }
            Layout::Dcp => {
                let metadata = checkpoint.path.join(".metadata");
                match std::fs::metadata(&metadata) {
                    Ok(found) if found.len() > 0 => Ok(()),
                    Ok(_) => Err(".metadata is empty".to_owned()),
                    Err(_) => Err(
                        "no .metadata: half-written (torch.distributed.checkpoint writes it last)"
                            .to_owned(),
                    ),
                }
            }
        }
    }

    /// The newest checkpoint that passes [`Checkpoints::check`].
    pub fn resume_point(&self) -> Result<ResumePoint> {
        let mut point = ResumePoint::default();
        for checkpoint in self.list()?.into_iter().rev() {
            match self.check(&checkpoint) {
                Ok(()) => {
                    point.checkpoint = Some(checkpoint);
                    break;
                }
                Err(reason) => point.skipped.push((checkpoint, reason)),
            }
        }
        Ok(point)
    }
}

/// `name` in `dir` must exist and be a JSON object.
fn state_file(dir: &Path, name: &str, why: &str) -> std::result::Result<(), String> {
    let text = match std::fs::read(dir.join(name)) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "no {name}: half-written (a checkpoint is complete only once its state file exists{})",
                if why.is_empty() {
                    String::new()
                } else {
                    format!("; {why}")
                }
            ));
        }
        Err(error) => return Err(format!("{name}: {error}")),
    };
    match serde_json::from_slice::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(_)) => Ok(()),
        Ok(_) => Err(format!("{name} is not a JSON object")),
        Err(error) => Err(format!("{name} is not JSON: {error}")),
    }
}

/// Every safetensors file in `dir` must be whole.
fn readable_weights(dir: &Path) -> std::result::Result<(), String> {
    for entry in std::fs::read_dir(dir).map_err(|error| error.to_string())? {
        let entry = entry.map_err(|error| error.to_string())?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let metadata = entry
            .metadata()
            .map_err(|error| format!("{name}: {error}"))?;
        if metadata.is_file() && name.ends_with(".safetensors") {
            gantry_core::read_safetensors_header(&entry.path(), metadata.len(), &name)
                .map_err(|error| error.to_string())?;
        }
    }
    Ok(())
}

/// A `torch.save` file must be whole: a zip archive whose central
/// directory (at its end) reads, or a legacy pickle stream ending in STOP.
fn torch_archive(path: &Path) -> std::result::Result<(), String> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = std::fs::File::open(path).map_err(|error| format!("{name}: {error}"))?;
    let size = file
        .metadata()
        .map_err(|error| format!("{name}: {error}"))?
        .len();
    let mut head = [0_u8; 4];
    std::io::Read::read_exact(&mut &file, &mut head)
        .map_err(|_| format!("{name} is empty or cut short"))?;
    if head == *b"PK\x03\x04" {
        let archive = zip::ZipArchive::new(std::io::BufReader::new(&file)).map_err(|error| {
            format!("{name} is not a whole torch archive (cut short?): {error}")
        })?;
        if archive.is_empty() {
            return Err(format!("{name} is an empty archive"));
        }
        return Ok(());
    }
    if head[0] == 0x80 {
        // A legacy pickle: its last byte is STOP.
        let mut last = [0_u8; 1];
        std::io::Seek::seek(&mut &file, std::io::SeekFrom::Start(size.saturating_sub(1)))
            .and_then(|_| std::io::Read::read_exact(&mut &file, &mut last))
            .map_err(|error| format!("{name}: {error}"))?;
        return if last[0] == b'.' {
            Ok(())
        } else {
            Err(format!("{name} does not end a pickle (cut short?)"))
        };
    }
    Err(format!(
        "{name} is neither a torch zip archive nor a pickle"
    ))
}

/// The HF layout's checks on one directory (the state file, safetensors
/// headers): what `gantry train` has always asked of `checkpoint-<step>`.
pub fn check(checkpoint: &Path) -> std::result::Result<(), String> {
    state_file(checkpoint, STATE_FILE, "Trainer writes it last")?;
    readable_weights(checkpoint)
}

/// The newest complete checkpoint in `dir`, its layout detected.
pub fn resume_point(dir: &Path) -> Result<ResumePoint> {
    Checkpoints::new(dir, Layout::Auto).resume_point()
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
        assert_eq!(point.checkpoint.unwrap().step, Some(200));
        let skipped: Vec<(u64, &str)> = point
            .skipped
            .iter()
            .map(|(checkpoint, reason)| (checkpoint.step.unwrap_or_default(), reason.as_str()))
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

    fn torch_zip(step: u64) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        zip.start_file("archive/data.pkl", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut zip, &[0x80, 2, b'K', step as u8, b'.']).unwrap();
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn each_layout_s_rule_decides_what_is_complete() {
        // Lightning: a checkpoint cut short is not a whole archive.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("epoch=0-step=10.ckpt"), torch_zip(10)).unwrap();
        let cut = torch_zip(20);
        std::fs::write(
            dir.path().join("epoch=0-step=20.ckpt"),
            &cut[..cut.len() / 2],
        )
        .unwrap();
        let point = Checkpoints::new(dir.path(), Layout::Auto)
            .resume_point()
            .unwrap();
        let resumed = point.checkpoint.unwrap();
        assert_eq!(
            (resumed.layout, resumed.step),
            (Layout::Lightning, Some(10))
        );
        assert!(
            point.skipped[0].1.contains("not a whole torch archive"),
            "{:?}",
            point.skipped
        );

        // DeepSpeed: a tag newer than `latest` is half-written.
        let dir = tempfile::tempdir().unwrap();
        for step in [5, 6] {
            let tag = dir.path().join(format!("global_step{step}"));
            std::fs::create_dir_all(&tag).unwrap();
            std::fs::write(tag.join("mp_rank_00_model_states.pt"), torch_zip(step)).unwrap();
        }
        std::fs::write(dir.path().join("latest"), "global_step5").unwrap();
        let point = Checkpoints::new(dir.path(), Layout::Auto)
            .resume_point()
            .unwrap();
        assert_eq!(point.checkpoint.unwrap().step, Some(5));
        assert!(
            point.skipped[0].1.contains("newer than `latest`"),
            "{:?}",
            point.skipped
        );

        // DCP: no .metadata, not done.
        let dir = tempfile::tempdir().unwrap();
        for step in [100, 200] {
            let path = dir.path().join(format!("step-{step}"));
            std::fs::create_dir_all(&path).unwrap();
            std::fs::write(path.join("__0_0.distcp"), b"shard").unwrap();
        }
        std::fs::write(dir.path().join("step-100/.metadata"), b"meta").unwrap();
        let point = Checkpoints::new(dir.path(), Layout::Auto)
            .resume_point()
            .unwrap();
        assert_eq!(point.checkpoint.unwrap().step, Some(100));

        // Plain directories renamed into place are complete as they are;
        // once one holds Trainer's files, the layout is Trainer's and a
        // directory without trainer_state.json is half-written.
        let dir = tempfile::tempdir().unwrap();
        write_checkpoint(dir.path(), 1, None, &safetensors(8));
        write_checkpoint(dir.path(), 2, None, &safetensors(8));
        std::fs::create_dir_all(dir.path().join(".tmp-checkpoint-3")).unwrap();
        assert_eq!(detect(dir.path()).unwrap(), Layout::Dir);
        assert_eq!(
            resume_point(dir.path()).unwrap().checkpoint.unwrap().step,
            Some(2)
        );
        std::fs::write(dir.path().join("checkpoint-2/optimizer.pt"), torch_zip(2)).unwrap();
        assert_eq!(detect(dir.path()).unwrap(), Layout::Hf);
        assert!(resume_point(dir.path()).unwrap().checkpoint.is_none());
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
