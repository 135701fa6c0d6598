//! A static scan of pickle-based checkpoints: which globals would loading import?
//!
//! Unpickling runs code: `GLOBAL`, `INST` and `STACK_GLOBAL` import any
//! callable and `REDUCE` calls it. This walks the opcode stream without
//! executing anything and collects every import; an import is safe only if
//! it is on an allow-list of the constructors PyTorch, NumPy and plain Python
//! containers need to rebuild tensors (the same idea as PyTorch's
//! `weights_only` unpickler). Everything else — `os.system`,
//! `builtins.eval`, a user's own class — is reported, and registration
//! refuses the file unless `--allow-pickle` is given.
//!
//! Files are recognised by content, not name: raw pickles (protocols 0–5,
//! several in a row as legacy `torch.save` writes them), zip archives
//! (`torch.save` since 1.6: every member with a pickle's name is scanned,
//! and TorchScript `code/` is reported), tar archives (members with a
//! pickle's name, and archives inside) and gzip of any of these. Inside an
//! archive only names count: `torch.save`'s zip holds raw tensor storages
//! that may begin with any bytes.
//! A protocol 2+ pickle starts with `PROTO` (`0x80`, protocol), which no
//! text starts with, so any file does; protocols 0 and 1 start with bytes
//! text starts with too (`(`, `c`, `}`), so a file is scanned as one only
//! under a pickle extension ([`PICKLE_EXTENSIONS`]). `checkpoint.pth.tar`,
//! `model.weights` and `state` are found like `model.pt`.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use gantry_core::PickleSummary;

use crate::error::{Error, Result};

/// Extensions of files that may hold pickles.
pub const PICKLE_EXTENSIONS: &[&str] = &["bin", "pt", "pth", "pkl", "pickle", "ckpt", "joblib"];

/// Imports that rebuild tensors and containers and nothing else.
const SAFE_IMPORTS: &[&str] = &[
    "collections.OrderedDict",
    "collections.defaultdict",
    "builtins.set",
    "builtins.frozenset",
    "builtins.dict",
    "builtins.list",
    "builtins.tuple",
    "builtins.int",
    "builtins.float",
    "builtins.complex",
    "builtins.bool",
    "builtins.bytes",
    "builtins.bytearray",
    "builtins.str",
    "builtins.slice",
    "builtins.range",
    "__builtin__.set",
    "__builtin__.frozenset",
    "__builtin__.dict",
    "__builtin__.list",
    "__builtin__.tuple",
    "_codecs.encode",
    "copy_reg._reconstructor",
    "copyreg._reconstructor",
    "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state",
    "torch._utils._rebuild_qtensor",
    "torch._utils._rebuild_sparse_tensor",
    "torch._utils._rebuild_device_tensor_from_numpy",
    "torch._utils._rebuild_meta_tensor_no_storage",
    "torch._utils._rebuild_nested_tensor",
    "torch._utils._rebuild_wrapper_subclass",
    "torch._tensor._rebuild_from_type_v2",
    "torch.Size",
    "torch.device",
    "torch.dtype",
    "torch.layout",
    "torch.strided",
    "torch.sparse_coo",
    "torch.float16",
    "torch.float32",
    "torch.float64",
    "torch.bfloat16",
    "torch.int8",
    "torch.int16",
    "torch.int32",
    "torch.int64",
    "torch.uint8",
    "torch.bool",
    "torch.per_tensor_affine",
    "torch.UntypedStorage",
    "torch.FloatStorage",
    "torch.DoubleStorage",
    "torch.HalfStorage",
    "torch.BFloat16Storage",
    "torch.LongStorage",
    "torch.IntStorage",
    "torch.ShortStorage",
    "torch.CharStorage",
    "torch.ByteStorage",
    "torch.BoolStorage",
    "torch.ComplexFloatStorage",
    "torch.ComplexDoubleStorage",
    "torch.QInt8Storage",
    "torch.QUInt8Storage",
    "torch.QInt32Storage",
    "numpy.core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray._reconstruct",
    "numpy._core.multiarray.scalar",
    "numpy.ndarray",
    "numpy.dtype",
];

