//! Redaction: the one layer every byte gantry writes passes through.
//!
//! A [`Redactor`] holds every secret gantry knows — the credentials it was
//! given and the secrets it found in data — in each form the secret can take
//! on its way out: raw, JSON-escaped, URL-encoded and base64 (at all three
//! alignments, so a secret inside a longer base64 text, such as an HTTP Basic
//! credential, is found too). Text is redacted by replacing every form with
//! `***`; JSON is redacted value by value, so the result stays valid JSON.
//! Independently of what is registered, passwords in URLs
//! (`scheme://user:password@host`) and tokens after `Bearer` or `Basic` are
//! always replaced, so a credential that a server echoes back never prints.
//!
//! Only values long and random enough to be secrets are registered: at least
//! [`MIN_SECRET_CHARS`] characters and [`MIN_SECRET_ENTROPY`] bits of Shannon
//! entropy per character. Masking `1` or `true` would corrupt every output
//! (GitHub's runner famously does), and a value that plain protects nothing.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use base64::Engine as _;

use crate::Secret;

/// The shortest value registered as a secret, in characters.
pub const MIN_SECRET_CHARS: usize = 8;

/// The least Shannon entropy, in bits per character, of a value registered
/// as a secret: `aaaaaaaa` (0 bits) and `abababab` (1 bit) are refused,
/// `changeme` (2.75 bits) and any generated token are registered.
pub const MIN_SECRET_ENTROPY: f64 = 2.5;

/// How many distinct secrets a redactor holds. Data can hold millions of
/// found secrets; gantry quotes at most a few of them, each through the
/// detector's own redaction, so the first ones registered are the ones that
/// could reach an output.
pub const MAX_SECRETS: usize = 100_000;

/// What the redactor did with a value handed to [`Redactor::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Registered: every form of it is redacted from now on.
    Added,
    /// Already registered.
    Known,
    /// Empty: nothing to redact.
    Empty,
    /// Shorter than [`MIN_SECRET_CHARS`] characters.
    TooShort,
    /// Fewer than [`MIN_SECRET_ENTROPY`] bits per character.
    TooPlain,
    /// The redactor already holds [`MAX_SECRETS`] secrets.
    Full,
}

impl Admission {
    /// Why a credential was not registered, for a warning; `None` when it was.
    pub fn refusal(self) -> Option<String> {
        match self {
            Admission::Added | Admission::Known | Admission::Empty => None,
            Admission::TooShort => Some(format!(
                "it is shorter than {MIN_SECRET_CHARS} characters, too short to mask without corrupting other output"
            )),
            Admission::TooPlain => Some(format!(
                "it has less than {MIN_SECRET_ENTROPY} bits of entropy per character, too plain to mask without corrupting other output"
            )),
            Admission::Full => Some(format!("gantry already masks {MAX_SECRETS} values")),
        }
    }
}

/// The secrets gantry knows, shared by everything that writes. Cloning is
/// cheap and every clone sees the same secrets, so a value found late (a
/// secret in the data, a token from a login) is redacted from every writer
/// at once.
#[derive(Clone, Default)]
pub struct Redactor {
    state: Arc<RwLock<State>>,
}

