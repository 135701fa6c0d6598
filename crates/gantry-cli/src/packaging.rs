//! How each command is packaged: action kind, outputs, reports, and its inputs read off clap.
//!
//! `cargo xtask codegen` renders `actions/<name>/action.yml`, the root
//! `action.yml` and `gitlab-templates/<name>.yml` from this module, so a flag
//! added in [`crate::cli`] reaches every face with no hand edits.

use gantry_ci::{InputKind, InputSpec};

/// gantry's version: the release the generated actions and templates point at.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The registry that hosts gantry's images.
pub const IMAGE_REPOSITORY: &str = "ghcr.io/gantry-dev/gantry";

/// How a command is packaged for GitHub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// A container action running the prebuilt image.
    Container,
    /// A composite action running the binary on the runner host (it must see
    /// the host's GPUs and Python environment).
    Composite,
}

/// One command as shipped in actions and templates.
#[derive(Debug, Clone, Copy)]
pub struct PackagedCommand {
    /// The subcommand.
    pub command: &'static str,
    /// Action and template folder/file name.
    pub action_name: &'static str,
    /// Action display name.
    pub title: &'static str,
    /// How it is packaged for GitHub.
    pub kind: ActionKind,
    /// Outputs of its own, with descriptions; [`PUBLISH_OUTPUTS`] come with every command.
    pub outputs: &'static [(&'static str, &'static str)],
    /// Whether it writes a GitLab Code Quality report.
    pub code_quality: bool,
    /// Whether it writes a JUnit report.
    pub junit: bool,
    /// Whether it writes a GitLab metrics report (OpenMetrics text).
    pub metrics: bool,
    /// Feather icon for the Marketplace.
    pub icon: &'static str,
    /// Branding colour.
    pub color: &'static str,
}

/// Outputs every command sets when it publishes its result (`commands/publish.rs`).
pub const PUBLISH_OUTPUTS: &[(&str, &str)] = &[
    ("verdict", "pass, warn or fail."),
    (
        "published",
        "Comma-separated list of what was published (summary, comment, status, check).",
    ),
    (
        "comment-url",
        "Link to the sticky comment, when one was posted and the forge returned a link.",
    ),
    (
        "summary-file",
        "The Markdown summary file written outside GitHub.",
    ),
];

impl PackagedCommand {
    /// Every output the command sets: the verdict, its own, then the publishing ones.
    pub fn all_outputs(&self) -> impl Iterator<Item = &'static (&'static str, &'static str)> {
        PUBLISH_OUTPUTS[..1]
            .iter()
            .chain(self.outputs)
            .chain(&PUBLISH_OUTPUTS[1..])
    }
}

/// Every packaged command. A capability adds its line here when it lands.
pub const PACKAGED_COMMANDS: &[PackagedCommand] = &[
    PackagedCommand {
        command: "validate-data",
        action_name: "validate-data",
        title: "gantry validate-data",
        kind: ActionKind::Container,
        outputs: &[
            ("report", "Path of report.json."),
            ("lock", "Path of data.lock."),
            (
                "summary",
                "Path of summary.json: pass it as --reference next time to measure drift.",
            ),
            (
                "dataset-digest",
                "sha256 digest of the dataset (from the data lock): the lineage the next steps carry.",
            ),
            ("records", "Records read."),
            ("errors", "Checks that failed."),
            ("warnings", "Checks that warned."),
        ],
        code_quality: true,
        junit: true,
        metrics: false,
        icon: "database",
        color: "green",
    },
    PackagedCommand {
        command: "report",
        action_name: "report",
        title: "gantry report",
        kind: ActionKind::Container,
        outputs: &[],
        code_quality: true,
        junit: false,
        metrics: false,
        icon: "message-square",
        color: "blue",
    },
    PackagedCommand {
        command: "eval-gate",
        action_name: "eval-gate",
        title: "gantry eval-gate",
        kind: ActionKind::Container,
        outputs: &[
            ("report", "Path of gate.json."),
            (
                "regressions",
                "Gated metrics that regressed (rows that failed).",
            ),
            ("improvements", "Gated metrics that improved significantly."),
            (
                "inconclusive",
                "Gated metrics whose interval straddles the margin.",
            ),
        ],
        code_quality: false,
        junit: true,
        metrics: true,
        icon: "check-square",
        color: "purple",
    },
    PackagedCommand {
        command: "register",
        action_name: "register-model",
        title: "gantry register",
        kind: ActionKind::Container,
        outputs: &[
            ("name", "The model's name."),
            (
                "version",
                "The version registered (or the existing one for content already registered).",
            ),
            (
                "digest",
                "The manifest digest (sha256): the model's identity, what deploys pin.",
            ),
            ("uri", "The registry's URI."),
            (
                "reference",
                "NAME@sha256:DIGEST, for gantry registry and deploy steps.",
            ),
            (
                "created",
                "false when the same content was already registered.",
            ),
            (
                "provenance",
                "Path of the in-toto statement, when --provenance was given.",
            ),
        ],
        code_quality: false,
        junit: false,
        metrics: false,
        icon: "package",
        color: "orange",
    },
    PackagedCommand {
        command: "train",
        action_name: "train-on-runner",
        title: "gantry train",
        kind: ActionKind::Composite,
        outputs: &[
            ("run-id", "The run's id."),
            (
                "status",
                "succeeded, failed, timed_out or cancelled (rendered for a Kubernetes manifest).",
            ),
            ("run-record", "Path of run.json."),
            ("checkpoint", "The newest complete checkpoint left, if any."),
            (
                "output-dir",
                "The directory the final model was written to (GANTRY_OUTPUT_DIR): give it to register-model's model-dir.",
            ),
            (
                "final-metrics",
                "The last value of every metric, as a JSON object.",
            ),
            (
                "manifest",
                "The Kubernetes manifest written with --kubernetes-manifest or --backend kubernetes --dry-run.",
            ),
        ],
        code_quality: false,
        junit: false,
        metrics: false,
        icon: "cpu",
        color: "red",
    },
];