/// Longest text argument (a line-terminated opcode argument) accepted.
const MAX_LINE: usize = 1 << 16;

/// Scans the file at `path` by its content. Returns `None` when it is
/// neither a pickle nor an archive holding one (a raw binary, say).
/// `pickle_name` says whether its name is a pickle's, which alone lets a
/// protocol 0 or 1 pickle (whose first byte text can start with) count.
pub fn scan_file(path: &Path, pickle_name: bool) -> Result<Option<PickleSummary>> {
    let file = std::fs::File::open(path).map_err(Error::io("cannot open", path))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut imports = BTreeSet::new();
    let found = scan_content(
        &mut reader,
        pickle_name,
        &path.display().to_string(),
        &mut imports,
        0,
    )
    .map_err(|reason| Error::Input(format!("{}: {reason}", path.display())))?;
    Ok(found.then(|| summarize(imports)))
}

/// How deep archives may nest (a tar in a gzip, a zip in the tar).
const MAX_ARCHIVE_DEPTH: usize = 3;

/// Scans whatever `reader` holds; `Ok(false)` when it holds no pickle.
/// Inside an archive (`depth > 0`) a member is a pickle only by its name.
fn scan_content(
    reader: &mut dyn BufRead,
    pickle_name: bool,
    display: &str,
    imports: &mut BTreeSet<String>,
    depth: usize,
) -> std::result::Result<bool, String> {
    let head = fill_head(reader, 512)?;
    if depth < MAX_ARCHIVE_DEPTH && head.starts_with(b"PK\x03\x04") {
        // A zip needs seeking: spool it to a temporary file.
        let mut spooled =
            tempfile::tempfile().map_err(|error| format!("cannot spool {display}: {error}"))?;
        std::io::copy(reader, &mut spooled)
            .map_err(|error| format!("cannot read {display}: {error}"))?;
        return scan_zip(spooled, display, imports, depth);
    }
    if depth < MAX_ARCHIVE_DEPTH && is_tar(&head) {
        return scan_tar(reader, display, imports, depth);
    }
    if depth < MAX_ARCHIVE_DEPTH && head.starts_with(&[0x1f, 0x8b]) {
        let mut inflated = BufReader::new(flate2::bufread::MultiGzDecoder::new(reader));
        return scan_content(&mut inflated, pickle_name, display, imports, depth + 1);
    }
    if (depth == 0 && starts_like_proto(&head)) || (pickle_name && looks_like_pickle(&head)) {
        scan_stream(reader, imports);
        return Ok(true);
    }
    Ok(false)
}

/// Up to `length` bytes from the start of `reader`, without consuming them.
fn fill_head(reader: &mut dyn BufRead, length: usize) -> std::result::Result<Vec<u8>, String> {
    // `fill_buf` may return less than the buffer holds; a short read of a
    // short file is all there is.
    let head = reader.fill_buf().map_err(|error| error.to_string())?;
    Ok(head[..head.len().min(length)].to_vec())
}

/// Whether `name` ends in one of [`PICKLE_EXTENSIONS`].
fn has_pickle_name(name: &str) -> bool {
    Path::new(name)
        .extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| PICKLE_EXTENSIONS.contains(&extension))
}

/// A protocol 2–5 pickle's first opcode: `PROTO` and its protocol.
fn starts_like_proto(head: &[u8]) -> bool {
    matches!(head, [0x80, 2..=5, ..])
}

/// A POSIX (ustar) or GNU tar header: its magic at byte 257.
fn is_tar(head: &[u8]) -> bool {
    head.len() >= 262 && &head[257..262] == b"ustar"
}