#[derive(Default)]
struct State {
    /// The registered values themselves.
    secrets: std::collections::HashSet<String>,
    /// Every form of every secret, and the automaton that finds them.
    forms: Vec<String>,
    automaton: Option<aho_corasick::AhoCorasick>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("Redactor")
            .field("secrets", &state.secrets.len())
            .field("forms", &state.forms.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor that knows no secret yet (it still removes URL passwords
    /// and authorization tokens).
    pub fn new() -> Redactor {
        Redactor::default()
    }

    /// Registers a credential; see [`Admission`] for what can refuse it.
    pub fn add(&self, secret: &Secret) -> Admission {
        self.add_all([secret.expose()])[0]
    }

    /// Registers many values at once (the automaton is rebuilt once).
    pub fn add_all<'a>(&self, values: impl IntoIterator<Item = &'a str>) -> Vec<Admission> {
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        let mut admissions = Vec::new();
        let mut changed = false;
        for value in values {
            let admission = admit(value, &state.secrets);
            if admission == Admission::Added {
                changed = true;
                state.secrets.insert(value.to_owned());
                let forms = forms_of(value);
                state.forms.extend(forms);
            }
            admissions.push(admission);
        }
        if changed {
            state.forms.sort_unstable();
            state.forms.dedup();
            state.automaton = aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .build(&state.forms)
                .ok();
        }
        admissions
    }

    /// How many secrets are registered.
    pub fn len(&self) -> usize {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state.secrets.len()
    }

    /// Whether no secret is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `text` with every form of every secret replaced by `***`, URL
    /// passwords and authorization tokens too.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let known = {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            match &state.automaton {
                Some(automaton) if automaton.is_match(text) => {
                    Cow::Owned(automaton.replace_all(text, &vec!["***"; state.forms.len()]))
                }
                _ => Cow::Borrowed(text),
            }
        };
        match redact_patterns(&known) {
            Cow::Borrowed(_) => known,
            Cow::Owned(text) => Cow::Owned(text),
        }
    }

    /// Bytes that may not be UTF-8 (a process's output): redacted as text
    /// where they are text, kept as they are otherwise.
    pub fn redact_bytes<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        match String::from_utf8_lossy(bytes) {
            Cow::Borrowed(text) => match self.redact(text) {
                Cow::Borrowed(_) => Cow::Borrowed(bytes),
                Cow::Owned(text) => Cow::Owned(text.into_bytes()),
            },
            Cow::Owned(text) => Cow::Owned(self.redact(&text).into_owned().into_bytes()),
        }
    }

    /// Redacts every string and object key of `value` in place. A number
    /// whose digits hold a secret becomes the string `***`; the value stays
    /// valid JSON whatever was registered.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        // An explicit stack: values can come from user files and be deep.
        let mut stack: Vec<&mut Value> = vec![value];
        while let Some(value) = stack.pop() {
            match value {
                Value::String(text) => {
                    if let Cow::Owned(redacted) = self.redact(text) {
                        *text = redacted;
                    }
                }
                Value::Number(number) => {
                    let text = number.to_string();
                    if self.redact(&text) != text {
                        *value = Value::String("***".to_owned());
                    }
                }
                Value::Array(items) => stack.extend(items.iter_mut()),
                Value::Object(map) => {
                    let keys: Vec<String> = map.keys().cloned().collect();
                    for key in keys {
                        if let Cow::Owned(redacted) = self.redact(&key)
                            && let Some(item) = map.remove(&key)
                        {
                            map.insert(redacted, item);
                        }
                    }
                    stack.extend(map.values_mut());
                }
                Value::Null | Value::Bool(_) => {}
            }
        }
    }

    /// `value` as pretty JSON, redacted value by value.
    pub fn to_json_pretty<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> serde_json::Result<String> {
        let mut value = serde_json::to_value(value)?;
        self.redact_json(&mut value);
        serde_json::to_string_pretty(&value)
    }

    /// `value` as one line of JSON, redacted value by value.
    pub fn to_json_line<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
    ) -> serde_json::Result<String> {
        let mut value = serde_json::to_value(value)?;
        self.redact_json(&mut value);
        serde_json::to_string(&value)
    }

    /// A writer that redacts what passes through it, a line at a time.
    pub fn writer<W: std::io::Write>(&self, inner: W) -> RedactingWriter<W> {
        RedactingWriter {
            redactor: self.clone(),
            inner,
            pending: Vec::new(),
        }
    }
}

/// The credentials in the URLs in `text` (`scheme://user:password@host`, or
/// a token alone as `scheme://token@host`), percent-decoded, with the
/// `user:password` pair that HTTP Basic would send: what a command line
/// hands gantry in its URLs, for the redactor.
pub fn credentials_in_urls(text: &str) -> Vec<Secret> {
    let mut found = Vec::new();
    if !text.contains("://") || !text.contains('@') {
        return found;
    }
    for captures in USERINFO.captures_iter(text) {
        let userinfo = &captures[1];
        match userinfo.split_once(':') {
            Some((user, password)) if !password.is_empty() => {
                let (user, password) = (percent_decode(user), percent_decode(password));
                found.push(Secret::new(format!("{user}:{password}")));
                found.push(Secret::new(password));
            }
            Some(_) => {}
            None => found.push(Secret::new(percent_decode(userinfo))),
        }
    }
    found
}

