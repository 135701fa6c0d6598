//! The model directory: which files make up a model, what each one is, and
//! hashing them — in parallel, largest first, detecting files that change
//! underneath.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use gantry_core::{Digest, GgufSummary, PickleSummary, SafetensorsSummary};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::pickle;

/// Bytes read per block while hashing.
const BLOCK: usize = 1 << 20;

/// One file of a model directory, before it is registered.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path relative to the model directory, `/`-separated.
    pub path: String,
    /// Where it is on disk.
    pub absolute: PathBuf,
    /// Its size when the directory was read.
    pub size: u64,
    /// Its ModelPack media type.
    pub media_type: &'static str,
    /// Its safetensors header, for `.safetensors` files.
    pub safetensors: Option<SafetensorsSummary>,
    /// Its pickle imports, for pickle-based checkpoints.
    pub pickle: Option<PickleSummary>,
    /// Its GGUF header, for `.gguf` files.
    pub gguf: Option<GgufSummary>,
    stamp: Stamp,
}

/// What identifies a file's contents without reading them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    size: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> Result<Stamp> {
        let metadata = std::fs::metadata(path).map_err(Error::io("cannot read", path))?;
        Ok(Stamp {
            size: metadata.len(),
            modified: metadata.modified().ok(),
            inode: inode(&metadata),
        })
    }
}

#[cfg(unix)]
fn inode(metadata: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(metadata)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

/// A model directory, read and inspected.
#[derive(Debug, Clone)]
pub struct ModelSource {
    /// The directory.
    pub root: PathBuf,
    /// Its files, sorted by path.
    pub files: Vec<SourceFile>,
    /// Hidden files and directories left out (`.git`, `.cache`, …).
    pub skipped: Vec<String>,
}

impl ModelSource {
    /// Reads `root`: every regular file below it except hidden ones, each
    /// symlink resolved and required to stay inside `root`; safetensors
    /// headers checked; pickles scanned. Unsafe pickles are refused unless
    /// `allow_pickle`.
    pub fn read(root: &Path, allow_pickle: bool) -> Result<ModelSource> {
        let given = |reason: String| Error::Given {
            what: "model directory",
            path: root.display().to_string(),
            reason,
        };
        let metadata = std::fs::metadata(root).map_err(|error| given(error.to_string()))?;
        if !metadata.is_dir() {
            return Err(given("not a directory".to_owned()));
        }
        let canonical_root = root
            .canonicalize()
            .map_err(Error::io("cannot resolve", root))?;
        let mut files = Vec::new();
        let mut skipped = Vec::new();
        let walker = walkdir::WalkDir::new(root)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|entry| {
                entry.depth() == 0 || !entry.file_name().to_string_lossy().starts_with('.')
            });
        for entry in walker {
            let entry = entry.map_err(|error| {
                let path = error
                    .path()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| root.to_path_buf());
                Error::Input(format!("{}: {error}", path.display()))
            })?;
            let relative = entry
                .path()
                .strip_prefix(root)
                .unwrap_or(entry.path())
                .to_string_lossy()
                .replace('\\', "/");
            if entry.depth() > 0 {
                let resolved = entry
                    .path()
                    .canonicalize()
                    .map_err(Error::io("cannot resolve", entry.path()))?;
                if !resolved.starts_with(&canonical_root) {
                    return Err(Error::Input(format!(
                        "{}: a symlink to {}, outside the model directory; copy the file in (for a Hugging Face cache, download with --local-dir)",
                        entry.path().display(),
                        resolved.display()
                    )));
                }
            }
            let file_type = entry.file_type();
            if file_type.is_dir() {
                continue;
            }
            if !file_type.is_file() {
                return Err(Error::Input(format!(
                    "{}: not a regular file (a socket, FIFO or device cannot be registered)",
                    entry.path().display()
                )));
            }
            if relative.chars().any(char::is_control) {
                return Err(Error::Input(format!(
                    "{:?}: file names with control characters cannot be registered",
                    entry.path()
                )));
            }
            let stamp = Stamp::of(entry.path())?;
            files.push(SourceFile {
                media_type: media_type(&relative),
                path: relative,
                absolute: entry.path().to_path_buf(),
                size: stamp.size,
                safetensors: None,
                pickle: None,
                gguf: None,
                stamp,
            });
        }
        // Hidden entries are not walked; list them for the log.
        for entry in std::fs::read_dir(root).map_err(Error::io("cannot list", root))? {
            let entry = entry.map_err(Error::io("cannot list", root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                skipped.push(name);
            }
        }
        skipped.sort();
        if files.is_empty() {
            return Err(given(
                "no files to register (hidden files are skipped)".to_owned(),
            ));
        }
        inspect(&mut files, allow_pickle)?;
        Ok(ModelSource {
            root: root.to_path_buf(),
            files,
            skipped,
        })
    }

    /// Total bytes.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|file| file.size).sum()
    }

    /// Hashes every file on all cores, largest first, storing nothing.
    /// Digests come back in the files' order.
    pub fn hash(&self) -> Result<Vec<Digest>> {
        parallel_largest_first(&self.files, |file| file.size, |file| hash_file(file, None))
    }
}

