//! The processor Lambda of the reference deployment: the destination, the backend and the settings all come from
//! the environment (see `synctrail::config`), read once per cold start; logs are JSON lines.

use synctrail_lambda::{init_tracing, Function};

#[tokio::main(flavor = "current_thread")] // one thread per Lambda instance: ARCHITECTURE.md, invariants
async fn main() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    synctrail_processor::run(Function::init(None).await?).await
}
