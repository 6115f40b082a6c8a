//! The outbound connectors (docs/connectors.md) against stand-in GitHub and Shopify APIs on loopback
//! (`support/github_api.rs`, `support/shopify_api.rs`: test code; the connectors are the real clients): what each
//! writes, one external write per event even when retried, rate limits counted as throttled and never as failed,
//! 5xx retried, 4xx refused with the API's message, and the echo — an outbound write, the stand-in's signed webhook
//! through `Ingress::handle` and the queue, the inbound echo ending `duplicate` of the outbound event — end to end.

use crate::support::github_api::{self, GitHubApi, REPO};
use crate::support::shopify_api::{self, ShopifyApi, PRODUCT, SHOP};
use crate::support::standin::{Response, Webhook};
use crate::support::*;
use chrono::Duration;
use serde_json::{json, Value};
use std::sync::Arc;
use synctrail::destination::connectors::github::{marker, LOOKBACK, LOOKBACK_PAGE};
use synctrail::destination::connectors::{GitHubConnector, ShopifyConnector, MAX_REDIRECTS};
use synctrail::destination::http::transport::MAX_ANSWER_BYTES;
use synctrail::destination::Destination;
use synctrail::ingress::{Ingress, IngressConfig, Provider, Secret, Verdict};
use synctrail::model::{ErrorKind, EventId, EventRecord, Message, RedriveReason, Status, StatusReport};
use synctrail::{Clock, Incoming, Invocation};

// ---- Harnesses ----

/// A harness whose outbound events go to the GitHub connector, talking to `api`.
fn over_github(api: &GitHubApi) -> Harness {
    let config = api.config();
    Harness::with(Options {
        outbound: Some(Box::new(move |clock| -> Arc<dyn Destination> {
            Arc::new(GitHubConnector::new(config, clock).expect("a GitHub connector"))
        })),
        ..Options::default()
    })
}

/// A harness whose outbound events go to the Shopify connector, talking to `api`.
fn over_shopify(api: &ShopifyApi) -> Harness {
    let config = api.config();
    Harness::with(Options {
        outbound: Some(Box::new(move |clock| -> Arc<dyn Destination> {
            Arc::new(ShopifyConnector::new(config, clock).expect("a Shopify connector"))
        })),
        ..Options::default()
    })
}

/// An outbound change of `entity_type` `external_id` in the stand-in repository's tenant.
fn github(entity_type: &str, external_id: &str) -> Env {
    Env::new("github", entity_type, external_id).tenant(github_api::TENANT).outbound()
}

/// An outbound change of issue `number` of the stand-in repository, made at `t0 + seconds`.
fn issue(number: &str, seconds: i64, payload: Value) -> Env {
    github("issue", &format!("{REPO}#{number}")).at(seconds).payload(payload)
}

/// An outbound change of the stand-in shop's product, made at `t0 + seconds`.
fn product(seconds: i64, payload: Value) -> Env {
    Env::product(&PRODUCT.to_string()).tenant(SHOP).outbound().at(seconds).payload(payload)
}

/// The ingress the stand-ins' webhooks are delivered to.
fn ingress() -> Ingress {
    let secret = |text: &str| Secret::new(text.as_bytes()).expect("a secret");
    Ingress::new(
        IngressConfig::default()
            .with_source("github", secret(github_api::WEBHOOK_SECRET), Provider::GitHub)
            .with_source("shopify", secret(shopify_api::WEBHOOK_SECRET), Provider::Shopify),
    )
}

/// Delivers webhooks as the ingress front end does (verified and mapped by `Ingress::handle`, the envelope sent
/// to the queue), then drains the queue through the processor; returns the events they became.
async fn deliver_webhooks(h: &Harness, source: &str, webhooks: Vec<Webhook>) -> Vec<EventId> {
    let ingress = ingress();
    let mut events = Vec::new();
    for webhook in webhooks {
        match ingress.handle(source, &webhook.headers(), &webhook.body) {
            Verdict::Mapped(event) => {
                h.send(event.body.clone()).await;
                events.push(event.envelope.event_id.clone());
            }
            other => panic!("the stand-in's webhook was not mapped: {other:?}"),
        }
    }
    h.drain().await;
    events
}

/// The pages of `path` the stand-in was asked for (`GET path?…&page=N`), in order.
fn pages_listed(api: &GitHubApi, path: &str) -> Vec<String> {
    let lists = api.requests().into_iter().filter(|r| r.method == "GET" && r.path == path);
    lists
        .map(|r| {
            assert_eq!(r.query.get("per_page"), Some(&LOOKBACK_PAGE.to_string()), "small pages: {:?}", r.query);
            r.query.get("page").cloned().unwrap_or_default()
        })
        .collect()
}

/// Sends `create`, has its first attempt write and then fail with a 5xx, lets `meanwhile` happen on GitHub, then
/// delivers the retry; returns the retry's record.
async fn create_retried_after(h: &Harness, api: &GitHubApi, create: &Env, meanwhile: impl FnOnce()) -> EventRecord {
    api.fault(github_api::Fault::AfterWrite(502));
    h.send_env(create).await;
    let d = h.deliver(1).await;
    assert_eq!(h.status_of(create).await, Status::Errored, "the first attempt's outcome is unknown");
    meanwhile();
    h.advance(d.retry_after(0));
    deliver_one(h, create).await
}

