/*!
Where gantry runs, and everything that depends on it.

gantry runs the same command on a laptop, in a GitHub Actions step and in a
GitLab CI job. This crate is the only place that knows the difference: it
reads the CI environment (the only crate allowed to), turns action inputs
into flags, writes step outputs, summaries and annotations in each
platform's own format, masks secrets, and talks to the forge (GitHub or
GitLab) for sticky comments, check runs, commit statuses and deployments.

```
use gantry_ci::{Environment, Platform, PlatformChoice};

let environment = Environment::from_pairs([("GITHUB_ACTIONS", "true")]);
assert_eq!(Platform::detect(PlatformChoice::Auto, &environment), Platform::GitHub);
```

Nothing here prints on its own: every function that emits text writes to a
writer the caller hands in, so the CLI decides what reaches stdout.
*/

mod annotations;
mod context;
mod environment;
mod error;
mod forge;
mod forge_types;
mod github;
mod gitlab;
mod http;
mod inputs;
mod junit;
mod metrics;
mod outputs;
mod publish;
mod registry_login;
mod summary;
mod workflow_commands;

pub use crate::annotations::{AnnotationLimits, Annotations, code_quality_report};
pub use crate::context::{ChangeRequest, RunContext};
pub use crate::environment::{
    EnvVars, Environment, Platform, PlatformChoice, secrets_in_environment,
};
pub use crate::error::{Error, Result};
pub use crate::forge::ForgeClient;
pub use crate::forge_types::{
    CheckRun, CommentOutcome, CommitState, CommitStatus, Deployment, DeploymentRecord,
    DeploymentState, IssueKey, IssueOutcome, StickyKey, TrackedIssue, truncate_comment_body,
};
pub use crate::github::GitHubClient;
pub use crate::gitlab::{GitLabClient, GitLabToken};
pub use crate::http::retry_policy;
pub use crate::inputs::{InputKind, InputSpec, args_from_inputs, input_env_name};
pub use crate::junit::{JunitCase, JunitOutcome, junit_report};
pub use crate::metrics::{Metric, metrics_report};
pub use crate::outputs::{OutputTarget, write_outputs};
pub use crate::publish::{ForgeWriteReport, Masker, Publication, publish_to_forge};
pub use crate::registry_login::{MlflowLogin, RegistryLogin, mlflow_login, registry_login};
pub use crate::summary::{SUMMARY_LIMIT_BYTES, SummaryWrite, append_summary};
pub use crate::workflow_commands::{
    StopCommands, escape_data, escape_property, group_end, group_start,
};
pub use gantry_core::{RetryPolicy, transport_reason};
