//! Argument definitions (clap derive): global flags and one `…Args` struct per subcommand.
//!
//! Every long flag of a subcommand is also an action input and a GitLab
//! template input of the same name; doc comments become their descriptions.

use clap::{Args, Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  passed (or the command did its job)
  1  the gate, check or rollout said no (a verdict)
  2  gantry could not do its job (bad input, unreachable service, bug)

Inputs: in GitHub Actions every flag can be given as an action input
(INPUT_<NAME>); in GitLab CI as a template input (GANTRY_INPUT_<NAME>).
Flags on the command line win over inputs.";

/// CI/CD for large language models: validate data, train, gate on evals,
/// register and deploy models, the same on GitHub, GitLab and a laptop.
#[derive(Debug, Parser)]
#[command(name = "gantry", version, after_long_help = EXIT_CODES, after_help = EXIT_CODES)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// How to print results: text for people, json for machines.
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Which CI to behave as; auto detects GitHub Actions and GitLab CI.
    #[arg(long, global = true, value_enum, default_value_t = CiChoice::Auto)]
    pub ci: CiChoice,
    /// Print only errors and the result.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Readable text.
    Text,
    /// One JSON document on stdout.
    Json,
}

/// Which CI to behave as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CiChoice {
    /// Detect from the environment.
    Auto,
    /// GitHub Actions.
    Github,
    /// GitLab CI.
    Gitlab,
    /// Neither: print outputs, write summaries to files.
    Local,
}

/// gantry's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check training data: parse, format rules, empty content, token limits, duplicates, secrets and personal data; write a data lock.
    ValidateData(ValidateDataArgs),
    /// Publish a Markdown report to the job summary, a sticky PR/MR comment, a commit status or a check run.
    Report(ReportArgs),
    /// Compare a candidate's evaluation with a baseline's, item by item: pass, fail or inconclusive, with intervals.
    EvalGate(EvalGateArgs),
    /// Run an eval set against an OpenAI-compatible endpoint and write per-item results for eval-gate.
    Eval(EvalArgs),
    /// Register a model directory as a content-addressed version with lineage: every file hashed, pickles scanned, stored atomically.
    Register(RegisterArgs),
    /// Inspect and manage registered models: list, show, versions, alias, verify, pull, diff, events.
    Registry(RegistryArgs),
    /// Run a training command on this runner's GPUs (or through Slurm): GPU locks, restarts from checkpoints, metrics, MLflow tracking, run.json.
    Train(Box<TrainArgs>),
    /// Roll out a registered model version: verify it, bring it up beside stable, shift traffic in steps, judge canary against stable, then promote or roll back.
    DeployCanary(Box<DeployCanaryArgs>),
    /// Run the embedded weighted router: a reverse proxy for OpenAI-compatible model servers with an admin API, supervised servers and per-version metrics (a service on the GPU host).
    Router(RouterArgs),
    /// Make a variant of a registered model (quantize, convert, distil) with your command, gate it against its parent, measure its footprint and register it with lineage.
    Prepare(Box<PrepareArgs>),
    /// Check the model in production (weekly): quality against its registered evaluation, service SLOs from Prometheus, input drift, GPUs; report, track an issue, alert. `monitor rules` renders alerting rules and a dashboard.
    Monitor(Box<MonitorArgs>),
    /// Run the documented workflow end to end on the bundled example, with no services: data, validation with drift, training with a crash and its resume, evaluation, two gates, registration, a canary and its promotion.
    Quickstart(QuickstartArgs),
    /// Write the pipeline into a repository: GitHub caller workflows or a GitLab pipeline for pull requests, data updates, the weekly evaluation and deploys, pinned to this gantry's release.
    Init(InitArgs),
    /// The bundled example workload that quickstart runs (tiny-lm: gen-data, train, eval, serve, export); not part of the pipeline.
    #[command(name = "tiny-lm", disable_help_flag = true)]
    TinyLm(TinyLmArgs),
}

/// The name of the subcommand that runs the bundled example workload.
pub const TINY_LM: &str = "tiny-lm";

/// Arguments of `gantry quickstart`.
#[derive(Debug, Args)]
pub struct QuickstartArgs {
    /// Where the data, models, registry, reports and logs go: a new or empty directory (default: a new one in the system's temporary directory, kept afterwards).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<std::path::PathBuf>,
    /// Optimizer steps per model (at least 12); the deliberately worse candidate trains a fifth as many on corrupted answers.
    #[arg(long, default_value_t = 300, value_name = "N")]
    pub steps: u64,
    /// One canary analysis window (deploy-canary's --step-duration).
    #[arg(long, default_value = "6s", value_name = "DURATION", value_parser = parse_duration)]
    pub step_duration: std::time::Duration,
}

/// Arguments of `gantry init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Which forge's pipeline to write: github (caller workflows in .github/workflows/) or gitlab (.gitlab-ci.yml).
    #[arg(long, value_enum)]
    pub forge: InitForge,
    /// The repository to look at and write into.
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub dir: std::path::PathBuf,
    /// Print what would be written, as a unified diff, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Replace files that exist (without it, a file that would change is an error and nothing is written).
    #[arg(long)]
    pub force: bool,
    /// The gantry commit to pin to, 40 hex digits (default: the commit of this gantry's release tag, read with git ls-remote from --release-repository).
    #[arg(long, value_name = "SHA")]
    pub pin: Option<String>,
    /// Where gantry's release tags are read from when --pin is not given.
    #[arg(
        long,
        default_value = "https://github.com/gantry-dev/gantry",
        value_name = "URL"
    )]
    pub release_repository: String,
    /// The model's name in the registry (default: the repository directory's name).
    #[arg(long, value_name = "NAME")]
    pub model_name: Option<String>,
    /// GitLab: the project that publishes gantry's CI/CD components (the Catalog project or your mirror of it).
    #[arg(long, default_value = "gantry-dev/gantry", value_name = "PATH")]
    pub component_project: String,
}

/// The forge `gantry init` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InitForge {
    /// GitHub Actions: caller workflows of gantry's reusable workflows.
    Github,
    /// GitLab CI: a pipeline of gantry's CI/CD components.
    Gitlab,
}

/// Arguments of `gantry tiny-lm`: handed whole to the example's own command line.
#[derive(Debug, Args)]
pub struct TinyLmArgs {
    /// tiny-lm's command and its flags (`gantry tiny-lm --help` lists them).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<String>,
}

