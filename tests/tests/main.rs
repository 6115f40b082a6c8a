mod conformance;
mod support;

mod bad_input;
mod rules;
mod simulation;
mod aws;
