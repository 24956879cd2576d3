//! The parts of lessons that pairs share: the clients, the observation and the grading.
//! What differs between the leaking and the fixed binary stays in the binary, marked
//! `// LESSON:`.

pub mod abortive;
pub mod async_echo;
pub mod echo;
pub mod mystery;
pub mod ports;
pub mod stuck;
pub mod half_close;
pub mod net;
