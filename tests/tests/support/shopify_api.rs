//! A stand-in for Shopify's REST Admin API (test code; the connector under test is the real client): the products
//! of one shop, read and updated as `GET`/`PUT /admin/api/<version>/products/<id>.json` do (access token header,
//! JSON shaped like Shopify's — the product is the documented `products/update` example), the call bucket of the
//! REST API (40 calls, leaking 2 a second, in real time) with `X-Shopify-Shop-Api-Call-Limit` on every answer and
//! a 429 with `Retry-After` when full, scripted faults, and after every write the `products/update` webhook
//! Shopify would send, signed with the webhook secret.

use super::fixture_path;
use super::standin::{Handler, Request, Response, Server, Webhook};
use chrono::{DateTime, Duration, FixedOffset, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use synctrail::destination::connectors::{Limits, ShopifyConfig, Token};
use synctrail::ingress::{Secret, SignatureScheme};

/// The token the stand-in accepts.
pub const TOKEN: &str = "shpat_standin00000000000000000000";
/// The secret its webhooks are signed with.
pub const WEBHOOK_SECRET: &str = "shopify-webhook-secret";
/// The shop (and the tenant of its deliveries).
pub const SHOP: &str = "johns-apparel";
/// The product it holds.
pub const PRODUCT: u64 = 788_032_119_674_292_922;
/// The API version it serves.
pub const API_VERSION: &str = "2026-01";
/// The call bucket's size and how many calls it leaks a second.
pub const BUCKET: (f64, f64) = (40.0, 2.0);

/// What the stand-in does with the next request instead of answering it normally.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answers this, changing nothing.
    Answer(Response),
    /// Does what the request asks, then answers with this status (a 5xx after the write).
    AfterWrite(u16),
}

struct State {
    products: BTreeMap<u64, Value>,
    now: DateTime<Utc>,
    level: f64,
    leaked_at: Instant,
    arrivals: Vec<f64>,
    faults: VecDeque<Fault>,
    requests: Vec<Request>,
    writes: Vec<String>,
    webhooks: Vec<Webhook>,
}

/// The running stand-in.
pub struct ShopifyApi {
    state: Arc<Mutex<State>>,
    server: Server,
}

impl ShopifyApi {
    /// Starts the stand-in; its clock starts at `now` (each write ticks it by one second) and its product was last
    /// updated an hour before.
    pub fn start(now: DateTime<Utc>) -> Self {
        let path = fixture_path("webhooks/shopify/products/update.json");
        let mut product: Value = serde_json::from_slice(&std::fs::read(path).expect("the example")).expect("JSON");
        product["updated_at"] = json!(stamp(now - Duration::hours(1)));
        let state = State {
            products: BTreeMap::from([(PRODUCT, product)]),
            now,
            level: 0.0,
            leaked_at: Instant::now(),
            arrivals: Vec::new(),
            faults: VecDeque::new(),
            requests: Vec::new(),
            writes: Vec::new(),
            webhooks: Vec::new(),
        };
        let state = Arc::new(Mutex::new(state));
        let serving = Arc::clone(&state);
        let handler: Handler = Arc::new(move |request| serving.lock().unwrap().answer(request));
        Self { state, server: Server::start(handler) }
    }

    /// The connector's configuration for this stand-in.
    pub fn config(&self) -> ShopifyConfig {
        ShopifyConfig {
            shop: SHOP.to_owned(),
            api_url: self.server.url.parse().expect("a URL"),
            api_version: API_VERSION.to_owned(),
            token: Token::new(TOKEN),
            limits: Limits::default(),
        }
    }

    /// The next request meets `fault`.
    pub fn fault(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }

    /// Fills the call bucket to `level` calls (other clients of the shop used them).
    pub fn fill(&self, level: f64) {
        let mut state = self.state.lock().unwrap();
        state.level = level;
        state.leaked_at = Instant::now();
    }

    /// The bucket's level when each request arrived, before it was counted.
    pub fn arrivals(&self) -> Vec<f64> {
        self.state.lock().unwrap().arrivals.clone()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// Every write that took effect, as `METHOD path`.
    pub fn writes(&self) -> Vec<String> {
        self.state.lock().unwrap().writes.clone()
    }

    /// Product `id` as stored.
    pub fn product(&self, id: u64) -> Value {
        self.state.lock().unwrap().products.get(&id).cloned().unwrap_or(Value::Null)
    }

    /// The webhooks produced since the last call, oldest first.
    pub fn take_webhooks(&self) -> Vec<Webhook> {
        std::mem::take(&mut self.state.lock().unwrap().webhooks)
    }

    /// Someone edits product `id` in the Shopify admin: a write and its webhook.
    pub fn edit_in_admin(&self, id: u64, fields: Value) {
        let fields = fields.as_object().cloned().expect("fields");
        self.state.lock().unwrap().update(id, &fields).expect("an existing product and valid fields");
    }
}

/// The shop's timestamps: its own time zone (UTC−4), whole seconds.
fn stamp(at: DateTime<Utc>) -> String {
    let zone = FixedOffset::west_opt(4 * 3600).expect("an offset");
    at.with_timezone(&zone).to_rfc3339_opts(SecondsFormat::Secs, false)
}

impl State {
    fn answer(&mut self, request: Request) -> Response {
        self.requests.push(request.clone());
        let elapsed = self.leaked_at.elapsed().as_secs_f64();
        self.leaked_at = Instant::now();
        self.level = (self.level - elapsed * BUCKET.1).max(0.0);
        self.arrivals.push(self.level);
        if self.level + 1.0 > BUCKET.0 {
            let body = json!({"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."});
            return Response::json(429, &body).with("Retry-After", "2.0");
        }
        self.level += 1.0;
        let response = match self.faults.pop_front() {
            Some(Fault::Answer(response)) => response,
            Some(Fault::AfterWrite(status)) => {
                let done = self.route(&request);
                assert!(done.status < 300, "the write before the fault must take effect: {done:?}");
                Response::json(status, &json!({"errors": "Internal Server Error"}))
            }
            None => self.route(&request),
        };
        let used = self.level.floor() as u64;
        response.with("X-Shopify-Shop-Api-Call-Limit", format!("{used}/{}", BUCKET.0 as u64))
    }

