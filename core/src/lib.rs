//! tcplab-core: everything reusable about watching TCP connections end on a real Linux kernel.
//!
//! - [`state`]: the TCP states as Linux numbers them, with every common spelling.
//! - [`observe`]: what the kernel says right now (sock_diag snapshots, a /proc fallback) and
//!   over time (the transition tracer).
//! - [`segment`]: a TCP segment as it crossed the wire, parsed from a captured frame.
//! - [`timeline`]: an ordered list of state changes, observed or modelled, and the segments
//!   captured beside them.
//! - [`model`]: the RFC 9293 state machine and a two-endpoint simulator.
//! - [`peer`]: a scripted remote endpoint (packetdrill's language) against the real kernel.
//! - [`sockets`]: the socket options the lessons turn on and off.
//! - [`kernel`]: the namespace's counters, sysctls, errno names, rlimits, root or not.
//! - [`vocab`] and [`limits`]: the names users type and the limits every face checks.
//!
//! This crate has no Python and no terminal UI in it on purpose: the runner, the lesson
//! binaries and the Python bindings are thin faces over it.

pub mod error;
pub mod kernel;
pub mod ladder;
pub mod limits;
pub mod model;
pub mod netns;
pub mod observe;
pub mod peer;
pub mod segment;
pub mod sockets;
pub mod state;
pub mod timeline;
pub mod vocab;

pub use error::{Error, Result};
pub use segment::Segment;
pub use state::TcpState;
pub use timeline::{Event, Source, Timeline};
pub use vocab::Vocabulary;
