//! A real OCI registry for tests: the CNCF distribution registry
//! (`docker-registry`) with token authentication, a token server that signs
//! ES256 JWTs with a throwaway certificate, and a TCP proxy that can drop
//! connections mid-upload.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};

/// The user and password the token server accepts.
pub const OCI_USER: &str = "gantry";
/// The password of [`OCI_USER`].
pub const OCI_PASSWORD: &str = "s3cret-token-pw";

const ISSUER: &str = "gantry-test-issuer";
const SERVICE: &str = "gantry-test-registry";

/// Whether a missing tool must fail the test rather than skip it.
pub(crate) fn services_required() -> bool {
    std::env::var_os("GANTRY_REQUIRE_SERVICES").is_some()
}

/// A tool on PATH, or `None` (a skip) when services are optional.
///
/// # Panics
/// When the tool is missing and `GANTRY_REQUIRE_SERVICES` is set.
pub fn require_tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        assert!(
            !services_required(),
            "{name} is required (GANTRY_REQUIRE_SERVICES is set) but is not on PATH; run `cargo xtask test`"
        );
        #[allow(clippy::print_stderr, reason = "a skipped test says why")]
        {
            eprintln!("skipping: {name} is not installed");
        }
    }
    found
}

/// A running distribution registry with token auth, stopped on drop.
pub struct OciRegistryServer {
    child: Child,
    /// `127.0.0.1:PORT` of the registry.
    pub address: String,
    token_shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// The directory holding config, keys and data.
    pub directory: tempfile::TempDir,
    /// Token requests served, by outcome: (issued, refused).
    pub token_requests: Arc<(AtomicUsize, AtomicUsize)>,
}

impl Drop for OciRegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(shutdown) = self.token_shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A free loopback port (the OS picks it; another process could take it
/// before the caller binds it, which tests accept).
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}

fn run(command: &mut Command) {
    let output = command.output().expect("run a setup command");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs a registry token for `scope` (`repository:NAME:pull,push`).
fn sign_token(key: &ring::signature::EcdsaKeyPair, certificate: &str, scope: &str) -> String {
    let access = match scope.split(':').collect::<Vec<_>>().as_slice() {
        [kind, name, actions] => serde_json::json!([{
            "type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()
        }]),
        _ => serde_json::json!([]),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "x5c": [certificate]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": OCI_USER, "aud": SERVICE,
        "exp": now + 600, "nbf": now - 10, "iat": now,
        "jti": format!("{:x}", rand_id()), "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64_url(header.to_string().as_bytes()),
        base64_url(claims.to_string().as_bytes())
    );
    let rng = ring::rand::SystemRandom::new();
    let signature = key
        .sign(&rng, signing_input.as_bytes())
        .expect("sign the token");
    format!("{signing_input}.{}", base64_url(signature.as_ref()))
}

fn rand_id() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0)
}

