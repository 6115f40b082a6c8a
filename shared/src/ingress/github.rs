//! GitHub deliveries (`X-GitHub-Event` + `action`) mapped to envelopes. See docs/webhooks.md for the table.

use super::draft::{id, object, optional_text, parse, text, Draft, Ignored, Mapping, MappingError};
use super::headers::Headers;
use crate::model::Kind;
use serde_json::Value;

/// The entity type, and where its resource sits in the body, of each synced event type.
fn synced(event: &str) -> Option<(&'static str, &'static str)> {
    match event {
        "issues" => Some(("issue", "/issue")),
        "pull_request" => Some(("pull_request", "/pull_request")),
        "issue_comment" => Some(("issue_comment", "/comment")),
        _ => None,
    }
}

/// Maps one authenticated GitHub delivery.
pub(super) fn map(headers: &Headers, body: &[u8]) -> Result<Mapping, MappingError> {
    let event = headers.get("X-GitHub-Event").ok_or(MappingError::MissingHeader("X-GitHub-Event"))?;
    if event == "ping" {
        return Ok(Mapping::Ignore(Ignored::Ping));
    }
    let Some((entity_type, resource_at)) = synced(event) else {
        return Ok(Mapping::Ignore(Ignored::NotSynced { event: event.to_owned() }));
    };
    let body = parse(body)?;
    // An `issue_comment` (or pull request review comment) body holds its issue or pull request beside the comment,
    // and its `deleted` action would delete that issue under a relabelled event type: refused.
    if entity_type != "issue_comment" && body.get("comment").is_some() {
        return Err(MappingError::AnotherEventsBody { event: event.to_owned(), field: "/comment" });
    }
    let kind = match text(&body, "/action")? {
        // `transferred` reaches the old repository: the issue leaves it (the new one gets `opened`).
        "deleted" | "transferred" => Kind::Delete,
        "opened" | "created" => Kind::Create,
        _ => Kind::Upsert,
    };
    let resource = object(&body, resource_at)?;
    let external_id = if entity_type == "issue_comment" {
        id(&body, "/comment/id")?
    } else {
        format!("{}#{}", text(&body, "/repository/full_name")?, id(&body, &format!("{resource_at}/number"))?)
    };
    let delivery = headers.get("X-GitHub-Delivery");
    Ok(Mapping::Change(Draft {
        entity_type: entity_type.to_owned(),
        external_id,
        updated_at: text(&body, &format!("{resource_at}/updated_at"))?.to_owned(),
        kind,
        tenant: tenant(&body),
        event_key: delivery.map(str::to_owned),
        delivery_id: delivery.map(str::to_owned),
        payload: resource.clone(),
    }))
}

/// The GitHub App installation's id, else the repository owner's login (lower-cased: logins ignore case).
fn tenant(body: &Value) -> Option<String> {
    match body.pointer("/installation/id") {
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => optional_text(body, "/repository/owner/login").map(str::to_ascii_lowercase),
    }
}
