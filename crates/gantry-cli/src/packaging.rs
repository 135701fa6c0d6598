//! How each command is packaged: action kind, outputs, reports, and its inputs read off clap.
//!
//! `cargo xtask codegen` renders `actions/<name>/action.yml`, the root
//! `action.yml` and the GitLab CI/CD components `templates/<name>.yml` from this module, so a flag
//! added in [`crate::cli`] reaches every face with no hand edits.

use gantry_ci::{InputKind, InputSpec};

/// gantry's version: the release the generated actions and templates point at.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The registry that hosts gantry's images.
pub const IMAGE_REPOSITORY: &str = "ghcr.io/gantry-dev/gantry";

/// An output a command sets: the one definition of its name. Handlers set
/// outputs by this type and `commands/publish.rs` writes them; the action
/// metadata and templates list them from [`PACKAGED_COMMANDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Output {
    /// `verdict`.
    Verdict,
    /// `published`.
    Published,
    /// `comment-url`.
    CommentUrl,
    /// `summary-file`.
    SummaryFile,
    /// `report`.
    Report,
    /// `lock`.
    Lock,
    /// `summary`.
    Summary,
    /// `dataset-digest`.
    DatasetDigest,
    /// `records`.
    Records,
    /// `errors`.
    Errors,
    /// `warnings`.
    Warnings,
    /// `shard-file`.
    Shard,
    /// `partition-file`.
    Partition,
    /// `results`.
    Results,
    /// `requests`.
    Requests,
    /// `regressions`.
    Regressions,
    /// `improvements`.
    Improvements,
    /// `inconclusive`.
    Inconclusive,
    /// `model-name`.
    Model,
    /// `model-version`.
    Version,
    /// `digest`.
    Digest,
    /// `uri`.
    Uri,
    /// `reference`.
    Reference,
    /// `created`.
    Created,
    /// `provenance-file`.
    ProvenanceFile,
    /// `run`.
    RunId,
    /// `status`.
    Status,
    /// `run-record`.
    RunRecord,
    /// `checkpoint`.
    Checkpoint,
    /// `model-dir`.
    ModelDir,
    /// `final-metrics`.
    FinalMetrics,
    /// `manifest`.
    Manifest,
    /// `outcome`.
    RolloutOutcome,
    /// `final-weight`.
    FinalWeight,
    /// `stable-version`.
    StableVersion,
    /// `canary-version`.
    CanaryVersion,
    /// `deployment-id`.
    DeploymentId,
    /// `health`.
    Health,
    /// `issue-url`.
    IssueUrl,
    /// `size-ratio`.
    SizeRatio,
    /// `quality-delta`.
    QualityDelta,
}

impl Output {
    /// The output's name in action metadata, `$GITHUB_OUTPUT` and dotenv files.
    pub const fn name(self) -> &'static str {
        match self {
            Output::Verdict => "verdict",
            Output::Published => "published",
            Output::CommentUrl => "comment-url",
            Output::SummaryFile => "summary-file",
            Output::Report => "report",
            Output::Lock => "lock",
            Output::Summary => "summary",
            Output::DatasetDigest => "dataset-digest",
            Output::Records => "records",
            Output::Errors => "errors",
            Output::Warnings => "warnings",
            Output::Shard => "shard-file",
            Output::Partition => "partition-file",
            Output::Results => "results",
            Output::Requests => "requests",
            Output::Regressions => "regressions",
            Output::Improvements => "improvements",
            Output::Inconclusive => "inconclusive",
            Output::Model => "model-name",
            Output::Version => "model-version",
            Output::Digest => "digest",
            Output::Uri => "uri",
            Output::Reference => "reference",
            Output::Created => "created",
            Output::ProvenanceFile => "provenance-file",
            Output::RunId => "run",
            Output::Status => "status",
            Output::RunRecord => "run-record",
            Output::Checkpoint => "checkpoint",
            Output::ModelDir => "model-dir",
            Output::FinalMetrics => "final-metrics",
            Output::Manifest => "manifest",
            Output::RolloutOutcome => "outcome",
            Output::FinalWeight => "final-weight",
            Output::StableVersion => "stable-version",
            Output::CanaryVersion => "canary-version",
            Output::DeploymentId => "deployment-id",
            Output::Health => "health",
            Output::IssueUrl => "issue-url",
            Output::SizeRatio => "size-ratio",
            Output::QualityDelta => "quality-delta",
        }
    }
}

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
    pub outputs: &'static [(Output, &'static str)],
    /// Whether it writes a GitLab Code Quality report.
    pub code_quality: bool,
    /// Whether it writes a JUnit report.
    pub junit: bool,
    /// Whether it writes a GitLab metrics report (OpenMetrics text).
    pub metrics: bool,
    /// The GitLab stage its job runs in unless the `stage` input says
    /// otherwise: one of GitLab's default stages, so a pipeline needs no
    /// `stages:` list to use it.
    pub stage: &'static str,
    /// The input naming the directory its files go to (`out`, `run-dir`),
    /// which the GitLab job uploads besides `.gantry/`.
    pub artifacts_input: Option<&'static str>,
    /// A deployment job: the GitLab template runs it by hand (`when:
    /// manual` unless `rules` say otherwise) in the `environment` input's
    /// environment, which GitLab tracks as a deployment.
    pub manual_environment: bool,
    /// Feather icon for the Marketplace.
    pub icon: &'static str,
    /// Branding colour.
    pub color: &'static str,
}