/// Delivers the only queued message and returns the event's record.
async fn deliver_one(h: &Harness, env: &Env) -> EventRecord {
    h.deliver(1).await;
    h.record_of(env).await
}

/// Asserts `record` is waiting after a throttled attempt that did not count toward `failed`, and returns the
/// delay its message went back with.
fn assert_throttled(record: &EventRecord, d: &Delivery, naming: &str) -> Duration {
    assert_eq!(record.status, Status::Errored, "{record:?}");
    let error = record.error.as_ref().expect("the throttled answer is recorded");
    assert_eq!((error.kind, error.retryable), (ErrorKind::Throttled, true));
    assert!(error.message.contains(naming), "{}", error.message);
    assert_eq!(record.attempts_this_drive(), 0, "a throttled attempt does not use up the event's attempts");
    let note = record.history.last().and_then(|e| e.note.clone()).unwrap_or_default();
    assert!(note.starts_with("throttled, not counted toward failed"), "{note}");
    d.retry_after(0)
}

// ---- GitHub: what it writes ----

#[tokio::test]
async fn an_outbound_issue_update_patches_the_issue_and_records_what_github_holds() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let change = issue(
        "1",
        0,
        json!({"title": "Fix the README", "state": "closed", "labels": ["docs", "bug"],
                                      "number": 1, "comments": 4}),
    );
    h.send_env(&change).await;

    let record = deliver_one(&h, &change).await;

    assert_eq!(record.status, Status::Completed, "{record:?}");
    let stored = api.issue(1);
    assert_eq!((stored["title"].as_str(), stored["state"].as_str()), (Some("Fix the README"), Some("closed")));
    assert_eq!(stored["comments"], json!(1), "only writable fields are written: the count stays GitHub's");
    assert_eq!(
        api.writes(),
        [format!("PATCH /repos/{REPO}/issues/1")],
        "one request, a PATCH: nothing looked up first"
    );
    let request = &api.requests()[0];
    assert_eq!(request.body, json!({"title": "Fix the README", "state": "closed", "labels": ["docs", "bug"]}));
    assert_eq!(request.headers["authorization"], format!("Bearer {}", github_api::TOKEN));
    assert_eq!(request.headers["x-github-api-version"], "2022-11-28");
    assert_eq!(request.headers["accept"], "application/vnd.github+json");
    assert!(request.headers["user-agent"].starts_with("synctrail/"));
    let written = record.written.expect("what GitHub holds is recorded");
    assert_eq!((written.created, written.updated_at), (None, time(1)), "GitHub's own updated_at after the write");
    assert_eq!(written.fingerprint.fields, ["/state", "/title"], "labels come back as objects: not compared");
    assert!(written.fingerprint.matches(&stored));
    assert!(h.mirror_state(&change.entity()).await.is_none(), "an outbound change is not stored on our side");
}

#[tokio::test]
async fn an_outbound_issue_create_posts_it_with_a_hidden_marker_and_records_its_number() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let create = github("issue", &format!("{REPO}#draft-1"))
        .kind("create")
        .payload(json!({"title": "Broken link", "body": "The link to the docs 404s.", "labels": ["bug"]}));
    h.send_env(&create).await;

    let record = deliver_one(&h, &create).await;

    assert_eq!(record.status, Status::Completed, "{record:?}");
    assert_eq!(api.writes(), [format!("POST /repos/{REPO}/issues")]);
    let created = api.issue(2);
    let body = format!("The link to the docs 404s.\n\n{}", marker(&create.event_id()));
    assert_eq!((created["title"].as_str(), created["body"].as_str()), (Some("Broken link"), Some(body.as_str())));
    let report = serde_json::to_value(StatusReport::from(&record)).expect("JSON");
    assert_eq!(report["written"]["created"], json!(format!("{REPO}#2")), "the status names the new issue");
}

#[tokio::test]
async fn outbound_comments_are_updated_and_created_on_the_comment_endpoints() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let edit = github("issue_comment", &github_api::COMMENT.to_string())
        .at(0)
        .payload(json!({"repository": REPO, "body": "Edited from our side"}));
    let reply = github("issue_comment", "reply-1")
        .kind("create")
        .payload(json!({"repository": REPO, "issue_number": 1, "body": "Thanks, fixed."}));

    h.apply_in_turn(&[&edit, &reply]).await;

    assert_eq!(h.status_of(&edit).await, Status::Completed);
    assert_eq!(api.comment(github_api::COMMENT)["body"], "Edited from our side");
    let created = h.record_of(&reply).await.written.expect("written").created.expect("the new comment's id");
    let id: u64 = created.parse().expect("a comment id");
    assert!(api.comment(id)["body"].as_str().is_some_and(|b| b.starts_with("Thanks, fixed.")));
    assert_eq!(
        api.writes(),
        [
            format!("PATCH /repos/{REPO}/issues/comments/{}", github_api::COMMENT),
            format!("POST /repos/{REPO}/issues/1/comments")
        ]
    );
}

// ---- GitHub: one write per event ----

