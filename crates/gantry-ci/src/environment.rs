//! The process environment as gantry sees it, the names it reads, and which CI it is in.

use std::collections::BTreeMap;

/// Every environment variable gantry reads, in one place.
///
/// **Architecture Invariant:** no other crate reads these; they reach the
/// rest of gantry as typed values from this crate.
#[derive(Debug)]
#[non_exhaustive]
pub struct EnvVars;

impl EnvVars {
    /// Set to `true` by GitHub Actions runners.
    pub const GITHUB_ACTIONS: &'static str = "GITHUB_ACTIONS";
    /// Set to `true` by GitLab runners.
    pub const GITLAB_CI: &'static str = "GITLAB_CI";
    /// Prefix of GitHub action inputs: `INPUT_<NAME>`, hyphens kept.
    pub const GITHUB_INPUT_PREFIX: &'static str = "INPUT_";
    /// Prefix of GitLab template inputs: `GANTRY_INPUT_<NAME>`, hyphens as underscores.
    pub const GITLAB_INPUT_PREFIX: &'static str = "GANTRY_INPUT_";
    /// File that receives step outputs on GitHub.
    pub const GITHUB_OUTPUT: &'static str = "GITHUB_OUTPUT";
    /// File that receives the Markdown job summary on GitHub.
    pub const GITHUB_STEP_SUMMARY: &'static str = "GITHUB_STEP_SUMMARY";
    /// `owner/name` of the repository on GitHub.
    pub const GITHUB_REPOSITORY: &'static str = "GITHUB_REPOSITORY";
    /// Commit the workflow runs for on GitHub.
    pub const GITHUB_SHA: &'static str = "GITHUB_SHA";
    /// Ref the workflow runs for on GitHub (`refs/pull/N/merge` on pull requests).
    pub const GITHUB_REF: &'static str = "GITHUB_REF";
    /// Event that triggered the workflow on GitHub.
    pub const GITHUB_EVENT_NAME: &'static str = "GITHUB_EVENT_NAME";
    /// Path of the event payload JSON on GitHub.
    pub const GITHUB_EVENT_PATH: &'static str = "GITHUB_EVENT_PATH";
    /// Name of the workflow on GitHub.
    pub const GITHUB_WORKFLOW: &'static str = "GITHUB_WORKFLOW";
    /// The user who triggered the run.
    pub const GITHUB_ACTOR: &'static str = "GITHUB_ACTOR";
    /// Job id on GitHub.
    pub const GITHUB_JOB: &'static str = "GITHUB_JOB";
    /// Run id on GitHub.
    pub const GITHUB_RUN_ID: &'static str = "GITHUB_RUN_ID";
    /// Base URL of the REST API on GitHub (differs on GitHub Enterprise Server).
    pub const GITHUB_API_URL: &'static str = "GITHUB_API_URL";
    /// Base URL of the web UI on GitHub.
    pub const GITHUB_SERVER_URL: &'static str = "GITHUB_SERVER_URL";
    /// Workspace directory on GitHub.
    pub const GITHUB_WORKSPACE: &'static str = "GITHUB_WORKSPACE";
    /// User name for `--registry oci://…`.
    pub const GANTRY_REGISTRY_USERNAME: &'static str = "GANTRY_REGISTRY_USERNAME";
    /// Password or token for `--registry oci://…` and `mlflow+http(s)://…`.
    pub const GANTRY_REGISTRY_PASSWORD: &'static str = "GANTRY_REGISTRY_PASSWORD";
    /// Bearer token for an MLflow server (`--registry mlflow+http(s)://…`).
    pub const MLFLOW_TRACKING_TOKEN: &'static str = "MLFLOW_TRACKING_TOKEN";
    /// Basic-auth user for an MLflow server.
    pub const MLFLOW_TRACKING_USERNAME: &'static str = "MLFLOW_TRACKING_USERNAME";
    /// Basic-auth password for an MLflow server.
    pub const MLFLOW_TRACKING_PASSWORD: &'static str = "MLFLOW_TRACKING_PASSWORD";
    /// The API key `gantry eval` sends by default (`--api-key-env`).
    pub const OPENAI_API_KEY: &'static str = "OPENAI_API_KEY";
    /// GitLab's container registry host.
    pub const CI_REGISTRY: &'static str = "CI_REGISTRY";
    /// GitLab's user for its container registry.
    pub const CI_REGISTRY_USER: &'static str = "CI_REGISTRY_USER";
    /// GitLab's password for its container registry (the job token).
    pub const CI_REGISTRY_PASSWORD: &'static str = "CI_REGISTRY_PASSWORD";
    /// Docker's configuration directory.
    pub const DOCKER_CONFIG: &'static str = "DOCKER_CONFIG";
    /// The home directory (for `~/.docker/config.json`).
    pub const HOME: &'static str = "HOME";
    /// podman's auth file.
    pub const REGISTRY_AUTH_FILE: &'static str = "REGISTRY_AUTH_FILE";
    /// The runtime directory (for podman's `containers/auth.json`).
    pub const XDG_RUNTIME_DIR: &'static str = "XDG_RUNTIME_DIR";
    /// A token for gantry only; wins over `GITHUB_TOKEN`.
    pub const GANTRY_GITHUB_TOKEN: &'static str = "GANTRY_GITHUB_TOKEN";
    /// The workflow's token, passed to gantry through `env:`.
    pub const GITHUB_TOKEN: &'static str = "GITHUB_TOKEN";
    /// The `github-token` input of gantry's actions, as a container action sees it.
    pub const GITHUB_TOKEN_INPUT: &'static str = "INPUT_GITHUB-TOKEN";
    /// A project or group access token with `api` scope.
    pub const GITLAB_TOKEN: &'static str = "GITLAB_TOKEN";
    /// The job token GitLab gives every job: enough for deployments, not for notes or statuses.
    pub const CI_JOB_TOKEN: &'static str = "CI_JOB_TOKEN";
    /// Base URL of the GitLab REST API (`…/api/v4`).
    pub const CI_API_V4_URL: &'static str = "CI_API_V4_URL";
    /// Numeric project id on GitLab.
    pub const CI_PROJECT_ID: &'static str = "CI_PROJECT_ID";
    /// `group/project` path on GitLab.
    pub const CI_PROJECT_PATH: &'static str = "CI_PROJECT_PATH";
    /// Commit the pipeline runs for on GitLab.
    pub const CI_COMMIT_SHA: &'static str = "CI_COMMIT_SHA";
    /// Branch or tag the pipeline runs for on GitLab.
    pub const CI_COMMIT_REF_NAME: &'static str = "CI_COMMIT_REF_NAME";
    /// Merge request number (iid) in merge request pipelines.
    pub const CI_MERGE_REQUEST_IID: &'static str = "CI_MERGE_REQUEST_IID";
    /// Project id the merge request targets.
    pub const CI_MERGE_REQUEST_PROJECT_ID: &'static str = "CI_MERGE_REQUEST_PROJECT_ID";
    /// Project id the merge request comes from (a fork when it differs).
    pub const CI_MERGE_REQUEST_SOURCE_PROJECT_ID: &'static str =
        "CI_MERGE_REQUEST_SOURCE_PROJECT_ID";
    /// What started the pipeline on GitLab (`push`, `merge_request_event`, `schedule`…).
    pub const CI_PIPELINE_SOURCE: &'static str = "CI_PIPELINE_SOURCE";
    /// Pipeline id on GitLab.
    pub const CI_PIPELINE_ID: &'static str = "CI_PIPELINE_ID";
    /// The environment of a GitLab job with the `environment:` keyword.
    pub const CI_ENVIRONMENT_NAME: &'static str = "CI_ENVIRONMENT_NAME";
    /// Web URL of the job on GitLab.
    pub const CI_JOB_URL: &'static str = "CI_JOB_URL";
    /// Job name on GitLab.
    pub const CI_JOB_NAME: &'static str = "CI_JOB_NAME";
    /// The user who started the job.
    pub const GITLAB_USER_LOGIN: &'static str = "GITLAB_USER_LOGIN";
    /// The local user (outside CI).
    pub const USER: &'static str = "USER";
    /// Directory of the checkout on GitLab.
    pub const CI_PROJECT_DIR: &'static str = "CI_PROJECT_DIR";
    /// Where gantry writes the dotenv report on GitLab (default `gantry.env`).
    pub const GANTRY_DOTENV: &'static str = "GANTRY_DOTENV";
    /// Prefix of dotenv keys on GitLab, so two gantry jobs do not overwrite each other's outputs.
    pub const GANTRY_OUTPUT_PREFIX: &'static str = "GANTRY_OUTPUT_PREFIX";
    /// Directory for reports gantry writes outside GitHub (summaries, Code Quality); default `.gantry/reports`.
    pub const GANTRY_REPORT_DIR: &'static str = "GANTRY_REPORT_DIR";
    /// Set (any value): validate-data reads every file with read(2) instead
    /// of mapping it, for data another process may change meanwhile.
    pub const GANTRY_NO_MMAP: &'static str = "GANTRY_NO_MMAP";
    /// The token of `gantry router`'s admin API (required when it listens
    /// beyond loopback; deploy-canary sends it).
    pub const GANTRY_ROUTER_TOKEN: &'static str = "GANTRY_ROUTER_TOKEN";
    /// Number of attempts for forge API calls (default 4).
    pub const GANTRY_HTTP_ATTEMPTS: &'static str = "GANTRY_HTTP_ATTEMPTS";
    /// Base backoff between forge API attempts in milliseconds (default 500).
    pub const GANTRY_HTTP_BACKOFF_MS: &'static str = "GANTRY_HTTP_BACKOFF_MS";
    /// Per-request timeout for forge API calls in seconds (default 30).
    pub const GANTRY_HTTP_TIMEOUT_S: &'static str = "GANTRY_HTTP_TIMEOUT_S";
    /// Set (to anything) to turn colour off.
    pub const NO_COLOR: &'static str = "NO_COLOR";
}