impl OciRegistryServer {
    /// Starts `docker-registry` with token auth on a free loopback port, or
    /// returns `None` (a skip) when it or `openssl` is not installed and
    /// services are optional.
    ///
    /// # Panics
    /// When a tool is missing under `GANTRY_REQUIRE_SERVICES`, or the
    /// registry does not come up within 20 s.
    pub fn start() -> Option<OciRegistryServer> {
        let registry = require_tool("docker-registry")?;
        let openssl = require_tool("openssl")?;
        let directory = tempfile::tempdir().expect("tempdir");
        let dir = directory.path();
        run(Command::new(&openssl)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=gantry-test-token",
            ])
            .arg("-keyout")
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem")));
        run(Command::new(&openssl)
            .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("key.der")));
        run(Command::new(&openssl)
            .args(["x509", "-outform", "DER", "-in"])
            .arg(dir.join("cert.pem"))
            .arg("-out")
            .arg(dir.join("cert.der")));
        let pkcs8 = std::fs::read(dir.join("key.der")).expect("key");
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
            &ring::rand::SystemRandom::new(),
        )
        .expect("parse the key");
        let certificate = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .encode(std::fs::read(dir.join("cert.der")).expect("cert"))
        };

        let token_requests = Arc::new((AtomicUsize::new(0), AtomicUsize::new(0)));
        let counts = Arc::clone(&token_requests);
        let (address_sender, address_receiver) = std::sync::mpsc::channel();
        let (shutdown, shutdown_receiver) = tokio::sync::oneshot::channel::<()>();
        let key = Arc::new(key);
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                address_sender.send(listener.local_addr().expect("address")).expect("send");
                let app = axum::Router::new().route(
                    "/token",
                    axum::routing::get(
                        move |headers: HeaderMap, query: axum::extract::RawQuery| {
                            let key = Arc::clone(&key);
                            let certificate = certificate.clone();
                            let counts = Arc::clone(&counts);
                            async move {
                                use base64::Engine as _;
                                let expected = format!(
                                    "Basic {}",
                                    base64::engine::general_purpose::STANDARD.encode(format!("{OCI_USER}:{OCI_PASSWORD}"))
                                );
                                let given = headers
                                    .get("authorization")
                                    .and_then(|value| value.to_str().ok())
                                    .unwrap_or_default();
                                if given != expected {
                                    counts.1.fetch_add(1, Ordering::SeqCst);
                                    return (StatusCode::UNAUTHORIZED, "{\"details\":\"bad credentials\"}".to_owned());
                                }
                                let query = query.0.unwrap_or_default();
                                let scope = url_decode(
                                    query
                                        .split('&')
                                        .find_map(|pair| pair.strip_prefix("scope="))
                                        .unwrap_or_default(),
                                );
                                counts.0.fetch_add(1, Ordering::SeqCst);
                                let token = sign_token(&key, &certificate, &scope);
                                (StatusCode::OK, serde_json::json!({"token": token, "access_token": token, "expires_in": 600}).to_string())
                            }
                        },
                    ),
                );
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = shutdown_receiver.await;
                    })
                    .await
                    .expect("serve tokens");
            });
        });
        let token_address = address_receiver.recv().expect("token server address");

        let port = free_port();
        let config = format!(
            "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage:\n  filesystem: {{rootdirectory: {data}}}\n  delete: {{enabled: true}}\nhttp: {{addr: 127.0.0.1:{port}}}\nauth:\n  token:\n    realm: http://{token_address}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {cert}\n",
            data = dir.join("data").display(),
            cert = dir.join("cert.pem").display(),
        );
        std::fs::write(dir.join("registry.yml"), config).expect("config");
        let child = Command::new(registry)
            .arg("serve")
            .arg(dir.join("registry.yml"))
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(dir.join("registry.log")).map_or(Stdio::null(), Stdio::from),
            )
            .spawn()
            .expect("start docker-registry");
        let server = OciRegistryServer {
            child,
            address: format!("127.0.0.1:{port}"),
            token_shutdown: Some(shutdown),
            directory,
            token_requests,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(&server.address) {
                let _ = write!(
                    stream,
                    "GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n",
                    server.address
                );
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.starts_with("HTTP/1.0 401") || answer.starts_with("HTTP/1.1 401") {
                    return Some(server);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "docker-registry did not come up: {}",
            std::fs::read_to_string(server.directory.path().join("registry.log"))
                .unwrap_or_default()
        );
    }

    /// Where the registry keeps its data.
    pub fn data_dir(&self) -> &Path {
        self.directory.path()
    }
}

fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                index += 3;
            }
            b'+' => {
                out.push(b' ');
                index += 1;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A TCP proxy in front of a server that cuts connections once they have
/// carried more than a threshold of bytes towards the server.
pub struct DroppingProxy {
    /// `127.0.0.1:PORT` of the proxy.
    pub address: String,
    stop: Arc<AtomicBool>,
    /// Connections cut so far.
    pub cuts: Arc<AtomicU64>,
}

impl Drop for DroppingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.address);
    }
}

