//! validate-data's settings: the engine's options from flags and environment.

use anyhow::Result;
use gantry_ci::{EnvVars, Environment};
use gantry_data::{Policy, RecordFormat, ValidateOptions};

use crate::cli::{DataFormatArg, ValidateDataArgs};

/// `gantry validate-data`, resolved.
#[derive(Debug)]
pub(crate) struct ValidateDataSettings<'a> {
    /// The flags as given.
    pub(crate) args: &'a ValidateDataArgs,
    /// What the engine is asked to do.
    pub(crate) options: ValidateOptions,
}

impl<'a> ValidateDataSettings<'a> {
    pub(crate) fn resolve(
        args: &'a ValidateDataArgs,
        environment: &Environment,
    ) -> Result<ValidateDataSettings<'a>> {
        let policy = match &args.policy {
            Some(path) => Policy::from_file(path).map_err(with_flag)?,
            None => Policy::default(),
        };
        let options = ValidateOptions {
            data: args.data.clone(),
            format: match args.data_format {
                DataFormatArg::Auto => None,
                DataFormatArg::OpenaiChat => Some(RecordFormat::OpenaiChat),
                DataFormatArg::Sharegpt => Some(RecordFormat::Sharegpt),
                DataFormatArg::Alpaca => Some(RecordFormat::Alpaca),
                DataFormatArg::PromptCompletion => Some(RecordFormat::PromptCompletion),
                DataFormatArg::Preference => Some(RecordFormat::Preference),
                DataFormatArg::Text => Some(RecordFormat::Text),
            },
            tokenizer: args.tokenizer.clone(),
            max_tokens: args.max_tokens,
            previous_lock: args.previous_lock.clone(),
            eval_set: args.eval_set.clone(),
            reference: args.reference.clone(),
            schema: args.schema.clone(),
            policy,
            map_files: environment.get(EnvVars::GANTRY_NO_MMAP).is_none(),
        };
        Ok(ValidateDataSettings { args, options })
    }
}

/// A validate-data error with the flag it is about: the library names the
/// files and values, which flag gave them is the command line's business
/// (a drift reference read as data is `--reference`, not `--data`).
pub(crate) fn with_flag(error: gantry_data::Error) -> anyhow::Error {
    use gantry_data::Error as DataError;
    let flag = match &error {
        DataError::NoData { .. } | DataError::BadPattern { .. } => "--data",
        DataError::BadShard { .. } => "--shard",
        DataError::Policy { .. } => "--policy",
        DataError::Lock { .. } => "--previous-lock",
        DataError::Schema { .. } => "--schema",
        DataError::EvalSet { .. } => "--eval-set",
        DataError::Reference { .. } => "--reference",
        DataError::Tokenizer { .. } => "--tokenizer",
        DataError::Merge { .. } => return anyhow::anyhow!("--merge: {error}"),
        _ => return error.into(),
    };
    anyhow::anyhow!("{flag} {error}")
}
