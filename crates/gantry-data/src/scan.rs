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
    /// Byte range in the text.
    pub range: std::ops::Range<usize>,
}

/// What a text must contain for a rule to possibly match: checked before the
/// regex, which is the expensive part.
#[derive(Clone, Copy)]
enum Needs {
    /// One of these substrings (two bytes or more).
    Literal(&'static [&'static str]),
    /// This byte.
    Byte(u8),
    /// At least this many ASCII digits.
    Digits(usize),
    /// At least four ASCII digits and three dots (a dotted IPv4 address).
    DottedDigits,
    /// `=` or `:`, and one of these words in any ASCII case.
    Assignment(&'static [&'static str]),
}

struct Rule {
    kind: SensitiveKind,
    regex: Regex,
    needs: Needs,
    validate: fn(&str) -> bool,
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

/// Whether one of `words` (any ASCII case) may end just before an optional
/// quote, optional whitespace and a `:` or `=`, as the generic-secret
/// pattern requires; the `:` and `=` are few, the words are common. Unicode
/// case folding lets `K` (Kelvin) and `ſ` stand for `k` and `s`, so
/// non-ASCII text just before counts as possible too.
fn has_assignment(text: &str, words: &[&str]) -> bool {
    let longest = words.iter().map(|word| word.len()).max().unwrap_or(0);
    memchr::memchr2_iter(b'=', b':', text.as_bytes()).any(|at| {
        let before = text[..at].trim_end_matches(char::is_whitespace);
        let before = before
            .strip_suffix(['"', '\''])
            .unwrap_or(before)
            .as_bytes();
        before[before.len().saturating_sub(3 * longest)..]
            .iter()
            .any(|byte| !byte.is_ascii())
            || words.iter().any(|word| {
                before.len() >= word.len()
                    && before[before.len() - word.len()..].eq_ignore_ascii_case(word.as_bytes())
            })
    })
}

fn always(_: &str) -> bool {
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
            r"(?-u:\b)hf_[A-Za-z]{34}(?-u:\b)",
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
            r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----",
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
            r#"(?i)(?:api[_-]?key|secret|token|passwd|password)["']?\s*[:=]\s*["']?([A-Za-z0-9_\-/+=]{20,})"#,
            Needs::Assignment(&["key", "secret", "token", "passwd", "password"]),
            high_entropy_assignment,
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
            Needs::Digits(10),
            always,
        ),
        rule(
            SensitiveKind::IpAddress,
            r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)",
            Needs::DottedDigits,
            public_ipv4,
        ),
        rule(
            SensitiveKind::CardNumber,
            r"(?-u:\b)[0-9](?:[ \-]?[0-9]){12,18}(?-u:\b)",
            Needs::Digits(13),
            luhn_valid,
        ),
        rule(
            SensitiveKind::Iban,
            r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?-u:\b)",
            Needs::Digits(4),
            iban_valid,
        ),
    ]
});

/// Every sensitive match in `text`, in order, without overlaps (the first
/// rule to claim a span wins, secrets before personal data).
pub fn scan(text: &str) -> Vec<SensitiveMatch> {
    scan_with(text, true)
}

/// [`scan`], with or without the checks that skip a rule's regex.
fn scan_with(text: &str, prefilter: bool) -> Vec<SensitiveMatch> {
    let mut matches: Vec<SensitiveMatch> = Vec::new();
    let n_digits = text.bytes().filter(u8::is_ascii_digit).count();
    let (literals, literal_rules) = &*LITERALS;
    let found_literals = literals.find_iter(text).fold(0_u32, |rules, found| {
        rules | literal_rules[found.pattern().as_usize()]
    });
    for (index, rule) in RULES.iter().enumerate() {
        let possible = match rule.needs {
            Needs::Literal(_) => found_literals & (1 << index) != 0,
            Needs::Byte(byte) => memchr::memchr(byte, text.as_bytes()).is_some(),
            Needs::Digits(minimum) => n_digits >= minimum,
            Needs::DottedDigits => {
                n_digits >= 4 && memchr::memchr_iter(b'.', text.as_bytes()).nth(2).is_some()
            }
            Needs::Assignment(words) => has_assignment(text, words),
        };
        if prefilter && !possible {
            continue;
        }
        for found in rule.regex.find_iter(text) {
            let range = found.range();
            if matches
                .iter()
                .any(|known| known.range.start < range.end && range.start < known.range.end)
            {
                continue;
            }
            if (rule.validate)(found.as_str()) {
                matches.push(SensitiveMatch {
                    kind: rule.kind,
                    range,
                });
            }
        }
    }
    matches.sort_by_key(|found| found.range.start);
    matches
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

fn high_entropy_assignment(matched: &str) -> bool {
    let value = matched
        .rsplit(['=', ':'])
        .next()
        .unwrap_or(matched)
        .trim_matches(|c: char| c == '"' || c == '\'' || c.is_whitespace());
    shannon_entropy(value) >= 3.5
}

/// Bits per character of `text`.
pub(crate) fn shannon_entropy(text: &str) -> f64 {
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

fn public_ipv4(text: &str) -> bool {
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
pub(crate) fn luhn_valid(text: &str) -> bool {
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
pub(crate) fn iban_valid(text: &str) -> bool {
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
        assert_eq!(rules.len(), 16);
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
                "\u{212a}ey", "ſecret", "toKen",
                "4111 1111 1111 1111", "+1 415-555-0100", "GB82 WEST 1234 5698 7654 32", "T3BlbkFJ",
            ]).prop_map(str::to_owned),
            "[A-Za-z0-9_\\-]{8,40}",
        ], 0..12)) {
            let text = parts.concat();
            proptest::prop_assert_eq!(scan_with(&text, true), scan_with(&text, false));
        }
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
