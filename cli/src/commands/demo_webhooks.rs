//! The demo's webhook leg: the ingest handler served on a free loopback port over the demo's backend, real GitHub
//! and Shopify payloads (`events/webhooks/`) delivered through an HTTP client, signed with a demo secret, plus one
//! forged delivery. The signed ones join the workload (the run processes them with the rest, and the convergence
//! check covers them); after the run each must be `completed`, and the forged one refused (401) with nothing
//! stored.

use crate::backend::AnyBackend;
use crate::error::CliError;
use crate::serve::client::post;
use crate::serve::{ServeOptions, Server};
use crate::workload::{Delivery, Expected, Final, Role, Workload};
use serde::Serialize;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;
use synctrail::ingress::{Headers, Ingress, IngressConfig, Provider, Secret, SignatureScheme, Verdict};
use synctrail::model::{EventId, Kind, Status};
use synctrail::store::QueueDepth;
use synctrail::{Engine, Settings};
use synctrail_ingest::Ingest;

/// The secret the demo's sources sign with.
const DEMO_SECRET: &[u8] = b"synctrail-demo-webhook-secret";

/// One delivery: source, the provider's headers (without the signature), the body.
pub(crate) struct Fixture {
    pub(crate) source: &'static str,
    pub(crate) headers: &'static [(&'static str, &'static str)],
    pub(crate) body: &'static [u8],
}

const SHOPIFY_HEADERS: &[(&str, &str)] = &[
    ("X-Shopify-Topic", "products/update"),
    ("X-Shopify-Shop-Domain", "johns-apparel.myshopify.com"),
    ("X-Shopify-API-Version", "2026-01"),
    ("X-Shopify-Webhook-Id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
    ("X-Shopify-Event-Id", "98880550-7158-44d4-b7cd-2c97c8a091b5"),
    ("X-Shopify-Triggered-At", "2023-03-29T18:00:27.877041743Z"),
];

/// How many signed deliveries the leg sends.
pub const SIGNED_COUNT: usize = 3;

/// The signed deliveries: two GitHub event types and one Shopify topic, on entities of their own.
pub(crate) const SIGNED: [Fixture; SIGNED_COUNT] = [
    Fixture {
        source: "github",
        headers: &[("X-GitHub-Event", "issues"), ("X-GitHub-Delivery", "demo-issues-opened")],
        body: include_bytes!("../../../events/webhooks/github/issues/opened.json"),
    },
    Fixture {
        source: "github",
        headers: &[("X-GitHub-Event", "issue_comment"), ("X-GitHub-Delivery", "demo-comment-created")],
        body: include_bytes!("../../../events/webhooks/github/issue_comment/created.json"),
    },
    Fixture {
        source: "shopify",
        headers: SHOPIFY_HEADERS,
        body: include_bytes!("../../../events/webhooks/shopify/products/update.json"),
    },
];

/// The forged one: a GitHub delivery whose body was altered after it was signed.
const FORGED: Fixture = Fixture {
    source: "github",
    headers: &[("X-GitHub-Event", "issues"), ("X-GitHub-Delivery", "demo-forged")],
    body: include_bytes!("../../../events/webhooks/github/issues/edited.json"),
};

/// What the leg did and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WebhookReport {
    /// Signed deliveries sent.
    pub signed: usize,
    /// Of those, answered 202 (queued).
    pub accepted: usize,
    /// Of those, `completed` after the run.
    pub completed: usize,
    /// The forged delivery's answer.
    pub forged_status: u16,
    /// Whether anything of the forged delivery was kept (a queue message or a record).
    pub forged_stored: bool,
    /// Every failed check, one line each.
    pub failures: Vec<String>,
}

impl WebhookReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The leg after its deliveries: the events they queued, to check after the run.
pub struct WebhookLeg {
    report: WebhookReport,
    queued: Vec<EventId>,
}

/// Serves the ingest handler on a free loopback port over `backend` and delivers the signed fixtures and the forged
/// one; the signed ones are added to `workload` (lines, event ids, expected final states).
pub async fn deliver(
    backend: &AnyBackend,
    settings: Settings,
    workload: &mut Workload,
) -> Result<WebhookLeg, CliError> {
    let ingress = demo_ingress()?;
    let engine = Arc::new(Engine::new(backend.ports.clone(), settings));
    let options =
        ServeOptions { bind: IpAddr::V4(Ipv4Addr::LOCALHOST), port: 0, read_timeout: Duration::from_secs(10) };
    let server = Server::start(Arc::new(Ingest::new(ingress.clone(), engine)), &options)
        .await
        .map_err(|source| CliError::Listen { addr: (options.bind, 0).into(), source })?;
    let result = deliver_to(&server, &ingress, backend, workload).await;
    server.stop().await;
    result
}

