//! Secrets and personal data in text: detection rules, checksums, redaction.
//!
//! Secrets (provider API keys, cloud keys, private keys, JWTs, high-entropy
//! values assigned to key-like names) are errors: training on them leaks
//! them. Personal data (emails, phone numbers, public IPs, Luhn-valid card
//! numbers, IBANs with a valid checksum) is a warning reported as rates.
//! Matched text never leaves this module unredacted.

use std::sync::LazyLock;

use regex::Regex;

/// What kind of sensitive text a match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SensitiveKind {
    /// An OpenAI API key.
    OpenaiKey,
    /// An Anthropic API key.
    AnthropicKey,
    /// A Hugging Face token.
    HuggingfaceToken,
    /// A GitHub token.
    GithubToken,
    /// A GitLab personal access token.
    GitlabToken,
    /// An AWS access key id.
    AwsAccessKey,
    /// An AWS secret access key (40 characters near its key id).
    AwsSecretKey,
    /// A Stripe secret or restricted key.
    StripeKey,
    /// A Google API key.
    GoogleApiKey,
    /// A Slack token.
    SlackToken,
    /// A PEM private key.
    PrivateKey,
    /// A JSON Web Token.
    Jwt,
    /// A high-entropy value assigned to a key-like name.
    GenericSecret,
    /// An email address.
    Email,
    /// A phone number.
    Phone,
    /// A public IPv4 address.
    IpAddress,
    /// A Luhn-valid payment card number.
    CardNumber,
    /// An IBAN with a valid checksum.
    Iban,
}

impl SensitiveKind {
    /// Whether this kind is a secret (error) rather than personal data (warning).
    pub fn is_secret(self) -> bool {
        !matches!(
            self,
            SensitiveKind::Email
                | SensitiveKind::Phone
                | SensitiveKind::IpAddress
                | SensitiveKind::CardNumber
                | SensitiveKind::Iban
        )
    }

    /// The kebab-case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SensitiveKind::OpenaiKey => "openai-key",
            SensitiveKind::AnthropicKey => "anthropic-key",
            SensitiveKind::HuggingfaceToken => "huggingface-token",
            SensitiveKind::GithubToken => "github-token",
            SensitiveKind::GitlabToken => "gitlab-token",
            SensitiveKind::AwsAccessKey => "aws-access-key",
            SensitiveKind::AwsSecretKey => "aws-secret-key",
            SensitiveKind::StripeKey => "stripe-key",
            SensitiveKind::GoogleApiKey => "google-api-key",
            SensitiveKind::SlackToken => "slack-token",
            SensitiveKind::PrivateKey => "private-key",
            SensitiveKind::Jwt => "jwt",
            SensitiveKind::GenericSecret => "generic-secret",
            SensitiveKind::Email => "email",
            SensitiveKind::Phone => "phone",
            SensitiveKind::IpAddress => "ip-address",
            SensitiveKind::CardNumber => "card-number",
            SensitiveKind::Iban => "iban",
        }
    }
}

/// One match: its kind and byte range in the scanned text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SensitiveMatch {
    /// What it is.
    pub kind: SensitiveKind,
    /// Byte range in the text: what is redacted.
    pub range: std::ops::Range<usize>,
    /// The secret itself within it (an assignment's value, not its name).
    pub value: std::ops::Range<usize>,
}

/// What a text must contain for a rule to possibly match: checked before the
/// regex, which is the expensive part.
#[derive(Clone, Copy)]
enum Needs {
    /// One of these substrings (two bytes or more).
    Literal(&'static [&'static str]),
    /// This byte.
    Byte(u8),
    /// A shape of ASCII digit runs (see [`DigitShapes`]).
    Digits(fn(&DigitShapes) -> bool),
    /// `=` or `:` after a name holding one of these words in any ASCII case.
    Assignment(&'static [&'static str]),
}

struct Rule {
    kind: SensitiveKind,
    regex: Regex,
    needs: Needs,
    /// Checks a match: the whole match, and its `value` group (the whole
    /// match when the pattern has none).
    validate: fn(&str, &str) -> bool,
}

/// The rules' literals in one automaton (searched leftmost-first, so with
/// SIMD), and for each literal the rules to try when it is found: its own,
/// and those of every literal that could begin inside it, which a
/// non-overlapping search does not report.
#[expect(
    clippy::expect_used,
    reason = "the literals are constants checked by the tests"
)]
static LITERALS: LazyLock<(aho_corasick::AhoCorasick, Vec<u32>)> = LazyLock::new(|| {
    let mut literals: Vec<(&str, usize)> = Vec::new();
    for (index, rule) in RULES.iter().enumerate() {
        if let Needs::Literal(words) = rule.needs {
            literals.extend(words.iter().map(|word| (*word, index)));
        }
    }
    let overlaps = |first: &[u8], second: &[u8], offset: usize| {
        let shared = (first.len() - offset).min(second.len());
        first[offset..offset + shared] == second[..shared]
    };
    let rules = literals
        .iter()
        .map(|(first, _)| {
            literals
                .iter()
                .filter(|(second, _)| {
                    (0..first.len())
                        .any(|offset| overlaps(first.as_bytes(), second.as_bytes(), offset))
                })
                .fold(0_u32, |rules, (_, rule)| rules | 1 << rule)
        })
        .collect();
    let automaton = aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostFirst)
        .build(literals.iter().map(|(literal, _)| literal))
        .expect("valid literals");
    (automaton, rules)
});

