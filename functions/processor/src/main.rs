//! The processor Lambda: wires configuration and clients once per cold start, then runs the handler.
//!
//! The backend and the engine settings come from the environment (see `synctrail_lambda::ports_from_env`);
//! logs are JSON lines, level from `RUST_LOG`.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;
use synctrail::SystemClock;
use synctrail_lambda::{engine_from_env, init_tracing, InvocationContext};
use synctrail_processor::Processor;

/// Records are not started this close to the invocation's deadline.
const SAFETY_MARGIN_SECONDS: i64 = 1;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let engine = Arc::new(engine_from_env(Arc::new(SystemClock)).await?);
    let processor = Arc::new(Processor::new(engine, chrono::Duration::seconds(SAFETY_MARGIN_SECONDS)));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let processor = Arc::clone(&processor);
        async move {
            let context = InvocationContext::from_lambda(&event.context);
            processor.handle(event.payload, &context).await
        }
    }))
    .await
}
