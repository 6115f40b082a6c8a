//! The `synctrail` binary (see `synctrail_cli::main`).

fn main() -> std::process::ExitCode {
    synctrail_cli::main()
}