/// Whether a name holding one of `words` (any ASCII case) may come just
/// before an optional quote, optional whitespace and a `:` or `=`, as the
/// generic-secret pattern requires; the `:` and `=` are few, the words are
/// common. The name is the run of letters, digits, `_`, `-` and `.` before
/// the quote, as the pattern's `(?i)[A-Za-z0-9_.\-]` reads it: Unicode case
/// folding lets `K` (Kelvin) and `ſ` (long s) stand for `k` and `s`, and no
/// other character (a test holds the regex crate to that), so the name is
/// folded the same way before the words are looked for.
fn has_assignment(text: &str, words: &[&str]) -> bool {
    /// The longest name looked at; a longer one is taken as possible.
    const NAME_BYTES: usize = 64;
    memchr::memchr2_iter(b'=', b':', text.as_bytes()).any(|at| {
        let before = text[..at].trim_end_matches(char::is_whitespace);
        let before = before.strip_suffix(['"', '\'']).unwrap_or(before);
        // The name, folded, written from its end backwards.
        let mut folded = [0_u8; NAME_BYTES];
        let mut length = 0;
        for character in before.chars().rev() {
            let byte = match character {
                'a'..='z' | '0'..='9' | '_' | '-' | '.' => character as u8,
                'A'..='Z' => character.to_ascii_lowercase() as u8,
                '\u{212a}' => b'k',
                '\u{17f}' => b's',
                _ => break,
            };
            if length == NAME_BYTES {
                return true;
            }
            folded[NAME_BYTES - 1 - length] = byte;
            length += 1;
        }
        let name = &folded[NAME_BYTES - length..];
        words.iter().any(|word| {
            name.windows(word.len())
                .any(|window| window == word.as_bytes())
        })
    })
}

fn always(_: &str, _: &str) -> bool {
    true
}

