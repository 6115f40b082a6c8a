//! The webhook front door over real HTTP on 127.0.0.1: `synctrail serve` (its `start`, on a temporary embedded home)
//! and the ingest handler on a real server. Signed fixtures are queued once and processed to completion; forged,
//! wrongly keyed, truncated, oversized and slow deliveries are refused with nothing stored; a replay is one event;
//! an unmappable signed body is recorded `rejected` with its raw body archived; a queue that fails means 503.
//! Secrets named by their ARN are read from Secrets Manager (moto).

use crate::support::hooked_queue::{HookedQueue, QueueHooks};
use crate::support::{fixture_path, temp_home};
use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use synctrail::ingress::{Headers, Ingress, IngressConfig, Provider, Secret, SignatureScheme, Verdict};
use synctrail::model::{EventId, Status};
use synctrail::store::{OutgoingMessage, Queue, StoreError};
use synctrail::{Engine, Settings};
use synctrail_cli::args::{AwsArgs, BackendKind, ServeArgs};
use synctrail_cli::backend::{AnyBackend, BackendExt};
use synctrail_cli::commands::serve::{start, Serving};
use synctrail_cli::commands::Context;
use synctrail_cli::runtime::RunOptions;
use synctrail_cli::serve::client::{post, Reply};
use synctrail_cli::serve::{ServeOptions, Server};
use synctrail_ingest::Ingest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "serve-test-secret";
const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";
/// How long a raw exchange may take before the test gives up on it (a bound, not an expectation).
const BOUND: std::time::Duration = std::time::Duration::from_secs(30);
/// 30 MB.
const HUGE: usize = 30 * 1024 * 1024;

/// `synctrail serve` on a fresh embedded home, with `github` and `shopify` under [`SECRET`].
struct Served {
    serving: Serving,
    _home: tempfile::TempDir,
}

impl Served {
    async fn start(read_timeout: f64) -> Self {
        let home = temp_home();
        let ctx = Context {
            backend: BackendKind::Embedded,
            home: home.path().to_owned(),
            aws: AwsArgs::default(),
            destination_args: Default::default(),
            json: false,
            destination: None,
            secrets: Default::default(),
        };
        let args = ServeArgs { port: 0, bind: IpAddr::V4(Ipv4Addr::LOCALHOST), read_timeout, max_duration: None };
        let vars = ["SYNCTRAIL_WEBHOOK_SECRET_GITHUB", "SYNCTRAIL_WEBHOOK_SECRET_SHOPIFY"]
            .map(|name| (name.to_owned(), SECRET.to_owned()))
            .to_vec();
        let serving = start(&ctx, &args, vars).await.expect("serve starts");
        Self { serving, _home: home }
    }

    fn addr(&self) -> SocketAddr {
        self.serving.server.local_addr()
    }

    fn backend(&self) -> &AnyBackend {
        &self.serving.backend
    }

    async fn post(&self, source: &str, headers: &[(String, String)], body: &[u8]) -> Reply {
        post(self.addr(), &format!("/webhooks/{source}"), headers, body.to_vec()).await.expect("an answer")
    }

    /// Messages in the queue and events recorded.
    async fn stored(&self) -> (u64, u64) {
        let ports = &self.backend().ports;
        let depth = ports.queue.depth().await.expect("depth");
        let events = ports.store.count_by_status().await.expect("counts").values().sum();
        (depth.visible + depth.in_flight + depth.delayed, events)
    }

    /// Whether `bytes` were archived as a payload.
    async fn archived(&self, bytes: &[u8]) -> bool {
        let (_, embedded) = self.backend().embedded().expect("the embedded backend");
        let sha = hex::encode(Sha256::digest(bytes));
        let key = format!("payloads/{}/{sha}.zst", &sha[..2]);
        embedded.payloads.read_object(&key).await.expect("read").is_some()
    }

    /// Processes the queue with the local runtime until it is quiescent.
    async fn process(&self) {
        let options =
            RunOptions { workers: 1, max_duration: std::time::Duration::from_secs(60), ..RunOptions::default() };
        let stats =
            synctrail_cli::commands::run::run_with_progress(self.backend(), Settings::default(), &options, true)
                .await
                .expect("the run");
        assert!(stats.drained, "{stats:?}");
    }

