//! SigV4 for direct requests: credentials from the SDK configuration's provider, cached, and the `Authorization`
//! header of a `POST /` with a JSON body — the one request shape sent here, so its canonical form is written out
//! directly (the tests check it against the SDK's own signer, `aws-sigv4`). The signing key is derived once per
//! day, region and credentials (AWS documentation, "Create a signed AWS API request").

use super::DirectFailure;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// Credentials are loaded again this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// Credentials without an expiry (environment variables, a profile's keys) are loaded again after this long, as
/// the SDK's identity cache does.
const RELOAD_NEVER_EXPIRING: Duration = Duration::from_secs(15 * 60);

/// What one request signs besides its body.
pub(super) struct Signable<'a> {
    /// The `Host` header (the endpoint's authority).
    pub(super) host: &'a str,
    /// `X-Amz-Target`.
    pub(super) target: &'a str,
    /// `Content-Type`.
    pub(super) content_type: &'a str,
    /// The signing region.
    pub(super) region: &'a str,
}

/// Credentials as loaded, and the signing key last derived from them.
struct Cached {
    credentials: Credentials,
    loaded_at: SystemTime,
    /// `(yyyymmdd, region, key)`.
    key: Option<(String, String, [u8; 32])>,
}

/// Signs requests to one service.
#[derive(Debug)]
pub(super) struct Signer {
    provider: Option<SharedCredentialsProvider>,
    service: &'static str,
    cached: tokio::sync::Mutex<Option<Cached>>,
}

impl std::fmt::Debug for Cached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cached").field("credentials", &self.credentials).field("loaded_at", &self.loaded_at).finish()
    }
}

impl Signer {
    pub(super) fn new(provider: Option<SharedCredentialsProvider>, service: &'static str) -> Self {
        Self { provider, service, cached: tokio::sync::Mutex::default() }
    }

    /// The headers that sign a `POST /` of `body` at `now`: `x-amz-date`, `x-amz-security-token` (with session
    /// credentials) and `authorization`. Credentials are loaded from the provider when none are cached or the
    /// cached ones are due for renewal (one caller loads, the others wait for it).
    pub(super) async fn headers(
        &self,
        request: &Signable<'_>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Vec<(String, String)>, DirectFailure> {
        let mut cached = self.cached.lock().await;
        let due = |c: &Cached| match c.credentials.expiry() {
            Some(expiry) => expiry.checked_sub(REFRESH_BEFORE_EXPIRY).unwrap_or(expiry),
            None => c.loaded_at + RELOAD_NEVER_EXPIRING,
        };
        if cached.as_ref().is_none_or(|c| SystemTime::from(now) >= due(c)) {
            let provider = self.provider.as_ref().ok_or(DirectFailure::NoCredentials)?;
            let credentials = provider.provide_credentials().await.map_err(DirectFailure::Credentials)?;
            *cached = Some(Cached { credentials, loaded_at: SystemTime::from(now), key: None });
        }
        let Some(cached) = cached.as_mut() else { return Err(DirectFailure::NoCredentials) };
        let date = now.format("%Y%m%d").to_string();
        if cached.key.as_ref().is_none_or(|(d, r, _)| *d != date || r != request.region) {
            let key = signing_key(cached.credentials.secret_access_key(), &date, request.region, self.service)?;
            cached.key = Some((date.clone(), request.region.to_owned(), key));
        }
        let Some((_, _, key)) = cached.key.as_ref() else { return Err(DirectFailure::Build("no signing key".into())) };
        sign(request, body, now, &date, self.service, &cached.credentials, key)
    }
}

/// HMAC-SHA256 (which takes a key of any length: `None` does not happen).
fn hmac(key: &[u8], data: &[u8]) -> Result<[u8; 32], DirectFailure> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|e| DirectFailure::Build(format!("keying HMAC-SHA256 failed: {e}")))?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().into())
}

/// The SigV4 signing key of `secret` for `date` (`yyyymmdd`), `region` and `service`.
fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Result<[u8; 32], DirectFailure> {
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes())?;
    for part in [region, service, "aws4_request"] {
        key = hmac(&key, part.as_bytes())?;
    }
    Ok(key)
}

