//! Where the CLI's text goes: data to stdout, diagnostics to stderr, workflow commands where the runner reads them.

use std::io::{IsTerminal as _, Write as _};

use gantry_ci::{EnvVars, Environment, Platform, escape_data};
use gantry_core::Redactor;

use crate::cli::{GlobalArgs, OutputFormat};

/// Prints for the CLI. Library crates never print; they hand text here.
/// Everything printed passes through the redactor the whole command shares.
#[derive(Debug)]
pub(crate) struct Printer {
    color: bool,
    quiet: bool,
    format: OutputFormat,
    platform: Platform,
    redactor: Redactor,
}

impl Printer {
    pub(crate) fn new(environment: &Environment) -> Printer {
        let color = environment.get(EnvVars::NO_COLOR).is_none() && std::io::stderr().is_terminal();
        Printer {
            color,
            quiet: false,
            format: OutputFormat::Text,
            platform: Platform::Local,
            redactor: Redactor::new(),
        }
    }

    /// The redactor every byte the command writes passes through.
    pub(crate) fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    pub(crate) fn configure(&mut self, global: &GlobalArgs) {
        self.quiet = global.quiet;
        self.format = global.format;
    }

    pub(crate) fn set_platform(&mut self, platform: Platform) {
        self.platform = platform;
    }

    /// Whether progress lines are wanted: not with `--quiet`, and only where
    /// someone watches (a terminal, or a CI log).
    pub(crate) fn shows_progress(&self, in_ci: bool) -> bool {
        !self.quiet && (in_ci || std::io::stderr().is_terminal())
    }

    pub(crate) fn format(&self) -> OutputFormat {
        self.format
    }

    /// A stream for workflow commands: stdout, unless stdout carries JSON.
    /// What passes through it is redacted a line at a time.
    pub(crate) fn commands(&self) -> Box<dyn std::io::Write> {
        Box::new(self.redactor.writer(self.raw_commands()))
    }

    /// The workflow-command stream without redaction: only for
    /// `::add-mask::`, whose whole point is to carry the value.
    pub(crate) fn raw_commands(&self) -> Box<dyn std::io::Write> {
        match self.format {
            OutputFormat::Text => Box::new(std::io::stdout()),
            OutputFormat::Json => Box::new(std::io::stderr()),
        }
    }

    /// Data for the user on stdout.
    pub(crate) fn data(&self, text: &str) {
        let text = self.redactor.redact(text);
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
    }

    /// One JSON document on stdout.
    /// Redacted value by value, so it stays valid JSON.
    pub(crate) fn json(&self, value: &serde_json::Value) {
        let text = self
            .redactor
            .to_json_pretty(value)
            .unwrap_or_else(|error| format!("{{\"error\": \"{error}\"}}"));
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
    }

    /// Progress and details, unless `--quiet`.
    pub(crate) fn info(&self, text: &str) {
        if !self.quiet {
            let text = self.redactor.redact(text);
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
    }

    pub(crate) fn warning(&self, text: &str) {
        let text = &*self.redactor.redact(text);
        if self.platform == Platform::GitHub {
            let _ = writeln!(
                self.commands(),
                "::warning title=gantry::{}",
                escape_data(text)
            );
        } else {
            let label = self.paint("warning", "33");
            let _ = writeln!(std::io::stderr().lock(), "{label}: {text}");
        }
    }

    pub(crate) fn error(&self, text: &str) {
        let text = &*self.redactor.redact(text);
        if self.platform == Platform::GitHub {
            let _ = writeln!(
                self.commands(),
                "::error title=gantry::{}",
                escape_data(text)
            );
        }
        let label = self.paint("error", "31");
        let _ = writeln!(std::io::stderr().lock(), "{label}: {text}");
    }

    /// clap's own message (usage, help, version), redacted like the rest:
    /// a value quoted back from argv can be a credential.
    pub(crate) fn clap_error(&self, error: &clap::Error) {
        let text = error.render().to_string();
        let text = self.redactor.redact(&text);
        let _ = if error.use_stderr() {
            write!(std::io::stderr().lock(), "{text}")
        } else {
            write!(std::io::stdout().lock(), "{text}")
        };
    }

    fn paint(&self, text: &str, code: &str) -> String {
        if self.color {
            format!("\x1b[1;{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}