    async fn status_of(&self, event_id: &EventId) -> Option<Status> {
        self.backend().ports.store.get_event(event_id).await.expect("get").map(|r| r.status)
    }
}

fn webhook(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(&format!("webhooks/{name}"))).expect("a webhook fixture")
}

fn sign(scheme: &SignatureScheme, key: &str, body: &[u8]) -> String {
    scheme.sign(&Secret::new(key.as_bytes()).expect("a secret"), body)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// GitHub's headers for `event` under `delivery`, signing `body` with `key`.
fn github(event: &str, delivery: &str, body: &[u8], key: &str) -> Vec<(String, String)> {
    let signature = sign(&SignatureScheme::github(), key, body);
    pairs(&[("X-GitHub-Event", event), ("X-GitHub-Delivery", delivery), ("X-Hub-Signature-256", &signature)])
}

/// Shopify's headers for `topic`, signing `body` with `key`.
fn shopify(topic: &str, body: &[u8], key: &str) -> Vec<(String, String)> {
    let signature = sign(&SignatureScheme::shopify(), key, body);
    pairs(&[
        ("X-Shopify-Topic", topic),
        ("X-Shopify-Hmac-Sha256", &signature),
        ("X-Shopify-Shop-Domain", "johns-apparel.myshopify.com"),
        ("X-Shopify-Webhook-Id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
        ("X-Shopify-Event-Id", &format!("event-{}", topic.replace('/', "-"))),
        ("X-Shopify-Triggered-At", "2023-03-29T18:00:27.877041743Z"),
    ])
}

fn event_id_in(reply: &Reply) -> EventId {
    let body: Value = serde_json::from_str(&reply.body).expect("a JSON answer");
    EventId::parse(body["event_id"].as_str().expect("an event id")).expect("a valid id")
}

/// Sends `head` and then `body` on a fresh connection (the body on a task of its own, its write errors ignored:
/// the server may refuse it), and reads until the server closes the connection or [`BOUND`] passes. The answer's
/// status, `None` when the connection ended without one; `Err` when it did not end within the bound.
async fn raw(addr: SocketAddr, head: String, body: Vec<u8>) -> Result<Option<u16>, &'static str> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.expect("write the head");
    let sender = tokio::spawn(async move {
        for chunk in body.chunks(64 * 1024) {
            if writer.write_all(chunk).await.is_err() {
                break;
            }
        }
        writer // kept open until the test is done reading
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buffer = [0_u8; 4096];
        while let Ok(n) = reader.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
        }
    })
    .await;
    sender.abort();
    read.map_err(|_| "the connection was still open after the bound")?;
    let text = String::from_utf8_lossy(&answer);
    Ok(text.strip_prefix("HTTP/1.1 ").and_then(|rest| rest.get(..3)).and_then(|code| code.parse().ok()))
}

/// A request head for `path` with `headers` (and `Connection: close`, so the server ends the exchange).
fn head(path: &str, headers: &[(String, String)]) -> String {
    let mut text = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text + "\r\n"
}

// ---------------------------------------------------------------------------------------------------------------
// Accepted
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn each_source_s_signed_fixtures_are_queued_once_and_completed_by_the_local_runtime() {
    let served = Served::start(10.0).await;
    let deliveries = [
        ("github", "issues/opened", "issues"),
        ("github", "pull_request/opened", "pull_request"),
        ("github", "issue_comment/created", "issue_comment"),
        ("shopify", "products/create", "products/create"),
        ("shopify", "inventory_levels/update", "inventory_levels/update"),
    ];
    let mut accepted = Vec::new();
    for (n, (source, fixture, event)) in deliveries.into_iter().enumerate() {
        let body = webhook(&format!("{source}/{fixture}.json"));
        let headers = match source {
            "github" => github(event, &format!("delivery-{n}"), &body, SECRET),
            _ => shopify(event, &body, SECRET),
        };
        let reply = served.post(source, &headers, &body).await;
        assert_eq!(reply.status, 202, "{fixture}: {}", reply.body);
        let answer: Value = serde_json::from_str(&reply.body).expect("JSON");
        assert_eq!(answer["status"], "queued");
        accepted.push(event_id_in(&reply));
    }
    assert_eq!(served.stored().await, (5, 0), "one queue message each, nothing recorded before processing");

    served.process().await;

    for event_id in &accepted {
        assert_eq!(served.status_of(event_id).await, Some(Status::Completed), "{event_id}");
    }
    let records = served.backend().mirror_view("test").expect("the mirror").list(None, 0).await.expect("records");
    assert_eq!(records.len(), 5, "one destination record per entity");
}

