//! The invocation's context, independent of how it was invoked (Lambda, the local runtime, a test).

use chrono::{DateTime, Utc};

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
        let deadline = i64::try_from(context.deadline)
            .ok()
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let function = (!context.env_config.function_name.is_empty())
            .then(|| format!("{}:{}", context.env_config.function_name, context.env_config.version));
        Self {
            request_id: context.request_id.clone(),
            deadline,
            function,
            trace_id: context.xray_trace_id.clone().or_else(|| std::env::var("_X_AMZN_TRACE_ID").ok()),
        }
    }
}
