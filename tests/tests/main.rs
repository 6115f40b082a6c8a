mod conformance;
mod support;

mod aws;
mod aws_pipeline;
mod bad_input;
mod http_destination;
mod metrics;
mod operator;
mod operator_backends;
mod rules;
mod simulation;
