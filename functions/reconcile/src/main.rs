//! The reconcile Lambda: builds the engine the environment names once per cold start (see `synctrail::config`),
//! then reconciles on every scheduled invocation (EventBridge Scheduler); logs are JSON lines.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;
use synctrail_lambda::{init_tracing, Function, InvocationContext};

#[tokio::main(flavor = "current_thread")] // one thread per Lambda instance: ARCHITECTURE.md, invariants
async fn main() -> Result<(), Error> {
    init_tracing();
    let function = Arc::new(Function::init(None).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let function = Arc::clone(&function);
        async move {
            let context = InvocationContext::from_lambda(&event.context);
            let name = event.context.env_config.function_name.clone();
            synctrail_reconcile::handle(&function, event.payload, &context, &name).await
        }
    }))
    .await
}