fn scan_zip(
    file: std::fs::File,
    display: &str,
    imports: &mut BTreeSet<String>,
    depth: usize,
) -> std::result::Result<bool, String> {
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|error| format!("{display}: not a readable zip archive: {error}"))?;
    let mut scanned_any = false;
    for index in 0..archive.len() {
        let mut member = archive
            .by_index(index)
            .map_err(|error| format!("{display}: zip member {index}: {error}"))?;
        let name = member.name().to_owned();
        if name.contains("/code/") && name.ends_with(".py") {
            imports.insert(format!("<TorchScript code {name}>"));
        }
        let member_display = format!("{display}!{name}");
        let pickle_name = has_pickle_name(&name);
        let mut member_reader = BufReader::new(&mut member);
        if scan_content(
            &mut member_reader,
            pickle_name,
            &member_display,
            imports,
            depth + 1,
        )? {
            scanned_any = true;
        }
    }
    Ok(scanned_any)
}

fn scan_tar(
    reader: &mut dyn BufRead,
    display: &str,
    imports: &mut BTreeSet<String>,
    depth: usize,
) -> std::result::Result<bool, String> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|error| format!("{display}: not a readable tar archive: {error}"))?;
    let mut scanned_any = false;
    for entry in entries {
        let entry = entry.map_err(|error| format!("{display}: a tar member: {error}"))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map(|path| path.display().to_string())
            .unwrap_or_default();
        let pickle_name = has_pickle_name(&name);
        let member_display = format!("{display}!{name}");
        let mut member_reader = BufReader::new(entry);
        if scan_content(
            &mut member_reader,
            pickle_name,
            &member_display,
            imports,
            depth + 1,
        )? {
            scanned_any = true;
        }
    }
    Ok(scanned_any)
}

/// Scans pickles from bytes in memory (for tests and callers with a buffer).
pub fn scan_bytes(bytes: &[u8]) -> PickleSummary {
    let mut imports = BTreeSet::new();
    scan_stream(&mut &bytes[..], &mut imports);
    summarize(imports)
}

fn summarize(imports: BTreeSet<String>) -> PickleSummary {
    let unsafe_imports = imports
        .iter()
        .filter(|import| !SAFE_IMPORTS.contains(&import.as_str()))
        .cloned()
        .collect();
    PickleSummary {
        imports: imports.into_iter().collect(),
        unsafe_imports,
    }
}

/// A pickle starts with PROTO (protocol 2+) or, for protocols 0 and 1, with
/// one of the opcodes that can open a stream.
fn looks_like_pickle(head: &[u8]) -> bool {
    match head {
        [0x80, protocol, ..] => *protocol <= 5,
        [first, ..] => b"(}]).cK".contains(first),
        [] => false,
    }
}

/// Scans consecutive pickles (legacy `torch.save` writes five, then raw
/// storage bytes) until the stream ends or stops looking like a pickle.
/// Anything malformed is recorded as an import that cannot be trusted.
///
/// Legacy `torch.save` files hold five pickles and then raw storage bytes,
/// which may happen to start like a pickle: past the fifth, what does not
/// parse is data, not a threat (no loader reads it as a pickle).
fn scan_stream(reader: &mut dyn BufRead, imports: &mut BTreeSet<String>) {
    for index in 0..16 {
        match reader.fill_buf() {
            Ok(head) if looks_like_pickle(head) => {}
            _ => return,
        }
        let mut found = BTreeSet::new();
        match scan_one(reader, &mut found) {
            Ok(()) => imports.append(&mut found),
            Err(_) if index >= LEGACY_PICKLES => return,
            Err(reason) => {
                imports.append(&mut found);
                imports.insert(format!("<malformed pickle: {reason}>"));
                return;
            }
        }
    }
}

/// Pickles at the start of a legacy `torch.save` file.
const LEGACY_PICKLES: usize = 5;

/// A value on the emulated stack: only strings matter (for STACK_GLOBAL).
#[derive(Clone)]
enum Value {
    Text(String),
    Other,
}

