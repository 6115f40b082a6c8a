//! [`ShopifyConnector`]: writes outbound `product` events through Shopify's REST Admin API — updates, at most one
//! write per event even when retried, keeping to the call bucket (`X-Shopify-Shop-Api-Call-Limit`) and to 429
//! answers. The rules are in docs/connectors.md.

use super::config::{ShopifyConfig, SHOPIFY_API_URL_VARIABLE, SHOPIFY_SHOP_VARIABLE, SHOPIFY_TOKEN_VARIABLE};
use super::rest::{fields_to_write, json_of, same_names, snapshot_only, written, Rest};
use crate::clock::Clock;
use crate::destination::http::config::HttpConfigError;
use crate::destination::http::outcome::{described, retry_after};
use crate::destination::http::transport::{Answer, Budget, Transport};
use crate::destination::{ApplyOutcome, Change, Destination, DestinationError};
use crate::model::Kind;
use async_trait::async_trait;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;

/// The product fields written, when the payload has them.
pub const PRODUCT_FIELDS: [&str; 8] =
    ["title", "body_html", "vendor", "product_type", "tags", "status", "handle", "template_suffix"];
/// Calls kept free in the bucket: with fewer left, requests pause until it has leaked that many.
pub const BUCKET_RESERVE: u64 = 2;
/// How long to wait after a 429 that names no delay.
pub const THROTTLED_WAIT: Duration = Duration::from_secs(1);
/// The header of the call bucket: `used/size`.
const CALL_LIMIT: &str = "x-shopify-shop-api-call-limit";

/// Writes products to one Shopify shop.
pub struct ShopifyConnector {
    rest: Rest,
    shop: String,
    api_version: String,
}

impl std::fmt::Debug for ShopifyConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopifyConnector")
            .field("shop", &self.shop)
            .field("api_version", &self.api_version)
            .finish_non_exhaustive()
    }
}

impl ShopifyConnector {
    /// The connector `config` describes, on `clock`. Fails only for an `https://` API whose TLS roots can't load.
    pub fn new(config: ShopifyConfig, clock: Arc<dyn Clock>) -> Result<Self, HttpConfigError> {
        let transport = Transport::new(
            config.limits.transport(&config.api_url),
            clock,
            "the Shopify Admin API",
            SHOPIFY_API_URL_VARIABLE,
        )?;
        let mut token = HeaderValue::from_str(config.token.expose()).map_err(|_| HttpConfigError::Invalid {
            variable: SHOPIFY_TOKEN_VARIABLE,
            value: "<hidden>".into(),
            expected: "a token that fits in a header",
        })?;
        token.set_sensitive(true);
        let headers = vec![(HeaderName::from_static("x-shopify-access-token"), token)];
        Ok(Self {
            rest: Rest::new(transport, &config.api_url, "application/json", headers),
            shop: config.shop,
            api_version: config.api_version,
        })
    }

    /// The product a request answers with, after reading the call bucket.
    async fn product(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        budget: &Budget,
    ) -> Result<Value, DestinationError> {
        let answer = self.rest.call(method, path, body, budget).await?;
        self.check(&answer)?;
        let mut json = json_of(&answer)?;
        match json.get_mut("product").map(Value::take) {
            Some(product) if product.is_object() => Ok(product),
            _ => Err(DestinationError::retryable(format!(
                "{} has no product; the change may have been written, the retry looks first",
                described(answer.status, &answer.body)
            ))),
        }
    }

    /// Reads the call bucket of any answer, and turns a failed one into its error.
    fn check(&self, answer: &Answer) -> Result<(), DestinationError> {
        let now = self.rest.pace.now();
        if let Some((used, size)) = bucket(&answer.headers) {
            if let Some(wait) = leak_time(used, size) {
                self.rest.pace.pause_for(wait, format!("Shopify's call bucket is nearly full ({used}/{size})"));
            }
        }
        if answer.status.is_success() {
            return Ok(());
        }
        let text = described(answer.status, &answer.body);
        Err(match answer.status.as_u16() {
            429 => {
                let delay = retry_after(&answer.headers, now).unwrap_or(THROTTLED_WAIT);
                self.rest.pace.pause_for(delay, format!("Shopify answered 429 (retry after {} ms)", delay.as_millis()));
                DestinationError::throttled(text, Some(delay))
            }
            401 | 403 => DestinationError::Permanent(format!(
                "{text}; check {SHOPIFY_TOKEN_VARIABLE} (an Admin API token with write_products)"
            )),
            402 | 423 => DestinationError::Permanent(format!("{text}; the shop is frozen or locked")),
            404 => DestinationError::Permanent(format!("{text}; the product does not exist in this shop")),
            408 | 500..=599 => {
                DestinationError::Retryable { message: text, retry_after: retry_after(&answer.headers, now) }
            }
            _ => DestinationError::Permanent(text),
        })
    }
}

