//! A record's normalized words, hashed once for every check that reads words.
//!
//! Normalization follows GPT-3's contamination study: letters and digits
//! lowercased, punctuation dropped (`don't` is `dont`), whitespace splits
//! words. Normalized duplicates, MinHash shingles and eval n-grams all read
//! the same word hashes, and any window of words hashes in constant time
//! from prefix sums of a polynomial hash (`Σ wᵢ·Bᴸ⁻¹⁻ⁱ` mod 2⁶⁴ over the
//! window's word hashes), so 5-grams and 13-grams cost no more than words.

use std::ops::Range;

use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

/// The polynomial hash's base (odd, so multiplying by it is a bijection).
const BASE: u64 = 0x9e37_79b9_7f4a_7c15;
/// The longest window whose base power is kept.
const MAX_WINDOW: usize = 64;

/// `BASE^k` for `k` up to [`MAX_WINDOW`].
const POWERS: [u64; MAX_WINDOW + 1] = {
    let mut powers = [1_u64; MAX_WINDOW + 1];
    let mut k = 1;
    while k <= MAX_WINDOW {
        powers[k] = powers[k - 1].wrapping_mul(BASE);
        k += 1;
    }
    powers
};

/// 64 bits of the 128-bit product (wyhash's mixing step).
#[inline]
fn mix(left: u64, right: u64) -> u64 {
    let product = u128::from(left) * u128::from(right);
    (product as u64) ^ ((product >> 64) as u64)
}

/// The hash of up to 16 bytes given as a little-endian number with zeros
/// past `length`, as wyhash mixes short keys.
#[inline]
fn short_word_hash(bytes: u128, length: usize) -> u64 {
    let mixed = mix(
        (bytes as u64) ^ 0xa076_1d64_78bd_642f,
        ((bytes >> 64) as u64) ^ 0xe703_7ed1_a0b4_28db,
    );
    mix(
        mixed ^ 0x8ebc_6af0_9c88_c6e3,
        (length as u64) ^ 0x5899_65cc_7537_4cc3,
    )
}

/// A normalized word's hash: short words (nearly all) by two multiplies,
/// longer ones by xxh3.
#[inline]
pub(crate) fn word_hash(word: &[u8]) -> u64 {
    if word.len() <= 16 {
        let mut bytes = [0_u8; 16];
        bytes[..word.len()].copy_from_slice(word);
        short_word_hash(u128::from_le_bytes(bytes), word.len())
    } else {
        xxh3_64(word)
    }
}

/// [`word_hash`] of the first `length` (at most 16) of sixteen bytes; what
/// lies past `length` is ignored.
#[inline]
fn short_word_hash_of(window: &[u8; 16], length: usize) -> u64 {
    let mask = if length == 16 {
        u128::MAX
    } else {
        (1_u128 << (8 * length)) - 1
    };
    short_word_hash(u128::from_le_bytes(*window) & mask, length)
}

/// [`word_hash`] of `text[start..end]`, reading 16 bytes at once where the text has them.
#[inline]
fn word_hash_in(text: &[u8], start: usize, end: usize) -> u64 {
    let length = end - start;
    match text.get(start..).and_then(|rest| rest.first_chunk::<16>()) {
        Some(window) if length <= 16 => short_word_hash_of(window, length),
        _ => word_hash(&text[start..end]),
    }
}

/// The first byte from `from` on that is an ASCII space or not ASCII (or
/// the end), looked at eight at a time.
#[inline]
fn ascii_token_end(bytes: &[u8], from: usize) -> usize {
    use crate::swar::{HIGH, in_range};
    crate::swar::run_end(bytes, from, |word| {
        let space = in_range(word, b' ', b' ') | in_range(word, 0x09, 0x0d);
        !(space | (word & HIGH))
    })
}

/// The longest ASCII token [`ascii_token_hash`] takes.
const ASCII_TOKEN_BYTES: usize = 32;

/// [`word_hash`] of the normalized word of an ASCII token without spaces, of
/// at most [`ASCII_TOKEN_BYTES`] (its letters and digits, lowercased), or
/// `None` when it has none: normalized on the stack, without a branch per byte.
#[inline]
fn ascii_token_hash(token: &[u8]) -> Option<u64> {
    // Every byte is written where the next kept one goes; only kept ones advance.
    let mut buffer = [0_u8; ASCII_TOKEN_BYTES + 1];
    let mut length = 0;
    for &byte in token {
        buffer[length] = byte | (u8::from(byte.is_ascii_uppercase()) << 5);
        length += usize::from(byte.is_ascii_alphanumeric());
    }
    match length {
        0 => None,
        1..=16 => buffer
            .first_chunk::<16>()
            .map(|window| short_word_hash_of(window, length)),
        _ => Some(xxh3_64(&buffer[..length])),
    }
}

