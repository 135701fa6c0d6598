//! OpenAI BPE token counts, with the pre-tokenizer regex kept off ASCII text.
//!
//! tiktoken cuts text into pieces with a regular expression, then merges
//! each piece's bytes by rank. The pattern's `\s+(?!\S)` lookahead makes it a
//! backtracking regex, and running it is most of the cost of counting.
//! [`Bpe::count`] finds each piece with a scanner that follows the pattern's
//! alternatives, in their order, while every character it has to look at is
//! ASCII. A piece that touches any other character is found by the
//! pattern's alternatives before the lookahead, as one anchored DFA search
//! (the regex crate's leftmost-first matches are a backtracker's), and when
//! none of them matches, by the whitespace alternatives written out. A piece
//! that is not a single token is merged once per thread and remembered. The
//! counts are tiktoken's: a property test compares the pieces with tiktoken's
//! backtracking pattern and the counts with tiktoken on random text of ASCII,
//! letters and marks of other scripts, Unicode spaces and digits.
//!
//! The vocabularies are OpenAI's `.tiktoken` files (`assets/`, with the
//! SHA-256 tiktoken checks them against), read into two tables when first
//! used: tokens of up to 15 bytes keyed by a 128-bit number, longer ones by
//! their bytes — tens of milliseconds, where building tiktoken-rs's encoder
//! took a third of a second.

use std::cell::RefCell;

use base64::Engine as _;
use rustc_hash::FxHashMap;

/// A token's rank (its id).
type Rank = u32;

/// o200k_base's vocabulary: base64 token bytes and rank per line.
const O200K_VOCABULARY: &str = include_str!("../assets/o200k_base.tiktoken");
/// cl100k_base's vocabulary.
const CL100K_VOCABULARY: &str = include_str!("../assets/cl100k_base.tiktoken");

/// o200k_base's pre-tokenizer up to its lookahead, as tiktoken writes it.
macro_rules! o200k_before_lookahead {
    () => {
        concat!(
            r#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#,
            "|",
            r#"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#,
            "|",
            r#"\p{N}{1,3}"#,
            "|",
            r#" ?[^\s\p{L}\p{N}]+[\r\n/]*"#,
            "|",
            r#"\s*[\r\n]+"#,
        )
    };
}

/// o200k_base's pre-tokenizer, as tiktoken writes it.
#[cfg(test)]
pub(crate) const O200K_PATTERN: &str = concat!(
    o200k_before_lookahead!(),
    "|",
    r#"\s+(?!\S)"#,
    "|",
    r#"\s+"#
);

/// [`O200K_PATTERN`] up to its lookahead: what is left, `\s+(?!\S)|\s+`, is
/// [`unicode_whitespace`].
const O200K_BEFORE_LOOKAHEAD: &str = o200k_before_lookahead!();

/// cl100k_base's pre-tokenizer, as tiktoken writes it.
#[cfg(test)]
pub(crate) const CL100K_PATTERN: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s";

/// [`CL100K_PATTERN`] up to its lookahead, without its possessive
/// quantifiers, which change nothing here: no prefix character is a letter,
/// nothing follows `\p{L}++` or `\p{N}{1,3}+`, the symbols exclude `\r\n`,
/// and `$` is only the end. What is left, `\s+(?!\S)|\s`, is [`unicode_whitespace`].
const CL100K_BEFORE_LOOKAHEAD: &str = r"'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s+$|\s*[\r\n]";

/// Which of OpenAI's encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `o200k_base`.
    O200k,
    /// `cl100k_base`.
    Cl100k,
}

/// Merged pieces remembered per thread and encoding, before the table starts over.
const CACHE_ENTRIES: usize = 1 << 16;
/// Pieces longer than this (long runs of symbols, base64) are rarely seen twice.
const CACHE_PIECE_BYTES: usize = 64;

/// Pieces this short are looked up by a [`short_key`], without comparing bytes.
const SHORT_PIECE_BYTES: usize = 15;

