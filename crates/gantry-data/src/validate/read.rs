//! Reading data files: mapped or read JSONL and text cut into line-aligned chunks, JSON arrays, CSV and Parquet, each hashed for the lock.

use std::cell::RefCell;
use std::io::Read;
use std::rc::Rc;

use gantry_core::Digest;
use serde_json::Value;
use sha2::Digest as _;
use xxhash_rust::xxh3::xxh3_128;

use crate::error::{Error, Result};
use crate::source::{DataFile, FileKind};

/// A single record (line) larger than this is reported and skipped.
pub(crate) const MAX_RECORD_BYTES: usize = 64 << 20;

/// A `.json` array file larger than this must be converted to JSONL.
pub(crate) const MAX_JSON_FILE_BYTES: usize = 1 << 30;

/// Which digests of a file's bytes a run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hashes {
    /// SHA-256, for the lock.
    pub(crate) sha256: bool,
    /// xxh3-128: in a shard job, every file's, so the merge can tell every
    /// shard read the same bytes while only one shard pays for SHA-256.
    pub(crate) xxh3: bool,
}

impl Default for Hashes {
    fn default() -> Hashes {
        Hashes {
            sha256: true,
            xxh3: false,
        }
    }
}

/// The digests [`Hashes`] asks for, taken as bytes pass.
#[derive(Clone)]
pub(crate) struct ContentHasher {
    sha256: Option<sha2::Sha256>,
    xxh3: Option<Box<xxhash_rust::xxh3::Xxh3Default>>,
}

/// A file's digests: those its [`Hashes`] asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ContentDigest {
    pub(crate) sha256: Option<Digest>,
    pub(crate) xxh3: Option<u128>,
}

impl ContentHasher {
    pub(crate) fn new(hashes: Hashes) -> ContentHasher {
        ContentHasher {
            sha256: hashes.sha256.then(sha2::Sha256::new),
            xxh3: hashes
                .xxh3
                .then(|| Box::new(xxhash_rust::xxh3::Xxh3Default::new())),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        if let Some(sha256) = &mut self.sha256 {
            sha256.update(bytes);
        }
        if let Some(xxh3) = &mut self.xxh3 {
            xxh3.update(bytes);
        }
    }

    pub(crate) fn finish(self) -> ContentDigest {
        ContentDigest {
            sha256: self
                .sha256
                .map(|sha256| Digest::from_bytes(sha256.finalize().into())),
            xxh3: self.xxh3.map(|xxh3| xxh3.digest128()),
        }
    }
}

/// Streams `file` into batches, returning the digests and size of the bytes
/// on disk; a mapped file's digests come from `hasher` instead (`None`).
/// `spare` may hand back a line buffer a worker is done with.
pub(crate) fn read_file(
    file: &DataFile,
    mut emit_with_bytes: impl FnMut(Batch, u64),
    spare: &mut dyn FnMut() -> Option<Vec<u8>>,
    hasher: &FileHasher,
    map: bool,
) -> Result<(Option<ContentDigest>, u64)> {
    if file.kind == FileKind::Parquet {
        return read_parquet(file, &mut emit_with_bytes, hasher.hashes)
            .map(|(digest, size)| (Some(digest), size));
    }
    if map
        && file.compression == crate::source::Compression::None
        && matches!(file.kind, FileKind::Jsonl | FileKind::Text)
        && let Some(size) = map_lines(file, &mut emit_with_bytes, hasher)?
    {
        return Ok((None, size));
    }
    let hashing = HashingReader::open(file, hasher.hashes)?;
    let state = Rc::clone(&hashing.state);
    let progress_state = Rc::clone(&hashing.state);
    // Batches go out between reads, when nothing else borrows the state.
    let mut emit = |batch: Batch| {
        let bytes = progress_state.try_borrow().map_or(0, |state| state.bytes);
        emit_with_bytes(batch, bytes);
    };
    let mut decoded: Box<dyn Read> = match file.compression {
        crate::source::Compression::None => Box::new(hashing),
        crate::source::Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(hashing)),
        crate::source::Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(hashing).map_err(|source| Error::Read {
                path: file.path.clone(),
                error: source,
            })?,
        ),
    };
    let decode_error = |offset: u64, source: std::io::Error| {
        if file.compression == crate::source::Compression::None {
            Error::Read {
                path: file.path.clone(),
                error: source,
            }
        } else {
            Error::Decompress {
                path: file.path.clone(),
                codec: file.codec(),
                offset,
                reason: source.to_string(),
            }
        }
    };
    match file.kind {
        FileKind::Jsonl | FileKind::Text => {
            read_lines(file, &mut decoded, &decode_error, &mut emit, spare)?
        }
        FileKind::Json => read_json_array(file, &mut decoded, &decode_error, &mut emit)?,
        FileKind::Csv => read_csv(&mut decoded, &decode_error, &mut emit)?,
        FileKind::Parquet => unreachable_parquet(file)?,
    }
    // Hash whatever the decoder left unread (trailing bytes), so the digest covers the whole file.
    drop(decoded);
    let mut state = state.borrow_mut();
    state.drain().map_err(|source| Error::Read {
        path: file.path.clone(),
        error: source,
    })?;
    let digest = state.hasher.clone().finish();
    Ok((Some(digest), state.bytes))
}