#[tokio::test]
async fn a_replayed_delivery_is_one_event_redelivered_with_one_effect() {
    let served = Served::start(10.0).await;
    let body = webhook("github/issues/edited.json");
    let headers = github("issues", DELIVERY, &body, SECRET);
    let first = served.post("github", &headers, &body).await;
    served.process().await;
    // GitHub's "Redeliver": the same bytes, the same X-GitHub-Delivery. It is queued again (the ingress keeps no
    // state); the engine knows the event.
    let replay = served.post("github", &headers, &body).await;
    assert_eq!((first.status, replay.status), (202, 202));
    assert_eq!(event_id_in(&first), event_id_in(&replay));
    served.process().await;

    let event_id = event_id_in(&first);
    let record = served.backend().ports.store.get_event(&event_id).await.expect("get").expect("recorded");
    assert_eq!((record.status, record.redelivered), (Status::Completed, 1));
    assert_eq!(served.stored().await.1, 1, "one event");
    let effects = served.backend().mirror_view("test").expect("the mirror").effects().await.expect("effects");
    assert_eq!(effects.iter().filter(|(id, _)| *id == event_id).count(), 1, "applied once");
}

#[tokio::test]
async fn an_unmappable_signed_body_is_answered_202_and_recorded_rejected_with_its_raw_body_archived() {
    let served = Served::start(10.0).await;
    let mut issue: Value = serde_json::from_slice(&webhook("github/issues/edited.json")).expect("JSON");
    issue["issue"].as_object_mut().expect("an issue").remove("updated_at");
    let body = serde_json::to_vec(&issue).expect("JSON");
    let headers = github("issues", DELIVERY, &body, SECRET);

    let reply = served.post("github", &headers, &body).await;

    assert_eq!(reply.status, 202, "{}", reply.body);
    let answer: Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(answer["status"], "rejected");
    assert!(answer["reason"].as_str().is_some_and(|r| r.contains("/issue/updated_at")), "{answer}");
    let event_id = event_id_in(&reply);
    let record = served.backend().ports.store.get_event(&event_id).await.expect("get").expect("recorded");
    assert_eq!(record.status, Status::Rejected);
    let error = record.error.as_ref().expect("the reason");
    assert_eq!(error.message, "webhook from github: field /issue/updated_at is missing or not a string");
    assert_eq!(error.field.as_deref(), Some("/issue/updated_at"));
    assert_eq!(served.backend().ports.payloads.get(&record.payload).await.expect("archived"), body);
    assert_eq!(served.stored().await, (0, 1), "recorded, not queued");

    // A redelivery of the same body lands on the same record.
    let again = served.post("github", &headers, &body).await;
    assert_eq!((again.status, event_id_in(&again)), (202, event_id.clone()));
    let record = served.backend().ports.store.get_event(&event_id).await.expect("get").expect("recorded");
    assert_eq!((record.status, record.redelivered), (Status::Rejected, 1));
    assert_eq!(served.stored().await, (0, 1));
}

