//! Runs of ASCII byte classes found eight bytes at a time in a `u64` (SWAR).
//!
//! A class is a function of eight bytes that sets the top bit of each byte
//! in the class. With every byte's top bit set first, subtracting a byte
//! from each lane never borrows from the next, so `(b | 0x80) - c` keeps its
//! top bit exactly when `b >= c` for a byte `b` below 0x80 ([`at_least`]).

/// The top bit of every byte.
pub(crate) const HIGH: u64 = 0x8080_8080_8080_8080;

/// `byte` in every byte.
pub(crate) const fn splat(byte: u8) -> u64 {
    (byte as u64) * 0x0101_0101_0101_0101
}

/// The top bit of each byte set where that byte, taken below 0x80, is at least `byte`.
#[inline]
pub(crate) fn at_least(word: u64, byte: u8) -> u64 {
    ((word | HIGH) - splat(byte)) & HIGH
}

/// The top bit of each byte set where the byte is ASCII and in `low..=high`.
#[inline]
pub(crate) fn in_range(word: u64, low: u8, high: u8) -> u64 {
    at_least(word, low) & !at_least(word, high + 1) & !word & HIGH
}

/// The first position from `from` on whose byte `in_class` leaves out, or
/// `bytes.len()`. The last bytes are looked at zero-padded; the end caps
/// whatever the padding says.
#[inline]
pub(crate) fn run_end(bytes: &[u8], from: usize, in_class: impl Fn(u64) -> u64) -> usize {
    let mut at = from;
    while at < bytes.len() {
        let word = match bytes.get(at..).and_then(|rest| rest.first_chunk::<8>()) {
            Some(&eight) => u64::from_le_bytes(eight),
            None => {
                let mut padded = [0_u8; 8];
                padded[..bytes.len() - at].copy_from_slice(&bytes[at..]);
                u64::from_le_bytes(padded)
            }
        };
        let outside = !in_class(word) & HIGH;
        if outside != 0 {
            return (at + (outside.trailing_zeros() / 8) as usize).min(bytes.len());
        }
        at += 8;
    }
    bytes.len().max(from)
}