/// The signing headers of the request.
fn sign(
    request: &Signable<'_>,
    body: &[u8],
    now: DateTime<Utc>,
    date: &str,
    service: &str,
    credentials: &Credentials,
    key: &[u8; 32],
) -> Result<Vec<(String, String)>, DirectFailure> {
    let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
    let token = credentials.session_token();
    // Canonical headers, sorted by name; values as sent (none has spaces to fold).
    let mut headers = vec![
        ("content-type", request.content_type),
        ("host", request.host),
        ("x-amz-date", amz_date.as_str()),
        ("x-amz-target", request.target),
    ];
    if let Some(token) = token {
        headers.insert(3, ("x-amz-security-token", token));
    }
    let mut canonical = String::with_capacity(512);
    canonical.push_str("POST\n/\n\n");
    for (name, value) in &headers {
        let _ = writeln!(canonical, "{name}:{}", value.trim());
    }
    let signed_headers = headers.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(";");
    let _ = write!(canonical, "\n{signed_headers}\n{}", hex::encode(Sha256::digest(body)));
    let scope = format!("{date}/{}/{service}/aws4_request", request.region);
    let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical)));
    let signature = hex::encode(hmac(key, to_sign.as_bytes())?);
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.access_key_id()
    );
    let mut out = vec![("x-amz-date".to_owned(), amz_date.clone())];
    if let Some(token) = token {
        out.push(("x-amz-security-token".to_owned(), token.to_owned()));
    }
    out.push(("authorization".to_owned(), authorization));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::http_request::{sign as reference_sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    use aws_smithy_runtime_api::client::identity::Identity;

    /// What `aws-sigv4` (the SDK's signer) makes of the same request.
    fn reference(
        request: &Signable<'_>,
        body: &[u8],
        now: DateTime<Utc>,
        credentials: &Credentials,
    ) -> Vec<(String, String)> {
        let identity: Identity = credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(request.region)
            .name("dynamodb")
            .time(SystemTime::from(now))
            .settings(SigningSettings::default())
            .build()
            .expect("params")
            .into();
        let uri = format!("https://{}/", request.host);
        let headers =
            [("content-type", request.content_type), ("host", request.host), ("x-amz-target", request.target)];
        let signable =
            SignableRequest::new("POST", uri, headers.into_iter(), SignableBody::Bytes(body)).expect("signable");
        let (instructions, _) = reference_sign(signable, &params).expect("signed").into_parts();
        let mut out: Vec<_> = instructions.headers().map(|(name, value)| (name.to_owned(), value.to_owned())).collect();
        out.sort();
        out
    }

    #[tokio::test]
    async fn the_signature_is_the_sdk_signers_with_and_without_a_session_token() {
        let request = Signable {
            host: "dynamodb.eu-west-1.amazonaws.com",
            target: "DynamoDB_20120810.PutItem",
            content_type: "application/x-amz-json-1.0",
            region: "eu-west-1",
        };
        let body = br#"{"TableName":"events","Item":{"pk":{"S":"EVENT#e1"}}}"#;
        let now = DateTime::parse_from_rfc3339("2026-12-06T09:58:07Z").expect("time").with_timezone(&Utc);
        for token in [None, Some("IQoJb3JpZ2luX2VjEPr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ+session/token=")] {
            let credentials = Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                token.map(str::to_owned),
                None,
                "test",
            );
            let provider = SharedCredentialsProvider::new(credentials.clone());
            let signer = Signer::new(Some(provider), "dynamodb");
            // The same signer the next day, and in another region: the cached signing key is derived again.
            let later = [(now, "eu-west-1"), (now + chrono::Duration::days(1), "eu-west-1"), (now, "us-east-2")];
            for (at, region) in later {
                let request = Signable { region, ..request };
                let mut ours = signer.headers(&request, body, at).await.expect("signed");
                ours.sort();
                assert_eq!(
                    ours,
                    reference(&request, body, at, &credentials),
                    "token {}, {at}, {region}",
                    token.is_some()
                );
                let authorization = &ours.iter().find(|(name, _)| name == "authorization").expect("authorization").1;
                assert_eq!(authorization.contains("x-amz-security-token"), token.is_some(), "{authorization}");
            }
        }
    }

    #[tokio::test]
    async fn without_a_credentials_provider_signing_says_what_to_set() {
        let request = Signable { host: "h", target: "t", content_type: "c", region: "r" };
        let signer = Signer::new(None, "dynamodb");
        let failure = signer.headers(&request, b"{}", Utc::now()).await.expect_err("no credentials");
        assert!(failure.to_string().contains("AWS_ACCESS_KEY_ID"), "{failure}");
    }
}
