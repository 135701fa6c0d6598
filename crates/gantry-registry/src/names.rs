//! Model names, versions, aliases and references (`NAME@1.2.0`, `NAME@production`, `NAME@sha256:…`).

use gantry_core::Digest;

use crate::error::{Error, Result};

/// Longest model name or alias accepted.
const MAX_NAME: usize = 128;

/// Checks a model name: lowercase letters and digits separated by single
/// `.`, `_` or `-` (valid as an OCI repository component and an MLflow
/// name, never a path that escapes the registry).
pub fn validate_name(name: &str) -> Result<()> {
    const REASON: &str = "use 1-128 lowercase letters and digits, separated by single '.', '_' or '-' (e.g. support-bot or llama-3.1-8b)";
    let invalid = || Error::InvalidName {
        what: "model name",
        value: name.to_owned(),
        reason: REASON,
    };
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(invalid());
    }
    let bytes = name.as_bytes();
    let is_separator = |byte: u8| matches!(byte, b'.' | b'_' | b'-');
    let is_word = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    if !is_word(bytes[0]) || !is_word(bytes[bytes.len() - 1]) {
        return Err(invalid());
    }
    for pair in bytes.windows(2) {
        if is_separator(pair[0]) && is_separator(pair[1]) {
            return Err(invalid());
        }
    }
    if bytes
        .iter()
        .all(|&byte| is_word(byte) || is_separator(byte))
    {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// Tag prefixes the OCI backend uses for its own records.
pub(crate) const RESERVED_TAG_PREFIXES: &[&str] = &["digest-", "event-"];

/// Checks an alias: a lowercase letter, then lowercase letters, digits, `-`
/// or `_`; it must not look like a version or a digest.
pub fn validate_alias(alias: &str) -> Result<()> {
    let valid = !alias.is_empty()
        && alias.len() <= MAX_NAME
        && alias.as_bytes()[0].is_ascii_lowercase()
        && alias.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'-' | b'_')
        })
        && alias != "sha256"
        && !RESERVED_TAG_PREFIXES
            .iter()
            .any(|prefix| alias.starts_with(prefix));
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what: "alias",
            value: alias.to_owned(),
            reason: "use a lowercase letter followed by lowercase letters, digits, '-' or '_' (e.g. production, canary), not starting with digest- or event-",
        })
    }
}

/// Parses a version: semantic versioning `X.Y.Z` with an optional
/// pre-release, no build metadata (`+` is not valid in an OCI tag).
pub fn parse_version(version: &str) -> Result<semver::Version> {
    let invalid = || Error::InvalidName {
        what: "version",
        value: version.to_owned(),
        reason: "use semantic versioning X.Y.Z, optionally with a pre-release such as 1.2.0-rc.1",
    };
    let parsed = semver::Version::parse(version).map_err(|_| invalid())?;
    if !parsed.build.is_empty() || version.len() > MAX_NAME {
        return Err(invalid());
    }
    Ok(parsed)
}

/// What follows the `@` of a model reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A version, `1.2.0`.
    Version(semver::Version),
    /// An alias, `production`.
    Alias(String),
    /// A manifest digest, `sha256:…`.
    Digest(Digest),
    /// Nothing: the highest version.
    Latest,
}

/// A model reference: `NAME`, `NAME@VERSION`, `NAME@ALIAS` or `NAME@sha256:…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The model.
    pub name: String,
    /// Which version of it.
    pub selector: Selector,
}

impl std::str::FromStr for Reference {
    type Err = Error;

    fn from_str(text: &str) -> Result<Reference> {
        let (name, selector) = match text.split_once('@') {
            None => (text, Selector::Latest),
            Some((name, selector)) if selector.starts_with("sha256:") => {
                (name, Selector::Digest(selector.parse()?))
            }
            Some((name, selector))
                if selector.starts_with(|first: char| first.is_ascii_digit()) =>
            {
                (name, Selector::Version(parse_version(selector)?))
            }
            Some((name, selector)) => {
                validate_alias(selector)?;
                (name, Selector::Alias(selector.to_owned()))
            }
        };
        validate_name(name)?;
        Ok(Reference {
            name: name.to_owned(),
            selector,
        })
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.selector {
            Selector::Version(version) => write!(f, "{}@{version}", self.name),
            Selector::Alias(alias) => write!(f, "{}@{alias}", self.name),
            Selector::Digest(digest) => write!(f, "{}@{digest}", self.name),
            Selector::Latest => write!(f, "{}", self.name),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["tiny", "llama-3.1-8b", "a", "support_bot2"] {
            validate_name(good).unwrap();
        }
        for bad in [
            "", "Tiny", "../etc", "a..b", "-a", "a-", "a/b", "a b", "a\nb", ".", "..",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        assert!(validate_name(&"a".repeat(129)).is_err());
    }

    #[test]
    fn aliases_and_versions() {
        validate_alias("production").unwrap();
        validate_alias("canary-2").unwrap();
        for bad in ["", "1.0", "Prod", "a/b", "sha256", "a\u{7}"] {
            assert!(validate_alias(bad).is_err(), "{bad:?}");
        }
        parse_version("1.2.3").unwrap();
        parse_version("1.2.3-rc.1").unwrap();
        for bad in ["1.2", "v1.2.3", "1.2.3+build", "../1.2.3"] {
            assert!(parse_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn references() {
        let reference: Reference = "tiny@production".parse().unwrap();
        assert_eq!(reference.selector, Selector::Alias("production".to_owned()));
        let reference: Reference = "tiny@0.2.0".parse().unwrap();
        assert_eq!(
            reference.selector,
            Selector::Version(semver::Version::new(0, 2, 0))
        );
        let digest = Digest::of_bytes(b"x");
        let reference: Reference = format!("tiny@{digest}").parse().unwrap();
        assert_eq!(reference.selector, Selector::Digest(digest));
        assert_eq!(reference.to_string(), format!("tiny@{digest}"));
        let reference: Reference = "tiny".parse().unwrap();
        assert_eq!(reference.selector, Selector::Latest);
        assert!("tiny@".parse::<Reference>().is_err());
        assert!("../x@production".parse::<Reference>().is_err());
    }
}
