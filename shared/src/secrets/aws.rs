//! Secrets Manager as a [`SecretSource`]: `GetSecretValue` of the version `AWSCURRENT`.

use super::{has_references, resolve_references, without_blank_references, FetchError, SecretError, SecretSource};
use crate::store::aws::sdk_config;
use async_trait::async_trait;
use aws_smithy_types::error::display::DisplayErrorContext;

/// Reads secrets from AWS Secrets Manager.
#[derive(Debug, Clone)]
pub struct SecretsManager {
    client: aws_sdk_secretsmanager::Client,
}

impl SecretsManager {
    /// A client on the same SDK configuration as the backend's (`endpoint_url`: moto or LocalStack).
    pub async fn connect(endpoint_url: Option<&str>, region: Option<&str>) -> Self {
        Self { client: aws_sdk_secretsmanager::Client::new(&sdk_config(endpoint_url, region).await) }
    }

    /// The SDK client, for tests and tools that create secrets.
    pub fn client(&self) -> &aws_sdk_secretsmanager::Client {
        &self.client
    }
}

/// `vars` with every reference resolved from Secrets Manager at `endpoint_url` in `region` ([`resolve_references`]);
/// no client is made when none is set, and blank references are dropped either way.
pub async fn resolve_from_secrets_manager(
    vars: Vec<(String, String)>,
    endpoint_url: Option<&str>,
    region: Option<&str>,
) -> Result<Vec<(String, String)>, SecretError> {
    if !has_references(&vars) {
        return Ok(without_blank_references(vars));
    }
    resolve_references(vars, &SecretsManager::connect(endpoint_url, region).await).await
}

#[async_trait]
impl SecretSource for SecretsManager {
    async fn secret_string(&self, reference: &str) -> Result<String, FetchError> {
        let out =
            self.client.get_secret_value().secret_id(reference).send().await.map_err(|e| FetchError::Service {
                message: DisplayErrorContext(&e).to_string(),
                source: Box::new(e),
            })?;
        out.secret_string.ok_or(FetchError::NotAString)
    }
}