/// Arguments of `gantry prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// The parent: NAME@VERSION, NAME@ALIAS or NAME@sha256:…; pulled and verified into the run directory.
    #[arg(long, value_name = "REF")]
    pub from: String,
    /// The variant's model name (e.g. support-bot-int8).
    #[arg(long)]
    pub name: String,
    /// The registry holding the parent, where the variant is registered: file:PATH, oci://HOST/REPO or mlflow+http(s)://HOST.
    #[arg(long, default_value = DEFAULT_REGISTRY, value_name = "URI")]
    pub registry: String,
    /// The variant's version: auto (the next patch version) or X.Y.Z (the action's input is variant-version: its version input picks gantry's release).
    #[arg(long, default_value = "auto")]
    pub version: String,
    /// Aliases to point at the variant once it is registered.
    #[arg(long, num_args = 1.., action = clap::ArgAction::Append, value_name = "ALIAS")]
    pub alias: Vec<String>,
    /// How the variant relates to its parent.
    #[arg(long, value_enum, default_value_t = RelationArg::Quantized)]
    pub relation: RelationArg,
    /// The conversion command, split into words like a shell would (quotes work) but run without one; or give it after --. It reads GANTRY_INPUT_MODEL_DIR and writes GANTRY_OUTPUT_DIR.
    #[arg(long, value_name = "CMD")]
    pub command: Option<String>,
    /// The conversion command's words, after --.
    #[arg(last = true, value_name = "ARGS", hide = true)]
    pub trailing: Vec<String>,
    /// Wall time for the conversion; then SIGTERM, and SIGKILL after --grace.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Between SIGTERM and SIGKILL when the conversion is stopped.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub grace: std::time::Duration,
    /// Serves a model directory ({model_dir} and {port} are replaced), to ask parent and variant the eval set and measure load time, latency and tokens/s.
    #[arg(long, value_name = "CMD")]
    pub serve_command: Option<String>,
    /// The eval set (JSONL items); default: the one registered with the parent (register --eval-set).
    #[arg(long, value_name = "PATH")]
    pub eval_set: Option<std::path::PathBuf>,
    /// The variant's evaluation results on the parent's eval items, gated against the parent's registered evaluation (instead of --serve-command).
    #[arg(long, value_name = "PATH", conflicts_with = "serve_command")]
    pub eval_results: Option<std::path::PathBuf>,
    /// The most the variant may lose on any metric against its parent (a non-inferiority margin).
    #[arg(long, default_value_t = 0.01, value_name = "SHARE", value_parser = parse_share)]
    pub max_drop: f64,
    /// Scorers when the parent has no registered evaluation to take them from.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "normalized-exact"
    )]
    pub scorer: Vec<ScorerArg>,
    /// The model name sent to the served models.
    #[arg(long, value_name = "NAME")]
    pub served_model: Option<String>,
    /// max_tokens of each eval request.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: u32,
    /// Eval requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// How long a served model may take to answer /v1/models.
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_duration)]
    pub health_timeout: std::time::Duration,
    /// Register the variant even when it fails the gate (its lineage records the failed gate, so deploys refuse it).
    #[arg(long)]
    pub register_failed: bool,
    /// Free metadata for the variant and its transformation record, KEY=VALUE, repeatable.
    #[arg(long, num_args = 1.., action = clap::ArgAction::Append, value_name = "KEY=VALUE", value_parser = parse_metadata)]
    pub metadata: Vec<(String, String)>,
    /// Where the parent is pulled (input/), the variant written (output/) and the command's files kept (run/).
    #[arg(long, default_value = ".gantry/prepare/run", value_name = "DIR")]
    pub run_dir: std::path::PathBuf,
    /// Where prepare.json, prepare.md and the gate's report are written.
    #[arg(long, default_value = ".gantry/prepare", value_name = "DIR")]
    pub out: std::path::PathBuf,
    /// Where to publish, comma-separated: summary, comment, status, check (published under the variant's --name).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "summary,comment,status"
    )]
    pub publish: Vec<PublishTarget>,
}

/// How a variant relates to its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RelationArg {
    /// Fewer bits per weight (int8, int4, GGUF quants).
    Quantized,
    /// Another format or dtype, the same weights.
    Converted,
    /// A smaller model trained on the parent's outputs.
    Distilled,
    /// Further trained from the parent.
    Finetuned,
    /// Merged from the parent and others.
    Merged,
}

impl RelationArg {
    /// The relation's name in lineage.
    pub fn as_str(self) -> &'static str {
        match self {
            RelationArg::Quantized => "quantized",
            RelationArg::Converted => "converted",
            RelationArg::Distilled => "distilled",
            RelationArg::Finetuned => "finetuned",
            RelationArg::Merged => "merged",
        }
    }
}

/// Arguments of `gantry monitor`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct MonitorArgs {
    /// `rules`: render the Prometheus alerting rules and Grafana dashboard instead of checking.
    #[command(subcommand)]
    pub action: Option<MonitorAction>,
    /// The version in production: NAME@ALIAS (e.g. tiny@production); its registered evaluation is the quality baseline.
    #[arg(long, value_name = "REF", required = true)]
    pub model: Option<String>,
    /// The registry holding it: file:PATH, oci://HOST/REPO or mlflow+http(s)://HOST.
    #[arg(long, default_value = DEFAULT_REGISTRY, value_name = "URI")]
    pub registry: String,
    /// The environment the issue and alerts name (default: the alias of --model).
    #[arg(long, value_name = "NAME")]
    pub environment: Option<String>,
    /// The production endpoint, OpenAI-compatible (e.g. http://router:8080/v1): the eval set is asked there. Without it the quality check is skipped.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// The model name sent to --endpoint and vLLM's model_name label (default: the model's name).
    #[arg(long, value_name = "NAME")]
    pub served_model: Option<String>,
    /// The eval set (JSONL items); default: the one registered with the version (register --eval-set).
    #[arg(long, value_name = "PATH")]
    pub eval_set: Option<std::path::PathBuf>,
    /// Which API --endpoint is asked with.
    #[arg(long, value_enum, default_value_t = ApiArg::Chat)]
    pub api: ApiArg,
    /// Eval requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// max_tokens of each eval request.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: u32,
    /// Environment variable holding --endpoint's API key, sent as a bearer token and masked in every log.
    #[arg(long, default_value = "OPENAI_API_KEY", value_name = "VAR")]
    pub api_key_env: String,
    /// The eval-gate policy (TOML) the quality check applies; default: block on a significant regression.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<std::path::PathBuf>,
    /// Prometheus' URL (e.g. http://prometheus:9090): service SLOs and DCGM resources. Without it those checks are skipped.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,
    /// Whose metric names to query: the router's, vLLM's, TGI's, or auto (the first with series).
    #[arg(long, value_enum, default_value_t = MetricsFlavorArg::Auto)]
    pub metrics: MetricsFlavorArg,
    /// Label matchers for the server's series, without braces (default: version="<version>" for the router, model_name="<served model>" for vLLM).
    #[arg(long, value_name = "MATCHERS")]
    pub selector: Option<String>,
    /// The window each run judges, ending now.
    #[arg(long, default_value = "7d", value_name = "DURATION", value_parser = parse_duration)]
    pub window: std::time::Duration,
    /// Earlier windows each service signal is compared with (trend).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=12))]
    pub trend_windows: u32,
    /// A latency or error rate this much above the earlier windows' median warns (0.25 = 25%).
    #[arg(long, default_value_t = 0.25, value_name = "SHARE", value_parser = parse_share)]
    pub trend_tolerance: f64,
    /// Requests the window needs; fewer make the service checks inconclusive, never a pass.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub min_requests: u64,
    /// An SLO, NAME=VALUE, repeatable: latency-p95=2s, ttft-p95=500ms, error-rate=1%, tokens-per-second=50, requests-per-second=1 (defaults: error-rate=1%, latency-p95=10s, ttft-p95=2s).
    #[arg(long, value_name = "NAME=VALUE", action = clap::ArgAction::Append, value_parser = parse_slo)]
    pub slo: Vec<gantry_monitor::slo::Threshold>,
    /// A sample of logged production prompts (any format validate-data reads): its drift against the training data's summary.json. Without it the drift check is skipped.
    #[arg(long, value_name = "PATH")]
    pub traffic: Option<String>,
    /// The training data's summary.json (default: the one registered with the version, register --data-summary).
    #[arg(long, value_name = "PATH")]
    pub data_summary: Option<std::path::PathBuf>,
    /// Records --traffic needs; fewer make the drift checks inconclusive.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub min_traffic_records: u64,
    /// Label matchers for DCGM exporter's series, without braces (e.g. Hostname="gpu-1").
    #[arg(long, value_name = "MATCHERS")]
    pub dcgm_selector: Option<String>,
    /// GPUs serving the model, when no DCGM exporter says (for the cost).
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
    /// Cost of one GPU hour: adds the cost per million output tokens.
    #[arg(long, value_name = "AMOUNT", value_parser = parse_cost)]
    pub gpu_hour_cost: Option<f64>,
    /// Alertmanager's URL (e.g. http://alertmanager:9093): each unhealthy check is posted as an alert until the next run, healthy ones resolve.
    #[arg(long, value_name = "URL")]
    pub alertmanager: Option<String>,
    /// How long a posted alert stays active unless the next run renews or resolves it (default: the window plus a day).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub alert_duration: Option<std::time::Duration>,
    /// Labels of the tracking issue, comma-separated (the issue is found by these and a hidden marker).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gantry-monitor",
        value_name = "LIST"
    )]
    pub issue_labels: Vec<String>,
    /// Do not open, update or close the tracking issue.
    #[arg(long)]
    pub no_issue: bool,
    /// The history file each run appends to (keep it as a CI cache or artifact): trends compare the weeks.
    #[arg(
        long,
        default_value = ".gantry/monitor/history.jsonl",
        value_name = "FILE"
    )]
    pub history: std::path::PathBuf,
    /// Where monitor.json, monitor.md, the trend charts and the quality run's results are written.
    #[arg(long, default_value = ".gantry/monitor", value_name = "DIR")]
    pub out: std::path::PathBuf,
    /// Publishing.
    #[command(flatten)]
    pub publishing: PublishArgs,
}