/// One input of a command, with what the metadata generators need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputDescription {
    /// Kebab-case name (the long flag).
    pub name: String,
    /// One-line description from the flag's doc comment.
    pub description: String,
    /// How its text becomes flags.
    pub kind: InputKind,
    /// Whether the command needs it.
    pub required: bool,
    /// The flag's default, as text.
    pub default: Option<String>,
    /// Allowed values, for enumerations.
    pub options: Vec<String>,
    /// Whether several values may be given comma-separated.
    pub comma_separated: bool,
}

/// The inputs of subcommand `command`: its long flags, globals and help excluded.
pub fn inputs_of(command: &clap::Command) -> Vec<InputDescription> {
    command
        .get_arguments()
        .filter(|arg| !arg.is_global_set() && !arg.is_hide_set())
        .filter_map(|arg| {
            let name = arg.get_long()?.to_owned();
            // clap's own --help and --version, not a command's `--version X`.
            if matches!(
                arg.get_action(),
                clap::ArgAction::Help
                    | clap::ArgAction::HelpShort
                    | clap::ArgAction::HelpLong
                    | clap::ArgAction::Version
            ) {
                return None;
            }
            let kind = match arg.get_action() {
                clap::ArgAction::SetTrue | clap::ArgAction::SetFalse => InputKind::Switch,
                clap::ArgAction::Append => InputKind::List,
                _ if arg
                    .get_num_args()
                    .is_some_and(|range| range.max_values() > 1) =>
                {
                    InputKind::List
                }
                _ => InputKind::Value,
            };
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .collect();
            let default = if kind == InputKind::Switch || defaults.is_empty() {
                None
            } else {
                Some(defaults.join(","))
            };
            let options = arg
                .get_possible_values()
                .iter()
                .filter(|value| !value.is_hide_set())
                .map(|value| value.get_name().to_owned())
                .collect::<Vec<_>>();
            let comma_separated = arg.get_value_delimiter() == Some(',');
            Some(InputDescription {
                name,
                description: arg.get_help().map(ToString::to_string).unwrap_or_default(),
                kind: if comma_separated {
                    InputKind::Value
                } else {
                    kind
                },
                required: arg.is_required_set(),
                default,
                options: if comma_separated || kind == InputKind::Switch {
                    Vec::new()
                } else {
                    options
                },
                comma_separated,
            })
        })
        .collect()
}

/// The input specifications the CI layer uses to turn inputs into flags.
pub fn input_specs(command: &clap::Command) -> Vec<InputSpec> {
    inputs_of(command)
        .into_iter()
        .map(|input| InputSpec {
            name: input.name,
            kind: input.kind,
            required: input.required,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_packaged_command_exists_and_has_inputs() {
        let root = crate::cli::command();
        for packaged in PACKAGED_COMMANDS {
            let command = root
                .find_subcommand(packaged.command)
                .unwrap_or_else(|| panic!("no subcommand {}", packaged.command));
            assert!(
                !inputs_of(command).is_empty(),
                "{} has no inputs",
                packaged.command
            );
        }
    }

    #[test]
    fn report_inputs_are_read_off_clap() {
        let root = crate::cli::command();
        let report = root.find_subcommand("report").expect("report");
        let inputs = inputs_of(report);
        let names: Vec<&str> = inputs.iter().map(|input| input.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "file", "title", "verdict", "findings", "strict", "name", "publish"
            ]
        );
        let file = &inputs[0];
        assert!(file.required && file.kind == InputKind::Value && file.default.is_none());
        let verdict = &inputs[2];
        assert_eq!(verdict.options, ["pass", "warn", "fail"]);
        assert_eq!(verdict.default.as_deref(), Some("pass"));
        assert_eq!(inputs[4].kind, InputKind::Switch);
        let publish = &inputs[6];
        assert!(publish.comma_separated);
        assert_eq!(publish.default.as_deref(), Some("summary,comment,status"));
    }
}
