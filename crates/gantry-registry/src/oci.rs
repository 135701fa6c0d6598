//! The OCI backend: any registry that speaks the distribution spec
//! (`oci://HOST[:PORT]/REPO`): GHCR, GitLab, Harbor, ECR, zot, CNCF distribution.
//!
//! A model `NAME` lives in repository `REPO/NAME`:
//!
//! - every model file is one layer, uploaded raw (its sha256 *is* the layer
//!   digest), with its ModelPack media type and `org.cncf.model.filepath`;
//!   lineage documents are layers of type `application/vnd.gantry.lineage.v1+json`;
//! - the gantry manifest is the config blob
//!   (`application/vnd.gantry.model.manifest.v1+json`, also the artifact type);
//! - tags: the version (`0.1.3`), each alias (`production`), `digest-<hex>`
//!   (the gantry digest, for idempotent registration without a scan), and one
//!   `event-<time>-<id>` artifact per alias move (the event as its config);
//! - the image manifest is pushed last, so a version exists only once every
//!   blob it names is in the registry.
//!
//! Uploads hash while they stream: files larger than a chunk go up in
//! `PATCH` chunks, and after a dropped connection the upload's status
//! (`GET` on its location → `Range`) says where to resume; the hash only
//! takes in bytes the registry acknowledged. Blobs the registry already has
//! (`HEAD`) are skipped when their digest is known in advance (small files,
//! lineage documents) and an upload that turns out to duplicate one is
//! cancelled. Authentication: anonymous, HTTP Basic, or the token flow (a
//! `401` with `WWW-Authenticate: Bearer realm=…` → a token for the
//! repository's scope, cached). OCI registries have no compare-and-swap on
//! tags: version allocation and alias moves read, write and read back, which
//! narrows but cannot close a race between two writers.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::sync::Mutex;
use std::time::Duration;

use gantry_core::RetryPolicy;
use gantry_core::{Digest, ModelManifest, Secret};
use reqwest::blocking::{Client, Response};
use reqwest::{Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::http::send_with_retries;
use crate::names::{RESERVED_TAG_PREFIXES, validate_alias, validate_name};
use crate::ops::build_manifest;
use crate::{
    AliasTarget, Event, Expectation, RegisterRequest, Registration, Registry, Resolved,
    VersionRequest, alias_event, check_expectation, move_aliases, next_version, now,
    unchanged_event,
};
use gantry_model::{SourceFile, parallel_largest_first_on};

const IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MODEL_CONFIG: &str = "application/vnd.gantry.model.manifest.v1+json";
const EVENT_CONFIG: &str = "application/vnd.gantry.event.v1+json";
const LINEAGE_LAYER: &str = "application/vnd.gantry.lineage.v1+json";
const EMPTY_JSON: &str = "application/vnd.oci.empty.v1+json";

/// Credentials for a registry host.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// The user name (for GHCR, any; for GitLab, `gitlab-ci-token` with the job token).
    pub username: String,
    /// The password or token, never printed.
    pub password: Secret,
}

/// How an [`OciRegistry`] talks to its server.
#[derive(Debug, Clone)]
pub struct OciOptions {
    /// Credentials, when the registry needs them.
    pub credentials: Option<Credentials>,
    /// Retries and timeouts.
    pub retry: RetryPolicy,
    /// Bytes per upload chunk (`PATCH`); files up to this size go up in one `PUT`.
    pub chunk_size: usize,
    /// Blobs transferred at once.
    pub concurrency: usize,
}

impl Default for OciOptions {
    fn default() -> OciOptions {
        OciOptions {
            credentials: None,
            retry: RetryPolicy::default(),
            chunk_size: 4 << 20,
            concurrency: 4,
        }
    }
}

/// A registry speaking the OCI distribution spec.
#[derive(Debug)]
pub struct OciRegistry {
    uri: String,
    base: url::Url,
    prefix: String,
    client: Client,
    options: OciOptions,
    /// Bearer tokens by scope.
    tokens: Mutex<HashMap<String, String>>,
    /// Whether the server asked for Basic credentials.
    basic: Mutex<bool>,
}

/// `oci://host[:port]/repo` → (base URL, repository prefix). Loopback hosts
/// and `oci+http://` use plain HTTP; everything else HTTPS.
fn parse_uri(uri: &str) -> Result<(url::Url, String)> {
    let invalid = |reason: &str| Error::Given {
        what: "registry",
        path: uri.to_owned(),
        reason: reason.to_owned(),
    };
    let (scheme, rest) = if let Some(rest) = uri.strip_prefix("oci+http://") {
        ("http", rest)
    } else if let Some(rest) = uri.strip_prefix("oci://") {
        ("https", rest)
    } else {
        return Err(invalid("expected oci://HOST[:PORT]/REPOSITORY"));
    };
    let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if host.is_empty() {
        return Err(invalid("no host"));
    }
    let hostname = host.rsplit_once(':').map_or(host, |(name, _)| name);
    let scheme = if matches!(hostname, "localhost" | "127.0.0.1" | "[::1]") {
        "http"
    } else {
        scheme
    };
    let base = url::Url::parse(&format!("{scheme}://{host}/"))
        .map_err(|error| invalid(&format!("bad host: {error}")))?;
    let prefix = prefix.trim_end_matches('/').to_owned();
    let valid_prefix = prefix.split('/').all(|part| validate_name(part).is_ok());
    if !prefix.is_empty() && !valid_prefix {
        return Err(invalid(
            "the repository path must be lowercase components separated by '/'",
        ));
    }
    Ok((base, prefix))
}

