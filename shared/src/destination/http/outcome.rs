//! A receiver's answer as an outcome: the status code (and for some codes the JSON body) decides, `Retry-After`
//! sets the next delay.

use super::wire::Answer;
use crate::destination::{ApplyOutcome, DestinationError};
use crate::model::EntityKey;
use chrono::{DateTime, NaiveDateTime, Utc};
use http::{HeaderMap, StatusCode};
use std::time::Duration;

/// How much of a receiver's error body is recorded.
pub const ERROR_BODY_LIMIT: usize = 1024;

/// The outcome of an answer with `status`, `headers` and `body` to a delivery of `entity`, at `now`.
///
/// - 208, or a 2xx with `{"result":"already_applied"}` → already applied; any other 2xx → applied;
/// - 409 (`{"superseded_by":"…"}` optional) → superseded;
/// - 424 with `{"needs":"<entity key>"}` (`"request":{…}` optional) → missing dependency;
/// - 429 → throttled; 408, 425, 5xx → retryable; both with `Retry-After` as the next delay;
/// - anything else (other 4xx, 3xx: redirects are not followed, a 424 without a valid `needs`) → permanent.
pub fn outcome(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    entity: &EntityKey,
    now: DateTime<Utc>,
) -> Result<ApplyOutcome, DestinationError> {
    match status.as_u16() {
        208 => Ok(ApplyOutcome::AlreadyApplied),
        200..=299 if Answer::of(body).result.as_deref() == Some("already_applied") => Ok(ApplyOutcome::AlreadyApplied),
        200..=299 => Ok(ApplyOutcome::Applied),
        409 => {
            let by = Answer::of(body).superseded_by.filter(|by| !by.trim().is_empty());
            Ok(ApplyOutcome::Superseded { by: by.unwrap_or_else(|| format!("receiver:{entity}")) })
        }
        424 => {
            let answer = Answer::of(body);
            match answer.needs.as_deref().map(EntityKey::parse) {
                Some(Ok(key)) => {
                    Ok(ApplyOutcome::MissingDependency { key, request: answer.request.map(|r| r.to_string()) })
                }
                _ => Err(DestinationError::Permanent(format!(
                    "{}; a 424 needs a body {{\"needs\":\"<tenant/source/entity_type/external_id>\"}}",
                    described(status, body)
                ))),
            }
        }
        429 => Err(DestinationError::throttled(described(status, body), retry_after(headers, now))),
        408 | 425 | 500..=599 => Err(DestinationError::Retryable {
            message: described(status, body),
            retry_after: retry_after(headers, now),
        }),
        _ => Err(DestinationError::Permanent(described(status, body))),
    }
}

/// The status line and the first [`ERROR_BODY_LIMIT`] bytes of the body, as recorded on the event.
pub fn described(status: StatusCode, body: &[u8]) -> String {
    let line = format!("HTTP {} {}", status.as_u16(), status.canonical_reason().unwrap_or("(unknown status)"));
    let text = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_LIMIT)]);
    let text = text.trim();
    match (text.is_empty(), body.len() > ERROR_BODY_LIMIT) {
        (true, _) => line,
        (false, false) => format!("{line}: {text}"),
        (false, true) => format!("{line}: {text}… ({} bytes, first {ERROR_BODY_LIMIT} kept)", body.len()),
    }
}

