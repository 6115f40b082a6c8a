mod conformance;
mod support;

mod aws;
mod aws_pipeline;
mod bad_input;
mod cli;
mod example_destination;
mod http_destination;
mod ingress;
mod metrics;
mod operator;
mod operator_backends;
mod reconcile;
mod rules;
mod simulation;
mod verify;
