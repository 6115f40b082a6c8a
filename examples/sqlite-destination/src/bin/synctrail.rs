//! The whole `synctrail` CLI (`run`, `reprocess --invoke`, `status`, …) over the team's own store.

use synctrail_example_sqlite_destination::SqliteDestination;

fn main() -> std::process::ExitCode {
    match SqliteDestination::from_env() {
        Ok(destination) => synctrail_cli::run_with_destination(destination),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
