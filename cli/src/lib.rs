//! The `synctrail` command's library: the local runtime, the demo workload and the commands.

pub mod runtime;
pub mod backend;