#[tokio::test]
async fn a_retry_after_a_5xx_that_had_written_the_update_does_not_write_again() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let change = issue("1", 0, json!({"title": "Written, then a 502", "labels": ["bug"]}));
    api.fault(github_api::Fault::AfterWrite(502));
    h.send_env(&change).await;

    let d = h.deliver(1).await;
    let first = h.record_of(&change).await;
    assert_eq!(first.status, Status::Errored);
    assert_eq!(first.error.map(|e| e.kind), Some(ErrorKind::Retryable), "a 5xx is retried");
    h.advance(d.retry_after(0));
    let done = deliver_one(&h, &change).await;

    assert_eq!(done.status, Status::Completed);
    assert_eq!(api.writes().len(), 1, "one external write: the retry found it written");
    let lines: Vec<String> = api.requests().iter().map(|r| r.line()).collect();
    assert_eq!(lines, [format!("PATCH /repos/{REPO}/issues/1"), format!("GET /repos/{REPO}/issues/1")]);
    assert_eq!(done.written.expect("written").updated_at, time(1), "the state the first attempt left");
}

#[tokio::test]
async fn a_retry_after_a_5xx_that_had_created_the_issue_finds_it_by_its_marker() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let create = github("issue", &format!("{REPO}#draft-2")).kind("create").payload(json!({"title": "Once only"}));
    api.fault(github_api::Fault::AfterWrite(500));
    h.send_env(&create).await;

    let d = h.deliver(1).await;
    assert_eq!(h.status_of(&create).await, Status::Errored);
    h.advance(d.retry_after(0));
    let done = deliver_one(&h, &create).await;

    assert_eq!(done.status, Status::Completed);
    assert_eq!(api.issue_count(), 2, "one issue created, not two");
    assert_eq!(api.writes(), [format!("POST /repos/{REPO}/issues")]);
    assert_eq!(done.written.and_then(|w| w.created), Some(format!("{REPO}#2")));
    let list = &api.requests()[1];
    assert_eq!((list.line(), list.query["sort"].as_str()), (format!("GET /repos/{REPO}/issues"), "created"));
}

#[tokio::test]
async fn a_5xx_that_wrote_nothing_is_retried_and_then_written_once() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let change = issue("1", 0, json!({"body": "After an outage"}));
    api.fault(github_api::Fault::error(503, "Service Unavailable"));
    h.send_env(&change).await;

    let d = h.deliver(1).await;
    let first = h.record_of(&change).await;
    assert_eq!((first.status, first.attempts_this_drive()), (Status::Errored, 1), "a 5xx counts toward failed");
    assert!(first.error.expect("error").message.starts_with("HTTP 503 Service Unavailable"));
    h.advance(d.retry_after(0));

    assert_eq!(deliver_one(&h, &change).await.status, Status::Completed);
    assert_eq!(api.writes().len(), 1);
    assert_eq!(api.issue(1)["body"], "After an outage");
}

#[tokio::test]
async fn a_reprocessed_create_finds_its_issue_and_creates_no_second_one() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let create = github("issue", &format!("{REPO}#draft-4")).kind("create").payload(json!({"title": "Reprocessed"}));
    h.apply_in_turn(&[&create]).await;

    h.send(Message::redrive_body(&create.event_id(), None, RedriveReason::Reprocess, false)).await;
    let done = deliver_one(&h, &create).await;

    assert_eq!((done.status, done.attempt), (Status::Completed, 2));
    assert_eq!(done.written.and_then(|w| w.created), Some(format!("{REPO}#2")), "the issue the first run created");
    assert_eq!((api.issue_count(), api.writes().len()), (2, 1), "one issue, one write");
}

#[tokio::test]
async fn a_retried_create_pages_through_newer_issues_to_find_its_marker_and_creates_nothing_twice() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let create = github("issue", &format!("{REPO}#draft-5")).kind("create").payload(json!({"title": "Busy repo"}));

    let done = create_retried_after(&h, &api, &create, || api.open_issues_on_github(40, "Opened meanwhile")).await;

    assert_eq!(done.status, Status::Completed, "{done:?}");
    assert_eq!(done.written.and_then(|w| w.created), Some(format!("{REPO}#2")), "the issue the first attempt made");
    assert_eq!((api.issue_count(), api.writes().len()), (42, 1), "40 issues of others, ours once");
    let issues = format!("/repos/{REPO}/issues");
    assert_eq!(pages_listed(&api, &issues), ["1", "2", "3", "4", "5"], "41st newest: on page 5, the last asked for");
}

#[tokio::test]
async fn a_retried_create_finds_its_marker_behind_newer_issues_too_long_for_one_answer() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let create = github("issue", &format!("{REPO}#draft-6")).kind("create").payload(json!({"title": "Under PRs"}));
    let long_body = "Bumps the dependency. ".repeat(1000);

    let done = create_retried_after(&h, &api, &create, || api.open_issues_on_github(90, &long_body)).await;

    let newest: usize = (3..=92u64).map(|n| serde_json::to_vec(&api.issue(n)).expect("JSON").len()).sum();
    assert!(newest > MAX_ANSWER_BYTES, "one answer of the newest {LOOKBACK} would be cut: {newest} bytes");
    assert_eq!(done.status, Status::Completed, "{done:?}");
    assert_eq!(done.written.and_then(|w| w.created), Some(format!("{REPO}#2")));
    assert_eq!((api.issue_count(), api.writes().len()), (92, 1), "no second issue");
    assert_eq!(pages_listed(&api, &format!("/repos/{REPO}/issues")).len(), 10, "the 91st newest is on page 10");
}