/// The hash of a window of word hashes; [`Words::window`] agrees with it.
pub(crate) fn window_hash(words: &[u64]) -> u64 {
    words.iter().fold(0_u64, |hash, &word| {
        hash.wrapping_mul(BASE).wrapping_add(word)
    })
}

/// `char::is_whitespace` for ASCII (which counts the vertical tab, unlike `u8::is_ascii_whitespace`).
#[inline]
fn is_ascii_space(byte: u8) -> bool {
    byte.is_ascii_whitespace() || byte == 0x0b
}

/// The normalized words of one record's texts.
#[derive(Debug, Default)]
pub(crate) struct Words {
    /// Word hashes, all texts in order.
    hashes: Vec<u64>,
    /// `prefix[k]`: the window hash of the first `k` words.
    prefix: Vec<u64>,
    /// Where each text's words end in `hashes`.
    ends: Vec<usize>,
    /// A word being lowercased.
    word: Vec<u8>,
    /// Bytes [`Words::normalized_hash`] hashes.
    normalized: Vec<u8>,
    /// Classes of the non-ASCII characters seen lately.
    characters: Characters,
}

/// What normalization does with a non-ASCII character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CharacterClass {
    /// A letter or digit whose lowercase is this one character.
    Letter(char),
    /// A letter or digit whose lowercase is several characters (`İ`).
    Letters,
    /// Whitespace: it ends the word.
    Space,
    /// Anything else: dropped.
    Other,
}

impl CharacterClass {
    /// Asks the Unicode tables (two binary searches for a letter).
    fn of(character: char) -> CharacterClass {
        if character.is_alphanumeric() {
            let mut lower = character.to_lowercase();
            match (lower.next(), lower.next()) {
                (Some(one), None) => CharacterClass::Letter(one),
                _ => CharacterClass::Letters,
            }
        } else if character.is_whitespace() {
            CharacterClass::Space
        } else {
            CharacterClass::Other
        }
    }
}

/// Slots of the table of recent non-ASCII characters (4 KiB).
const CHARACTER_SLOTS: usize = 1 << 9;

/// A direct-mapped table of the classes of recent non-ASCII characters:
/// text in one script repeats a few dozen characters, each of which would
/// otherwise cost its table searches every time.
#[derive(Debug, Default)]
struct Characters {
    /// Per slot: the character (21 bits), its class (2 bits) and its
    /// lowercase (21 bits); all ones when empty (no character is 0x1fffff).
    slots: Vec<u64>,
}

impl Characters {
    #[inline]
    fn class_of(&mut self, character: char) -> CharacterClass {
        if self.slots.is_empty() {
            self.slots = vec![u64::MAX; CHARACTER_SLOTS];
        }
        let code = u64::from(u32::from(character));
        let slot = (u32::from(character).wrapping_mul(0x9e37_79b1)
            >> (32 - CHARACTER_SLOTS.trailing_zeros())) as usize;
        let entry = self.slots[slot];
        if entry & 0x1f_ffff == code {
            let lower = ((entry >> 23) & 0x1f_ffff) as u32;
            return match (entry >> 21) & 3 {
                0 => char::from_u32(lower).map_or(CharacterClass::Letters, CharacterClass::Letter),
                1 => CharacterClass::Letters,
                2 => CharacterClass::Space,
                _ => CharacterClass::Other,
            };
        }
        let class = CharacterClass::of(character);
        let (kind, lower) = match class {
            CharacterClass::Letter(lower) => (0, u64::from(u32::from(lower))),
            CharacterClass::Letters => (1, 0),
            CharacterClass::Space => (2, 0),
            CharacterClass::Other => (3, 0),
        };
        self.slots[slot] = code | kind << 21 | lower << 23;
        class
    }
}

thread_local! {
    /// One set of word buffers per thread, reused from record to record.
    static REUSED: std::cell::RefCell<Words> = std::cell::RefCell::default();
}

/// Runs `f` on the words of `texts`, kept in buffers the calling thread
/// reuses (a record's words cost no allocation once the buffers have grown).
pub(crate) fn with_words<'a, R>(
    texts: impl IntoIterator<Item = &'a str>,
    f: impl FnOnce(&mut Words) -> R,
) -> R {
    REUSED.with(|reused| match reused.try_borrow_mut() {
        Ok(mut words) => {
            words.clear();
            for text in texts {
                words.push(text);
            }
            f(&mut words)
        }
        // Only a call from inside `f` gets here.
        Err(_) => f(&mut Words::of(texts)),
    })
}

