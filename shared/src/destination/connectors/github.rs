//! [`GitHubConnector`]: writes outbound `issue` and `issue_comment` events through GitHub's REST API — creates and
//! updates, at most one write per event even when retried, keeping to the primary and secondary rate limits. The
//! rules are in docs/connectors.md.

use super::config::GitHubConfig;
use super::rest::{fields_to_write, json_of, same_names, snapshot_only, written, Rest};
use crate::clock::Clock;
use crate::destination::http::config::HttpConfigError;
use crate::destination::http::outcome::{described, retry_after};
use crate::destination::http::transport::{Answer, Budget, Transport};
use crate::destination::{ApplyOutcome, Change, Destination, DestinationError};
use crate::model::{EventId, Kind};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use http::header::{HeaderName, AUTHORIZATION};
use http::{HeaderMap, HeaderValue, Method};
use serde_json::{Map, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::config::GITHUB_API_URL_VARIABLE;

/// The REST API version every request asks for.
pub const API_VERSION: &str = "2022-11-28";
/// The issue fields written, when the payload has them.
pub const ISSUE_FIELDS: [&str; 7] = ["title", "body", "state", "state_reason", "labels", "assignees", "milestone"];
/// How many of the newest issues (or comments) of a repository a retried create looks through for its marker.
pub const LOOKBACK: usize = 100;
/// How many of them one request of that look asks for (`per_page`): a page of ten of GitHub's longest bodies
/// (65,536 characters) stays within
/// [`MAX_ANSWER_BYTES`](crate::destination::http::transport::MAX_ANSWER_BYTES), where one page of a hundred long
/// pull-request bodies would not.
pub const LOOKBACK_PAGE: usize = 10;
/// How long to wait after a secondary rate limit that names no delay (GitHub: "at least one minute"); it doubles
/// for each one more in a row, up to [`SECONDARY_LIMIT_MAX_WAIT`].
pub const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);
/// The longest wait after secondary rate limits in a row that name no delay.
pub const SECONDARY_LIMIT_MAX_WAIT: Duration = Duration::from_secs(15 * 60);

/// Writes issues and issue comments to GitHub.
pub struct GitHubConnector {
    rest: Rest,
    /// The secondary rate limits in a row that named no delay, and when the last one's wait ends.
    secondary: Mutex<Backoff>,
}

/// Secondary rate limits without a named delay since the last successful answer.
#[derive(Debug, Default)]
struct Backoff {
    streak: u32,
    until: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for GitHubConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubConnector").finish_non_exhaustive()
    }
}

/// `owner/name`, checked to be safe in a URL path.
#[derive(Debug, Clone, Copy)]
struct Repo<'a>(&'a str);

/// The issue or comment an event names.
enum Target<'a> {
    /// An existing one, by its number (issue) or id (comment).
    Existing(u64),
    /// One to create, by the team's own reference (not a number).
    New(&'a str),
}

impl GitHubConnector {
    /// The connector `config` describes, on `clock`. Fails only for an `https://` API whose TLS roots can't load.
    pub fn new(config: GitHubConfig, clock: Arc<dyn Clock>) -> Result<Self, HttpConfigError> {
        let transport =
            Transport::new(config.limits.transport(&config.api_url), clock, "the GitHub API", GITHUB_API_URL_VARIABLE)?;
        let mut token = HeaderValue::from_str(&format!("Bearer {}", config.token.expose())).map_err(|_| {
            HttpConfigError::Invalid {
                variable: super::config::GITHUB_TOKEN_VARIABLE,
                value: "<hidden>".into(),
                expected: "a token that fits in a header",
            }
        })?;
        token.set_sensitive(true);
        let headers = vec![
            (AUTHORIZATION, token),
            (HeaderName::from_static("x-github-api-version"), HeaderValue::from_static(API_VERSION)),
        ];
        Ok(Self {
            rest: Rest::new(transport, &config.api_url, "application/vnd.github+json", headers),
            secondary: Mutex::new(Backoff::default()),
        })
    }

    /// The resource a request answers with, after reading its rate-limit headers.
    async fn resource(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        budget: &Budget,
    ) -> Result<Value, DestinationError> {
        let answer = self.rest.call(method, path, body, budget).await?;
        self.check(&answer)?;
        json_of(&answer)
    }