#[expect(
    clippy::expect_used,
    reason = "the patterns are constants checked by the tests"
)]
/// Word boundaries and digits are ASCII (`(?-u:\b)`, `[0-9]`), as in RE2,
/// the engine gitleaks' rules are written for: a Unicode `\b` makes the regex
/// crate leave its DFA for a backtracker on any text with a non-ASCII
/// character (a tenth of the speed), and a Unicode `\d` would let digits
/// the prefilter does not count (`٣`) into card and phone numbers.
static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |kind, pattern: &str, needs, validate| Rule {
        kind,
        regex: Regex::new(pattern).expect("valid rule pattern"),
        needs,
        validate,
    };
    vec![
        rule(
            SensitiveKind::AnthropicKey,
            r"(?-u:\b)sk-ant-(?:api|admin)[0-9]{2}-[A-Za-z0-9_\-]{80,}",
            Needs::Literal(&["sk-ant-"]),
            always,
        ),
        rule(
            SensitiveKind::OpenaiKey,
            r"(?-u:\b)sk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,}|(?-u:\b)sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}(?-u:\b)",
            Needs::Literal(&["sk-"]),
            always,
        ),
        rule(
            SensitiveKind::HuggingfaceToken,
            r"(?-u:\b)hf_[A-Za-z0-9]{34}(?-u:\b)",
            Needs::Literal(&["hf_"]),
            always,
        ),
        rule(
            SensitiveKind::GithubToken,
            r"(?-u:\b)gh[pousr]_[A-Za-z0-9]{36}(?-u:\b)|(?-u:\b)github_pat_[A-Za-z0-9_]{82}(?-u:\b)",
            Needs::Literal(&["ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"]),
            always,
        ),
        rule(
            SensitiveKind::GitlabToken,
            r"(?-u:\b)glpat-[A-Za-z0-9_\-]{20,}",
            Needs::Literal(&["glpat-"]),
            always,
        ),
        rule(
            SensitiveKind::AwsAccessKey,
            r"(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)",
            Needs::Literal(&["AKIA", "ASIA"]),
            always,
        ),
        rule(
            SensitiveKind::StripeKey,
            r"(?-u:\b)(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{24,99}(?-u:\b)",
            Needs::Literal(&["_live_", "_test_"]),
            always,
        ),
        rule(
            SensitiveKind::GoogleApiKey,
            r"(?-u:\b)AIza[0-9A-Za-z_\-]{35}(?-u:\b)",
            Needs::Literal(&["AIza"]),
            always,
        ),
        rule(
            SensitiveKind::SlackToken,
            r"(?-u:\b)xox[abprs]-[0-9A-Za-z\-]{10,}",
            Needs::Literal(&["xox"]),
            always,
        ),
        rule(
            SensitiveKind::PrivateKey,
            // The whole block, to its END line or, cut short, to the end of
            // the text: a redacted header above a printed body protects nothing.
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\z)",
            Needs::Literal(&["PRIVATE KEY"]),
            always,
        ),
        rule(
            SensitiveKind::Jwt,
            r"(?-u:\b)eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}",
            Needs::Literal(&["eyJ"]),
            always,
        ),
        rule(
            SensitiveKind::GenericSecret,
            // A name holding one of the words (`api_key`, `AWS_SECRET_ACCESS_KEY`,
            // `db_password`), then the value: checked by `secret_assignment`.
            r#"(?i)[A-Za-z0-9_.\-]*(?:key|secret|token|passwd|password|pwd|credential)[A-Za-z0-9_.\-]*["']?\s*[:=]\s*["']?(?P<value>[^\s"'`,;]{8,200})"#,
            Needs::Assignment(&[
                "key",
                "secret",
                "token",
                "passwd",
                "password",
                "pwd",
                "credential",
            ]),
            secret_assignment,
        ),
        rule(
            SensitiveKind::Email,
            r"(?-u:\b)[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}(?-u:\b)",
            Needs::Byte(b'@'),
            always,
        ),
        rule(
            SensitiveKind::Phone,
            r"(?:\+[0-9]{1,3}[ .\-]?)?\(?(?-u:\b)[0-9]{3}\)?[ .\-][0-9]{3}[ .\-][0-9]{4}(?-u:\b)",
            Needs::Digits(|shapes| shapes.phone),
            always,
        ),
        rule(
            SensitiveKind::IpAddress,
            r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)",
            Needs::Digits(|shapes| shapes.dotted),
            public_ipv4,
        ),
        rule(
            SensitiveKind::CardNumber,
            r"(?-u:\b)[0-9](?:[ \-]?[0-9]){12,18}(?-u:\b)",
            Needs::Digits(|shapes| shapes.card),
            luhn_valid,
        ),
        rule(
            SensitiveKind::Iban,
            r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?-u:\b)",
            Needs::Digits(|shapes| shapes.iban),
            iban_valid,
        ),
    ]
});

/// Compiles the rules now (a few milliseconds), rather than in the first
/// [`scan`], where every thread would wait for it.
pub(crate) fn compile_rules() {
    LazyLock::force(&RULES);
    LazyLock::force(&LITERALS);
    LazyLock::force(&AWS_SECRET);
}

/// Every sensitive match in `text`, in order, without overlaps (the first
/// rule to claim a span wins, secrets before personal data).
pub fn scan(text: &str) -> Vec<SensitiveMatch> {
    scan_with(text, true)
}

/// [`scan`], with or without the checks that skip a rule's regex.
fn scan_with(text: &str, prefilter: bool) -> Vec<SensitiveMatch> {
    let mut matches: Vec<SensitiveMatch> = Vec::new();
    let shapes = DigitShapes::of(text.as_bytes());
    let (literals, literal_rules) = &*LITERALS;
    let found_literals = literals.find_iter(text).fold(0_u32, |rules, found| {
        rules | literal_rules[found.pattern().as_usize()]
    });
    for (index, rule) in RULES.iter().enumerate() {
        let possible = match rule.needs {
            Needs::Literal(_) => found_literals & (1 << index) != 0,
            Needs::Byte(byte) => memchr::memchr(byte, text.as_bytes()).is_some(),
            Needs::Digits(shape) => shape(&shapes),
            Needs::Assignment(words) => has_assignment(text, words),
        };
        if prefilter && !possible {
            continue;
        }
        let mut claim = |range: std::ops::Range<usize>, value: std::ops::Range<usize>| {
            if matches
                .iter()
                .any(|known| known.range.start < range.end && range.start < known.range.end)
            {
                return;
            }
            if (rule.validate)(&text[range.clone()], &text[value.clone()]) {
                matches.push(SensitiveMatch {
                    kind: rule.kind,
                    range,
                    value,
                });
            }
        };
        if rule.regex.captures_len() > 1 {
            for captures in rule.regex.captures_iter(text) {
                let (Some(whole), Some(value)) = (captures.get(0), captures.name("value")) else {
                    continue;
                };
                claim(whole.range(), value.range());
            }
        } else {
            for found in rule.regex.find_iter(text) {
                claim(found.range(), found.range());
            }
        }
    }
    aws_secret_keys(text, &mut matches);
    matches.sort_by_key(|found| found.range.start);
    matches
}

