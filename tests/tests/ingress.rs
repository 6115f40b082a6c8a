//! Webhook ingress (docs/webhooks.md): real GitHub and Shopify payloads (`events/webhooks/`) map to the right
//! entity, kind, `updated_at` and tenant, every mapped body is an envelope the engine accepts, and nothing
//! unauthenticated gets through — forged, wrongly keyed, unsigned and truncated deliveries, oversized bodies and
//! unknown sources. A redelivery lands on the same event, end to end through the engine.

use crate::support::*;
use serde_json::{json, Value};
use std::sync::Arc;
use synctrail::ingress::{
    AuthFailure, ConfigError, Encoding, Headers, Ignored, Ingress, IngressConfig, MappedEvent, MappingError, Provider,
    Secret, SignatureScheme, Verdict, CREATE_VERSION, DELETE_VERSION, MAX_TRIGGERED_AHEAD_SECONDS,
};
use synctrail::model::{EnvelopeError, Kind, Message, OrderKey, Status};
use synctrail::ManualClock;

const SECRET: &str = "It's a Secret to Everybody";
const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

fn secret(text: &str) -> Secret {
    Secret::new(text.as_bytes()).expect("a non-empty secret")
}

/// An ingress with `github` and `shopify` under [`SECRET`].
fn ingress() -> Ingress {
    Ingress::new(IngressConfig::default().with_source("github", secret(SECRET), Provider::GitHub).with_source(
        "shopify",
        secret(SECRET),
        Provider::Shopify,
    ))
}

