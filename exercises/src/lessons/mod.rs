//! The parts of lessons that pairs share: the clients, the observation and the grading.
//! What differs between the leaking and the fixed binary stays in the binary, marked
//! `// LESSON:`.

pub mod abortive;
pub mod accept_queue;
pub mod async_echo;
pub mod churn;
pub mod crossed;
pub mod echo;
pub mod half_close;
pub mod half_open;
pub mod last_ack;
pub mod mystery;
pub mod net;
pub mod ports;
pub mod restart;
pub mod rst;
pub mod scripted;
pub mod stuck;
pub mod time_wait;
pub mod zero_window;