/// What `gantry monitor` does besides checking.
#[derive(Debug, Subcommand)]
pub enum MonitorAction {
    /// Render Prometheus alerting rules (check them with promtool check rules) and a Grafana dashboard for the same SLOs.
    Rules(MonitorRulesArgs),
}

/// Arguments of `gantry monitor rules`.
#[derive(Debug, Args)]
pub struct MonitorRulesArgs {
    /// The model's name (a label on every alert).
    #[arg(long, value_name = "NAME")]
    pub model: String,
    /// The environment (a label on every alert).
    #[arg(long, default_value = "production", value_name = "NAME")]
    pub environment: String,
    /// Whose metric names the rules query.
    #[arg(long, value_enum, default_value_t = MetricsFlavorArg::Router)]
    pub metrics: MetricsFlavorArg,
    /// Label matchers, without braces (e.g. model_name="tiny").
    #[arg(long, default_value = "", value_name = "MATCHERS")]
    pub selector: String,
    /// An SLO, NAME=VALUE, repeatable, as for gantry monitor.
    #[arg(long, value_name = "NAME=VALUE", action = clap::ArgAction::Append, value_parser = parse_slo)]
    pub slo: Vec<gantry_monitor::slo::Threshold>,
    /// The rate window of each rule.
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_duration)]
    pub rate_window: std::time::Duration,
    /// How long a breach lasts before the alert fires.
    #[arg(long = "for", default_value = "15m", value_name = "DURATION", value_parser = parse_duration)]
    pub for_duration: std::time::Duration,
    /// Where gantry-monitor.rules.yml and grafana-dashboard.json are written.
    #[arg(long, default_value = ".gantry/monitor/rules", value_name = "DIR")]
    pub out: std::path::PathBuf,
}

/// Whose metric names monitor queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsFlavorArg {
    /// The first of router, vllm, tgi with series in Prometheus.
    Auto,
    /// gantry's router (gantry_router_*).
    Router,
    /// vLLM (vllm:*).
    Vllm,
    /// Text Generation Inference (tgi_*).
    Tgi,
}

impl MetricsFlavorArg {
    /// The flavor, `None` for auto.
    pub fn flavor(self) -> Option<gantry_monitor::slo::Flavor> {
        match self {
            MetricsFlavorArg::Auto => None,
            MetricsFlavorArg::Router => Some(gantry_monitor::slo::Flavor::Router),
            MetricsFlavorArg::Vllm => Some(gantry_monitor::slo::Flavor::Vllm),
            MetricsFlavorArg::Tgi => Some(gantry_monitor::slo::Flavor::Tgi),
        }
    }
}

fn parse_slo(text: &str) -> Result<gantry_monitor::slo::Threshold, String> {
    gantry_monitor::slo::Threshold::parse(text)
}

fn parse_share(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|share| share.is_finite() && *share >= 0.0)
        .ok_or_else(|| format!("{text:?}: expected a non-negative share such as 0.25"))
}

fn parse_cost(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|cost| cost.is_finite() && *cost > 0.0)
        .ok_or_else(|| format!("{text:?}: expected a positive amount such as 2.50"))
}

/// Arguments of `gantry router`.
#[derive(Debug, Args)]
pub struct RouterArgs {
    /// The address clients send requests to.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// The admin API's address; any address but loopback needs GANTRY_ROUTER_TOKEN.
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    pub admin: std::net::SocketAddr,
    /// Where the router keeps its state (backends, weights, lease) and the servers' logs.
    #[arg(long, default_value = ".gantry/router", value_name = "DIR")]
    pub state_dir: std::path::PathBuf,
    /// Route by a hash of this request header (e.g. x-user-id), so one user sees one version.
    #[arg(long, value_name = "HEADER")]
    pub sticky_header: Option<String>,
    /// How long a model server may take to answer /health and /v1/models.
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = parse_duration)]
    pub health_timeout: std::time::Duration,
    /// How long a retired server has to finish its requests and exit after SIGTERM before SIGKILL.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub grace: std::time::Duration,
    /// Stop the model servers when the router exits (by default they keep running and the next router adopts them).
    #[arg(long)]
    pub stop_backends_on_exit: bool,
    /// Threads answering the data port, each with its own listener and connection pool (0: one per core).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub workers: usize,
}