    /// Reads the rate-limit headers of any answer, and turns a failed one into its error.
    fn check(&self, answer: &Answer) -> Result<(), DestinationError> {
        let now = self.rest.pace.now();
        let status = answer.status.as_u16();
        if answer.status.is_success() {
            self.secondary.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).streak = 0;
        }
        if matches!(status, 403 | 429) {
            if let Some(delay) = self.rate_limited(answer, now) {
                return Err(DestinationError::throttled(described(answer.status, &answer.body), Some(delay)));
            }
        }
        if let Some(reset) = used_up_until(&answer.headers) {
            self.rest.pace.pause_until(reset, USED_UP.to_owned());
        }
        if answer.status.is_success() {
            return Ok(());
        }
        let text = described(answer.status, &answer.body);
        Err(match status {
            401 => DestinationError::Permanent(format!("{text}; check SYNCTRAIL_GITHUB_TOKEN")),
            404 => DestinationError::Permanent(format!(
                "{text}; the repository, issue or comment does not exist, or the token can't see it"
            )),
            408 | 425 | 500..=599 => {
                DestinationError::Retryable { message: text, retry_after: retry_after(&answer.headers, now) }
            }
            _ => DestinationError::Permanent(text),
        })
    }

    /// How long a 403 or 429 asks to wait, when it is a rate limit (else `None`: a 403 that refuses for good), in
    /// GitHub's order: its `retry-after`; else, with `x-ratelimit-remaining: 0`, until `x-ratelimit-reset`; else (a
    /// secondary limit naming no delay) [`SECONDARY_LIMIT_WAIT`], doubled for each one more in a row. Every later
    /// request of the connector waits as long.
    fn rate_limited(&self, answer: &Answer, now: DateTime<Utc>) -> Option<Duration> {
        if let Some(delay) = retry_after(&answer.headers, now) {
            let why = format!("GitHub's rate limit (retry-after: {} s)", delay.as_secs());
            self.rest.pace.pause_for(delay, why);
            return Some(delay);
        }
        if let Some(reset) = used_up_until(&answer.headers) {
            self.rest.pace.pause_until(reset, USED_UP.to_owned());
            return Some((reset - now).to_std().unwrap_or(Duration::ZERO));
        }
        let message = String::from_utf8_lossy(&answer.body).to_ascii_lowercase();
        if answer.status.as_u16() != 429 && !message.contains("rate limit") {
            return None;
        }
        let (delay, streak) = self.secondary_wait(now);
        let why = format!("GitHub's secondary rate limit (no retry-after: {} s, {streak} in a row)", delay.as_secs());
        self.rest.pace.pause_for(delay, why);
        Some(delay)
    }

    /// The wait after a secondary rate limit naming no delay, and how many in a row it makes. One that comes while
    /// the last one's wait still runs (several requests were in flight) waits for what is left of it; otherwise the
    /// streak grows by one and the wait is [`secondary_limit_wait`] of it.
    fn secondary_wait(&self, now: DateTime<Utc>) -> (Duration, u32) {
        let mut backoff = self.secondary.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(left) = backoff.until.and_then(|until| (until - now).to_std().ok()).filter(|left| !left.is_zero()) {
            return (left, backoff.streak.max(1));
        }
        backoff.streak = backoff.streak.saturating_add(1);
        let delay = secondary_limit_wait(backoff.streak);
        backoff.until = Some(now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX));
        (delay, backoff.streak)
    }

    async fn write_issue(&self, change: &Change<'_>, budget: &Budget) -> Result<ApplyOutcome, DestinationError> {
        let (repo, target) = issue_target(&change.entity.external_id)?;
        let mut fields = fields_to_write(change.payload, &ISSUE_FIELDS, "issue")?;
        match (change.kind, target) {
            (Kind::Create, Target::New(_)) => {
                if !fields.get("title").is_some_and(Value::is_string) {
                    return Err(DestinationError::Permanent("a new issue needs a title (a string)".into()));
                }
                fields.remove("state");
                fields.remove("state_reason");
                let path = format!("/repos/{}/issues", repo.0);
                let list = format!("{path}?state=all&sort=created&direction=desc");
                let name =
                    |issue: &Value| issue.get("number").and_then(Value::as_u64).map(|n| format!("{}#{n}", repo.0));
                self.create(change, budget, fields, Create { path: &path, list: &list, name: &name }).await
            }
            (Kind::Create, Target::Existing(number)) => Err(DestinationError::Permanent(format!(
                "a create names the new issue by a reference of yours ({}#new-1), not a number: issue #{number} \
                 exists, send an upsert",
                repo.0
            ))),
            (_, Target::New(reference)) => Err(not_created_yet("issue", reference)),
            (_, Target::Existing(number)) => {
                let path = format!("/repos/{}/issues/{number}", repo.0);
                self.update(change, budget, &path, fields, issue_holds).await
            }
        }
    }

    async fn write_comment(&self, change: &Change<'_>, budget: &Budget) -> Result<ApplyOutcome, DestinationError> {
        let repo = repo(change.payload.get("repository").and_then(Value::as_str).ok_or_else(|| {
            DestinationError::Permanent(
                "an issue_comment payload needs `repository` (\"owner/name\"): a comment's id does not say where it is"
                    .into(),
            )
        })?)?;
        let fields = fields_to_write(change.payload, &["body"], "issue_comment")?;
        if !fields.get("body").is_some_and(Value::is_string) {
            return Err(DestinationError::Permanent("a comment's body must be a string".into()));
        }
        match (change.kind, target(&change.entity.external_id)) {
            (Kind::Create, Target::New(_)) => {
                let issue = change.payload.get("issue_number").and_then(Value::as_u64).ok_or_else(|| {
                    DestinationError::Permanent("a new comment needs `issue_number`, the issue it goes on".into())
                })?;
                let path = format!("/repos/{}/issues/{issue}/comments", repo.0);
                let list = format!("/repos/{}/issues/comments?sort=created&direction=desc", repo.0);
                let name = |comment: &Value| comment.get("id").and_then(Value::as_u64).map(|id| id.to_string());
                self.create(change, budget, fields, Create { path: &path, list: &list, name: &name }).await
            }
            (Kind::Create, Target::Existing(id)) => Err(DestinationError::Permanent(format!(
                "a create names the new comment by a reference of yours (new-1), not a number: comment {id} exists, \
                 send an upsert"
            ))),
            (_, Target::New(reference)) => Err(not_created_yet("issue_comment", reference)),
            (_, Target::Existing(id)) => {
                let path = format!("/repos/{}/issues/comments/{id}", repo.0);
                self.update(change, budget, &path, fields, |current, fields| current.get("body") == fields.get("body"))
                    .await
            }
        }
    }

    /// Updates the resource at `path` with `fields`. After an attempt whose outcome is unknown it reads the
    /// resource first, and writes nothing when it already holds `fields` (`holds`): one write per event.
    async fn update(
        &self,
        change: &Change<'_>,
        budget: &Budget,
        path: &str,
        fields: Map<String, Value>,
        holds: impl Fn(&Value, &Map<String, Value>) -> bool,
    ) -> Result<ApplyOutcome, DestinationError> {
        if change.previous_attempt_unknown {
            let current = self.resource(Method::GET, path, None, budget).await?;
            if holds(&current, &fields) {
                tracing::info!(event_id = %change.event_id, "already written by an earlier attempt");
                return Ok(ApplyOutcome::Written(written(&current, fingerprinted(&fields), None)?));
            }
        }
        let updated = self.resource(Method::PATCH, path, Some(&Value::Object(fields.clone())), budget).await?;
        Ok(ApplyOutcome::Written(written(&updated, fingerprinted(&fields), None)?))
    }

    /// Creates a resource at `create.path` whose body carries the event's hidden marker. After an attempt whose
    /// outcome is unknown it first looks for the marker among the [`LOOKBACK`] newest resources (`create.list`) and
    /// writes nothing when one has it: one resource per event.
    async fn create(
        &self,
        change: &Change<'_>,
        budget: &Budget,
        mut fields: Map<String, Value>,
        create: Create<'_>,
    ) -> Result<ApplyOutcome, DestinationError> {
        let marker = marker(change.event_id);
        let body = fields.get("body").and_then(Value::as_str).unwrap_or_default();
        fields.insert("body".into(), Value::String(marked(body, &marker)));
        if change.previous_attempt_unknown {
            if let Some(found) = self.marked_among_newest(create.list, &marker, budget).await? {
                tracing::info!(event_id = %change.event_id, "created by an earlier attempt");
                return Ok(ApplyOutcome::Written(written(&found, fingerprinted(&fields), (create.name)(&found))?));
            }
        }
        let created = self.resource(Method::POST, create.path, Some(&Value::Object(fields.clone())), budget).await?;
        let name = (create.name)(&created).ok_or_else(|| {
            DestinationError::retryable("the created resource's answer has no number or id; the retry looks first")
        })?;
        Ok(ApplyOutcome::Written(written(&created, fingerprinted(&fields), Some(name))?))
    }

    /// The resource among the [`LOOKBACK`] newest of `list` (newest first) whose body carries `marker`, read a page
    /// of [`LOOKBACK_PAGE`] at a time: it stops at the page that has it, or at a short page (there are no more).
    /// Resources created meanwhile push the older ones to later pages, so none is skipped by a creation (one deleted
    /// meanwhile moves the later ones up a place: see docs/connectors.md, "Limits").
    async fn marked_among_newest(
        &self,
        list: &str,
        marker: &str,
        budget: &Budget,
    ) -> Result<Option<Value>, DestinationError> {
        for page in 1..=LOOKBACK.div_ceil(LOOKBACK_PAGE) {
            let path = format!("{list}&per_page={LOOKBACK_PAGE}&page={page}");
            let Value::Array(items) = self.resource(Method::GET, &path, None, budget).await? else {
                return Err(DestinationError::retryable(format!(
                    "GET {list} did not answer a list; looking for an earlier attempt's resource again on the retry"
                )));
            };
            let last = items.len() < LOOKBACK_PAGE;
            let has_marker =
                |item: &Value| item.get("body").and_then(Value::as_str).is_some_and(|b| b.contains(marker));
            if let Some(found) = items.into_iter().find(has_marker) {
                return Ok(Some(found));
            }
            if last {
                break;
            }
        }
        Ok(None)
    }
}

