//! The runner's subcommands, one file each, and what they share (`runner`).

pub mod doctor;
pub mod lessons;
pub mod runner;
pub mod snapshot;
pub mod trace;
pub mod watch;
