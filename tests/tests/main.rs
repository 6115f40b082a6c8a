mod conformance;
mod support;

mod aws;
mod aws_pipeline;
mod bad_input;
mod operator;
mod rules;
mod simulation;