/// `Retry-After` as a delay from `now`: seconds (whole, or with a fraction as Shopify sends them: `2.0`), or an
/// HTTP date (IMF-fixdate, or the obsolete RFC 850 and asctime forms); a date in the past is no delay. `None` when
/// absent or unreadable.
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let text = headers.get(http::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Some(seconds) = text.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9) {
        return Some(Duration::from_secs_f64(seconds));
    }
    let at = DateTime::parse_from_rfc2822(text).map(|at| at.with_timezone(&Utc)).ok().or_else(|| {
        ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
            .iter()
            .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
            .map(|naive| naive.and_utc())
    })?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn entity() -> EntityKey {
        EntityKey::new("default", "shop", "product", "9").unwrap()
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn answer(status: u16, body: &str) -> Result<ApplyOutcome, DestinationError> {
        outcome(StatusCode::from_u16(status).unwrap(), &HeaderMap::new(), body.as_bytes(), &entity(), now())
    }

    fn with_retry_after(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn success_codes_are_applied_or_already_applied() {
        for status in [200, 201, 202, 204] {
            assert_eq!(answer(status, ""), Ok(ApplyOutcome::Applied), "{status}");
        }
        assert_eq!(answer(200, r#"{"result":"applied"}"#), Ok(ApplyOutcome::Applied));
        assert_eq!(answer(208, ""), Ok(ApplyOutcome::AlreadyApplied));
        assert_eq!(answer(200, r#"{"result":"already_applied"}"#), Ok(ApplyOutcome::AlreadyApplied));
        assert_eq!(answer(201, r#"{"result":"already_applied","id":3}"#), Ok(ApplyOutcome::AlreadyApplied));
    }

    #[test]
    fn a_409_is_superseded_by_what_the_receiver_names() {
        assert_eq!(answer(409, r#"{"superseded_by":"ev-9"}"#), Ok(ApplyOutcome::Superseded { by: "ev-9".into() }));
        let unnamed = ApplyOutcome::Superseded { by: "receiver:default/shop/product/9".into() };
        assert_eq!(answer(409, "conflict"), Ok(unnamed.clone()));
        assert_eq!(answer(409, r#"{"superseded_by":""}"#), Ok(unnamed));
    }

    #[test]
    fn a_424_is_a_missing_dependency_with_its_request() {
        let key = EntityKey::parse("default/shop/product/1").unwrap();
        assert_eq!(
            answer(424, r#"{"needs":"default/shop/product/1"}"#),
            Ok(ApplyOutcome::MissingDependency { key: key.clone(), request: None })
        );
        let outcome = answer(424, r#"{"needs":"default/shop/product/1","request":{"source":"shop"}}"#);
        assert_eq!(outcome, Ok(ApplyOutcome::MissingDependency { key, request: Some(r#"{"source":"shop"}"#.into()) }));
        for body in ["", r#"{"needs":"not a key"}"#] {
            assert!(matches!(answer(424, body), Err(DestinationError::Permanent(_))), "{body}");
        }
    }

    #[test]
    fn overload_and_server_errors_are_retried_and_429_is_throttled() {
        for status in [408, 425, 500, 502, 503, 504] {
            assert!(
                matches!(answer(status, ""), Err(DestinationError::Retryable { retry_after: None, .. })),
                "{status}"
            );
        }
        let throttled = answer(429, "slow down");
        assert_eq!(throttled, Err(DestinationError::throttled("HTTP 429 Too Many Requests: slow down", None)));
        let headers = with_retry_after("7");
        let status = StatusCode::SERVICE_UNAVAILABLE;
        let outcome = outcome(status, &headers, b"", &entity(), now());
        assert_eq!(outcome.unwrap_err().retry_after(), Some(Duration::from_secs(7)));
    }

    #[test]
    fn other_client_errors_and_redirects_are_permanent_with_status_and_body() {
        for status in [400, 401, 403, 404, 410, 422, 301, 302] {
            assert!(matches!(answer(status, "no"), Err(DestinationError::Permanent(_))), "{status}");
        }
        assert_eq!(
            answer(400, "  missing field `price`\n"),
            Err(DestinationError::Permanent("HTTP 400 Bad Request: missing field `price`".into()))
        );
    }

    #[test]
    fn an_error_body_is_recorded_truncated_to_1_kb() {
        let body = "x".repeat(5000);
        let text = described(StatusCode::BAD_REQUEST, body.as_bytes());
        assert!(text.starts_with(&format!("HTTP 400 Bad Request: {}…", "x".repeat(ERROR_BODY_LIMIT))), "{text}");
        assert!(text.ends_with("(5000 bytes, first 1024 kept)"), "{text}");
        assert!(text.len() < ERROR_BODY_LIMIT + 100);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(retry_after(&with_retry_after("120"), now()), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(&with_retry_after("2.0"), now()), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(&with_retry_after("0.5"), now()), Some(Duration::from_millis(500)));
        assert_eq!(retry_after(&with_retry_after("-1.5"), now()), None);
        let imf = with_retry_after("Fri, 01 May 2026 12:00:30 GMT");
        assert_eq!(retry_after(&imf, now()), Some(Duration::from_secs(30)));
        let rfc850 = with_retry_after("Friday, 01-May-26 12:01:00 GMT");
        assert_eq!(retry_after(&rfc850, now()), Some(Duration::from_secs(60)));
        let asctime = with_retry_after("Fri May  1 12:00:05 2026");
        assert_eq!(retry_after(&asctime, now()), Some(Duration::from_secs(5)));
        let past = with_retry_after("Fri, 01 May 2026 11:00:00 GMT");
        assert_eq!(retry_after(&past, now()), Some(Duration::ZERO));
        assert_eq!(retry_after(&with_retry_after("soon"), now()), None);
        assert_eq!(retry_after(&HeaderMap::new(), now()), None);
    }
}
