//! Webhook signatures: HMAC-SHA256 of the raw body under the source's secret, sent in a header as hex or base64
//! (optionally after a prefix such as `sha256=`), checked in constant time before anything reads the body.

use super::headers::Headers;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::fmt;

/// A source's webhook secret, kept only as the HMAC keyed with it: never printed, never logged.
#[derive(Clone)]
pub struct Secret(Hmac<Sha256>);

impl Secret {
    /// The secret whose bytes are `key` (the text GitHub, Shopify or the source was given); `None` when empty,
    /// since an empty key authenticates nothing.
    pub fn new(key: &[u8]) -> Option<Self> {
        if key.is_empty() {
            return None;
        }
        Hmac::<Sha256>::new_from_slice(key).ok().map(Self)
    }

    /// The HMAC-SHA256 of `body` under this secret.
    fn mac(&self, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(body);
        mac
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How a signature header encodes the HMAC's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// Hexadecimal, either case (GitHub).
    Hex,
    /// Standard base64 with padding (Shopify).
    Base64,
}

/// Where a source sends its signature and how it is written. The MAC is always HMAC-SHA256 of the raw body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureScheme {
    /// The header that carries the signature (matched case-insensitively).
    pub header: String,
    /// How the MAC's bytes are written.
    pub encoding: Encoding,
    /// Text before the encoded MAC, e.g. `sha256=`; empty for none.
    pub prefix: String,
}

impl SignatureScheme {
    /// GitHub's `X-Hub-Signature-256: sha256=<hex>`.
    pub fn github() -> Self {
        Self { header: "X-Hub-Signature-256".into(), encoding: Encoding::Hex, prefix: "sha256=".into() }
    }

    /// Shopify's `X-Shopify-Hmac-Sha256: <base64>`.
    pub fn shopify() -> Self {
        Self { header: "X-Shopify-Hmac-Sha256".into(), encoding: Encoding::Base64, prefix: String::new() }
    }

    /// Checks the signature `headers` carry for `body` under `secret`; the comparison takes the same time
    /// whichever byte differs.
    pub fn verify(&self, secret: &Secret, headers: &Headers, body: &[u8]) -> Result<(), AuthFailure> {
        let value = headers.get(&self.header).ok_or(AuthFailure::MissingSignature)?;
        let encoded = value.trim().strip_prefix(self.prefix.as_str()).ok_or(AuthFailure::MalformedSignature)?;
        let claimed = match self.encoding {
            Encoding::Hex => hex::decode(encoded).ok(),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(encoded).ok(),
        }
        .ok_or(AuthFailure::MalformedSignature)?;
        secret.mac(body).verify_slice(&claimed).map_err(|_| AuthFailure::Mismatch)
    }

    /// The header value that signs `body` under `secret`: what the source would send (tests, local tools).
    pub fn sign(&self, secret: &Secret, body: &[u8]) -> String {
        let bytes = secret.mac(body).finalize().into_bytes();
        let encoded = match self.encoding {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
        };
        format!("{}{encoded}", self.prefix)
    }
}

/// Why a delivery is not authenticated. The caller answers 401 without saying which; this is for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// The signature header is absent.
    #[error("the signature header is missing")]
    MissingSignature,
    /// The header lacks the prefix or is not valid hex/base64.
    #[error("the signature header is not in the source's format")]
    MalformedSignature,
    /// The signature does not match the body under the source's secret.
    #[error("the signature does not match the body")]
    Mismatch,
}

impl AuthFailure {
    /// A short label for metrics: `missing_signature`, `malformed_signature` or `mismatch`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::MissingSignature => "missing_signature",
            Self::MalformedSignature => "malformed_signature",
            Self::Mismatch => "mismatch",
        }
    }
}