/// Arguments of `gantry deploy-canary`.
#[derive(Debug, Args)]
pub struct DeployCanaryArgs {
    /// The version to roll out: NAME@VERSION, NAME@ALIAS or NAME@sha256:… (not needed for resume, promote, abort, status).
    #[arg(long, value_name = "REF")]
    pub model: Option<String>,
    /// The registry holding it: file:PATH, oci://HOST/REPO or mlflow+http(s)://HOST.
    #[arg(long, default_value = DEFAULT_REGISTRY, value_name = "URI")]
    pub registry: String,
    /// The alias naming the version in production: the baseline, moved (compare-and-swap) on promotion.
    #[arg(long, default_value = "production", value_name = "ALIAS")]
    pub stable_alias: String,
    /// Where versions run: local (the embedded router on this host) or kubernetes (the engine named by --k8s-engine splits the traffic; gantry judges it from Prometheus).
    #[arg(long, value_enum, default_value_t = DeployTarget::Local)]
    pub target: DeployTarget,
    /// The command that serves a version, run by the router without a shell; {model_dir}, {port}, {version} and {digest} are replaced inside each word.
    #[arg(long, value_name = "CMD")]
    pub serve_command: Option<String>,
    /// The router's admin API (its token in GANTRY_ROUTER_TOKEN).
    #[arg(long, default_value = "http://127.0.0.1:8081", value_name = "URL")]
    pub router: String,
    /// canary (weights in steps, judged against stable) or blue-green (a smoke-traffic preview, then all at once).
    #[arg(long, value_enum, default_value_t = DeployStrategy::Canary)]
    pub strategy: DeployStrategy,
    /// Canary percentages, increasing, with `pause` where a person must promote (e.g. 5,25,pause,50,100); 100 is added when missing.
    #[arg(long, default_value = "5,25,50,100", value_name = "LIST")]
    pub steps: String,
    /// Length of one analysis window at each step.
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_duration)]
    pub step_duration: std::time::Duration,
    /// Requests each version needs per window; fewer make the window inconclusive, never a pass.
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub min_requests: u64,
    /// An analysis file (TOML, schema in schemas/analysis.schema.json) adding or replacing checks.
    #[arg(long, value_name = "FILE")]
    pub analysis: Option<std::path::PathBuf>,
    /// start a rollout, resume it after an interruption, promote past a pause, abort it, or print its status.
    #[arg(long, value_enum, default_value_t = DeployAction::Start)]
    pub action: DeployAction,
    /// The rollout state, kept between invocations: put it on the host, outside the checkout, for resume from a later run.
    #[arg(
        long,
        default_value = ".gantry/deploy/rollout.json",
        value_name = "FILE"
    )]
    pub state_file: std::path::PathBuf,
    /// Where versions are pulled to before they are served.
    #[arg(long, default_value = ".gantry/deploy/models", value_name = "DIR")]
    pub models_dir: std::path::PathBuf,
    /// An eval set (JSONL with messages or prompt) sent as traffic during each window, for low-traffic services.
    #[arg(long, value_name = "FILE")]
    pub smoke_traffic: Option<std::path::PathBuf>,
    /// Smoke requests per second.
    #[arg(long, default_value_t = 2.0, value_name = "N")]
    pub smoke_rps: f64,
    /// Score the smoke answers against the eval set's expected answers with this scorer: a smoke-quality check (canary not more than 5% below stable) joins the analysis.
    #[arg(long, value_enum, value_name = "SCORER")]
    pub smoke_scorer: Option<ScorerArg>,
    /// How long a canary weight holds without the controller renewing it; then the router returns all traffic to stable.
    #[arg(long, default_value = "2m", value_name = "DURATION", value_parser = parse_duration)]
    pub lease: std::time::Duration,
    /// Deploy a version whose lineage has no passing evaluation gate.
    #[arg(long)]
    pub allow_ungated: bool,
    /// How long a model server may take to become healthy.
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = parse_duration)]
    pub health_timeout: std::time::Duration,
    /// The forge environment the deployment is recorded in.
    #[arg(long, default_value = "production", value_name = "NAME")]
    pub environment: String,
    /// Where the report, timeline chart and JSON result are written.
    #[arg(long, default_value = ".gantry/deploy", value_name = "DIR")]
    pub out: std::path::PathBuf,
    /// --target kubernetes.
    #[command(flatten)]
    pub kubernetes: KubeArgs,
    /// Publishing.
    #[command(flatten)]
    pub publishing: PublishArgs,
}

/// Where deploy-canary runs versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeployTarget {
    /// The embedded router on this host (`gantry router`).
    Local,
    /// A Kubernetes cluster, through the engine named by --k8s-engine.
    Kubernetes,
}

/// deploy-canary's flags for `--target kubernetes`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Kubernetes (--target kubernetes)")]
pub struct KubeArgs {
    /// Which engine splits the traffic: gateway-api (gantry runs each version as a Deployment and Service and writes the weights of your HTTPRoute), kserve (canaryTrafficPercent of an InferenceService) or argo-rollouts (your Rollout steps the traffic; gantry sets the model and follows it).
    #[arg(long, value_enum, default_value_t = K8sEngine::GatewayApi)]
    pub k8s_engine: K8sEngine,
    /// The kubeconfig (default: KUBECONFIG, then ~/.kube/config; in a pod without one, its service account).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context (default: its current-context).
    #[arg(long, value_name = "NAME")]
    pub kube_context: Option<String>,
    /// The namespace (default: the context's, or the pod's).
    #[arg(long, value_name = "NAME")]
    pub namespace: Option<String>,
    /// gateway-api: the HTTPRoute whose backendRefs weights gantry sets (server-side apply, field manager gantry).
    #[arg(long, value_name = "NAME")]
    pub http_route: Option<String>,
    /// kserve: the InferenceService (default: the model's name).
    #[arg(long, value_name = "NAME")]
    pub inference_service: Option<String>,
    /// argo-rollouts: the Rollout whose pod template gets the model (annotation gantry.dev/model).
    #[arg(long, value_name = "NAME")]
    pub argo_rollout: Option<String>,
    /// gateway-api: the model server's image; --serve-command gives its arguments.
    #[arg(long, value_name = "IMAGE")]
    pub server_image: Option<String>,
    /// The port the model server listens on (and the Service's port).
    #[arg(long, default_value_t = 8000, value_name = "PORT")]
    pub server_port: u16,
    /// gateway-api: replicas per version.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub replicas: u16,
    /// gateway-api: GPUs per replica (nvidia.com/gpu).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub gpus_per_replica: u32,
    /// gateway-api: where a version's files come from: registry (an init container runs gantry registry pull by digest, verifying every file), pvc:CLAIM (already at /models/NAME/VERSION) or image:REF (an OCI image volume; {name}, {version}, {digest} replaced).
    #[arg(long, default_value = "registry", value_name = "SOURCE")]
    pub model_source: String,
    /// gateway-api: the gantry image the init container runs (default: this release's).
    #[arg(long, value_name = "IMAGE")]
    pub gantry_image: Option<String>,
    /// gateway-api: a Secret whose keys become the init container's environment (registry credentials).
    #[arg(long, value_name = "NAME")]
    pub registry_secret: Option<String>,
    /// kserve: the model's storageUri, {name}, {version}, {digest} and {digest_hex} replaced (default with an oci:// --registry: the version in it, oci://HOST/REPO/{name}:digest-{digest_hex}; else e.g. oci://registry.example/models/{name}:{version} for a modelcar image, s3://bucket/{name}/{version}).
    #[arg(long, value_name = "URI")]
    pub storage_uri: Option<String>,
    /// kserve: spec.predictor.model.modelFormat.name.
    #[arg(long, default_value = "huggingface", value_name = "NAME")]
    pub model_format: String,
    /// kserve: the ServingRuntime (default: KServe picks one by format).
    #[arg(long, value_name = "NAME")]
    pub serving_runtime: Option<String>,
    /// Take the fields gantry writes from another field manager (once, e.g. after kubectl apply created the HTTPRoute); without it such a conflict stops the rollout and nothing is changed.
    #[arg(long)]
    pub k8s_force_conflicts: bool,
    /// Where clients reach the model through the Gateway or KServe (smoke traffic is sent there).
    #[arg(long, value_name = "URL")]
    pub gateway_url: Option<String>,
    /// Print the manifests and the sequence of patches a rollout would send, and touch no cluster.
    #[arg(long)]
    pub dry_run: bool,
}