    fn route(&mut self, request: &Request) -> Response {
        if request.headers.get("x-shopify-access-token").map(String::as_str) != Some(TOKEN) {
            let body =
                json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"});
            return Response::json(401, &body);
        }
        let not_found = Response::json(404, &json!({"errors": "Not Found"}));
        let prefix = format!("/admin/api/{API_VERSION}/products/");
        let Some(id) = request.path.strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(".json")) else {
            return not_found;
        };
        let Some(id) = id.parse::<u64>().ok().filter(|id| self.products.contains_key(id)) else {
            return not_found;
        };
        match request.method.as_str() {
            "GET" => Response::json(200, &json!({"product": rest_product(&self.products[&id])})),
            "PUT" => {
                let Some(fields) = request.body.get("product").and_then(Value::as_object) else {
                    return Response::json(
                        400,
                        &json!({"errors": {"product": "Required parameter missing or invalid"}}),
                    );
                };
                match self.update(id, fields) {
                    Ok(product) => {
                        self.writes.push(request.line());
                        Response::json(200, &json!({"product": rest_product(&product)}))
                    }
                    Err(response) => response,
                }
            }
            _ => not_found,
        }
    }

    fn update(&mut self, id: u64, fields: &Map<String, Value>) -> Result<Value, Response> {
        let mut product = self.products[&id].clone();
        for (field, value) in fields {
            match field.as_str() {
                "title" if value.as_str().is_some_and(|t| t.trim().is_empty()) => {
                    return Err(Response::json(422, &json!({"errors": {"title": ["can't be blank"]}})));
                }
                "tags" => product["tags"] = json!(normalised_tags(value)),
                "id" | "created_at" | "updated_at" | "admin_graphql_api_id" => {}
                other => product[other] = value.clone(),
            }
        }
        self.now += Duration::seconds(1);
        product["updated_at"] = json!(stamp(self.now));
        self.products.insert(id, product.clone());
        self.webhook(&product);
        Ok(product)
    }

    /// Records the `products/update` delivery Shopify would send: the product, signed.
    fn webhook(&mut self, product: &Value) {
        let bytes = serde_json::to_vec(product).expect("JSON");
        let n = self.webhooks.len() + self.writes.len() + 1;
        let signature =
            SignatureScheme::shopify().sign(&Secret::new(WEBHOOK_SECRET.as_bytes()).expect("a secret"), &bytes);
        let headers = [
            ("X-Shopify-Topic", "products/update".to_owned()),
            ("X-Shopify-Hmac-Sha256", signature),
            ("X-Shopify-Shop-Domain", format!("{SHOP}.myshopify.com")),
            ("X-Shopify-API-Version", API_VERSION.to_owned()),
            ("X-Shopify-Webhook-Id", format!("b54557e4-bdd9-4b37-8a5f-{n:012x}")),
            ("X-Shopify-Event-Id", format!("98880550-7158-44d4-b7cd-{n:012x}")),
            ("X-Shopify-Triggered-At", self.now.to_rfc3339_opts(SecondsFormat::Nanos, true)),
            ("Content-Type", "application/json".to_owned()),
        ];
        self.webhooks.push(Webhook { headers: headers.map(|(k, v)| (k.to_owned(), v)).to_vec(), body: bytes });
    }
}

/// Shopify keeps tags trimmed, without repeats, in alphabetical order, joined by `", "`.
fn normalised_tags(value: &Value) -> String {
    let text = match value {
        Value::Array(items) => items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
        other => other.as_str().unwrap_or_default().to_owned(),
    };
    let mut tags: Vec<&str> = text.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
    tags.sort_unstable();
    tags.dedup();
    tags.join(", ")
}

/// A product as the REST API answers for it: the webhook's product without what only webhooks carry.
fn rest_product(product: &Value) -> Value {
    let mut rest = product.clone();
    if let Some(map) = rest.as_object_mut() {
        for field in ["variant_gids", "has_variants_that_requires_components", "media"] {
            map.remove(field);
        }
    }
    rest
}
