//! The processor Lambda over the team's own store: everything else comes from the environment.

use synctrail_example_sqlite_destination::SqliteDestination;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    synctrail_processor::run_processor(SqliteDestination::from_env()?).await
}
