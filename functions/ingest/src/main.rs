//! The ingest Lambda (a Function URL): builds the engine and the webhook configuration once per cold start —
//! secrets named by `SYNCTRAIL_WEBHOOK_SECRET_<SOURCE>_ARN` read from Secrets Manager — then answers
//! `POST /webhooks/{source}`; logs are JSON lines, one metric line per request.

use aws_lambda_events::event::lambda_function_urls::{LambdaFunctionUrlRequest, LambdaFunctionUrlResponse};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use std::sync::Arc;
use synctrail::config::BackendConfig;
use synctrail_ingest::{function_url, ingress_from_env, Ingest};
use synctrail_lambda::{init_tracing, Function, InvocationContext};

#[tokio::main(flavor = "current_thread")] // one thread per Lambda instance: ARCHITECTURE.md, invariants
async fn main() -> Result<(), Error> {
    init_tracing();
    let function = Function::init(None).await?;
    let (endpoint, region) = match &function.config.backend {
        BackendConfig::Aws(aws) => (aws.endpoint_url.clone(), aws.region.clone()),
        BackendConfig::Embedded(_) => (None, None),
    };
    let ingress = ingress_from_env(endpoint.as_deref(), region.as_deref()).await?;
    let ingest = Arc::new(Ingest::new(ingress, function.engine));
    let namespace = Arc::new(function.config.metrics_namespace);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<LambdaFunctionUrlRequest>| {
        let (ingest, namespace) = (Arc::clone(&ingest), Arc::clone(&namespace));
        async move {
            let context = InvocationContext::from_lambda(&event.context);
            let response = function_url::handle(&ingest, &event.payload, &context, &namespace).await;
            Ok::<LambdaFunctionUrlResponse, Error>(response)
        }
    }))
    .await
}