pub(crate) struct HashState {
    pub(crate) file: Option<std::fs::File>,
    pub(crate) hasher: ContentHasher,
    pub(crate) bytes: u64,
}

impl HashState {
    pub(crate) fn drain(&mut self) -> std::io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut buffer = vec![0_u8; 1 << 20];
        loop {
            let n_read = file.read(&mut buffer)?;
            if n_read == 0 {
                return Ok(());
            }
            self.hasher.update(&buffer[..n_read]);
            self.bytes += n_read as u64;
        }
    }
}

/// Reads the file on disk, hashing every byte that passes.
pub(crate) struct HashingReader {
    pub(crate) state: Rc<RefCell<HashState>>,
}

impl HashingReader {
    pub(crate) fn open(file: &DataFile, hashes: Hashes) -> Result<HashingReader> {
        let handle = std::fs::File::open(&file.path).map_err(|source| Error::Read {
            path: file.path.clone(),
            error: source,
        })?;
        Ok(HashingReader {
            state: Rc::new(RefCell::new(HashState {
                file: Some(handle),
                hasher: ContentHasher::new(hashes),
                bytes: 0,
            })),
        })
    }
}

impl Read for HashingReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let mut state = self.state.borrow_mut();
        let Some(file) = state.file.as_mut() else {
            return Ok(0);
        };
        let n_read = file.read(buffer)?;
        state.hasher.update(&buffer[..n_read]);
        state.bytes += n_read as u64;
        Ok(n_read)
    }
}

pub(crate) fn read_lines(
    file: &DataFile,
    decoded: &mut dyn Read,
    decode_error: &dyn Fn(u64, std::io::Error) -> Error,
    emit: &mut dyn FnMut(Batch),
    spare: &mut dyn FnMut() -> Option<Vec<u8>>,
) -> Result<()> {
    const BLOCK: usize = 1 << 20;
    let text = file.kind == FileKind::Text;
    // Reads go straight into the chunk being filled; a worker's spent buffer
    // is reused (already initialized, so `read` needs no zeroing first), so
    // chunks cost neither a copy nor fresh pages.
    let mut fresh = || {
        let mut buffer = spare().unwrap_or_default();
        if buffer.len() < CHUNK_BYTES + BLOCK {
            buffer.resize(CHUNK_BYTES + BLOCK, 0);
        }
        buffer
    };
    let mut pending = fresh();
    let mut filled = 0;
    let mut next_line = 1_u64;
    let mut next_byte = 0_u64;
    let mut decoded_bytes = 0_u64;
    let mut checked_binary = false;
    loop {
        if pending.len() < filled + BLOCK {
            // Only a line longer than a chunk grows the buffer.
            pending.resize(filled + BLOCK, 0);
        }
        let before = filled;
        let n_read = read_block(&mut *decoded, &mut pending[filled..filled + BLOCK])
            .map_err(|(n_read, error)| decode_error(decoded_bytes + n_read as u64, error))?;
        filled += n_read;
        if !checked_binary && (n_read > 0 || decoded_bytes > 0) {
            let probe = &pending[before..before + n_read.min(8192)];
            if let Some(offset) = memchr_nul(probe) {
                return Err(Error::NotText {
                    path: file.path.clone(),
                    offset: offset as u64,
                    expected: file.kind.expectation(),
                });
            }
            checked_binary = true;
        }
        decoded_bytes += n_read as u64;
        let at_end = n_read == 0;
        if filled >= CHUNK_BYTES || at_end {
            let cut = if at_end {
                filled
            } else {
                memchr::memrchr(b'\n', &pending[..filled]).map_or(0, |index| index + 1)
            };
            if cut == 0 && filled > MAX_RECORD_BYTES {
                // One line larger than any record should be: report it, skip to its end.
                let oversized_line = next_line;
                let oversized_byte = next_byte;
                let mut skipped = filled as u64;
                filled = 0;
                let mut block = vec![0_u8; BLOCK];
                loop {
                    let n_read = decoded
                        .read(&mut block)
                        .map_err(|error| decode_error(decoded_bytes, error))?;
                    decoded_bytes += n_read as u64;
                    if n_read == 0 {
                        break;
                    }
                    if let Some(index) = memchr::memchr(b'\n', &block[..n_read]) {
                        skipped += index as u64 + 1;
                        let rest = &block[index + 1..n_read];
                        pending[..rest.len()].copy_from_slice(rest);
                        filled = rest.len();
                        break;
                    }
                    skipped += n_read as u64;
                }
                emit(oversized_record(oversized_line, oversized_byte, skipped));
                next_line += 1;
                next_byte += skipped;
                continue;
            }
            if cut > 0 {
                // The partial line after the cut starts the next chunk.
                let mut next = fresh();
                let rest = filled - cut;
                if next.len() < rest + BLOCK {
                    next.resize(rest + BLOCK, 0);
                }
                next[..rest].copy_from_slice(&pending[cut..filled]);
                let bytes = Chunk::Read {
                    buffer: std::mem::replace(&mut pending, next),
                    len: cut,
                };
                filled = rest;
                let n_lines =
                    bytecount::count(&bytes, b'\n') as u64 + u64::from(!bytes.ends_with(b"\n"));
                let length = bytes.len() as u64;
                emit(Batch::Lines {
                    bytes,
                    first_line: next_line,
                    first_byte: next_byte,
                    text,
                });
                next_line += n_lines;
                next_byte += length;
            }
        }
        if at_end {
            return Ok(());
        }
    }
}