fn scan_one(reader: &mut dyn BufRead, imports: &mut BTreeSet<String>) -> Result<(), String> {
    let mut stack: Vec<Value> = Vec::new();
    let mut memo: HashMap<u64, Value> = HashMap::new();
    loop {
        let opcode = read_u8(reader)?;
        match opcode {
            b'.' => return Ok(()),
            // Imports.
            b'c' | b'i' => {
                let module = read_line(reader)?;
                let name = read_line(reader)?;
                imports.insert(format!("{module}.{name}"));
                stack.push(Value::Other);
            }
            0x93 => {
                let name = stack.pop();
                let module = stack.pop();
                match (module, name) {
                    (Some(Value::Text(module)), Some(Value::Text(name))) => {
                        imports.insert(format!("{module}.{name}"));
                    }
                    _ => {
                        imports.insert("<STACK_GLOBAL of a computed name>".to_owned());
                    }
                }
                stack.push(Value::Other);
            }
            0x82..=0x84 => {
                let width = [1, 2, 4][usize::from(opcode - 0x82)];
                skip(reader, width)?;
                imports.insert("<copyreg extension code>".to_owned());
                stack.push(Value::Other);
            }
            // Strings, which STACK_GLOBAL may consume.
            b'X' => {
                let length = read_uint(reader, 4)?;
                stack.push(Value::Text(read_text(reader, length)?));
            }
            0x8c => {
                let length = read_uint(reader, 1)?;
                stack.push(Value::Text(read_text(reader, length)?));
            }
            0x8d => {
                let length = read_uint(reader, 8)?;
                stack.push(Value::Text(read_text(reader, length)?));
            }
            b'V' => stack.push(Value::Text(read_line(reader)?)),
            b'S' => {
                let line = read_line(reader)?;
                stack.push(Value::Text(line.trim_matches(['\'', '"']).to_owned()));
            }
            b'T' => {
                let length = read_uint(reader, 4)?;
                stack.push(Value::Text(read_text(reader, length)?));
            }
            b'U' => {
                let length = read_uint(reader, 1)?;
                stack.push(Value::Text(read_text(reader, length)?));
            }
            // Memo.
            0x94 => {
                let value = stack.last().cloned().unwrap_or(Value::Other);
                memo.insert(memo.len() as u64, value);
            }
            b'p' => {
                let index = parse_index(&read_line(reader)?)?;
                memo.insert(index, stack.last().cloned().unwrap_or(Value::Other));
            }
            b'q' => {
                let index = read_uint(reader, 1)?;
                memo.insert(index, stack.last().cloned().unwrap_or(Value::Other));
            }
            b'r' => {
                let index = read_uint(reader, 4)?;
                memo.insert(index, stack.last().cloned().unwrap_or(Value::Other));
            }
            b'g' => {
                let index = parse_index(&read_line(reader)?)?;
                stack.push(memo.get(&index).cloned().unwrap_or(Value::Other));
            }
            b'h' => {
                let index = read_uint(reader, 1)?;
                stack.push(memo.get(&index).cloned().unwrap_or(Value::Other));
            }
            b'j' => {
                let index = read_uint(reader, 4)?;
                stack.push(memo.get(&index).cloned().unwrap_or(Value::Other));
            }
            // Arguments to skip; the stack effect matters only for strings,
            // so everything else pushes or pops an opaque value.
            0x80 => skip(reader, 1)?,
            0x95 => skip(reader, 8)?,
            b'F' | b'I' | b'L' | b'P' => {
                read_line(reader)?;
                stack.push(Value::Other);
            }
            b'J' => {
                skip(reader, 4)?;
                stack.push(Value::Other);
            }
            b'K' => {
                skip(reader, 1)?;
                stack.push(Value::Other);
            }
            b'M' => {
                skip(reader, 2)?;
                stack.push(Value::Other);
            }
            b'G' => {
                skip(reader, 8)?;
                stack.push(Value::Other);
            }
            0x8a => {
                let length = read_uint(reader, 1)?;
                skip(reader, length)?;
                stack.push(Value::Other);
            }
            0x8b | b'B' => {
                let length = read_uint(reader, 4)?;
                skip(reader, length)?;
                stack.push(Value::Other);
            }
            b'C' => {
                let length = read_uint(reader, 1)?;
                skip(reader, length)?;
                stack.push(Value::Other);
            }
            0x8e | 0x96 => {
                let length = read_uint(reader, 8)?;
                skip(reader, length)?;
                stack.push(Value::Other);
            }
            b'N' | 0x88 | 0x89 | b'}' | b']' | b')' | 0x8f | b'(' | 0x97 => {
                stack.push(Value::Other);
            }
            // Opcodes that consume and produce values.
            b'0' => {
                stack.pop();
            }
            b'2' => {
                let top = stack.last().cloned().unwrap_or(Value::Other);
                stack.push(top);
            }
            b'1' | b'a' | b'b' | b'd' | b'e' | b'l' | b'o' | b's' | b't' | b'u' | b'R' | b'Q'
            | 0x81 | 0x85 | 0x86 | 0x87 | 0x90 | 0x91 | 0x92 | 0x98 => {
                // Collapse: the exact arity is irrelevant to which strings
                // are on top when STACK_GLOBAL comes, because every string a
                // STACK_GLOBAL uses is pushed right before it.
                stack.pop();
                stack.push(Value::Other);
            }
            other => return Err(format!("unknown opcode 0x{other:02x}")),
        }
    }
}