/// Which of the personal-data rules' digit patterns a text's runs of ASCII
/// digits could form, found in one pass over the text. Each is a necessary
/// condition of its rule's regex (looser than the regex, never stricter), so
/// a rule skipped for it could not have matched; most text with numbers in
/// it (years, counts, prices) has none of these shapes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct DigitShapes {
    /// Phone: runs of at least 3, 3 and 4 digits, the first two followed by
    /// one of ` .-` (the first optionally after a `)`).
    phone: bool,
    /// Card: at least 13 digits in runs joined by single spaces or hyphens.
    card: bool,
    /// IBAN: at least two digits just after two ASCII capitals.
    iban: bool,
    /// IPv4: four runs joined by single dots.
    dotted: bool,
}

impl DigitShapes {
    fn of(bytes: &[u8]) -> DigitShapes {
        let mut shapes = DigitShapes::default();
        // The two runs before the current one, for phone numbers.
        let mut before: [Option<std::ops::Range<usize>>; 2] = [None, None];
        let (mut card_digits, mut dotted_runs) = (0_usize, 0_usize);
        let mut previous_end: Option<usize> = None;
        for_each_digit_run(bytes, |run| {
            let gap = previous_end.map(|end| &bytes[end..run.start]);
            let joined_by = |separators: &[u8]| {
                gap.is_some_and(|gap| gap.len() == 1 && separators.contains(&gap[0]))
            };
            card_digits = if joined_by(b" -") {
                card_digits + run.len()
            } else {
                run.len()
            };
            dotted_runs = if joined_by(b".") { dotted_runs + 1 } else { 1 };
            shapes.card |= card_digits >= 13;
            shapes.dotted |= dotted_runs >= 4;
            shapes.iban |= run.len() >= 2
                && run.start >= 2
                && bytes[run.start - 2].is_ascii_uppercase()
                && bytes[run.start - 1].is_ascii_uppercase();
            if run.len() >= 4
                && let [Some(first), Some(second)] = &before
            {
                let phone_gap = |gap: &[u8]| match gap {
                    [separator] | [b')', separator] => b" .-".contains(separator),
                    _ => false,
                };
                shapes.phone |= first.len() >= 3
                    && second.len() >= 3
                    && phone_gap(&bytes[first.end..second.start])
                    && matches!(&bytes[second.end..run.start], [b' ' | b'.' | b'-']);
            }
            previous_end = Some(run.end);
            before = [before[1].take(), Some(run)];
        });
        shapes
    }
}

/// Calls `f` with every maximal run of ASCII digits in `bytes`, in order.
/// Digits are found 64 bytes at a time as a bit mask (eight at a time),
/// so text without digits costs a few operations per eight bytes.
fn for_each_digit_run(bytes: &[u8], mut f: impl FnMut(std::ops::Range<usize>)) {
    let mut run_start = None;
    for (index, chunk) in bytes.chunks(64).enumerate() {
        let base = index * 64;
        let mask = crate::swar::class_mask(chunk, |word| crate::swar::in_range(word, b'0', b'9'));
        let length = chunk.len() as u32;
        let mut bit = 0_u32;
        while bit < length {
            let rest = mask >> bit;
            match run_start {
                Some(start) => {
                    // Bits past the chunk are zero, so the run ends within it
                    // or exactly at its end.
                    let digits = (!rest).trailing_zeros();
                    bit += digits;
                    if bit < length {
                        f(start..base + bit as usize);
                        run_start = None;
                    }
                }
                None => {
                    if rest == 0 {
                        break;
                    }
                    bit += rest.trailing_zeros();
                    run_start = Some(base + bit as usize);
                }
            }
        }
    }
    if let Some(start) = run_start {
        f(start..bytes.len());
    }
}

/// AWS secret access keys: 40 base64 characters within a few lines of an
/// access key id. Alone, 40 such characters are too common to call a
/// secret; next to a key id they are its other half.
fn aws_secret_keys(text: &str, matches: &mut Vec<SensitiveMatch>) {
    const NEAR: usize = 160;
    let key_ids: Vec<std::ops::Range<usize>> = matches
        .iter()
        .filter(|found| found.kind == SensitiveKind::AwsAccessKey)
        .map(|found| found.range.clone())
        .collect();
    for key_id in key_ids {
        let mut start = key_id.start.saturating_sub(NEAR);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (key_id.end + NEAR).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        for captures in AWS_SECRET.captures_iter(&text[start..end]) {
            let Some(found) = captures.get(1) else {
                continue;
            };
            let range = start + found.start()..start + found.end();
            let candidate = &text[range.clone()];
            if shannon_entropy(candidate) < 3.5
                || !candidate
                    .bytes()
                    .any(|byte| byte.is_ascii_digit() || byte == b'/' || byte == b'+')
                || matches
                    .iter()
                    .any(|known| known.range.start < range.end && range.start < known.range.end)
            {
                continue;
            }
            matches.push(SensitiveMatch {
                kind: SensitiveKind::AwsSecretKey,
                range: range.clone(),
                value: range,
            });
        }
    }
}