/// Cuts an uncompressed JSONL or text file into chunks of whole lines the way
/// [`read_lines`] does, from windows of the file mapped into memory: no read
/// copies the bytes, and the lock's SHA-256 reads them where they lie. `None`
/// when the file cannot be mapped (not a regular file, or a filesystem that
/// does not map): it is read instead.
pub(crate) fn map_lines(
    file: &DataFile,
    emit: &mut dyn FnMut(Batch, u64),
    hasher: &FileHasher,
) -> Result<Option<u64>> {
    /// Windows end at their last line break; a line longer than a window
    /// gets a larger one.
    const WINDOW: usize = 16 << 20;
    /// A window this large that a line fills without a break holds a line
    /// over the limit.
    const LARGEST_WINDOW: usize = MAX_RECORD_BYTES + 1;
    let read_error = |source: std::io::Error| Error::Read {
        path: file.path.clone(),
        error: source,
    };
    let handle = std::fs::File::open(&file.path).map_err(read_error)?;
    let metadata = handle.metadata().map_err(read_error)?;
    if !metadata.is_file() {
        return Ok(None);
    }
    let size = metadata.len();
    let text = file.kind == FileKind::Text;
    let mut start = 0_u64;
    let mut next_line = 1_u64;
    let mut want = WINDOW;
    while start < size {
        let len = usize::try_from(size - start).map_or(want, |rest| rest.min(want));
        let window = match map_range(&handle, start, len) {
            Ok(window) => window,
            // A filesystem that cannot map files: read it instead (nothing
            // has been handed out yet).
            Err(_) if start == 0 => return Ok(None),
            Err(error) => return Err(read_error(error)),
        };
        if start == 0
            && let Some(offset) = memchr_nul(&window[..len.min(8192)])
        {
            return Err(Error::NotText {
                path: file.path.clone(),
                offset: offset as u64,
                expected: file.kind.expectation(),
            });
        }
        let at_end = start + len as u64 == size;
        let end = if at_end {
            len
        } else {
            memchr::memrchr(b'\n', &window).map_or(0, |index| index + 1)
        };
        if end == 0 && want < LARGEST_WINDOW {
            want = (want * 4).min(LARGEST_WINDOW);
            continue;
        }
        want = WINDOW;
        if end == 0 {
            // One line larger than any record should be: report it, skip to its end.
            hasher.push(std::sync::Arc::new(window), 0..len);
            let mut skipped = len as u64;
            while start + skipped < size {
                let rest =
                    usize::try_from(size - start - skipped).map_or(WINDOW, |rest| rest.min(WINDOW));
                let window = map_range(&handle, start + skipped, rest).map_err(read_error)?;
                let taken = memchr::memchr(b'\n', &window).map_or(rest, |index| index + 1);
                let ends_line = taken < rest || window.last() == Some(&b'\n');
                hasher.push(std::sync::Arc::new(window), 0..taken);
                skipped += taken as u64;
                if ends_line {
                    break;
                }
            }
            emit(oversized_record(next_line, start, skipped), start + skipped);
            next_line += 1;
            start += skipped;
            continue;
        }
        let window = std::sync::Arc::new(window);
        let mut from = 0;
        while from < end {
            // Chunks of about CHUNK_BYTES, each ending at a line break;
            // smaller near the end of the file, so no worker waits long for
            // the last one.
            let target = chunk_target(size - start - from as u64);
            let to = if end - from <= target {
                end
            } else {
                let probe = from + target;
                memchr::memrchr(b'\n', &window[from..probe])
                    .or_else(|| {
                        memchr::memchr(b'\n', &window[probe..end]).map(|index| probe - from + index)
                    })
                    .map_or(end, |index| from + index + 1)
            };
            let bytes = &window[from..to];
            let n_lines =
                bytecount::count(bytes, b'\n') as u64 + u64::from(!bytes.ends_with(b"\n"));
            emit(
                Batch::Lines {
                    bytes: Chunk::Mapped {
                        window: std::sync::Arc::clone(&window),
                        range: from..to,
                    },
                    first_line: next_line,
                    first_byte: start + from as u64,
                    text,
                },
                start + to as u64,
            );
            hasher.push(std::sync::Arc::clone(&window), from..to);
            // Hashing may not fall far behind (every waiting chunk keeps its
            // window mapped): past a few chunks, this thread hashes them.
            if hasher.waiting() > MAX_WAITING {
                hasher.catch_up();
            }
            next_line += n_lines;
            from = to;
        }
        start += end as u64;
    }
    Ok(Some(size))
}