/// Where a create posts, where it looks for an earlier attempt's resource, and how it names what it created.
struct Create<'a> {
    path: &'a str,
    list: &'a str,
    name: &'a (dyn Fn(&Value) -> Option<String> + Sync),
}

#[async_trait]
impl Destination for GitHubConnector {
    async fn apply(&self, change: &Change<'_>) -> Result<ApplyOutcome, DestinationError> {
        snapshot_only(change, "GitHub")?;
        let budget = self.rest.budget(change)?;
        match change.entity.entity_type.as_str() {
            "issue" => self.write_issue(change, &budget).await,
            "issue_comment" => self.write_comment(change, &budget).await,
            other => Err(DestinationError::Permanent(format!(
                "the GitHub connector writes issue and issue_comment events, not {other}"
            ))),
        }
    }
}

/// The hidden marker a created issue or comment carries: an HTML comment GitHub does not render.
pub fn marker(event_id: &EventId) -> String {
    format!("<!-- synctrail:event={event_id} -->")
}

fn marked(body: &str, marker: &str) -> String {
    if body.is_empty() {
        marker.to_owned()
    } else {
        format!("{body}\n\n{marker}")
    }
}

/// The fields an echo is recognised by, as JSON pointers into the resource: those written that the resource
/// holds as they were written (labels and assignees come back as objects, and are left out).
fn fingerprinted(fields: &Map<String, Value>) -> Vec<String> {
    fields
        .keys()
        .filter_map(|field| match field.as_str() {
            "labels" | "assignees" => None,
            "milestone" => Some("/milestone/number".to_owned()),
            other => Some(format!("/{other}")),
        })
        .collect()
}

