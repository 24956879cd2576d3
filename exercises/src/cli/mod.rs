//! The runner's subcommands, one file each, and what they share (`runner`).

pub mod capture;
pub mod diagram;
pub mod doctor;
pub mod lessons;
pub mod model;
pub mod model_kernel;
pub mod peer;
pub mod runner;
pub mod snapshot;
pub mod trace;
pub mod watch;
pub mod watch_file;
