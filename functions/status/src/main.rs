//! The status Lambda: opens the event store the environment names once per cold start, then answers requests.
//!
//! On AWS only the table is opened, with no request at start-up, so the function needs `dynamodb:GetItem` and
//! nothing else (see `synctrail_lambda::event_store_from_env`); logs are JSON lines, level from `RUST_LOG`.

use aws_lambda_events::event::lambda_function_urls::{LambdaFunctionUrlRequest, LambdaFunctionUrlResponse};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;
use synctrail_lambda::{event_store_from_env, init_tracing};

#[tokio::main(flavor = "current_thread")] // one thread per Lambda instance: ARCHITECTURE.md, invariants
async fn main() -> Result<(), Error> {
    init_tracing();
    let (_, store) = event_store_from_env().await?;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<LambdaFunctionUrlRequest>| {
        let store = Arc::clone(&store);
        async move {
            Ok::<LambdaFunctionUrlResponse, Error>(synctrail_status::respond(store.as_ref(), &event.payload).await)
        }
    }))
    .await
}
