//! The limits every face checks against, in one place: the runner's and the lesson binaries'
//! flags, and Python's `tcplab.run()` (which reads them from the native module).

use std::time::Duration;

/// The most connections a lesson accepts: enough to see piles, bounded so a typo cannot
/// exhaust the machine.
pub const MAX_CONNECTIONS: usize = 20_000;

/// The longest `--hold` (seconds a lesson keeps its sockets after the report).
pub const MAX_HOLD_SECS: f64 = 3600.0;

/// How long a lesson may run before the runner (or Python's `run()`) stops it, `--hold`
/// not counted. The churn lessons in a namespace take the longest.
pub const LESSON_DEADLINE: Duration = Duration::from_secs(180);

/// The shortest churn phase a lesson accepts (`--churn-secs`).
pub const MIN_CHURN_SECS: f64 = 0.01;

/// The longest churn phase a lesson accepts (`--churn-secs`).
pub const MAX_CHURN_SECS: f64 = 10.0;

/// The lowest `--churn-rate`, connections per second.
pub const MIN_CHURN_RATE: f64 = 1.0;

/// The highest `--churn-rate` accepted, connections per second; above what two cores do.
pub const MAX_CHURN_RATE: f64 = 1_000_000.0;