#[tokio::test]
async fn a_retried_create_looks_through_at_most_the_100_newest_issues_in_10_requests_then_creates() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let create = github("issue", &format!("{REPO}#draft-7")).kind("create").payload(json!({"title": "Far back"}));

    let done =
        create_retried_after(&h, &api, &create, || api.open_issues_on_github(LOOKBACK, "Opened meanwhile")).await;

    let pages = pages_listed(&api, &format!("/repos/{REPO}/issues"));
    let expected: Vec<String> = (1..=LOOKBACK / LOOKBACK_PAGE).map(|page| page.to_string()).collect();
    assert_eq!(pages, expected, "{LOOKBACK} newest, {LOOKBACK_PAGE} a page, then no further");
    assert_eq!(done.status, Status::Completed, "{done:?}");
    assert_eq!(
        done.written.and_then(|w| w.created),
        Some(format!("{REPO}#103")),
        "the documented limit: with more than {LOOKBACK} newer issues the retry creates another"
    );
    assert_eq!(api.writes(), [format!("POST /repos/{REPO}/issues"), format!("POST /repos/{REPO}/issues")]);
}

#[tokio::test]
async fn a_retried_comment_create_pages_through_the_repositorys_newest_comments() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let reply = github("issue_comment", "reply-5")
        .kind("create")
        .payload(json!({"repository": REPO, "issue_number": 1, "body": "Once only"}));

    let done = create_retried_after(&h, &api, &reply, || api.comment_on_github(15, "Me too")).await;

    assert_eq!(done.status, Status::Completed, "{done:?}");
    let created: u64 = done.written.and_then(|w| w.created).expect("the comment's id").parse().expect("an id");
    assert!(api.comment(created)["body"].as_str().is_some_and(|b| b.starts_with("Once only")));
    assert_eq!((api.comments().len(), api.writes().len()), (17, 1), "the first comment, 15 of others, ours once");
    assert_eq!(pages_listed(&api, &format!("/repos/{REPO}/issues/comments")), ["1", "2"]);
}

// ---- GitHub: redirects ----

#[tokio::test]
async fn changes_to_a_renamed_repository_follow_its_301_and_land_under_the_new_name() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    api.renamed_from("Hello-World-Old");
    let update =
        github("issue", "Codertocat/Hello-World-Old#1").at(0).payload(json!({"title": "Renamed, still written"}));
    let create = github("issue", "Codertocat/Hello-World-Old#draft-8")
        .kind("create")
        .payload(json!({"title": "Created under the old name"}));

    h.apply_in_turn(&[&update, &create]).await;

    assert_eq!((h.status_of(&update).await, h.status_of(&create).await), (Status::Completed, Status::Completed));
    assert_eq!(api.issue(1)["title"], "Renamed, still written");
    assert_eq!(api.issue(2)["title"], "Created under the old name");
    assert_eq!(api.writes(), [format!("PATCH /repos/{REPO}/issues/1"), format!("POST /repos/{REPO}/issues")]);
    let requests = api.requests();
    let lines: Vec<String> = requests.iter().map(|r| r.line()).collect();
    assert_eq!(
        lines,
        [
            "PATCH /repos/Codertocat/Hello-World-Old/issues/1".to_owned(),
            format!("PATCH /repos/{REPO}/issues/1"),
            "POST /repos/Codertocat/Hello-World-Old/issues".to_owned(),
            format!("POST /repos/{REPO}/issues"),
        ]
    );
    for pair in requests.chunks(2) {
        assert_eq!(pair[0].raw, pair[1].raw, "the same body again");
        assert_eq!(pair[1].headers["authorization"], format!("Bearer {}", github_api::TOKEN));
    }
}

#[tokio::test]
async fn a_redirect_to_another_origin_fails_the_event_and_sends_nothing_there() {
    let api = GitHubApi::start(t0());
    let elsewhere = GitHubApi::start(t0());
    let h = over_github(&api);
    let moved = Response::json(302, &json!({"message": "Found"}))
        .with("Location", format!("{}/repos/{REPO}/issues/1", elsewhere.url()));
    api.fault(github_api::Fault::Answer(moved));
    let change = issue("1", 0, json!({"title": "Not for another host"}));

    h.apply_in_turn(&[&change]).await;

    let record = h.record_of(&change).await;
    assert_eq!(record.status, Status::Failed, "{record:?}");
    let error = record.error.expect("the refusal is recorded");
    assert_eq!(error.kind, ErrorKind::Permanent);
    assert!(error.message.contains("redirected to another origin"), "{}", error.message);
    assert!(error.message.contains(elsewhere.url()) && error.message.contains(api.url()), "{}", error.message);
    assert!(!error.message.contains(github_api::TOKEN));
    assert!(elsewhere.requests().is_empty(), "the token never went to the other origin");
    assert_eq!((api.requests().len(), api.writes().len()), (1, 0));
}

