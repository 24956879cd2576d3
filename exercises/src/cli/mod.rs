//! The runner's subcommands, one file each.

pub mod doctor;
pub mod snapshot;
pub mod trace;
