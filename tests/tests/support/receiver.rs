//! A receiver of the HTTP destination for the tests: a small HTTP/1.1 server on 127.0.0.1 (keep-alive,
//! `Content-Length` bodies) that checks the signature, stores each change through a destination (the embedded
//! mirror, with its rules) and answers as `docs/destination-protocol.md` says; a `GET ?entity=<key>` reads the
//! entity back through the same destination. Faults are scripted per request:
//! a fixed answer, a 500 after storing, a hang, a reset connection.

use chrono::Duration;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use synctrail::destination::http::read::{WireRecord, ENTITY_PARAMETER};
use synctrail::destination::http::signature::{verify, SIGNATURE_HEADER};
use synctrail::destination::http::{HttpDestination, HttpDestinationConfig, Secret, WireChange};
use synctrail::destination::{ApplyOutcome, Change, Destination, DestinationError};
use synctrail::model::{ContentHash, EntityKey, EventId};
use synctrail::Clock;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How long a hanging answer holds its connection at most (the client gives up long before).
const HANG: std::time::Duration = std::time::Duration::from_secs(60);
/// The signature's tolerance: a request signed further from the receiver's clock is a replay.
pub const TOLERANCE_SECONDS: i64 = 300;

/// What the receiver does with one request instead of storing and answering.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answers with this status, headers and body, storing nothing.
    Answer {
        /// The status code.
        status: u16,
        /// Extra headers.
        headers: Vec<(&'static str, String)>,
        /// The body.
        body: String,
    },
    /// Stores the change, then answers with this status anyway (a 500 after the write landed).
    StoreThen(u16),
    /// Waits this long (real time), then stores and answers as usual.
    Slow(std::time::Duration),
    /// Never answers: holds the connection (at most a minute).
    Hang,
    /// Resets the connection (TCP RST) without answering.
    Reset,
}

impl Fault {
    /// A fixed answer without extra headers.
    pub fn answer(status: u16, body: &str) -> Self {
        Self::Answer { status, headers: Vec::new(), body: body.to_owned() }
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request line.
    pub request_line: String,
    /// Headers, names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The body's bytes, as signed.
    pub raw: Vec<u8>,
    /// The body as JSON (`null` when it is not JSON).
    pub body: Value,
}

struct State {
    store: Arc<dyn Destination>,
    clock: Arc<dyn Clock>,
    secret: Option<Secret>,
    faults: Mutex<VecDeque<Fault>>,
    seen: Mutex<Vec<Seen>>,
    /// Requests being handled now, and the most at once so far.
    active: Mutex<(usize, usize)>,
}

/// The running receiver; stops accepting when dropped.
pub struct Receiver {
    /// Where it listens: `http://127.0.0.1:<port>/changes`.
    pub url: String,
    state: Arc<State>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Receiver {
    /// Listens on a free loopback port (inside a Tokio runtime); stores through `store`; when `secret` is given,
    /// refuses requests whose signature does not verify against it on `clock`.
    pub fn start(store: Arc<dyn Destination>, clock: Arc<dyn Clock>, secret: Option<&[u8]>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let url = format!("http://{}/changes", listener.local_addr().expect("local address"));
        let listener = TcpListener::from_std(listener).expect("a Tokio listener");
        let state = Arc::new(State {
            store,
            clock,
            secret: secret.map(Secret::new),
            faults: Mutex::new(VecDeque::new()),
            seen: Mutex::new(Vec::new()),
            active: Mutex::new((0, 0)),
        });
        let serving = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&serving)));
            }
        });
        Self { url, state, accept }
    }

    /// The next request meets `fault`.
    pub fn fault(&self, fault: Fault) {
        self.state.faults.lock().unwrap().push_back(fault);
    }

    /// The most requests it handled at once so far.
    pub fn most_at_once(&self) -> usize {
        self.state.active.lock().unwrap().1
    }

    /// Every request so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The configuration of a destination delivering here (defaults otherwise).
    pub fn config(&self) -> HttpDestinationConfig {
        HttpDestinationConfig::new(&self.url).expect("a valid loopback URL")
    }

    /// A destination delivering here with `config`, on `clock`.
    pub fn destination(&self, config: HttpDestinationConfig, clock: Arc<dyn Clock>) -> HttpDestination {
        HttpDestination::new(config, clock).expect("an http destination")
    }
}