#[tokio::test]
async fn redirects_are_followed_at_most_three_times_in_a_row() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    for _ in 0..=MAX_REDIRECTS {
        let again = Response::json(307, &json!({"message": "Temporary Redirect"}))
            .with("Location", format!("/repos/{REPO}/issues/1"));
        api.fault(github_api::Fault::Answer(again));
    }
    let change = issue("1", 0, json!({"title": "Round and round"}));

    h.apply_in_turn(&[&change]).await;

    let record = h.record_of(&change).await;
    assert_eq!(record.status, Status::Failed, "{record:?}");
    let message = record.error.expect("error").message;
    assert!(message.contains("redirected more than 3 times"), "{message}");
    assert_eq!(api.requests().len(), MAX_REDIRECTS + 1, "the request and three redirects, no more");
    assert!(api.writes().is_empty());
}

// ---- GitHub: refusals ----

#[tokio::test]
async fn a_4xx_fails_the_event_at_once_with_githubs_message() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let blank = issue("1", 0, json!({"title": ""}));
    let missing = issue("99", 0, json!({"title": "No such issue"}));
    let forbidden = issue("1", 5, json!({"title": "Not allowed"}));
    api.fault(github_api::Fault::error(403, "Resource not accessible by personal access token"));
    h.apply_in_turn(&[&forbidden]).await;
    h.apply_in_turn(&[&blank, &missing]).await;

    for (env, naming) in [
        (&forbidden, ["HTTP 403 Forbidden: {", "Resource not accessible by personal access token"]),
        (&blank, ["HTTP 422 Unprocessable Entity: {", "Validation Failed\",\"status\":\"422\"}"]),
        (&missing, ["HTTP 404 Not Found: {", "does not exist, or the token can't see it"]),
    ] {
        let record = h.record_of(env).await;
        assert_eq!((record.status, record.attempt), (Status::Failed, 1), "{}", record.event_id);
        let error = record.error.expect("the refusal is recorded");
        assert_eq!((error.kind, error.retryable), (ErrorKind::Permanent, false));
        assert!(naming.iter().all(|text| error.message.contains(text)), "{}", error.message);
    }
    assert!(api.writes().is_empty());
}

// ---- GitHub: rate limits ----

#[tokio::test]
async fn a_used_up_primary_limit_throttles_later_changes_until_the_reset_without_sending_them() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let first = issue("1", 0, json!({"title": "The last request of the hour"}));
    let second = issue("1", 5, json!({"title": "After the reset"}));
    api.rate(1, time(600));

    assert_eq!(h.apply_in_turn(&[&first]).await[0].only().status, Some(Status::Completed));
    let requests = api.requests().len();
    h.send_env(&second).await;
    let d = h.deliver(1).await;
    let delay = assert_throttled(&h.record_of(&second).await, &d, "x-ratelimit-remaining: 0");

    assert_eq!(api.requests().len(), requests, "nothing sent while the limit is used up");
    assert_eq!(delay, Duration::seconds(600), "until the reset");
    api.rate(github_api::RATE_LIMIT, time(4200));
    h.advance(Duration::seconds(600));
    assert_eq!(deliver_one(&h, &second).await.status, Status::Completed);
    assert_eq!(api.issue(1)["title"], "After the reset");
}

#[tokio::test]
async fn every_kind_of_github_rate_limit_answer_is_throttled_for_its_delay_and_never_failed() {
    let limited = |status: u16, message: &str, headers: &[(&str, String)]| {
        let mut response = Response::json(
            status,
            &json!({"message": message, "documentation_url": "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"}),
        );
        for (name, value) in headers {
            response = response.with(name, value.clone());
        }
        github_api::Fault::Answer(response)
    };
    let used_up = [("x-ratelimit-remaining", "0".to_owned()), ("x-ratelimit-reset", time(120).timestamp().to_string())];
    let remaining = ("x-ratelimit-remaining", "4000".to_owned());
    let cases = [
        ("403, primary limit used up", limited(403, "API rate limit exceeded for user ID 1.", &used_up), 120),
        (
            "403, secondary limit with retry-after",
            limited(
                403,
                "You have exceeded a secondary rate limit.",
                &[("retry-after", "60".into()), remaining.clone()],
            ),
            60,
        ),
        (
            "403 with retry-after and x-ratelimit-remaining: 0: retry-after first",
            limited(
                403,
                "You have exceeded a secondary rate limit.",
                &[("retry-after", "30".into()), used_up[0].clone(), used_up[1].clone()],
            ),
            30,
        ),
        (
            "429 with retry-after",
            limited(429, "Too many requests", &[("retry-after", "30".into()), remaining.clone()]),
            30,
        ),
        (
            "403, secondary limit without retry-after: a minute",
            limited(403, "You have exceeded a secondary rate limit. Please wait a few minutes.", &[remaining]),
            60,
        ),
    ];
    for (case, fault, seconds) in cases {
        let api = GitHubApi::start(t0());
        let h = over_github(&api);
        let change = issue("1", 0, json!({"title": case}));
        api.fault(fault);
        h.send_env(&change).await;

        let d = h.deliver(1).await;
        let status = if case.starts_with("429") { "HTTP 429 Too Many Requests" } else { "HTTP 403 Forbidden" };
        let delay = assert_throttled(&h.record_of(&change).await, &d, status);
        assert_eq!(delay, Duration::seconds(seconds), "{case}");
        let requests = api.requests().len();
        let other = github("issue_comment", &github_api::COMMENT.to_string())
            .at(0)
            .payload(json!({"repository": REPO, "body": "another resource, under the same limit"}));
        h.send_env(&other).await;
        let d = h.deliver(1).await;
        assert_throttled(&h.record_of(&other).await, &d, "not sent");
        assert_eq!(api.requests().len(), requests, "{case}: later changes wait without sending");

        h.advance(Duration::seconds(seconds));
        h.drain().await;
        assert_eq!((h.status_of(&change).await, h.status_of(&other).await), (Status::Completed, Status::Completed));
        assert_eq!(api.issue(1)["title"], case);
    }
}