/// Whether an issue holds the fields to write (labels and assignees by name, the milestone by number).
fn issue_holds(current: &Value, fields: &Map<String, Value>) -> bool {
    fields.iter().all(|(field, wanted)| match field.as_str() {
        "labels" => same_names(current.get("labels").unwrap_or(&Value::Null), wanted, "name"),
        "assignees" => same_names(current.get("assignees").unwrap_or(&Value::Null), wanted, "login"),
        "milestone" => current.pointer("/milestone/number").unwrap_or(&Value::Null) == wanted,
        other => current.get(other).unwrap_or(&Value::Null) == wanted,
    })
}

/// `owner/name#number` (existing) or `owner/name#reference` (to create).
fn issue_target(external_id: &str) -> Result<(Repo<'_>, Target<'_>), DestinationError> {
    let (repository, tail) = external_id.rsplit_once('#').ok_or_else(|| {
        DestinationError::Permanent(format!(
            "issue {external_id:?} is not owner/name#number (or owner/name#reference for a new one)"
        ))
    })?;
    Ok((repo(repository)?, target(tail)))
}

fn target(text: &str) -> Target<'_> {
    match text.parse::<u64>() {
        Ok(number) => Target::Existing(number),
        Err(_) => Target::New(text),
    }
}

/// `owner/name`, each part of letters, digits, `-`, `_` and `.`.
fn repo(text: &str) -> Result<Repo<'_>, DestinationError> {
    let part = |p: &str| {
        !matches!(p, "" | "." | "..") && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match text.split_once('/') {
        Some((owner, name)) if part(owner) && part(name) => Ok(Repo(text)),
        _ => Err(DestinationError::Permanent(format!("{text:?} is not a repository (owner/name)"))),
    }
}

