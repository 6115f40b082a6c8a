//! The webhook configuration at a cold start: the `SYNCTRAIL_WEBHOOK_*` variables, with secrets named by
//! reference (`SYNCTRAIL_WEBHOOK_SECRET_<SOURCE>_ARN`) read from Secrets Manager once (`synctrail::secrets`).

use synctrail::ingress::{synctrail_vars, ConfigError, Ingress, IngressConfig};
use synctrail::secrets::{resolve_from_secrets_manager, SecretError};

/// Why the webhook configuration could not be built; the message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum IngestInitError {
    /// The variables do not describe a usable configuration.
    #[error("{0}; fix the SYNCTRAIL_WEBHOOK_* variables")]
    Config(#[from] ConfigError),
    /// A secret named by reference could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// The ingress the process environment describes; referenced secrets are read from Secrets Manager at
/// `endpoint_url` (moto, LocalStack; `None`: AWS) in `region`.
pub async fn ingress_from_env(endpoint_url: Option<&str>, region: Option<&str>) -> Result<Ingress, IngestInitError> {
    ingress_from_vars(synctrail_vars()?, endpoint_url, region).await
}

/// The ingress `vars` describe (see [`IngressConfig::from_vars`]), after reading the secrets they reference. No
/// client is made when nothing is referenced.
pub async fn ingress_from_vars(
    vars: Vec<(String, String)>,
    endpoint_url: Option<&str>,
    region: Option<&str>,
) -> Result<Ingress, IngestInitError> {
    let vars = resolve_from_secrets_manager(vars, endpoint_url, region).await?;
    let ingress = Ingress::new(IngressConfig::from_vars(vars)?);
    let sources: Vec<&str> = ingress.config().sources.keys().map(String::as_str).collect();
    if sources.is_empty() {
        tracing::warn!(
            "no webhook source is configured: every delivery is answered 404 (set SYNCTRAIL_WEBHOOK_SECRET_<SOURCE>)"
        );
    } else {
        tracing::info!(sources = %sources.join(","), "webhook sources configured");
    }
    Ok(ingress)
}
