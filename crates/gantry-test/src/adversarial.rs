//! Hostile input for the fuzz-style property tests every parser of gantry
//! has: arbitrary bytes, and the shapes that break parsers in practice —
//! nesting deeper than any stack, numbers out of every range, NUL bytes, a
//! byte-order mark, invalid UTF-8, lone surrogates, huge strings.
//!
//! Each parser's test feeds these to it and asserts only that it returns:
//! a value or an error, never a panic, never an abort.

use proptest::prelude::*;

/// The number of cases each fuzz test runs: enough to meet every shape
/// below many times, few enough to keep the suite's time bounded.
pub const CASES: u32 = 96;

/// A proptest configuration with [`CASES`] cases, no persisted failures
/// (the suite runs from a clean checkout) and a fixed seed, so CI runs the
/// same cases every time (`PROPTEST_RNG_SEED` or a larger
/// `PROPTEST_CASES` explore further by hand).
pub fn config() -> ProptestConfig {
    let defaults = ProptestConfig::default();
    let from_environment = |name: &str| std::env::var_os(name).is_some();
    ProptestConfig {
        cases: if from_environment("PROPTEST_CASES") {
            defaults.cases
        } else {
            CASES
        },
        failure_persistence: None,
        rng_seed: if from_environment("PROPTEST_RNG_SEED") {
            defaults.rng_seed
        } else {
            proptest::test_runner::RngSeed::Fixed(20_261_204)
        },
        ..defaults
    }
}

/// Nesting of arrays or objects `depth` levels deep, closed or not.
fn nested(depth: usize, object: bool, closed: bool) -> Vec<u8> {
    let (open, close): (&[u8], &[u8]) = if object {
        (b"{\"a\":", b"}")
    } else {
        (b"[", b"]")
    };
    let mut bytes = open.repeat(depth);
    bytes.extend_from_slice(b"1");
    if closed {
        bytes.extend_from_slice(&close.repeat(depth));
    }
    bytes
}

/// One hostile fragment.
fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        // Deep nesting, within and far beyond every limit.
        (1_usize..200_000, any::<bool>(), any::<bool>())
            .prop_map(|(depth, object, closed)| nested(depth, object, closed)),
        // Numbers out of range, in every notation.
        prop::sample::select(vec![
            "1e999999".to_owned(),
            "-1e999999".to_owned(),
            "1e-999999".to_owned(),
            "123456789012345678901234567890123456789012345678901234567890".to_owned(),
            "-0".to_owned(),
            "NaN".to_owned(),
            "Infinity".to_owned(),
            "0x7fffffffffffffff".to_owned(),
            "18446744073709551616".to_owned(),
            "1.7976931348623157e309".to_owned(),
        ])
        .prop_map(String::into_bytes),
        // Control bytes, a BOM, invalid UTF-8, lone surrogates.
        prop::sample::select(vec![
            b"\0".to_vec(),
            b"\xef\xbb\xbf".to_vec(),
            b"\xff\xfe".to_vec(),
            b"\xc3\x28".to_vec(),
            b"\"\\ud800\"".to_vec(),
            b"\"\\u0000\"".to_vec(),
            b"\r\n".to_vec(),
            b"\n".to_vec(),
        ]),
        // JSON-ish pieces.
        prop::sample::select(vec![
            b"{\"messages\": [".to_vec(),
            b"{\"role\": \"user\", \"content\": ".to_vec(),
            b"]}".to_vec(),
            b"\"".to_vec(),
            b",".to_vec(),
            b"{".to_vec(),
            b"[[".to_vec(),
            b"=".to_vec(),
            b"[rule]\n".to_vec(),
        ]),
        // A long string.
        (1_usize..100_000).prop_map(|length| {
            let mut bytes = b"\"".to_vec();
            bytes.extend(std::iter::repeat_n(b'x', length));
            bytes.push(b'"');
            bytes
        }),
        // Arbitrary bytes.
        prop::collection::vec(any::<u8>(), 0..256),
    ]
}

/// Hostile input: a few fragments, sometimes after a plausible start.
pub fn bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![
            Vec::new(),
            b"\xef\xbb\xbf".to_vec(),
            b"{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": ".to_vec(),
            b"{\"results\": {\"t\": {\"acc,none\": ".to_vec(),
            b"[[rule]]\nmetric = ".to_vec(),
        ]),
        prop::collection::vec(fragment(), 1..6),
    )
        .prop_map(|(start, fragments)| {
            let mut bytes = start;
            for fragment in fragments {
                bytes.extend(fragment);
            }
            bytes
        })
}

/// Hostile text: [`bytes`], made valid UTF-8 where it was not.
pub fn text() -> impl Strategy<Value = String> {
    bytes().prop_map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}