/// Serves one connection: requests one after another until the client closes it or a fault ends it.
async fn serve(stream: TcpStream, state: Arc<State>) {
    let mut stream = BufReader::new(stream);
    while let Some(seen) = read_request(&mut stream).await {
        state.seen.lock().unwrap().push(seen.clone());
        let fault = state.faults.lock().unwrap().pop_front();
        let answer = state.answer(fault, &seen, &mut stream).await;
        let Some((status, headers, body)) = answer else {
            return;
        };
        let mut head = format!("HTTP/1.1 {status} {}\r\ncontent-length: {}\r\n", reason(status), body.len());
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("content-type: application/json\r\n\r\n");
        let stream = stream.get_mut();
        if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(body.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// An answer: status, extra headers, body.
type Answer = (u16, Vec<(&'static str, String)>, String);

impl State {
    /// What to answer to `seen` meeting `fault` (counted as one request in flight); `None`: close the connection.
    async fn answer(&self, fault: Option<Fault>, seen: &Seen, stream: &mut BufReader<TcpStream>) -> Option<Answer> {
        {
            let mut active = self.active.lock().unwrap();
            active.0 += 1;
            active.1 = active.1.max(active.0);
        }
        let answer = self.answer_inner(fault, seen, stream).await;
        self.active.lock().unwrap().0 -= 1;
        answer
    }

    async fn answer_inner(
        &self,
        fault: Option<Fault>,
        seen: &Seen,
        stream: &mut BufReader<TcpStream>,
    ) -> Option<Answer> {
        Some(match fault {
            Some(Fault::Hang) => {
                tokio::time::sleep(HANG).await;
                return None;
            }
            Some(Fault::Reset) => {
                let _ = stream.get_ref().set_zero_linger();
                return None;
            }
            Some(Fault::Answer { status, headers, body }) => (status, headers, body),
            Some(Fault::StoreThen(status)) => {
                let _ = self.handle(seen).await;
                (status, Vec::new(), "stored, then failed".to_owned())
            }
            Some(Fault::Slow(wait)) => {
                tokio::time::sleep(wait).await;
                let (status, body) = self.handle(seen).await;
                (status, Vec::new(), body)
            }
            None => {
                let (status, body) = self.handle(seen).await;
                (status, Vec::new(), body)
            }
        })
    }
}

/// Reads one request (request line, headers, `Content-Length` body); `None` at the end of the connection.
pub async fn read_request(stream: &mut BufReader<TcpStream>) -> Option<Seen> {
    let mut request_line = String::new();
    if stream.read_line(&mut request_line).await.ok()? == 0 {
        return None;
    }
    let mut headers = BTreeMap::new();
    for _ in 0..100 {
        let mut line = String::new();
        stream.read_line(&mut line).await.ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length.min(16 * 1024 * 1024)];
    stream.read_exact(&mut body).await.ok()?;
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Some(Seen { request_line: request_line.trim_end().to_owned(), headers, raw: body, body: json })
}

impl State {
    /// Checks the signature, stores the change through the rules and answers as the protocol says.
    async fn handle(&self, seen: &Seen) -> (u16, String) {
        if seen.request_line.starts_with("GET ") {
            return self.read(seen).await;
        }
        if let Some(secret) = &self.secret {
            let header = seen.headers.get(SIGNATURE_HEADER).map(String::as_str).unwrap_or_default();
            let tolerance = Duration::seconds(TOLERANCE_SECONDS);
            if let Err(e) = verify(secret, header, &seen.raw, self.clock.now(), tolerance) {
                return (401, json!({ "error": e.to_string() }).to_string());
            }
        }
        let wire: WireChange<'_> = match serde_json::from_slice(&seen.raw) {
            Ok(wire) => wire,
            Err(e) => return (400, json!({ "error": format!("not a change: {e}") }).to_string()),
        };
        let (Ok(event_id), Ok(entity), Some(order), Ok(content_hash)) = (
            EventId::parse(&wire.event_id),
            EntityKey::new(
                &wire.entity.tenant,
                &wire.entity.source,
                &wire.entity.entity_type,
                &wire.entity.external_id,
            ),
            wire.order.order_key(),
            ContentHash::try_from(wire.content_hash.clone().into_owned()),
        ) else {
            return (400, json!({ "error": "bad event id, entity, order or content hash" }).to_string());
        };
        let change = Change {
            event_id: &event_id,
            entity: &entity,
            order,
            updated_at: wire.order.updated_at,
            content_hash,
            kind: wire.kind,
            direction: wire.direction,
            payload: &wire.payload,
            fence: wire.fence,
            policy: wire.policy,
            forced: wire.forced,
            attempt: wire.attempt,
            previous_attempt_unknown: wire.previous_attempt_unknown,
            deadline: None,
            trace_id: None,
        };
        match self.store.apply(&change).await {
            Ok(ApplyOutcome::Applied) => (200, json!({ "result": "applied" }).to_string()),
            Ok(ApplyOutcome::AlreadyApplied) => (200, json!({ "result": "already_applied" }).to_string()),
            Ok(ApplyOutcome::Written(_)) => (200, json!({ "result": "applied" }).to_string()),
            Ok(ApplyOutcome::Superseded { by }) => (409, json!({ "superseded_by": by }).to_string()),
            Ok(ApplyOutcome::MissingDependency { key, request }) => {
                let request = request.and_then(|r| serde_json::from_str::<Value>(&r).ok());
                (424, json!({ "needs": key.to_string(), "request": request }).to_string())
            }
            Err(DestinationError::Permanent(message)) => (422, json!({ "error": message }).to_string()),
            Err(other) => (503, json!({ "error": other.to_string() }).to_string()),
        }
    }
}

impl State {
    /// A read: the entity named by the `entity` parameter, signed over its key; 200 with the record, 404 without.
    async fn read(&self, seen: &Seen) -> (u16, String) {
        let target = seen.request_line.split(' ').nth(1).unwrap_or_default();
        let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let Some(key) = query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| *name == ENTITY_PARAMETER)
            .map(|(_, value)| percent_decode(value))
        else {
            return (400, json!({ "error": "no entity parameter" }).to_string());
        };
        if let Some(secret) = &self.secret {
            let header = seen.headers.get(SIGNATURE_HEADER).map(String::as_str).unwrap_or_default();
            let tolerance = Duration::seconds(TOLERANCE_SECONDS);
            if let Err(e) = verify(secret, header, key.as_bytes(), self.clock.now(), tolerance) {
                return (401, json!({ "error": e.to_string() }).to_string());
            }
        }
        let Ok(entity) = EntityKey::parse(&key) else {
            return (400, json!({ "error": format!("bad entity key {key}") }).to_string());
        };
        match self.store.read(&entity).await {
            Ok(Some(record)) => (200, serde_json::to_string(&WireRecord::of(&record)).expect("a record as JSON")),
            Ok(None) => (404, json!({ "error": "no such entity" }).to_string()),
            Err(e) => (503, json!({ "error": e.to_string() }).to_string()),
        }
    }
}

/// `%XX` sequences decoded (the query's encoding).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1..i + 3)) {
            (b'%', Some(hex)) => {
                out.push(u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("00"), 16).unwrap_or(0));
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The reason phrase of `status`.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        208 => "Already Reported",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        424 => "Failed Dependency",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
