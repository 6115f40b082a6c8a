//! A small HTTP/1.1 client for the demo and the tests: one POST on a fresh connection, bounded in time.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long one request may take, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The body, as text.
    pub body: String,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connecting failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The server.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The request or the response failed.
    #[error("HTTP exchange with {addr}: {source}")]
    Http {
        /// The server.
        addr: SocketAddr,
        /// What hyper said.
        source: hyper::Error,
    },
    /// The request could not be built (a header name or value that HTTP does not allow).
    #[error("building the request: {0}")]
    Request(#[from] hyper::http::Error),
    /// No answer within [`REQUEST_TIMEOUT`].
    #[error("{addr} did not answer within {REQUEST_TIMEOUT:?}")]
    TimedOut {
        /// The server.
        addr: SocketAddr,
    },
}

/// POSTs `body` (as `application/json`) with `headers` to `path` at `addr`.
pub async fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<Reply, ClientError> {
    tokio::time::timeout(REQUEST_TIMEOUT, exchange(addr, path, headers, body))
        .await
        .unwrap_or(Err(ClientError::TimedOut { addr }))
}

async fn exchange(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<Reply, ClientError> {
    let stream = TcpStream::connect(addr).await.map_err(|source| ClientError::Connect { addr, source })?;
    let http = |source| ClientError::Http { addr, source };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
    let driver = tokio::spawn(connection);
    let mut request =
        hyper::Request::post(path).header(HOST, addr.to_string()).header(CONTENT_TYPE, "application/json");
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = sender.send_request(request.body(Full::new(Bytes::from(body)))?).await.map_err(http)?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.map_err(http)?.to_bytes();
    driver.abort();
    Ok(Reply { status, body: String::from_utf8_lossy(&bytes).into_owned() })
}
