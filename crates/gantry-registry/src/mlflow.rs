//! The MLflow backend: `mlflow+http(s)://HOST:PORT[/PATH]`, the MLflow Model
//! Registry over its REST API (also GitLab's, at
//! `/api/v4/projects/ID/ml/mlflow`).
//!
//! A version is an MLflow run in the `gantry-models` experiment whose
//! artifacts (uploaded through the server's artifact proxy) hold the model
//! files under `model/`, the lineage documents under `lineage/<sha256>` and
//! the gantry manifest as `gantry-manifest.json`, plus a model version whose
//! `source` is the run's `model/` directory. Tags on the model version:
//! `gantry.version` (the semantic version), `gantry.actor`, and
//! `gantry.digest` — set last, after every artifact is uploaded, so only a
//! complete version carries it; gantry sees nothing else. Registration is
//! idempotent by searching that tag. MLflow numbers versions itself (1, 2,
//! …) in creation order; concurrent registrations take their semantic
//! versions in that order (see `allocate_version`). Aliases are MLflow aliases; their moves are recorded as
//! registered-model tags `gantry.event.<time>-<id>` (the event JSON).

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_core::{Digest, ModelManifest};
use gantry_mlflow::{MlflowApi, MlflowOptions};
use reqwest::Method;
use reqwest::blocking::Body;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::names::{validate_alias, validate_name};
use crate::ops::build_manifest;
use crate::{
    AliasTarget, Event, Expectation, RegisterRequest, Registration, Registry, Resolved,
    VersionRequest, alias_event, check_expectation, move_aliases, next_version, now,
    unchanged_event,
};
use gantry_model::{SourceFile, parallel_largest_first_on};

const EXPERIMENT: &str = "gantry-models";
const MANIFEST_ARTIFACT: &str = "gantry-manifest.json";

/// What a registration's turn gave it.
enum Allocation {
    /// This semantic version.
    Version(String),
    /// The same content is already being registered as this MLflow version.
    Duplicate(u64),
}

/// An MLflow tracking server's model registry.
#[derive(Debug)]
pub struct MlflowRegistry {
    uri: String,
    api: MlflowApi,
}

/// A version as MLflow holds it.
#[derive(Debug, Clone)]
struct MlflowVersion {
    number: u64,
    run_id: String,
    created_ms: i64,
    tags: BTreeMap<String, String>,
}

fn parse_uri(uri: &str) -> Result<String> {
    let invalid = |reason: String| Error::Given {
        what: "registry",
        path: uri.to_owned(),
        reason,
    };
    let rest = uri
        .strip_prefix("mlflow+")
        .filter(|rest| rest.starts_with("http://") || rest.starts_with("https://"))
        .ok_or_else(|| {
            invalid("expected mlflow+http://HOST:PORT or mlflow+https://HOST[/PATH]".to_owned())
        })?;
    let parsed = url::Url::parse(rest).map_err(|error| invalid(error.to_string()))?;
    if parsed.host_str().is_none() {
        return Err(invalid("no host".to_owned()));
    }
    Ok(rest.trim_end_matches('/').to_owned())
}

