//! GitHub workflow commands (`::error …::`) with the toolkit's escaping, and GitLab log sections.

use crate::outputs::random_hex;

/// Escapes a command's message the way `@actions/core` does.
pub fn escape_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a command property (`file=`, `title=`…): as data, plus `:` and `,`.
pub fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// The line that opens a collapsible log group.
pub fn group_start(platform: crate::Platform, name: &str, title: &str) -> String {
    match platform {
        crate::Platform::GitHub => format!("::group::{}", escape_data(title)),
        crate::Platform::GitLab => {
            format!(
                "\x1b[0Ksection_start:{}:{}[collapsed=true]\r\x1b[0K{title}",
                unix_seconds(),
                section_name(name)
            )
        }
        crate::Platform::Local => format!("== {title}"),
    }
}

/// The line that closes a log group opened by [`group_start`].
pub fn group_end(platform: crate::Platform, name: &str) -> Option<String> {
    match platform {
        crate::Platform::GitHub => Some("::endgroup::".to_owned()),
        crate::Platform::GitLab => Some(format!(
            "\x1b[0Ksection_end:{}:{}\r\x1b[0K",
            unix_seconds(),
            section_name(name)
        )),
        crate::Platform::Local => None,
    }
}

fn section_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// Stops the runner from interpreting workflow commands in untrusted text
/// (dataset rows, model output) until [`StopCommands::resume`]. The token is
/// random so the text cannot end the pause itself.
#[derive(Debug)]
pub struct StopCommands {
    token: String,
}

impl StopCommands {
    /// A pause with a fresh random token.
    pub fn new() -> StopCommands {
        StopCommands {
            token: random_hex(16),
        }
    }

    /// The line that pauses command processing.
    pub fn pause(&self) -> String {
        format!("::stop-commands::{}", self.token)
    }

    /// The line that resumes command processing.
    pub fn resume(&self) -> String {
        format!("::{}::", self.token)
    }
}

impl Default for StopCommands {
    fn default() -> StopCommands {
        StopCommands::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_follows_the_toolkit() {
        let table = [
            ("plain", "plain", "plain"),
            ("100%\r\nnext", "100%25%0D%0Anext", "100%25%0D%0Anext"),
            ("a:b,c", "a:b,c", "a%3Ab%2Cc"),
            ("%0A", "%250A", "%250A"),
        ];
        for (input, data, property) in table {
            assert_eq!(escape_data(input), data, "{input:?}");
            assert_eq!(escape_property(input), property, "{input:?}");
        }
    }

    #[test]
    fn stop_commands_use_a_random_token() {
        let first = StopCommands::new();
        let second = StopCommands::new();
        assert_ne!(first.pause(), second.pause());
        let token = first
            .pause()
            .strip_prefix("::stop-commands::")
            .expect("prefix")
            .to_owned();
        assert_eq!(token.len(), 32);
        assert_eq!(first.resume(), format!("::{token}::"));
    }

    #[test]
    fn groups_per_platform() {
        assert_eq!(
            group_start(crate::Platform::GitHub, "x", "Rows 1:2"),
            "::group::Rows 1:2"
        );
        assert_eq!(
            group_end(crate::Platform::GitHub, "x").as_deref(),
            Some("::endgroup::")
        );
        let gitlab = group_start(crate::Platform::GitLab, "parse rows", "Rows");
        assert!(
            gitlab.starts_with("\x1b[0Ksection_start:")
                && gitlab.contains(":parse_rows[collapsed=true]\r\x1b[0KRows"),
            "{gitlab:?}"
        );
    }
}