#[tokio::test]
async fn a_ping_is_answered_200_and_nothing_is_kept() {
    let served = Served::start(10.0).await;
    let body = webhook("github/ping.json");
    let reply = served.post("github", &github("ping", DELIVERY, &body, SECRET), &body).await;
    assert_eq!((reply.status, reply.body.as_str()), (200, r#"{"status":"ignored"}"#));
    assert_eq!(served.stored().await, (0, 0));
}

// ---------------------------------------------------------------------------------------------------------------
// Refused: nothing stored
// ---------------------------------------------------------------------------------------------------------------

/// Asserts nothing of `body` is in the queue, the event store or the payload archive.
async fn assert_nothing_stored(served: &Served, body: &[u8]) {
    assert_eq!(served.stored().await, (0, 0), "no queue message, no event");
    assert!(!served.archived(body).await, "no payload archived");
}

#[tokio::test]
async fn a_forged_signature_is_refused_401_with_no_detail_and_nothing_is_stored() {
    let served = Served::start(10.0).await;
    let body = webhook("github/issues/edited.json");
    let headers = github("issues", DELIVERY, &body, SECRET);
    let mut forged = body.clone();
    let at = forged.windows(5).position(|w| w == b"Spell").expect("the issue's title");
    forged[at] = b'X';

    let reply = served.post("github", &headers, &forged).await;

    assert_eq!((reply.status, reply.body.as_str()), (401, r#"{"error":"unauthorized"}"#));
    assert_nothing_stored(&served, &forged).await;
}

#[tokio::test]
async fn a_signature_made_with_another_secret_is_refused_401_and_nothing_is_stored() {
    let served = Served::start(10.0).await;
    let body = webhook("github/issues/opened.json");
    let reply = served.post("github", &github("issues", DELIVERY, &body, "not the secret"), &body).await;
    assert_eq!(reply.status, 401);
    let body = webhook("shopify/products/update.json");
    let reply = served.post("shopify", &shopify("products/update", &body, "not the secret"), &body).await;
    assert_eq!(reply.status, 401);
    assert_nothing_stored(&served, &body).await;
}

#[tokio::test]
async fn a_truncated_body_is_refused_401_and_nothing_is_stored() {
    let served = Served::start(10.0).await;
    let body = webhook("github/issues/opened.json");
    let headers = github("issues", DELIVERY, &body, SECRET);
    let truncated = &body[..body.len() / 2];

    let reply = served.post("github", &headers, truncated).await;

    assert_eq!(reply.status, 401);
    assert_nothing_stored(&served, truncated).await;
}

#[tokio::test]
async fn an_unknown_source_is_404_like_any_other_path_and_other_methods_405() {
    let served = Served::start(10.0).await;
    let body = webhook("github/issues/opened.json");
    let headers = github("issues", DELIVERY, &body, SECRET);
    let unknown = served.post("gitlab", &headers, &body).await;
    let elsewhere = post(served.addr(), "/hooks/github", &headers, body.clone()).await.expect("an answer");
    assert_eq!((unknown.status, elsewhere.status), (404, 404));
    assert_eq!(unknown.body, elsewhere.body, "an unknown source is told apart from nothing");
    let get = "GET /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".to_owned();
    assert_eq!(raw(served.addr(), get, Vec::new()).await, Ok(Some(405)));
    assert_nothing_stored(&served, &body).await;
}

#[tokio::test]
async fn a_30_mb_body_is_refused_413_without_being_read_or_stored() {
    let served = Served::start(10.0).await;
    let body = vec![b'x'; HUGE];
    let headers = github("issues", DELIVERY, &body, SECRET);
    let length = (String::from("Content-Length"), HUGE.to_string());

    // A client that waits for `100 Continue` is refused before it sends a byte of the body.
    let mut expecting = headers.clone();
    expecting.extend([length.clone(), ("Expect".into(), "100-continue".into())]);
    assert_eq!(raw(served.addr(), head("/webhooks/github", &expecting), Vec::new()).await, Ok(Some(413)));

    // A client that sends it anyway, announced by its length or in chunks, reads the refusal.
    let mut announced = headers.clone();
    announced.push(length);
    assert_eq!(raw(served.addr(), head("/webhooks/github", &announced), body.clone()).await, Ok(Some(413)));
    let mut chunked_headers = headers.clone();
    chunked_headers.push(("Transfer-Encoding".into(), "chunked".into()));
    let mut chunked = Vec::with_capacity(HUGE + 8192);
    for chunk in body.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw(served.addr(), head("/webhooks/github", &chunked_headers), chunked.clone()).await, Ok(Some(413)));
    // Refused as soon as it passes the limit, not once it is all there: here the rest never comes.
    let started = chunked[..2 * 1024 * 1024 + 64 * 1024].to_vec();
    assert_eq!(raw(served.addr(), head("/webhooks/github", &chunked_headers), started).await, Ok(Some(413)));

    assert_nothing_stored(&served, &body).await;
    let fine = webhook("github/issues/opened.json");
    assert_eq!(served.post("github", &github("issues", DELIVERY, &fine, SECRET), &fine).await.status, 202);
}

#[tokio::test]
async fn a_client_that_sends_slowly_is_cut_off() {
    let served = Served::start(0.5).await;
    let body = webhook("github/issues/opened.json");
    let mut headers = github("issues", DELIVERY, &body, SECRET);
    headers.push(("Content-Length".into(), body.len().to_string()));

    // The head, then only part of the body: 408 once the read timeout passes.
    let stream = tokio::net::TcpStream::connect(served.addr()).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head("/webhooks/github", &headers).as_bytes()).await.expect("head");
    writer.write_all(&body[..100]).await.expect("a start of the body");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(BOUND, reader.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server ended the exchange");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"), "{}", String::from_utf8_lossy(&answer));
    drop(writer);

    // Half a head: the connection is closed.
    let half = "POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\n".to_owned();
    let stream = tokio::net::TcpStream::connect(served.addr()).await.expect("connect");
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(half.as_bytes()).await.expect("half a head");
    let read = tokio::time::timeout(BOUND, reader.read_to_end(&mut Vec::new())).await;
    assert!(read.is_ok(), "the server closed the connection");
    assert_nothing_stored(&served, &body).await;
}

#[tokio::test]
async fn serve_listens_on_the_loopback_address_by_default() {
    use clap::Parser;
    let cli = synctrail_cli::args::Cli::try_parse_from(["synctrail", "serve"]).expect("valid arguments");
    let synctrail_cli::args::Command::Serve(args) = cli.command else { panic!("not serve") };
    assert_eq!((args.bind, args.port, args.read_timeout), (IpAddr::V4(Ipv4Addr::LOCALHOST), 8080, 10.0));
}

#[tokio::test]
async fn a_stopped_server_refuses_new_connections() {
    let served = Served::start(10.0).await;
    let addr = served.addr();
    let Served { serving, _home } = served;
    serving.server.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "nothing listens any more");
}

