//! The invocation's context, independent of how it was invoked (Lambda, the local runtime, a test).

use chrono::{DateTime, Utc};
use synctrail::Invocation;

/// Deadlines below this many milliseconds (2001-09-09 as a Unix time) are durations, not times.
pub const DURATION_BELOW_MS: i64 = 1_000_000_000_000;

/// What the handler needs to know about its invocation.
#[derive(Debug, Clone)]
pub struct InvocationContext {
    /// The request id.
    pub request_id: String,
    /// When the invocation will be stopped.
    pub deadline: DateTime<Utc>,
    /// `name:version` of the function.
    pub function: Option<String>,
    /// The X-Ray trace id.
    pub trace_id: Option<String>,
}

impl InvocationContext {
    /// The context of a Lambda invocation. A deadline that can't be read counts as already passed, so nothing
    /// starts that could outlive the invocation.
    pub fn from_lambda(context: &lambda_runtime::Context) -> Self {
        Self::from_lambda_at(context, Utc::now())
    }

    /// [`InvocationContext::from_lambda`] with the time read at `now`. Lambda gives the deadline as Unix
    /// milliseconds; an emulator may give a duration instead (`cargo lambda watch` 1.9 sends 600000, ten minutes):
    /// a value before 2001 ([`DURATION_BELOW_MS`]) is read as milliseconds from now.
    pub fn from_lambda_at(context: &lambda_runtime::Context, now: DateTime<Utc>) -> Self {
        let deadline = match i64::try_from(context.deadline) {
            Ok(ms) if ms < DURATION_BELOW_MS => now + chrono::Duration::milliseconds(ms),
            Ok(ms) => DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC),
            Err(_) => DateTime::<Utc>::MIN_UTC,
        };
        let function = (!context.env_config.function_name.is_empty())
            .then(|| format!("{}:{}", context.env_config.function_name, context.env_config.version));
        Self {
            request_id: context.request_id.clone(),
            deadline,
            function,
            trace_id: context.xray_trace_id.clone().or_else(|| std::env::var("_X_AMZN_TRACE_ID").ok()),
        }
    }

    /// The invocation as the engine records it in history entries (and on the messages it sends).
    pub fn invocation(&self) -> Invocation {
        Invocation {
            function: self.function.clone(),
            request_id: Some(self.request_id.clone()),
            trace_id: self.trace_id.clone(),
            deadline: Some(self.deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn lambda_context(deadline: u64) -> lambda_runtime::Context {
        let config = lambda_runtime::Config {
            function_name: "synctrail-sweeper".to_owned(),
            version: "7".to_owned(),
            ..lambda_runtime::Config::default()
        };
        let mut context = lambda_runtime::Context::default();
        context.request_id = "req-1".to_owned();
        context.deadline = deadline;
        context.xray_trace_id = Some("Root=1-abc".to_owned());
        context.env_config = Arc::new(config);
        context
    }

    #[test]
    fn a_lambda_context_names_the_function_with_its_version_and_keeps_the_deadline() {
        let context = InvocationContext::from_lambda(&lambda_context(1_777_636_800_000));
        assert_eq!(context.request_id, "req-1");
        assert_eq!(context.function.as_deref(), Some("synctrail-sweeper:7"));
        assert_eq!(context.trace_id.as_deref(), Some("Root=1-abc"));
        assert_eq!(context.deadline.timestamp_millis(), 1_777_636_800_000);
    }

    #[test]
    fn an_emulator_deadline_given_as_a_duration_counts_from_now() {
        let now = DateTime::from_timestamp_millis(1_777_636_800_000).expect("time");
        let context = InvocationContext::from_lambda_at(&lambda_context(600_000), now);
        assert_eq!(context.deadline, now + chrono::Duration::minutes(10));
    }

    #[test]
    fn an_unreadable_deadline_counts_as_already_passed() {
        let context = InvocationContext::from_lambda(&lambda_context(u64::MAX));
        assert_eq!(context.deadline, DateTime::<Utc>::MIN_UTC);
    }

    #[test]
    fn the_engine_invocation_carries_request_function_trace_and_deadline() {
        let context = InvocationContext::from_lambda(&lambda_context(1_777_636_800_000));
        let invocation = context.invocation();
        assert_eq!(invocation.request_id.as_deref(), Some("req-1"));
        assert_eq!(invocation.function, context.function);
        assert_eq!(invocation.trace_id, context.trace_id);
        assert_eq!(invocation.deadline, Some(context.deadline));
    }
}