/// deploy-canary's Kubernetes engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum K8sEngine {
    /// Gateway API HTTPRoute weights.
    GatewayApi,
    /// KServe InferenceService canaryTrafficPercent.
    Kserve,
    /// Argo Rollouts steps the traffic; gantry follows it.
    ArgoRollouts,
}

/// How traffic moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeployStrategy {
    /// Weights in steps, canary judged against stable.
    Canary,
    /// A smoke-traffic preview, then all traffic at once.
    BlueGreen,
}

/// What deploy-canary does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeployAction {
    /// Start a rollout.
    Start,
    /// Continue from the saved step.
    Resume,
    /// Approve the current step (a pause) and continue.
    Promote,
    /// Return all traffic to stable and stop the canary.
    Abort,
    /// Print the saved state.
    Status,
}

/// Arguments of `gantry train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The training command, split into words like a shell would (quotes work) but run without one unless --shell; or give it after --.
    #[arg(long, value_name = "CMD")]
    pub command: Option<String>,
    /// The training command's words, after --.
    #[arg(last = true, value_name = "ARGS", hide = true)]
    pub trailing: Vec<String>,
    /// Run the command line through sh -c (pipes, &&, variable expansion).
    #[arg(long)]
    pub shell: bool,
    /// Where attempts run: local (this runner, as a process group), slurm (batch jobs through sbatch) or kubernetes (render a manifest, with --dry-run).
    #[arg(long, value_enum, default_value_t = TrainBackend::Local)]
    pub backend: TrainBackend,
    /// GPUs to lease: a count, all, auto (all, or none on a host without GPUs), none, or indices (0,3). Leased GPUs are locked so no other job on the host gets them.
    #[arg(long, default_value = "auto", value_name = "N|all|auto|none|LIST")]
    pub gpus: String,
    /// Wait this long for the GPUs to be free (e.g. 30m) instead of failing at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait_for_gpus: Option<std::time::Duration>,
    /// Directory of the per-GPU lock files, shared by every job on the host.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_GPU_LOCK_DIR)]
    pub lock_dir: std::path::PathBuf,
    /// Where the run directory goes: run.json, metrics.svg and, unless given elsewhere, checkpoints/, output/ and metrics.jsonl.
    #[arg(long, value_name = "DIR", default_value = ".gantry/train")]
    pub run_dir: std::path::PathBuf,
    /// GANTRY_CHECKPOINT_DIR: where the trainer writes checkpoints; a restart resumes from the newest complete one (default RUN_DIR/checkpoints).
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<std::path::PathBuf>,
    /// How the trainer lays out checkpoints, which says when one is complete: hf (checkpoint-<step>/trainer_state.json), dir (checkpoint-<step>/ renamed into place), lightning (*.ckpt, last.ckpt), deepspeed (latest naming global_step<N>/), dcp (directories with .metadata), or auto (read the directory).
    #[arg(long, value_enum, default_value_t = CheckpointLayoutArg::Auto, value_name = "LAYOUT")]
    pub checkpoint_layout: CheckpointLayoutArg,
    /// With the dir layout: a file a checkpoint must hold to count as complete (e.g. COMPLETE).
    #[arg(long, value_name = "FILE")]
    pub checkpoint_marker: Option<String>,
    /// GANTRY_OUTPUT_DIR: where the final model is written; every file in it is hashed into run.json (default RUN_DIR/output).
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<std::path::PathBuf>,
    /// GANTRY_METRICS_FILE: JSON Lines with an integer step and numbers, followed while the command runs (default RUN_DIR/metrics.jsonl).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<std::path::PathBuf>,
    /// Slurm: nodes per job; each runs the command once, with MASTER_ADDR, MASTER_PORT, NNODES and NODE_RANK set for torchrun.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub nodes: u32,
    /// Slurm: --gpus-per-node for each job (e.g. 8 or h100:8).
    #[arg(long, value_name = "[TYPE:]N")]
    pub gpus_per_node: Option<String>,
    /// Slurm: the partition.
    #[arg(long, value_name = "NAME")]
    pub partition: Option<String>,
    /// Slurm: each job's time limit (MM, HH:MM:SS or D-HH); a job that reaches it is resubmitted from its checkpoint while restarts last.
    #[arg(long, value_name = "LIMIT")]
    pub time: Option<String>,
    /// Slurm: a further sbatch argument, repeatable (e.g. --slurm-arg=--account=ml).
    #[arg(long, num_args = 1.., action = clap::ArgAction::Append, allow_hyphen_values = true, value_name = "ARG")]
    pub slurm_arg: Vec<String>,
    /// Write a Kubernetes manifest of the run here (a Job, or a Kubeflow PyTorchJob for --nodes above 1) instead of running it.
    #[arg(long, value_name = "FILE")]
    pub kubernetes_manifest: Option<std::path::PathBuf>,
    /// With --backend kubernetes: render the manifest (to --kubernetes-manifest, default RUN_DIR/kubernetes.yaml) and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Kubernetes: the container image with the trainer and its dependencies.
    #[arg(long, value_name = "IMAGE")]
    pub container_image: Option<String>,
    /// Kubernetes: the namespace.
    #[arg(long, value_name = "NAME")]
    pub namespace: Option<String>,
    /// Kubernetes: a PersistentVolumeClaim mounted at the run directory, so checkpoints outlive a replaced pod.
    #[arg(long, value_name = "CLAIM")]
    pub volume_claim: Option<String>,
    /// Kubernetes: your own minijinja template for the manifest (gets the same variables as the built-in one); the result is still checked against the Kubernetes types.
    #[arg(long, value_name = "FILE")]
    pub kubernetes_template: Option<std::path::PathBuf>,
    /// Restarts after a failed attempt, each from the newest complete checkpoint.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub max_restarts: u32,
    /// Wait before the first restart; doubled for each further one (at most 5m).
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub restart_backoff: std::time::Duration,
    /// Wall time for the whole run, restarts included; then the command is stopped like a cancelled job.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// After SIGTERM (job cancelled, --timeout), how long the command has to checkpoint before it is killed.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub grace_period: std::time::Duration,
    /// GANTRY_SEED for the command.
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Configuration files of the run: hashed into run.json's config digest.
    #[arg(long, num_args = 1.., action = clap::ArgAction::Append, value_name = "FILE")]
    pub config: Vec<std::path::PathBuf>,
    /// The data.lock from gantry validate-data: the dataset digest goes into run.json (lineage).
    #[arg(long, value_name = "FILE")]
    pub data_lock: Option<std::path::PathBuf>,
    /// MLflow tracking server (http(s)://HOST[:PORT]): params, metrics by step, tags and run.json are logged there (MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD).
    #[arg(long, value_name = "URI")]
    pub tracking_uri: Option<String>,
    /// The MLflow experiment (created when missing).
    #[arg(long, default_value = "gantry", value_name = "NAME")]
    pub experiment: String,
    /// Params to log with the run, KEY=VALUE, repeatable (hyperparameters).
    #[arg(long, num_args = 1.., action = clap::ArgAction::Append, value_name = "KEY=VALUE", value_parser = parse_metadata)]
    pub param: Vec<(String, String)>,
    /// The run's id (default: the UTC time and 8 random hex digits).
    #[arg(long, value_name = "ID", value_parser = parse_report_name)]
    pub run_id: Option<String>,
    /// Name of this run in the job summary.
    #[arg(long, default_value = "default", value_parser = parse_report_name)]
    pub name: String,
}

