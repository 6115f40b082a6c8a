//! The processor Lambda: wires configuration and clients once per cold start, then runs the handler.
//!
//! Until the AWS adapters land this binary runs on the embedded backend under `SYNCTRAIL_HOME` (default
//! `/tmp/synctrail`), which is what `cargo lambda watch` uses locally.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;
use synctrail::engine::{Engine, Ports};
use synctrail::store::sqlite::{Embedded, EmbeddedOptions};
use synctrail::{Clock, Settings, SystemClock};
use synctrail_processor::{InvocationContext, Processor};

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt().json().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let home = std::env::var("SYNCTRAIL_HOME").unwrap_or_else(|_| "/tmp/synctrail".to_owned());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let embedded = Embedded::open(home.as_ref(), Arc::clone(&clock), EmbeddedOptions::default())?;
    let ports = Ports {
        store: embedded.store.clone(),
        payloads: embedded.payloads.clone(),
        queue: embedded.queue.clone(),
        destination: embedded.mirror.clone(),
        clock,
    };
    let engine = Arc::new(Engine::new(ports, Settings::from_env()?));
    let processor = Arc::new(Processor::new(engine, chrono::Duration::seconds(1)));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let processor = Arc::clone(&processor);
        async move {
            let context = InvocationContext::from_lambda(&event.context);
            Ok::<SqsBatchResponse, Error>(processor.handle(event.payload, &context).await)
        }
    }))
    .await
}
