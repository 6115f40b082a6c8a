//! The processor's Lambda loop: what `main.rs` runs, and the one call a team makes to run the processor over its
//! own destination.

use crate::{InvocationContext, Processor};
use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;
use synctrail::destination::Destination;
use synctrail_lambda::{init_tracing, Function};

/// Records are not started this close to the invocation's deadline.
pub const SAFETY_MARGIN: chrono::Duration = chrono::Duration::seconds(1);

/// Runs the processor Lambda over `destination` — a team's own system — with everything else (backend, queue,
/// settings, metrics) from the environment. A team's whole `main.rs`:
///
/// ```no_run
/// # struct MyDestination;
/// # #[async_trait::async_trait]
/// # impl synctrail::Destination for MyDestination {
/// #     async fn apply(&self, _: &synctrail::Change<'_>) -> Result<synctrail::ApplyOutcome, synctrail::DestinationError> {
/// #         Ok(synctrail::ApplyOutcome::Applied)
/// #     }
/// # }
/// #[tokio::main(flavor = "current_thread")] // ≈ a third less CPU per event than the multi-threaded runtime
/// async fn main() -> Result<(), lambda_runtime::Error> {
///     synctrail_processor::run_processor(MyDestination).await
/// }
/// ```
pub async fn run_processor<D: Destination + 'static>(destination: D) -> Result<(), Error> {
    init_tracing();
    run(Function::init(Some(Arc::new(destination))).await?).await
}

/// Runs the processor Lambda loop on `function`: one [`Processor::handle`] per invocation.
pub async fn run(function: Function) -> Result<(), Error> {
    let metrics = crate::MetricsConfig { namespace: function.config.metrics_namespace.clone() };
    let processor = Processor::new(function.engine, SAFETY_MARGIN)
        .with_metrics(metrics)
        .with_concurrency(function.config.record_concurrency);
    let processor = Arc::new(processor);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let processor = Arc::clone(&processor);
        async move {
            let context = InvocationContext::from_lambda(&event.context);
            processor.handle(event.payload, &context).await
        }
    }))
    .await
}