/// How many bytes from `from` on are ASCII lowercase letters or digits,
/// looked at eight at a time.
#[inline]
fn lowercase_or_digit_run(bytes: &[u8], from: usize) -> usize {
    use crate::swar::in_range;
    crate::swar::run_end(bytes, from, |word| {
        in_range(word, b'a', b'z') | in_range(word, b'0', b'9')
    }) - from
}

impl Words {
    /// Empties the buffers, keeping their room.
    fn clear(&mut self) {
        self.hashes.clear();
        self.prefix.clear();
        self.ends.clear();
        self.word.clear();
    }

    /// The words of `texts`.
    pub(crate) fn of<'a>(texts: impl IntoIterator<Item = &'a str>) -> Words {
        let mut words = Words::default();
        for text in texts {
            words.push(text);
        }
        words
    }

    /// Appends the words of one more text.
    pub(crate) fn push(&mut self, text: &str) {
        if self.prefix.is_empty() {
            self.prefix.push(0);
        }
        let bytes = text.as_bytes();
        let mut at = 0;
        loop {
            // Between words: ASCII spaces (another space ends the word it follows).
            while bytes.get(at).is_some_and(|&byte| is_ascii_space(byte)) {
                at += 1;
            }
            if at == bytes.len() {
                break;
            }
            let start = at;
            // Most words are lowercase ASCII letters and digits up to a space:
            // hashed where they lie, without a copy.
            at += lowercase_or_digit_run(bytes, at);
            if at > start && bytes.get(at).is_none_or(|&byte| is_ascii_space(byte)) {
                self.add_word(word_hash_in(bytes, start, at));
                continue;
            }
            // Next commonest: ASCII up to a space, with capitals or
            // punctuation (`The`, `said,`, `don't`): normalized on the stack.
            let end = ascii_token_end(bytes, at);
            if end - start <= ASCII_TOKEN_BYTES && bytes.get(end).is_none_or(|&byte| byte < 0x80) {
                if let Some(hash) = ascii_token_hash(&bytes[start..end]) {
                    self.add_word(hash);
                }
                at = end;
                continue;
            }
            // A word with other characters, or a long one: one character at
            // a time, to a space of any kind.
            at = start;
            while let Some(&byte) = bytes.get(at) {
                if byte < 0x80 {
                    if is_ascii_space(byte) {
                        break;
                    }
                    at += 1;
                    if byte.is_ascii_alphanumeric() {
                        self.word.push(byte.to_ascii_lowercase());
                    }
                    continue;
                }
                let Some(c) = text[at..].chars().next() else {
                    break;
                };
                at += c.len_utf8();
                let mut buffer = [0_u8; 4];
                match self.characters.class_of(c) {
                    CharacterClass::Letter(lower) => self
                        .word
                        .extend_from_slice(lower.encode_utf8(&mut buffer).as_bytes()),
                    CharacterClass::Letters => {
                        for lower in c.to_lowercase() {
                            self.word
                                .extend_from_slice(lower.encode_utf8(&mut buffer).as_bytes());
                        }
                    }
                    CharacterClass::Space => break,
                    CharacterClass::Other => {}
                }
            }
            self.end_word();
        }
        self.ends.push(self.hashes.len());
    }

    fn end_word(&mut self) {
        if self.word.is_empty() {
            return;
        }
        let hash = word_hash(&self.word);
        self.word.clear();
        self.add_word(hash);
    }

    fn add_word(&mut self, hash: u64) {
        let last = self.prefix.last().copied().unwrap_or(0);
        self.prefix.push(last.wrapping_mul(BASE).wrapping_add(hash));
        self.hashes.push(hash);
    }

    /// All word hashes, in order.
    pub(crate) fn hashes(&self) -> &[u64] {
        &self.hashes
    }

    /// Whether no text has a word.
    pub(crate) fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The word ranges of each text.
    pub(crate) fn texts(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        self.ends
            .iter()
            .scan(0, |start, &end| Some(std::mem::replace(start, end)..end))
    }

    /// [`window_hash`] of `length` words from word `start`.
    #[inline]
    pub(crate) fn window(&self, start: usize, length: usize) -> u64 {
        let power = match POWERS.get(length) {
            Some(&power) => power,
            None => BASE.wrapping_pow(u32::try_from(length).unwrap_or(u32::MAX)),
        };
        self.prefix[start + length].wrapping_sub(self.prefix[start].wrapping_mul(power))
    }

    /// A 128-bit hash of the normalized texts: equal for records whose texts
    /// have the same words, text by text; `None` when there are no words.
    pub(crate) fn normalized_hash(&mut self) -> Option<u128> {
        if self.is_empty() {
            return None;
        }
        let mut bytes = std::mem::take(&mut self.normalized);
        bytes.clear();
        for range in self.texts() {
            bytes.extend_from_slice(&(range.len() as u64).to_le_bytes());
            for hash in &self.hashes[range] {
                bytes.extend_from_slice(&hash.to_le_bytes());
            }
        }
        let hash = xxh3_128(&bytes);
        self.normalized = bytes;
        Some(hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_character_classes_are_the_unicode_tables() {
        let mut characters = Characters::default();
        // Every character twice: the second answer comes from the table,
        // where the first put it.
        for character in (0x80..=0x10ffff_u32).filter_map(char::from_u32) {
            let class = CharacterClass::of(character);
            assert_eq!(characters.class_of(character), class, "{character:?}");
            assert_eq!(
                characters.class_of(character),
                class,
                "{character:?}, remembered"
            );
        }
        assert_eq!(CharacterClass::of('İ'), CharacterClass::Letters);
        assert_eq!(CharacterClass::of('É'), CharacterClass::Letter('é'));
        assert_eq!(CharacterClass::of('\u{3000}'), CharacterClass::Space);
    }

    #[test]
    fn windows_hash_as_their_words_do() {
        let words = Words::of([
            "The quick, brown FOX — jumps over",
            "",
            "the lazy dog's tail. Ünïcödé ﬁ",
        ]);
        assert_eq!(words.hashes().len(), 12);
        assert_eq!(words.texts().collect::<Vec<_>>(), vec![0..6, 6..6, 6..12]);
        for start in 0..words.hashes().len() {
            for length in 0..=words.hashes().len() - start {
                assert_eq!(
                    words.window(start, length),
                    window_hash(&words.hashes()[start..start + length])
                );
            }
        }
        assert_eq!(words.hashes()[0], word_hash(b"the"));
        assert_eq!(
            words.hashes()[8],
            word_hash(b"dogs"),
            "punctuation inside a word is dropped"
        );
        assert_eq!(words.hashes()[10], word_hash("ünïcödé".as_bytes()));
    }

    proptest::proptest! {
        #[test]
        fn words_are_the_lowercased_letters_and_digits_between_spaces(text in "([a-z0-9]{1,6}|[a-z]{14,20}|[A-Z]{1,3}|[A-Za-z0-9.,'\x00\x7f]{14,40}|[ \t\n\x0b]{1,2}|[.,'!-]|é|É|ß|\u{a0}|\u{2028}|İ|٣){0,24}") {
            let expected: Vec<u64> = text
                .split(char::is_whitespace)
                .map(|token| token.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect::<String>())
                .filter(|word| !word.is_empty())
                .map(|word| word_hash(word.as_bytes()))
                .collect();
            let words = Words::of([text.as_str()]);
            proptest::prop_assert_eq!(words.hashes(), expected.as_slice());
        }
    }

    proptest::proptest! {
        #[test]
        fn token_ends_are_found_eight_bytes_at_a_time(bytes in proptest::collection::vec(proptest::prop_oneof![0x08_u8..=0x0e, 0x1f_u8..=0x21, 0x7f_u8..=0x80, proptest::prelude::any::<u8>()], 0..40), from in 0_usize..40) {
            let from = from.min(bytes.len());
            let expected = from + bytes[from..].iter().take_while(|&&byte| byte < 0x80 && !is_ascii_space(byte)).count();
            proptest::prop_assert_eq!(ascii_token_end(&bytes, from), expected);
        }
    }

    proptest::proptest! {
        #[test]
        fn lowercase_runs_are_found_eight_bytes_at_a_time(bytes in proptest::collection::vec(proptest::prop_oneof![0x2f_u8..=0x3a, 0x60_u8..=0x7b, proptest::prelude::any::<u8>()], 0..40), from in 0_usize..40) {
            let from = from.min(bytes.len());
            let expected = bytes[from..].iter().take_while(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit()).count();
            proptest::prop_assert_eq!(lowercase_or_digit_run(&bytes, from), expected);
        }
    }

    #[test]
    fn normalized_hashes_ignore_case_punctuation_and_spacing_but_not_fields() {
        let hash = |texts: &[&str]| Words::of(texts.iter().copied()).normalized_hash();
        assert_eq!(
            with_words(["Hello,   World!", "Bye."], Words::normalized_hash),
            hash(&["hello world", "bye"]),
            "reused buffers hash as fresh ones"
        );
        assert_eq!(
            with_words(["hello world"], |words| words.hashes().to_vec()),
            Words::of(["hello world"]).hashes()
        );
        assert_eq!(
            hash(&["Hello,   World!", "Bye."]),
            hash(&["hello world", "bye"])
        );
        assert_ne!(hash(&["hello world", "bye"]), hash(&["hello", "world bye"]));
        assert_ne!(hash(&["hello world", ""]), hash(&["", "hello world"]));
        assert_eq!(hash(&["...", "  "]), None);
    }
}