/// The lock's SHA-256 of a mapped file. The thread that cuts chunks queues
/// them here in file order; checking threads hash them in turns (one at a
/// time, in order), so hashing — one file's is inherently serial — takes a
/// core only while it has bytes to hash, and no thread waits on another.
pub(crate) struct FileHasher {
    pub(crate) hashes: Hashes,
    pub(crate) waiting: std::sync::Mutex<std::collections::VecDeque<Chunk>>,
    pub(crate) hasher: std::sync::Mutex<ContentHasher>,
}

impl Default for FileHasher {
    fn default() -> FileHasher {
        FileHasher::new(Hashes::default())
    }
}

/// A lock whose holder panicked is still taken: the panic fails the run on
/// its own, and no chunk may be dropped meanwhile.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FileHasher {
    pub(crate) fn new(hashes: Hashes) -> FileHasher {
        FileHasher {
            hashes,
            waiting: std::sync::Mutex::default(),
            hasher: std::sync::Mutex::new(ContentHasher::new(hashes)),
        }
    }

    pub(crate) fn push(
        &self,
        window: std::sync::Arc<memmap2::Mmap>,
        range: std::ops::Range<usize>,
    ) {
        lock(&self.waiting).push_back(Chunk::Mapped { window, range });
    }

    /// How many chunks wait to be hashed.
    pub(crate) fn waiting(&self) -> usize {
        lock(&self.waiting).len()
    }

    /// Hashes what is waiting, after any other thread hashing now.
    pub(crate) fn catch_up(&self) {
        self.drain(&mut lock(&self.hasher));
    }

    /// Hashes what is waiting, unless another thread is hashing already.
    pub(crate) fn help(&self) {
        match self.hasher.try_lock() {
            Ok(mut hasher) => self.drain(&mut hasher),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                self.drain(&mut poisoned.into_inner());
            }
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
    }

    /// Whoever holds the hasher takes waiting chunks in order, so order is kept.
    pub(crate) fn drain(&self, hasher: &mut ContentHasher) {
        loop {
            // A statement of its own, so the queue is unlocked while hashing.
            let next = lock(&self.waiting).pop_front();
            let Some(chunk) = next else { break };
            hasher.update(&chunk[..]);
        }
    }

    /// Hashes what is left: the digests of every byte pushed.
    pub(crate) fn finish(self) -> ContentDigest {
        let mut hasher = lock(&self.hasher).clone();
        self.drain(&mut hasher);
        hasher.finish()
    }
}

