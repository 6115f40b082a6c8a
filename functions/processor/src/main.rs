//! The processor Lambda: wires configuration and clients once per cold start, then runs the handler.
//!
//! The backend comes from the environment:
//! - `SYNCTRAIL_TABLE` set: the AWS backend — `SYNCTRAIL_TABLE`, `SYNCTRAIL_BUCKET`, `SYNCTRAIL_QUEUE_URL`,
//!   `SYNCTRAIL_DLQ_URL` (and `AWS_ENDPOINT_URL`, `AWS_REGION` when set); the destination is its DynamoDB mirror.
//! - otherwise: the embedded backend under `SYNCTRAIL_HOME` (default `/tmp/synctrail`), which is what
//!   `cargo lambda watch` uses locally.
//!
//! Engine settings come from `Settings::from_env` (`SYNCTRAIL_IN_ORDER_TYPES`, `SYNCTRAIL_MAX_ATTEMPTS`, …).
//! Logs are JSON lines, level from `RUST_LOG`.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;
use synctrail::engine::{Engine, Ports};
use synctrail::store::aws::{AwsBackend, AwsConfig};
use synctrail::store::sqlite::{Embedded, EmbeddedOptions};
use synctrail::{Clock, Settings, SystemClock};
use synctrail_processor::{InvocationContext, Processor};

/// Records are not started this close to the invocation's deadline.
const SAFETY_MARGIN_SECONDS: i64 = 1;

/// Where the embedded backend lives when no `SYNCTRAIL_HOME` is given (Lambda's only writable directory).
const DEFAULT_HOME: &str = "/tmp/synctrail";

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt().json().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let settings = Settings::from_env().map_err(|e| format!("{e}; fix the function's environment variables"))?;
    let ports = ports().await?;
    let engine = Arc::new(Engine::new(ports, settings));
    let processor = Arc::new(Processor::new(engine, chrono::Duration::seconds(SAFETY_MARGIN_SECONDS)));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let processor = Arc::clone(&processor);
        async move {
            let context = InvocationContext::from_lambda(&event.context);
            Ok::<SqsBatchResponse, Error>(processor.handle(event.payload, &context).await)
        }
    }))
    .await
}

/// The engine's ports over the backend the environment names.
async fn ports() -> Result<Ports, Error> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    if std::env::var_os("SYNCTRAIL_TABLE").is_some_and(|t| !t.is_empty()) {
        let config = AwsConfig::from_env().map_err(|e| format!("{e}; set it in the function's environment"))?;
        let backend = AwsBackend::connect(&config).await.map_err(|e| {
            format!(
                "connecting to table {}, bucket {}, queue {}: {e}; check the names, the function's IAM permissions \
                 and that the resources exist",
                config.table, config.bucket, config.queue
            )
        })?;
        tracing::info!(table = %config.table, bucket = %config.bucket, queue = %config.queue, "AWS backend");
        return Ok(Ports {
            store: backend.store,
            payloads: backend.payloads,
            queue: backend.queue,
            destination: backend.mirror,
            clock,
        });
    }
    let home =
        std::env::var("SYNCTRAIL_HOME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| DEFAULT_HOME.to_owned());
    let embedded = Embedded::open(home.as_ref(), Arc::clone(&clock), EmbeddedOptions::default()).map_err(|e| {
        format!("opening the embedded backend under {home}: {e}; set SYNCTRAIL_HOME to a writable directory")
    })?;
    tracing::info!(home = %home, "embedded backend");
    Ok(Ports {
        store: embedded.store,
        payloads: embedded.payloads,
        queue: embedded.queue,
        destination: embedded.mirror,
        clock,
    })
}