/// How a trainer lays out checkpoints (`--checkpoint-layout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckpointLayoutArg {
    /// Read the checkpoint directory to tell.
    Auto,
    /// Hugging Face Trainer: checkpoint-<step>/ complete once trainer_state.json exists.
    Hf,
    /// Plain checkpoint-<step>/ directories renamed into place (optionally with --checkpoint-marker).
    Dir,
    /// PyTorch Lightning: *.ckpt files, last.ckpt the newest.
    Lightning,
    /// DeepSpeed: global_step<N>/ directories, the `latest` file naming the newest complete one.
    Deepspeed,
    /// torch.distributed.checkpoint: step-<N>/ (or checkpoint-<N>/) complete once .metadata exists.
    Dcp,
}

impl From<CheckpointLayoutArg> for gantry_train::checkpoint::Layout {
    fn from(layout: CheckpointLayoutArg) -> Self {
        use gantry_train::checkpoint::Layout;
        match layout {
            CheckpointLayoutArg::Auto => Layout::Auto,
            CheckpointLayoutArg::Hf => Layout::Hf,
            CheckpointLayoutArg::Dir => Layout::Dir,
            CheckpointLayoutArg::Lightning => Layout::Lightning,
            CheckpointLayoutArg::Deepspeed => Layout::Deepspeed,
            CheckpointLayoutArg::Dcp => Layout::Dcp,
        }
    }
}

/// Where `gantry train` runs attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TrainBackend {
    /// On this runner, as a process group.
    Local,
    /// As Slurm batch jobs.
    Slurm,
    /// Render a Kubernetes Job (a PyTorchJob for several nodes) for kubectl; needs --dry-run.
    Kubernetes,
}

/// Where GPU lock files live unless --lock-dir says otherwise.
pub const DEFAULT_GPU_LOCK_DIR: &str = "/tmp/gantry-gpu-locks";

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    gantry_train::launch::parse_duration(text)
}

/// The default registry: the file registry in the workspace.
pub const DEFAULT_REGISTRY: &str = "file:.gantry/registry";

/// Arguments of `gantry register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The model directory (a training run's output): every file below it except hidden ones is registered.
    #[arg(long, value_name = "DIR")]
    pub model_dir: std::path::PathBuf,
    /// The model's name: lowercase letters and digits separated by '.', '_' or '-'.
    #[arg(long)]
    pub name: String,
    /// Where to register: file:PATH, oci://HOST[:PORT]/REPOSITORY (credentials: GANTRY_REGISTRY_USERNAME/GANTRY_REGISTRY_PASSWORD or docker login) or mlflow+http(s)://HOST[:PORT] (MLFLOW_TRACKING_TOKEN).
    #[arg(long, value_name = "URI", default_value = DEFAULT_REGISTRY)]
    pub registry: String,
    /// auto (the next patch version) or X.Y.Z. Registering content that is already registered returns its version.
    #[arg(long, default_value = "auto")]
    pub version: String,
    /// Aliases to point at the version (e.g. candidate); each move is recorded as an event.
    #[arg(long, num_args = 1.., action = clap::ArgAction::Append, value_name = "ALIAS")]
    pub alias: Vec<String>,
    /// The run.json of the training run (lineage).
    #[arg(long, value_name = "PATH")]
    pub run_record: Option<std::path::PathBuf>,
    /// The data.lock of the training data, from gantry validate-data (lineage).
    #[arg(long, value_name = "PATH")]
    pub data_lock: Option<std::path::PathBuf>,
    /// The gate.json of the eval-gate this model passed (lineage).
    #[arg(long, value_name = "PATH")]
    pub gate_report: Option<std::path::PathBuf>,
    /// The model's own evaluation results, stored as the baseline later gates compare with (registry:NAME@ALIAS).
    #[arg(long, value_name = "PATH")]
    pub eval_results: Option<std::path::PathBuf>,
    /// The eval set (JSONL items) --eval-results came from, stored so monitor asks production the same questions.
    #[arg(long, value_name = "PATH", requires = "eval_results")]
    pub eval_set: Option<std::path::PathBuf>,
    /// The training data's summary.json from gantry validate-data (lineage): monitor measures production traffic's drift against it.
    #[arg(long, value_name = "PATH")]
    pub data_summary: Option<std::path::PathBuf>,
    /// Free metadata, KEY=VALUE, repeatable.
    #[arg(long, num_args = 1.., action = clap::ArgAction::Append, value_name = "KEY=VALUE", value_parser = parse_metadata)]
    pub metadata: Vec<(String, String)>,
    /// Register pickle checkpoints whose imports can run code on load (prefer safetensors).
    #[arg(long)]
    pub allow_pickle: bool,
    /// Hash, inspect and check lineage, print the digest and whether it is registered, store nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write an in-toto statement (SLSA provenance v1) whose subject is the manifest digest, for cosign or actions/attest to sign.
    #[arg(long, value_name = "PATH")]
    pub provenance: Option<std::path::PathBuf>,
}

/// Arguments of `gantry registry`.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// The registry: file:PATH, oci://HOST[:PORT]/REPOSITORY or mlflow+http(s)://HOST[:PORT].
    #[arg(long, global = true, value_name = "URI", default_value = DEFAULT_REGISTRY)]
    pub registry: String,
    /// What to do.
    #[command(subcommand)]
    pub command: RegistryCommand,
}