#[expect(
    clippy::expect_used,
    reason = "a constant pattern checked by the tests"
)]
static USERINFO: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r"(?i)\b[a-z][a-z0-9+.\-]*://([^/\s@?#]+)@").expect("userinfo pattern")
});

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && let Some(hex) = text.get(index + 1..index + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            decoded.push(byte);
            index += 3;
            continue;
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Whether a value from someone's files (a role, a key, an item id) looks
/// like a name, and so may be quoted in a message: at most 24 characters of
/// ASCII letters, digits, `_`, `-`, `.` and spaces, at most four digits, at
/// most three changes between lower case, upper case and digits (a capital
/// starting a word does not count), and no five consonants in a row.
/// Generated credentials fail one of these; words and identifiers pass.
pub fn looks_like_a_name(text: &str) -> bool {
    #[derive(PartialEq, Clone, Copy)]
    enum Class {
        Lower,
        Upper,
        Digit,
        Other,
    }
    let class = |byte: u8| match byte {
        b'a'..=b'z' => Class::Lower,
        b'A'..=b'Z' => Class::Upper,
        b'0'..=b'9' => Class::Digit,
        _ => Class::Other,
    };
    if text.is_empty()
        || text.len() > 24
        || !text
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"_-. ".contains(&byte))
        || text.bytes().filter(u8::is_ascii_digit).count() > 4
    {
        return false;
    }
    let classes: Vec<Class> = text.bytes().map(class).collect();
    let changes = classes
        .windows(2)
        .filter(|pair| pair[0] != pair[1] && pair[0] != Class::Other && pair[1] != Class::Other)
        .filter(|pair| !(pair[0] == Class::Upper && pair[1] == Class::Lower))
        .count();
    let mut consonants = 0;
    for byte in text.bytes().map(|byte| byte.to_ascii_lowercase()) {
        if byte.is_ascii_alphabetic() && !b"aeiouy".contains(&byte) {
            consonants += 1;
            if consonants >= 5 {
                return false;
            }
        } else {
            consonants = 0;
        }
    }
    changes <= 3
}

