//! The `synctrail` command's library: the local runtime, the commands, the demo workload and its checker.
//!
//! Everything is public so the integration tests can drive the workload generator, the checker and the commands.

pub mod args;
pub mod backend;
pub mod check;
pub mod commands;
pub mod config;
pub mod cpu;
pub mod disk;
pub mod duration;
mod entry;
pub mod error;
pub mod interrupt;
pub mod output;
pub mod prices;
pub mod progress;
pub mod requests;
pub mod runtime;
pub mod serve;
pub mod workload;

pub use entry::{main, run_with_destination};
pub use error::CliError;