/// Outputs every command sets when it publishes its result (`commands/publish.rs`).
pub const PUBLISH_OUTPUTS: &[(Output, &str)] = &[
    (Output::Verdict, "pass, warn or fail."),
    (
        Output::Published,
        "Comma-separated list of what was published (summary, comment, status, check).",
    ),
    (
        Output::CommentUrl,
        "Link to the sticky comment, when one was posted and the forge returned a link.",
    ),
    (
        Output::SummaryFile,
        "The Markdown summary file written outside GitHub.",
    ),
];

impl PackagedCommand {
    /// Every output the command sets: the verdict, its own, then the publishing ones.
    pub fn all_outputs(&self) -> impl Iterator<Item = &'static (Output, &'static str)> {
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
            (Output::Report, "Path of report.json."),
            (Output::Lock, "Path of data.lock."),
            (
                Output::Summary,
                "Path of summary.json: pass it as --reference next time to measure drift.",
            ),
            (
                Output::DatasetDigest,
                "sha256 digest of the dataset (from the data lock): the lineage the next steps carry.",
            ),
            (Output::Records, "Records read."),
            (Output::Errors, "Checks that failed."),
            (Output::Warnings, "Checks that warned."),
            (
                Output::Shard,
                "Path of shard-I-of-N.shard, when shard was given: give every shard's file to merge.",
            ),
            (
                Output::Partition,
                "Path of partition-K-of-P.json, when partition was given: give every partition's file to the final merge's partition-results.",
            ),
        ],
        code_quality: true,
        junit: true,
        metrics: false,
        stage: "test",
        artifacts_input: Some("out"),
        manual_environment: false,
        icon: "database",
        color: "green",
    },
    PackagedCommand {
        command: "report",
        action_name: "report",
        title: "gantry report",
        kind: ActionKind::Container,
        outputs: &[
            (
                Output::Errors,
                "Findings of severity error, when findings were given.",
            ),
            (
                Output::Warnings,
                "Findings of severity warning, when findings were given.",
            ),
        ],
        code_quality: true,
        junit: false,
        metrics: false,
        stage: "test",
        artifacts_input: None,
        manual_environment: false,
        icon: "message-square",
        color: "blue",
    },
    PackagedCommand {
        command: "eval",
        action_name: "eval",
        title: "gantry eval",
        kind: ActionKind::Container,
        outputs: &[
            (
                Output::Results,
                "Path of results.jsonl: per-item answers and scores, the candidate for eval-gate.",
            ),
            (
                Output::Summary,
                "Path of summary.json: means per task and metric, latency, failed requests.",
            ),
            (Output::Requests, "Requests sent."),
            (Output::Errors, "Requests that failed after every retry."),
        ],
        code_quality: false,
        junit: false,
        metrics: false,
        stage: "test",
        artifacts_input: Some("out"),
        manual_environment: false,
        icon: "activity",
        color: "yellow",
    },
    PackagedCommand {
        command: "eval-gate",
        action_name: "eval-gate",
        title: "gantry eval-gate",
        kind: ActionKind::Container,
        outputs: &[
            (Output::Report, "Path of gate.json."),
            (
                Output::Regressions,
                "Gated metrics that regressed (rows that failed).",
            ),
            (
                Output::Improvements,
                "Gated metrics that improved significantly.",
            ),
            (
                Output::Inconclusive,
                "Gated metrics whose interval straddles the margin.",
            ),
        ],
        code_quality: false,
        junit: true,
        metrics: true,
        stage: "test",
        artifacts_input: Some("out"),
        manual_environment: false,
        icon: "check-square",
        color: "purple",
    },
    PackagedCommand {
        command: "register",
        action_name: "register-model",
        title: "gantry register",
        kind: ActionKind::Container,
        outputs: &[
            (Output::Model, "The model's name (the name input)."),
            (
                Output::Version,
                "The version registered (or the existing one for content already registered): the version input, or the one auto chose.",
            ),
            (
                Output::Digest,
                "The manifest digest (sha256): the model's identity, what deploys pin.",
            ),
            (Output::Uri, "The registry's URI."),
            (
                Output::Reference,
                "NAME@sha256:DIGEST, for gantry registry and deploy steps.",
            ),
            (
                Output::Created,
                "false when the same content was already registered.",
            ),
            (
                Output::ProvenanceFile,
                "Path of the in-toto statement, when the provenance input was given.",
            ),
        ],
        code_quality: false,
        junit: false,
        metrics: false,
        stage: "deploy",
        artifacts_input: None,
        manual_environment: false,
        icon: "package",
        color: "orange",
    },
    PackagedCommand {
        command: "train",
        action_name: "train-on-runner",
        title: "gantry train",
        kind: ActionKind::Composite,
        outputs: &[
            (
                Output::RunId,
                "The run's id: the run-id input, or the one gantry made.",
            ),
            (
                Output::Status,
                "succeeded, failed, timed_out or cancelled (rendered for a Kubernetes manifest).",
            ),
            (Output::RunRecord, "Path of run.json."),
            (
                Output::Checkpoint,
                "The newest complete checkpoint left, if any.",
            ),
            (
                Output::ModelDir,
                "The directory the final model was written to (GANTRY_OUTPUT_DIR): give it to register-model's model-dir.",
            ),
            (
                Output::FinalMetrics,
                "The last value of every metric, as a JSON object.",
            ),
            (
                Output::Manifest,
                "The Kubernetes manifest written with --kubernetes-manifest or --backend kubernetes --dry-run.",
            ),
        ],
        code_quality: false,
        junit: false,
        metrics: false,
        stage: "build",
        artifacts_input: Some("run-dir"),
        manual_environment: false,
        icon: "cpu",
        color: "red",
    },
    PackagedCommand {
        command: "deploy-canary",
        action_name: "deploy-canary",
        title: "gantry deploy-canary",
        kind: ActionKind::Composite,
        outputs: &[
            (
                Output::RolloutOutcome,
                "promoted, rolled-back, paused or aborted (progressing, from --action status while a rollout runs).",
            ),
            (
                Output::FinalWeight,
                "The canary's share of traffic when the command ended, in percent.",
            ),
            (
                Output::StableVersion,
                "The version serving as stable afterwards (the canary when promoted).",
            ),
            (Output::CanaryVersion, "The version rolled out."),
            (
                Output::Report,
                "Path of the rollout report (Markdown); rollout.json and timeline.svg lie beside it.",
            ),
            (
                Output::DeploymentId,
                "The rollout's id: the router lease holder, and the key of its forge deployment.",
            ),
        ],
        code_quality: false,
        junit: false,
        metrics: false,
        stage: "deploy",
        artifacts_input: Some("out"),
        manual_environment: true,
        icon: "git-branch",
        color: "green",
    },
    PackagedCommand {
        command: "prepare",
        action_name: "prepare",
        title: "gantry prepare",
        kind: ActionKind::Composite,
        outputs: &[
            (
                Output::Reference,
                "NAME@sha256:DIGEST of the variant, when it was registered.",
            ),
            (
                Output::Digest,
                "The variant's manifest digest, when registered.",
            ),
            (Output::Version, "The variant's version, when registered."),
            (
                Output::SizeRatio,
                "The variant's weight bytes over its parent's.",
            ),
            (
                Output::QualityDelta,
                "The largest change of a gated metric, variant minus parent (negative: worse), when the gate ran.",
            ),
            (
                Output::Report,
                "Path of prepare.json; prepare.md and gate.json lie beside it.",
            ),
        ],
        code_quality: false,
        junit: false,
        metrics: false,
        stage: "build",
        artifacts_input: Some("out"),
        manual_environment: false,
        icon: "layers",
        color: "purple",
    },
    PackagedCommand {
        command: "monitor",
        action_name: "monitor",
        title: "gantry monitor",
        kind: ActionKind::Container,
        outputs: &[
            (
                Output::Health,
                "healthy, degraded or failing (failing exits 1; a check whose source failed exits 2).",
            ),
            (
                Output::Report,
                "Path of monitor.json; monitor.md and the trend charts lie beside it.",
            ),
            (
                Output::IssueUrl,
                "The tracking issue opened or updated, when the forge gave a link.",
            ),
        ],
        code_quality: false,
        junit: false,
        metrics: false,
        stage: "test",
        artifacts_input: Some("out"),
        manual_environment: false,
        icon: "eye",
        color: "blue",
    },
];