/// A snapshot of the environment. Built from the process once, or from pairs
/// in tests, so nothing below reads `std::env` behind the caller's back.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    variables: BTreeMap<String, String>,
}

impl Environment {
    /// The current process environment. Variables whose name or value is not
    /// UTF-8 are left out: none of the ones gantry reads can be.
    pub fn from_process() -> Environment {
        let variables = std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect();
        Environment { variables }
    }

    /// An environment made of the given pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Environment {
        let variables = pairs
            .into_iter()
            .map(|(name, value)| (name.into(), value.into()))
            .collect();
        Environment { variables }
    }

    /// The value of `name`, if it is set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.variables
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// Whether `name` is set to `true` (any case).
    pub fn is_true(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }

    /// All variables whose name starts with `prefix`, in name order.
    pub fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.variables
            .range(prefix.to_owned()..)
            .take_while(move |(name, _)| name.starts_with(prefix))
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

/// Every credential gantry may read from the environment, by variable name,
/// to be masked before anything is printed.
pub fn secrets_in_environment(
    environment: &Environment,
) -> Vec<(&'static str, gantry_core::Secret)> {
    [
        EnvVars::GANTRY_GITHUB_TOKEN,
        EnvVars::GITHUB_TOKEN,
        EnvVars::GITHUB_TOKEN_INPUT,
        EnvVars::GITLAB_TOKEN,
        EnvVars::CI_JOB_TOKEN,
        EnvVars::GANTRY_REGISTRY_PASSWORD,
        EnvVars::CI_REGISTRY_PASSWORD,
        EnvVars::MLFLOW_TRACKING_TOKEN,
        EnvVars::MLFLOW_TRACKING_PASSWORD,
        EnvVars::GANTRY_ROUTER_TOKEN,
        EnvVars::OPENAI_API_KEY,
    ]
    .into_iter()
    .filter_map(|name| Some((name, gantry_core::Secret::new(environment.get(name)?))))
    .collect()
}

