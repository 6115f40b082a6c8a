mod conformance;
mod support;

mod aws;
mod aws_meter;
mod aws_pipeline;
mod bad_input;
mod cli;
mod connectors;
mod example_destination;
mod http_destination;
mod ingress;
mod metrics;
mod operator;
mod operator_backends;
mod rules;
mod simulation;
mod webhooks;