/// Inputs named otherwise than their flag, as (command, flag, input): an
/// input never shares a name with an output of the same action (`verdict`
/// is every command's output) or with an input the action adds itself.
pub const RENAMED_INPUTS: &[(&str, &str, &str)] = &[
    ("report", "verdict", "given-verdict"),
    // The composite action's own `version` input picks gantry's release.
    ("prepare", "version", "variant-version"),
];

/// One input of a command, with what the metadata generators need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputDescription {
    /// Kebab-case name of the input.
    pub name: String,
    /// The long flag it becomes.
    pub flag: String,
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
    /// Whether its value is a number (`integer` or `float`), `None` for text.
    pub number: Option<NumberKind>,
    /// A regular expression every value must match, for free-text inputs
    /// that reach the command line (GitLab checks it before the job runs).
    pub pattern: Option<&'static str>,
}

/// What kind of number an input takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberKind {
    /// A whole number, not negative.
    Integer,
    /// Any decimal number.
    Float,
}

/// A CI variable in an input's value (`$CI_NODE_INDEX`, `${NAME}`): GitLab
/// checks a pattern against the value as written, before expanding it.
pub const VARIABLE_PATTERN: &str = r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?";

/// Patterns of free-text inputs, by flag: what the command would accept,
/// or CI variables that will stand for it.
pub const INPUT_PATTERNS: &[(&str, &str)] = &[
    (
        "name",
        r"^([A-Za-z0-9._-]|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)+$",
    ),
    ("publish", r"^[a-z,]*$"),
    (
        "shard",
        r"^(([0-9]+|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)/([0-9]+|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?))?$",
    ),
    (
        "run-id",
        r"^([A-Za-z0-9._-]|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)*$",
    ),
    (
        "gpus",
        r"^(none|all|auto|[0-9]+( *, *[0-9]+)*|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?)$",
    ),
];

