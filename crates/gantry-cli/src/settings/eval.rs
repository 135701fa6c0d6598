//! eval's and eval-gate's settings: the runner's options, the gate's policy.

use std::time::Duration;

use anyhow::Result;
use gantry_ci::Environment;
use gantry_core::Secret;
use gantry_eval::Policy;
use gantry_eval::runner::{Api, RunOptions};

use crate::cli::{ApiArg, EvalArgs, EvalGateArgs};

/// `gantry eval`, resolved.
#[derive(Debug)]
pub(crate) struct EvalSettings<'a> {
    /// The flags as given.
    pub(crate) args: &'a EvalArgs,
    /// What the runner is asked to do: the key from `--api-key-env`, the
    /// retry policy from the flags and `GANTRY_HTTP_*`.
    pub(crate) options: RunOptions,
}

impl<'a> EvalSettings<'a> {
    pub(crate) fn resolve(args: &'a EvalArgs, environment: &Environment) -> EvalSettings<'a> {
        let options = RunOptions {
            endpoint: args.endpoint.clone(),
            model: args.model.clone(),
            dataset: args.dataset.clone(),
            scorers: args.scorer.iter().map(|scorer| (*scorer).into()).collect(),
            api: match args.api {
                ApiArg::Chat => Api::Chat,
                ApiArg::Completions => Api::Completions,
            },
            repeats: args.repeats as usize,
            concurrency: args.concurrency as usize,
            retry: gantry_ci::RetryPolicy {
                attempts: args.attempts,
                timeout: Duration::from_secs(args.timeout),
                ..gantry_ci::retry_policy(environment)
            },
            max_tokens: args.max_tokens,
            temperature: args.temperature,
            tolerance: args.tolerance,
            api_key: api_key(args, environment),
        };
        EvalSettings { args, options }
    }
}

/// The endpoint's key, from the variable `--api-key-env` names.
pub(crate) fn api_key(args: &EvalArgs, environment: &Environment) -> Option<Secret> {
    environment
        .get(&args.api_key_env)
        .filter(|key| !key.is_empty())
        .map(Secret::new)
}

/// `gantry eval-gate`, resolved.
#[derive(Debug)]
pub(crate) struct EvalGateSettings<'a> {
    /// The flags as given.
    pub(crate) args: &'a EvalGateArgs,
    /// The gate's rules: `--policy`, or the defaults.
    pub(crate) policy: Policy,
    /// Where the rules came from, for messages: the file, or `default`.
    pub(crate) policy_source: String,
}

impl<'a> EvalGateSettings<'a> {
    pub(crate) fn resolve(args: &'a EvalGateArgs) -> Result<EvalGateSettings<'a>> {
        let (policy, policy_source) = match &args.policy {
            Some(path) => (Policy::from_file(path)?, path.display().to_string()),
            None => (Policy::default(), "default".to_owned()),
        };
        Ok(EvalGateSettings {
            args,
            policy,
            policy_source,
        })
    }
}