impl DroppingProxy {
    /// Proxies to `upstream`; the first `cuts` connections that send more
    /// than `threshold` bytes are cut there (`u64::MAX`: every one).
    pub fn start(upstream: &str, threshold: u64, cuts: u64) -> DroppingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let address = listener.local_addr().expect("address").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let (stop_flag, done_count, upstream) =
            (Arc::clone(&stop), Arc::clone(&done), upstream.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let done_count = Arc::clone(&done_count);
                let (client_read, server_write) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let (server_read, client_write) = (server, client);
                std::thread::spawn(move || pump_back(server_read, client_write));
                std::thread::spawn(move || {
                    pump_cutting(client_read, server_write, threshold, cuts, &done_count);
                });
            }
        });
        DroppingProxy {
            address,
            stop,
            cuts: done,
        }
    }
}

fn pump_back(mut from: TcpStream, mut to: TcpStream) {
    let mut buffer = [0_u8; 64 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

fn pump_cutting(
    mut from: TcpStream,
    mut to: TcpStream,
    threshold: u64,
    cuts: u64,
    done: &AtomicU64,
) {
    let mut buffer = [0_u8; 64 * 1024];
    let mut sent = 0_u64;
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                sent += n as u64;
                if sent > threshold && done.load(Ordering::SeqCst) < cuts {
                    done.fetch_add(1, Ordering::SeqCst);
                    // Forward part of it, then cut both ways.
                    let _ = to.write_all(&buffer[..n / 2]);
                    break;
                }
                if to.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// A running `mlflow server` (SQLite store, artifacts proxied), stopped on drop.
pub struct MlflowServer {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The directory holding the database and artifacts.
    pub directory: tempfile::TempDir,
}

impl Drop for MlflowServer {
    /// `mlflow server` runs uvicorn workers as children: the whole process
    /// group goes, not just the launcher (leaked workers once filled the
    /// machine's memory).
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

impl MlflowServer {
    /// Starts the `mlflow` of `$GANTRY_MLFLOW_VENV` (set by `cargo xtask
    /// test`) on a free loopback port, or returns `None` (a skip) when it is
    /// not installed and services are optional.
    ///
    /// # Panics
    /// When MLflow is missing under `GANTRY_REQUIRE_SERVICES`, or the server
    /// is not healthy within 90 s.
    pub fn start() -> Option<MlflowServer> {
        let mlflow = std::env::var_os("GANTRY_MLFLOW_VENV")
            .map(|venv| PathBuf::from(venv).join("bin/mlflow"))
            .filter(|path| path.is_file());
        let Some(mlflow) = mlflow else {
            assert!(
                !services_required(),
                "MLflow is required (GANTRY_REQUIRE_SERVICES is set) but $GANTRY_MLFLOW_VENV/bin/mlflow does not exist; run `cargo xtask test`"
            );
            #[allow(clippy::print_stderr, reason = "a skipped test says why")]
            {
                eprintln!("skipping: GANTRY_MLFLOW_VENV is not set (cargo xtask test sets it)");
            }
            return None;
        };
        let directory = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let log = std::fs::File::create(directory.path().join("mlflow.log")).expect("log");
        let child = Command::new(mlflow)
            .process_group(0)
            // No background job runner: a dozen worker processes the tests do not use.
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .args([
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--workers",
                "1",
            ])
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                directory.path().join("mlflow.db").display()
            ))
            .arg("--artifacts-destination")
            .arg(directory.path().join("artifacts"))
            .current_dir(directory.path())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start mlflow server");
        let server = MlflowServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            directory,
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = write!(stream, "GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                if answer.contains(" 200 ") && answer.ends_with("OK") {
                    return Some(server);
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "mlflow server did not become healthy: {}",
            std::fs::read_to_string(server.directory.path().join("mlflow.log")).unwrap_or_default()
        );
    }
}
