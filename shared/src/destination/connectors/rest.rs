//! What both connectors share: [`Rest`], JSON requests to one API over the shared [`Transport`], paced by the
//! API's rate limits; and the pieces of a write — the fields of a payload a connector writes, and the
//! [`ExternalWrite`] an answer describes.

use super::pace::Pace;
use crate::destination::http::outcome::described;
use crate::destination::http::transport::{Answer, Budget, Transport};
use crate::destination::{Change, DestinationError};
use crate::model::{ExternalWrite, Fingerprint, Kind};
use crate::settings::Policy;
use chrono::{DateTime, Utc};
use http::header::{HeaderName, ACCEPT, CONTENT_TYPE, LOCATION, USER_AGENT};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use hyper::body::Bytes;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The `User-Agent` of every request (GitHub refuses requests without one).
const AGENT: &str = concat!("synctrail/", env!("CARGO_PKG_VERSION"));
/// The most redirects one request follows in a row.
pub const MAX_REDIRECTS: usize = 3;

/// JSON requests to one API.
pub(super) struct Rest {
    transport: Transport,
    base: String,
    base_uri: Uri,
    accept: HeaderValue,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The pause the API's rate limits call for.
    pub(super) pace: Pace,
}

impl Rest {
    /// Requests to the API at `base` over `transport`, accepting the media type `accept`, each with `headers` (the
    /// token's value marked sensitive by the caller) besides `Content-Type` and `User-Agent`.
    pub(super) fn new(
        transport: Transport,
        base: &Uri,
        accept: &'static str,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Self {
        let pace = Pace::new(Arc::clone(transport.clock()));
        let base_uri = base.clone();
        let base = base.to_string().trim_end_matches('/').to_owned();
        Self { transport, base, base_uri, accept: HeaderValue::from_static(accept), headers, pace }
    }

    /// The time one change may take.
    pub(super) fn budget(&self, change: &Change<'_>) -> Result<Budget, DestinationError> {
        self.transport.budget(change.deadline)
    }

    /// `method path` (path and query, from the API's base) with `body` as JSON, once the pace allows it. A redirect
    /// (301, 302, 307, 308 with a `Location`) is followed on the API's own origin — the same method and body, at most
    /// [`MAX_REDIRECTS`] in a row, within `budget`; one to another origin fails for good, nothing sent there (the
    /// token goes only to the configured API).
    pub(super) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        budget: &Budget,
    ) -> Result<Answer, DestinationError> {
        let first = format!("{}{path}", self.base);
        let mut uri: Uri =
            first.parse().map_err(|e| DestinationError::Permanent(format!("{first} can't be requested: {e}")))?;
        let body = body.map(|body| Bytes::from(body.to_string()));
        for _ in 0..=MAX_REDIRECTS {
            self.pace.ready(budget).await?;
            let answer = self.transport.send(|| self.request(&method, &uri, body.as_ref()), budget).await?;
            tracing::debug!(uri = %uri, status = answer.status.as_u16(), "API answered");
            match self.redirected(&uri, &answer)? {
                Some(next) => {
                    tracing::info!(from = %uri, to = %next, status = answer.status.as_u16(), "following a redirect");
                    uri = next;
                }
                None => return Ok(answer),
            }
        }
        Err(DestinationError::Permanent(format!(
            "{first} was redirected more than {MAX_REDIRECTS} times in a row (last to {uri}); not followed further"
        )))
    }

    /// The request `method uri` with `body` as JSON and the API's headers.
    fn request(
        &self,
        method: &Method,
        uri: &Uri,
        body: Option<&Bytes>,
    ) -> Result<Request<Full<Bytes>>, DestinationError> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(uri.clone())
            .header(ACCEPT, self.accept.clone())
            .header(USER_AGENT, HeaderValue::from_static(AGENT));
        for (name, value) in &self.headers {
            request = request.header(name, value.clone());
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        request
            .body(Full::new(body.cloned().unwrap_or_default()))
            .map_err(|e| DestinationError::Permanent(format!("{uri} can't be requested: {e}")))
    }

    /// Where a redirect answer to a request of `uri` sends it: `None` when `answer` is not a redirect to follow (not
    /// 301, 302, 307 or 308, or without a `Location`); an error when the `Location` is unusable or on another origin.
    fn redirected(&self, uri: &Uri, answer: &Answer) -> Result<Option<Uri>, DestinationError> {
        if !matches!(answer.status.as_u16(), 301 | 302 | 307 | 308) {
            return Ok(None);
        }
        let Some(location) = answer.headers.get(LOCATION) else {
            return Ok(None);
        };
        let status = answer.status;
        let location = location.to_str().ok().and_then(|text| resolved(uri, text)).ok_or_else(|| {
            DestinationError::Permanent(format!(
                "HTTP {status}: its Location ({location:?}) is not a URL; not followed"
            ))
        })?;
        match (origin(&location), origin(&self.base_uri)) {
            (Some(to), Some(ours)) if to == ours => Ok(Some(location)),
            (to, _) => Err(DestinationError::Permanent(format!(
                "HTTP {status}: redirected to another origin ({}); not followed — the token goes only to {}",
                to.map_or_else(|| "none".to_owned(), |o| o.to_string()),
                origin(&self.base_uri).map_or_else(|| self.base.clone(), |o| o.to_string())
            ))),
        }
    }
}

