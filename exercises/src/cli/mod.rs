//! The runner's subcommands, one file each, and what they share (`runner`).

pub mod diagram;
pub mod doctor;
pub mod lessons;
pub mod runner;
pub mod model;
pub mod snapshot;
pub mod watch;
