//! One error type for the crate. Every message says what happened and what to do next.

use std::io;

/// Errors from tcplab-core. Each variant's message is written for a student reading a terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A state name none of the known spellings matches.
    #[error("unknown TCP state {name:?}; valid names: {valid}")]
    UnknownState { name: String, valid: String },
    /// A name (backend, method, family, side) none of the known spellings matches.
    #[error("unknown {what} {name:?}; valid: {valid}")]
    UnknownName {
        what: &'static str,
        name: String,
        valid: String,
    },
    /// Something the user passed in is out of range or malformed.
    #[error("{0}")]
    InvalidInput(String),
    /// A line of /proc/net/tcp{,6} that does not parse.
    #[error("malformed line {line_no} in {path}: {reason} (line: {line:?})")]
    ProcParse {
        path: String,
        line_no: usize,
        reason: String,
        line: String,
    },
    /// The kernel refused or garbled a sock_diag exchange.
    #[error("sock_diag: {0}")]
    Netlink(String),
    /// sock_diag cannot be used here at all (no socket, not allowed, no reply), while
    /// /proc/net/tcp may still be readable. Each face words the way out (`--method proc`,
    /// `method="proc"`).
    #[error("sock_diag: {0}")]
    SockDiagUnavailable(String),
    /// The tracepoint backend was asked for without root. Polling works for any user; each
    /// face words how to ask for it (`--backend poll`, `backend="poll"`).
    #[error(
        "the tracepoint backend needs root (tracefs is root-only); the poll backend works \
         for any user (sock_diag every {poll_every})"
    )]
    TracepointNeedsRoot { poll_every: String },
    /// Something needs a privilege this process lacks; the message says which and why.
    #[error("{0}")]
    Permission(String),
    /// Any I/O error, with what we were doing at the time.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wrap an I/O error with a short note on what was being attempted.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
