//! The data path: pick a version by weight (or by a sticky header's hash,
//! or by an explicit `x-gantry-version` request header), forward the request
//! over a pooled keep-alive connection, and meter the reply as it streams
//! through: status class, end-to-end latency, time to first token and
//! output tokens. A weight change swaps the routing table; requests already
//! on their way keep the backend they picked, so nothing in flight is cut.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::Shared;
use super::backend::Backend;
use super::metrics::{Class, Sample};
use crate::api::VERSION_HEADER;
use crate::error::now_ms;

/// The pooled client to the model servers.
pub(crate) type Client = hyper_util::client::legacy::Client<HttpConnector, Incoming>;

/// What the router answers with.
pub(crate) type ProxyBody = Either<Metered, Full<Bytes>>;

/// The largest non-streamed reply searched for `usage.completion_tokens`.
const MAX_USAGE_SCAN: usize = 64 * 1024;

pub(crate) fn client() -> Client {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .build(connector)
}

/// Accepts data connections until `stopped` says so; every connection and
/// forwarded request runs on this thread's runtime, through its own pool.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let client = Arc::new(client());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.wait_for(|stop| *stop) => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: wait, don't spin.
                shared.log(&format!("accept on {}: {error}", shared.listen));
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                handle(shared.clone(), client.clone(), request)
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn choose(shared: &Shared, request: &Request<Incoming>) -> Option<Arc<Backend>> {
    let table = shared
        .table
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if let Some(version) = request.headers().get(VERSION_HEADER) {
        return table.by_version(version.as_bytes()).cloned();
    }
    if table.total == 0 {
        return table.stable.clone();
    }
    let point = match shared
        .options
        .sticky_header
        .as_ref()
        .and_then(|name| request.headers().get(name))
    {
        Some(value) => {
            (xxhash_rust::xxh3::xxh3_64(value.as_bytes()) % u64::from(table.total)) as u32
        }
        None => rand::random_range(0..table.total),
    };
    table.pick(point).cloned()
}

async fn handle(
    shared: Arc<Shared>,
    client: Arc<Client>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let Some(backend) = choose(&shared, &request) else {
        let message = if request.headers().contains_key(VERSION_HEADER) {
            "the version asked for in x-gantry-version is not a healthy backend of this router"
        } else {
            "no healthy model server behind this router"
        };
        return Ok(error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            message,
            None,
        ));
    };
    let started = Instant::now();
    backend.in_flight.fetch_add(1, Ordering::AcqRel);
    let mut guard = InFlight {
        backend: Some(backend.clone()),
    };
    let (mut parts, body) = request.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
    parts.uri = match Uri::builder()
        .scheme("http")
        .authority(backend.authority.clone())
        .path_and_query(path)
        .build()
    {
        Ok(uri) => uri,
        Err(_) => {
            return Ok(error_response(
                StatusCode::BAD_REQUEST,
                "unusable request path",
                Some(&backend),
            ));
        }
    };
    strip_hop_by_hop(&mut parts.headers);
    let upstream = client.request(Request::from_parts(parts, body)).await;
    match upstream {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            if let Some(value) = backend.header.clone() {
                parts
                    .headers
                    .insert(HeaderName::from_static(VERSION_HEADER), value);
            }
            let streaming = parts
                .headers
                .get(header::CONTENT_TYPE)
                .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
            let meter = Meter {
                backend: guard.backend.take(),
                started,
                first_chunk: None,
                status: parts.status.as_u16(),
                streaming,
                broken: false,
                partial_line: Vec::new(),
                chunks: 0,
                usage_tokens: None,
                scan: Vec::new(),
            };
            Ok(Response::from_parts(
                parts,
                Either::Left(Metered {
                    inner: body,
                    meter: Some(meter),
                }),
            ))
        }
        Err(error) => {
            guard.backend.take();
            backend.in_flight.fetch_sub(1, Ordering::AcqRel);
            backend.record(Sample {
                at_ms: now_ms(),
                class: Class::ConnectionError,
                latency_us: micros(started),
                ttft_us: None,
                tokens: 0,
            });
            let reason = std::error::Error::source(&error)
                .map_or_else(|| error.to_string(), ToString::to_string);
            Ok(error_response(
                StatusCode::BAD_GATEWAY,
                &format!(
                    "model server {} did not answer: {reason}",
                    backend.version()
                ),
                Some(&backend),
            ))
        }
    }
}

/// Decrements the in-flight count if the request ends before a reply body
/// takes over (the client went away while the server thought).
struct InFlight {
    backend: Option<Arc<Backend>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(backend) = self.backend.take() {
            backend.in_flight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn error_response(
    status: StatusCode,
    message: &str,
    backend: Option<&Backend>,
) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "error": { "message": message, "type": "gantry_router", "code": status.as_u16() }
    });
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(backend) = backend
        && let Ok(value) = HeaderValue::from_str(backend.version())
    {
        response
            .headers_mut()
            .insert(HeaderName::from_static(VERSION_HEADER), value);
    }
    response
}

