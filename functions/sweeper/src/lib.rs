//! The sweeper function, run on a schedule (EventBridge): re-drives events whose entity lease expired — a crashed
//! holder, a lost promotion message — and answers the [`SweepReport`] as JSON. Its input is ignored apart from
//! logging.

mod metrics;

pub use metrics::emf_line;
pub use synctrail::engine::SweepReport;

use lambda_runtime::LambdaEvent;
use serde_json::Value;
use synctrail::{Engine, EngineError};
use synctrail_lambda::InvocationContext;

/// Why a sweep failed; Lambda reports it with a stable `errorType` (the engine's [`EngineError::code`]).
#[derive(Debug, thiserror::Error)]
#[error("sweep failed: {0}")]
pub struct SweepError(#[from] pub EngineError);

impl From<SweepError> for lambda_runtime::Diagnostic {
    fn from(error: SweepError) -> Self {
        Self { error_type: error.0.code().to_owned(), error_message: error.to_string() }
    }
}

/// Handles one scheduled invocation: logs what triggered it, sweeps up to `limit` expired leases and prints the
/// sweep's EMF line in `namespace`.
pub async fn handle(
    engine: &Engine,
    event: LambdaEvent<Value>,
    limit: usize,
    namespace: &str,
) -> Result<SweepReport, SweepError> {
    let context = InvocationContext::from_lambda(&event.context);
    tracing::info!(request_id = %context.request_id, trigger = %event.payload, limit, "sweep triggered");
    let report = sweep(engine, &context, limit).await.map_err(SweepError)?;
    let function = event.context.env_config.function_name.clone();
    // Lambda sends stdout to CloudWatch Logs, which turns EMF lines into metrics.
    println!("{}", emf_line(&report, &function, namespace, engine.ports().clock.now()));
    Ok(report)
}

/// Sweeps up to `limit` expired leases as the invocation `context` describes (its trace id rides on the re-drive
/// messages) and logs the report.
pub async fn sweep(engine: &Engine, context: &InvocationContext, limit: usize) -> Result<SweepReport, EngineError> {
    match engine.sweep(limit, &context.invocation()).await {
        Ok(report) => {
            let json = serde_json::to_string(&report).unwrap_or_else(|e| format!("unserializable report: {e}"));
            tracing::info!(
                request_id = %context.request_id,
                examined = report.examined,
                redriven = report.redriven.len(),
                settles_finished = report.settles_finished.len(),
                dead_letters_discarded = report.dead_letters_discarded.iter().map(|d| d.messages).sum::<usize>(),
                report = %json,
                "sweep done"
            );
            Ok(report)
        }
        Err(error) => {
            let retryable = error.is_retryable();
            tracing::error!(request_id = %context.request_id, error = %error, retryable, "sweep failed");
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests;