/// Reads safetensors and GGUF headers and scans pickles, in parallel.
fn inspect(files: &mut [SourceFile], allow_pickle: bool) -> Result<()> {
    use rayon::prelude::*;
    files.par_iter_mut().try_for_each(|file| -> Result<()> {
        let extension = extension(&file.path);
        if extension == "safetensors" {
            file.safetensors = Some(gantry_core::read_safetensors_header(
                &file.absolute,
                file.size,
                &file.path,
            )?);
        } else if extension == "gguf" {
            file.gguf = Some(gantry_core::read_gguf_header(
                &file.absolute,
                file.size,
                &file.path,
            )?);
        } else {
            // By content: a pickle under any name (`checkpoint.pth.tar`) is
            // found; the name only decides for protocol 0 and 1 pickles.
            let pickle_name = pickle::PICKLE_EXTENSIONS.contains(&extension.as_str());
            file.pickle = pickle::scan_file(&file.absolute, pickle_name)?;
        }
        Ok(())
    })?;
    if !allow_pickle
        && let Some(file) = files.iter().find(|file| {
            file.pickle
                .as_ref()
                .is_some_and(|summary| !summary.unsafe_imports.is_empty())
        })
    {
        return Err(Error::UnsafePickle {
            path: file.path.clone(),
            imports: file
                .pickle
                .as_ref()
                .map(|summary| summary.unsafe_imports.clone())
                .unwrap_or_default(),
        });
    }
    Ok(())
}

fn extension(path: &str) -> String {
    path.rsplit_once('.')
        .map(|(_, extension)| extension.to_ascii_lowercase())
        .unwrap_or_default()
}

/// The ModelPack media type of a file, by name.
pub fn media_type(path: &str) -> &'static str {
    let file_name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    let extension = extension(&file_name);
    const WEIGHT: &str = "application/vnd.cncf.model.weight.v1.raw";
    const CONFIG: &str = "application/vnd.cncf.model.weight.config.v1.raw";
    const DOC: &str = "application/vnd.cncf.model.doc.v1.raw";
    const CODE: &str = "application/vnd.cncf.model.code.v1.raw";
    const DATASET: &str = "application/vnd.cncf.model.dataset.v1.raw";
    match extension.as_str() {
        "safetensors" | "bin" | "pt" | "pth" | "ckpt" | "pkl" | "pickle" | "joblib" | "gguf"
        | "ggml" | "onnx" | "h5" | "msgpack" | "npz" | "npy" | "tflite" | "pb" | "mlmodel"
        | "engine" | "plan" => WEIGHT,
        "json" | "yaml" | "yml" | "toml" | "model" | "tiktoken" | "jinja" | "vocab" => CONFIG,
        _ if file_name == "merges.txt" || file_name.starts_with("vocab.") => CONFIG,
        "md" | "txt" | "rst" | "pdf" | "html" => DOC,
        _ if file_name.starts_with("license") || file_name.starts_with("readme") => DOC,
        "py" | "sh" | "ipynb" | "js" | "rs" => CODE,
        "jsonl" | "parquet" | "csv" | "tsv" | "arrow" => DATASET,
        _ => "application/octet-stream",
    }
}

impl SourceFile {
    /// Fails if the file changed since the directory was read.
    pub fn check_unchanged(&self, bytes_read: u64) -> Result<()> {
        let after = Stamp::of(&self.absolute)?;
        let changed = if bytes_read != self.stamp.size {
            Some(format!(
                "read {bytes_read} bytes, expected {}",
                self.stamp.size
            ))
        } else if after != self.stamp {
            Some(if after.size != self.stamp.size {
                format!("size {} → {}", self.stamp.size, after.size)
            } else {
                "modification time or inode changed".to_owned()
            })
        } else {
            None
        };
        match changed {
            Some(what) => Err(Error::Changed {
                path: self.absolute.clone(),
                what,
            }),
            None => Ok(()),
        }
    }
}

/// Hashes `file`, copying it to `sink` on the way when one is given, and
/// fails if the file changed while it was read (its size, modification
/// time or inode differ from when the directory was read, or it yielded a
/// different number of bytes).
pub fn hash_file(file: &SourceFile, sink: Option<&mut dyn Write>) -> Result<Digest> {
    let reader =
        std::fs::File::open(&file.absolute).map_err(Error::io("cannot open", &file.absolute))?;
    let (digest, total) = hash_stream(reader, sink, &file.absolute.display().to_string())?;
    file.check_unchanged(total)?;
    Ok(digest)
}

/// Hashes everything `reader` yields, copying it to `sink` when given.
pub fn hash_stream(
    mut reader: impl Read,
    mut sink: Option<&mut dyn Write>,
    what: &str,
) -> Result<(Digest, u64)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; BLOCK];
    let mut total = 0_u64;
    loop {
        let n_read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n_read) => n_read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(Error::io("cannot read", what)(error)),
        };
        hasher.update(&buffer[..n_read]);
        if let Some(sink) = sink.as_mut() {
            sink.write_all(&buffer[..n_read])
                .map_err(Error::io("cannot write", what))?;
        }
        total += n_read as u64;
    }
    Ok((Digest::from_bytes(hasher.finalize().into()), total))
}

