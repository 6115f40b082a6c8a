//! Logs: JSON lines on standard output (which Lambda sends to CloudWatch), level from `RUST_LOG`, else Lambda's
//! `AWS_LAMBDA_LOG_LEVEL`, else `info`.
//!
//! Each line is one flat object (`timestamp`, `level`, `message`, the event's fields, `target`) with the fields of
//! the span it happened in under `span`: for the processor, the `record` span (message, request and trace ids, the
//! event id, entity, status transition and attempt), so CloudWatch Logs Insights can filter on `span.event_id`.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The level when neither `RUST_LOG` nor `AWS_LAMBDA_LOG_LEVEL` says otherwise: one line per record processed.
const DEFAULT_LOG_LEVEL: &str = "info";

/// Installs the JSON-lines subscriber. A second call keeps the subscriber already installed.
pub fn init_tracing() {
    let installed = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .finish()
        .with(filter(std::env::var("RUST_LOG").ok(), std::env::var("AWS_LAMBDA_LOG_LEVEL").ok()))
        .try_init();
    if installed.is_err() {
        tracing::debug!("a tracing subscriber was already installed; keeping it");
    }
}

/// The filter from `RUST_LOG` (`target=level` directives, comma-separated, e.g. `synctrail=debug,info`; span and
/// field filters are not supported: a Lambda zip carries no regex engine), else Lambda's log level (`TRACE` …
/// `FATAL`), else [`DEFAULT_LOG_LEVEL`].
fn filter(rust_log: Option<String>, lambda_level: Option<String>) -> Targets {
    let directives = rust_log
        .filter(|d| !d.trim().is_empty())
        .or_else(|| lambda_level.as_deref().and_then(lambda_directive).map(str::to_owned))
        .unwrap_or_else(|| DEFAULT_LOG_LEVEL.to_owned());
    directives.parse().unwrap_or_else(|e| {
        eprintln!("RUST_LOG={directives:?} is not a valid filter ({e}); logging at {DEFAULT_LOG_LEVEL}");
        Targets::new().with_default(tracing::Level::INFO)
    })
}

/// Lambda's advanced logging control levels, as tracing levels (`FATAL` has none: errors).
fn lambda_directive(level: &str) -> Option<&'static str> {
    match level.trim().to_ascii_uppercase().as_str() {
        "TRACE" => Some("trace"),
        "DEBUG" => Some("debug"),
        "INFO" => Some("info"),
        "WARN" => Some("warn"),
        "ERROR" | "FATAL" => Some("error"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_wins_over_lambdas_level() {
        assert_eq!(filter(Some("debug".into()), Some("ERROR".into())).to_string(), "debug");
    }

    #[test]
    fn lambdas_level_applies_when_rust_log_is_unset() {
        assert_eq!(filter(None, Some("WARN".into())).to_string(), "warn");
        assert_eq!(filter(None, Some("FATAL".into())).to_string(), "error");
    }

    #[test]
    fn without_either_one_line_per_record_is_logged() {
        assert_eq!(filter(None, None).to_string(), DEFAULT_LOG_LEVEL);
        assert_eq!(filter(Some(" ".into()), Some("LOUD".into())).to_string(), DEFAULT_LOG_LEVEL);
    }

    #[test]
    fn an_invalid_rust_log_falls_back_to_the_default() {
        assert_eq!(filter(Some("=[".into()), None).to_string(), DEFAULT_LOG_LEVEL);
    }
}