/// Maps `len` bytes of `file` from `offset`, read-only.
#[allow(unsafe_code)]
pub(crate) fn map_range(
    file: &std::fs::File,
    offset: u64,
    len: usize,
) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the mapping is read-only and gantry never writes the file. What
    // Rust cannot see is another process changing the file meanwhile: new
    // bytes would show through (the lock's digest and the checks see the
    // same ones), and a file truncated under the mapping ends gantry with
    // SIGBUS, as it does ripgrep. `ValidateOptions::map_files` false (the CLI's GANTRY_NO_MMAP) reads with read(2) instead.
    unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len)
            .map(file)
    }
}

/// The finding for a line of `length` bytes, over the limit per record, at
/// `line` and `byte`; the line itself is skipped.
pub(crate) fn oversized_record(line: u64, byte: u64, length: u64) -> Batch {
    let origin = Origin {
        ordinal: line,
        byte: Some(byte),
        is_line: true,
    };
    let message = format!(
        "record is {length} bytes, over the {} MiB limit per record; skipped",
        MAX_RECORD_BYTES >> 20
    );
    Batch::Records(vec![(origin, 0, Err(message))])
}

/// Reads until `buffer` is full or the input ends, retrying interrupted
/// reads; fewer bytes than `buffer` holds means the end. An error comes with
/// the bytes read before it.
pub(crate) fn read_block(
    reader: &mut dyn Read,
    buffer: &mut [u8],
) -> std::result::Result<usize, (usize, std::io::Error)> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n_read) => filled += n_read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err((filled, error)),
        }
    }
    Ok(filled)
}

/// Parquet files are read by [`read_parquet`], never through a decompressor.
pub(crate) fn unreachable_parquet(file: &DataFile) -> Result<()> {
    Err(Error::Unsupported {
        path: file.path.clone(),
        kind: "compressed Parquet (Parquet compresses its own pages)",
    })
}

/// Reads a Parquet file row by row: each row becomes a JSON record. Parquet
/// needs random access, so the SHA-256 is a separate pass over the file.
pub(crate) fn read_parquet(
    file: &DataFile,
    emit: &mut dyn FnMut(Batch, u64),
    hashes: Hashes,
) -> Result<(ContentDigest, u64)> {
    use parquet::file::reader::SerializedFileReader;
    if file.compression != crate::source::Compression::None {
        unreachable_parquet(file)?;
    }
    let read_error = |source: std::io::Error| Error::Read {
        path: file.path.clone(),
        error: source,
    };
    let handle = std::fs::File::open(&file.path).map_err(read_error)?;
    let (digest, size) = {
        let mut state = HashState {
            file: Some(handle.try_clone().map_err(read_error)?),
            hasher: ContentHasher::new(hashes),
            bytes: 0,
        };
        state.drain().map_err(read_error)?;
        (state.hasher.finish(), state.bytes)
    };
    let whole_file = Origin {
        ordinal: 0,
        byte: None,
        is_line: false,
    };
    let rows = match SerializedFileReader::new(handle) {
        Ok(reader) => reader.into_iter(),
        Err(error) => {
            let message = format!(
                "not a readable Parquet file: {}",
                crate::scan::sanitize_message(&error.to_string())
            );
            emit(Batch::Records(vec![(whole_file, 0, Err(message))]), size);
            return Ok((digest, size));
        }
    };
    let mut batch = Vec::new();
    for (index, row) in rows.enumerate() {
        let origin = Origin {
            ordinal: index as u64,
            byte: None,
            is_line: false,
        };
        match row {
            Ok(row) => {
                let value = row.to_json_value();
                let raw = serde_json::to_vec(&value).unwrap_or_default();
                batch.push((origin, xxh3_128(&raw), Ok(value)));
            }
            Err(error) => {
                // A corrupt page ends the file: report where, keep what was read.
                batch.push((
                    origin,
                    0,
                    Err(format!(
                        "unreadable Parquet row: {}",
                        crate::scan::sanitize_message(&error.to_string())
                    )),
                ));
                break;
            }
        }
        if batch.len() == 4096 {
            emit(Batch::Records(std::mem::take(&mut batch)), size);
        }
    }
    if !batch.is_empty() {
        emit(Batch::Records(batch), size);
    }
    Ok((digest, size))
}

pub(crate) fn memchr_nul(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(0, bytes)
}