#[async_trait]
impl Destination for ShopifyConnector {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        snapshot_only(change, "Shopify")?;
        let entity = change.entity;
        if entity.entity_type != "product" {
            return Err(DestinationError::Permanent(format!(
                "the Shopify connector writes product events, not {}",
                entity.entity_type
            )));
        }
        if entity.tenant != self.shop {
            return Err(DestinationError::Permanent(format!(
                "{entity} is of tenant {}, and this connector writes to shop {} ({SHOPIFY_SHOP_VARIABLE})",
                entity.tenant, self.shop
            )));
        }
        if change.kind == Kind::Create {
            return Err(DestinationError::Permanent(
                "the Shopify connector updates products; create them in Shopify (their webhook brings them here)"
                    .into(),
            ));
        }
        let id: u64 = entity.external_id.parse().map_err(|_| {
            DestinationError::Permanent(format!("product {:?} is not a Shopify product id", entity.external_id))
        })?;
        let fields = fields_to_write(change.payload, &PRODUCT_FIELDS, "product")?;
        let fingerprinted: Vec<String> = fields.keys().map(|field| format!("/{field}")).collect();
        let budget = self.rest.budget(change)?;
        let path = format!("/admin/api/{}/products/{id}.json", self.api_version);
        if change.previous_attempt_unknown {
            let current = self.product(Method::GET, &path, None, &budget).await?;
            if holds(&current, &fields) {
                tracing::info!(event_id = %change.event_id, "already written by an earlier attempt");
                return Ok(ApplyOutcome::Written(written(&current, fingerprinted, None)?));
            }
        }
        let mut product = fields;
        product.insert("id".into(), Value::from(id));
        let body = serde_json::json!({ "product": product });
        let updated = self.product(Method::PUT, &path, Some(&body), &budget).await?;
        Ok(ApplyOutcome::Written(written(&updated, fingerprinted, None)?))
    }
}

/// Whether a product holds the fields to write (tags as a set: Shopify normalises their order and spaces).
fn holds(current: &Value, fields: &Map<String, Value>) -> bool {
    fields.iter().all(|(field, wanted)| match field.as_str() {
        "tags" => same_names(current.get("tags").unwrap_or(&Value::Null), wanted, "name"),
        other => current.get(other).unwrap_or(&Value::Null) == wanted,
    })
}

/// `X-Shopify-Shop-Api-Call-Limit: used/size`.
fn bucket(headers: &HeaderMap) -> Option<(u64, u64)> {
    let (used, size) = headers.get(CALL_LIMIT)?.to_str().ok()?.split_once('/')?;
    let (used, size) = (used.trim().parse().ok()?, size.trim().parse().ok()?);
    (size > 0).then_some((used, size))
}

/// How long the bucket takes to leak back to [`BUCKET_RESERVE`] free calls, when fewer are free. It leaks a
/// twentieth of its size a second (40 → 2/s, 80 → 4/s, 400 → 20/s).
fn leak_time(used: u64, size: u64) -> Option<Duration> {
    let over = (used + BUCKET_RESERVE).checked_sub(size).filter(|over| *over > 0)?;
    Some(Duration::from_secs_f64(over as f64 * 20.0 / size as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_nearly_full_bucket_waits_for_it_to_leak() {
        assert_eq!(leak_time(37, 40), None);
        assert_eq!(leak_time(38, 40), None);
        assert_eq!(leak_time(39, 40), Some(Duration::from_millis(500)));
        assert_eq!(leak_time(40, 40), Some(Duration::from_secs(1)));
        assert_eq!(leak_time(399, 400), Some(Duration::from_millis(50)));
        let mut headers = HeaderMap::new();
        headers.insert(CALL_LIMIT, HeaderValue::from_static("39/40"));
        assert_eq!(bucket(&headers), Some((39, 40)));
        headers.insert(CALL_LIMIT, HeaderValue::from_static("x/40"));
        assert_eq!(bucket(&headers), None);
    }

    #[test]
    fn a_product_holds_its_tags_as_a_set() {
        let product = json!({"title": "Shirt", "tags": "summer, sale"});
        let fields = json!({"title": "Shirt", "tags": "sale,summer"});
        assert!(holds(&product, fields.as_object().unwrap()));
        assert!(!holds(&product, json!({"title": "Hat"}).as_object().unwrap()));
    }
}
