//! The names of the facts in a lesson's report that the tests (and graders) read: a driver
//! reports `lab.fact(facts::SERVER_TIME_WAIT, n)` and a test reads the same constant, so a
//! misspelt name fails to compile instead of reading nothing. Facts nobody reads by name stay
//! plain strings in their driver.

pub const ACCEPT_QUEUE: &str = "accept_queue";
pub const BACKLOG: &str = "backlog";
pub const BIND_ERROR: &str = "bind_error";
pub const BIND_OK: &str = "bind_ok";
pub const BYTES_RECEIVED: &str = "bytes_received";
pub const BYTES_SENT: &str = "bytes_sent";
pub const CHURN_CLOSER: &str = "churn_closer";
pub const CHURN_CONNECTIONS: &str = "churn_connections";
pub const CHURN_EXHAUSTED: &str = "churn_exhausted";
pub const CHURN_FAILED: &str = "churn_failed";
pub const CHURN_PEAK_TIME_WAIT: &str = "churn_peak_time_wait";
pub const CHURN_PORT_RANGE: &str = "churn_port_range";
pub const CHURN_PORTS: &str = "churn_ports";
pub const CHURN_RATE_PER_SEC: &str = "churn_rate_per_sec";
pub const CHURN_SAMPLES: &str = "churn_samples";
pub const CHURN_SECS: &str = "churn_secs";
pub const CHURN_STEADY_STATE_LINUX: &str = "churn_steady_state_linux";
pub const CHURN_TARGET_RATE: &str = "churn_target_rate";
pub const CLIENT_ERROR: &str = "client_error";
pub const CLIENT_ESTABLISHED: &str = "client_established";
pub const CLIENT_FIN_WAIT2: &str = "client_fin_wait2";
pub const CLIENT_SYN_SENT: &str = "client_syn_sent";
pub const CLIENT_TIME_WAIT: &str = "client_time_wait";
pub const CONNECTIONS: &str = "connections";
pub const ERROR: &str = "error";
pub const HALF_CLOSED_CLIENT_FIN_WAIT2: &str = "half_closed_client_fin_wait2";
pub const HALF_CLOSED_SERVER_CLOSE_WAIT: &str = "half_closed_server_close_wait";
pub const LISTENING_AFTER_RESTART: &str = "listening_after_restart";
pub const NAMESPACE: &str = "namespace";
pub const QUEUE_FULL: &str = "queue_full";
pub const REPLY_BYTES_EXPECTED: &str = "reply_bytes_expected";
pub const REPLY_BYTES_RECEIVED: &str = "reply_bytes_received";
pub const SERVER_CLOSE_WAIT: &str = "server_close_wait";
pub const SERVER_CLOSE_WAIT_BETWEEN: &str = "server_close_wait_between";
pub const SERVER_ERROR: &str = "server_error";
pub const SERVER_ESTABLISHED: &str = "server_established";
pub const SERVER_TIME_WAIT: &str = "server_time_wait";
pub const TCP_MAX_TW_BUCKETS: &str = "tcp_max_tw_buckets";
pub const TIMER_MS: &str = "timer_ms";
pub const TIMER_MS_MAX: &str = "timer_ms_max";
pub const TIMER_MS_MIN: &str = "timer_ms_min";
pub const UNREAD_CLIENT_ERROR: &str = "unread_client_error";
pub const UNREAD_SERVER_TIME_WAIT: &str = "unread_server_time_wait";