pub(crate) fn read_json_array(
    file: &DataFile,
    decoded: &mut dyn Read,
    decode_error: &dyn Fn(u64, std::io::Error) -> Error,
    emit: &mut dyn FnMut(Batch),
) -> Result<()> {
    let mut bytes = Vec::new();
    decoded
        .take(MAX_JSON_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| decode_error(bytes.len() as u64, error))?;
    if bytes.len() > MAX_JSON_FILE_BYTES {
        return Err(Error::Unsupported {
            path: file.path.clone(),
            kind: "JSON array files over 1 GiB (use JSONL)",
        });
    }
    if let Some(offset) = memchr_nul(&bytes[..bytes.len().min(8192)]) {
        return Err(Error::NotText {
            path: file.path.clone(),
            offset: offset as u64,
            expected: file.kind.expectation(),
        });
    }
    let whole = Origin {
        ordinal: 1,
        byte: Some(0),
        is_line: true,
    };
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(&bytes);
    let value: Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(error) => {
            let origin = Origin {
                ordinal: error.line() as u64,
                byte: None,
                is_line: true,
            };
            emit(Batch::Records(vec![(
                origin,
                0,
                Err(format!(
                    "not valid JSON: {}",
                    crate::scan::sanitize_message(&error.to_string())
                )),
            )]));
            return Ok(());
        }
    };
    let Value::Array(records) = value else {
        emit(Batch::Records(vec![(
            whole,
            0,
            Err("a .json data file must hold an array of records".to_owned()),
        )]));
        return Ok(());
    };
    let mut batch = Vec::new();
    for (index, record) in records.into_iter().enumerate() {
        let raw = serde_json::to_vec(&record).unwrap_or_default();
        batch.push((
            Origin {
                ordinal: index as u64,
                byte: None,
                is_line: false,
            },
            xxh3_128(&raw),
            Ok(record),
        ));
        if batch.len() == 4096 {
            emit(Batch::Records(std::mem::take(&mut batch)));
        }
    }
    if !batch.is_empty() {
        emit(Batch::Records(batch));
    }
    Ok(())
}

/// The UTF-8 byte-order mark some editors put at the start of a file.
pub(crate) const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// `reader` without a leading UTF-8 byte-order mark.
pub(crate) fn without_bom(reader: &mut dyn Read) -> std::io::Result<impl Read + '_> {
    let mut head = [0_u8; 3];
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..])? {
            0 => break,
            read => filled += read,
        }
    }
    let kept = if head[..filled] == *UTF8_BOM {
        0
    } else {
        filled
    };
    Ok(std::io::Cursor::new(head[..kept].to_vec()).chain(reader))
}

pub(crate) fn read_csv(
    decoded: &mut dyn Read,
    decode_error: &dyn Fn(u64, std::io::Error) -> Error,
    emit: &mut dyn FnMut(Batch),
) -> Result<()> {
    let decoded = without_bom(decoded).map_err(|error| decode_error(0, error))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(decoded);
    let headers: Vec<String> = match reader.headers() {
        Ok(headers) => headers.iter().map(str::to_owned).collect(),
        Err(error) => {
            let origin = Origin {
                ordinal: 1,
                byte: Some(0),
                is_line: true,
            };
            emit(Batch::Records(vec![(
                origin,
                0,
                Err(format!(
                    "unreadable CSV header: {}",
                    crate::scan::sanitize_message(&error.to_string())
                )),
            )]));
            return Ok(());
        }
    };
    let mut batch = Vec::new();
    let mut row = csv::StringRecord::new();
    loop {
        let position = reader.position().clone();
        let origin = Origin {
            ordinal: position.line(),
            byte: Some(position.byte()),
            is_line: true,
        };
        match reader.read_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {
                let origin = row.position().map_or(origin, |position| Origin {
                    ordinal: position.line(),
                    byte: Some(position.byte()),
                    is_line: true,
                });
                let object: serde_json::Map<String, Value> = headers
                    .iter()
                    .cloned()
                    .zip(row.iter().map(|field| Value::String(field.to_owned())))
                    .collect();
                let raw: Vec<u8> = row.iter().collect::<Vec<_>>().join("\u{1f}").into_bytes();
                batch.push((origin, xxh3_128(&raw), Ok(Value::Object(object))));
            }
            Err(error) => {
                let message = match error.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len,
                        len,
                        pos,
                    } => {
                        let origin_line = pos.as_ref().map_or(origin.ordinal, csv::Position::line);
                        batch.push((
                            Origin {
                                ordinal: origin_line,
                                byte: pos.as_ref().map(csv::Position::byte),
                                is_line: true,
                            },
                            0,
                            Err(format!(
                                "row has {len} fields but the header has {expected_len}"
                            )),
                        ));
                        continue;
                    }
                    csv::ErrorKind::Utf8 { err, .. } => {
                        format!("invalid UTF-8 in field {}", err.field() + 1)
                    }
                    csv::ErrorKind::Io(io) => format!("read error: {io}"),
                    _ => crate::scan::sanitize_message(&error.to_string()),
                };
                batch.push((origin, 0, Err(message)));
                if matches!(error.kind(), csv::ErrorKind::Io(_)) {
                    break;
                }
            }
        }
        if batch.len() == 4096 {
            emit(Batch::Records(std::mem::take(&mut batch)));
        }
    }
    if !batch.is_empty() {
        emit(Batch::Records(batch));
    }
    Ok(())
}

