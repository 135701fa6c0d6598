//! Credentials for a container/model registry host, from where CI and
//! developers keep them.

use crate::environment::{EnvVars, Environment};
use crate::error::{Error, Result};

/// A user name and password (or token) for a registry host.
#[derive(Debug, Clone)]
pub struct RegistryLogin {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: gantry_core::Secret,
    /// Where it came from, for messages (never the value).
    pub source: String,
}

/// The credentials for `host` (`name[:port]`), first found of:
/// `GANTRY_REGISTRY_USERNAME` + `GANTRY_REGISTRY_PASSWORD`; GitLab's
/// `CI_REGISTRY_USER` + `CI_REGISTRY_PASSWORD` when `host` is
/// `CI_REGISTRY`; `GITHUB_ACTOR` + `GITHUB_TOKEN` for `ghcr.io`; the
/// Docker config (`$DOCKER_CONFIG/config.json`, `~/.docker/config.json`)
/// and podman's auth file (`$REGISTRY_AUTH_FILE`,
/// `$XDG_RUNTIME_DIR/containers/auth.json`): plain `auths`, and the
/// `credHelpers` and `credsStore` credential helpers (`docker-credential-*`
/// on PATH) that `docker login` uses on a laptop.
pub fn registry_login(environment: &Environment, host: &str) -> Result<Option<RegistryLogin>> {
    let get = |name: &str| environment.get(name).filter(|value| !value.is_empty());
    match (
        get(EnvVars::GANTRY_REGISTRY_USERNAME),
        get(EnvVars::GANTRY_REGISTRY_PASSWORD),
    ) {
        (Some(username), Some(password)) => {
            return Ok(Some(RegistryLogin {
                username: username.to_owned(),
                password: gantry_core::Secret::new(password),
                source: "GANTRY_REGISTRY_USERNAME/GANTRY_REGISTRY_PASSWORD".to_owned(),
            }));
        }
        (Some(_), None) => {
            return Err(Error::Input(
                "GANTRY_REGISTRY_USERNAME is set but GANTRY_REGISTRY_PASSWORD is not".to_owned(),
            ));
        }
        (None, Some(_)) => {
            return Err(Error::Input(
                "GANTRY_REGISTRY_PASSWORD is set but GANTRY_REGISTRY_USERNAME is not".to_owned(),
            ));
        }
        (None, None) => {}
    }
    if get(EnvVars::CI_REGISTRY) == Some(host)
        && let (Some(username), Some(password)) = (
            get(EnvVars::CI_REGISTRY_USER),
            get(EnvVars::CI_REGISTRY_PASSWORD),
        )
    {
        return Ok(Some(RegistryLogin {
            username: username.to_owned(),
            password: gantry_core::Secret::new(password),
            source: "CI_REGISTRY_USER/CI_REGISTRY_PASSWORD".to_owned(),
        }));
    }
    if host == "ghcr.io"
        && let (Some(username), Some(password)) =
            (get(EnvVars::GITHUB_ACTOR), get(EnvVars::GITHUB_TOKEN))
    {
        return Ok(Some(RegistryLogin {
            username: username.to_owned(),
            password: gantry_core::Secret::new(password),
            source: "GITHUB_ACTOR/GITHUB_TOKEN".to_owned(),
        }));
    }
    let mut files = Vec::new();
    if let Some(dir) = get(EnvVars::DOCKER_CONFIG) {
        files.push(std::path::Path::new(dir).join("config.json"));
    } else if let Some(home) = get(EnvVars::HOME) {
        files.push(std::path::Path::new(home).join(".docker/config.json"));
    }
    if let Some(file) = get(EnvVars::REGISTRY_AUTH_FILE) {
        files.push(file.into());
    } else if let Some(dir) = get(EnvVars::XDG_RUNTIME_DIR) {
        files.push(std::path::Path::new(dir).join("containers/auth.json"));
    }
    for file in files {
        let Ok(reader) = std::fs::File::open(&file) else {
            continue;
        };
        let found =
            docker_credential::get_credential_from_reader(std::io::BufReader::new(reader), host);
        let (username, password) = match found {
            Ok(docker_credential::DockerCredential::UsernamePassword(username, password)) => {
                (username, password)
            }
            // What `docker login` stores for an OAuth identity: the helper
            // protocol's `<token>` user with the token as password.
            Ok(docker_credential::DockerCredential::IdentityToken(token)) => {
                ("<token>".to_owned(), token)
            }
            Err(error) => match docker_config_error(&file, host, error) {
                Some(error) => return Err(error),
                None => continue,
            },
        };
        return Ok(Some(RegistryLogin {
            username,
            password: gantry_core::Secret::new(password),
            source: file.display().to_string(),
        }));
    }
    Ok(None)
}

