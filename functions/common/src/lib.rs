//! What every synctrail Lambda shares, so each function's `main.rs` only wires: the cold start ([`Function::init`]:
//! configuration read once, the engine built by the same builder as the CLI's), JSON logs ([`init_tracing`]) and
//! the invocation's context ([`InvocationContext`]).

mod context;
mod init;
mod logging;

pub use context::InvocationContext;
pub use init::{config_from_env, config_from_vars, event_store_from_env, Function, InitError};
pub use logging::init_tracing;
