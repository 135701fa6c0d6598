//! Content addresses: `sha256:<hex>` digests of bytes, streams and canonical JSON.

use std::io::Read;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A SHA-256 content address, written `sha256:<64 lowercase hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// The digest of a byte slice.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The digest of everything `reader` yields, streamed in 256 KiB blocks so
    /// that a checkpoint or a dataset is never held in memory whole. Returns
    /// the digest and the number of bytes read. `what` names the source in
    /// errors.
    pub fn of_reader(mut reader: impl Read, what: &str) -> Result<(Digest, u64)> {
        let mut hasher = Sha256::new();
        let mut buffer = vec![0_u8; 256 * 1024];
        let mut n_bytes = 0_u64;
        loop {
            let n_read = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n_read) => n_read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(Error::Read {
                        what: what.to_owned(),
                        error: source,
                    });
                }
            };
            hasher.update(&buffer[..n_read]);
            n_bytes += n_read as u64;
        }
        Ok((Digest(hasher.finalize().into()), n_bytes))
    }

    /// A digest from the 32 bytes of a finished SHA-256, for callers that hash
    /// while they stream for another purpose.
    pub fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The 64 hex digits without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        let mut hex = String::with_capacity(64);
        for byte in self.0 {
            hex.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            hex.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
        }
        hex
    }
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl std::fmt::Debug for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(value: &str) -> Result<Digest> {
        let invalid = || Error::InvalidDigest {
            value: value.to_owned(),
        };
        let hex = value.strip_prefix("sha256:").ok_or_else(invalid)?;
        if hex.len() != 64 {
            return Err(invalid());
        }
        let mut bytes = [0_u8; 32];
        for (index, pair) in hex.as_bytes().chunks(2).enumerate() {
            let nibble = |digit: u8| match digit {
                b'0'..=b'9' => Some(digit - b'0'),
                b'a'..=b'f' => Some(digit - b'a' + 10),
                _ => None,
            };
            let high = nibble(pair[0]).ok_or_else(invalid)?;
            let low = nibble(pair[1]).ok_or_else(invalid)?;
            bytes[index] = (high << 4) | low;
        }
        Ok(Digest(bytes))
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Canonical JSON: object keys sorted, no insignificant whitespace. Two
/// values that are equal as JSON give the same bytes, so their digests agree.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    // `serde_json::Value` keeps object keys in a sorted map (the
    // `preserve_order` feature is off), so a round trip through it sorts them.
    let value = serde_json::to_value(value)?;
    Ok(serde_json::to_vec(&value)?)
}

/// The digest of a value's canonical JSON: the identity of a manifest.
pub fn canonical_json_digest<T: Serialize>(value: &T) -> Result<Digest> {
    Ok(Digest::of_bytes(&canonical_json(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_known_vectors() {
        // NIST test vectors for SHA-256.
        let table = [
            (
                "",
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            ),
            (
                "abc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
        ];
        for (input, hex) in table {
            assert_eq!(Digest::of_bytes(input.as_bytes()).hex(), hex, "{input:?}");
        }
    }

    #[test]
    fn streaming_digest_matches_one_shot() {
        let data: Vec<u8> = (0..1_000_000_u32).map(|i| (i % 251) as u8).collect();
        let (streamed, n_bytes) = Digest::of_reader(&data[..], "test data").expect("read");
        assert_eq!(streamed, Digest::of_bytes(&data));
        assert_eq!(n_bytes, 1_000_000);
    }

    #[test]
    fn digest_round_trips_and_rejects_bad_text() {
        let digest = Digest::of_bytes(b"gantry");
        let parsed: Digest = digest.to_string().parse().expect("parse");
        assert_eq!(parsed, digest);
        let bad = [
            "",
            "sha256:",
            "md5:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ];
        for text in bad {
            let error = text.parse::<Digest>().expect_err(text);
            assert!(error.to_string().contains("expected `sha256:`"), "{error}");
        }
    }

    #[test]
    fn canonical_json_ignores_key_order() {
        let first: serde_json::Value =
            serde_json::from_str(r#"{"b": 1, "a": {"d": [1, 2], "c": null}}"#).expect("json");
        let second: serde_json::Value =
            serde_json::from_str(r#"{"a": {"c": null, "d": [1, 2]}, "b": 1}"#).expect("json");
        assert_eq!(
            canonical_json(&first).expect("json"),
            br#"{"a":{"c":null,"d":[1,2]},"b":1}"#
        );
        assert_eq!(
            canonical_json_digest(&first).expect("digest"),
            canonical_json_digest(&second).expect("digest")
        );
    }
}