#[expect(
    clippy::expect_used,
    reason = "a constant pattern checked by the tests"
)]
static AWS_SECRET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^A-Za-z0-9/+])([A-Za-z0-9/+]{40})(?:$|[^A-Za-z0-9/+=])")
        .expect("valid AWS secret pattern")
});

/// Whether a name or value from the data (a role, a key, an id) may be
/// quoted in a finding: it looks like a name
/// ([`gantry_core::redact::looks_like_a_name`]) and no secret or
/// personal-data rule matches it. Anything else may be a credential someone
/// pasted in the wrong field, and is described, not quoted.
pub fn is_safe_to_quote(text: &str) -> bool {
    gantry_core::redact::looks_like_a_name(text) && scan(text).is_empty()
}

/// `text` in backticks when [`is_safe_to_quote`], else a description of it
/// that quotes nothing.
pub fn quoted(text: &str) -> String {
    if is_safe_to_quote(text) {
        format!("`{text}`")
    } else {
        format!(
            "a value of {} characters (not shown: it does not look like a name)",
            text.chars().count()
        )
    }
}

/// Replaces every quoted part of a message from another library (a JSON
/// Schema error, a CSV error) that is not [`is_safe_to_quote`]: such
/// messages quote the data they complain about.
pub fn sanitize_message(message: &str) -> String {
    gantry_core::redact::sanitize_quoted(message, is_safe_to_quote)
}

/// `text` with every match replaced by `[REDACTED <kind>]`.
pub fn redact(text: &str, matches: &[SensitiveMatch]) -> String {
    let mut redacted = String::with_capacity(text.len());
    let mut position = 0;
    for found in matches {
        redacted.push_str(&text[position..found.range.start]);
        redacted.push_str(&format!("[REDACTED {}]", found.kind.as_str()));
        position = found.range.end;
    }
    redacted.push_str(&text[position..]);
    redacted
}

/// Up to `width` characters of `text` around byte `at`, redacted, on one line.
pub(crate) fn excerpt(text: &str, at: usize, width: usize) -> String {
    let matches = scan(text);
    let redacted = redact(text, &matches);
    // Map the position into the redacted text: shift by what redaction changed before it.
    let mut shifted = at as isize;
    for found in &matches {
        if found.range.end <= at {
            shifted += format!("[REDACTED {}]", found.kind.as_str()).len() as isize
                - found.range.len() as isize;
        }
    }
    let characters: Vec<char> = redacted.chars().collect();
    let center = redacted
        .get(
            ..usize::try_from(shifted.max(0))
                .unwrap_or(0)
                .min(redacted.len()),
        )
        .map_or(0, |prefix| prefix.chars().count());
    let start = center.saturating_sub(width / 3);
    let end = (start + width).min(characters.len());
    let mut snippet: String = characters[start..end]
        .iter()
        .collect::<String>()
        .replace(['\n', '\r', '\t'], " ");
    if start > 0 {
        snippet.insert(0, '…');
    }
    if end < characters.len() {
        snippet.push('…');
    }
    snippet
}

/// Whether an assignment's value is a secret. Passwords (`password`,
/// `passwd`, `pwd` in the name) are short and hand-made: 8 characters or
/// more of at least two kinds (lower case, upper case, digits, symbols),
/// not a placeholder. Keys and tokens are generated: 20 characters or more
/// of the token alphabet with at least 3.5 bits of entropy each, as gitleaks'
/// generic rule asks.
fn secret_assignment(matched: &str, value: &str) -> bool {
    let name = matched.to_ascii_lowercase();
    let is_password = ["password", "passwd", "pwd"]
        .iter()
        .any(|word| name[..name.len() - value.len()].contains(word));
    if is_password {
        let placeholder = value.starts_with(['<', '$', '{', '%', '['])
            || value.bytes().all(|byte| byte == value.as_bytes()[0]);
        let kinds = [
            value.bytes().any(|byte| byte.is_ascii_lowercase()),
            value.bytes().any(|byte| byte.is_ascii_uppercase()),
            value.bytes().any(|byte| byte.is_ascii_digit()),
            value.bytes().any(|byte| !byte.is_ascii_alphanumeric()),
        ]
        .into_iter()
        .filter(|&present| present)
        .count();
        !placeholder && kinds >= 2 && shannon_entropy(value) >= 2.5
    } else {
        value.len() >= 20
            && value
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"_-/+=.".contains(&byte))
            && shannon_entropy(value) >= 3.5
    }
}

use gantry_core::redact::shannon_entropy;