/// What the user asked for with `--ci`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlatformChoice {
    /// Detect from the environment.
    #[default]
    Auto,
    /// Behave as in a GitHub Actions step.
    GitHub,
    /// Behave as in a GitLab CI job.
    GitLab,
    /// Behave as on a laptop: print outputs, write files locally.
    Local,
}

/// Where gantry is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// A GitHub Actions step (container action, composite action or `run:`).
    GitHub,
    /// A GitLab CI job.
    GitLab,
    /// Anywhere else: a laptop, Jenkins, cron.
    Local,
}

impl Platform {
    /// Resolves `--ci`: an explicit choice wins, otherwise `GITHUB_ACTIONS`
    /// then `GITLAB_CI` decide.
    pub fn detect(choice: PlatformChoice, environment: &Environment) -> Platform {
        match choice {
            PlatformChoice::GitHub => Platform::GitHub,
            PlatformChoice::GitLab => Platform::GitLab,
            PlatformChoice::Local => Platform::Local,
            PlatformChoice::Auto if environment.is_true(EnvVars::GITHUB_ACTIONS) => {
                Platform::GitHub
            }
            PlatformChoice::Auto if environment.is_true(EnvVars::GITLAB_CI) => Platform::GitLab,
            PlatformChoice::Auto => Platform::Local,
        }
    }

    /// The lowercase name used in outputs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::GitHub => "github",
            Platform::GitLab => "gitlab",
            Platform::Local => "local",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_prefers_explicit_choice_then_github_then_gitlab() {
        let both = Environment::from_pairs([("GITHUB_ACTIONS", "true"), ("GITLAB_CI", "true")]);
        let gitlab = Environment::from_pairs([("GITLAB_CI", "true")]);
        let neither = Environment::from_pairs([("CI", "true"), ("GITHUB_ACTIONS", "")]);
        let table = [
            (PlatformChoice::Auto, &both, Platform::GitHub),
            (PlatformChoice::Auto, &gitlab, Platform::GitLab),
            (PlatformChoice::Auto, &neither, Platform::Local),
            (PlatformChoice::Local, &both, Platform::Local),
            (PlatformChoice::GitLab, &neither, Platform::GitLab),
        ];
        for (choice, environment, expected) in table {
            assert_eq!(
                Platform::detect(choice, environment),
                expected,
                "{choice:?} {environment:?}"
            );
        }
    }

    #[test]
    fn prefix_lists_only_matching_names() {
        let environment = Environment::from_pairs([
            ("INPUT_DATA", "a"),
            ("INPUT_EVAL-SET", "b"),
            ("INPUTS", "no"),
            ("HOME", "/root"),
        ]);
        let names: Vec<_> = environment
            .with_prefix("INPUT_")
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["INPUT_DATA", "INPUT_EVAL-SET"]);
    }
}