/// The inputs of subcommand `command`: its long flags, globals and help excluded.
pub fn inputs_of(command: &clap::Command) -> Vec<InputDescription> {
    let renamed = |flag: &str| {
        RENAMED_INPUTS
            .iter()
            .find(|(renamed_command, renamed_flag, _)| {
                *renamed_command == command.get_name() && *renamed_flag == flag
            })
            .map_or_else(|| flag.to_owned(), |(_, _, input)| (*input).to_owned())
    };
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
            let parser = arg.get_value_parser().type_id();
            let is = |id: std::any::TypeId| parser == id;
            let number = if [
                std::any::TypeId::of::<u8>(),
                std::any::TypeId::of::<u16>(),
                std::any::TypeId::of::<u32>(),
                std::any::TypeId::of::<u64>(),
                std::any::TypeId::of::<usize>(),
            ]
            .into_iter()
            .any(is)
            {
                Some(NumberKind::Integer)
            } else if is(std::any::TypeId::of::<f64>()) || is(std::any::TypeId::of::<f32>()) {
                Some(NumberKind::Float)
            } else {
                None
            };
            let pattern = INPUT_PATTERNS
                .iter()
                .find(|(flag, _)| *flag == name)
                .map(|(_, pattern)| *pattern);
            Some(InputDescription {
                name: renamed(&name),
                flag: name,
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
                number: if kind == InputKind::Value {
                    number
                } else {
                    None
                },
                pattern,
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
            flag: input.flag,
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
                "file",
                "title",
                "given-verdict",
                "findings",
                "strict",
                "name",
                "publish"
            ]
        );
        let file = &inputs[0];
        assert!(file.required && file.kind == InputKind::Value && file.default.is_none());
        let verdict = &inputs[2];
        assert_eq!(verdict.flag, "verdict");
        assert_eq!(verdict.options, ["pass", "warn", "fail"]);
        assert_eq!(verdict.default.as_deref(), Some("pass"));
        assert_eq!(inputs[4].kind, InputKind::Switch);
        let publish = &inputs[6];
        assert!(publish.comma_separated);
        assert_eq!(publish.default.as_deref(), Some("summary,comment,status"));
    }

    #[test]
    fn no_input_shares_a_name_with_an_output() {
        let root = crate::cli::command();
        for packaged in PACKAGED_COMMANDS {
            let command = root
                .find_subcommand(packaged.command)
                .unwrap_or_else(|| panic!("no subcommand {}", packaged.command));
            for input in inputs_of(command) {
                assert!(
                    !packaged
                        .all_outputs()
                        .any(|(output, _)| output.name() == input.name),
                    "{}: the input {} is also an output",
                    packaged.command,
                    input.name
                );
            }
        }
    }

    #[test]
    fn every_renamed_input_names_a_real_flag() {
        let root = crate::cli::command();
        for (command, flag, input) in RENAMED_INPUTS {
            let command = root.find_subcommand(command).expect("command");
            assert!(
                inputs_of(command)
                    .iter()
                    .any(|described| described.flag == *flag && described.name == *input),
                "{flag} → {input}"
            );
        }
    }
}