/// Target size of one chunk of text handed to a worker.
pub(crate) const CHUNK_BYTES: usize = 4 << 20;

/// The smallest chunk [`chunk_target`] asks for.
const MIN_CHUNK_BYTES: usize = 256 << 10;

/// How many bytes the next chunk of a mapped file takes when `remaining`
/// bytes of the file are left: [`CHUNK_BYTES`], and a sixteenth of what is
/// left over the last few chunks (at least [`MIN_CHUNK_BYTES`]). Workers
/// take chunks as they come, so one that finishes last finishes at most a
/// small chunk after the others.
fn chunk_target(remaining: u64) -> usize {
    usize::try_from(remaining / 16)
        .unwrap_or(CHUNK_BYTES)
        .clamp(MIN_CHUNK_BYTES, CHUNK_BYTES)
}

/// Chunks of a mapped file that may wait to be hashed.
pub(crate) const MAX_WAITING: usize = 4;

/// Where a record came from, for examples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Origin {
    /// Line (1-based) or record index (0-based) for JSON arrays.
    pub(crate) ordinal: u64,
    pub(crate) byte: Option<u64>,
    pub(crate) is_line: bool,
}

/// A unit of work for a worker.
pub(crate) enum Batch {
    /// Raw text holding whole lines: JSONL records, or text lines.
    Lines {
        bytes: Chunk,
        first_line: u64,
        first_byte: u64,
        text: bool,
    },
    /// Records already split (JSON arrays, CSV rows): (origin, raw hash, value or parse error).
    Records(Vec<(Origin, u128, std::result::Result<Value, String>)>),
}

/// Whole lines of text, read or mapped.
pub(crate) enum Chunk {
    /// Read into a reusable buffer: `buffer[..len]` is the text, the rest is
    /// initialized room, so a reused buffer is read into without zeroing.
    Read { buffer: Vec<u8>, len: usize },
    /// A range of a window of the file mapped into memory.
    Mapped {
        window: std::sync::Arc<memmap2::Mmap>,
        range: std::ops::Range<usize>,
    },
}