/// Headers that belong to one connection, not to the request (RFC 9110 §7.6.1).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if let Some(listed) = headers.get(header::CONNECTION).cloned()
        && let Ok(listed) = listed.to_str()
    {
        for name in listed.split(',') {
            headers.remove(name.trim());
        }
    }
    for name in [
        header::CONNECTION,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

/// A reply body that records the request when it ends (or is dropped).
pub(crate) struct Metered {
    inner: Incoming,
    meter: Option<Meter>,
}

struct Meter {
    backend: Option<Arc<Backend>>,
    started: Instant,
    first_chunk: Option<Instant>,
    status: u16,
    streaming: bool,
    broken: bool,
    /// A server-sent-events line not yet ended.
    partial_line: Vec<u8>,
    /// `data:` events other than `[DONE]`.
    chunks: u64,
    usage_tokens: Option<u64>,
    /// A non-streamed reply's first bytes, for `usage`.
    scan: Vec<u8>,
}

impl Meter {
    fn on_data(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if self.first_chunk.is_none() {
            self.first_chunk = Some(Instant::now());
        }
        if self.streaming {
            let mut rest = data;
            while let Some(end) = memchr::memchr(b'\n', rest) {
                if self.partial_line.is_empty() {
                    self.on_line(&rest[..end]);
                } else {
                    let mut line = std::mem::take(&mut self.partial_line);
                    line.extend_from_slice(&rest[..end]);
                    self.on_line(&line);
                }
                rest = &rest[end + 1..];
            }
            if self.partial_line.len() + rest.len() <= MAX_USAGE_SCAN {
                self.partial_line.extend_from_slice(rest);
            }
        } else if self.scan.len() < MAX_USAGE_SCAN {
            let room = MAX_USAGE_SCAN - self.scan.len();
            self.scan.extend_from_slice(&data[..data.len().min(room)]);
        }
    }

    fn on_line(&mut self, line: &[u8]) {
        let Some(payload) = line.strip_prefix(b"data:") else {
            return;
        };
        let payload = payload.trim_ascii();
        if payload == b"[DONE]" || payload.is_empty() {
            return;
        }
        if let Some(tokens) = completion_tokens(payload) {
            self.usage_tokens = Some(tokens);
        } else {
            self.chunks += 1;
        }
    }

    fn finish(&mut self) {
        let Some(backend) = self.backend.take() else {
            return;
        };
        backend.in_flight.fetch_sub(1, Ordering::AcqRel);
        let class = if self.broken {
            Class::ConnectionError
        } else {
            Class::of_status(self.status)
        };
        let tokens = if self.streaming {
            self.usage_tokens.unwrap_or(self.chunks)
        } else {
            completion_tokens(&self.scan).unwrap_or(0)
        };
        backend.record(Sample {
            at_ms: now_ms(),
            class,
            latency_us: micros(self.started),
            ttft_us: if self.streaming {
                self.first_chunk.map(|first| {
                    u64::try_from((first - self.started).as_micros()).unwrap_or(u64::MAX)
                })
            } else {
                None
            },
            tokens,
        });
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        if let Some(meter) = self.meter.as_mut() {
            meter.finish();
        }
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(meter)) = (frame.data_ref(), self.meter.as_mut()) {
                    meter.on_data(data);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(meter) = self.meter.as_mut() {
                    meter.broken = true;
                    meter.finish();
                }
            }
            Poll::Ready(None) => {
                if let Some(meter) = self.meter.as_mut() {
                    meter.finish();
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// The value of `"completion_tokens": N` in a JSON text, if there is one.
fn completion_tokens(json: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"completion_tokens\"";
    let at = memchr::memmem::find(json, KEY)? + KEY.len();
    let rest = json[at..]
        .trim_ascii_start()
        .strip_prefix(b":")?
        .trim_ascii_start();
    let digits = rest.iter().take_while(|byte| byte.is_ascii_digit()).count();
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_json_without_parsing_it_all() {
        assert_eq!(
            completion_tokens(
                br#"{"usage": {"prompt_tokens": 3, "completion_tokens" : 17, "total_tokens": 20}}"#
            ),
            Some(17)
        );
        assert_eq!(completion_tokens(br#"{"choices": []}"#), None);
        assert_eq!(completion_tokens(br#"{"completion_tokens": null}"#), None);
    }

    #[test]
    fn hop_by_hop_headers_do_not_pass() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-private"),
        );
        headers.insert("x-private", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key(header::AUTHORIZATION));
    }
}
