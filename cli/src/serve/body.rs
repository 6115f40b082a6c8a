//! Reading a request body within a size limit and a time limit, frame by frame: nothing over the limit is ever
//! buffered, and a client that stops sending is cut off.

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::time::Duration;

/// Why a body was not read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyError {
    /// It passed the limit.
    TooLarge,
    /// It did not arrive within the time limit.
    TimedOut {
        /// Bytes received until then.
        received: usize,
    },
    /// The client broke it off (closed the connection, malformed chunks).
    Broken {
        /// Bytes received until then.
        received: usize,
    },
}

/// The whole body, if it is at most `limit` bytes and arrives within `timeout`.
pub(super) async fn read_body(body: &mut Incoming, limit: usize, timeout: Duration) -> Result<Bytes, BodyError> {
    let mut buffer = BytesMut::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| BodyError::Broken { received: buffer.len() })?;
            let Ok(data) = frame.into_data() else { continue };
            if buffer.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            buffer.extend_from_slice(&data);
        }
        Ok(())
    };
    let result = tokio::time::timeout(timeout, read).await;
    match result {
        Ok(Ok(())) => Ok(buffer.freeze()),
        Ok(Err(error)) => Err(error),
        Err(_) => Err(BodyError::TimedOut { received: buffer.len() }),
    }
}
