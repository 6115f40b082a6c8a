mod conformance;
mod support;

mod aws;
mod bad_input;
mod rules;
mod simulation;