async fn deliver_to(
    server: &Server,
    ingress: &Ingress,
    backend: &AnyBackend,
    workload: &mut Workload,
) -> Result<WebhookLeg, CliError> {
    let addr = server.local_addr();
    let mut leg =
        WebhookLeg { report: WebhookReport { signed: SIGNED.len(), ..WebhookReport::default() }, queued: Vec::new() };
    for fixture in &SIGNED {
        let headers = signed_headers(fixture, fixture.body);
        let Verdict::Mapped(event) = ingress.handle(fixture.source, &as_headers(&headers), fixture.body) else {
            return Err(CliError::InvalidArgument(format!("the demo's {} fixture does not map", fixture.source)));
        };
        let reply = post(addr, &format!("/webhooks/{}", fixture.source), &headers, fixture.body.to_vec()).await?;
        let event_id = event.envelope.event_id.clone();
        if reply.status != 202 {
            leg.report
                .failures
                .push(format!("webhook {event_id}: answered {} {}, expected 202", reply.status, reply.body));
            continue;
        }
        leg.report.accepted += 1;
        let expected = match event.envelope.kind {
            Kind::Delete => Final::Deleted,
            Kind::Create | Kind::Upsert => Final::State(event.envelope.payload.clone()),
        };
        workload.expectations.insert(event.envelope.entity.clone(), Expected::OneOf(vec![expected]));
        workload.deliveries.push(Delivery { line: event.body, role: Role::Original, event_id: event_id.clone() });
        leg.queued.push(event_id);
    }

    let before = depth(backend).await?;
    let mut forged_body = FORGED.body.to_vec();
    let headers = signed_headers(&FORGED, &forged_body);
    if let Some(byte) = forged_body.iter_mut().find(|b| b.is_ascii_lowercase()) {
        *byte = byte.to_ascii_uppercase();
    }
    let reply = post(addr, &format!("/webhooks/{}", FORGED.source), &headers, forged_body.clone()).await?;
    leg.report.forged_status = reply.status;
    let queued = queued_messages(&depth(backend).await?) != queued_messages(&before);
    let recorded = recorded(backend, &EventId::for_rejected(&forged_body)).await?
        || recorded(backend, &forged_event_id()?).await?;
    leg.report.forged_stored = queued || recorded;
    if reply.status != 401 {
        leg.report.failures.push(format!("the forged webhook was answered {}, expected 401", reply.status));
    }
    if leg.report.forged_stored {
        leg.report.failures.push("the forged webhook left something in the queue or the event store".to_owned());
    }
    Ok(leg)
}

impl WebhookLeg {
    /// After the run: every queued webhook event must be `completed`.
    pub async fn check(mut self, backend: &AnyBackend) -> Result<WebhookReport, CliError> {
        for event_id in &self.queued {
            let record = backend
                .ports
                .store
                .get_event(event_id)
                .await
                .map_err(CliError::store(format!("reading webhook event {event_id}")))?;
            match record.map(|r| r.status) {
                Some(Status::Completed) => self.report.completed += 1,
                other => self.report.failures.push(format!(
                    "webhook {event_id}: {}, expected completed",
                    other.map_or_else(|| "not recorded".to_owned(), |s| s.to_string())
                )),
            }
        }
        Ok(self.report)
    }
}

/// `github` and `shopify` under the demo secret.
pub(crate) fn demo_ingress() -> Result<Ingress, CliError> {
    let secret = Secret::new(DEMO_SECRET).ok_or_else(|| CliError::InvalidArgument("empty demo secret".into()))?;
    let config = IngressConfig::default().with_source("github", secret.clone(), Provider::GitHub).with_source(
        "shopify",
        secret,
        Provider::Shopify,
    );
    Ok(Ingress::new(config))
}

/// The fixture's headers with its source's signature of `body` under the demo secret.
pub(crate) fn signed_headers(fixture: &Fixture, body: &[u8]) -> Vec<(String, String)> {
    let scheme = match fixture.source {
        "shopify" => SignatureScheme::shopify(),
        _ => SignatureScheme::github(),
    };
    let signature = Secret::new(DEMO_SECRET).map(|secret| scheme.sign(&secret, body)).unwrap_or_default();
    let mut headers: Vec<(String, String)> =
        fixture.headers.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
    headers.push((scheme.header, signature));
    headers
}

/// The id the forged delivery would have had, had it been accepted.
fn forged_event_id() -> Result<EventId, CliError> {
    let delivery = FORGED.headers.iter().find(|(name, _)| *name == "X-GitHub-Delivery").map_or("", |(_, v)| v);
    EventId::parse(&format!("github:{delivery}")).map_err(|e| CliError::InvalidArgument(e.to_string()))
}

async fn depth(backend: &AnyBackend) -> Result<QueueDepth, CliError> {
    backend.ports.queue.depth().await.map_err(CliError::store("measuring the queue"))
}

/// Messages in the queue, whatever their state (SQS's figures are approximate, but nothing runs meanwhile).
fn queued_messages(depth: &QueueDepth) -> u64 {
    depth.visible + depth.in_flight + depth.delayed
}

async fn recorded(backend: &AnyBackend, event_id: &EventId) -> Result<bool, CliError> {
    let record = backend.ports.store.get_event(event_id).await.map_err(CliError::store("reading an event"))?;
    Ok(record.is_some())
}

pub(crate) fn as_headers(pairs: &[(String, String)]) -> Headers {
    pairs.iter().map(|(name, value)| (name, value)).collect()
}