/// Slots of the per-thread table of recent short pieces (64 KiB: it stays in cache).
const RECENT_SLOTS: usize = 1 << 12;

/// Where a [`Merged::recent`] entry keeps its piece's tokens: the top four
/// bits of a [`short_key`], whose length byte never needs them (a short
/// piece has at most 15 bytes, so at most 15 tokens).
const RECENT_TOKENS_SHIFT: u32 = 124;

/// Tokens per piece remembered by one thread, for one encoding.
struct Merged {
    /// The last short piece seen in each slot, its [`short_key`] with its
    /// tokens in the top four bits: frequent words are answered here without
    /// touching the vocabulary's megabytes.
    recent: Vec<u128>,
    short: FxHashMap<u128, u32>,
    long: FxHashMap<Box<[u8]>, u32>,
    /// The pre-tokenizer's search state, made on first use.
    search: Option<regex_automata::meta::Cache>,
}

impl Default for Merged {
    fn default() -> Merged {
        Merged {
            // No entry: no short key of UTF-8 text has its fifteen bytes all
            // 0xff (a byte UTF-8 never holds).
            recent: vec![u128::MAX; RECENT_SLOTS],
            short: FxHashMap::default(),
            long: FxHashMap::default(),
            search: None,
        }
    }
}

thread_local! {
    static MERGED: RefCell<[Merged; 2]> = RefCell::new([Merged::default(), Merged::default()]);
}

/// A piece of up to 15 bytes as a number: its bytes, then its length in the top byte.
#[inline]
fn short_key(piece: &[u8]) -> u128 {
    let mut bytes = [0_u8; 16];
    bytes[..piece.len()].copy_from_slice(piece);
    bytes[15] = piece.len() as u8;
    u128::from_le_bytes(bytes)
}

/// [`short_key`] of `text[start..end]`, reading 16 bytes at once where the text has them.
#[inline]
fn short_key_in(text: &[u8], start: usize, end: usize) -> u128 {
    let length = end - start;
    match text.get(start..start + 16) {
        Some(window) => {
            let mut bytes = [0_u8; 16];
            bytes.copy_from_slice(window);
            let mask = (1_u128 << (8 * length)) - 1;
            (u128::from_le_bytes(bytes) & mask) | (length as u128) << 120
        }
        None => short_key(&text[start..end]),
    }
}

/// Ranks by token bytes.
#[derive(Default)]
struct Ranks {
    /// Tokens of up to [`SHORT_PIECE_BYTES`] bytes, by [`short_key`]: nearly all of them.
    short: FxHashMap<u128, Rank>,
    long: FxHashMap<Box<[u8]>, Rank>,
}

impl Ranks {
    #[inline]
    fn get(&self, token: &[u8]) -> Option<Rank> {
        if token.len() <= SHORT_PIECE_BYTES {
            self.short.get(&short_key(token)).copied()
        } else {
            self.long.get(token).copied()
        }
    }

    /// Reads a `.tiktoken` file: one `BASE64 RANK` per line.
    fn parse(vocabulary: &str) -> Result<Ranks, String> {
        let mut ranks = Ranks::default();
        ranks.short.reserve(vocabulary.len() / 12);
        let mut bytes = [0_u8; 512];
        for (index, line) in vocabulary.lines().enumerate() {
            let bad = |what: &str| format!("line {}: {what}", index + 1);
            let (token, rank) = line.split_once(' ').ok_or_else(|| bad("no rank"))?;
            let rank: Rank = rank.parse().map_err(|_| bad("the rank is not a number"))?;
            let length = base64::engine::general_purpose::STANDARD
                .decode_slice(token, &mut bytes)
                .map_err(|_| bad("the token is not base64 of at most 512 bytes"))?;
            let token = &bytes[..length];
            if token.len() <= SHORT_PIECE_BYTES {
                ranks.short.insert(short_key_in(&bytes, 0, length), rank);
            } else {
                ranks.long.insert(token.into(), rank);
            }
        }
        if ranks.short.len() < 256 {
            return Err(format!(
                "{} tokens, fewer than the 256 single bytes",
                ranks.short.len()
            ));
        }
        Ok(ranks)
    }
}

