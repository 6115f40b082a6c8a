//! A function's cold start: the configuration read once from the environment ([`Config::from_env`]), then the one
//! builder ([`synctrail::compose`]) turns it into the engine — the same builder the CLI uses.

use std::sync::Arc;
use synctrail::compose::{compose_engine, compose_event_store, ComposeError, Composed};
use synctrail::config::{Config, ConfigError};
use synctrail::destination::Destination;
use synctrail::engine::Engine;
use synctrail::secrets::{resolve_from_secrets_manager, SecretError};
use synctrail::store::EventStore;
use synctrail::SystemClock;

/// Why a function could not start; Lambda reports it as an init error, and the message says what to set.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The environment does not describe a usable configuration.
    #[error("{0}; fix the function's environment variables")]
    Config(#[from] ConfigError),
    /// The configured backend or destination could not be built.
    #[error(transparent)]
    Compose(#[from] ComposeError),
    /// A secret named by reference (`…SECRET…_ARN`) could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// What a function runs on, built once per cold start.
pub struct Function {
    /// The configuration, as read from the environment.
    pub config: Config,
    /// The engine over the configured backend and destination.
    pub engine: Arc<Engine>,
    /// The backend's handles and the mirror (when it is the destination).
    pub composed: Composed,
}

impl Function {
    /// Reads the environment — secrets named by reference (`SYNCTRAIL_DESTINATION_SECRET_ARN`, …) read from Secrets
    /// Manager once — and builds the engine; `destination` replaces the configured destination (a team's own, see
    /// `synctrail_processor::run_processor`).
    pub async fn init(destination: Option<Arc<dyn Destination>>) -> Result<Self, InitError> {
        Self::with_config(config_from_env().await?, destination).await
    }

    /// Builds the engine `config` describes on the system clock.
    pub async fn with_config(config: Config, destination: Option<Arc<dyn Destination>>) -> Result<Self, InitError> {
        let (engine, composed) = compose_engine(&config, Arc::new(SystemClock), destination).await?;
        tracing::info!(backend = %composed.describe(), "configured");
        Ok(Self { config, engine: Arc::new(engine), composed })
    }
}

/// The configuration the process environment describes, secrets named by reference read from Secrets Manager. The
/// webhook variables (`SYNCTRAIL_WEBHOOK_*`) are the ingest function's own, read by it (its secrets too): they are
/// left out, so a cold start reads no secret twice.
pub async fn config_from_env() -> Result<Config, InitError> {
    let vars = std::env::vars().filter(|(name, _)| synctrail::config::configures_the_engine(name)).collect();
    let (endpoint, region) = (synctrail::config::env_var("AWS_ENDPOINT_URL"), synctrail::config::env_var("AWS_REGION"));
    config_from_vars(vars, endpoint.as_deref(), region.as_deref()).await
}

/// The configuration the `SYNCTRAIL_*` variables `vars` describe (other variables from the environment), every
/// `…SECRET…_ARN` reference replaced by the secret it names, read from Secrets Manager at `endpoint_url` in
/// `region` (no client is made when nothing is referenced).
pub async fn config_from_vars(
    vars: Vec<(String, String)>,
    endpoint_url: Option<&str>,
    region: Option<&str>,
) -> Result<Config, InitError> {
    let vars = resolve_from_secrets_manager(vars, endpoint_url, region).await?;
    let resolved: std::collections::HashMap<String, String> = vars.into_iter().collect();
    let lookup = |name: &str| {
        let value = if name.starts_with("SYNCTRAIL_") { resolved.get(name).cloned() } else { std::env::var(name).ok() };
        value.filter(|v| synctrail::config::counts_as_set(name, v))
    };
    Ok(Config::from_vars(&lookup)?)
}

/// Only the event store the environment names (on AWS the table alone, no request at start-up), with the
/// configuration: what a function that only reads records needs.
pub async fn event_store_from_env() -> Result<(Config, Arc<dyn EventStore>), InitError> {
    let config = Config::from_env()?;
    let store = compose_event_store(&config, Arc::new(SystemClock)).await?;
    Ok((config, store))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded(home: &std::path::Path) -> Config {
        Config::embedded(home)
    }

    #[tokio::test]
    async fn a_blank_destination_secret_is_refused_not_taken_for_unsigned() {
        for blank in ["", "   "] {
            let vars = [
                ("SYNCTRAIL_DESTINATION", "http"),
                ("SYNCTRAIL_DESTINATION_URL", "https://receiver.example/synctrail"),
                ("SYNCTRAIL_DESTINATION_SECRET", blank),
            ];
            let vars = vars.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
            let error = config_from_vars(vars, None, None).await.expect_err("a blank secret is refused");
            assert!(error.to_string().contains("SYNCTRAIL_DESTINATION_SECRET"), "{error}");
        }
    }

    #[tokio::test]
    async fn a_function_starts_on_a_fresh_embedded_home() {
        let home = tempfile::tempdir().expect("temporary home");
        let function = Function::with_config(embedded(&home.path().join("synctrail")), None).await;
        assert!(function.is_ok(), "{:?}", function.err().map(|e| e.to_string()));
    }

    #[tokio::test]
    async fn an_unusable_home_is_named_in_the_error() {
        let file = tempfile::NamedTempFile::new().expect("temporary file");
        let home = file.path().join("home");
        let error = Function::with_config(embedded(&home), None).await.err().expect("a file can't hold a home");
        assert!(matches!(error, InitError::Compose(ComposeError::Open { .. })), "{error:?}");
        assert!(error.to_string().contains(&home.display().to_string()), "{error}");
        assert!(error.to_string().contains("SYNCTRAIL_HOME"), "{error}");
    }
}
