//! SigV4 for direct requests: credentials from the SDK configuration's provider, cached, and the signature.

use super::PutFailure;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use std::time::{Duration, SystemTime};

/// Credentials are loaded again this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// Credentials without an expiry (environment variables, a profile's keys) are loaded again after this long, as
/// the SDK's identity cache does.
const RELOAD_NEVER_EXPIRING: Duration = Duration::from_secs(15 * 60);

/// Signs requests to one service in one region.
#[derive(Debug)]
pub(super) struct Signer {
    provider: Option<SharedCredentialsProvider>,
    service: &'static str,
    cached: tokio::sync::Mutex<Option<(Credentials, SystemTime)>>,
}

impl Signer {
    pub(super) fn new(provider: Option<SharedCredentialsProvider>, service: &'static str) -> Self {
        Self { provider, service, cached: tokio::sync::Mutex::default() }
    }

    /// Credentials, loaded from the provider when none are cached or the cached ones are due for renewal (one
    /// caller loads, the others wait for it).
    async fn credentials(&self) -> Result<Credentials, PutFailure> {
        let mut cached = self.cached.lock().await;
        let now = SystemTime::now();
        if let Some((credentials, loaded_at)) = cached.as_ref() {
            let due = match credentials.expiry() {
                Some(expiry) => expiry.checked_sub(REFRESH_BEFORE_EXPIRY).unwrap_or(expiry),
                None => *loaded_at + RELOAD_NEVER_EXPIRING,
            };
            if now < due {
                return Ok(credentials.clone());
            }
        }
        let provider = self.provider.as_ref().ok_or(PutFailure::NoCredentials)?;
        let fresh = provider.provide_credentials().await.map_err(PutFailure::Credentials)?;
        *cached = Some((fresh.clone(), now));
        Ok(fresh)
    }

    /// The headers that sign a `POST` of `body` to `uri` with `headers`, for `region`, at this moment.
    pub(super) async fn signature(
        &self,
        region: &str,
        uri: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, PutFailure> {
        let identity: Identity = self.credentials().await?.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| PutFailure::Signing(e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            uri,
            headers.iter().map(|(name, value)| (name.as_str(), value.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|e| PutFailure::Signing(e.to_string()))?;
        let (instructions, _signature) =
            sign(signable, &params).map_err(|e| PutFailure::Signing(e.to_string()))?.into_parts();
        let (signed, _query) = instructions.into_parts();
        Ok(signed.into_iter().map(|header| (header.name().to_owned(), header.value().to_owned())).collect())
    }
}
