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

/// The top bits of the eight bytes of `word` as eight bits, byte `k`'s in
/// bit `k`: one multiply moves each to its place, and no two of the
/// products' bits land on the same place, so nothing carries.
#[inline]
pub(crate) fn top_bits(word: u64) -> u64 {
    ((word & HIGH) >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// Bit `k` set where byte `k` of `bytes` (at most 64) is in the class,
/// eight bytes at a time.
#[inline]
pub(crate) fn class_mask(bytes: &[u8], in_class: impl Fn(u64) -> u64) -> u64 {
    debug_assert!(bytes.len() <= 64, "a mask holds 64 bytes");
    let (words, rest) = bytes.as_chunks::<8>();
    let mut mask = 0_u64;
    for (index, &eight) in words.iter().enumerate() {
        mask |= top_bits(in_class(u64::from_le_bytes(eight))) << (8 * index);
    }
    if !rest.is_empty() {
        let mut padded = [0_u8; 8];
        padded[..rest.len()].copy_from_slice(rest);
        let kept = (1_u64 << rest.len()) - 1;
        mask |= (top_bits(in_class(u64::from_le_bytes(padded))) & kept) << (8 * words.len());
    }
    mask
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn class_masks_are_the_bytes_in_the_class(bytes in proptest::collection::vec(proptest::prop_oneof![0x2e_u8..=0x3b, proptest::prelude::any::<u8>()], 0..=64)) {
            let expected = bytes
                .iter()
                .enumerate()
                .fold(0_u64, |mask, (bit, byte)| mask | u64::from(byte.is_ascii_digit()) << bit);
            proptest::prop_assert_eq!(class_mask(&bytes, |word| in_range(word, b'0', b'9')), expected);
        }

        #[test]
        fn top_bits_are_each_bytes_top_bit(word in proptest::prelude::any::<u64>()) {
            let expected = (0..8).fold(0_u64, |bits, k| bits | ((word >> (8 * k + 7)) & 1) << k);
            proptest::prop_assert_eq!(top_bits(word), expected);
        }
    }
}