/// `message` (from another library: a JSON or schema error) with every
/// quoted part (`"…"`, `'…'`, `` `…` ``) that `safe` refuses replaced by its
/// length: such messages quote the data they complain about.
pub fn sanitize_quoted(message: &str, safe: impl Fn(&str) -> bool) -> String {
    let hidden = |text: &str| format!("… ({} characters not shown)", text.chars().count());
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['"', '\'', '`']) {
        let quote = rest[open..].chars().next().unwrap_or('"');
        out.push_str(&rest[..=open]);
        let after = &rest[open + 1..];
        // A quoted part ends at the same quote, unescaped.
        let mut end = None;
        let mut escaped = false;
        for (index, c) in after.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == quote {
                end = Some(index);
                break;
            }
        }
        let Some(end) = end else {
            // An apostrophe in prose, or a quote that never closes: what
            // follows may be data, so it is kept only when it is safe.
            if after.is_empty() || safe(after) {
                out.push_str(after);
            } else {
                out.push_str(&hidden(after));
            }
            return out;
        };
        let inner = &after[..end];
        if inner.is_empty() || safe(inner) {
            out.push_str(inner);
        } else {
            out.push_str(&hidden(inner));
        }
        out.push(quote);
        rest = &after[end + quote.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// Whether `value` is long and random enough to be registered.
fn admit(value: &str, known: &std::collections::HashSet<String>) -> Admission {
    if value.trim().is_empty() {
        Admission::Empty
    } else if known.contains(value) {
        Admission::Known
    } else if value.chars().count() < MIN_SECRET_CHARS {
        Admission::TooShort
    } else if shannon_entropy(value) < MIN_SECRET_ENTROPY {
        Admission::TooPlain
    } else if known.len() >= MAX_SECRETS {
        Admission::Full
    } else {
        Admission::Added
    }
}

/// Bits per character of `text`.
pub fn shannon_entropy(text: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for c in text.chars() {
        *counts.entry(c).or_insert(0_u32) += 1;
    }
    let total = text.chars().count() as f64;
    counts
        .values()
        .map(|&count| f64::from(count) / total)
        .map(|p| -p * p.log2())
        .sum()
}

/// Every form of `secret` worth searching for: raw, each line of a
/// multi-line secret, JSON-escaped, URL-encoded, and base64 (standard and
/// URL-safe) at the three alignments it can have inside a longer encoding.
fn forms_of(secret: &str) -> Vec<String> {
    let mut forms = vec![secret.to_owned()];
    if secret.contains('\n') {
        forms.extend(
            secret
                .lines()
                .map(str::trim)
                .filter(|line| line.chars().count() >= MIN_SECRET_CHARS)
                .map(str::to_owned),
        );
    }
    if let Ok(quoted) = serde_json::to_string(secret) {
        forms.push(quoted[1..quoted.len() - 1].to_owned());
    }
    forms.push(percent_encode(secret, false));
    forms.push(percent_encode(secret, true));
    let bytes = secret.as_bytes();
    for engine in [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for shift in 0..3_usize {
            let mut shifted = vec![0_u8; shift];
            shifted.extend_from_slice(bytes);
            let encoded = engine.encode(&shifted);
            // Characters that depend only on the secret's bits: from the
            // first whole sextet after the filler to the last whole one.
            let start = (8 * shift).div_ceil(6);
            let end = (8 * (shift + bytes.len())) / 6;
            if let Some(part) = encoded.get(start..end)
                && part.len() >= MIN_SECRET_CHARS
            {
                forms.push(part.to_owned());
            }
        }
    }
    forms.sort_unstable();
    forms.dedup();
    forms
}

/// Percent-encoding of everything but RFC 3986's unreserved characters;
/// `form` encodes spaces as `+` (HTML forms, query strings).
fn percent_encode(text: &str, form: bool) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                encoded.push(char::from(byte));
            }
            b' ' if form => encoded.push('+'),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// Credentials recognised by their place rather than their value: the
/// password in a URL's user information, a user-information token, and the
/// token after `Bearer`, `Basic` or `token` in an authorization header that
/// a server echoed.
#[expect(clippy::expect_used, reason = "constant patterns checked by the tests")]
static PATTERNS: LazyLock<[(regex::Regex, &'static str); 3]> = LazyLock::new(|| {
    [
        (
            regex::Regex::new(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/\s:@?#]*):[^/\s@?#]+@")
                .expect("url password pattern"),
            "${1}${2}:***@",
        ),
        (
            regex::Regex::new(r"(?i)\b([a-z][a-z0-9+.\-]*://)[A-Za-z0-9_\-.~%]{16,}@")
                .expect("url token pattern"),
            "${1}***@",
        ),
        (
            regex::Regex::new(
                r"(?i)\b(bearer|basic|token)(\s+|%20|\\u0020)([A-Za-z0-9._~+/\-]{8,}=*)",
            )
            .expect("authorization pattern"),
            "${1}${2}***",
        ),
    ]
});

fn redact_patterns(text: &str) -> Cow<'_, str> {
    // Cheap gates: a URL's `://` followed somewhere by `@`, or one of the words.
    let has_userinfo = text.contains("://") && text.contains('@');
    let lower_has_word = |word: &str| {
        text.as_bytes()
            .windows(word.len())
            .any(|window| window.eq_ignore_ascii_case(word.as_bytes()))
    };
    let has_authorization =
        lower_has_word("bearer") || lower_has_word("basic") || lower_has_word("token");
    if !has_userinfo && !has_authorization {
        return Cow::Borrowed(text);
    }
    let mut text = Cow::Borrowed(text);
    for (index, (pattern, replacement)) in PATTERNS.iter().enumerate() {
        if index < 2 && !has_userinfo || index == 2 && !has_authorization {
            continue;
        }
        if index == 2 {
            // Only tokens that look generated: a digit, or a capital after
            // the first character, or base64 padding. "Bearer authentication"
            // and "token expired" stay readable.
            let replaced = pattern.replace_all(&text, |captures: &regex::Captures<'_>| {
                let token = &captures[3];
                let generated = token.bytes().any(|byte| byte.is_ascii_digit())
                    || token.bytes().skip(1).any(|byte| byte.is_ascii_uppercase())
                    || token.ends_with('=')
                    || token.contains(['.', '/', '+', '_']);
                if generated && token.len() >= 12 {
                    format!("{}{}***", &captures[1], &captures[2])
                } else {
                    captures[0].to_owned()
                }
            });
            if let Cow::Owned(replaced) = replaced {
                text = Cow::Owned(replaced);
            }
            continue;
        }
        if let Cow::Owned(replaced) = pattern.replace_all(&text, *replacement) {
            text = Cow::Owned(replaced);
        }
    }
    text
}

