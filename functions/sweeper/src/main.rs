//! The sweeper Lambda: builds the engine the environment names once per cold start (see `synctrail::config`; the
//! limit is `SYNCTRAIL_SWEEP_LIMIT`), then sweeps on every scheduled invocation; logs are JSON lines.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;
use synctrail_lambda::{init_tracing, Function};
use synctrail_sweeper::handle;

#[tokio::main(flavor = "current_thread")] // one thread per Lambda instance: ARCHITECTURE.md, invariants
async fn main() -> Result<(), Error> {
    init_tracing();
    let function = Function::init(None).await?;
    let (limit, namespace) = (function.config.sweep_limit, Arc::new(function.config.metrics_namespace.clone()));
    let engine = function.engine;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let (engine, namespace) = (Arc::clone(&engine), Arc::clone(&namespace));
        async move { handle(&engine, event, limit, &namespace).await }
    }))
    .await
}