fn public_ipv4(text: &str, _: &str) -> bool {
    let octets: Vec<u16> = text
        .split('.')
        .filter_map(|octet| octet.parse().ok())
        .collect();
    if octets.len() != 4 || octets.iter().any(|&octet| octet > 255) {
        return false;
    }
    let ip = std::net::Ipv4Addr::new(
        octets[0] as u8,
        octets[1] as u8,
        octets[2] as u8,
        octets[3] as u8,
    );
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || octets[0] == 0
        || octets[0] >= 224)
}

/// The Luhn checksum of the digits in `text` (separators ignored).
pub(crate) fn luhn_valid(text: &str, _: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if !(13..=19).contains(&digits.len()) || digits.iter().all(|&digit| digit == digits[0]) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(index, &digit)| {
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// The ISO 13616 mod-97 check of an IBAN (spaces ignored).
pub(crate) fn iban_valid(text: &str, _: &str) -> bool {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) {
        return false;
    }
    let (head, tail) = compact.split_at(4);
    let mut remainder = 0_u32;
    for c in tail.chars().chain(head.chars()) {
        let value = match c.to_digit(36) {
            Some(value) => value,
            None => return false,
        };
        for digit in value.to_string().chars() {
            remainder = (remainder * 10 + digit.to_digit(10).unwrap_or(0)) % 97;
        }
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_has_a_slot_in_the_prefilter() {
        assert!(
            RULES.len() <= 32,
            "scan keeps one flag per rule in 32 slots"
        );
        let (_, rules) = &*LITERALS;
        let index = |kind| {
            RULES
                .iter()
                .position(|rule| rule.kind == kind)
                .expect("rule")
        };
        // "sk-ant-" hides an "sk-" at the same place; "AKIA" may end where "AIza" begins.
        let openai = 1 << index(SensitiveKind::OpenaiKey);
        assert_ne!(rules[0] & openai, 0);
        assert_ne!(rules[0] & (1 << index(SensitiveKind::AnthropicKey)), 0);
        assert_eq!(rules.len(), 18);
        assert_eq!(
            kinds("sk-ant-xyz sk-proj-abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP"),
            [SensitiveKind::OpenaiKey]
        );
        assert_eq!(
            kinds("API_KEY \t = 'Zq8vN3xR7tL2mK9pW4sY6bH1cJ5dF0gE'"),
            [SensitiveKind::GenericSecret]
        );
        assert_eq!(
            kinds("Password\": \"Zq8vN3xR7tL2mK9pW4sY6bH1cJ5dF0gE\""),
            [SensitiveKind::GenericSecret]
        );
        assert!(kinds("the key is: simple").is_empty());
        // Unicode case folding: the Kelvin sign is a `k`, the long s an `s`.
        assert_eq!(
            kinds("api_\u{212a}EY = 'Zq8vN3xR7tL2mK9pW4sY6bH1cJ5dF0gE'"),
            [SensitiveKind::GenericSecret]
        );
        assert_eq!(
            kinds("ſecret: Zq8vN3xR7tL2mK9pW4sY6bH1cJ5dF0gE"),
            [SensitiveKind::GenericSecret]
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2000, ..proptest::prelude::ProptestConfig::default() })]
        #[test]
        fn the_prefilter_never_hides_a_match(parts in proptest::collection::vec(proptest::prop_oneof![
            proptest::sample::select(vec![
                "sk-", "ant-", "api03-", "proj-", "AKIA", "ASIA", "AIza", "hf_", "ghp_", "github_pat_", "glpat-", "xoxb-",
                "eyJ", ".", "-----BEGIN RSA PRIVATE KEY-----", "key", "KEY", "Secret", "token", "passwd", "api_key",
                "=", ":", " ", "\t", "\u{a0}", "\"", "'", "@", "a.b@example.com", "8.8.8.8", "192.168.1.1",
                "\u{212a}ey", "ſecret", "toKen", "AWS_SECRET_ACCESS_KEY", "db_password", "pwd", "credential", "monkey",
                "sk_live_", "_test_", "hunter22!", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "4111 1111 1111 1111", "+1 415-555-0100", "GB82 WEST 1234 5698 7654 32", "T3BlbkFJ",
                "(415) 555-0100", "415.555.0100", "4111-1111-1111-1111", "DE89370400440532013000",
                "-", ")", "(", "+", "--", ". ",
                "é", "日本", "\u{212a}", "ſ", "\u{2126}", "İ", "\u{3000}",
            ]).prop_map(str::to_owned),
            "[A-Za-z0-9_\\-]{8,40}",
            // Digit runs and what joins them: the shapes of phone, card,
            // IBAN and IPv4 numbers, and near misses.
            "[0-9]{1,5}",
            "[0-9]{1,4}[ .\\-)][0-9]{1,4}",
            "[A-Z]{0,2}[0-9]{1,3}",
        ], 0..16)) {
            let text = parts.concat();
            proptest::prop_assert_eq!(scan_with(&text, true), scan_with(&text, false));
        }
    }

    #[test]
    fn only_kelvin_and_long_s_are_name_characters_outside_ascii() {
        // What `has_assignment` assumes of the generic-secret pattern: its
        // case-insensitive name class takes two characters outside ASCII,
        // standing for `k` and `s`, and its `\s` is `char::is_whitespace`.
        let name = Regex::new(r"(?i)^[A-Za-z0-9_.\-]$").expect("pattern");
        let space = Regex::new(r"^\s$").expect("pattern");
        let mut outside_ascii = Vec::new();
        for character in (0..=0x10ffff_u32).filter_map(char::from_u32) {
            let text = character.to_string();
            if !character.is_ascii() && name.is_match(&text) {
                outside_ascii.push(character);
            }
            assert_eq!(
                space.is_match(&text),
                character.is_whitespace(),
                "{character:?}"
            );
        }
        assert_eq!(outside_ascii, ['\u{17f}', '\u{212a}']);
        let fold = |character: &str| Regex::new(&format!("(?i)^{character}$")).expect("pattern");
        assert!(fold("k").is_match("\u{212a}") && fold("s").is_match("\u{17f}"));
    }

    #[test]
    fn digit_shapes_are_those_the_rules_need() {
        let shapes = |text: &str| DigitShapes::of(text.as_bytes());
        // Numbers in prose are none of them: the rules' regexes are skipped.
        assert_eq!(
            shapes("In 1999 we sold 4000 units at 2500.50 each, 8387 been 275 from 3906"),
            DigitShapes::default()
        );
        for phone in [
            "+1 415-555-0100",
            "(415) 555-0100",
            "415.555.0100",
            "call 415 555 01001",
        ] {
            assert!(shapes(phone).phone, "{phone}");
        }
        for not_phone in [
            "415-555 - 0100",
            "415-55-0100",
            "415--555-0100",
            "415-555-010",
        ] {
            assert!(!shapes(not_phone).phone, "{not_phone}");
        }
        // Runs are found across the 64-byte chunks the mask is built in.
        let long = format!("{}4111 1111 1111 1111", "x".repeat(61));
        assert!(shapes(&long).card);
        assert!(shapes(&"4".repeat(200)).card);
        assert!(shapes("4111-1111-1111-1111").card);
        assert!(!shapes("4111 1111 111").card);
        assert!(!shapes("4111  1111 1111 1").card);
        assert!(shapes("GB82 WEST 1234 5698 7654 32").iban);
        assert!(!shapes("Gb82 WEST").iban);
        assert!(shapes("8.8.8.8").dotted);
        assert!(!shapes("8.8.8").dotted);
        assert!(!shapes("8.8..8.8").dotted);
        let mut runs = Vec::new();
        let text = format!("{}12{}345", "a".repeat(62), "b".repeat(64));
        for_each_digit_run(text.as_bytes(), |run| runs.push(run));
        assert_eq!(runs, [62..64, 128..131]);
    }

    use proptest::strategy::Strategy as _;

    fn kinds(text: &str) -> Vec<SensitiveKind> {
        scan(text).into_iter().map(|found| found.kind).collect()
    }

    #[test]
    fn secrets_are_found() {
        let openai = format!("key: sk-proj-{}", "Ab1".repeat(20));
        let table: Vec<(String, Vec<SensitiveKind>)> = vec![
            (openai, vec![SensitiveKind::OpenaiKey]),
            (format!("sk-ant-api03-{}", "x".repeat(90)), vec![SensitiveKind::AnthropicKey]),
            ("token hf_abcdefghijklmnopqrstuvwxyzABCDEFGH ok".to_owned(), vec![SensitiveKind::HuggingfaceToken]),
            ("ghp_0123456789abcdefghijABCDEFGHIJ012345".to_owned(), vec![SensitiveKind::GithubToken]),
            ("AKIAIOSFODNN7EXAMPLE".to_owned(), vec![SensitiveKind::AwsAccessKey]),
            ("-----BEGIN RSA PRIVATE KEY-----\nMIIB".to_owned(), vec![SensitiveKind::PrivateKey]),
            ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U".to_owned(), vec![SensitiveKind::Jwt]),
            ("api_key = \"Zx8Qp2Lm9Tr4Vb7Nc1Ks6Hd3\"".to_owned(), vec![SensitiveKind::GenericSecret]),
            ("password = \"aaaaaaaaaaaaaaaaaaaaaaaa\"".to_owned(), vec![]),
            // Detection gaps closed: the other half of an AWS key pair, the
            // usual environment names, hand-made passwords, Stripe, digits in
            // Hugging Face tokens.
            (
                "aws AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
                vec![SensitiveKind::AwsAccessKey, SensitiveKind::AwsSecretKey],
            ),
            (
                "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".to_owned(),
                vec![SensitiveKind::GenericSecret],
            ),
            ("db_password: hunter22!x".to_owned(), vec![SensitiveKind::GenericSecret]),
            ("\"password\": \"Tr0ub4dor&3\"".to_owned(), vec![SensitiveKind::GenericSecret]),
            ("password: changeme".to_owned(), vec![]),
            ("password: <your password>".to_owned(), vec![]),
            ("password = ${DB_PASSWORD}".to_owned(), vec![]),
            ("tokenizer: o200k_base".to_owned(), vec![]),
            ("sk_live_EGHZbKoXi0d9TH4QgTNBEjE4".to_owned(), vec![SensitiveKind::StripeKey]),
            ("hf_7wZyVGOeUvfJIssDj4PTTKtb2TxxDBfz5L".to_owned(), vec![SensitiveKind::HuggingfaceToken]),
            ("AIzaDp68GZN9Z3zLIbet6-UzH-7_3eLO6m4H5x2".to_owned(), vec![SensitiveKind::GoogleApiKey]),
        ];
        for (text, expected) in table {
            assert_eq!(kinds(&text), expected, "{text}");
        }
    }

    #[test]
    fn personal_data_is_found_with_checksums() {
        let table: [(&str, Vec<SensitiveKind>); 7] = [
            (
                "write to jane.doe@example.org today",
                vec![SensitiveKind::Email],
            ),
            ("call (415) 555-0132 now", vec![SensitiveKind::Phone]),
            (
                "server 8.8.8.8 and 10.0.0.1 and 127.0.0.1",
                vec![SensitiveKind::IpAddress],
            ),
            ("card 4111 1111 1111 1111", vec![SensitiveKind::CardNumber]),
            ("card 4111 1111 1111 1112", vec![]),
            (
                "IBAN GB82 WEST 1234 5698 7654 32",
                vec![SensitiveKind::Iban],
            ),
            ("IBAN GB83 WEST 1234 5698 7654 32", vec![]),
        ];
        for (text, expected) in table {
            assert_eq!(kinds(text), expected, "{text}");
        }
    }

    #[test]
    fn only_names_are_quoted() {
        for safe in [
            "Human",
            "bot",
            "gpt4",
            "tool_call_id",
            "llama-3.1",
            "userName",
            "Assistant Reply",
        ] {
            assert!(is_safe_to_quote(safe), "{safe}");
        }
        for unsafe_value in [
            "sk-proj-huG8GP38g4o5MNJAYKJ1UXXFWXLCpaNfhs0gCa05RFRunzqw",
            "glpat-JF3hBGZW3M4Fz6Hq2AK7",
            "Zq8vN3xR",
            "qwhzjxkvbpmd",
            "AKIAIOSFODNN7EXAMPLE",
            "a@b.io",
            "12345678",
            "",
            "new\nline",
        ] {
            assert!(!is_safe_to_quote(unsafe_value), "{unsafe_value}");
        }
        assert_eq!(quoted("Human"), "`Human`");
        assert_eq!(
            quoted("Zq8vN3xR"),
            "a value of 8 characters (not shown: it does not look like a name)"
        );
        assert_eq!(
            sanitize_message(r#""Zq8vN3xR7tL2" is not of type "integer""#),
            r#""… (12 characters not shown)" is not of type "integer""#
        );
        assert_eq!(
            sanitize_message(
                "Additional properties are not allowed ('sk_live_EGHZbKoXi0d9TH4QgTNBEjE4' was unexpected)"
            ),
            "Additional properties are not allowed ('… (32 characters not shown)' was unexpected)"
        );
        assert_eq!(sanitize_message("it's fine"), "it's fine");
    }

    #[test]
    fn a_private_key_is_redacted_whole() {
        let block = "key:\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\nAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\nthanks";
        let redacted = redact(block, &scan(block));
        assert_eq!(redacted, "key:\n[REDACTED private-key]\nthanks");
        // Cut short before its END line, it is redacted to the end.
        let cut = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7yN3y8wq3Zs";
        assert_eq!(redact(cut, &scan(cut)), "[REDACTED private-key]");
    }

    #[test]
    fn an_assignment_s_secret_is_its_value() {
        let text = "export API_TOKEN='Zq8vN3xR7tL2mK9pW4sY6bH1'";
        let found = scan(text);
        assert_eq!(found.len(), 1);
        assert_eq!(&text[found[0].value.clone()], "Zq8vN3xR7tL2mK9pW4sY6bH1");
    }

    #[test]
    fn redaction_never_leaks_the_match() {
        let text = "use ghp_0123456789abcdefghijABCDEFGHIJ012345 or mail a@b.io";
        let redacted = redact(text, &scan(text));
        assert_eq!(
            redacted,
            "use [REDACTED github-token] or mail [REDACTED email]"
        );
        let snippet = excerpt(text, 4, 40);
        assert!(!snippet.contains("ghp_0123"), "{snippet}");
        assert!(snippet.contains("[REDACTED github-token]"), "{snippet}");
    }
}
