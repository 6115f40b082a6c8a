//! `synctrail serve`'s HTTP/1.1 server: the ingest function's handler ([`synctrail_ingest::Ingest`]) on a TCP
//! listener, so webhooks can be tried locally with `curl` on the same routes as the Lambda. Bodies are read
//! within a size limit (a larger one is refused with 413 by its `Content-Length` before it is read, or as soon as
//! it passes the limit; never buffered beyond it) and a time limit (headers and body each within `read_timeout`:
//! a client that sends slowly is cut off with 408, or its connection closed). [`Server::stop`] stops it within a
//! bounded time.

mod body;
pub mod client;

use body::{read_body, BodyError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use synctrail::ingress::Headers;
use synctrail::Invocation;
use synctrail_ingest::{Answer, Ingest, Request};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long [`Server::stop`] lets requests in progress finish before it cuts their connections.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// The function name recorded in history entries of events the server rejects.
pub const FUNCTION_NAME: &str = "synctrail-serve";

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The address to listen on (`127.0.0.1` by default: only this machine).
    pub bind: IpAddr,
    /// The port; 0 picks a free one.
    pub port: u16,
    /// How long a client may take to send its headers, and then its body.
    pub read_timeout: Duration,
}

/// A running server; dropping it (or [`Server::stop`]) stops it.
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Listens on `options`' address and serves `ingest` on a task of its own.
    pub async fn start(ingest: Arc<Ingest>, options: &ServeOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind((options.bind, options.port)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared { ingest, options: options.clone(), requests: AtomicU64::new(0) });
        let task = tokio::spawn(accept(listener, shared, stopped));
        Ok(Self { addr, stop, task })
    }

    /// The address it listens on (with the port picked when 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in progress finish for up to [`STOP_GRACE`], then closes every connection.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// What every connection shares.
struct Shared {
    ingest: Arc<Ingest>,
    options: ServeOptions,
    requests: AtomicU64,
}

/// Accepts connections until stopped, then stops them within [`STOP_GRACE`].
async fn accept(listener: TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, Arc::clone(&shared), stopped.clone()));
                }
                Err(error) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    let finished = tokio::time::timeout(STOP_GRACE, async { while connections.join_next().await.is_some() {} }).await;
    if finished.is_err() {
        connections.abort_all();
    }
}

/// Serves one connection (HTTP/1.1, keep-alive) until it closes, or gracefully once the server stops.
async fn connection(stream: TcpStream, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let read_timeout = shared.options.read_timeout;
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(respond(&shared, request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(read_timeout)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = stopped.changed() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(error = %error, "a connection ended with an error");
    }
}

/// Answers one request through the handler, reading its body within the limits first.
async fn respond(shared: &Shared, request: hyper::Request<Incoming>) -> hyper::Response<Full<Bytes>> {
    let ingest = &shared.ingest;
    let (parts, mut body) = request.into_parts();
    let (method, path) = (parts.method.as_str(), parts.uri.path());
    let source = match ingest.screen(method, path) {
        Ok(source) => source,
        Err(answer) => return refused(&answer, 0),
    };
    let limit = ingest.max_body_bytes();
    let declared = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        // Unread: a client that asked `Expect: 100-continue` is not even asked for the body.
        return refused(&ingest.too_large(source), 0);
    }
    let body = match read_body(&mut body, limit, shared.options.read_timeout).await {
        Ok(bytes) => bytes,
        Err(BodyError::TooLarge) => return refused(&ingest.too_large(source), limit),
        Err(BodyError::TimedOut { received }) => return refused(&Answer::timed_out(), received),
        Err(BodyError::Broken { received }) => return refused(&Answer::bad_request(), received),
    };
    let headers: Headers = parts.headers.iter().filter_map(|(k, v)| Some((k.as_str(), v.to_str().ok()?))).collect();
    let number = shared.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let invocation = Invocation {
        function: Some(FUNCTION_NAME.to_owned()),
        request_id: Some(format!("serve-{number}")),
        ..Invocation::default()
    };
    let request = Request { method, path, headers: &headers, body: &body };
    response(&ingest.handle(&request, &invocation).await)
}

/// An answer given before the body was read whole, logged; the connection closes after it.
fn refused(answer: &Answer, body_bytes: usize) -> hyper::Response<Full<Bytes>> {
    answer.log(body_bytes);
    let mut response = response(answer);
    response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The HTTP response of `answer`: its JSON, never cached, with `Allow` or `Retry-After` when it has them.
fn response(answer: &Answer) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from(answer.body_text())));
    *response.status_mut() =
        hyper::StatusCode::from_u16(answer.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(allow) = answer.allow {
        headers.insert(ALLOW, HeaderValue::from_static(allow));
    }
    if let Some(seconds) = answer.retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}
