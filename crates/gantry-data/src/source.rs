//! Finding data files (paths, directories, globs) and opening them with decompression.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// How a file's records are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// One JSON record per line.
    Jsonl,
    /// A JSON array of records.
    Json,
    /// A CSV table with a header row; each row is a record of strings.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// Plain text: each line is a `{"text": …}` record.
    Text,
}

impl FileKind {
    /// What a file of this kind must hold, for error messages.
    pub fn expectation(self) -> &'static str {
        match self {
            FileKind::Jsonl => "JSON Lines text",
            FileKind::Json => "a JSON array",
            FileKind::Csv => "CSV text",
            FileKind::Parquet => "Parquet",
            FileKind::Text => "text",
        }
    }
}

/// How a file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Not compressed.
    None,
    /// gzip (multi-member files included).
    Gzip,
    /// Zstandard.
    Zstd,
}

/// One data file to validate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataFile {
    /// Where it is.
    pub path: PathBuf,
    /// The path as shown in reports and locks (`/` separators, as found).
    pub display: String,
    /// Its layout.
    pub kind: FileKind,
    /// Its compression.
    pub compression: Compression,
}

impl DataFile {
    /// The kind and compression a path's extensions announce, if it is a data file.
    pub fn classify(path: &Path) -> Option<(FileKind, Compression)> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let (stem, compression) = if let Some(stem) = name.strip_suffix(".gz") {
            (stem, Compression::Gzip)
        } else if let Some(stem) = name.strip_suffix(".zst") {
            (stem, Compression::Zstd)
        } else {
            (name.as_str(), Compression::None)
        };
        let kind = match stem.rsplit('.').next()? {
            "jsonl" | "ndjson" => FileKind::Jsonl,
            "json" => FileKind::Json,
            "csv" => FileKind::Csv,
            "parquet" => FileKind::Parquet,
            "txt" => FileKind::Text,
            _ => return None,
        };
        Some((kind, compression))
    }

    /// Opens the file, decompressing as its extension says.
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        let file = std::fs::File::open(&self.path).map_err(|source| Error::Read {
            path: self.path.clone(),
            error: source,
        })?;
        let reader = BufReader::with_capacity(1 << 20, file);
        Ok(match self.compression {
            Compression::None => Box::new(reader),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(reader).map_err(|source| Error::Read {
                    path: self.path.clone(),
                    error: source,
                })?,
            ),
        })
    }

    /// The codec name, for errors.
    pub fn codec(&self) -> &'static str {
        match self.compression {
            Compression::None => "plain",
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// Expands `--data` values (files, directories searched recursively, glob
/// patterns) into data files, sorted by path and without repeats.
pub fn discover(patterns: &[String]) -> Result<Vec<DataFile>> {
    let mut paths = Vec::new();
    for pattern in patterns {
        let path = Path::new(pattern);
        if path.is_dir() {
            walk(path, &mut paths).map_err(|source| Error::Read {
                path: path.to_owned(),
                error: source,
            })?;
        } else if path.exists() {
            paths.push(path.to_owned());
        } else if pattern.contains(['*', '?', '[']) {
            let matches = glob::glob(pattern).map_err(|error| Error::BadPattern {
                pattern: pattern.clone(),
                reason: error.to_string(),
            })?;
            for entry in matches {
                let entry = entry.map_err(|error| Error::Read {
                    path: error.path().to_owned(),
                    error: std::io::Error::other(error.to_string()),
                })?;
                if entry.is_dir() {
                    walk(&entry, &mut paths).map_err(|source| Error::Read {
                        path: entry.clone(),
                        error: source,
                    })?;
                } else {
                    paths.push(entry);
                }
            }
        } else {
            return Err(Error::Read {
                path: path.to_owned(),
                error: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file or directory",
                ),
            });
        }
    }
    let mut files: Vec<DataFile> = paths
        .into_iter()
        .filter_map(|path| {
            let (kind, compression) = DataFile::classify(&path)?;
            let display = path.to_string_lossy().replace('\\', "/");
            let display = display
                .strip_prefix("./")
                .map_or(display.clone(), str::to_owned);
            Some(DataFile {
                path,
                display,
                kind,
                compression,
            })
        })
        .collect();
    files.sort_by(|left, right| left.display.cmp(&right.display));
    files.dedup_by(|left, right| left.display == right.display);
    if files.is_empty() {
        return Err(Error::NoData {
            patterns: patterns.join(" "),
        });
    }
    Ok(files)
}

fn walk(directory: &Path, paths: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(directory)?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<std::io::Result<_>>()?;
    entries.sort();
    for entry in entries {
        let name = entry
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if entry.is_dir() {
            walk(&entry, paths)?;
        } else if DataFile::classify(&entry).is_some() {
            paths.push(entry);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_decide_kind_and_compression() {
        let table = [
            ("a/train.jsonl", Some((FileKind::Jsonl, Compression::None))),
            ("train.JSONL.GZ", Some((FileKind::Jsonl, Compression::Gzip))),
            ("x.csv.zst", Some((FileKind::Csv, Compression::Zstd))),
            ("x.json", Some((FileKind::Json, Compression::None))),
            ("x.parquet", Some((FileKind::Parquet, Compression::None))),
            ("notes.txt.gz", Some((FileKind::Text, Compression::Gzip))),
            ("model.safetensors", None),
            ("README", None),
        ];
        for (path, expected) in table {
            assert_eq!(DataFile::classify(Path::new(path)), expected, "{path}");
        }
    }

    #[test]
    fn discovery_walks_directories_and_globs() {
        let directory = tempfile::tempdir().expect("tempdir");
        let root = directory.path();
        std::fs::create_dir_all(root.join("data/sub")).expect("mkdir");
        for name in [
            "data/b.jsonl",
            "data/a.csv",
            "data/sub/c.txt.gz",
            "data/skip.md",
            "data/.hidden.jsonl",
            "x.jsonl",
        ] {
            std::fs::write(root.join(name), "").expect("write");
        }
        let data = root.join("data").display().to_string();
        let glob = format!("{}/*.jsonl", root.display());
        let files = discover(&[data, glob]).expect("discover");
        let names: Vec<&str> = files
            .iter()
            .map(|file| {
                file.path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .unwrap_or_default()
            })
            .collect();
        assert_eq!(names, ["a.csv", "b.jsonl", "c.txt.gz", "x.jsonl"]);
        let error =
            discover(&[root.join("data/skip.md").display().to_string()]).expect_err("no data");
        assert!(
            error.to_string().contains("matched no data files"),
            "{error}"
        );
        let error = discover(&["/nonexistent/train.jsonl".to_owned()]).expect_err("missing");
        assert!(
            error
                .to_string()
                .starts_with("cannot read /nonexistent/train.jsonl"),
            "{error}"
        );
    }
}