/// The bytes of `events/webhooks/<name>`.
fn webhook(name: &str) -> Vec<u8> {
    let path = fixture_path(&format!("webhooks/{name}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs.iter().copied().collect()
}

/// GitHub's headers for `event`, signed with `key`.
fn github_headers(event: &str, body: &[u8], key: &str) -> Headers {
    let signature = SignatureScheme::github().sign(&secret(key), body);
    headers(&[("X-GitHub-Event", event), ("X-GitHub-Delivery", DELIVERY), ("X-Hub-Signature-256", &signature)])
}

/// Shopify's headers for `topic`, signed with `key`.
fn shopify_headers(topic: &str, body: &[u8], key: &str) -> Vec<(String, String)> {
    let signature = SignatureScheme::shopify().sign(&secret(key), body);
    [
        ("X-Shopify-Topic", topic),
        ("X-Shopify-Hmac-Sha256", signature.as_str()),
        ("X-Shopify-Shop-Domain", "johns-apparel.myshopify.com"),
        ("X-Shopify-API-Version", "2026-01"),
        ("X-Shopify-Webhook-Id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
        ("X-Shopify-Event-Id", "98880550-7158-44d4-b7cd-2c97c8a091b5"),
        ("X-Shopify-Triggered-At", "2023-03-29T18:00:27.877041743Z"),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec()
}

/// Shopify's headers for `topic`, signed with [`SECRET`], for the event `event_id` triggered at `triggered_at`.
fn shopify_delivery(topic: &str, body: &[u8], event_id: &str, triggered_at: &str) -> Headers {
    let mut pairs = shopify_headers(topic, body, SECRET);
    for (name, value) in &mut pairs {
        match name.as_str() {
            "X-Shopify-Event-Id" => *value = event_id.to_owned(),
            "X-Shopify-Triggered-At" => *value = triggered_at.to_owned(),
            _ => {}
        }
    }
    pairs.into_iter().collect()
}

/// An ingress like [`ingress`] whose clock stands at `now`.
fn ingress_at(now: &str) -> Ingress {
    ingress().with_clock(Arc::new(ManualClock::new(time(now))))
}

fn time(text: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(text).expect("an RFC 3339 time").with_timezone(&chrono::Utc)
}

/// `body` with `nested` added at the top of the object at `pointer`.
fn with_field(body: &[u8], pointer: &str, field: &str, nested: Value) -> Vec<u8> {
    let mut value: Value = serde_json::from_slice(body).expect("JSON");
    let object = value.pointer_mut(pointer).and_then(Value::as_object_mut).expect("an object");
    object.insert(field.to_owned(), nested);
    serde_json::to_vec(&value).expect("JSON")
}

/// Arrays nested `depth` deep: `[[…]]`.
fn arrays(depth: usize) -> Value {
    let mut value = json!([]);
    for _ in 1..depth {
        value = json!([value]);
    }
    value
}

/// The mapped event of a verdict, after checking the body is an envelope `Message::parse` accepts as the same.
fn mapped(verdict: Verdict) -> MappedEvent {
    assert_eq!(verdict.status(), 202, "{verdict:?}");
    let Verdict::Mapped(event) = verdict else { panic!("expected a mapped event, got {verdict:?}") };
    match Message::parse(&event.body, usize::MAX) {
        Ok(Message::Envelope(envelope)) => assert_eq!(*envelope, event.envelope, "the body parses to the envelope"),
        other => panic!("the mapped body is not an envelope: {other:?}\n{}", event.body),
    }
    *event
}

/// The version a mapped change of `kind` carries: a create before, a delete after the same second's updates.
fn version_of(kind: Kind) -> i64 {
    match kind {
        Kind::Create => CREATE_VERSION,
        Kind::Upsert => 0,
        Kind::Delete => DELETE_VERSION,
    }
}

fn body_field(event: &MappedEvent, field: &str) -> Value {
    let body: Value = serde_json::from_str(&event.body).expect("JSON body");
    body[field].clone()
}

fn unmappable(verdict: Verdict) -> MappingError {
    assert_eq!(verdict.status(), 202, "signed input is accepted (and recorded rejected): {verdict:?}");
    match verdict {
        Verdict::Unmappable(error) => error,
        other => panic!("expected unmappable, got {other:?}"),
    }
}

fn unauthenticated(verdict: Verdict) -> AuthFailure {
    assert_eq!(verdict.status(), 401, "{verdict:?}");
    match verdict {
        Verdict::Unauthenticated(failure) => failure,
        other => panic!("expected unauthenticated, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Mapping real payloads
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn every_github_fixture_maps_to_its_entity_kind_updated_at_and_tenant() {
    let ingress = ingress();
    // (fixture, X-GitHub-Event, entity key, kind, updated_at)
    let table = [
        (
            "issues/opened",
            "issues",
            "codertocat/github/issue/Codertocat/Hello-World#1",
            Kind::Create,
            "2019-05-15T15:20:18Z",
        ),
        (
            "issues/edited",
            "issues",
            "codertocat/github/issue/Codertocat/Hello-World#1",
            Kind::Upsert,
            "2019-05-15T15:20:18Z",
        ),
        ("issues/reopened", "issues", "1/github/issue/Codertocat/Hello-World#1", Kind::Upsert, "2021-10-11T16:40:56Z"),
        ("issues/deleted", "issues", "1/github/issue/Codertocat/Hello-World#1", Kind::Delete, "2021-10-11T16:40:56Z"),
        (
            "issues/transferred",
            "issues",
            "octo-org/github/issue/octo-org/octo-repo#1",
            Kind::Delete,
            "2019-10-25T22:46:30Z",
        ),
        (
            "pull_request/opened",
            "pull_request",
            "1/github/pull_request/Codertocat/Hello-World#2",
            Kind::Create,
            "2019-05-15T15:20:33Z",
        ),
        (
            "pull_request/closed",
            "pull_request",
            "1/github/pull_request/Codertocat/Hello-World#2",
            Kind::Upsert,
            "2019-05-15T15:21:18Z",
        ),
        (
            "issue_comment/created",
            "issue_comment",
            "codertocat/github/issue_comment/492700400",
            Kind::Create,
            "2019-05-15T15:20:21Z",
        ),
        (
            "issue_comment/edited",
            "issue_comment",
            "codertocat/github/issue_comment/492700400",
            Kind::Upsert,
            "2019-05-15T15:20:22Z",
        ),
        (
            "issue_comment/deleted",
            "issue_comment",
            "codertocat/github/issue_comment/492700400",
            Kind::Delete,
            "2019-05-15T15:20:22Z",
        ),
    ];
    for (fixture, event, entity, kind, updated_at) in table {
        let body = webhook(&format!("github/{fixture}.json"));
        let event = mapped(ingress.handle("github", &github_headers(event, &body, SECRET), &body));
        let envelope = &event.envelope;
        assert_eq!(envelope.entity.to_string(), entity, "{fixture}");
        assert_eq!(envelope.kind, kind, "{fixture}");
        assert_eq!(body_field(&event, "updated_at"), json!(updated_at), "{fixture}: updated_at as GitHub wrote it");
        assert_eq!(envelope.event_id.as_str(), format!("github:{DELIVERY}"), "{fixture}");
        assert_eq!(envelope.delivery_id.as_deref(), Some(DELIVERY), "{fixture}");
        assert_eq!(envelope.order.version, version_of(kind), "{fixture}: a create orders first, a delete last");
        // The payload is the resource itself, not the delivery around it.
        let delivery: Value = serde_json::from_slice(&body).expect("fixture JSON");
        let resource = ["issue", "pull_request", "comment"].into_iter().rev().find_map(|k| delivery.get(k));
        assert_eq!(Some(&envelope.payload), resource, "{fixture}");
    }
}

#[test]
fn every_shopify_fixture_maps_to_its_entity_kind_updated_at_and_tenant() {
    let ingress = ingress();
    // (fixture = topic, entity key, kind, updated_at)
    let table = [
        (
            "products/create",
            "johns-apparel/shopify/product/788032119674292922",
            Kind::Create,
            "2021-12-31T19:00:00-05:00",
        ),
        (
            "products/update",
            "johns-apparel/shopify/product/788032119674292922",
            Kind::Upsert,
            "2021-12-31T19:00:00-05:00",
        ),
        // A delete's body is `{"id": …}` only: its time is X-Shopify-Triggered-At, to the whole second.
        ("products/delete", "johns-apparel/shopify/product/788032119674292922", Kind::Delete, "2023-03-29T18:00:27Z"),
        (
            "inventory_levels/update",
            "johns-apparel/shopify/inventory_level/271878346596884015@53716844710",
            Kind::Upsert,
            "2020-09-03T08:44:10-04:00",
        ),
        (
            "inventory_levels/disconnect",
            "johns-apparel/shopify/inventory_level/271878346596884015@24826418",
            Kind::Delete,
            "2023-03-29T18:00:27Z",
        ),
    ];
    for (topic, entity, kind, updated_at) in table {
        let body = webhook(&format!("shopify/{topic}.json"));
        let headers: Headers = shopify_headers(topic, &body, SECRET).into_iter().collect();
        let event = mapped(ingress.handle("shopify", &headers, &body));
        let envelope = &event.envelope;
        assert_eq!(envelope.entity.to_string(), entity, "{topic}");
        assert_eq!(envelope.kind, kind, "{topic}");
        assert_eq!(body_field(&event, "updated_at"), json!(updated_at), "{topic}");
        assert_eq!(envelope.event_id.as_str(), "shopify:98880550-7158-44d4-b7cd-2c97c8a091b5", "{topic}");
        assert_eq!(envelope.delivery_id.as_deref(), Some("b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"), "{topic}");
        assert_eq!(envelope.order.version, version_of(kind), "{topic}: a create orders first, a delete last");
        let delivery: Value = serde_json::from_slice(&body).expect("fixture JSON");
        assert_eq!(envelope.payload, delivery, "{topic}: the body is the resource");
    }
}

#[test]
fn github_signs_the_documented_test_vector_as_we_do() {
    // GitHub's "Validating webhook deliveries" gives this secret, payload and signature to test an implementation.
    let scheme = SignatureScheme::github();
    let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    assert_eq!(scheme.sign(&secret(SECRET), b"Hello, World!"), expected);
    let headers = headers(&[("x-hub-signature-256", expected)]);
    assert_eq!(scheme.verify(&secret(SECRET), &headers, b"Hello, World!"), Ok(()));
}

#[test]
fn a_replayed_delivery_maps_to_the_same_event() {
    let ingress = ingress();
    let body = webhook("github/issues/edited.json");
    let first = mapped(ingress.handle("github", &github_headers("issues", &body, SECRET), &body));
    let replay = mapped(ingress.handle("github", &github_headers("issues", &body, SECRET), &body));
    assert_eq!(replay, first, "the same body, event id and entity");

    let body = webhook("shopify/products/update.json");
    let headers: Headers = shopify_headers("products/update", &body, SECRET).into_iter().collect();
    let first = mapped(ingress.handle("shopify", &headers, &body));
    // Shopify's retry of the same event: a new attempt, the same X-Shopify-Event-Id.
    let mut retry_headers = shopify_headers("products/update", &body, SECRET);
    retry_headers.retain(|(name, _)| name != "X-Shopify-Triggered-At");
    let retry = mapped(ingress.handle("shopify", &retry_headers.into_iter().collect(), &body));
    assert_eq!(retry.envelope.event_id, first.envelope.event_id);
}

#[test]
fn without_an_event_id_header_a_shopify_event_is_named_by_its_content() {
    let ingress = ingress();
    let body = webhook("shopify/products/update.json");
    let mut pairs = shopify_headers("products/update", &body, SECRET);
    pairs.retain(|(name, _)| name != "X-Shopify-Event-Id");
    let headers: Headers = pairs.into_iter().collect();
    let first = mapped(ingress.handle("shopify", &headers, &body));
    assert_eq!(body_field(&first, "event_id"), Value::Null, "no event id is invented");
    assert!(!first.envelope.client_event_id);
    assert!(first.envelope.event_id.as_str().starts_with("d-"), "derived from the content (spec §3)");
    assert_eq!(mapped(ingress.handle("shopify", &headers, &body)).envelope.event_id, first.envelope.event_id);
}

#[test]
fn headers_match_whatever_their_case() {
    let ingress = ingress();
    let body = webhook("github/issues/opened.json");
    let signature = SignatureScheme::github().sign(&secret(SECRET), &body);
    let lower = headers(&[("x-github-event", "issues"), ("x-hub-signature-256", &signature)]);
    let upper = headers(&[("X-GITHUB-EVENT", "issues"), ("X-HUB-SIGNATURE-256", &signature)]);
    assert_eq!(mapped(ingress.handle("github", &lower, &body)), mapped(ingress.handle("github", &upper, &body)));
    let repeated = headers(&[("X-GitHub-Event", "issues"), ("x-github-event", "push")]);
    assert_eq!(repeated.get("X-GITHUB-EVENT"), Some("issues"), "a repeated name keeps its first value");
}

// ---------------------------------------------------------------------------------------------------------------
// Unauthenticated input: 401/404/413, nothing kept
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn a_forged_signature_is_unauthenticated() {
    let ingress = ingress();
    let body = webhook("github/issues/edited.json");
    let mut forged = body.clone();
    let at = forged.windows(5).position(|w| w == b"Spell").expect("the issue's title");
    forged[at] = b'X';
    // The original signature on altered bytes, and a signature of other bytes.
    let verdict = ingress.handle("github", &github_headers("issues", &body, SECRET), &forged);
    assert_eq!(unauthenticated(verdict), AuthFailure::Mismatch);
    let verdict = ingress.handle("github", &github_headers("issues", b"{}", SECRET), &body);
    assert_eq!(verdict.label(), "unauthenticated");
    assert_eq!(unauthenticated(verdict).label(), "mismatch", "the reason is kept for metrics");
}

#[test]
fn a_signature_made_with_another_secret_is_unauthenticated() {
    let ingress = ingress();
    let body = webhook("github/issues/opened.json");
    let verdict = ingress.handle("github", &github_headers("issues", &body, "not the secret"), &body);
    assert_eq!(unauthenticated(verdict), AuthFailure::Mismatch);
    let body = webhook("shopify/products/create.json");
    let headers: Headers = shopify_headers("products/create", &body, "not the secret").into_iter().collect();
    assert_eq!(unauthenticated(ingress.handle("shopify", &headers, &body)), AuthFailure::Mismatch);
}

#[test]
fn a_missing_or_malformed_signature_header_is_unauthenticated() {
    let ingress = ingress();
    let body = webhook("github/issues/opened.json");
    let unsigned = headers(&[("X-GitHub-Event", "issues"), ("X-GitHub-Delivery", DELIVERY)]);
    assert_eq!(unauthenticated(ingress.handle("github", &unsigned, &body)), AuthFailure::MissingSignature);
    let valid = SignatureScheme::github().sign(&secret(SECRET), &body);
    for malformed in [valid.trim_start_matches("sha256=").to_owned(), "sha256=not-hex".to_owned(), "sha1=00".into()] {
        let headers = headers(&[("X-GitHub-Event", "issues"), ("X-Hub-Signature-256", &malformed)]);
        assert_eq!(unauthenticated(ingress.handle("github", &headers, &body)), AuthFailure::MalformedSignature);
    }
    // Shopify's signature is base64; a hex one (as GitHub would send) is not a signature.
    let body = webhook("shopify/products/create.json");
    let hex = SignatureScheme::github().sign(&secret(SECRET), &body);
    let mut pairs = shopify_headers("products/create", &body, SECRET);
    pairs.retain(|(name, _)| name != "X-Shopify-Hmac-Sha256");
    assert_eq!(
        unauthenticated(ingress.handle("shopify", &pairs.iter().cloned().collect(), &body)),
        AuthFailure::MissingSignature
    );
    pairs.push(("X-Shopify-Hmac-Sha256".into(), hex));
    assert_eq!(
        unauthenticated(ingress.handle("shopify", &pairs.into_iter().collect(), &body)),
        AuthFailure::MalformedSignature
    );
}

#[test]
fn a_truncated_body_fails_its_signature() {
    let ingress = ingress();
    let body = webhook("github/pull_request/opened.json");
    let headers = github_headers("pull_request", &body, SECRET);
    let truncated = &body[..body.len() / 2];
    assert_eq!(unauthenticated(ingress.handle("github", &headers, truncated)), AuthFailure::Mismatch);
    assert_eq!(unauthenticated(ingress.handle("github", &headers, &body[..body.len() - 1])), AuthFailure::Mismatch);
}

#[test]
fn a_body_over_the_limit_is_too_large_before_anything_else_is_checked() {
    let config = IngressConfig { max_body_bytes: 16 * 1024, ..IngressConfig::default() }.with_source(
        "github",
        secret(SECRET),
        Provider::GitHub,
    );
    let ingress = Ingress::new(config);
    let body = webhook("github/pull_request/opened.json");
    assert!(body.len() > 16 * 1024);
    for headers in [github_headers("pull_request", &body, SECRET), Headers::default()] {
        let verdict = ingress.handle("github", &headers, &body);
        assert_eq!(verdict, Verdict::TooLarge { size: body.len(), limit: 16 * 1024 });
        assert_eq!((verdict.status(), verdict.label()), (413, "too_large"));
    }
    let small = webhook("github/issues/opened.json");
    assert!(small.len() <= 16 * 1024);
    mapped(ingress.handle("github", &github_headers("issues", &small, SECRET), &small));
}

#[test]
fn an_unknown_source_is_not_found() {
    let ingress = ingress();
    let body = webhook("github/issues/opened.json");
    for source in ["gitlab", "GitHub", "", "github/../shopify"] {
        let verdict = ingress.handle(source, &github_headers("issues", &body, SECRET), &body);
        assert_eq!(
            (verdict.clone(), verdict.status(), verdict.label()),
            (Verdict::UnknownSource, 404, "unknown_source")
        );
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Authenticated but not queued, or not mappable
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn a_ping_is_answered_200_and_not_queued() {
    let ingress = ingress();
    let body = webhook("github/ping.json");
    let verdict = ingress.handle("github", &github_headers("ping", &body, SECRET), &body);
    assert_eq!((verdict.status(), verdict.label()), (200, "ignored"));
    assert_eq!(verdict, Verdict::Ignored(Ignored::Ping));
    assert_eq!(Ignored::Ping.label(), "ping");
    // Only after its signature is checked.
    let verdict = ingress.handle("github", &github_headers("ping", &body, "not the secret"), &body);
    assert_eq!(unauthenticated(verdict), AuthFailure::Mismatch);
}

#[test]
fn event_types_and_topics_that_are_not_synced_are_ignored() {
    let ingress = ingress();
    let body = br#"{"ref": "refs/heads/main"}"#;
    let verdict = ingress.handle("github", &github_headers("push", body, SECRET), body);
    assert_eq!(verdict, Verdict::Ignored(Ignored::NotSynced { event: "push".into() }));
    assert_eq!(verdict.status(), 200);
    let body = br#"{"id": 820982911946154508}"#;
    let headers: Headers = shopify_headers("orders/create", body, SECRET).into_iter().collect();
    let verdict = ingress.handle("shopify", &headers, body);
    assert_eq!(verdict, Verdict::Ignored(Ignored::NotSynced { event: "orders/create".into() }));
}

#[test]
fn a_signed_issue_without_updated_at_is_unmappable_with_the_reason() {
    let ingress = ingress();
    let mut issue: Value = serde_json::from_slice(&webhook("github/issues/edited.json")).expect("JSON");
    issue["issue"].as_object_mut().expect("an issue").remove("updated_at");
    let body = serde_json::to_vec(&issue).expect("JSON");
    let error = unmappable(ingress.handle("github", &github_headers("issues", &body, SECRET), &body));
    assert_eq!(error, MappingError::Missing { pointer: "/issue/updated_at".into(), expected: "a string" });
    assert_eq!(error.to_string(), "field /issue/updated_at is missing or not a string");
}

#[test]
fn signed_bodies_that_cannot_be_mapped_say_why() {
    let ingress = ingress();
    // Form-encoded (GitHub's other content type).
    let body = b"payload=%7B%22action%22%3A%22opened%22%7D";
    let error = unmappable(ingress.handle("github", &github_headers("issues", body, SECRET), body));
    assert!(matches!(error, MappingError::NotJson(_)), "{error}");
    assert!(error.to_string().contains("application/json"), "{error}");
    // A timestamp the envelope can't take.
    let body = br#"{"action":"edited","issue":{"number":7,"updated_at":"yesterday"},"repository":{"full_name":"o/r"}}"#;
    let error = unmappable(ingress.handle("github", &github_headers("issues", body, SECRET), body));
    let MappingError::Envelope(EnvelopeError::Invalid { field, .. }) = &error else { panic!("{error:?}") };
    assert_eq!(*field, "updated_at");
    // A Shopify update without updated_at (a subscription whose include_fields left it out).
    let body = br#"{"id": 788032119674292922, "title": "Example T-Shirt"}"#;
    let headers: Headers = shopify_headers("products/update", body, SECRET).into_iter().collect();
    let error = unmappable(ingress.handle("shopify", &headers, body));
    assert_eq!(error, MappingError::Missing { pointer: "/updated_at".into(), expected: "a string" });
    // A Shopify delete with neither updated_at nor X-Shopify-Triggered-At.
    let body = webhook("shopify/products/delete.json");
    let mut pairs = shopify_headers("products/delete", &body, SECRET);
    pairs.retain(|(name, _)| name != "X-Shopify-Triggered-At");
    let error = unmappable(ingress.handle("shopify", &pairs.into_iter().collect(), &body));
    assert_eq!(error, MappingError::MissingHeader("X-Shopify-Triggered-At"));
}

/// `X-Shopify-Triggered-At` has nanoseconds; Shopify's `updated_at` whole seconds. A delete is ordered at its whole
/// second, with `version: 1` after the states of that second — and so after a re-create of that second too (a
/// create's `version` is -1): docs/webhooks.md "Deletes and ties".
#[test]
fn a_shopify_delete_orders_at_the_whole_second_of_its_triggered_at_as_updated_at_is_written() {
    let ingress = ingress();
    let body = webhook("shopify/inventory_levels/disconnect.json");
    let headers = shopify_delivery("inventory_levels/disconnect", &body, "d1", "2023-03-29T18:00:27.877041743Z");
    let disconnect = mapped(ingress.handle("shopify", &headers, &body)).envelope;
    assert_eq!(disconnect.order, OrderKey::at(time("2023-03-29T18:00:27Z"), 1).expect("an order key"));

    // The level's states as Shopify writes them (the `inventory_levels/update` body, on the disconnected level).
    let state = |topic: &str, updated_at: &str| {
        let level = webhook("shopify/inventory_levels/update.json");
        let level = with_field(&level, "", "location_id", json!(24826418));
        let level = with_field(&level, "", "updated_at", json!(updated_at));
        let headers = shopify_delivery(topic, &level, updated_at, "2023-03-29T18:00:29Z");
        mapped(ingress.handle("shopify", &headers, &level)).envelope
    };
    let same_second = state("inventory_levels/update", "2023-03-29T14:00:27-04:00");
    let reconnect_same_second = state("inventory_levels/connect", "2023-03-29T14:00:27-04:00");
    let next_second = state("inventory_levels/connect", "2023-03-29T18:00:28Z");
    assert_eq!(same_second.entity, disconnect.entity);
    assert!(same_second.order < disconnect.order, "the delete ends the second's states");
    assert!(reconnect_same_second.order < disconnect.order, "the documented trade-off: a same-second delete wins");
    assert!(next_second.order > disconnect.order, "a reconnect a second later is newer");
}

/// The signature covers the body, not the headers: a replayed signed delete body with `X-Shopify-Triggered-At` in
/// 2261 would be the entity's newest state until then, and every real change `dropped`.
#[test]
fn a_shopify_delete_triggered_more_than_five_minutes_ahead_of_the_ingress_clock_is_unmappable() {
    assert_eq!(MAX_TRIGGERED_AHEAD_SECONDS, 300);
    let ingress = ingress_at("2023-03-29T18:00:00Z");
    for (topic, fixture) in
        [("products/delete", "products/delete"), ("inventory_levels/disconnect", "inventory_levels/disconnect")]
    {
        let body = webhook(&format!("shopify/{fixture}.json"));
        let deliver = |at: &str| ingress.handle("shopify", &shopify_delivery(topic, &body, "d1", at), &body);
        let within = mapped(deliver("2023-03-29T18:05:00.999Z"));
        assert_eq!(body_field(&within, "updated_at"), json!("2023-03-29T18:05:00Z"), "{topic}: a drifting clock");
        for ahead in ["2023-03-29T18:05:01Z", "2261-01-01T00:00:00Z"] {
            let error = unmappable(deliver(ahead));
            let MappingError::AheadOfClock { header, value, now, ahead_seconds } = &error else {
                panic!("{topic} at {ahead}: {error:?}")
            };
            assert_eq!(
                (*header, value.as_str(), now.as_str()),
                ("X-Shopify-Triggered-At", ahead, "2023-03-29T18:00:00Z")
            );
            assert_eq!(*ahead_seconds, 300);
            assert_eq!(error.field(), Some("X-Shopify-Triggered-At"), "the rejected record names the header");
        }
        let error = unmappable(deliver("yesterday"));
        assert!(matches!(&error, MappingError::InvalidHeader { header: "X-Shopify-Triggered-At", .. }), "{error:?}");
    }
}

/// A Shopify delete's body carries only ids (`products/delete` is `{"id": …}`); a state under a delete topic is a
/// signed body relabelled through the unsigned `X-Shopify-Topic`, and would delete the resource at the state's time.
#[test]
fn a_shopify_state_relabelled_as_a_delete_by_its_unsigned_topic_is_unmappable() {
    let ingress = ingress();
    for (fixture, relabelled) in [
        ("products/update", "products/delete"),
        ("products/create", "products/delete"),
        ("inventory_levels/update", "inventory_levels/disconnect"),
    ] {
        let body = webhook(&format!("shopify/{fixture}.json"));
        let headers = shopify_delivery(relabelled, &body, "d1", "2023-03-29T18:00:27Z");
        let error = unmappable(ingress.handle("shopify", &headers, &body));
        assert_eq!(error, MappingError::StateUnderDeleteTopic { topic: relabelled.into() }, "{fixture}");
        assert!(error.to_string().contains("a delete's body carries only ids"), "{error}");
    }
    // The other way round, a delete's ids under an update topic have no updated_at: unmappable as well.
    let body = webhook("shopify/products/delete.json");
    let headers = shopify_delivery("products/update", &body, "d1", "2023-03-29T18:00:27Z");
    let error = unmappable(ingress.handle("shopify", &headers, &body));
    assert_eq!(error, MappingError::Missing { pointer: "/updated_at".into(), expected: "a string" });
}

/// An `issue_comment` body carries its issue beside the comment; relabelled `issues` through the unsigned
/// `X-GitHub-Event`, a comment's `deleted` would delete the issue.
#[test]
fn a_github_comment_body_relabelled_as_an_issue_event_is_unmappable() {
    let ingress = ingress();
    for action in ["deleted", "created"] {
        let body = webhook(&format!("github/issue_comment/{action}.json"));
        let delivery: Value = serde_json::from_slice(&body).expect("JSON");
        assert!(delivery["issue"].is_object() && delivery["action"] == action, "the issue is in the body");
        let error = unmappable(ingress.handle("github", &github_headers("issues", &body, SECRET), &body));
        assert_eq!(error, MappingError::AnotherEventsBody { event: "issues".into(), field: "/comment" }, "{action}");
        assert_eq!(error.field(), Some("/comment"));
    }
}

/// serde_json keeps the last of two equal keys, another parser the first; the engine refuses such a message
/// (spec §1), and the ingress reads the body with the same parser, so the sender's body means one thing.
#[test]
fn a_body_naming_a_key_twice_is_unmappable_instead_of_mapped_with_its_last_value() {
    let ingress = ingress();
    let opened = String::from_utf8(webhook("github/issues/opened.json")).expect("UTF-8");
    let body = opened.replacen('{', r#"{"action": "deleted","#, 1);
    let last_wins: Value = serde_json::from_str(&body).expect("serde_json takes it");
    assert_eq!(last_wins["action"], "opened", "what a last-value parser would have mapped");
    let error =
        unmappable(ingress.handle("github", &github_headers("issues", body.as_bytes(), SECRET), body.as_bytes()));
    assert_eq!(error, MappingError::DuplicateKey { path: "action".into() });
    assert_eq!(error.field(), Some("action"));

    let update = String::from_utf8(webhook("shopify/products/update.json")).expect("UTF-8");
    let body = update.replacen(r#""price": "19.99","#, r#""price": "19.99", "price": "9.99","#, 1);
    assert_ne!(body, update);
    let headers: Headers = shopify_headers("products/update", body.as_bytes(), SECRET).into_iter().collect();
    let error = unmappable(ingress.handle("shopify", &headers, body.as_bytes()));
    assert_eq!(error, MappingError::DuplicateKey { path: "variants[0].price".into() });
    assert!(error.to_string().contains("appears twice"), "{error}");
}

/// serde_json's nesting limit is 128 levels, and a Shopify body is the payload, one level inside its envelope: a
/// body one level short of the limit would be answered `queued` under `shopify:<id>` and then refused by the
/// processor under another id. The queued text is checked by the processor's own parser first.
#[test]
fn a_body_the_envelope_nests_past_the_parsers_limit_is_unmappable_not_queued_under_an_id_that_never_exists() {
    let ingress = ingress();
    let update = webhook("shopify/products/update.json");
    // The top object holds arrays 126 deep: 127 levels, as deep as serde_json takes.
    let deepest = with_field(&update, "", "metafields", arrays(126));
    assert!(serde_json::from_slice::<Value>(&deepest).is_ok(), "the body itself is within the limit");
    let envelope_of_it = format!(r#"{{"payload": {}}}"#, String::from_utf8(deepest.clone()).expect("UTF-8"));
    assert!(serde_json::from_str::<Value>(&envelope_of_it).is_err(), "its envelope is not");
    let headers: Headers = shopify_headers("products/update", &deepest, SECRET).into_iter().collect();
    let error = unmappable(ingress.handle("shopify", &headers, &deepest));
    assert!(matches!(&error, MappingError::TooDeep(detail) if detail.contains("recursion limit")), "{error:?}");
    assert!(error.to_string().contains("nested too deeply"), "{error}");

    let one_less = with_field(&update, "", "metafields", arrays(125));
    let headers: Headers = shopify_headers("products/update", &one_less, SECRET).into_iter().collect();
    mapped(ingress.handle("shopify", &headers, &one_less));
    // A GitHub payload is a part of the body, so its envelope is no deeper than the delivery.
    let opened = with_field(&webhook("github/issues/opened.json"), "/issue", "reactions", arrays(125));
    assert!(serde_json::from_slice::<Value>(&opened).is_ok());
    mapped(ingress.handle("github", &github_headers("issues", &opened, SECRET), &opened));
    // Deeper than the parser takes at all: unmappable for the same reason.
    let deeper = with_field(&update, "", "metafields", arrays(200));
    let headers: Headers = shopify_headers("products/update", &deeper, SECRET).into_iter().collect();
    assert!(matches!(unmappable(ingress.handle("shopify", &headers, &deeper)), MappingError::TooDeep(_)));
}

#[test]
fn a_payload_over_the_engines_limit_is_unmappable() {
    let config = IngressConfig { max_payload_bytes: 1024, ..IngressConfig::default() }.with_source(
        "github",
        secret(SECRET),
        Provider::GitHub,
    );
    let body = webhook("github/issues/opened.json");
    let error = unmappable(Ingress::new(config).handle("github", &github_headers("issues", &body, SECRET), &body));
    assert!(matches!(error, MappingError::Envelope(EnvelopeError::PayloadTooLarge { limit: 1024, .. })), "{error:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------------------------

/// An ERP that signs with `X-Erp-Signature: sha256=<hex>` and names its deliveries in `X-Erp-Delivery`.
const ERP_MAPPING: &str = r#"{
    "signature_header": "X-Erp-Signature", "encoding": "hex", "prefix": "sha256=",
    "entity_type": "/type", "external_id": "/data/id", "updated_at": "/data/modified",
    "event_id_header": "X-Erp-Delivery"
}"#;

#[test]
fn a_generic_source_configured_with_pointers_maps_its_deliveries() {
    let config = IngressConfig::from_vars([
        ("SYNCTRAIL_WEBHOOK_SECRET_ERP", "erp secret"),
        ("SYNCTRAIL_WEBHOOK_SOURCE_ERP", ERP_MAPPING),
        ("SYNCTRAIL_WEBHOOK_SECRET_WMS", "wms secret"),
        (
            "SYNCTRAIL_WEBHOOK_SOURCE_WMS",
            r#"{"signature_header": "Signature", "encoding": "base64", "entity_type": "stock_level",
                "external_id": "/sku", "updated_at": "/at"}"#,
        ),
    ])
    .expect("valid configuration");
    let ingress = Ingress::new(config);

    let body = br#"{"type": "order", "data": {"id": 4711, "modified": "2026-05-01T12:00:00.5+02:00", "total": 10}}"#;
    let scheme =
        SignatureScheme { header: "X-Erp-Signature".into(), encoding: Encoding::Hex, prefix: "sha256=".into() };
    let signed = headers(&[("x-erp-signature", &scheme.sign(&secret("erp secret"), body)), ("X-Erp-Delivery", "d-17")]);
    let event = mapped(ingress.handle("erp", &signed, body));
    assert_eq!(event.envelope.entity.to_string(), "default/erp/order/4711");
    assert_eq!(event.envelope.event_id.as_str(), "erp:d-17");
    assert_eq!(event.envelope.kind, Kind::Upsert);
    assert_eq!(body_field(&event, "updated_at"), json!("2026-05-01T12:00:00.5+02:00"));
    assert_eq!(event.envelope.payload, serde_json::from_slice::<Value>(body).expect("JSON"));
    let unsigned = headers(&[("X-Erp-Delivery", "d-17")]);
    assert_eq!(unauthenticated(ingress.handle("erp", &unsigned, body)), AuthFailure::MissingSignature);
    let error = unmappable(ingress.handle(
        "erp",
        &signed_for(&scheme, "erp secret", b"{\"type\": \"order\"}"),
        b"{\"type\": \"order\"}",
    ));
    assert_eq!(error, MappingError::Missing { pointer: "/data/id".into(), expected: "a string or an integer" });

    let body = br#"{"sku": "SKU-1", "at": "2026-05-01T12:00:00Z", "qty": 3}"#;
    let scheme = SignatureScheme { header: "Signature".into(), encoding: Encoding::Base64, prefix: String::new() };
    let event = mapped(ingress.handle("wms", &signed_for(&scheme, "wms secret", body), body));
    assert_eq!(event.envelope.entity.to_string(), "default/wms/stock_level/SKU-1", "a fixed entity type");
    assert!(!event.envelope.client_event_id, "no event id header: the id is derived from the content");
}

fn signed_for(scheme: &SignatureScheme, key: &str, body: &[u8]) -> Headers {
    headers(&[(scheme.header.as_str(), &scheme.sign(&secret(key), body))])
}

#[test]
fn the_environment_defines_github_and_shopify_by_their_secrets_and_the_limits() {
    let config = IngressConfig::from_vars([
        ("SYNCTRAIL_WEBHOOK_SECRET_GITHUB", SECRET),
        ("SYNCTRAIL_WEBHOOK_SECRET_SHOPIFY", "shopify secret"),
        ("SYNCTRAIL_WEBHOOK_MAX_BODY_BYTES", "2048"),
        ("SYNCTRAIL_MAX_PAYLOAD_BYTES", " 4096 "),
        ("HOME", "/root"),
    ])
    .expect("valid configuration");
    assert_eq!(config.sources.keys().collect::<Vec<_>>(), ["github", "shopify"]);
    assert_eq!(config.sources["github"].provider, Provider::GitHub);
    assert_eq!(config.sources["shopify"].provider, Provider::Shopify);
    assert_eq!((config.max_body_bytes, config.max_payload_bytes), (2048, 4096));
    let ingress = Ingress::new(config);
    let body = webhook("github/issues/opened.json");
    assert_eq!(
        ingress.handle("github", &github_headers("issues", &body, SECRET), &body),
        Verdict::TooLarge { size: body.len(), limit: 2048 }
    );
    let defaults = IngressConfig::from_vars(Vec::<(String, String)>::new()).expect("nothing configured");
    assert!(defaults.sources.is_empty());
    assert_eq!((defaults.max_body_bytes, defaults.max_payload_bytes), (1024 * 1024, 256 * 1024));
}

/// Configuration variables as (name, value) pairs.
type Vars<'a> = &'a [(&'a str, &'a str)];

#[test]
fn a_configuration_error_names_the_variable_to_fix() {
    let cases: [(Vars, ConfigError, &str); 6] = [
        (
            &[("SYNCTRAIL_WEBHOOK_SECRET_ERP", "s")],
            ConfigError::MissingMapping {
                variable: "SYNCTRAIL_WEBHOOK_SECRET_ERP".into(),
                mapping_variable: "SYNCTRAIL_WEBHOOK_SOURCE_ERP".into(),
            },
            "set SYNCTRAIL_WEBHOOK_SOURCE_ERP",
        ),
        (
            &[("SYNCTRAIL_WEBHOOK_SOURCE_ERP", ERP_MAPPING)],
            ConfigError::MissingSecret {
                variable: "SYNCTRAIL_WEBHOOK_SOURCE_ERP".into(),
                secret_variable: "SYNCTRAIL_WEBHOOK_SECRET_ERP".into(),
            },
            "SYNCTRAIL_WEBHOOK_SECRET_ERP is not",
        ),
        (
            &[("SYNCTRAIL_WEBHOOK_SECRET_GITHUB", "")],
            ConfigError::EmptySecret { variable: "SYNCTRAIL_WEBHOOK_SECRET_GITHUB".into() },
            "is empty",
        ),
        (
            &[("SYNCTRAIL_WEBHOOK_SECRET_GITHUB", "s"), ("SYNCTRAIL_WEBHOOK_SOURCE_GITHUB", ERP_MAPPING)],
            ConfigError::BuiltInMapping { variable: "SYNCTRAIL_WEBHOOK_SOURCE_GITHUB".into() },
            "built-in",
        ),
        (
            &[("SYNCTRAIL_WEBHOOK_SECRET_MY.ERP", "s")],
            ConfigError::InvalidSourceName { variable: "SYNCTRAIL_WEBHOOK_SECRET_MY.ERP".into() },
            "source name",
        ),
        (
            &[("SYNCTRAIL_WEBHOOK_MAX_BODY_BYTES", "1MB")],
            ConfigError::NotANumber { variable: "SYNCTRAIL_WEBHOOK_MAX_BODY_BYTES", value: "1MB".into() },
            "whole number",
        ),
    ];
    for (vars, expected, says) in cases {
        let error = IngressConfig::from_vars(vars.iter().copied()).expect_err("invalid configuration");
        assert_eq!(error, expected);
        assert!(error.to_string().contains(says), "{error}");
    }
    let valid = json!({"signature_header": "S", "encoding": "hex", "entity_type": "order", "external_id": "/id",
                       "updated_at": "/at"});
    for (key, value, says) in [
        ("encoding", Value::Null, "missing field `encoding`"),
        ("encoding", json!("sha1"), "unknown variant `sha1`"),
        ("external_id", json!("data.id"), "not a JSON pointer"),
        ("entity_type", json!("Order"), "entity_type"),
        ("signature_header", json!(" "), "signature_header is empty"),
        ("colour", json!("blue"), "unknown field `colour`"),
    ] {
        let mut mapping = valid.clone();
        let fields = mapping.as_object_mut().expect("an object");
        match value {
            Value::Null => fields.remove(key),
            value => fields.insert(key.to_owned(), value),
        };
        let mapping = mapping.to_string();
        let vars = [("SYNCTRAIL_WEBHOOK_SECRET_ERP", "s"), ("SYNCTRAIL_WEBHOOK_SOURCE_ERP", mapping.as_str())];
        let error = IngressConfig::from_vars(vars).expect_err("invalid mapping");
        assert!(
            matches!(&error, ConfigError::InvalidMapping { variable, .. } if variable == "SYNCTRAIL_WEBHOOK_SOURCE_ERP"),
            "{error:?}"
        );
        assert!(error.to_string().contains(says) && error.to_string().contains("docs/webhooks.md"), "{error}");
    }
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let config = IngressConfig::from_vars([
        ("SYNCTRAIL_WEBHOOK_SECRET_GITHUB", "gh-very-secret-value"),
        ("SYNCTRAIL_WEBHOOK_SECRET_ERP", "erp-very-secret-value"),
        ("SYNCTRAIL_WEBHOOK_SOURCE_ERP", ERP_MAPPING),
    ])
    .expect("valid configuration");
    let ingress = Ingress::new(config);
    let printed = format!("{ingress:?} {:#?}", ingress.config());
    assert!(printed.contains("github") && printed.contains("X-Erp-Signature"), "{printed}");
    assert!(!printed.contains("very-secret"), "{printed}");
    assert!(printed.contains("<redacted>"));
    assert!(Secret::new(b"").is_none(), "an empty key authenticates nothing");
}

// ---------------------------------------------------------------------------------------------------------------
// Through the engine
// ---------------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_replayed_github_delivery_is_applied_once() {
    let h = Harness::new();
    let ingress = ingress();
    let body = webhook("github/issues/edited.json");
    let event = mapped(ingress.handle("github", &github_headers("issues", &body, SECRET), &body));
    h.send(event.body.clone()).await;
    assert_eq!(h.deliver(1).await.only().status, Some(Status::Completed));
    // GitHub's "Redeliver": the same bytes under the same X-GitHub-Delivery.
    let replay = mapped(ingress.handle("github", &github_headers("issues", &body, SECRET), &body));
    h.send(replay.body).await;
    let outcome = h.deliver(1).await.only().clone();
    assert_eq!(
        (outcome.event_id.as_ref(), outcome.status, outcome.redelivered),
        (Some(&event.envelope.event_id), Some(Status::Completed), true)
    );
    assert_eq!(h.effects_of(&event.envelope.event_id).await, 1, "applied once");
    assert_eq!(h.mirror_state(&event.envelope.entity).await, Some(event.envelope.payload));
}

#[tokio::test]
async fn a_deleted_comment_stays_deleted_when_its_last_edit_of_the_same_second_arrives_late() {
    let h = Harness::new();
    let ingress = ingress();
    let mut events = Vec::new();
    for (action, delivery) in [("deleted", "d1"), ("edited", "e1")] {
        let body = webhook(&format!("github/issue_comment/{action}.json"));
        let signature = SignatureScheme::github().sign(&secret(SECRET), &body);
        let headers = headers(&[
            ("X-GitHub-Event", "issue_comment"),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &signature),
        ]);
        events.push(mapped(ingress.handle("github", &headers, &body)));
    }
    let (deleted, edited) = (&events[0], &events[1]);
    assert_eq!(deleted.envelope.updated_at, edited.envelope.updated_at, "GitHub gives both the same second");
    for event in &events {
        h.send(event.body.clone()).await;
        h.deliver(1).await;
    }
    assert_eq!(h.record(&deleted.envelope.event_id).await.status, Status::Completed);
    let late = h.record(&edited.envelope.event_id).await;
    assert_eq!(late.status, Status::Dropped, "the delete (version 1) orders after the edit");
    assert_eq!(h.effects_of(&edited.envelope.event_id).await, 0);
}

/// GitHub and Shopify write `updated_at` to the second: a create and an update of the same second share it (Shopify
/// sends `products/create` and `products/update` for one save; a bot labels an issue within a second of `opened`).
/// A create carries `version: -1`, so the update orders after it whichever arrives first.
#[tokio::test]
async fn a_create_delivered_after_an_update_of_the_same_second_is_dropped_and_the_update_stays() {
    let h = Harness::new();
    let ingress = ingress();
    let github = |body: &[u8], delivery: &str| {
        let signature = SignatureScheme::github().sign(&secret(SECRET), body);
        let headers = headers(&[
            ("X-GitHub-Event", "issues"),
            ("X-GitHub-Delivery", delivery),
            ("X-Hub-Signature-256", &signature),
        ]);
        mapped(ingress.handle("github", &headers, body))
    };
    let shopify = |topic: &str, body: &[u8], event_id: &str| {
        let headers = shopify_delivery(topic, body, event_id, "2022-01-01T00:00:00.5Z");
        mapped(ingress.handle("shopify", &headers, body))
    };
    // The same second's later states: the issue labelled, the product tagged (as the fixtures, one field changed).
    let labelled = with_field(&webhook("github/issues/edited.json"), "/issue", "labels", json!([{"name": "bug"}]));
    let tagged =
        with_field(&webhook("shopify/products/update.json"), "", "tags", json!("example, mens, t-shirt, sale"));
    let pairs = [
        (github(&labelled, "e1"), github(&webhook("github/issues/opened.json"), "o1")),
        (
            shopify("products/update", &tagged, "u1"),
            shopify("products/create", &webhook("shopify/products/create.json"), "c1"),
        ),
    ];
    for (update, create) in &pairs {
        let (updated, created) = (&update.envelope, &create.envelope);
        assert_eq!(
            (&updated.entity, updated.updated_at),
            (&created.entity, created.updated_at),
            "one entity, one second"
        );
        assert_ne!(updated.payload, created.payload, "two states");
        for event in [update, create] {
            h.send(event.body.clone()).await;
            h.deliver(1).await;
        }
        assert_eq!(h.record(&updated.event_id).await.status, Status::Completed);
        let late = h.record(&created.event_id).await;
        assert_eq!(late.status, Status::Dropped, "the create (version -1) orders before the update");
        assert_eq!(late.dropped_for.as_deref(), Some(updated.event_id.as_str()));
        assert_eq!(h.effects_of(&created.event_id).await, 0);
        assert_eq!(h.mirror_state(&updated.entity).await.as_ref(), Some(&updated.payload), "the update's state stays");
    }
}