#[tokio::test]
async fn secondary_limits_in_a_row_without_retry_after_wait_twice_as_long_each_time_until_an_answer_succeeds() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let secondary = || {
        let message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.";
        github_api::Fault::Answer(
            Response::json(403, &json!({"message": message})).with("x-ratelimit-remaining", "4000"),
        )
    };
    let first = issue("1", 0, json!({"title": "After three secondary limits"}));
    let second = issue("1", 5, json!({"title": "After one more"}));
    for _ in 0..3 {
        api.fault(secondary());
    }
    h.send_env(&first).await;

    let mut delays = Vec::new();
    for _ in 0..3 {
        let d = h.deliver(1).await;
        let delay = assert_throttled(&h.record_of(&first).await, &d, "HTTP 403 Forbidden");
        delays.push(delay.num_seconds());
        h.advance(delay);
    }
    assert_eq!(delays, [60, 120, 240], "a minute, then doubled while they continue");
    assert_eq!(deliver_one(&h, &first).await.status, Status::Completed);

    api.fault(secondary());
    h.send_env(&second).await;
    let d = h.deliver(1).await;
    let delay = assert_throttled(&h.record_of(&second).await, &d, "HTTP 403 Forbidden");
    assert_eq!(delay, Duration::seconds(60), "a successful answer between: back to a minute");
    h.advance(delay);
    assert_eq!(deliver_one(&h, &second).await.status, Status::Completed);
    assert_eq!(api.issue(1)["title"], "After one more");
}

// ---- Shopify ----

#[tokio::test]
async fn an_outbound_product_update_puts_the_product_and_records_what_shopify_holds() {
    let api = ShopifyApi::start(t0());
    let h = over_shopify(&api);
    let change = product(
        0,
        json!({"title": "Example T-Shirt, organic", "tags": "t-shirt, organic,mens",
                                   "id": PRODUCT, "variants": [], "created_at": "2020-01-01T00:00:00Z"}),
    );
    h.send_env(&change).await;

    let record = deliver_one(&h, &change).await;

    assert_eq!(record.status, Status::Completed, "{record:?}");
    let path = format!("/admin/api/{}/products/{PRODUCT}.json", shopify_api::API_VERSION);
    assert_eq!(api.writes(), [format!("PUT {path}")]);
    let request = &api.requests()[0];
    assert_eq!(request.headers["x-shopify-access-token"], shopify_api::TOKEN);
    let sent =
        json!({"product": {"id": PRODUCT, "title": "Example T-Shirt, organic", "tags": "t-shirt, organic,mens"}});
    assert_eq!(request.body, sent, "the product's id and the writable fields only");
    let stored = api.product(PRODUCT);
    assert_eq!(stored["tags"], "mens, organic, t-shirt", "Shopify normalises tags");
    let written = record.written.expect("written");
    assert_eq!(written.updated_at, time(1));
    assert_eq!(written.fingerprint.fields, ["/tags", "/title"]);
    assert!(written.fingerprint.matches(&stored), "computed from the answer, so Shopify's normalised tags match");
}

#[tokio::test]
async fn a_retry_after_a_5xx_that_had_written_the_product_does_not_write_again() {
    let api = ShopifyApi::start(t0());
    let h = over_shopify(&api);
    let change = product(0, json!({"vendor": "Acme Organics", "tags": "sale,summer"}));
    api.fault(shopify_api::Fault::AfterWrite(502));
    h.send_env(&change).await;

    let d = h.deliver(1).await;
    let first = h.record_of(&change).await;
    assert_eq!((first.status, first.error.map(|e| e.kind)), (Status::Errored, Some(ErrorKind::Retryable)));
    h.advance(d.retry_after(0));
    let done = deliver_one(&h, &change).await;

    assert_eq!(done.status, Status::Completed);
    assert_eq!(api.writes().len(), 1, "the retry read the product, found it written (tags as a set) and wrote nothing");
    assert_eq!(api.requests().iter().map(|r| r.method.as_str()).collect::<Vec<_>>(), ["PUT", "GET"]);
}