#[derive(Debug, Serialize, Deserialize, Clone)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    artifact_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

/// A version as stored: its gantry manifest and the OCI manifest's digest.
struct StoredVersion {
    resolved: Resolved,
    oci_digest: Digest,
    actor: Option<String>,
}

impl OciRegistry {
    /// A registry at `uri` (`oci://HOST[:PORT]/REPO` or `oci+http://…`).
    pub fn new(uri: &str, options: OciOptions) -> Result<OciRegistry> {
        let (base, prefix) = parse_uri(uri)?;
        let client = crate::http::client()?;
        Ok(OciRegistry {
            uri: uri.to_owned(),
            base,
            prefix,
            client,
            options,
            tokens: Mutex::new(HashMap::new()),
            basic: Mutex::new(false),
        })
    }

    fn repository(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    fn host(&self) -> String {
        self.base
            .host_str()
            .map(|host| match self.base.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_owned(),
            })
            .unwrap_or_default()
    }

    fn url(&self, path: &str) -> Result<url::Url> {
        self.base
            .join(path)
            .map_err(|error| Error::Input(format!("bad URL {path:?}: {error}")))
    }

    /// An upload location as returned by the registry (absolute or relative).
    fn location(&self, response: &Response) -> Result<url::Url> {
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| self.protocol("an upload response has no Location header"))?;
        self.base
            .join(location)
            .map_err(|error| self.protocol(&format!("bad Location {location:?}: {error}")))
    }

    fn protocol(&self, reason: &str) -> Error {
        Error::Remote(format!("{}: {reason}", self.host()))
    }

    /// Sends a request with authentication, retrying 429/5xx and connection
    /// errors with backoff. `body` is called for each attempt.
    fn send(
        &self,
        method: Method,
        url: &url::Url,
        scope: &str,
        headers: &[(header::HeaderName, String)],
        body: &dyn Fn() -> Option<Vec<u8>>,
    ) -> Result<Response> {
        let what = format!("{method} {}", redacted(url));
        let mut authenticated_again = false;
        send_with_retries(
            &self.options.retry,
            &what,
            || {
                let mut request = self
                    .client
                    .request(method.clone(), url.clone())
                    .timeout(self.options.retry.timeout.max(Duration::from_secs(60)))
                    .headers(self.auth_headers(scope));
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                if !request_has_token(&self.tokens, scope)
                    && self.basic.lock().is_ok_and(|basic| *basic)
                    && let Some(credentials) = &self.options.credentials
                {
                    request = request
                        .basic_auth(&credentials.username, Some(credentials.password.expose()));
                }
                if let Some(bytes) = body() {
                    request = request.body(bytes);
                }
                request.send()
            },
            |response| {
                if response.status() == StatusCode::UNAUTHORIZED && !authenticated_again {
                    authenticated_again = true;
                    self.authenticate(response, scope, &what)?;
                    return Ok(true);
                }
                Ok(false)
            },
        )
    }

    /// Answers a 401: fetch a token from the Bearer realm, or switch to Basic.
    fn authenticate(&self, response: &Response, scope: &str, what: &str) -> Result<()> {
        let challenge = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let no_credentials = || {
            Error::Remote(format!(
                "{what}: 401 Unauthorized from {}; give credentials with GANTRY_REGISTRY_USERNAME and GANTRY_REGISTRY_PASSWORD (or docker login)",
                self.host()
            ))
        };
        if challenge.to_ascii_lowercase().starts_with("basic") {
            if self.options.credentials.is_none() {
                return Err(no_credentials());
            }
            if let Ok(mut basic) = self.basic.lock() {
                *basic = true;
            }
            return Ok(());
        }
        let Some(parameters) = challenge
            .strip_prefix("Bearer ")
            .or_else(|| challenge.strip_prefix("bearer "))
        else {
            return Err(Error::Remote(format!(
                "{what}: 401 Unauthorized from {} with no usable WWW-Authenticate challenge ({challenge:?})",
                self.host()
            )));
        };
        let parameters = parse_challenge(parameters);
        let Some(realm) = parameters.get("realm") else {
            return Err(self.protocol("the Bearer challenge has no realm"));
        };
        let mut token_url = url::Url::parse(realm)
            .map_err(|error| self.protocol(&format!("bad token realm {realm:?}: {error}")))?;
        {
            let mut query = token_url.query_pairs_mut();
            if let Some(service) = parameters.get("service") {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope);
        }
        let mut request = self
            .client
            .get(token_url.clone())
            .timeout(self.options.retry.timeout);
        if let Some(credentials) = &self.options.credentials {
            request =
                request.basic_auth(&credentials.username, Some(credentials.password.expose()));
        }
        let token_host = token_url.host_str().unwrap_or_default().to_owned();
        let response = request.send().map_err(|error| {
            Error::Remote(format!(
                "GET {} (token for {scope}): {}",
                redacted(&token_url),
                gantry_core::transport_reason(&error)
            ))
        })?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(Error::Remote(format!(
                "the token service {token_host} refused {} for {scope} ({status}); check GANTRY_REGISTRY_USERNAME and GANTRY_REGISTRY_PASSWORD",
                self.options.credentials.as_ref().map_or(
                    "anonymous access".to_owned(),
                    |credentials| format!("user {:?}", credentials.username)
                ),
            )));
        }
        if !status.is_success() {
            return Err(Error::Remote(format!(
                "the token service {token_host} answered {status} for {scope}"
            )));
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            #[serde(default)]
            token: Option<String>,
            #[serde(default)]
            access_token: Option<String>,
        }
        let body: TokenResponse = response.json().map_err(|error| {
            Error::Remote(format!(
                "the token service {token_host} sent no token: {error}"
            ))
        })?;
        let token = body.token.or(body.access_token).ok_or_else(|| {
            Error::Remote(format!("the token service {token_host} sent no token"))
        })?;
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(scope.to_owned(), token);
        }
        Ok(())
    }

    /// Fails with the registry's own error message unless `response` has one of `expected`.
    fn expect(&self, response: Response, what: &str, expected: &[StatusCode]) -> Result<Response> {
        if expected.contains(&response.status()) {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|value| {
                value["errors"].as_array().map(|errors| {
                    errors
                        .iter()
                        .map(|error| {
                            format!(
                                "{}: {}",
                                error["code"].as_str().unwrap_or("ERROR"),
                                error["message"].as_str().unwrap_or_default()
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                })
            })
            .unwrap_or_else(|| text.chars().take(300).collect());
        Err(Error::Remote(format!(
            "{what}: {} {status}: {message}",
            self.host()
        )))
    }

    fn scope(&self, repository: &str, push: bool) -> String {
        if push {
            format!("repository:{repository}:pull,push")
        } else {
            format!("repository:{repository}:pull")
        }
    }

    fn blob_exists(&self, repository: &str, digest: &Digest, scope: &str) -> Result<bool> {
        let url = self.url(&format!("v2/{repository}/blobs/{digest}"))?;
        let response = self.send(Method::HEAD, &url, scope, &[], &|| None)?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => self
                .expect(
                    response,
                    &format!("HEAD {}", redacted(&url)),
                    &[StatusCode::OK],
                )
                .map(|_| true),
        }
    }

    fn start_upload(&self, repository: &str, scope: &str) -> Result<url::Url> {
        let url = self.url(&format!("v2/{repository}/blobs/uploads/"))?;
        let response = self.send(Method::POST, &url, scope, &[], &|| Some(Vec::new()))?;
        let response = self.expect(
            response,
            &format!("POST {}", redacted(&url)),
            &[StatusCode::ACCEPTED],
        )?;
        self.location(&response)
    }

    fn finish_upload(
        &self,
        location: &url::Url,
        digest: &Digest,
        scope: &str,
        body: Vec<u8>,
    ) -> Result<()> {
        let mut url = location.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let length = body.len().to_string();
        let response = self.send(
            Method::PUT,
            &url,
            scope,
            &[
                (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                (header::CONTENT_LENGTH, length),
            ],
            &|| Some(body.clone()),
        )?;
        self.expect(
            response,
            &format!("PUT blob {digest}"),
            &[StatusCode::CREATED],
        )?;
        Ok(())
    }

    /// Uploads bytes held in memory (small files, documents, configs),
    /// skipping them when the registry has them. Returns whether it uploaded.
    fn push_bytes(&self, repository: &str, bytes: &[u8]) -> Result<bool> {
        let scope = self.scope(repository, true);
        let digest = Digest::of_bytes(bytes);
        if self.blob_exists(repository, &digest, &scope)? {
            return Ok(false);
        }
        let location = self.start_upload(repository, &scope)?;
        self.finish_upload(&location, &digest, &scope, bytes.to_vec())?;
        Ok(true)
    }

    /// Uploads a file, hashing what the registry acknowledges. Returns its
    /// digest and whether new bytes were stored.
    fn push_file(&self, repository: &str, file: &SourceFile) -> Result<(Digest, bool)> {
        let chunk_size = self.options.chunk_size.max(1);
        let io = |error| Error::io("cannot read", &file.absolute)(error);
        if file.size <= chunk_size as u64 {
            let bytes = std::fs::read(&file.absolute).map_err(io)?;
            file.check_unchanged(bytes.len() as u64)?;
            let digest = Digest::of_bytes(&bytes);
            return Ok((digest, self.push_bytes(repository, &bytes)?));
        }
        let scope = self.scope(repository, true);
        let mut reader = std::fs::File::open(&file.absolute).map_err(io)?;
        let mut location = self.start_upload(repository, &scope)?;
        let mut hasher = Sha256::new();
        let mut acknowledged = 0_u64;
        let mut buffer = vec![0_u8; chunk_size];
        let mut resumes = 0;
        loop {
            reader.seek(SeekFrom::Start(acknowledged)).map_err(io)?;
            let length = read_full(&mut reader, &mut buffer).map_err(io)?;
            if length == 0 {
                break;
            }
            let chunk = &buffer[..length];
            let end = acknowledged + length as u64 - 1;
            let outcome = self
                .client
                .patch(location.clone())
                .timeout(self.options.retry.timeout.max(Duration::from_secs(60)))
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_RANGE, format!("{acknowledged}-{end}"))
                .header(header::CONTENT_LENGTH, length.to_string())
                .headers(self.auth_headers(&scope))
                .body(chunk.to_vec())
                .send();
            match outcome {
                Ok(response) if response.status() == StatusCode::ACCEPTED => {
                    hasher.update(chunk);
                    acknowledged += length as u64;
                    location = self.location(&response)?;
                }
                Ok(response) if response.status() == StatusCode::UNAUTHORIZED => {
                    // A token can expire during a long upload.
                    self.authenticate(&response, &scope, "PATCH blob upload")?;
                }
                failed => {
                    resumes += 1;
                    if resumes > self.options.retry.attempts {
                        let reason = match failed {
                            Ok(response) => format!("answered {}", response.status()),
                            Err(error) => gantry_core::transport_reason(&error),
                        };
                        let _ = self.send(Method::DELETE, &location, &scope, &[], &|| None);
                        return Err(Error::Remote(format!(
                            "uploading {} to {}: {reason}; gave up after {resumes} resumes",
                            file.path,
                            self.host()
                        )));
                    }
                    std::thread::sleep(self.options.retry.backoff(resumes));
                    // Where does the registry's copy end? Hash up to there.
                    // A registry that invalidated the upload (distribution
                    // does when a request was cut: its state token no longer
                    // matches) gets the blob again from a fresh upload.
                    let stored = match self.upload_offset(&location, &scope) {
                        Ok(stored) => stored,
                        Err(_) => {
                            let _ = self.send(Method::DELETE, &location, &scope, &[], &|| None);
                            location = self.start_upload(repository, &scope)?;
                            hasher = Sha256::new();
                            acknowledged = 0;
                            continue;
                        }
                    };
                    if stored < acknowledged {
                        return Err(self.protocol(&format!(
                            "the upload of {} shrank from {acknowledged} to {stored} bytes",
                            file.path
                        )));
                    }
                    if stored > acknowledged {
                        let mut extra =
                            vec![0_u8; usize::try_from(stored - acknowledged).unwrap_or(0)];
                        reader.seek(SeekFrom::Start(acknowledged)).map_err(io)?;
                        reader.read_exact(&mut extra).map_err(io)?;
                        hasher.update(&extra);
                        acknowledged = stored;
                    }
                }
            }
        }
        file.check_unchanged(acknowledged)?;
        let digest = Digest::from_bytes(hasher.finalize().into());
        if self.blob_exists(repository, &digest, &scope)? {
            let _ = self.send(Method::DELETE, &location, &scope, &[], &|| None);
            return Ok((digest, false));
        }
        self.finish_upload(&location, &digest, &scope, Vec::new())?;
        Ok((digest, true))
    }

    fn auth_headers(&self, scope: &str) -> header::HeaderMap {
        let mut headers = header::HeaderMap::new();
        if let Some(token) = self
            .tokens
            .lock()
            .ok()
            .and_then(|tokens| tokens.get(scope).cloned())
            && let Ok(value) = header::HeaderValue::from_str(&format!("Bearer {token}"))
        {
            headers.insert(header::AUTHORIZATION, value);
        }
        headers
    }

    /// The bytes an upload holds (`GET` on its location → `Range: 0-N`).
    fn upload_offset(&self, location: &url::Url, scope: &str) -> Result<u64> {
        let response = self.send(Method::GET, location, scope, &[], &|| None)?;
        let response = self.expect(response, "GET upload status", &[StatusCode::NO_CONTENT])?;
        let range = response
            .headers()
            .get(header::RANGE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("0-0");
        let end: u64 = range
            .rsplit('-')
            .next()
            .and_then(|end| end.parse().ok())
            .unwrap_or(0);
        // "0-0" is ambiguous (nothing, or one byte); distribution reports an
        // empty upload as 0-0 too, so one byte is re-sent in the worst case.
        Ok(if range == "0-0" { 0 } else { end + 1 })
    }

    fn put_manifest(&self, repository: &str, reference: &str, bytes: &[u8]) -> Result<()> {
        let scope = self.scope(repository, true);
        let url = self.url(&format!("v2/{repository}/manifests/{reference}"))?;
        let response = self.send(
            Method::PUT,
            &url,
            &scope,
            &[(header::CONTENT_TYPE, IMAGE_MANIFEST.to_owned())],
            &|| Some(bytes.to_vec()),
        )?;
        self.expect(
            response,
            &format!("PUT manifest {repository}:{reference}"),
            &[StatusCode::CREATED],
        )?;
        Ok(())
    }

    /// The manifest bytes under `reference`, or `None` when it does not exist.
    fn get_manifest(&self, repository: &str, reference: &str) -> Result<Option<Vec<u8>>> {
        let scope = self.scope(repository, false);
        let url = self.url(&format!("v2/{repository}/manifests/{reference}"))?;
        let response = self.send(
            Method::GET,
            &url,
            &scope,
            &[(header::ACCEPT, IMAGE_MANIFEST.to_owned())],
            &|| None,
        )?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = self.expect(
            response,
            &format!("GET manifest {repository}:{reference}"),
            &[StatusCode::OK],
        )?;
        let bytes = response.bytes().map_err(|error| {
            Error::Remote(format!("GET manifest {repository}:{reference}: {error}"))
        })?;
        Ok(Some(bytes.to_vec()))
    }

    fn get_blob_bytes(&self, repository: &str, digest: &Digest) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open(repository, digest)?
            .read_to_end(&mut bytes)
            .map_err(|error| {
                Error::Remote(format!("GET blob {digest} from {}: {error}", self.host()))
            })?;
        let actual = Digest::of_bytes(&bytes);
        if actual != *digest {
            return Err(Error::Tampered {
                what: format!("blob of {repository} from {}", self.host()),
                expected: *digest,
                actual,
            });
        }
        Ok(bytes)
    }

    fn open(&self, repository: &str, digest: &Digest) -> Result<Response> {
        let scope = self.scope(repository, false);
        let url = self.url(&format!("v2/{repository}/blobs/{digest}"))?;
        let response = self.send(Method::GET, &url, &scope, &[], &|| None)?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(Error::NotFound(format!(
                "blob {digest} is missing from {}/{repository}",
                self.host()
            )));
        }
        self.expect(response, &format!("GET blob {digest}"), &[StatusCode::OK])
    }

    fn tags(&self, repository: &str) -> Result<Vec<String>> {
        let scope = self.scope(repository, false);
        let mut url = self.url(&format!("v2/{repository}/tags/list?n=1000"))?;
        let mut tags = Vec::new();
        loop {
            let response = self.send(Method::GET, &url, &scope, &[], &|| None)?;
            if response.status() == StatusCode::NOT_FOUND {
                return Ok(tags);
            }
            let next = next_link(&response).map(|link| self.base.join(&link));
            let response = self.expect(
                response,
                &format!("GET tags of {repository}"),
                &[StatusCode::OK],
            )?;
            #[derive(Deserialize)]
            struct TagList {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let list: TagList = response
                .json()
                .map_err(|error| self.protocol(&format!("tags of {repository}: {error}")))?;
            tags.extend(list.tags.unwrap_or_default());
            match next {
                Some(Ok(next)) => url = next,
                _ => return Ok(tags),
            }
        }
    }

    fn stored_version(&self, repository: &str, reference: &str) -> Result<Option<StoredVersion>> {
        let Some(bytes) = self.get_manifest(repository, reference)? else {
            return Ok(None);
        };
        let oci_digest = Digest::of_bytes(&bytes);
        let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(|error| {
            self.protocol(&format!(
                "{repository}:{reference} is not an OCI image manifest: {error}"
            ))
        })?;
        if manifest.config.media_type != MODEL_CONFIG {
            return Err(self.protocol(&format!(
                "{repository}:{reference} is a {} artifact, not a gantry model",
                manifest.config.media_type
            )));
        }
        let config = self.get_blob_bytes(repository, &manifest.config.digest)?;
        let model: ModelManifest = serde_json::from_slice(&config).map_err(|error| {
            self.protocol(&format!(
                "{repository}:{reference}: the config is not a model manifest: {error}"
            ))
        })?;
        let resolved = Resolved::new(model)?;
        // The digest recorded at registration: an edited config is caught.
        if let Some(recorded) = manifest.annotations.get("org.gantry.model.digest")
            && *recorded != resolved.digest.to_string()
        {
            return Err(Error::Tampered {
                what: format!("the manifest of {repository}:{reference}"),
                expected: recorded.parse()?,
                actual: resolved.digest,
            });
        }
        Ok(Some(StoredVersion {
            resolved,
            oci_digest,
            actor: manifest.annotations.get("org.gantry.actor").cloned(),
        }))
    }

    fn stored_versions(&self, name: &str) -> Result<Vec<StoredVersion>> {
        let repository = self.repository(name);
        let mut versions = Vec::new();
        for tag in self.tags(&repository)? {
            if semver::Version::parse(&tag).is_ok()
                && let Some(version) = self.stored_version(&repository, &tag)?
            {
                versions.push(version);
            }
        }
        versions.sort_by(|a, b| {
            let parse = |stored: &StoredVersion| {
                semver::Version::parse(&stored.resolved.manifest.version).ok()
            };
            parse(a).cmp(&parse(b))
        });
        Ok(versions)
    }

    fn image_manifest(
        &self,
        manifest: &ModelManifest,
        digest: &Digest,
        config: &[u8],
        actor: &str,
    ) -> Result<Vec<u8>> {
        let mut layers: Vec<Descriptor> = manifest
            .files
            .iter()
            .map(|file| Descriptor {
                media_type: file.media_type.clone(),
                digest: file.digest,
                size: file.size,
                annotations: BTreeMap::from([
                    ("org.cncf.model.filepath".to_owned(), file.path.clone()),
                    (
                        "org.opencontainers.image.title".to_owned(),
                        file.path.clone(),
                    ),
                ]),
            })
            .collect();
        for (role, link) in manifest.lineage.documents() {
            layers.push(Descriptor {
                media_type: LINEAGE_LAYER.to_owned(),
                digest: link.digest,
                size: link.size,
                annotations: BTreeMap::from([
                    ("org.gantry.lineage.role".to_owned(), role.to_owned()),
                    (
                        "org.opencontainers.image.title".to_owned(),
                        link.file_name.clone(),
                    ),
                ]),
            });
        }
        let image = ImageManifest {
            schema_version: 2,
            media_type: Some(IMAGE_MANIFEST.to_owned()),
            artifact_type: Some(MODEL_CONFIG.to_owned()),
            config: Descriptor {
                media_type: MODEL_CONFIG.to_owned(),
                digest: Digest::of_bytes(config),
                size: config.len() as u64,
                annotations: BTreeMap::new(),
            },
            layers,
            annotations: BTreeMap::from([
                (
                    "org.opencontainers.image.version".to_owned(),
                    manifest.version.clone(),
                ),
                (
                    "org.opencontainers.image.created".to_owned(),
                    manifest.created.clone(),
                ),
                ("org.gantry.model.name".to_owned(), manifest.name.clone()),
                ("org.gantry.model.digest".to_owned(), digest.to_string()),
                ("org.gantry.actor".to_owned(), actor.to_owned()),
            ]),
        };
        Ok(serde_json::to_vec(&image).map_err(gantry_core::Error::from)?)
    }

    fn record_event(&self, repository: &str, event: &Event) -> Result<()> {
        let config = serde_json::to_vec(event).map_err(gantry_core::Error::from)?;
        self.push_bytes(repository, &config)?;
        self.push_bytes(repository, b"{}")?;
        let image = ImageManifest {
            schema_version: 2,
            media_type: Some(IMAGE_MANIFEST.to_owned()),
            artifact_type: Some(EVENT_CONFIG.to_owned()),
            config: Descriptor {
                media_type: EVENT_CONFIG.to_owned(),
                digest: Digest::of_bytes(&config),
                size: config.len() as u64,
                annotations: BTreeMap::new(),
            },
            layers: vec![Descriptor {
                media_type: EMPTY_JSON.to_owned(),
                digest: Digest::of_bytes(b"{}"),
                size: 2,
                annotations: BTreeMap::new(),
            }],
            annotations: BTreeMap::new(),
        };
        let bytes = serde_json::to_vec(&image).map_err(gantry_core::Error::from)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0);
        let tag = format!("event-{nanos:020}-{:08x}", rand::random::<u32>());
        self.put_manifest(repository, &tag, &bytes)
    }

    fn alias_digest(&self, repository: &str, alias: &str) -> Result<Option<Digest>> {
        Ok(self
            .get_manifest(repository, alias)?
            .map(|bytes| Digest::of_bytes(&bytes)))
    }

    fn move_alias_inner(
        &self,
        alias: &str,
        target: &Resolved,
        expect: &Expectation,
        actor: &str,
    ) -> Result<Option<Event>> {
        let name = &target.manifest.name;
        let repository = self.repository(name);
        let versions = self.stored_versions(name)?;
        let Some(stored) = versions
            .iter()
            .find(|stored| stored.resolved.digest == target.digest)
        else {
            return Err(Error::NotFound(format!(
                "{name}@{} is not in {}",
                target.digest, self.uri
            )));
        };
        let current = self.alias_digest(&repository, alias)?.and_then(|oci| {
            versions
                .iter()
                .find(|stored| stored.oci_digest == oci)
                .map(|stored| AliasTarget {
                    version: stored.resolved.manifest.version.clone(),
                    digest: stored.resolved.digest,
                })
        });
        if !check_expectation(name, alias, current.as_ref(), expect, target)? {
            return Ok(None);
        }
        let bytes = self
            .get_manifest(&repository, &stored.resolved.manifest.version)?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "{name} {} vanished",
                    stored.resolved.manifest.version
                ))
            })?;
        self.put_manifest(&repository, alias, &bytes)?;
        if self.alias_digest(&repository, alias)? != Some(stored.oci_digest) {
            return Err(Error::AliasConflict {
                name: name.clone(),
                alias: alias.to_owned(),
                expected: target.digest.to_string(),
                actual: "another version, written at the same time".to_owned(),
            });
        }
        let event = alias_event(alias, target, actor, current);
        self.record_event(&repository, &event)?;
        Ok(Some(event))
    }
}

