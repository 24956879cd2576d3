//! The RFC 9293 model of a TCP connection: the state machine of one endpoint
//! ([`machine`]), a deterministic two-endpoint simulator with a scriptable network ([`sim`]),
//! named scenarios ([`scenario`]), renderers for ladder diagrams ([`ladder`]) and for the
//! state diagram built from the transition table itself ([`diagram`]), and a comparison with
//! what a kernel reported ([`compare`]).
//!
//! What it leaves out on purpose: everything about moving bytes efficiently (windows,
//! congestion control, options). The model exists to say which states a connection passes
//! through when it ends, and why; it never touches a socket, a clock or a random number.

pub mod compare;
pub mod diagram;
pub mod ladder;
pub mod machine;
pub mod scenario;
pub mod sim;

pub use compare::{Difference, DifferenceKind, Mapping, compare, compare_with, map_by_role};
pub use machine::{
    Call, Input, Options, Output, SegKind, Segment, State, Tcb, Timer, Timers, UserError,
};
pub use scenario::Scenario;
pub use sim::{NetAction, NetRule, Network, Script, SimResult, Simulator, simulate};