/// `gantry registry` subcommands. A REF is NAME, NAME@VERSION, NAME@ALIAS or NAME@sha256:DIGEST.
#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// List registered models with their latest version and aliases.
    List,
    /// Print a version's manifest.
    Show {
        /// The version: NAME, NAME@VERSION, NAME@ALIAS or NAME@sha256:DIGEST.
        #[arg(value_name = "REF")]
        reference: String,
    },
    /// List a model's versions with their digests and aliases.
    Versions {
        /// The model.
        name: String,
    },
    /// Point an alias at a version, with a compare-and-swap on where it points now.
    Alias {
        /// The version to point at: NAME@VERSION, NAME@ALIAS or NAME@sha256:DIGEST.
        #[arg(value_name = "REF")]
        reference: String,
        /// The alias, e.g. production.
        alias: String,
        /// The digest the alias must point at now, or none if it must not exist; without it the move is unconditional.
        #[arg(long, value_name = "DIGEST|none")]
        expect: Option<String>,
    },
    /// Re-hash every stored file and lineage document and check the lineage chain; exit 1 on any mismatch.
    Verify {
        /// The version.
        #[arg(value_name = "REF")]
        reference: String,
    },
    /// Download a version into a directory, verifying each file while it streams.
    Pull {
        /// The version.
        #[arg(value_name = "REF")]
        reference: String,
        /// The directory to write into.
        #[arg(long, value_name = "DIR")]
        to: std::path::PathBuf,
    },
    /// Compare two versions: files, parameters, lineage and metadata.
    Diff {
        /// The first version.
        #[arg(value_name = "REF")]
        from: String,
        /// The second version.
        #[arg(value_name = "REF")]
        to: String,
    },
    /// Print a model's event log: registrations and alias moves (who, when, from, to).
    Events {
        /// The model.
        name: String,
    },
    /// Check the whole registry: every blob re-hashed, every manifest, alias and event; exit 1 on damage.
    Fsck {
        /// Set damage aside where it cannot mislead (file registries): damaged blobs to quarantine/, unreadable or edited manifests to damaged/, bad event lines to events.jsonl.damaged, leftovers of killed registrations removed. Nothing a version needs is deleted.
        #[arg(long)]
        repair: bool,
    },
}

fn parse_metadata(value: &str) -> Result<(String, String), String> {
    let Some((key, text)) = value.split_once('=') else {
        return Err("expected KEY=VALUE".to_owned());
    };
    let key_ok = !key.is_empty()
        && key.len() <= 128
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !key_ok {
        return Err(format!(
            "metadata key {key:?}: use 1 to 128 characters from A-Z, a-z, 0-9, '-', '_' and '.'"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("metadata {key}: the value has control characters"));
    }
    Ok((key.to_owned(), text.to_owned()))
}

/// A finite number in `range`: NaN and infinities parse as `f64` but
/// compare false with everything, so they would switch a check off silently.
fn parse_finite(text: &str, range: std::ops::RangeInclusive<f64>) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if !value.is_finite() {
        return Err(format!("`{text}` is not a finite number"));
    }
    if !range.contains(&value) {
        return Err(format!(
            "{value} is outside {}..={}",
            range.start(),
            range.end()
        ));
    }
    Ok(value)
}

fn parse_temperature(text: &str) -> Result<f64, String> {
    parse_finite(text, 0.0..=2.0)
}

fn parse_tolerance(text: &str) -> Result<f64, String> {
    parse_finite(text, 0.0..=f64::MAX)
}

/// Arguments of `gantry eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Base URL of an OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1.
    #[arg(long, value_name = "URL")]
    pub endpoint: String,
    /// Model name sent with each request.
    #[arg(long)]
    pub model: String,
    /// Eval items (JSONL): id, messages or prompt, expected, and optionally choices, task, pattern.
    #[arg(long, value_name = "PATH")]
    pub dataset: std::path::PathBuf,
    /// Scorers, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "normalized-exact"
    )]
    pub scorer: Vec<ScorerArg>,
    /// Which API to call.
    #[arg(long, value_enum, default_value_t = ApiArg::Chat)]
    pub api: ApiArg,
    /// Times each item is asked (eval-gate averages repeats per item).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub repeats: u32,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// Seconds before one request times out.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Attempts per request: 429, 5xx and connection errors are retried with backoff, honouring Retry-After.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub attempts: u32,
    /// max_tokens of each request.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: u32,
    /// Sampling temperature, 0 to 2.
    #[arg(long, default_value_t = 0.0, value_parser = parse_temperature)]
    pub temperature: f64,
    /// Relative tolerance of the numeric scorer, 0 or more.
    #[arg(long, default_value_t = 1e-6, value_parser = parse_tolerance)]
    pub tolerance: f64,
    /// Environment variable holding the API key, sent as a bearer token and masked in every log.
    #[arg(long, default_value = "OPENAI_API_KEY")]
    pub api_key_env: String,
    /// Directory for results.jsonl and summary.json.
    #[arg(long, value_name = "DIR", default_value = ".gantry/eval")]
    pub out: std::path::PathBuf,
    /// Continue an interrupted run: keep the answers in --out's results.jsonl.partial and ask only the rest.
    #[arg(long)]
    pub resume: bool,
    /// Where and under which name the summary is published.
    #[command(flatten)]
    pub publishing: PublishArgs,
}

/// A scorer given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScorerArg {
    /// The response equals expected exactly (trimmed).
    Exact,
    /// Equal after lowercasing and dropping punctuation.
    NormalizedExact,
    /// The response contains expected (normalized).
    Contains,
    /// The response matches the item's pattern (or expected) as a regular expression.
    Regex,
    /// The response names the expected choice, by text or letter.
    Choice,
    /// The response is valid JSON.
    JsonValid,
    /// The first number in the response is within --tolerance of expected.
    Numeric,
}

impl From<ScorerArg> for gantry_eval::runner::Scorer {
    fn from(scorer: ScorerArg) -> Self {
        use gantry_eval::runner::Scorer;
        match scorer {
            ScorerArg::Exact => Scorer::Exact,
            ScorerArg::NormalizedExact => Scorer::NormalizedExact,
            ScorerArg::Contains => Scorer::Contains,
            ScorerArg::Regex => Scorer::Regex,
            ScorerArg::Choice => Scorer::Choice,
            ScorerArg::JsonValid => Scorer::JsonValid,
            ScorerArg::Numeric => Scorer::Numeric,
        }
    }
}

/// Which OpenAI API `gantry eval` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApiArg {
    /// /chat/completions with messages.
    Chat,
    /// /completions with a prompt.
    Completions,
}

/// Arguments of `gantry eval-gate`.
#[derive(Debug, Args)]
pub struct EvalGateArgs {
    /// The candidate's results: gantry-native JSONL, or an lm-evaluation-harness results JSON or its directory.
    #[arg(long, value_name = "PATH")]
    pub candidate: std::path::PathBuf,
    /// The baseline's results (the production model's blessed evaluation), in any format --candidate takes, or registry:NAME@ALIAS for the evaluation registered with that version.
    #[arg(long, value_name = "PATH|registry:REF")]
    pub baseline: String,
    /// The registry registry:REF baselines are read from: file:PATH, oci://HOST[:PORT]/REPOSITORY or mlflow+http(s)://HOST[:PORT].
    #[arg(long, value_name = "URI", default_value = DEFAULT_REGISTRY)]
    pub registry: String,
    /// TOML policy: rules by source/task/metric with floor, margin, max_new_failures, severity; [defaults] alpha, confidence, resamples, min_items, seed.
    #[arg(long, value_name = "PATH")]
    pub policy: Option<std::path::PathBuf>,
    /// Directory for gate.json and gate.md.
    #[arg(long, value_name = "DIR", default_value = ".gantry/eval-gate")]
    pub out: std::path::PathBuf,
    /// Where and under which name the verdict is published.
    #[command(flatten)]
    pub publishing: PublishArgs,
}

