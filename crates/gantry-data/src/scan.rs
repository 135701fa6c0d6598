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
    /// This substring.
    Literal(&'static str),
    /// At least this many ASCII digits.
    Digits(usize),
    /// `=` or `:`, and one of these words in any ASCII case.
    Assignment(&'static [&'static str]),
}

struct Rule {
    kind: SensitiveKind,
    regex: Regex,
    needs: Needs,
    validate: fn(&str) -> bool,
}

fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let needle = needle.as_bytes();
    haystack
        .as_bytes()
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

fn always(_: &str) -> bool {
    true
}

#[expect(
    clippy::expect_used,
    reason = "the patterns are constants checked by the tests"
)]
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
            r"\bsk-ant-(?:api|admin)\d{2}-[A-Za-z0-9_\-]{80,}",
            Needs::Literal("sk-ant-"),
            always,
        ),
        rule(
            SensitiveKind::OpenaiKey,
            r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_\-]{40,}|\bsk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}\b",
            Needs::Literal("sk-"),
            always,
        ),
        rule(
            SensitiveKind::HuggingfaceToken,
            r"\bhf_[A-Za-z]{34}\b",
            Needs::Literal("hf_"),
            always,
        ),
        rule(
            SensitiveKind::GithubToken,
            r"\bgh[pousr]_[A-Za-z0-9]{36}\b|\bgithub_pat_[A-Za-z0-9_]{82}\b",
            Needs::Literal("_"),
            always,
        ),
        rule(
            SensitiveKind::GitlabToken,
            r"\bglpat-[A-Za-z0-9_\-]{20,}",
            Needs::Literal("glpat-"),
            always,
        ),
        rule(
            SensitiveKind::AwsAccessKey,
            r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
            Needs::Literal("A"),
            always,
        ),
        rule(
            SensitiveKind::GoogleApiKey,
            r"\bAIza[0-9A-Za-z_\-]{35}\b",
            Needs::Literal("AIza"),
            always,
        ),
        rule(
            SensitiveKind::SlackToken,
            r"\bxox[abprs]-[0-9A-Za-z\-]{10,}",
            Needs::Literal("xox"),
            always,
        ),
        rule(
            SensitiveKind::PrivateKey,
            r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----",
            Needs::Literal("PRIVATE KEY"),
            always,
        ),
        rule(
            SensitiveKind::Jwt,
            r"\beyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}",
            Needs::Literal("eyJ"),
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
            r"\b[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}\b",
            Needs::Literal("@"),
            always,
        ),
        rule(
            SensitiveKind::Phone,
            r"(?:\+\d{1,3}[ .\-]?)?\(?\b\d{3}\)?[ .\-]\d{3}[ .\-]\d{4}\b",
            Needs::Digits(10),
            always,
        ),
        rule(
            SensitiveKind::IpAddress,
            r"\b(?:\d{1,3}\.){3}\d{1,3}\b",
            Needs::Digits(4),
            public_ipv4,
        ),
        rule(
            SensitiveKind::CardNumber,
            r"\b\d(?:[ \-]?\d){12,18}\b",
            Needs::Digits(13),
            luhn_valid,
        ),
        rule(
            SensitiveKind::Iban,
            r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b",
            Needs::Digits(4),
            iban_valid,
        ),
    ]
});

/// Every sensitive match in `text`, in order, without overlaps (the first
/// rule to claim a span wins, secrets before personal data).
pub fn scan(text: &str) -> Vec<SensitiveMatch> {
    let mut matches: Vec<SensitiveMatch> = Vec::new();
    let n_digits = text.bytes().filter(u8::is_ascii_digit).count();
    let has_assignment = text.bytes().any(|byte| byte == b'=' || byte == b':');
    for rule in RULES.iter() {
        let possible = match rule.needs {
            Needs::Literal(needle) => text.contains(needle),
            Needs::Digits(minimum) => n_digits >= minimum,
            Needs::Assignment(words) => {
                has_assignment
                    && words
                        .iter()
                        .any(|word| contains_ignore_ascii_case(text, word))
            }
        };
        if !possible {
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