impl std::ops::Deref for Chunk {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Read { buffer, len } => &buffer[..*len],
            Chunk::Mapped { window, range } => &window[range.clone()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::record::{lines, parse_json};

    /// Every line a reader hands out: (line number, byte offset, the line or
    /// the error for it), with the file's digests and size.
    #[allow(clippy::type_complexity)]
    pub(crate) fn lines_of(
        file: &DataFile,
        map: bool,
    ) -> (
        Vec<(u64, Option<u64>, std::result::Result<Vec<u8>, String>)>,
        ContentDigest,
        u64,
    ) {
        let mut seen = Vec::new();
        // Both digests, as a shard job that takes a file's SHA-256 does.
        let hasher = FileHasher::new(Hashes {
            sha256: true,
            xxh3: true,
        });
        let (digest, size) = read_file(
            file,
            |batch, _| match batch {
                Batch::Lines {
                    bytes,
                    first_line,
                    first_byte,
                    ..
                } => {
                    let mut byte = first_byte;
                    for (line_number, line) in (first_line..).zip(lines(&bytes)) {
                        seen.push((line_number, Some(byte), Ok(line.to_vec())));
                        byte += line.len() as u64;
                    }
                }
                Batch::Records(records) => {
                    for (origin, _, value) in records {
                        let value = value.map(|value| value.to_string().into_bytes());
                        seen.push((origin.ordinal, origin.byte, value));
                    }
                }
            },
            &mut || None,
            &hasher,
            map,
        )
        .expect("read");
        (seen, digest.unwrap_or_else(|| hasher.finish()), size)
    }

    #[test]
    pub(crate) fn mapped_and_read_files_give_the_same_lines_and_digest() {
        use std::io::Write as _;
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("mixed.jsonl");
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let mut write = |bytes: &[u8]| file.write_all(bytes).expect("write");
        for index in 0..3000 {
            write(format!("{{\"text\": \"line {index}\"}}\n").as_bytes());
            if index % 700 == 0 {
                write(b"\r\n\n{\"text\": \"crlf\"}\r\n");
            }
        }
        // Longer than a mapped window (it gets a larger one) and than a chunk.
        for size in [20 << 20, 5 << 20] {
            write(b"{\"text\": \"");
            write(&vec![b'y'; size]);
            write(b"\"}\n");
        }
        write(b"{\"text\": \"between\"}\n");
        // Over the limit per record: reported and skipped on both paths.
        write(&vec![b'x'; MAX_RECORD_BYTES + (3 << 20)]);
        write(b"\n{\"text\": \"after\"}\n{\"text\": \"no line break at the end\"}");
        drop(file);
        let data = DataFile {
            path: path.clone(),
            display: "mixed.jsonl".to_owned(),
            kind: FileKind::Jsonl,
            compression: crate::source::Compression::None,
        };
        let mapped = lines_of(&data, true);
        let read = lines_of(&data, false);
        assert_eq!(mapped.0.len(), 3000 + 5 * 3 + 6);
        assert!(mapped.0 == read.0, "the two readers disagree on the lines");
        assert_eq!((mapped.1, mapped.2), (read.1, read.2));
        let on_disk = std::fs::read(&path).expect("read");
        assert_eq!(mapped.1.sha256, Some(Digest::of_bytes(&on_disk)));
        assert_eq!(mapped.1.xxh3, Some(xxh3_128(&on_disk)));
        assert_eq!(mapped.2, on_disk.len() as u64);
        let oversized = mapped
            .0
            .iter()
            .find_map(|(line, _, value)| value.as_ref().err().map(|error| (*line, error.clone())))
            .expect("the long line is reported");
        assert_eq!(
            oversized,
            (
                3000 + 5 * 3 + 4,
                format!(
                    "record is {} bytes, over the 64 MiB limit per record; skipped",
                    MAX_RECORD_BYTES + (3 << 20) + 1
                )
            )
        );
    }

    /// JSON-ish text: real records, their prefixes, and bytes that are not JSON.
    pub(crate) fn json_like() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| serde_json::json!(n)),
            any::<u64>().prop_map(|n| serde_json::json!(n)),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| serde_json::json!(f)),
            ".*".prop_map(serde_json::Value::String),
        ];
        let value = leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        });
        prop_oneof![
            value.clone().prop_map(|value| value.to_string()),
            (value, 0.0..1.0f64).prop_map(|(value, cut)| {
                let text = value.to_string();
                let mut end = (text.len() as f64 * cut) as usize;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text[..end].to_owned()
            }),
            ".{0,40}",
            r#"\{"messages":\[\{"role":"(user|assistant)","content":"[^"\\]{0,20}"\}\]\}[ ,}\]]{0,3}"#,
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..Default::default() })]

        /// Lines split as `split_inclusive` splits them.
        #[test]
        fn lines_split_like_the_standard_library(bytes in proptest::collection::vec(proptest::prop_oneof![proptest::prelude::Just(b'\n'), proptest::prelude::Just(b'a'), proptest::prelude::Just(b'\r')], 0..64)) {
            let expected: Vec<&[u8]> = bytes.split_inclusive(|&byte| byte == b'\n').collect();
            proptest::prop_assert_eq!(lines(&bytes).collect::<Vec<_>>(), expected);
        }

        /// The SIMD parser accepts exactly what serde_json accepts, with the same value.
        #[test]
        fn records_parse_as_serde_json_parses_them(text in json_like()) {
            let reference = serde_json::from_str::<Value>(&text);
            // Lines are parsed from bytes first; it must accept what serde_json accepts.
            let from_bytes = sonic_rs::from_slice::<Value>(text.as_bytes()).ok();
            proptest::prop_assert_eq!(&from_bytes, &reference.as_ref().ok().cloned());
            match (parse_json(&text), reference) {
                (Ok(fast), Ok(reference)) => proptest::prop_assert_eq!(fast, reference),
                (Err((message, _)), Err(error)) => {
                    proptest::prop_assert_eq!(
                        message,
                        format!("not valid JSON: {}", crate::scan::sanitize_message(&error.to_string()))
                    );
                }
                (fast, reference) => proptest::prop_assert!(
                    false,
                    "{text:?}: fast parser {fast:?}, serde_json {reference:?}"
                ),
            }
        }
    }
}
