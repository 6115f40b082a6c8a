//! Where a direct request goes, learned from the SDK client's own first request: the HTTP connector its requests
//! went through (its connection pool and whatever wraps it — the moto gate, the capacity meter) and the endpoint
//! it resolved (a custom URL, `AWS_ENDPOINT_URL_DYNAMODB`, FIPS, account-based: whatever the SDK chose).

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::{RuntimeComponents, RuntimeComponentsBuilder};
use aws_smithy_types::config_bag::ConfigBag;
use std::sync::{Arc, OnceLock};

/// The connector and endpoint of the SDK client's first request.
#[derive(Debug, Clone)]
pub(super) struct Route {
    /// The connector, as the SDK built it for the client's timeouts.
    pub(super) connector: SharedHttpConnector,
    /// `scheme://authority` of the endpoint.
    pub(super) origin: String,
}

/// The route once learned; shared by every clone of the [`super::Direct`].
pub(super) type Learned = Arc<OnceLock<Route>>;

/// An HTTP client in front of the SDK client's own that learns the route from the first request through it, then
/// steps aside.
#[derive(Debug)]
pub(super) struct LearningHttpClient {
    pub(super) inner: SharedHttpClient,
    pub(super) learned: Learned,
}

impl HttpClient for LearningHttpClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        let inner = self.inner.http_connector(settings, components);
        if self.learned.get().is_some() {
            return inner;
        }
        SharedHttpConnector::new(LearningConnector { inner, learned: Arc::clone(&self.learned) })
    }

    fn validate_base_client_config(
        &self,
        components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_base_client_config(components, cfg)
    }

    fn validate_final_config(&self, components: &RuntimeComponents, cfg: &ConfigBag) -> Result<(), BoxError> {
        self.inner.validate_final_config(components, cfg)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[derive(Debug)]
struct LearningConnector {
    inner: SharedHttpConnector,
    learned: Learned,
}

impl HttpConnector for LearningConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        if let Some(origin) = origin(request.uri()) {
            // The first request to get here wins; later ones find the route set and leave it as it is.
            let _ = self.learned.set(Route { connector: self.inner.clone(), origin });
        }
        self.inner.call(request)
    }
}

/// `scheme://authority` of an absolute URI; `None` for anything else.
fn origin(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().filter(|a| !a.is_empty())?;
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn the_origin_is_the_scheme_and_authority_of_an_absolute_uri() {
        assert_eq!(
            origin("https://dynamodb.eu-west-1.amazonaws.com/").as_deref(),
            Some("https://dynamodb.eu-west-1.amazonaws.com")
        );
        assert_eq!(origin("http://127.0.0.1:5000").as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(origin("http://127.0.0.1:5000/?x=1").as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(origin("/relative"), None);
        assert_eq!(origin("http:///nohost"), None);
    }
}
