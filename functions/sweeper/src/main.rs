//! The sweeper Lambda: builds the engine the environment names once per cold start, then sweeps on every
//! scheduled invocation.
//!
//! The backend and the engine settings come from the environment (see `synctrail_lambda::engine_from_env`), the
//! limit from `SYNCTRAIL_SWEEP_LIMIT`; logs are JSON lines, level from `RUST_LOG`.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;
use std::sync::Arc;
use synctrail::SystemClock;
use synctrail_lambda::{engine_from_env, init_tracing};
use synctrail_sweeper::{handle, limit_from_env};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let limit = limit_from_env()?;
    let engine = Arc::new(engine_from_env(Arc::new(SystemClock)).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let engine = Arc::clone(&engine);
        async move { handle(&engine, event, limit).await }
    }))
    .await
}