/// A writer that redacts complete lines as they pass; [`flush`] (and drop)
/// write a partial last line redacted too.
///
/// [`flush`]: std::io::Write::flush
pub struct RedactingWriter<W: std::io::Write> {
    redactor: Redactor,
    inner: W,
    pending: Vec<u8>,
}

impl<W: std::io::Write> RedactingWriter<W> {
    fn write_pending(&mut self, through: usize) -> std::io::Result<()> {
        let line: Vec<u8> = self.pending.drain(..through).collect();
        let redacted = self.redactor.redact_bytes(&line);
        self.inner.write_all(&redacted)
    }
}

impl<W: std::io::Write> std::io::Write for RedactingWriter<W> {
    fn write(&mut self, buffer: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buffer);
        if let Some(last_newline) = memrchr_newline(&self.pending) {
            self.write_pending(last_newline + 1)?;
        }
        Ok(buffer.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let all = self.pending.len();
        self.write_pending(all)?;
        self.inner.flush()
    }
}

impl<W: std::io::Write> Drop for RedactingWriter<W> {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

fn memrchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().rposition(|&byte| byte == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ghp_Zq8vN3xR7tL2mK9pW4sY6bH1cJ5dF0gE7a2b";

    fn redactor(values: &[&str]) -> Redactor {
        let redactor = Redactor::new();
        for value in values {
            redactor.add(&Secret::new(*value));
        }
        redactor
    }

    #[test]
    fn only_long_random_values_are_registered() {
        let redactor = Redactor::new();
        let table = [
            ("", Admission::Empty),
            ("1", Admission::TooShort),
            ("1.0", Admission::TooShort),
            ("aaaaaaaaaaaa", Admission::TooPlain),
            ("abababababab", Admission::TooPlain),
            ("changeme", Admission::Added),
            (TOKEN, Admission::Added),
            (TOKEN, Admission::Known),
        ];
        for (value, expected) in table {
            assert_eq!(redactor.add(&Secret::new(value)), expected, "{value:?}");
        }
        assert_eq!(redactor.len(), 2);
        assert!(Admission::TooShort.refusal().is_some());
        assert!(Admission::Added.refusal().is_none());
    }

    #[test]
    fn every_encoded_form_is_redacted() {
        let secret = "p@ss w/rd\"Zq8v+N3x";
        let redactor = redactor(&[secret]);
        let base64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let forms = [
            secret.to_owned(),
            serde_json::to_string(secret).expect("json"),
            percent_encode(secret, false),
            percent_encode(secret, true),
            base64(secret),
            base64(&format!("user:{secret}")),
            base64(&format!("us:{secret}")),
            base64(&format!("u:{secret}")),
            base64::engine::general_purpose::URL_SAFE.encode(format!("x{secret}")),
        ];
        for form in forms {
            let text = format!("before {form} after");
            let redacted = redactor.redact(&text);
            assert!(redacted.contains("***"), "{form} -> {redacted}");
            // All of the secret's encoding went but for the two edge
            // characters that also depend on the neighbours.
            let removed = text.len() - redacted.len() + "***".len();
            assert!(removed + 2 >= secret.len(), "{form} -> {redacted}");
        }
    }

    #[test]
    fn multi_line_secrets_are_redacted_line_by_line() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n";
        let redactor = redactor(&[key]);
        let reflowed = "key body: MIIEvQIBADANBgkqhkiG9w0BAQEFAASC and more";
        assert_eq!(redactor.redact(reflowed), "key body: *** and more");
    }