/// An OpenAI BPE vocabulary and its pre-tokenizer, for counting tokens.
pub struct Bpe {
    encoding: Encoding,
    ranks: Ranks,
    /// The pattern's alternatives before its lookahead, searched anchored.
    before_lookahead: regex_automata::meta::Regex,
}

impl Bpe {
    /// Reads the vocabulary built into gantry and compiles the pattern.
    pub fn load(encoding: Encoding) -> Result<Bpe, String> {
        let (vocabulary, pattern) = match encoding {
            Encoding::O200k => (O200K_VOCABULARY, O200K_BEFORE_LOOKAHEAD),
            Encoding::Cl100k => (CL100K_VOCABULARY, CL100K_BEFORE_LOOKAHEAD),
        };
        // Both take tens of milliseconds, before any record can be counted.
        let (ranks, before_lookahead) = rayon::join(
            || Ranks::parse(vocabulary),
            || regex_automata::meta::Regex::new(pattern).map_err(|error| error.to_string()),
        );
        let (ranks, before_lookahead) = (ranks?, before_lookahead?);
        Ok(Bpe {
            encoding,
            ranks,
            before_lookahead,
        })
    }

    /// The end of the piece that starts at `at` (a character boundary
    /// before the end of `text`).
    #[inline]
    fn piece_end(&self, text: &str, at: usize, cache: &mut Merged) -> usize {
        let bytes = text.as_bytes();
        let ascii = match self.encoding {
            Encoding::O200k => o200k_piece(bytes, at),
            Encoding::Cl100k => cl100k_piece(bytes, at),
        };
        if let Some(end) = ascii {
            return end;
        }
        let search = cache
            .search
            .get_or_insert_with(|| self.before_lookahead.create_cache());
        let input = regex_automata::Input::new(bytes)
            .range(at..)
            .anchored(regex_automata::Anchored::Yes);
        match self.before_lookahead.search_with(search, &input) {
            Some(found) if found.end() > at => found.end(),
            _ => unicode_whitespace(text, at),
        }
    }

    /// The number of tokens tiktoken's `encode_ordinary` gives `text`.
    pub fn count(&self, text: &str) -> u64 {
        MERGED.with_borrow_mut(|caches| {
            let cache = &mut caches[self.encoding as usize];
            let bytes = text.as_bytes();
            let mut tokens = 0;
            let mut at = 0;
            while at < bytes.len() {
                let end = self.piece_end(text, at, cache);
                tokens += self.piece_tokens(bytes, at, end, cache);
                at = end;
            }
            tokens
        })
    }