/// Arguments of `gantry validate-data`.
#[derive(Debug, Args)]
pub struct ValidateDataArgs {
    /// Data files, directories or glob patterns: .jsonl, .json, .csv, .txt (optionally .gz or .zst) and .parquet.
    #[arg(long, required_unless_present = "merge", num_args = 1.., action = clap::ArgAction::Append, value_name = "PATH")]
    pub data: Vec<String>,
    /// Check only shard I of N (every N-th record) and write shard-I-of-N.shard for a later --merge.
    #[arg(long, value_name = "I/N", value_parser = parse_shard, conflicts_with = "merge")]
    pub shard: Option<gantry_data::Shard>,
    /// Merge shard files (paths or globs) written by --shard jobs into one report, lock and summary.
    #[arg(long, num_args = 1.., action = clap::ArgAction::Append, value_name = "PATH", conflicts_with = "data")]
    pub merge: Vec<String>,
    /// With --merge: be merge partition K of P — take hash bucket K of every shard file and write partition-K-of-P.json (duplicate groups and near-duplicate links) for a final --merge … --partition-results.
    #[arg(long, value_name = "K/P", value_parser = parse_shard, requires = "merge", conflicts_with = "partition_results")]
    pub partition: Option<gantry_data::Shard>,
    /// With --merge: combine the partition files (paths or globs) written by --partition jobs with the shards into one report, lock and summary.
    #[arg(long, num_args = 1.., action = clap::ArgAction::Append, value_name = "PATH", requires = "merge")]
    pub partition_results: Vec<String>,
    /// Record format; auto detects it from the first record.
    #[arg(long = "data-format", value_enum, default_value_t = DataFormatArg::Auto)]
    pub data_format: DataFormatArg,
    /// JSON Schema every record must match, for record shapes of no known format.
    #[arg(long, value_name = "PATH")]
    pub schema: Option<std::path::PathBuf>,
    /// Tokenizer for token counts: o200k_base, cl100k_base, chars, or the path of a Hugging Face tokenizer.json.
    #[arg(long, default_value = "o200k_base")]
    pub tokenizer: String,
    /// Fail records with more tokens than this (e.g. 16385 for gpt-4o-mini fine-tuning).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u64>,
    /// TOML file overriding check thresholds: [checks.<id>] warn, error, enabled.
    #[arg(long, value_name = "PATH")]
    pub policy: Option<std::path::PathBuf>,
    /// The data lock of an earlier run, to list files added, removed or changed.
    #[arg(long, value_name = "PATH")]
    pub previous_lock: Option<std::path::PathBuf>,
    /// Reference for drift: a summary.json from an earlier run, or the earlier data itself.
    #[arg(long, value_name = "PATH")]
    pub reference: Option<String>,
    /// Eval or benchmark files (any format) whose items must not appear in the training data.
    #[arg(long, num_args = 1.., action = clap::ArgAction::Append, value_name = "PATH")]
    pub eval_set: Vec<String>,
    /// Directory for report.json, report.md, summary.json and data.lock.
    #[arg(long, value_name = "DIR", default_value = ".gantry/validate-data")]
    pub out: std::path::PathBuf,
    /// Where and under which name the result is published.
    #[command(flatten)]
    pub publishing: PublishArgs,
}

/// A record format given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataFormatArg {
    /// Detect from the first record.
    Auto,
    /// {"messages": [{"role", "content"}…]}
    OpenaiChat,
    /// {"conversations": [{"from", "value"}…]}
    Sharegpt,
    /// {"instruction", "input", "output"}
    Alpaca,
    /// {"prompt", "completion"}
    PromptCompletion,
    /// {"input", "preferred_output", "non_preferred_output"} or {"prompt", "chosen", "rejected"}
    Preference,
    /// {"text"}
    Text,
}

/// Arguments of `gantry report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Markdown file to publish.
    #[arg(long, value_name = "PATH")]
    pub file: std::path::PathBuf,
    /// Title of the status or check run (default: the report's first heading).
    #[arg(long)]
    pub title: Option<String>,
    /// Verdict to report; the exit code follows it (fail exits 1). Findings can only make it worse.
    #[arg(long, value_enum, default_value_t = VerdictArg::Pass)]
    pub verdict: VerdictArg,
    /// JSON file with an array of findings (code, severity, title, message, location) to annotate and list.
    #[arg(long, value_name = "PATH")]
    pub findings: Option<std::path::PathBuf>,
    /// Treat warnings as failures: a warn verdict exits 1.
    #[arg(long)]
    pub strict: bool,
    /// Where and under which name the report is published.
    #[command(flatten)]
    pub publishing: PublishArgs,
}

/// Where a result is published, shared by every command that publishes one.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Name of this result: one sticky comment and one status per (workflow, command, name).
    #[arg(long, default_value = "default", value_parser = parse_report_name)]
    pub name: String,
    /// Where to publish, comma-separated: summary, comment, status, check.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "summary,comment,status"
    )]
    pub publish: Vec<PublishTarget>,
}

/// A verdict given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerdictArg {
    /// Passed.
    Pass,
    /// Passed with warnings.
    Warn,
    /// Failed: exit 1.
    Fail,
}

impl From<VerdictArg> for gantry_core::Verdict {
    fn from(verdict: VerdictArg) -> gantry_core::Verdict {
        match verdict {
            VerdictArg::Pass => gantry_core::Verdict::Pass,
            VerdictArg::Warn => gantry_core::Verdict::Warn,
            VerdictArg::Fail => gantry_core::Verdict::Fail,
        }
    }
}

/// Where a report goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishTarget {
    /// The job summary (GitHub) or a Markdown file (GitLab, local).
    Summary,
    /// A sticky comment on the pull or merge request, edited in place.
    Comment,
    /// A commit status named gantry/report[/NAME].
    Status,
    /// A GitHub check run (a commit status on GitLab).
    Check,
}

fn parse_shard(value: &str) -> Result<gantry_data::Shard, String> {
    value
        .parse()
        .map_err(|_| "expected I/N with 1 <= I <= N, e.g. 1/4".to_owned())
}

fn parse_report_name(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if valid {
        Ok(value.to_owned())
    } else {
        Err("use 1 to 64 characters from A-Z, a-z, 0-9, '-', '_' and '.'".to_owned())
    }
}

/// The clap command tree, for code generation and help rendering.
pub fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    /// clap's own checks of the definitions (conflicts, ids, positional rules).
    #[test]
    fn the_command_line_is_well_formed() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
