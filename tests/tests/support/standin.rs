//! What the stand-in API servers share (test code): a small HTTP/1.1 server on 127.0.0.1 (keep-alive,
//! `Content-Length` bodies) that hands each request to a handler and writes its answer, and the webhook a stand-in
//! emits after a write, signed as the real system signs it.

use super::receiver::{read_request, reason};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use synctrail::ingress::Headers;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One request as a stand-in sees it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `PATCH`, …
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The query's parameters.
    pub query: BTreeMap<String, String>,
    /// Headers, names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON (`null` when empty or not JSON).
    pub body: Value,
    /// The body's bytes, as received.
    pub raw: Vec<u8>,
}

impl Request {
    /// `METHOD path` (without the query), for assertions.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// A stand-in's answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers besides `content-length` and `content-type: application/json`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Response {
    /// A JSON answer.
    pub fn json(status: u16, body: &Value) -> Self {
        Self { status, headers: Vec::new(), body: body.to_string() }
    }

    /// With one more header.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// A webhook delivery a stand-in produced after a write: what the real system would `POST` to our ingress.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Its headers (the signature among them).
    pub headers: Vec<(String, String)>,
    /// The raw body, as signed.
    pub body: Vec<u8>,
}

impl Webhook {
    /// The headers as the ingress reads them.
    pub fn headers(&self) -> Headers {
        self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON webhook body")
    }
}

/// The handler a stand-in serves with.
pub type Handler = Arc<dyn Fn(Request) -> Response + Send + Sync>;

/// A running server; stops accepting when dropped.
pub struct Server {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Server {
    /// Listens on a free loopback port (inside a Tokio runtime) and answers every request with `handler`.
    pub fn start(handler: Handler) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let listener = TcpListener::from_std(listener).expect("a Tokio listener");
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&handler)));
            }
        });
        Self { url, accept }
    }
}

async fn serve(stream: TcpStream, handler: Handler) {
    let mut stream = BufReader::new(stream);
    while let Some(seen) = read_request(&mut stream).await {
        let mut parts = seen.request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let query = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let request =
            Request { method, path: path.to_owned(), query, headers: seen.headers, body: seen.body, raw: seen.raw };
        let response = handler(request);
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-length: {}\r\n",
            response.status,
            reason(response.status),
            response.body.len()
        );
        for (name, value) in &response.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("content-type: application/json; charset=utf-8\r\n\r\n");
        let stream = stream.get_mut();
        if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(response.body.as_bytes()).await.is_err()
        {
            return;
        }
    }
}
