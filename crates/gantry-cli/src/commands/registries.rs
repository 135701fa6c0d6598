//! Opening the registry a `--registry` URI names, with credentials from the
//! environment, and what the commands read from one.

use std::io::Read as _;

use anyhow::{Context as _, Result, bail};
use gantry_core::Digest;
use gantry_registry::{FileRegistry, Reference, Registry, Resolved};

use crate::commands::Session;

/// Credentials (MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and
/// MLFLOW_TRACKING_PASSWORD) and retries for an MLflow server.
pub(crate) fn mlflow_options(session: &Session<'_>) -> Result<gantry_registry::MlflowOptions> {
    let auth = gantry_ci::mlflow_login(session.environment)
        .context("MLflow credentials")?
        .map(|login| match login {
            gantry_ci::MlflowLogin::Token(token) => {
                session.redactor().add(&token);
                gantry_registry::MlflowAuth::Token(token)
            }
            gantry_ci::MlflowLogin::Basic(user, password) => {
                register_basic_credentials(session, &user, &password);
                gantry_registry::MlflowAuth::Basic(user, password)
            }
        });
    Ok(gantry_registry::MlflowOptions {
        auth,
        retry: gantry_ci::retry_policy(session.environment),
    })
}

/// Registers a password, and the `user:password` pair that HTTP Basic
/// sends base64-encoded, with the redactor: a server that echoes the
/// `Authorization` header back must not put either in a log.
fn register_basic_credentials(
    session: &Session<'_>,
    username: &str,
    password: &gantry_core::Secret,
) {
    session.redactor().add(password);
    session.redactor().add(&gantry_core::Secret::new(format!(
        "{username}:{}",
        password.expose()
    )));
}

/// Opens the registry a URI names, with credentials for its host from the
/// environment (see `gantry_ci::registry_login`).
pub(crate) fn open_registry(uri: &str, session: &Session<'_>) -> Result<Box<dyn Registry>> {
    let environment = session.environment;
    if let Some(path) = uri.strip_prefix("file:") {
        if path.is_empty() {
            bail!("--registry {uri:?}: file: needs a path, e.g. file:.gantry/registry");
        }
        return Ok(Box::new(FileRegistry::new(path)));
    }
    if uri.starts_with("oci://") || uri.starts_with("oci+http://") {
        let host = uri
            .split_once("://")
            .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
        let credentials = gantry_ci::registry_login(environment, host)
            .with_context(|| format!("credentials for {host}"))?
            .map(|login| {
                register_basic_credentials(session, &login.username, &login.password);
                gantry_registry::Credentials {
                    username: login.username,
                    password: login.password,
                }
            });
        let options = gantry_registry::OciOptions {
            credentials,
            retry: gantry_ci::retry_policy(environment),
            ..gantry_registry::OciOptions::default()
        };
        return Ok(Box::new(gantry_registry::OciRegistry::new(uri, options)?));
    }
    if uri.starts_with("mlflow+http://") || uri.starts_with("mlflow+https://") {
        let options = mlflow_options(session)?;
        return Ok(Box::new(gantry_registry::MlflowRegistry::new(
            uri, options,
        )?));
    }
    bail!(
        "--registry {uri:?}: expected file:PATH (e.g. file:.gantry/registry), oci://HOST[:PORT]/REPOSITORY or mlflow+http(s)://HOST[:PORT]"
    )
}

/// Parses a REF argument.
pub(crate) fn parse_reference(text: &str) -> Result<Reference> {
    text.parse::<Reference>()
        .with_context(|| format!("{text:?} is not a model reference (NAME, NAME@VERSION, NAME@ALIAS or NAME@sha256:DIGEST)"))
}

/// A registered version's evaluation results, fetched into a scratch directory.
pub(crate) struct FetchedEvaluation {
    /// The version.
    pub(crate) resolved: Resolved,
    /// The results file, under its registered name.
    pub(crate) path: std::path::PathBuf,
    /// Removed on drop.
    pub(crate) scratch: tempfile::TempDir,
}

/// Resolves `reference` in the registry at `uri` and fetches the evaluation
/// results registered with it (`gantry register --eval-results`), checking
/// their digest.
pub(crate) fn fetch_evaluation(
    uri: &str,
    reference: &str,
    session: &Session<'_>,
) -> Result<FetchedEvaluation> {
    let registry = open_registry(uri, session)?;
    let resolved = registry.resolve(&parse_reference(reference)?)?;
    let Some(link) = resolved.manifest.lineage.evaluation.clone() else {
        bail!(
            "registry:{reference} resolves to {} {} ({}), which was registered without evaluation results; register the baseline with --eval-results",
            resolved.manifest.name,
            resolved.manifest.version,
            resolved.digest
        );
    };
    let scratch = tempfile::tempdir().context("cannot create a scratch directory")?;
    let path = fetch_document(
        &*registry,
        &resolved,
        &link,
        &format!("the evaluation results of {reference}"),
        scratch.path(),
    )?;
    Ok(FetchedEvaluation {
        resolved,
        path,
        scratch,
    })
}

/// Fetches a lineage document of `resolved` into `directory`, checked
/// against its digest; returns its path (named as it was registered).
pub(crate) fn fetch_document(
    registry: &dyn Registry,
    resolved: &Resolved,
    link: &gantry_core::DocumentLink,
    what: &str,
    directory: &std::path::Path,
) -> Result<std::path::PathBuf> {
    let mut bytes = Vec::new();
    registry
        .open_blob(&resolved.manifest.name, &link.digest)?
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {what} from the registry"))?;
    let actual = Digest::of_bytes(&bytes);
    if actual != link.digest {
        return Err(gantry_registry::Error::Tampered {
            what: what.to_owned(),
            expected: link.digest,
            actual,
        }
        .into());
    }
    let file_name = std::path::Path::new(&link.file_name)
        .file_name()
        .map_or_else(|| "document".into(), std::ffi::OsStr::to_os_string);
    let path = directory.join(file_name);
    std::fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// `--metadata` pairs as a manifest keeps them: the manifest is a record
/// like any other, so what it keeps is redacted before its identity is computed.
pub(crate) fn redacted_metadata<'a>(
    session: &'a Session<'_>,
    pairs: &'a [(String, String)],
) -> impl Iterator<Item = (String, String)> + 'a {
    let redactor = session.redactor();
    pairs.iter().map(move |(key, value)| {
        (
            redactor.redact(key).into_owned(),
            redactor.redact(value).into_owned(),
        )
    })
}