/// Runs `work` on every item on all cores, largest first (so one big file
/// does not start last), and returns the results in the items' order.
pub fn parallel_largest_first<T: Sync, R: Send, E: Send + From<Error>>(
    items: &[T],
    size: impl Fn(&T) -> u64 + Sync,
    work: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let cores = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1);
    parallel_largest_first_on(cores, items, size, work)
}

/// [`parallel_largest_first`] on at most `workers` threads (network
/// transfers are bounded by the server, not the cores).
pub fn parallel_largest_first_on<T: Sync, R: Send, E: Send + From<Error>>(
    workers: usize,
    items: &[T],
    size: impl Fn(&T) -> u64 + Sync,
    work: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(size(&items[index])));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let first_error: Mutex<Option<E>> = Mutex::new(None);
    let workers = workers.min(items.len()).max(1);
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    if first_error
                        .lock()
                        .map(|error| error.is_some())
                        .unwrap_or(true)
                    {
                        return;
                    }
                    let position = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&index) = order.get(position) else {
                        return;
                    };
                    match work(&items[index]) {
                        Ok(result) => {
                            if let Ok(mut results) = results.lock() {
                                results[index] = Some(result);
                            }
                        }
                        Err(error) => {
                            if let Ok(mut first) = first_error.lock() {
                                first.get_or_insert(error);
                            }
                            return;
                        }
                    }
                }
            });
        }
    });
    if let Some(error) = first_error.into_inner().ok().flatten() {
        return Err(error);
    }
    // Every item has a result unless a worker died, which the scope turns
    // into a panic above; say so rather than return fewer results.
    results
        .into_inner()
        .ok()
        .and_then(|results| results.into_iter().collect::<Option<Vec<R>>>())
        .ok_or_else(|| {
            Error::Input("a worker stopped before finishing its files".to_owned()).into()
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn media_types_follow_modelpack() {
        assert_eq!(
            media_type("model.safetensors"),
            "application/vnd.cncf.model.weight.v1.raw"
        );
        assert_eq!(
            media_type("config.json"),
            "application/vnd.cncf.model.weight.config.v1.raw"
        );
        assert_eq!(
            media_type("merges.txt"),
            "application/vnd.cncf.model.weight.config.v1.raw"
        );
        assert_eq!(
            media_type("README.md"),
            "application/vnd.cncf.model.doc.v1.raw"
        );
        assert_eq!(
            media_type("LICENSE"),
            "application/vnd.cncf.model.doc.v1.raw"
        );
        assert_eq!(
            media_type("src/modeling.py"),
            "application/vnd.cncf.model.code.v1.raw"
        );
        assert_eq!(media_type("weird"), "application/octet-stream");
    }

    #[test]
    fn reads_a_directory_and_detects_changes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.txt"), "bee").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.json"), "{}").unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "x").unwrap();
        let source = ModelSource::read(dir.path(), false).unwrap();
        let paths: Vec<_> = source.files.iter().map(|file| file.path.as_str()).collect();
        assert_eq!(paths, ["b.txt", "sub/a.json"]);
        assert_eq!(source.skipped, [".git"]);
        assert_eq!(
            hash_file(&source.files[0], None).unwrap(),
            Digest::of_bytes(b"bee")
        );
        std::fs::write(dir.path().join("b.txt"), "bees").unwrap();
        let error = hash_file(&source.files[0], None).unwrap_err().to_string();
        assert!(
            error.contains("changed while it was being hashed"),
            "{error}"
        );
    }

    #[test]
    fn refuses_empty_dirs_and_escaping_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let error = ModelSource::read(dir.path(), false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("no files"), "{error}");
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            dir.path().join("weights.bin"),
        )
        .unwrap();
        let error = ModelSource::read(dir.path(), false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("outside the model directory"), "{error}");
        std::fs::remove_file(dir.path().join("weights.bin")).unwrap();
        std::fs::write(dir.path().join("real.bin"), [0_u8, 1]).unwrap();
        std::os::unix::fs::symlink("real.bin", dir.path().join("alias.bin")).unwrap();
        let source = ModelSource::read(dir.path(), false).unwrap();
        assert_eq!(source.files.len(), 2);
    }

    #[test]
    fn parallel_results_keep_their_order() {
        let items: Vec<u64> = (0..50).collect();
        let results =
            parallel_largest_first(&items, |&item| item, |&item| Ok::<_, Error>(item * 2)).unwrap();
        assert_eq!(
            results,
            items.iter().map(|item| item * 2).collect::<Vec<_>>()
        );
        let error = parallel_largest_first(
            &items,
            |&item| item,
            |&item| {
                if item == 7 {
                    Err(Error::Input("seven".to_owned()))
                } else {
                    Ok(item)
                }
            },
        );
        assert!(error.is_err());
    }
}
