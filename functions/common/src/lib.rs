//! What every synctrail Lambda shares, so each function's `main.rs` only wires: the backend and the engine from
//! the environment ([`ports_from_env`], [`engine_from_env`], [`event_store_from_env`]), JSON logs
//! ([`init_tracing`]) and the invocation's context ([`InvocationContext`]).

mod context;
mod logging;
mod wiring;

pub use context::InvocationContext;
pub use logging::init_tracing;
pub use wiring::{embedded_ports, engine_from_env, event_store_from_env, ports_from_env, WiringError, DEFAULT_HOME};