    #[test]
    fn json_stays_valid_whatever_is_registered() {
        let redactor = redactor(&["12345678", TOKEN]);
        let mut value = serde_json::json!({
            "score": 1.0,
            "count": 12345678,
            TOKEN: [format!("Bearer {TOKEN}"), "fine"],
            "nested": {"deep": [[[TOKEN]]]},
        });
        redactor.redact_json(&mut value);
        let text = serde_json::to_string(&value).expect("json");
        assert!(!text.contains(TOKEN), "{text}");
        assert!(!text.contains("12345678"), "{text}");
        let parsed: serde_json::Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(parsed["score"], 1.0);
        assert_eq!(parsed["count"], "***");
        assert_eq!(parsed["***"][1], "fine");
    }

    #[test]
    fn credentials_are_found_by_their_place() {
        let redactor = Redactor::new();
        let table = [
            (
                "GET http://alice:hunter2@mlflow:5000/api failed",
                "GET http://alice:***@mlflow:5000/api failed",
            ),
            (
                "oci://bot:Zq8vN3x@registry.test/models",
                "oci://bot:***@registry.test/models",
            ),
            (
                "https://x-access-token:ghs_abc@github.com/o/r.git",
                "https://x-access-token:***@github.com/o/r.git",
            ),
            (
                "https://ghs_Zq8vN3xR7tL2mK9p@github.com/o/r",
                "https://***@github.com/o/r",
            ),
            (
                r#"{"error": "invalid key: Bearer sk-Zq8vN3xR7tL2mK9pW4sY"}"#,
                r#"{"error": "invalid key: Bearer ***"}"#,
            ),
            (
                "Authorization: Basic dXNlcjpwYXNzd29yZA==",
                "Authorization: Basic ***",
            ),
            ("mail alice@example.org", "mail alice@example.org"),
            (
                "Bearer authentication failed",
                "Bearer authentication failed",
            ),
            ("the token expired yesterday", "the token expired yesterday"),
            ("see https://example.org/a@b", "see https://example.org/a@b"),
        ];
        for (text, expected) in table {
            assert_eq!(redactor.redact(text), expected, "{text}");
        }
    }

    #[test]
    fn credentials_in_urls_are_found_decoded() {
        let found: Vec<String> = credentials_in_urls(
            "--tracking-uri http://alice:p%40ss%2Fw0rd-Zq8v@mlflow:5000 --registry oci://ghs_Zq8vN3xR7tL2mK9p@registry.test/m http://plain.test/@x",
        )
        .iter()
        .map(|secret| secret.expose().to_owned())
        .collect();
        assert_eq!(
            found,
            [
                "alice:p@ss/w0rd-Zq8v",
                "p@ss/w0rd-Zq8v",
                "ghs_Zq8vN3xR7tL2mK9p"
            ]
        );
    }

    #[test]
    fn a_secret_inside_another_is_redacted_whole() {
        let redactor = redactor(&["Zq8vN3xR", "Zq8vN3xR7tL2mK9p"]);
        assert_eq!(
            redactor.redact("a Zq8vN3xR7tL2mK9p b Zq8vN3xR c"),
            "a *** b *** c"
        );
    }

    #[test]
    fn the_writer_redacts_lines_split_across_writes() {
        let redactor = redactor(&[TOKEN]);
        let mut out = Vec::new();
        {
            let mut writer = redactor.writer(&mut out);
            std::io::Write::write_all(&mut writer, &TOKEN.as_bytes()[..10]).expect("write");
            std::io::Write::write_all(&mut writer, &TOKEN.as_bytes()[10..]).expect("write");
            std::io::Write::write_all(&mut writer, b" end\nlast ").expect("write");
            std::io::Write::write_all(&mut writer, TOKEN.as_bytes()).expect("write");
        }
        assert_eq!(String::from_utf8(out).expect("utf8"), "*** end\nlast ***");
    }

    #[test]
    fn clones_share_what_they_know() {
        let first = Redactor::new();
        let second = first.clone();
        second.add(&Secret::new(TOKEN));
        assert_eq!(first.redact(TOKEN), "***");
    }
}
