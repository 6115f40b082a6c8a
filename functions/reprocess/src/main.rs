//! The reprocess Lambda: wires the engine from the environment once per cold start, then runs the handler.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;
use synctrail::engine::Invocation;
use synctrail::SystemClock;
use synctrail_lambda::{engine_from_env, init_tracing, InvocationContext};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let engine = Arc::new(engine_from_env(Arc::new(SystemClock)).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let engine = Arc::clone(&engine);
        async move {
            let context = InvocationContext::from_lambda(&event.context);
            let invocation = Invocation {
                function: context.function.clone(),
                request_id: Some(context.request_id.clone()),
                trace_id: context.trace_id.clone(),
                deadline: Some(context.deadline),
            };
            synctrail_reprocess::handle(&engine, event.payload, &invocation).await
        }
    }))
    .await
}
