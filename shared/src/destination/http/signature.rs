//! Request signatures: `Synctrail-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`, so a
//! receiver can reject forged requests (the HMAC) and replayed ones (the timestamp).

use chrono::{DateTime, Duration, Utc};
use ring::hmac;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "synctrail-signature";

/// The shared secret requests are signed with. Its value never shows in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret {
    key: hmac::Key,
}

impl Secret {
    /// A secret from its bytes (e.g. the text of `SYNCTRAIL_DESTINATION_SECRET`, or an SSM parameter's value).
    pub fn new(bytes: &[u8]) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, bytes) }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

/// The `Synctrail-Signature` value of `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &Secret, timestamp: i64, body: &[u8]) -> String {
    let mut context = hmac::Context::with_key(&secret.key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("t={timestamp},v1={}", hex::encode(context.sign().as_ref()))
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<unix seconds>,v1=<64 hex digits>`.
    #[error("the signature header is malformed: expected t=<unix seconds>,v1=<hex HMAC-SHA256>")]
    Malformed,
    /// The timestamp is further from now than the tolerance: a replay, or a clock far off.
    #[error("the signature's timestamp is {seconds} s away from now, beyond the tolerance")]
    OutsideWindow {
        /// How far the timestamp is from now.
        seconds: i64,
    },
    /// The HMAC does not match: forged, altered, or signed with another secret.
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks a `Synctrail-Signature` value against `body`, as a receiver does: the timestamp within `tolerance` of
/// `now`, and the HMAC (compared in constant time) over `"<t>.<body>"`. Any `v1=` entry may match (a sender
/// rotating secrets sends one per secret).
pub fn verify(
    secret: &Secret,
    header: &str,
    body: &[u8],
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", tag)) => tags.push(hex::decode(tag).map_err(|_| SignatureError::Malformed)?),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp.filter(|_| !tags.is_empty()) else {
        return Err(SignatureError::Malformed);
    };
    let seconds = now.timestamp() - timestamp;
    if seconds.abs() > tolerance.num_seconds() {
        return Err(SignatureError::OutsideWindow { seconds });
    }
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    if tags.iter().any(|tag| hmac::verify(&secret.key, &message, tag).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_777_636_800, 0).expect("valid time")
    }

    #[test]
    fn a_signature_is_the_hmac_sha256_of_timestamp_dot_body_in_hex() {
        // HMAC-SHA256("key", "1777636800.{}"), computed independently (Python's hmac module).
        let header = sign(&Secret::new(b"key"), 1_777_636_800, b"{}");
        assert_eq!(header, "t=1777636800,v1=f9279e3c74321cb4ddcb44633da1fa461670a16f6394bec2596e67aea9fb9ec2");
    }

    #[test]
    fn a_signature_verifies_with_the_same_secret_and_body_only() {
        let secret = Secret::new(b"0123456789abcdef");
        let header = sign(&secret, now().timestamp(), b"{\"n\":1}");
        let window = Duration::minutes(5);
        assert_eq!(verify(&secret, &header, b"{\"n\":1}", now(), window), Ok(()));
        assert_eq!(verify(&secret, &header, b"{\"n\":2}", now(), window), Err(SignatureError::Mismatch));
        let other = Secret::new(b"fedcba9876543210");
        assert_eq!(verify(&other, &header, b"{\"n\":1}", now(), window), Err(SignatureError::Mismatch));
    }

    #[test]
    fn an_old_or_malformed_signature_is_refused() {
        let secret = Secret::new(b"0123456789abcdef");
        let header = sign(&secret, now().timestamp() - 301, b"{}");
        let refused = verify(&secret, &header, b"{}", now(), Duration::minutes(5));
        assert_eq!(refused, Err(SignatureError::OutsideWindow { seconds: 301 }));
        for bad in ["", "t=1", "v1=00", "t=x,v1=00", "t=1,v1=zz"] {
            assert_eq!(
                verify(&secret, bad, b"{}", now(), Duration::minutes(5)),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }
}
