//! Logs: JSON lines on standard output (which Lambda sends to CloudWatch), level from `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// Installs the JSON-lines subscriber, filtered by `RUST_LOG` (errors only when unset). A second call keeps the
/// subscriber already installed.
pub fn init_tracing() {
    let installed = tracing_subscriber::fmt().json().with_env_filter(EnvFilter::from_default_env()).try_init();
    if installed.is_err() {
        tracing::debug!("a tracing subscriber was already installed; keeping it");
    }
}
