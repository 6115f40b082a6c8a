//! The `synctrail` binary (see `synctrail_cli::main`).

/// mimalloc, for Rust's allocations and (feature `override`) SQLite's: the embedded pipeline allocates and frees
/// small buffers at every step (JSON, SQL values, futures), and glibc's allocator took ≈ 12 % of its CPU
/// (`make bench`: ≈ 20 % less CPU per event with mimalloc).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    synctrail_cli::main()
}