// ---------------------------------------------------------------------------------------------------------------
// The queue fails: 503, the sender retries
// ---------------------------------------------------------------------------------------------------------------

/// Sends that fail (or never answer); everything else goes to the real queue.
struct BrokenSends {
    hangs: bool,
}

#[async_trait]
impl QueueHooks for BrokenSends {
    async fn send(&self, _: &dyn Queue, _: Vec<OutgoingMessage>) -> Result<Vec<String>, StoreError> {
        if self.hangs {
            std::future::pending::<()>().await;
        }
        Err(StoreError::Throttled("the queue is down".into()))
    }
    async fn send_to(&self, _: &dyn Queue, _: &str, _: Vec<OutgoingMessage>) -> Result<Vec<String>, StoreError> {
        Err(StoreError::Throttled("the queue is down".into()))
    }
}

/// The ingest handler on a real server over an embedded backend whose queue is broken.
async fn broken_queue_server(home: &std::path::Path, hangs: bool) -> (Server, AnyBackend) {
    let config = synctrail::config::Config::embedded(home);
    let backend = synctrail::compose::compose(&config, Arc::new(synctrail::SystemClock), None).await.expect("open");
    let mut ports = backend.ports.clone();
    ports.queue = Arc::new(HookedQueue { inner: Arc::clone(&ports.queue), hooks: BrokenSends { hangs } });
    let secret = Secret::new(SECRET.as_bytes()).expect("a secret");
    let ingress = Ingress::new(IngressConfig::default().with_source("github", secret, Provider::GitHub));
    let ingest = Ingest::new(ingress, Arc::new(Engine::new(ports, Settings::default())))
        .with_deadline(std::time::Duration::from_millis(200));
    let options = ServeOptions {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 0,
        read_timeout: std::time::Duration::from_secs(10),
    };
    (Server::start(Arc::new(ingest), &options).await.expect("listen"), backend)
}

