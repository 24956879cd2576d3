//! Shared pieces of the tcplab runner and the lesson binaries: the catalog, the lesson frame
//! and the runner's subcommands.

pub mod catalog;
pub mod cli;
pub mod desk;
pub mod lesson;
pub mod lessons;
