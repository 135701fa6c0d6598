//! How deep a JSON text nests, found before a parser that recurses without a
//! limit (sonic-rs) is given it.

/// The deepest nesting of arrays and objects a record may have: serde_json's
/// own limit, which every other JSON reader of gantry keeps.
pub(crate) const MAX_NESTING: usize = 128;

pub(crate) fn too_deep_message() -> String {
    format!(
        "nested more than {MAX_NESTING} arrays and objects deep; gantry reads records up to {MAX_NESTING} levels"
    )
}

/// Where `bytes` (one JSON text) first nests deeper than [`MAX_NESTING`],
/// if it does. Most records hold few brackets, and a count of them (SIMD)
/// says so without looking at strings; only a record with many is walked.
pub(crate) fn too_deep(bytes: &[u8]) -> Option<usize> {
    if memchr::memchr2_iter(b'[', b'{', bytes)
        .take(MAX_NESTING + 1)
        .count()
        <= MAX_NESTING
    {
        return None;
    }
    let (mut depth, mut in_string, mut escaped) = (0_usize, false, false);
    for (at, &byte) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(at);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}
