//! Shared pieces of the tcplab runner and the lesson binaries.

pub mod cli;