/// Whether a bearer token for `scope` is cached.
fn request_has_token(tokens: &Mutex<HashMap<String, String>>, scope: &str) -> bool {
    tokens.lock().is_ok_and(|tokens| tokens.contains_key(scope))
}

fn read_full(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// A URL for messages: no query (upload locations carry state tokens).
fn redacted(url: &url::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.to_string()
}

/// `realm="…",service="…",scope="…"` → map.
fn parse_challenge(parameters: &str) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let mut rest = parameters.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        map.insert(key, value.to_owned());
        rest = remaining.trim_start_matches(',').trim();
    }
    map
}

/// The `rel="next"` target of a `Link` header.
fn next_link(response: &Response) -> Option<String> {
    let link = response.headers().get(header::LINK)?.to_str().ok()?;
    link.split(',')
        .find(|part| part.contains("rel=\"next\""))
        .and_then(|part| {
            let start = part.find('<')? + 1;
            let end = part.find('>')?;
            Some(part[start..end].to_owned())
        })
}

impl Registry for OciRegistry {
    fn uri(&self) -> String {
        self.uri.clone()
    }

    fn register(&self, request: &RegisterRequest<'_>) -> Result<Registration> {
        validate_name(request.name)?;
        for alias in &request.aliases {
            validate_alias(alias)?;
        }
        let repository = self.repository(request.name);
        let files = &request.source.files;
        let pushed = parallel_largest_first_on(
            self.options.concurrency,
            files,
            |file| file.size,
            |file| self.push_file(&repository, file),
        )?;
        let mut bytes_stored: u64 = files
            .iter()
            .zip(&pushed)
            .filter(|(_, (_, new))| *new)
            .map(|(file, _)| file.size)
            .sum();
        for (_, bytes) in &request.lineage.documents {
            if self.push_bytes(&repository, bytes)? {
                bytes_stored += bytes.len() as u64;
            }
        }
        let digests: Vec<Digest> = pushed.iter().map(|(digest, _)| *digest).collect();
        let mut manifest = build_manifest(
            request.name,
            files,
            &digests,
            &request.lineage.lineage,
            &request.metadata,
        );
        let digest = manifest.digest()?;
        let digest_tag = format!("digest-{}", digest.hex());

        let (resolved, created) = if let Some(existing) =
            self.stored_version(&repository, &digest_tag)?
        {
            if let VersionRequest::Exact(version) = &request.version
                && existing.resolved.manifest.version != version.to_string()
            {
                return Err(Error::Input(format!(
                    "{} is already registered as {} {} (digest {digest}); the same content is not registered twice",
                    request.source.root.display(),
                    request.name,
                    existing.resolved.manifest.version
                )));
            }
            (existing.resolved, false)
        } else {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let tags = self.tags(&repository)?;
                let version = match &request.version {
                    VersionRequest::Auto => {
                        next_version(tags.iter().map(String::as_str)).to_string()
                    }
                    VersionRequest::Exact(version) => version.to_string(),
                };
                if tags.contains(&version) {
                    let taken = self
                        .stored_version(&repository, &version)?
                        .map(|stored| stored.resolved.digest);
                    return Err(match taken {
                        Some(existing) => Error::VersionTaken {
                            name: request.name.to_owned(),
                            version,
                            existing,
                            new: digest,
                        },
                        None => self.protocol(&format!(
                            "{repository}:{version} exists but is not a gantry model"
                        )),
                    });
                }
                manifest.version = version.clone();
                manifest.created = now();
                let mut config =
                    serde_json::to_vec_pretty(&manifest).map_err(gantry_core::Error::from)?;
                config.push(b'\n');
                self.push_bytes(&repository, &config)?;
                let image = self.image_manifest(&manifest, &digest, &config, &request.actor)?;
                self.put_manifest(&repository, &version, &image)?;
                // No compare-and-swap on tags: read back, and on a lost race
                // take the next version.
                let landed = self
                    .get_manifest(&repository, &version)?
                    .map(|bytes| Digest::of_bytes(&bytes));
                if landed == Some(Digest::of_bytes(&image)) {
                    self.put_manifest(&repository, &digest_tag, &image)?;
                    break;
                }
                if attempt >= 5 || matches!(request.version, VersionRequest::Exact(_)) {
                    return Err(Error::Remote(format!(
                        "another registration took {repository}:{version} at the same time; register again"
                    )));
                }
            }
            (Resolved { manifest, digest }, true)
        };
        let alias_moves = move_aliases(&request.aliases, |alias| {
            self.move_alias_inner(alias, &resolved, &Expectation::Any, &request.actor)
        })?;
        Ok(Registration {
            manifest: resolved.manifest,
            digest,
            created,
            bytes_stored,
            alias_moves,
        })
    }

    fn models(&self) -> Result<Vec<String>> {
        let scope = "registry:catalog:*";
        let mut url = self.url("v2/_catalog?n=1000")?;
        let mut names = Vec::new();
        loop {
            let response = self.send(Method::GET, &url, scope, &[], &|| None)?;
            let next = next_link(&response).map(|link| self.base.join(&link));
            let response = self.expect(
                response,
                "GET /v2/_catalog (listing needs the catalog API, which some registries turn off)",
                &[StatusCode::OK],
            )?;
            #[derive(Deserialize)]
            struct Catalog {
                #[serde(default)]
                repositories: Vec<String>,
            }
            let catalog: Catalog = response
                .json()
                .map_err(|error| self.protocol(&format!("catalog: {error}")))?;
            for repository in catalog.repositories {
                let name = if self.prefix.is_empty() {
                    Some(repository.as_str())
                } else {
                    repository.strip_prefix(&format!("{}/", self.prefix))
                };
                if let Some(name) = name.filter(|name| validate_name(name).is_ok())
                    && !self.versions(name)?.is_empty()
                {
                    names.push(name.to_owned());
                }
            }
            match next {
                Some(Ok(next)) => url = next,
                _ => break,
            }
        }
        names.sort();
        Ok(names)
    }

    fn versions(&self, name: &str) -> Result<Vec<Resolved>> {
        validate_name(name)?;
        Ok(self
            .stored_versions(name)?
            .into_iter()
            .map(|stored| stored.resolved)
            .collect())
    }

    fn aliases(&self, name: &str) -> Result<BTreeMap<String, AliasTarget>> {
        validate_name(name)?;
        let repository = self.repository(name);
        let versions = self.stored_versions(name)?;
        let mut aliases = BTreeMap::new();
        for tag in self.tags(&repository)? {
            if validate_alias(&tag).is_err()
                || RESERVED_TAG_PREFIXES
                    .iter()
                    .any(|prefix| tag.starts_with(prefix))
            {
                continue;
            }
            if let Some(oci) = self.alias_digest(&repository, &tag)?
                && let Some(stored) = versions.iter().find(|stored| stored.oci_digest == oci)
            {
                aliases.insert(
                    tag,
                    AliasTarget {
                        version: stored.resolved.manifest.version.clone(),
                        digest: stored.resolved.digest,
                    },
                );
            }
        }
        Ok(aliases)
    }

    fn move_alias(
        &self,
        alias: &str,
        target: &Resolved,
        expect: &Expectation,
        actor: &str,
    ) -> Result<Event> {
        validate_alias(alias)?;
        Ok(self
            .move_alias_inner(alias, target, expect, actor)?
            .unwrap_or_else(|| unchanged_event(alias, target, actor)))
    }

    fn events(&self, name: &str) -> Result<Vec<Event>> {
        validate_name(name)?;
        let repository = self.repository(name);
        let mut events: Vec<Event> = self
            .stored_versions(name)?
            .into_iter()
            .map(|stored| Event {
                time: stored.resolved.manifest.created.clone(),
                actor: stored.actor.unwrap_or_else(|| "unknown".to_owned()),
                action: "registered".to_owned(),
                version: stored.resolved.manifest.version.clone(),
                digest: stored.resolved.digest,
                alias: None,
                previous: None,
            })
            .collect();
        let mut event_tags: Vec<String> = self
            .tags(&repository)?
            .into_iter()
            .filter(|tag| tag.starts_with("event-"))
            .collect();
        event_tags.sort();
        for tag in event_tags {
            let Some(bytes) = self.get_manifest(&repository, &tag)? else {
                continue;
            };
            let image: ImageManifest = serde_json::from_slice(&bytes)
                .map_err(|error| self.protocol(&format!("{repository}:{tag}: {error}")))?;
            let config = self.get_blob_bytes(&repository, &image.config.digest)?;
            let event: Event = serde_json::from_slice(&config).map_err(|error| {
                self.protocol(&format!("{repository}:{tag}: not an event: {error}"))
            })?;
            events.push(event);
        }
        events.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(events)
    }

    fn open_blob(&self, name: &str, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        validate_name(name)?;
        Ok(Box::new(self.open(&self.repository(name), digest)?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let (base, prefix) = parse_uri("oci://ghcr.io/org/models").unwrap();
        assert_eq!(base.as_str(), "https://ghcr.io/");
        assert_eq!(prefix, "org/models");
        let (base, prefix) = parse_uri("oci://127.0.0.1:5000/models").unwrap();
        assert_eq!(base.as_str(), "http://127.0.0.1:5000/");
        assert_eq!(prefix, "models");
        let (base, _) = parse_uri("oci+http://registry.internal:5000").unwrap();
        assert_eq!(base.as_str(), "http://registry.internal:5000/");
        assert!(parse_uri("oci://").is_err());
        assert!(parse_uri("oci://host/Bad").is_err());
        assert!(parse_uri("https://host/x").is_err());
    }

    #[test]
    fn challenges() {
        let map = parse_challenge(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(map["realm"], "https://auth.docker.io/token");
        assert_eq!(map["service"], "registry.docker.io");
        assert_eq!(map["scope"], "repository:a/b:pull,push");
    }
}