/// MLflow's `[{"key", "value"}…]` tag list as a map.
fn tag_map(tags: &serde_json::Value) -> BTreeMap<String, String> {
    tags.as_array()
        .into_iter()
        .flatten()
        .filter_map(|tag| {
            Some((
                tag["key"].as_str()?.to_owned(),
                tag["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    state: Arc<Mutex<(Sha256, u64)>>,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n_read = self.inner.read(buffer)?;
        if let Ok(mut state) = self.state.lock() {
            state.0.update(&buffer[..n_read]);
            state.1 += n_read as u64;
        }
        Ok(n_read)
    }
}

impl MlflowRegistry {
    /// A registry at `uri` (`mlflow+http(s)://HOST[:PORT][/PATH]`).
    pub fn new(uri: &str, options: MlflowOptions) -> Result<MlflowRegistry> {
        let base = parse_uri(uri)?;
        Ok(MlflowRegistry {
            uri: uri.to_owned(),
            api: MlflowApi::new(&base, options)?,
        })
    }

    /// Uploads a file while hashing it; retried whole through the shared
    /// retry loop (429, 5xx and connection errors).
    fn upload_file(&self, run_path: &str, file: &SourceFile) -> Result<Digest> {
        let url = self
            .api
            .artifact_url(run_path, &format!("model/{}", file.path));
        // Each attempt hashes afresh; the last one's hash is the upload's.
        let state = Mutex::new(Arc::new(Mutex::new((Sha256::new(), 0_u64))));
        let opened = Mutex::new(None);
        let response = self.api.send_within(
            Method::PUT,
            &url,
            &|| {
                let reader = match std::fs::File::open(&file.absolute) {
                    Ok(reader) => reader,
                    Err(error) => {
                        if let Ok(mut opened) = opened.lock() {
                            *opened = Some(error);
                        }
                        return None;
                    }
                };
                let fresh = Arc::new(Mutex::new((Sha256::new(), 0_u64)));
                if let Ok(mut state) = state.lock() {
                    *state = Arc::clone(&fresh);
                }
                Some(Body::sized(
                    HashingReader {
                        inner: reader,
                        state: fresh,
                    },
                    file.size,
                ))
            },
            false,
            Duration::from_secs(600),
        )?;
        if let Some(error) = opened.into_inner().ok().flatten() {
            return Err(Error::io("cannot open", &file.absolute)(error));
        }
        self.api
            .expect_ok(response, &format!("uploading {}", file.path))?;
        let last = state
            .into_inner()
            .map_err(|_| Error::Remote("hash state poisoned".to_owned()))?;
        let (hasher, total) = std::mem::take(
            &mut *last
                .lock()
                .map_err(|_| Error::Remote("hash state poisoned".to_owned()))?,
        );
        file.check_unchanged(total)?;
        Ok(Digest::from_bytes(hasher.finalize().into()))
    }

    /// Every MLflow version of `name` (complete or not).
    fn mlflow_versions(&self, name: &str, filter_extra: &str) -> Result<Vec<MlflowVersion>> {
        let filter = format!("name='{name}'{filter_extra}");
        let mut versions = Vec::new();
        let mut page_token = String::new();
        loop {
            let mut query = vec![("filter", filter.as_str()), ("max_results", "200")];
            if !page_token.is_empty() {
                query.push(("page_token", page_token.as_str()));
            }
            let Some(page) = self
                .api
                .call(Method::GET, "model-versions/search", &query, None)?
            else {
                return Ok(versions);
            };
            for version in page["model_versions"].as_array().into_iter().flatten() {
                let tags = tag_map(&version["tags"]);
                versions.push(MlflowVersion {
                    number: version["version"]
                        .as_str()
                        .and_then(|number| number.parse().ok())
                        .unwrap_or(0),
                    run_id: version["run_id"].as_str().unwrap_or_default().to_owned(),
                    created_ms: version["creation_timestamp"].as_i64().unwrap_or(0),
                    tags,
                });
            }
            match page["next_page_token"].as_str() {
                Some(token) if !token.is_empty() => page_token = token.to_owned(),
                _ => return Ok(versions),
            }
        }
    }

    /// A complete version's manifest, checked against its `gantry.digest` tag.
    fn resolve_version(&self, name: &str, version: &MlflowVersion) -> Result<Option<Resolved>> {
        let Some(tagged) = version.tags.get("gantry.digest") else {
            return Ok(None);
        };
        let run_path = self.api.run_path(&version.run_id)?;
        let mut text = Vec::new();
        self.api
            .read_artifact(&run_path, MANIFEST_ARTIFACT)?
            .read_to_end(&mut text)
            .map_err(|error| {
                Error::Remote(format!(
                    "reading the manifest of {name} version {}: {error}",
                    version.number
                ))
            })?;
        let manifest: ModelManifest = serde_json::from_slice(&text).map_err(|error| {
            Error::Remote(format!(
                "{name} version {} on {}: not a model manifest: {error}",
                version.number,
                self.api.host()
            ))
        })?;
        let resolved = Resolved::new(manifest)?;
        if resolved.digest.to_string() != *tagged {
            return Err(Error::Tampered {
                what: format!("the manifest of {name} MLflow version {}", version.number),
                expected: tagged.parse()?,
                actual: resolved.digest,
            });
        }
        Ok(Some(resolved))
    }

    fn complete_versions(&self, name: &str) -> Result<Vec<(MlflowVersion, Resolved)>> {
        let mut out = Vec::new();
        for version in self.mlflow_versions(name, "")? {
            if let Some(resolved) = self.resolve_version(name, &version)? {
                out.push((version, resolved));
            }
        }
        out.sort_by(|a, b| {
            let parse =
                |resolved: &Resolved| semver::Version::parse(&resolved.manifest.version).ok();
            parse(&a.1).cmp(&parse(&b.1))
        });
        Ok(out)
    }

    /// Picks the semantic version of MLflow version `number`. MLflow numbers
    /// versions in creation order, so registrations take their turn in that
    /// order: each waits until every lower-numbered gantry version has its
    /// `gantry.version` (one a crash left pending counts as abandoned after
    /// 30 s), then takes the next one. Two concurrent registrations can
    /// therefore never pick the same version.
    fn allocate_version(
        &self,
        name: &str,
        number: u64,
        request: &VersionRequest,
        digest: Digest,
    ) -> Result<Allocation> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let all = self.mlflow_versions(name, "")?;
            let now_ms = chrono::Utc::now().timestamp_millis();
            let waiting = all.iter().any(|other| {
                other.number < number
                    && other.tags.contains_key("gantry.pending")
                    && !other.tags.contains_key("gantry.version")
                    && now_ms - other.created_ms < 30_000
            });
            if waiting && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50 + u64::from(rand::random::<u8>())));
                continue;
            }
            let earlier: Vec<&MlflowVersion> =
                all.iter().filter(|other| other.number < number).collect();
            let content = digest.to_string();
            if let Some(same) = earlier
                .iter()
                .find(|other| other.tags.get("gantry.content") == Some(&content))
            {
                return Ok(Allocation::Duplicate(same.number));
            }
            let taken: Vec<&str> = earlier
                .iter()
                .filter_map(|other| other.tags.get("gantry.version").map(String::as_str))
                .collect();
            let version = match request {
                VersionRequest::Auto => next_version(taken.iter().copied()).to_string(),
                VersionRequest::Exact(version) => version.to_string(),
            };
            if let Some(holder) = earlier
                .iter()
                .find(|other| other.tags.get("gantry.version") == Some(&version))
            {
                return Err(Error::VersionTaken {
                    name: name.to_owned(),
                    version,
                    existing: holder
                        .tags
                        .get("gantry.digest")
                        .and_then(|digest| digest.parse().ok())
                        .unwrap_or(digest),
                    new: digest,
                });
            }
            self.set_version_tag(name, number, "gantry.version", &version)?;
            return Ok(Allocation::Version(version));
        }
    }

    /// Waits (up to a minute) for MLflow version `number` to be committed.
    fn wait_for_commit(&self, name: &str, number: u64) -> Result<Resolved> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let version = self
                .mlflow_versions(name, "")?
                .into_iter()
                .find(|version| version.number == number);
            if let Some(version) = &version
                && let Some(resolved) = self.resolve_version(name, version)?
            {
                return Ok(resolved);
            }
            if version.is_none() || std::time::Instant::now() > deadline {
                return Err(Error::Remote(format!(
                    "{name}: a concurrent registration of the same content (MLflow version {number}) did not finish; register again"
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn set_version_tag(&self, name: &str, number: u64, key: &str, value: &str) -> Result<()> {
        self.api.call(
            Method::POST,
            "model-versions/set-tag",
            &[],
            Some(json!({"name": name, "version": number.to_string(), "key": key, "value": value})),
        )?;
        Ok(())
    }

    fn current_alias(&self, name: &str, alias: &str) -> Result<Option<AliasTarget>> {
        let Some(found) = self.api.call(
            Method::GET,
            "registered-models/alias",
            &[("name", name), ("alias", alias)],
            None,
        )?
        else {
            return Ok(None);
        };
        let tags = tag_map(&found["model_version"]["tags"]);
        match (tags.get("gantry.version"), tags.get("gantry.digest")) {
            (Some(version), Some(digest)) => Ok(Some(AliasTarget {
                version: version.clone(),
                digest: digest.parse()?,
            })),
            _ => Ok(None),
        }
    }

    fn move_alias_inner(
        &self,
        alias: &str,
        target: &Resolved,
        expect: &Expectation,
        actor: &str,
    ) -> Result<Option<Event>> {
        let name = &target.manifest.name;
        let filter = format!(" AND tags.`gantry.digest`='{}'", target.digest);
        let Some(number) = self
            .mlflow_versions(name, &filter)?
            .first()
            .map(|version| version.number)
        else {
            return Err(Error::NotFound(format!(
                "{name}@{} is not in {}",
                target.digest, self.uri
            )));
        };
        let current = self.current_alias(name, alias)?;
        if !check_expectation(name, alias, current.as_ref(), expect, target)? {
            return Ok(None);
        }
        self.api.call(
            Method::POST,
            "registered-models/alias",
            &[],
            Some(json!({"name": name, "alias": alias, "version": number.to_string()})),
        )?;
        let event = alias_event(alias, target, actor, current);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0);
        let key = format!("gantry.event.{nanos:020}-{:08x}", rand::random::<u32>());
        let value = serde_json::to_string(&event).map_err(gantry_core::Error::from)?;
        self.api.call(
            Method::POST,
            "registered-models/set-tag",
            &[],
            Some(json!({"name": name, "key": key, "value": value})),
        )?;
        Ok(Some(event))
    }
}

impl Registry for MlflowRegistry {
    fn uri(&self) -> String {
        self.uri.clone()
    }

    fn register(&self, request: &RegisterRequest<'_>) -> Result<Registration> {
        validate_name(request.name)?;
        for alias in &request.aliases {
            validate_alias(alias)?;
        }
        let name = request.name;
        match self.api.call(
            Method::POST,
            "registered-models/create",
            &[],
            Some(json!({"name": name})),
        ) {
            Ok(_) => {}
            Err(gantry_mlflow::Error::Remote(message))
                if message.contains("RESOURCE_ALREADY_EXISTS") => {}
            Err(error) => return Err(error.into()),
        }
        let experiment = self.api.experiment_id(EXPERIMENT)?;
        let run = self
            .api
            .call(
                Method::POST,
                "runs/create",
                &[],
                Some(json!({
                    "experiment_id": experiment,
                    "run_name": format!("register-{name}"),
                    "start_time": chrono::Utc::now().timestamp_millis(),
                    "tags": [{"key": "gantry.actor", "value": request.actor}],
                })),
            )?
            .ok_or_else(|| Error::Remote(format!("{} did not create a run", self.api.host())))?;
        let run_id = run["run"]["info"]["run_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let run_path = self.api.run_path(&run_id)?;

        let files = &request.source.files;
        let digests = parallel_largest_first_on(
            4,
            files,
            |file| file.size,
            |file| self.upload_file(&run_path, file),
        )?;
        let mut bytes_stored: u64 = request.source.total_size();
        for (digest, bytes) in &request.lineage.documents {
            self.api
                .put_artifact(&run_path, &format!("lineage/{}", digest.hex()), bytes)?;
            bytes_stored += bytes.len() as u64;
        }
        let mut manifest = build_manifest(
            name,
            files,
            &digests,
            &request.lineage.lineage,
            &request.metadata,
        );
        let digest = manifest.digest()?;

        let finish_run = |status: &str| {
            let _ = self.api.call(
                Method::POST,
                "runs/update",
                &[],
                Some(json!({"run_id": run_id, "status": status, "end_time": chrono::Utc::now().timestamp_millis()})),
            );
        };
        let existing_filter = format!(" AND tags.`gantry.digest`='{digest}'");
        if let Some(existing) = self.mlflow_versions(name, &existing_filter)?.first() {
            // Already registered: this run's uploads were for nothing.
            finish_run("KILLED");
            let _ = self.api.call(
                Method::POST,
                "runs/delete",
                &[],
                Some(json!({"run_id": run_id})),
            );
            let resolved = self.resolve_version(name, existing)?.ok_or_else(|| {
                Error::Remote(format!(
                    "{name} version {} lost its digest tag",
                    existing.number
                ))
            })?;
            if let VersionRequest::Exact(version) = &request.version
                && resolved.manifest.version != version.to_string()
            {
                return Err(Error::Input(format!(
                    "{} is already registered as {name} {} (digest {digest}); the same content is not registered twice",
                    request.source.root.display(),
                    resolved.manifest.version
                )));
            }
            let alias_moves = move_aliases(&request.aliases, |alias| {
                self.move_alias_inner(alias, &resolved, &Expectation::Any, &request.actor)
            })?;
            return Ok(Registration {
                manifest: resolved.manifest,
                digest,
                created: false,
                bytes_stored: 0,
                alias_moves,
            });
        }

        // Lineage on the run, for people browsing MLflow.
        let mut tags = vec![json!({"key": "gantry.digest", "value": digest.to_string()})];
        if let Some(git) = &manifest.lineage.git {
            tags.push(json!({"key": "mlflow.source.git.commit", "value": git.commit}));
        }
        if let Some(data) = &manifest.lineage.data {
            tags.push(
                json!({"key": "gantry.dataset_digest", "value": data.dataset_digest.to_string()}),
            );
        }
        self.api.call(
            Method::POST,
            "runs/log-batch",
            &[],
            Some(json!({"run_id": run_id, "tags": tags})),
        )?;

        let created_version = self
            .api
            .call(
                Method::POST,
                "model-versions/create",
                &[],
                Some(json!({
                    "name": name,
                    "source": format!("mlflow-artifacts:/{run_path}/model"),
                    "run_id": run_id,
                    "description": format!("gantry {digest}"),
                    "tags": [
                        {"key": "gantry.pending", "value": "1"},
                        {"key": "gantry.content", "value": digest.to_string()},
                        {"key": "gantry.actor", "value": request.actor},
                    ],
                })),
            )?
            .ok_or_else(|| {
                Error::Remote(format!(
                    "{} did not create a model version",
                    self.api.host()
                ))
            })?;
        let number: u64 = created_version["model_version"]["version"]
            .as_str()
            .and_then(|number| number.parse().ok())
            .unwrap_or(0);
        let version = match self.allocate_version(name, number, &request.version, digest) {
            Ok(Allocation::Version(version)) => version,
            Ok(Allocation::Duplicate(earlier)) => {
                // The same content is being registered by an earlier call:
                // withdraw this one and answer with that one's version.
                let _ = self.api.call(
                    Method::DELETE,
                    "model-versions/delete",
                    &[],
                    Some(json!({"name": name, "version": number.to_string()})),
                );
                finish_run("KILLED");
                let _ = self.api.call(
                    Method::POST,
                    "runs/delete",
                    &[],
                    Some(json!({"run_id": run_id})),
                );
                let resolved = self.wait_for_commit(name, earlier)?;
                return Ok(Registration {
                    manifest: resolved.manifest,
                    digest,
                    created: false,
                    bytes_stored: 0,
                    alias_moves: Vec::new(),
                });
            }
            Err(error) => {
                finish_run("FAILED");
                return Err(error);
            }
        };
        manifest.version = version;
        manifest.created = now();
        let mut text = serde_json::to_vec_pretty(&manifest).map_err(gantry_core::Error::from)?;
        text.push(b'\n');
        self.api.put_artifact(&run_path, MANIFEST_ARTIFACT, &text)?;
        // The commit point: only now does gantry see the version.
        self.set_version_tag(name, number, "gantry.digest", &digest.to_string())?;
        finish_run("FINISHED");

        let resolved = Resolved { manifest, digest };
        let alias_moves = move_aliases(&request.aliases, |alias| {
            self.move_alias_inner(alias, &resolved, &Expectation::Any, &request.actor)
        })?;
        Ok(Registration {
            manifest: resolved.manifest,
            digest,
            created: true,
            bytes_stored,
            alias_moves,
        })
    }

    fn models(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let mut page_token = String::new();
        loop {
            let mut query = vec![("max_results", "200")];
            if !page_token.is_empty() {
                query.push(("page_token", page_token.as_str()));
            }
            let Some(page) =
                self.api
                    .call(Method::GET, "registered-models/search", &query, None)?
            else {
                break;
            };
            for model in page["registered_models"].as_array().into_iter().flatten() {
                if let Some(name) = model["name"].as_str()
                    && validate_name(name).is_ok()
                    && !self
                        .mlflow_versions(name, " AND tags.`gantry.digest`!=''")?
                        .is_empty()
                {
                    names.push(name.to_owned());
                }
            }
            match page["next_page_token"].as_str() {
                Some(token) if !token.is_empty() => page_token = token.to_owned(),
                _ => break,
            }
        }
        names.sort();
        Ok(names)
    }

    fn versions(&self, name: &str) -> Result<Vec<Resolved>> {
        validate_name(name)?;
        Ok(self
            .complete_versions(name)?
            .into_iter()
            .map(|(_, resolved)| resolved)
            .collect())
    }

    fn aliases(&self, name: &str) -> Result<BTreeMap<String, AliasTarget>> {
        validate_name(name)?;
        let Some(model) = self.api.call(
            Method::GET,
            "registered-models/get",
            &[("name", name)],
            None,
        )?
        else {
            return Ok(BTreeMap::new());
        };
        let mut aliases = BTreeMap::new();
        for entry in model["registered_model"]["aliases"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(alias) = entry["alias"].as_str()
                && let Some(target) = self.current_alias(name, alias)?
            {
                aliases.insert(alias.to_owned(), target);
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
        let mut events: Vec<Event> = self
            .complete_versions(name)?
            .into_iter()
            .map(|(version, resolved)| Event {
                time: resolved.manifest.created.clone(),
                actor: version
                    .tags
                    .get("gantry.actor")
                    .cloned()
                    .unwrap_or_else(|| "unknown".to_owned()),
                action: "registered".to_owned(),
                version: resolved.manifest.version.clone(),
                digest: resolved.digest,
                alias: None,
                previous: None,
            })
            .collect();
        if let Some(model) = self.api.call(
            Method::GET,
            "registered-models/get",
            &[("name", name)],
            None,
        )? {
            let mut tagged: Vec<(String, Event)> = model["registered_model"]["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|tag| {
                    let key = tag["key"].as_str()?;
                    key.starts_with("gantry.event.").then_some(())?;
                    let event: Event = serde_json::from_str(tag["value"].as_str()?).ok()?;
                    Some((key.to_owned(), event))
                })
                .collect();
            tagged.sort_by(|a, b| a.0.cmp(&b.0));
            events.extend(tagged.into_iter().map(|(_, event)| event));
        }
        events.sort_by(|a, b| a.time.cmp(&b.time));
        Ok(events)
    }

    fn open_blob(&self, name: &str, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        validate_name(name)?;
        for (version, resolved) in self.complete_versions(name)? {
            let path = if let Some(file) = resolved
                .manifest
                .files
                .iter()
                .find(|file| file.digest == *digest)
            {
                format!("model/{}", file.path)
            } else if resolved
                .manifest
                .lineage
                .documents()
                .iter()
                .any(|(_, link)| link.digest == *digest)
            {
                format!("lineage/{}", digest.hex())
            } else {
                continue;
            };
            let run_path = self.api.run_path(&version.run_id)?;
            return Ok(Box::new(self.api.read_artifact(&run_path, &path)?));
        }
        Err(Error::NotFound(format!(
            "no version of {name} in {} holds {digest}",
            self.uri
        )))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert_eq!(
            parse_uri("mlflow+http://127.0.0.1:5000").unwrap(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            parse_uri("mlflow+https://gitlab.com/api/v4/projects/5/ml/mlflow/").unwrap(),
            "https://gitlab.com/api/v4/projects/5/ml/mlflow"
        );
        assert!(parse_uri("mlflow://host").is_err());
        assert!(parse_uri("mlflow+ftp://host").is_err());
    }
}
