//! A server that answers as a test tells it and records what it received:
//! the stand-in for servers that echo a credential back in their replies.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One request the echo server received.
#[derive(Debug, Clone)]
pub struct EchoRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Every header, lower-case names.
    pub headers: Vec<(String, String)>,
    /// The body as sent.
    pub body: Vec<u8>,
}

impl EchoRequest {
    /// A header's value, if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// What to answer: status, headers, body.
#[derive(Debug, Clone)]
pub struct EchoResponse {
    /// The status code.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body (JSON, usually).
    pub body: String,
}

impl EchoResponse {
    /// A JSON answer with `status`.
    pub fn json(status: u16, body: &serde_json::Value) -> EchoResponse {
        EchoResponse {
            status,
            headers: vec![("content-type".to_owned(), "application/json".to_owned())],
            body: body.to_string(),
        }
    }

    /// The same answer with one more header.
    #[must_use]
    pub fn with_header(mut self, name: &str, value: &str) -> EchoResponse {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

type Responder = dyn Fn(&EchoRequest) -> EchoResponse + Send + Sync;

/// A loopback HTTP server whose every answer comes from a closure.
pub struct EchoServer {
    url: String,
    requests: Arc<Mutex<Vec<EchoRequest>>>,
    _served: crate::serve::Served,
}

impl std::fmt::Debug for EchoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EchoServer")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl EchoServer {
    /// Starts the server on `127.0.0.1` and an ephemeral port.
    ///
    /// # Panics
    /// When no loopback port can be bound: the test cannot run at all.
    pub fn start(
        responder: impl Fn(&EchoRequest) -> EchoResponse + Send + Sync + 'static,
    ) -> EchoServer {
        let responder: Arc<Responder> = Arc::new(responder);
        let requests: Arc<Mutex<Vec<EchoRequest>>> = Arc::default();
        let recorded = Arc::clone(&requests);
        let app = axum::Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let responder = Arc::clone(&responder);
                let recorded = Arc::clone(&recorded);
                async move {
                    let request = EchoRequest {
                        method: method.to_string(),
                        path: uri
                            .path_and_query()
                            .map_or_else(|| uri.path().to_owned(), ToString::to_string),
                        headers: headers
                            .iter()
                            .map(|(name, value)| {
                                (
                                    name.as_str().to_owned(),
                                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                                )
                            })
                            .collect(),
                        body: body.to_vec(),
                    };
                    let answer = responder(&request);
                    recorded
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(request);
                    respond(answer)
                }
            },
        );
        let served = crate::serve::serve(app);
        EchoServer {
            url: format!("http://{}", served.address),
            requests,
            _served: served,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<EchoRequest> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

fn respond(answer: EchoResponse) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, answer.body).into_response();
    for (name, value) in answer.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