#[tokio::test]
async fn a_nearly_full_call_bucket_pauses_the_next_request_until_it_has_leaked() {
    let api = ShopifyApi::start(t0());
    let h = over_shopify(&api);
    api.fill(39.0);
    let first = product(0, json!({"title": "First"}));
    let second = product(5, json!({"title": "Second"}));

    let d = h.apply_in_turn(&[&first, &second]).await;

    assert!(d.iter().all(|d| d.only().status == Some(Status::Completed)));
    assert_eq!(api.requests().len(), 2, "no 429, no retry");
    // The first answer said 39/40: sent at once, the second request would have found the bucket full (a 429).
    // It waited for one call to leak out first (half a second at 2 a second).
    let arrivals = api.arrivals();
    assert!(
        arrivals[0] > 38.0 && arrivals[1] <= arrivals[0],
        "the second request came before a call leaked: {arrivals:?}"
    );
    assert_eq!(api.writes().len(), 2);
}

#[tokio::test]
async fn a_429_from_shopify_is_throttled_for_its_retry_after_and_does_not_use_up_attempts() {
    let api = ShopifyApi::start(t0());
    let mut settings = settings();
    settings.max_attempts = 1;
    let config = api.config();
    let h = Harness::with(Options {
        settings,
        outbound: Some(Box::new(move |clock| -> Arc<dyn Destination> {
            Arc::new(ShopifyConnector::new(config, clock).expect("a Shopify connector"))
        })),
        ..Options::default()
    });
    let change = product(0, json!({"title": "After the 429s"}));
    let too_many = json!({"errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."});
    for _ in 0..2 {
        api.fault(shopify_api::Fault::Answer(Response::json(429, &too_many).with("Retry-After", "2.0")));
    }
    h.send_env(&change).await;

    for _ in 0..2 {
        let d = h.deliver(1).await;
        let delay = assert_throttled(&h.record_of(&change).await, &d, "HTTP 429 Too Many Requests");
        assert_eq!(delay, Duration::seconds(2), "Shopify's Retry-After: 2.0");
        h.advance(delay);
    }

    assert_eq!(
        deliver_one(&h, &change).await.status,
        Status::Completed,
        "one attempt allowed: two 429s did not use it"
    );
    assert_eq!(api.product(PRODUCT)["title"], "After the 429s");
}

#[tokio::test]
async fn a_product_update_shopify_refuses_fails_with_its_errors_and_another_shop_is_never_written() {
    let api = ShopifyApi::start(t0());
    let h = over_shopify(&api);
    let blank = product(0, json!({"title": " "}));
    let other_shop = Env::product(&PRODUCT.to_string()).tenant("someone-else").outbound().at(0).titled("Not theirs");
    h.apply_in_turn(&[&blank, &other_shop]).await;

    for (env, naming) in [
        (&blank, "HTTP 422 Unprocessable Entity: {\"errors\":{\"title\":[\"can't be blank\"]}}"),
        (&other_shop, "this connector writes to shop johns-apparel"),
    ] {
        let record = h.record_of(env).await;
        assert_eq!(record.status, Status::Failed);
        let error = record.error.expect("error");
        assert_eq!(error.kind, ErrorKind::Permanent);
        assert!(error.message.contains(naming), "{}", error.message);
    }
    assert_eq!(api.requests().len(), 1, "the other shop's change was refused before any request");
    assert!(api.writes().is_empty());
}

// ---- The echo, end to end ----

#[tokio::test]
async fn github_echoes_of_an_outbound_write_end_duplicate_and_a_later_edit_on_github_applies() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let change = issue("1", 0, json!({"title": "Spelling fixed", "state": "closed"}));
    h.apply_in_turn(&[&change]).await;
    let echoes = api.take_webhooks();
    assert_eq!(echoes.len(), 2, "GitHub sends an `edited` and a `closed` delivery for the one write");
    assert!(echoes[0].json()["issue"].get("closed_by").is_none(), "a webhook's issue is not the API's answer");

    let events = deliver_webhooks(&h, "github", echoes).await;

    for event in &events {
        let echo = h.record(event).await;
        assert_eq!((echo.status, echo.duplicate_of.as_ref()), (Status::Duplicate, Some(&change.event_id())));
        assert_eq!(echo.entity.as_ref(), Some(&change.entity()));
    }
    assert_eq!(api.writes().len(), 1, "one external write in total: the echoes wrote nothing back");
    assert!(h.mirror_state(&change.entity()).await.is_none(), "nothing re-applied on our side");

    api.edit_on_github(1, json!({"title": "Spelling fixed, and the grammar"}));
    let later = deliver_webhooks(&h, "github", api.take_webhooks()).await;

    assert_eq!(h.record(&later[0]).await.status, Status::Completed);
    let state = h.mirror_state(&change.entity()).await.expect("the genuine change is applied");
    assert_eq!(state["title"], "Spelling fixed, and the grammar");
    assert_eq!(api.writes().len(), 1, "and nothing was written back to GitHub for it");
}