fn not_created_yet(entity_type: &str, reference: &str) -> DestinationError {
    DestinationError::Permanent(format!(
        "{entity_type} {reference:?} is not a GitHub number: create it first (kind create); its number is on the \
         create event (`written.created`)"
    ))
}

/// Why requests pause when the primary rate limit is used up.
const USED_UP: &str = "GitHub's rate limit is used up (x-ratelimit-remaining: 0) until x-ratelimit-reset";

/// How long to wait after the `streak`-th secondary rate limit in a row that names no delay (1: the first):
/// [`SECONDARY_LIMIT_WAIT`] doubled for each before it — 60 s, 120 s, 240 s … — at most
/// [`SECONDARY_LIMIT_MAX_WAIT`].
pub fn secondary_limit_wait(streak: u32) -> Duration {
    let doublings = streak.saturating_sub(1).min(16);
    SECONDARY_LIMIT_WAIT.saturating_mul(1 << doublings).min(SECONDARY_LIMIT_MAX_WAIT)
}

/// When the primary rate limit is used up: `x-ratelimit-remaining: 0`, until `x-ratelimit-reset` (Unix seconds).
fn used_up_until(headers: &HeaderMap) -> Option<DateTime<Utc>> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<i64>().ok();
    if number("x-ratelimit-remaining")? != 0 {
        return None;
    }
    DateTime::from_timestamp(number("x-ratelimit-reset")?, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_issue_is_named_by_its_repository_and_number_or_a_reference() {
        assert!(matches!(
            issue_target("octo-org/hello.world#12"),
            Ok((Repo("octo-org/hello.world"), Target::Existing(12)))
        ));
        assert!(matches!(issue_target("octo/hello#new-7"), Ok((_, Target::New("new-7")))));
        for bad in ["octo/hello", "octo#1", "octo/he llo#1", "../x#1", "octo/..#1", "a/b/c#1"] {
            assert!(matches!(issue_target(bad), Err(DestinationError::Permanent(_))), "{bad}");
        }
    }

    #[test]
    fn an_issue_holds_labels_and_assignees_by_name_and_the_milestone_by_number() {
        let issue = json!({"title": "T", "labels": [{"name": "bug", "id": 1}], "assignees": [{"login": "mona"}],
                           "milestone": {"number": 3, "title": "v1"}, "state": "open"});
        let fields = |v: Value| v.as_object().cloned().unwrap();
        assert!(issue_holds(
            &issue,
            &fields(json!({"title": "T", "labels": ["bug"], "assignees": ["mona"], "milestone": 3}))
        ));
        assert!(!issue_holds(&issue, &fields(json!({"labels": ["bug", "ui"]}))));
        assert!(!issue_holds(&issue, &fields(json!({"state": "closed"}))));
        assert_eq!(
            fingerprinted(&fields(json!({"title": 1, "labels": [], "milestone": 3}))),
            ["/milestone/number", "/title"]
        );
    }

    #[test]
    fn the_primary_limit_is_used_up_only_at_zero_remaining() {
        let headers = |remaining: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-ratelimit-remaining", HeaderValue::from_str(remaining).unwrap());
            h.insert("x-ratelimit-reset", HeaderValue::from_static("1777637400"));
            h
        };
        assert_eq!(used_up_until(&headers("0")), DateTime::from_timestamp(1_777_637_400, 0));
        assert_eq!(used_up_until(&headers("12")), None);
    }

    #[test]
    fn secondary_limits_in_a_row_wait_a_minute_doubling_up_to_fifteen_minutes() {
        let waits: Vec<u64> = (1..=7).map(|streak| secondary_limit_wait(streak).as_secs()).collect();
        assert_eq!(waits, [60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(secondary_limit_wait(u32::MAX), SECONDARY_LIMIT_MAX_WAIT);
    }

    #[test]
    fn the_marker_is_appended_to_the_body() {
        let id = EventId::parse("out-1").unwrap();
        assert_eq!(marked("Text", &marker(&id)), "Text\n\n<!-- synctrail:event=out-1 -->");
        assert_eq!(marked("", &marker(&id)), "<!-- synctrail:event=out-1 -->");
    }
}