#[tokio::test]
async fn a_queue_that_fails_or_does_not_answer_in_time_means_503_so_the_sender_retries() {
    for hangs in [false, true] {
        let home = temp_home();
        let (server, backend) = broken_queue_server(home.path(), hangs).await;
        let body = webhook("github/issues/opened.json");
        let headers = github("issues", DELIVERY, &body, SECRET);
        let mut with_length = headers.clone();
        with_length.push(("Content-Length".into(), body.len().to_string()));

        let reply = post(server.local_addr(), "/webhooks/github", &headers, body.clone()).await.expect("an answer");
        assert_eq!(reply.status, 503, "hangs: {hangs}");
        let head = head("/webhooks/github", &with_length);
        let stream = tokio::net::TcpStream::connect(server.local_addr()).await.expect("connect");
        let (mut reader, mut writer) = stream.into_split();
        writer.write_all(head.as_bytes()).await.expect("head");
        writer.write_all(&body).await.expect("body");
        let mut answer = Vec::new();
        tokio::time::timeout(BOUND, reader.read_to_end(&mut answer)).await.expect("bounded").expect("read");
        let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 503") && answer.contains("retry-after: 1"), "{answer}");
        let events: u64 = backend.ports.store.count_by_status().await.expect("counts").values().sum();
        assert_eq!(events, 0, "nothing recorded");
        server.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Secrets from Secrets Manager (moto)
// ---------------------------------------------------------------------------------------------------------------

/// The template's default: both webhook secrets' ARN parameters empty, passed through as blank variables.
#[tokio::test]
async fn blank_secret_references_alone_configure_no_source_and_read_no_secret() {
    use synctrail_ingest::ingress_from_vars;
    let vars = pairs(&[
        ("SYNCTRAIL_WEBHOOK_SECRET_GITHUB_ARN", ""),
        ("SYNCTRAIL_WEBHOOK_SECRET_SHOPIFY_ARN", " "),
        ("SYNCTRAIL_WEBHOOK_MAX_BODY_BYTES", "1048576"),
    ]);
    // No endpoint that answers: a client made and asked anything would fail.
    let ingress = ingress_from_vars(vars, Some("http://127.0.0.1:9"), Some("us-east-1")).await.expect("configured");
    assert!(ingress.config().sources.is_empty(), "{:?}", ingress.config().sources.keys().collect::<Vec<_>>());
    let body = webhook("github/issues/opened.json");
    let signed: Headers = github("issues", DELIVERY, &body, SECRET).into_iter().collect();
    assert!(matches!(ingress.handle("github", &signed, &body), Verdict::UnknownSource));

    let vars = pairs(&[("SYNCTRAIL_WEBHOOK_SECRET_GITHUB_ARN", ""), ("SYNCTRAIL_WEBHOOK_SECRET_SHOPIFY", SECRET)]);
    let ingress = ingress_from_vars(vars, Some("http://127.0.0.1:9"), Some("us-east-1")).await.expect("configured");
    assert_eq!(ingress.config().sources.keys().collect::<Vec<_>>(), ["shopify"], "a blank reference is no source");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_a_webhook_secret_named_by_its_arn_is_read_from_secrets_manager() {
    use synctrail::secrets::SecretsManager;
    use synctrail_ingest::ingress_from_vars;
    let endpoint = crate::conformance::aws::endpoint();
    let manager = SecretsManager::connect(Some(&endpoint), Some("us-east-1")).await;
    let name = format!("synctrail-test/github-{}", synctrail_cli::commands::random_suffix());
    let created = manager.client().create_secret().name(&name).secret_string(SECRET).send().await.expect("create");
    let arn = created.arn.expect("an ARN");

    let vars = pairs(&[("SYNCTRAIL_WEBHOOK_SECRET_GITHUB_ARN", &arn), ("SYNCTRAIL_WEBHOOK_SECRET_SHOPIFY_ARN", "")]);
    let ingress = ingress_from_vars(vars, Some(&endpoint), Some("us-east-1")).await.expect("resolved");

    assert_eq!(ingress.config().sources.keys().collect::<Vec<_>>(), ["github"], "a blank reference is no source");
    let body = webhook("github/issues/opened.json");
    let signed: Headers = github("issues", DELIVERY, &body, SECRET).into_iter().collect();
    assert!(matches!(ingress.handle("github", &signed, &body), Verdict::Mapped(_)));
    let other: Headers = github("issues", DELIVERY, &body, "not the secret").into_iter().collect();
    assert!(matches!(ingress.handle("github", &other, &body), Verdict::Unauthenticated(_)));

    let missing = format!("{arn}-gone");
    let vars = pairs(&[("SYNCTRAIL_WEBHOOK_SECRET_GITHUB_ARN", &missing)]);
    let error = ingress_from_vars(vars, Some(&endpoint), Some("us-east-1")).await.expect_err("no such secret");
    let text = error.to_string();
    assert!(text.contains("SYNCTRAIL_WEBHOOK_SECRET_GITHUB") && text.contains(&missing), "{text}");
    assert!(text.contains("secretsmanager:GetSecretValue"), "{text}");
}

/// The CLI reads a secret named by reference as a function does at a cold start (`synctrail --destination http …`
/// with `SYNCTRAIL_DESTINATION_SECRET_ARN`), and refuses a reference it can't read or one set beside its secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_the_cli_reads_a_destination_secret_named_by_its_arn_from_secrets_manager() {
    use clap::Parser;
    use synctrail::config::DestinationConfig;
    use synctrail::secrets::SecretsManager;
    let endpoint = crate::conformance::aws::endpoint();
    let manager = SecretsManager::connect(Some(&endpoint), Some("us-east-1")).await;
    let name = format!("synctrail-test/destination-{}", synctrail_cli::commands::random_suffix());
    let created = manager.client().create_secret().name(&name).secret_string(SECRET).send().await.expect("create");
    let arn = created.arn.expect("an ARN");
    let home = temp_home();
    let args = [
        "synctrail",
        "--home",
        home.path().to_str().expect("UTF-8"),
        "--endpoint-url",
        &endpoint,
        "--destination",
        "http",
        "--destination-url",
        "http://127.0.0.1:9/changes",
        "stats",
    ];
    let cli = synctrail_cli::args::Cli::try_parse_from(args).expect("valid arguments");
    let signed = |ctx: &Context| match ctx.config().expect("a configuration").destination {
        DestinationConfig::Http(http) => http.secret.is_some(),
        DestinationConfig::Mirror => panic!("the HTTP destination was asked for"),
    };
    assert!(!signed(&Context::of(&cli)), "nothing named: unsigned");

    let reference = pairs(&[("SYNCTRAIL_DESTINATION_SECRET_ARN", &arn), ("SYNCTRAIL_WEBHOOK_SECRET_GITHUB_ARN", "")]);
    let ctx = Context::of(&cli).with_secrets_read(reference).await.expect("the secret read");
    assert!(signed(&ctx), "requests are signed with the referenced secret");
    assert_eq!(ctx.secrets.get("SYNCTRAIL_DESTINATION_SECRET").map(String::as_str), Some(SECRET));

    let missing = pairs(&[("SYNCTRAIL_DESTINATION_SECRET_ARN", &format!("{arn}-gone"))]);
    let error = Context::of(&cli).with_secrets_read(missing).await.err().expect("no such secret");
    assert!(error.to_string().contains("SYNCTRAIL_DESTINATION_SECRET"), "{error}");
    assert_eq!(error.exit_code(), 2, "a configuration to fix");
    let both =
        pairs(&[("SYNCTRAIL_DESTINATION_SECRET_ARN", &arn), ("SYNCTRAIL_DESTINATION_SECRET", "plain-secret-0123")]);
    let error = Context::of(&cli).with_secrets_read(both).await.err().expect("both set");
    assert!(error.to_string().contains("both set"), "{error}");
}