/// Verification compares our side with the replay of what was applied there: an outbound change went to GitHub, not
/// to our side (its echo ended `duplicate`), so it is not replayed — and a repair never writes it to GitHub again.
#[tokio::test]
async fn verify_leaves_out_outbound_changes_a_connector_wrote_and_its_repair_writes_nothing_to_github() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let inbound = Env::new("github", "issue", &format!("{REPO}#1"))
        .tenant(github_api::TENANT)
        .at(10)
        .payload(json!({"title": "Reported", "state": "open"}));
    h.send_env(&inbound).await;
    h.drain().await;
    let outbound = issue("1", 20, json!({"title": "Spelling fixed", "state": "closed"}));
    h.apply_in_turn(&[&outbound]).await;
    assert_eq!((h.status_of(&outbound).await, api.writes().len()), (Status::Completed, 1));

    let options = synctrail::engine::verify::VerifyOptions { repair: true, trace_header: None };
    let report = h.engine.verify(&outbound.entity(), &options).await.expect("verify");

    assert_eq!(report.finding, synctrail::engine::verify::Finding::Equal, "{report:?}");
    assert_eq!(report.newest_event, Some(inbound.event_id()), "the newest change applied on our side");
    assert_eq!(h.depth().await.visible, 0, "no repair re-driven");
    assert_eq!(api.writes().len(), 1, "nothing written to GitHub again");
}

#[tokio::test]
async fn github_echoes_of_created_issues_and_comments_end_duplicate_under_their_new_ids() {
    let api = GitHubApi::start(t0());
    let h = over_github(&api);
    let create = github("issue", &format!("{REPO}#draft-3")).kind("create").payload(json!({"title": "New from us"}));
    let reply = github("issue_comment", "reply-3")
        .kind("create")
        .payload(json!({"repository": REPO, "issue_number": 1, "body": "A reply from us"}));
    h.apply_in_turn(&[&create, &reply]).await;

    let events = deliver_webhooks(&h, "github", api.take_webhooks()).await;

    assert_eq!(events.len(), 2);
    let (opened, commented) = (h.record(&events[0]).await, h.record(&events[1]).await);
    assert_eq!(opened.entity.map(|e| e.to_string()), Some(format!("codertocat/github/issue/{REPO}#2")));
    assert_eq!((opened.status, opened.duplicate_of), (Status::Duplicate, Some(create.event_id())));
    assert_eq!((commented.status, commented.duplicate_of), (Status::Duplicate, Some(reply.event_id())));
    assert_eq!(api.writes().len(), 2);
}

#[tokio::test]
async fn shopify_echo_of_an_outbound_update_ends_duplicate_and_a_later_admin_edit_applies() {
    let api = ShopifyApi::start(t0());
    let h = over_shopify(&api);
    let change = product(0, json!({"title": "Example T-Shirt (2026)", "tags": "summer, example"}));
    h.apply_in_turn(&[&change]).await;

    let echo = deliver_webhooks(&h, "shopify", api.take_webhooks()).await;

    let echo = h.record(&echo[0]).await;
    assert_eq!((echo.status, echo.duplicate_of), (Status::Duplicate, Some(change.event_id())));
    assert_eq!(api.writes().len(), 1);
    api.edit_in_admin(PRODUCT, json!({"status": "draft"}));
    let later = deliver_webhooks(&h, "shopify", api.take_webhooks()).await;
    assert_eq!(h.record(&later[0]).await.status, Status::Completed);
    assert_eq!(h.mirror_state(&change.entity()).await.expect("applied")["status"], "draft");
}

// ---- Configuration ----

#[tokio::test]
async fn the_connector_is_configured_in_the_one_config_and_built_by_compose() {
    let api = GitHubApi::start(chrono::Utc::now());
    let home = temp_home();
    let url = api.config().api_url.to_string();
    let vars = [
        ("SYNCTRAIL_HOME", home.path().to_str().expect("UTF-8")),
        ("SYNCTRAIL_OUTBOUND", "github"),
        ("SYNCTRAIL_GITHUB_TOKEN", github_api::TOKEN),
        ("SYNCTRAIL_GITHUB_API_URL", url.as_str()),
    ];
    let lookup = |name: &str| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned());
    let config = synctrail::config::Config::from_vars(&lookup).expect("valid");
    assert!(!format!("{config:?}").contains(github_api::TOKEN), "the token never shows");
    let clock: Arc<dyn Clock> = Arc::new(synctrail::SystemClock);
    let (engine, composed) = synctrail::compose::compose_engine(&config, clock, None).await.expect("composed");
    let now = chrono::Utc::now().to_rfc3339();
    let outbound = json!({"source": "github", "tenant": "codertocat", "entity_type": "issue", "direction": "outbound",
                          "external_id": format!("{REPO}#1"), "updated_at": now, "payload": {"title": "Composed"}});
    let inbound = json!({"source": "github", "tenant": "codertocat", "entity_type": "issue",
                         "external_id": format!("{REPO}#5"), "updated_at": now, "payload": {"title": "Inbound"}});

    for (n, body) in [outbound, inbound].iter().enumerate() {
        let incoming =
            Incoming { message_id: format!("m-{n}"), body: body.to_string(), receive_count: 1, trace_header: None };
        let outcome = engine.process(&incoming, &Invocation::default()).await.expect("processed");
        assert_eq!(outcome.status, Some(Status::Completed), "{outcome:?}");
    }
    assert_eq!(api.issue(1)["title"], "Composed", "the outbound event went to GitHub");
    let mirror = composed.mirror.expect("the mirror is the inbound destination");
    let key = synctrail::model::EntityKey::new("codertocat", "github", "issue", &format!("{REPO}#5")).expect("key");
    assert_eq!(mirror.get(&key).await.expect("read").map(|r| r.state), Some(json!({"title": "Inbound"})));
}