    /// The tokens of the piece `text[start..end]`.
    fn piece_tokens(&self, text: &[u8], start: usize, end: usize, cache: &mut Merged) -> u64 {
        let piece = &text[start..end];
        if piece.len() <= SHORT_PIECE_BYTES {
            let key = short_key_in(text, start, end);
            let mixed = (key as u64 ^ (key >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let slot = (mixed >> (64 - RECENT_SLOTS.trailing_zeros())) as usize;
            let recent = cache.recent[slot];
            if recent & !(0xf << RECENT_TOKENS_SHIFT) == key {
                return (recent >> RECENT_TOKENS_SHIFT) as u64;
            }
            let tokens = if self.ranks.short.contains_key(&key) {
                1
            } else if let Some(&tokens) = cache.short.get(&key) {
                tokens
            } else {
                let tokens = u32::try_from(merged_parts(piece, &self.ranks)).unwrap_or(u32::MAX);
                if cache.short.len() >= CACHE_ENTRIES {
                    cache.short.clear();
                }
                cache.short.insert(key, tokens);
                tokens
            };
            // Merging never leaves more parts than bytes; a count that would
            // not fit is simply not remembered here.
            if tokens <= 0xf {
                cache.recent[slot] = key | u128::from(tokens) << RECENT_TOKENS_SHIFT;
            }
            return u64::from(tokens);
        }
        if self.ranks.long.contains_key(piece) {
            return 1;
        }
        if let Some(&tokens) = cache.long.get(piece) {
            return u64::from(tokens);
        }
        let tokens = merged_parts(piece, &self.ranks);
        if piece.len() <= CACHE_PIECE_BYTES {
            if cache.long.len() >= CACHE_ENTRIES {
                cache.long.clear();
            }
            cache
                .long
                .insert(piece.into(), u32::try_from(tokens).unwrap_or(u32::MAX));
        }
        tokens as u64
    }
}

/// How many tokens byte-pair merging leaves of `piece`: the adjacent pair of
/// lowest rank (leftmost among equals) is merged until no pair is a token,
/// as tiktoken does. A heap of candidate pairs, checked when popped, keeps
/// long pieces (a run of `=` or base64) from taking quadratic time.
fn merged_parts(piece: &[u8], ranks: &Ranks) -> usize {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    let n = piece.len();
    // Parts are linked by their start offsets; `next[start]` is where the following part starts.
    let mut next: Vec<usize> = (1..=n).collect();
    let mut previous: Vec<usize> = (0..n).map(|start| start.wrapping_sub(1)).collect();
    let mut alive = vec![true; n];
    let pair_rank = |next: &[usize], start: usize| -> Option<Rank> {
        let middle = next[start];
        if middle >= n {
            return None;
        }
        ranks.get(&piece[start..next[middle]])
    };
    let mut heap: BinaryHeap<Reverse<(Rank, usize)>> = (0..n)
        .filter_map(|start| pair_rank(&next, start).map(|rank| Reverse((rank, start))))
        .collect();
    let mut parts = n;
    while let Some(Reverse((rank, start))) = heap.pop() {
        if !alive[start] || pair_rank(&next, start) != Some(rank) {
            continue;
        }
        let middle = next[start];
        alive[middle] = false;
        next[start] = next[middle];
        if next[start] < n {
            previous[next[start]] = start;
        }
        parts -= 1;
        if let Some(rank) = pair_rank(&next, start) {
            heap.push(Reverse((rank, start)));
        }
        let before = previous[start];
        if before < n
            && let Some(rank) = pair_rank(&next, before)
        {
            heap.push(Reverse((rank, before)));
        }
    }
    parts
}

const UPPER: u8 = 1;
const LOWER: u8 = 2;
const DIGIT: u8 = 4;
/// `\s`: tab, line feed, vertical tab, form feed, carriage return, space.
const SPACE: u8 = 8;
/// Neither `\s`, `\p{L}` nor `\p{N}`: punctuation, symbols, control characters.
const OTHER: u8 = 16;
const LETTER: u8 = UPPER | LOWER;

/// The pattern's character classes for each ASCII byte.
const CLASSES: [u8; 128] = {
    let mut classes = [OTHER; 128];
    let mut byte = 0;
    while byte < 128 {
        classes[byte] = match byte as u8 {
            b'A'..=b'Z' => UPPER,
            b'a'..=b'z' => LOWER,
            b'0'..=b'9' => DIGIT,
            b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' => SPACE,
            _ => OTHER,
        };
        byte += 1;
    }
    classes
};

/// What the scanner sees at a position.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// An ASCII byte of these classes.
    Ascii(u8, u8),
    /// A byte of a longer character: the regex must decide.
    Other,
    /// The end of the text.
    End,
}

#[inline]
fn at(bytes: &[u8], position: usize) -> Seen {
    match bytes.get(position) {
        Some(&byte) if byte < 128 => Seen::Ascii(byte, CLASSES[byte as usize]),
        Some(_) => Seen::Other,
        None => Seen::End,
    }
}

/// The end of the run of bytes in `class` from `position`, or `None` when a
/// non-ASCII character ends it (it might belong to the class).
#[inline]
fn run(bytes: &[u8], mut position: usize, class: u8) -> Option<usize> {
    loop {
        match at(bytes, position) {
            Seen::Ascii(_, classes) if classes & class != 0 => position += 1,
            Seen::Ascii(..) | Seen::End => return Some(position),
            Seen::Other => return None,
        }
    }
}

/// [`run`] of [`LOWER`] (`fold` 0) or [`LETTER`] (`fold` 0x20, which
/// makes capitals lowercase and no other byte a letter), eight bytes at a
/// time.
#[inline]
fn letter_run(bytes: &[u8], position: usize, fold: u8) -> Option<usize> {
    use crate::swar::{in_range, splat};
    let end = crate::swar::run_end(bytes, position, |word| {
        // Folding keeps the top bits, so non-ASCII bytes stay out.
        in_range(word | splat(fold), b'a', b'z')
    });
    bytes
        .get(end)
        .is_none_or(|&byte| byte < 0x80)
        .then_some(end)
}

/// `\p{N}{1,3}` from a digit at `position`.
#[inline]
fn digits(bytes: &[u8], position: usize) -> Option<usize> {
    let mut end = position + 1;
    while end < position + 3 {
        match at(bytes, end) {
            Seen::Ascii(_, DIGIT) => end += 1,
            Seen::Ascii(..) | Seen::End => break,
            Seen::Other => return None,
        }
    }
    Some(end)
}

/// A contraction (`(?i:'s|'t|'re|'ve|'m|'ll|'d)`) at `position`: its end, or
/// `position` when there is none. Case-insensitive `s` also matches `ſ`,
/// hence `None` for any non-ASCII character after the apostrophe.
#[inline]
fn contraction(bytes: &[u8], position: usize) -> Option<usize> {
    if bytes.get(position) != Some(&b'\'') {
        return Some(position);
    }
    let second = match at(bytes, position + 1) {
        Seen::Ascii(byte, _) => byte.to_ascii_lowercase(),
        Seen::Other => return None,
        Seen::End => return Some(position),
    };
    let third = match second {
        b's' | b't' | b'm' | b'd' => return Some(position + 2),
        b'r' | b'v' => b'e',
        b'l' => b'l',
        _ => return Some(position),
    };
    match at(bytes, position + 2) {
        Seen::Ascii(byte, _) if byte.to_ascii_lowercase() == third => Some(position + 3),
        Seen::Ascii(..) | Seen::End => Some(position),
        Seen::Other => None,
    }
}

/// o200k_base's first two alternatives from an ASCII letter at `position`
/// (after the optional prefix):
/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+` then
/// `[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*`, each with
/// an optional contraction. In ASCII the two classes are A–Z and a–z.
#[inline]
fn o200k_letters(bytes: &[u8], position: usize) -> Option<usize> {
    let upper_end = run(bytes, position, UPPER)?;
    let end = match at(bytes, upper_end) {
        Seen::Ascii(_, LOWER) => letter_run(bytes, upper_end, 0)?,
        _ => upper_end,
    };
    contraction(bytes, end)
}

/// The end of o200k_base's piece at `position`, or `None` when it depends on
/// a non-ASCII character.
fn o200k_piece(bytes: &[u8], position: usize) -> Option<usize> {
    let Seen::Ascii(first, class) = at(bytes, position) else {
        return None;
    };
    if class & LETTER != 0 {
        return o200k_letters(bytes, position);
    }
    if class == DIGIT {
        return digits(bytes, position);
    }
    // `[^\r\n\p{L}\p{N}]?` takes `first` as the letters' prefix.
    if first != b'\r' && first != b'\n' {
        match at(bytes, position + 1) {
            Seen::Ascii(_, next) if next & LETTER != 0 => {
                return o200k_letters(bytes, position + 1);
            }
            Seen::Other => return None,
            Seen::Ascii(..) | Seen::End => {}
        }
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n/]*`
    if let Some(end) = symbols(bytes, position, b"\r\n/")? {
        return Some(end);
    }
    whitespace(bytes, position, Encoding::O200k)
}

/// ` ?[^\s\p{L}\p{N}]+` from `position`, then any bytes of `tail` (line
/// breaks; o200k_base also takes slashes): `Some(Some(end))`, `Some(None)`
/// when the alternative does not match, `None` to ask the regex.
#[inline]
fn symbols(bytes: &[u8], position: usize, tail: &[u8]) -> Option<Option<usize>> {
    let start = if bytes[position] == b' ' {
        position + 1
    } else {
        position
    };
    let mut end = run(bytes, start, OTHER)?;
    if end == start {
        return Some(None);
    }
    while bytes.get(end).is_some_and(|byte| tail.contains(byte)) {
        end += 1;
    }
    Some(Some(end))
}

/// The whitespace alternatives from `\s` at `position`.
/// o200k_base: `\s*[\r\n]+|\s+(?!\S)|\s+`;
/// cl100k_base: `\s++$|\s*[\r\n]|\s+(?!\S)|\s`.
#[inline]
fn whitespace(bytes: &[u8], position: usize, encoding: Encoding) -> Option<usize> {
    let mut end = position;
    let mut last_newline = None;
    loop {
        match at(bytes, end) {
            Seen::Ascii(byte, SPACE) => {
                if byte == b'\r' || byte == b'\n' {
                    last_newline = Some(end);
                }
                end += 1;
            }
            Seen::Ascii(..) | Seen::End => break,
            // U+00A0, U+2028 and others are `\s` too.
            Seen::Other => return None,
        }
    }
    if encoding == Encoding::Cl100k && end == bytes.len() {
        return Some(end);
    }
    if let Some(newline) = last_newline {
        // Backtracking `\s*` to the last line break; `[\r\n]+` takes it
        // (nothing after it in the run is a line break).
        return Some(newline + 1);
    }
    if end == bytes.len() || end - position == 1 {
        Some(end)
    } else {
        // `(?!\S)`: leave the last space to the next piece.
        Some(end - 1)
    }
}

/// The patterns' last alternatives, from a character none of the earlier
/// ones takes (so whitespace, and not a run that ends the text or holds a
/// line break): o200k_base's `\s+(?!\S)|\s+` and cl100k_base's
/// `\s+(?!\S)|\s`. The run of whitespace but its last character, which
/// is left to the next piece, or the one character when the run has one.
/// `\s` is Unicode's White_Space, as `char::is_whitespace` is.
fn unicode_whitespace(text: &str, at: usize) -> usize {
    let mut characters = text[at..].char_indices();
    let Some((_, first)) = characters.next() else {
        return text.len();
    };
    let mut last_start = at;
    let mut end = at + first.len_utf8();
    for (offset, character) in characters {
        if !character.is_whitespace() {
            break;
        }
        last_start = at + offset;
        end = at + offset + character.len_utf8();
    }
    if end == text.len() || last_start == at {
        end
    } else {
        last_start
    }
}

/// The end of cl100k_base's piece at `position`, or `None` when it depends
/// on a non-ASCII character.
fn cl100k_piece(bytes: &[u8], position: usize) -> Option<usize> {
    let Seen::Ascii(first, class) = at(bytes, position) else {
        return None;
    };
    // `'(?i:[sdmt]|ll|ve|re)`
    if first == b'\'' {
        let end = contraction(bytes, position)?;
        if end > position {
            return Some(end);
        }
    }
    // `[^\r\n\p{L}\p{N}]?+\p{L}++`: the prefix is possessive.
    if class & LETTER != 0 {
        return letter_run(bytes, position, 0x20);
    }
    if class == DIGIT {
        return digits(bytes, position);
    }
    if first != b'\r' && first != b'\n' {
        match at(bytes, position + 1) {
            Seen::Ascii(_, next) if next & LETTER != 0 => {
                return letter_run(bytes, position + 1, 0x20);
            }
            Seen::Other => return None,
            Seen::Ascii(..) | Seen::End => {}
        }
    }
    // ` ?[^\s\p{L}\p{N}]++[\r\n]*+`
    if let Some(end) = symbols(bytes, position, b"\r\n")? {
        return Some(end);
    }
    whitespace(bytes, position, Encoding::Cl100k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::LazyLock;

    use tiktoken_rs::CoreBPE;

    static O200K: LazyLock<(CoreBPE, Bpe)> = LazyLock::new(|| {
        let core = tiktoken_rs::o200k_base().expect("o200k");
        let bpe = Bpe::load(Encoding::O200k).expect("bpe");
        (core, bpe)
    });
    static CL100K: LazyLock<(CoreBPE, Bpe)> = LazyLock::new(|| {
        let core = tiktoken_rs::cl100k_base().expect("cl100k");
        let bpe = Bpe::load(Encoding::Cl100k).expect("bpe");
        (core, bpe)
    });

    #[test]
    fn the_built_in_vocabularies_are_openais() {
        use sha2::Digest as _;
        // The digests tiktoken checks its downloads against.
        for (vocabulary, sha256) in [
            (
                O200K_VOCABULARY,
                "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
            ),
            (
                CL100K_VOCABULARY,
                "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
            ),
        ] {
            let digest = sha2::Sha256::digest(vocabulary.as_bytes());
            let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
            assert_eq!(hex, sha256);
        }
        assert_eq!(O200K_PATTERN, tiktoken_rs::O200K_BASE_PAT_STR);
        // Every ordinary token has the rank tiktoken gives it.
        for (core, bpe) in [&*O200K, &*CL100K] {
            let n_tokens = bpe.ranks.short.len() + bpe.ranks.long.len();
            assert!(n_tokens > 100_000, "{n_tokens}");
            for rank in (0..n_tokens as Rank).step_by(97) {
                let bytes = core.decode_bytes(&[rank]).expect("ordinary rank");
                assert_eq!(bpe.ranks.get(&bytes), Some(rank));
            }
        }
        let error = Ranks::parse("IQ== 0\nnot-base64! 1\n")
            .err()
            .expect("bad line");
        assert_eq!(
            error,
            "line 2: the token is not base64 of at most 512 bytes"
        );
    }

    /// The pieces [`Bpe::count`] finds.
    fn pieces(bpe: &Bpe, text: &str) -> Vec<String> {
        let mut cache = Merged::default();
        let mut pieces = Vec::new();
        let mut at = 0;
        while at < text.len() {
            let end = bpe.piece_end(text, at, &mut cache);
            pieces.push(text[at..end].to_owned());
            at = end;
        }
        pieces
    }

    static PATTERNS: LazyLock<[fancy_regex::Regex; 2]> = LazyLock::new(|| {
        [O200K_PATTERN, CL100K_PATTERN]
            .map(|pattern| fancy_regex::Regex::new(pattern).expect("pattern"))
    });

    /// The pieces of tiktoken's own (backtracking) pattern.
    fn regex_pieces(bpe: &Bpe, text: &str) -> Vec<String> {
        PATTERNS[bpe.encoding as usize]
            .find_iter(text)
            .map(|found| found.expect("regex").as_str().to_owned())
            .collect()
    }

    /// Characters that exercise every class of both patterns.
    fn text() -> impl Strategy<Value = String> {
        let characters = prop_oneof![
            8 => proptest::char::range('a', 'z'),
            4 => proptest::char::range('A', 'Z'),
            3 => proptest::char::range('0', '9'),
            6 => proptest::sample::select(vec![' ', ' ', '\n', '\r', '\t', '\x0b', '\x0c']),
            4 => proptest::sample::select(vec!['\'', 's', 'S', 't', 'r', 'e', 'v', 'l', 'L', 'm', 'd', 'D']),
            4 => proptest::sample::select(vec!['.', ',', '!', '/', '"', '(', ')', '-', '_', '#', '\x00', '\x1f', '\x7f', '\x1c']),
            3 => proptest::sample::select(vec![
                'é', 'É', 'ſ', '\u{301}', '\u{a0}', '\u{85}', '\u{2028}', '\u{3000}', '٣', '²', 'Ⅻ',
                '中', '文', 'ǅ', 'ʰ', 'ª', '😀', '—', '“', 'K', 'ß', 'ﬁ', 'ー', 'み',
            ]),
            1 => any::<char>(),
        ];
        proptest::collection::vec(characters, 0..48)
            .prop_map(|characters| characters.into_iter().collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]
        #[test]
        fn o200k_pieces_and_counts_are_tiktokens(text in text()) {
            let (core, bpe) = &*O200K;
            prop_assert_eq!(pieces(bpe, &text), regex_pieces(bpe, &text));
            prop_assert_eq!(bpe.count(&text), core.encode_ordinary(&text).len() as u64);
        }

        #[test]
        fn cl100k_pieces_and_counts_are_tiktokens(text in text()) {
            let (core, bpe) = &*CL100K;
            prop_assert_eq!(pieces(bpe, &text), regex_pieces(bpe, &text));
            prop_assert_eq!(bpe.count(&text), core.encode_ordinary(&text).len() as u64);
        }
    }

    proptest! {
        #[test]
        fn letter_runs_are_found_eight_bytes_at_a_time(bytes in proptest::collection::vec(prop_oneof![0x40_u8..=0x5b, 0x60_u8..=0x7b, 0x7f_u8..=0x81, any::<u8>()], 1..40), from in 0_usize..40) {
            let from = from.min(bytes.len() - 1);
            prop_assert_eq!(letter_run(&bytes, from, 0), run(&bytes, from, LOWER));
            prop_assert_eq!(letter_run(&bytes, from, 0x20), run(&bytes, from, LETTER));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        #[test]
        fn long_pieces_merge_as_tiktoken_merges_them(text in "([a-z]{1,3}|[A-Za-z0-9+/=]{1,4}|={1,8}|[\\-_*~.]{1,4}){20,120}") {
            let text = text.replace(['a', 'e'], "ae");
            for (core, bpe) in [&*O200K, &*CL100K] {
                prop_assert_eq!(bpe.count(&text), core.encode_ordinary(&text).len() as u64);
            }
        }
    }

    #[test]
    fn known_texts_count_as_tiktoken_counts_them() {
        let texts = [
            "",
            "hello world",
            "Hello, WORLD! I'm here; they'RE there, it's 12345 o'clock.\n\n  \tIndented\r\n",
            "  leading and trailing  ",
            "CamelCaseWords and HTTPServer2Go/path//to\n/x",
            "naïve café — “quoted” ſt 東京 😀 ٣٤٥ x²",
            "a\u{a0}b \u{2028} c\u{301}d",
            "'s 'S 'll 'LL 're 've 'd 'm 't 'x",
            "def f(x):\n    return x ** 2  # square\n\n\n",
        ];
        for (core, bpe) in [&*O200K, &*CL100K] {
            for text in texts {
                assert_eq!(
                    bpe.count(text),
                    core.encode_ordinary(text).len() as u64,
                    "{:?} {text:?}",
                    bpe.encoding
                );
            }
            // The cache answers the second time the same way.
            let long = "Supercalifragilisticexpialidocious antidisestablishmentarianism ".repeat(3);
            assert_eq!(bpe.count(&long), bpe.count(&long));
            assert_eq!(bpe.count(&long), core.encode_ordinary(&long).len() as u64);
        }
    }
}
