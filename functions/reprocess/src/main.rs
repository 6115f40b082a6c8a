//! The reprocess Lambda: builds the engine the environment names once per cold start (see `synctrail::config`),
//! then runs the handler on each request.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;
use synctrail_lambda::{init_tracing, Function, InvocationContext};

#[tokio::main(flavor = "current_thread")] // one thread per Lambda instance: ARCHITECTURE.md, invariants
async fn main() -> Result<(), Error> {
    init_tracing();
    let engine = Function::init(None).await?.engine;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let engine = Arc::clone(&engine);
        async move {
            let invocation = InvocationContext::from_lambda(&event.context).invocation();
            synctrail_reprocess::handle(&engine, event.payload, &invocation).await
        }
    }))
    .await
}