/// A URL's origin: scheme, host (lower case) and port (the scheme's default when it names none).
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

fn origin(uri: &Uri) -> Option<Origin> {
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let port = match (uri.port_u16(), scheme.as_str()) {
        (Some(port), _) => port,
        (None, "https") => 443,
        (None, "http") => 80,
        (None, _) => return None,
    };
    Some(Origin { host: uri.host()?.to_ascii_lowercase(), scheme, port })
}

/// `location` (absolute, or a reference relative to `base`) as an absolute URL, without its fragment.
fn resolved(base: &Uri, location: &str) -> Option<Uri> {
    let location = location.split('#').next().unwrap_or_default().trim();
    if location.is_empty() {
        return None;
    }
    let scheme = base.scheme_str()?;
    let authority = base.authority()?;
    let text = if let Some(network_path) = location.strip_prefix("//") {
        format!("{scheme}://{network_path}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else if location.parse::<Uri>().is_ok_and(|uri| uri.scheme().is_some()) {
        location.to_owned()
    } else {
        let directory = base.path().rsplit_once('/').map_or("", |(directory, _)| directory);
        format!("{scheme}://{authority}{directory}/{location}")
    };
    let uri: Uri = text.parse().ok()?;
    (uri.scheme().is_some() && uri.host().is_some()).then_some(uri)
}

/// The JSON of a successful answer. A body that is not JSON is retryable: the write may have happened, and the
/// retry looks before it writes again.
pub(super) fn json_of(answer: &Answer) -> Result<Value, DestinationError> {
    serde_json::from_slice(&answer.body).map_err(|e| {
        DestinationError::retryable(format!(
            "{} is not JSON ({e}); the change may have been written, the retry looks first",
            described(answer.status, &answer.body)
        ))
    })
}

/// Connectors write snapshots (`latest_wins`) that create or update a resource: an `in_order` delta or a delete is
/// refused for good, naming the connector.
pub(super) fn snapshot_only(change: &Change<'_>, connector: &str) -> Result<(), DestinationError> {
    if change.policy == Policy::InOrder {
        return Err(DestinationError::Permanent(format!(
            "{} is in_order (deltas); the {connector} connector writes snapshots: make the type latest_wins",
            change.entity.entity_type
        )));
    }
    if change.kind == Kind::Delete {
        return Err(DestinationError::Permanent(format!(
            "the {connector} connector does not delete ({}); delete it in {connector} itself",
            change.entity
        )));
    }
    Ok(())
}

/// The fields of `payload` among `writable`, in that order; a permanent error when it has none.
pub(super) fn fields_to_write(
    payload: &Value,
    writable: &[&str],
    entity_type: &str,
) -> Result<Map<String, Value>, DestinationError> {
    let fields: Map<String, Value> = writable
        .iter()
        .filter_map(|field| payload.get(*field).map(|value| ((*field).to_owned(), value.clone())))
        .collect();
    if fields.is_empty() {
        return Err(DestinationError::Permanent(format!(
            "nothing to write: the {entity_type} payload has none of the fields written ({})",
            writable.join(", ")
        )));
    }
    Ok(fields)
}

/// What a write left: `resource` as the API answered it (its `updated_at`, the `fingerprinted` fields as JSON
/// pointers), and the id the API gave it when it was `created`.
pub(super) fn written(
    resource: &Value,
    fingerprinted: Vec<String>,
    created: Option<String>,
) -> Result<ExternalWrite, DestinationError> {
    let updated_at = resource
        .get("updated_at")
        .and_then(Value::as_str)
        .and_then(|text| DateTime::parse_from_rfc3339(text).ok())
        .map(|at| at.with_timezone(&Utc))
        .ok_or_else(|| {
            DestinationError::retryable(
                "the answer has no RFC 3339 updated_at; the change may have been written, the retry looks first",
            )
        })?;
    Ok(ExternalWrite { created, updated_at, fingerprint: Fingerprint::of(resource, fingerprinted) })
}

/// Whether `value` holds the same set of names as `wanted` — a comma-separated text (`"a, b"`) or an array of
/// names or of objects with `key` (`[{"name": "bug"}]`); order, repeats and surrounding spaces do not count.
pub(super) fn same_names(value: &Value, wanted: &Value, key: &str) -> bool {
    names(value, key) == names(wanted, key)
}

fn names(value: &Value, key: &str) -> Option<std::collections::BTreeSet<String>> {
    let name = |item: &Value| match item {
        Value::String(text) => Some(text.trim().to_owned()),
        Value::Object(map) => map.get(key).and_then(Value::as_str).map(|text| text.trim().to_owned()),
        _ => None,
    };
    match value {
        Value::Null => Some(std::collections::BTreeSet::new()),
        Value::String(text) => {
            Some(text.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect())
        }
        Value::Array(items) => items.iter().map(name).collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_redirects_location_is_resolved_against_the_request_without_its_fragment() {
        let request: Uri = "http://127.0.0.1:8080/api/v3/repos/o/r/issues/1?page=2".parse().expect("a URL");
        let resolve = |location: &str| resolved(&request, location).map(|uri| uri.to_string());
        assert_eq!(
            resolve("/api/v3/repos/o/renamed/issues/1?page=2").as_deref(),
            Some("http://127.0.0.1:8080/api/v3/repos/o/renamed/issues/1?page=2")
        );
        assert_eq!(resolve("2#top").as_deref(), Some("http://127.0.0.1:8080/api/v3/repos/o/r/issues/2"));
        assert_eq!(
            resolve("https://api.github.com/repositories/9/issues/1").as_deref(),
            Some("https://api.github.com/repositories/9/issues/1")
        );
        assert_eq!(resolve("//elsewhere.example/x").as_deref(), Some("http://elsewhere.example/x"));
        assert_eq!(resolve("  "), None);
    }

    #[test]
    fn an_origin_is_scheme_host_and_port_with_the_schemes_default_port() {
        let of = |text: &str| origin(&text.parse::<Uri>().expect("a URL"));
        assert_eq!(of("https://API.github.com/repos"), of("https://api.github.com:443/other"));
        assert_ne!(of("https://api.github.com"), of("http://api.github.com"));
        assert_ne!(of("https://api.github.com"), of("https://api.github.com:8443"));
        assert_ne!(of("https://api.github.com"), of("https://api.github.com.evil.example"));
        assert_eq!(of("http://127.0.0.1:8080/x").map(|o| o.to_string()).as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(of("/relative"), None);
    }

    #[test]
    fn names_compare_as_sets_whatever_their_form() {
        assert!(same_names(&json!([{"name": "bug", "id": 1}, {"name": "ui"}]), &json!(["ui", "bug"]), "name"));
        assert!(same_names(&json!("summer, sale"), &json!("sale,summer"), "name"));
        assert!(!same_names(&json!([{"name": "bug"}]), &json!(["bug", "ui"]), "name"));
        assert!(same_names(&Value::Null, &json!([]), "login"));
    }

    #[test]
    fn only_writable_fields_are_written_and_none_is_an_error() {
        let payload = json!({"title": "T", "id": 9, "created_at": "x", "body": null});
        let fields = fields_to_write(&payload, &["title", "body", "state"], "issue").expect("fields");
        assert_eq!(Value::Object(fields), json!({"title": "T", "body": null}));
        let none = fields_to_write(&json!({"id": 9}), &["title"], "issue").expect_err("nothing to write");
        assert!(matches!(none, DestinationError::Permanent(m) if m.contains("title")));
    }

    #[test]
    fn a_write_is_described_by_the_answers_updated_at_and_fields() {
        let answer = json!({"updated_at": "2026-05-01T08:00:03-04:00", "title": "T", "body": "b"});
        let write = written(&answer, vec!["/title".into()], Some("o/r#3".into())).expect("a write");
        assert_eq!(write.updated_at.to_rfc3339(), "2026-05-01T12:00:03+00:00");
        assert!(write.fingerprint.matches(&json!({"title": "T"})));
        assert_eq!(write.created.as_deref(), Some("o/r#3"));
        assert!(matches!(written(&json!({"title": "T"}), vec![], None), Err(DestinationError::Retryable { .. })));
    }
}
