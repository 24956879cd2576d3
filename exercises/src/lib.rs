//! Shared pieces of the tcplab runner and the lesson binaries:
//!
//! - [`catalog`]: the lessons, their binaries and expected verdicts (`lessons.toml`);
//! - [`lab`]: the frame every lesson binary runs in ([`lab::Lab`]: flags, narration, the
//!   kernel's view of the lesson's port, evidence, the JSON report);
//! - [`lessons`]: one driver per lesson (clients, servers, grading), called by the binaries;
//! - [`facts`]: the names of the report's facts that tests read;
//! - [`cli`]: the runner's subcommands; [`desk`]: the students' copies.

pub use tcplab_catalog as catalog;
pub mod cli;
pub mod desk;
pub mod facts;
pub mod lab;
pub mod lessons;

/// The frame's old name, for students' copies made before it became [`lab`] (a copy keeps its
/// `use` lines until `reset`).
#[doc(hidden)]
pub use lab as lesson;
