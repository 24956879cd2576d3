//! The parts of lessons that pairs share: the clients, the observation and the grading.
//! What differs between the leaking and the fixed binary stays in the binary, marked
//! `// LESSON:`.

pub mod accept_queue;
pub mod churn;
pub mod echo;
pub mod restart;
pub mod time_wait;
pub mod wait;