fn read_u8(reader: &mut dyn BufRead) -> Result<u8, String> {
    let mut byte = [0_u8; 1];
    reader
        .read_exact(&mut byte)
        .map_err(|_| "ends before STOP".to_owned())?;
    Ok(byte[0])
}

fn read_uint(reader: &mut dyn BufRead, width: usize) -> Result<u64, String> {
    let mut bytes = [0_u8; 8];
    reader
        .read_exact(&mut bytes[..width])
        .map_err(|_| "ends inside an argument".to_owned())?;
    Ok(u64::from_le_bytes(bytes))
}

fn read_text(reader: &mut dyn BufRead, length: u64) -> Result<String, String> {
    if length > MAX_LINE as u64 {
        skip(reader, length)?;
        return Ok(String::new());
    }
    let mut bytes = vec![0_u8; length as usize];
    reader
        .read_exact(&mut bytes)
        .map_err(|_| "ends inside a string".to_owned())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn read_line(reader: &mut dyn BufRead) -> Result<String, String> {
    let mut line = Vec::new();
    reader
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .map_err(|error| error.to_string())?;
    if line.pop() != Some(b'\n') {
        return Err("a text argument has no end".to_owned());
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn parse_index(line: &str) -> Result<u64, String> {
    line.trim()
        .parse()
        .map_err(|_| format!("memo index {line:?} is not a number"))
}

fn skip(reader: &mut dyn BufRead, length: u64) -> Result<(), String> {
    let copied = std::io::copy(&mut reader.take(length), &mut std::io::sink())
        .map_err(|error| error.to_string())?;
    if copied == length {
        Ok(())
    } else {
        Err("ends inside an argument".to_owned())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `pickle.dumps(os.system("echo pwned"))`-style payload, protocol 0.
    const PROTOCOL_0_PAYLOAD: &[u8] = b"cposix\nsystem\n(Vecho pwned\ntR.";

    /// The same through STACK_GLOBAL with memoized strings, protocol 4.
    fn protocol_4_payload() -> Vec<u8> {
        let mut bytes = vec![0x80, 4, 0x95];
        bytes.extend_from_slice(&0_u64.to_le_bytes());
        for text in ["builtins", "exec"] {
            bytes.push(0x8c);
            bytes.push(text.len() as u8);
            bytes.extend_from_slice(text.as_bytes());
            bytes.push(0x94);
        }
        bytes.push(0x93);
        bytes.push(0x94);
        bytes.extend_from_slice(&[0x8c, 5]);
        bytes.extend_from_slice(b"1+1=2");
        bytes.extend_from_slice(&[0x85, b'R', b'.']);
        bytes
    }

    #[test]
    fn finds_imports_in_every_protocol() {
        let summary = scan_bytes(PROTOCOL_0_PAYLOAD);
        assert_eq!(summary.unsafe_imports, vec!["posix.system"]);
        let summary = scan_bytes(&protocol_4_payload());
        assert_eq!(summary.unsafe_imports, vec!["builtins.exec"]);
    }

    #[test]
    fn memo_gets_resolve_stack_global_names() {
        // Strings memoized first, fetched back with BINGET before STACK_GLOBAL.
        let mut bytes = vec![0x80, 4];
        for text in ["os", "system"] {
            bytes.push(0x8c);
            bytes.push(text.len() as u8);
            bytes.extend_from_slice(text.as_bytes());
            bytes.push(0x94);
            bytes.push(b'0');
        }
        bytes.extend_from_slice(&[b'h', 0, b'h', 1, 0x93, b'N', b'.']);
        assert_eq!(scan_bytes(&bytes).unsafe_imports, vec!["os.system"]);
    }

    #[test]
    fn tensor_rebuilds_are_safe_and_garbage_is_not() {
        let safe = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02.";
        let summary = scan_bytes(safe);
        assert!(summary.unsafe_imports.is_empty(), "{summary:?}");
        assert_eq!(summary.imports.len(), 2);
        let truncated = b"\x80\x02ccollections\nOrdered";
        let summary = scan_bytes(truncated);
        assert_eq!(summary.unsafe_imports.len(), 1);
        assert!(summary.unsafe_imports[0].starts_with("<malformed pickle"));
        let unknown = b"\x80\x02\xff.";
        assert!(!scan_bytes(unknown).unsafe_imports.is_empty());
    }

    #[test]
    fn scans_each_pickle_of_a_legacy_stream() {
        let mut bytes = b"\x80\x02K\x01.".to_vec();
        bytes.extend_from_slice(PROTOCOL_0_PAYLOAD);
        bytes.extend_from_slice(b"\x00\x01raw storage bytes");
        assert_eq!(scan_bytes(&bytes).unsafe_imports, vec!["posix.system"]);
    }

    #[test]
    fn non_pickles_are_not_scanned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.bin");
        std::fs::write(&path, [0_u8, 1, 2, 3]).unwrap();
        assert!(scan_file(&path, true).unwrap().is_none());
        std::fs::write(&path, PROTOCOL_0_PAYLOAD).unwrap();
        let summary = scan_file(&path, true).unwrap().unwrap();
        assert_eq!(summary.unsafe_imports, vec!["posix.system"]);
        // Text that starts like a protocol 0 pickle is not one unless named so.
        std::fs::write(&path, "checkpoint: every 500 steps\nlr: 0.1\n").unwrap();
        assert!(scan_file(&path, false).unwrap().is_none());
        // A protocol 2+ pickle is one under any name.
        assert!(scan_file(&path, false).unwrap().is_none());
        std::fs::write(&path, protocol_4_payload()).unwrap();
        let summary = scan_file(&path, false).unwrap().unwrap();
        assert_eq!(summary.unsafe_imports, vec!["builtins.exec"]);
    }
}

#[cfg(test)]
mod hostile_input {
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(gantry_test::adversarial::config())]

        /// Hostile bytes as a pickle, after each pickle header, and inside
        /// a zip member: a summary (with malformed pickles called unsafe)
        /// or an error, never a panic or an abort.
        #[test]
        fn hostile_pickles_are_summaries_or_errors(bytes in gantry_test::adversarial::bytes(), header in prop::sample::select(vec![vec![], vec![0x80, 2], vec![0x80, 5, 0x95, 0, 0, 0, 0, 0, 0, 0, 0], b"(".to_vec(), b"c".to_vec()])) {
            let mut pickle = header.clone();
            pickle.extend_from_slice(&bytes);
            let _ = super::scan_bytes(&pickle);
            let directory = tempfile::tempdir().expect("tempdir");
            let path = directory.path().join("model.bin");
            std::fs::write(&path, &pickle).expect("write");
            let _ = super::scan_file(&path, true);
            let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
            zip.start_file("archive/data.pkl", zip::write::SimpleFileOptions::default()).expect("member");
            std::io::Write::write_all(&mut zip, &pickle).expect("write member");
            let archive = zip.finish().expect("zip").into_inner();
            let zipped = directory.path().join("model.pt");
            std::fs::write(&zipped, &archive).expect("write");
            let _ = super::scan_file(&zipped, false);
            // A zip archive cut anywhere.
            let cut = &archive[..archive.len() * bytes.len().min(255) / 256];
            std::fs::write(&zipped, cut).expect("write");
            let _ = super::scan_file(&zipped, false);
        }
    }
}