/// What a Docker config's failure to give credentials for `host` means:
/// `None` when it simply holds none (look further), an error naming the
/// file otherwise. A helper's output is never quoted: it may hold a secret.
fn docker_config_error(
    file: &std::path::Path,
    host: &str,
    error: docker_credential::CredentialRetrievalError,
) -> Option<Error> {
    use docker_credential::CredentialRetrievalError as Failure;
    let file = file.display();
    let reason = match error {
        Failure::NoCredentialConfigured | Failure::ConfigNotFound => return None,
        // docker-credential-* helpers answer an unknown host with exit 1 and
        // "credentials not found in native keychain".
        Failure::HelperFailure { stdout, .. } if stdout.contains("credentials not found") => {
            return None;
        }
        Failure::HelperFailure { helper, .. } => format!(
            "the credential helper {helper} failed for {host}; run `echo {host} | {helper} get` to see why"
        ),
        Failure::HelperCommunicationError => format!(
            "cannot run the credential helper it names for {host} (credsStore or credHelpers); install docker-credential-<name> on PATH or remove the entry"
        ),
        Failure::MalformedHelperResponse => format!(
            "the credential helper it names for {host} answered something that is not credentials JSON"
        ),
        Failure::CredentialDecodingError => {
            format!("the auth entry for {host} is not base64 of user:password")
        }
        Failure::CredentialMismatchError => {
            format!("the auth entry for {host} does not match its username and password")
        }
        Failure::ConfigReadError => {
            "not a Docker config (JSON with auths, credsStore or credHelpers)".to_owned()
        }
    };
    Some(Error::Input(format!("{file}: {reason}")))
}

/// How to authenticate to an MLflow server, from MLflow's own variables.
#[derive(Debug, Clone)]
pub enum MlflowLogin {
    /// `MLFLOW_TRACKING_TOKEN`: a bearer token (also what GitLab's MLflow API takes).
    Token(gantry_core::Secret),
    /// `MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD`.
    Basic(String, gantry_core::Secret),
}

/// MLflow credentials from the environment, if any.
pub fn mlflow_login(environment: &Environment) -> Result<Option<MlflowLogin>> {
    let get = |name: &str| environment.get(name).filter(|value| !value.is_empty());
    if let Some(token) = get(EnvVars::MLFLOW_TRACKING_TOKEN) {
        return Ok(Some(MlflowLogin::Token(gantry_core::Secret::new(token))));
    }
    match (
        get(EnvVars::MLFLOW_TRACKING_USERNAME),
        get(EnvVars::MLFLOW_TRACKING_PASSWORD),
    ) {
        (Some(user), Some(password)) => Ok(Some(MlflowLogin::Basic(
            user.to_owned(),
            gantry_core::Secret::new(password),
        ))),
        (Some(_), None) => Err(Error::Input(
            "MLFLOW_TRACKING_USERNAME is set but MLFLOW_TRACKING_PASSWORD is not".to_owned(),
        )),
        (None, Some(_)) => Err(Error::Input(
            "MLFLOW_TRACKING_PASSWORD is set but MLFLOW_TRACKING_USERNAME is not".to_owned(),
        )),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn environment_wins_then_ci_then_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".docker")).unwrap();
        std::fs::write(
            dir.path().join(".docker/config.json"),
            r#"{"auths": {"registry.example:5000": {"auth": "YWxpY2U6czNjcjN0"}}}"#,
        )
        .unwrap();
        let home = dir.path().to_str().unwrap();
        let environment = Environment::from_pairs([("HOME", home)]);
        let login = registry_login(&environment, "registry.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!(login.username, "alice");
        assert_eq!(login.password.expose(), "s3cr3t");
        assert!(
            registry_login(&environment, "other.example")
                .unwrap()
                .is_none()
        );

        let environment = Environment::from_pairs([
            ("HOME", home),
            ("GANTRY_REGISTRY_USERNAME", "bot"),
            ("GANTRY_REGISTRY_PASSWORD", "pw"),
        ]);
        let login = registry_login(&environment, "registry.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!(login.username, "bot");
        let environment = Environment::from_pairs([("GANTRY_REGISTRY_USERNAME", "bot")]);
        let error = registry_login(&environment, "x").unwrap_err().to_string();
        assert!(error.contains("GANTRY_REGISTRY_PASSWORD is not"), "{error}");

        let environment = Environment::from_pairs([
            ("CI_REGISTRY", "registry.gitlab.example"),
            ("CI_REGISTRY_USER", "gitlab-ci-token"),
            ("CI_REGISTRY_PASSWORD", "job"),
        ]);
        let login = registry_login(&environment, "registry.gitlab.example")
            .unwrap()
            .unwrap();
        assert_eq!(login.username, "gitlab-ci-token");
    }

    #[test]
    fn docker_config_helpers_tokens_and_broken_entries() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        let environment =
            Environment::from_pairs([("DOCKER_CONFIG", dir.path().to_str().unwrap())]);

        std::fs::write(
            &config,
            r#"{"auths": {"https://registry.example:5000/v2/": {"identitytoken": "tok-123"}}}"#,
        )
        .unwrap();
        let login = registry_login(&environment, "registry.example:5000")
            .unwrap()
            .unwrap();
        assert_eq!(login.username, "<token>");
        assert_eq!(login.password.expose(), "tok-123");

        std::fs::write(
            &config,
            r#"{"credHelpers": {"registry.example:5000": "gantry-missing-helper"}}"#,
        )
        .unwrap();
        let error = registry_login(&environment, "registry.example:5000")
            .unwrap_err()
            .to_string();
        assert!(error.contains("config.json"), "{error}");
        assert!(
            error.contains("cannot run the credential helper"),
            "{error}"
        );
        assert!(
            registry_login(&environment, "other.example")
                .unwrap()
                .is_none(),
            "a helper for another host is not asked"
        );

        std::fs::write(
            &config,
            r#"{"auths": {"registry.example:5000": {"auth": "!!!"}}}"#,
        )
        .unwrap();
        let error = registry_login(&environment, "registry.example:5000")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not base64 of user:password"), "{error}");

        std::fs::write(&config, "not json").unwrap();
        let error = registry_login(&environment, "registry.example:5000")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a Docker config"), "{error}");
    }
}
