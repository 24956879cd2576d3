//! A scripted remote TCP endpoint: the other side of a connection, played from a script in
//! packetdrill's language, against the real kernel's socket. It stages what two
//! well-behaved programs on loopback cannot: a lost last ACK, crossed FINs, a peer that
//! vanishes or advertises a zero window.
//!
//! - [`script`]: the language (the subset closing needs), parsed into events;
//! - [`link`]: the wire, `tun0`, as a TUN device or a veth pair with an AF_PACKET socket;
//! - [`wire`]: segments built and read back;
//! - [`sys`]: the system calls a script makes on the kernel's socket;
//! - [`run`]: the clock and the comparison, line by line.
//!
//! The peer needs a network namespace of its own (the link is named `tun0`, addresses are
//! fixed, shell commands in scripts set sysctls): the caller makes one before [`run::run`]
//! (the runner's `tcplab peer` does, as a user + network namespace when not root).
//!
//! Left out on purpose: IPv6, more than one connection per script, UDP and ICMP, and
//! packetdrill's remote ("wire server") mode.

pub mod link;
pub mod run;
pub mod script;
pub mod sys;
pub mod wire;

pub use run::{Options, Report, run};
pub use script::{Script, parse};
