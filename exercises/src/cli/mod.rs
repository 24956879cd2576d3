//! The runner's subcommands, one file each.

pub mod diagram;
pub mod doctor;
pub mod model;
pub mod snapshot;
