//! What the kernel says about TCP sockets: a snapshot now ([`snapshot`]) and, in [`trace`],
//! every state change over time ([`trace::Tracer`], over [`tracefs`] or polling, with
//! [`infer`] filling in what polling is too slow to see).
//!
//! A snapshot comes from NETLINK_SOCK_DIAG, as `ss` gets it: the kernel filters by state and
//! port before anything is copied to us, which is what makes it fast at 100k sockets. The
//! /proc/net/tcp{,6} reader ([`procfs`]) gives the same rows when netlink is refused or when
//! asked for, and is what netstat and psutil read.
//!
//! Left out on purpose: UDP, UNIX sockets, TCP_INFO details (rtt, cwnd). tcplab teaches how
//! connections end; the columns here are the ones that lesson needs.

pub mod capture;
pub mod diag;
pub mod fds;
pub mod infer;
pub mod pids;
pub mod procfs;
pub mod trace;
pub mod tracefs;

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::state::{StateSet, TcpState};

/// Which timer the kernel is running on a socket (the `tr` column of /proc/net/tcp,
/// `idiag_timer` in sock_diag, `timer:(...)` in `ss -o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimerKind {
    /// Retransmission (also SYN-ACK retransmits of request sockets).
    Retransmit,
    /// Keepalive, or the orphaned FIN_WAIT2 timeout.
    Keepalive,
    /// The TIME_WAIT countdown.
    Timewait,
    /// Zero window probe.
    Probe,
}

impl fmt::Display for TimerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            TimerKind::Retransmit => "on",
            TimerKind::Keepalive => "keepalive",
            TimerKind::Timewait => "timewait",
            TimerKind::Probe => "persist",
        })
    }
}

/// One socket as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SocketRow {
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// The running timer, if any.
    #[serde(default)]
    pub timer: Option<TimerKind>,
    /// Milliseconds left on the running timer (`null` when none runs).
    pub timer_ms: Option<u64>,
    /// Bytes received but not yet read by the program (for a listener: the accept queue).
    pub recv_q: u32,
    /// Bytes sent but not yet acknowledged (for a listener: the backlog).
    pub send_q: u32,
    pub uid: u32,
    /// The socket's inode; 0 for mini-sockets (TIME_WAIT, request sockets) that have no file.
    pub inode: u64,
    /// Owner processes, filled only when asked for ([`Query::pids`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<Vec<u32>>,
}

/// Which address families to ask about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Family {
    #[default]
    Both,
    V4,
    V6,
}

/// How to get a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// sock_diag, falling back to /proc when netlink is refused.
    #[default]
    Auto,
    /// sock_diag only.
    Netlink,
    /// /proc/net/tcp{,6} only.
    Proc,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Method::Auto => "auto",
            Method::Netlink => "sock_diag",
            Method::Proc => "/proc/net/tcp",
        })
    }
}

/// What to ask the kernel for. The default asks for every TCP socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// States to report; filtered in the kernel (`idiag_states`).
    pub states: StateSet,
    /// Report a socket whose local or remote port is one of these; empty means any port.
    /// Filtered in the kernel with INET_DIAG_REQ_BYTECODE, like
    /// `ss '( sport = :P or dport = :P )'`.
    pub ports: Vec<u16>,
    pub family: Family,
    /// Also find the owner processes by inode through /proc/*/fd (like `ss -p`).
    pub pids: bool,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            states: StateSet::ALL,
            ports: Vec::new(),
            family: Family::Both,
            pids: false,
        }
    }
}

impl Query {
    /// Every socket on the given ports.
    pub fn ports(ports: &[u16]) -> Query {
        Query {
            ports: ports.to_vec(),
            ..Query::default()
        }
    }

    /// Restrict to these states (an empty list keeps every state).
    pub fn with_states(mut self, states: &[TcpState]) -> Query {
        self.states = StateSet::from_states(states);
        self
    }

    /// Whether a row satisfies this query (used by the /proc reader, which cannot filter in
    /// the kernel).
    pub fn matches(&self, row: &SocketRow) -> bool {
        let family_ok = match self.family {
            Family::Both => true,
            Family::V4 => row.local.is_ipv4(),
            Family::V6 => row.local.is_ipv6(),
        };
        let port_ok = self.ports.is_empty()
            || self
                .ports
                .iter()
                .any(|p| row.local.port() == *p || row.remote.port() == *p);
        family_ok && port_ok && self.states.contains(row.state)
    }
}

/// A snapshot and how it was taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub rows: Vec<SocketRow>,
    /// The method that produced the rows: `Netlink` or `Proc`, never `Auto`.
    pub method: Method,
    /// Why the method differs from the one asked for, if it does.
    pub note: Option<String>,
}

impl Snapshot {
    /// Rows per state, in state code order.
    pub fn counts(&self) -> std::collections::BTreeMap<TcpState, usize> {
        count_states(&self.rows)
    }
}

/// Count rows per state.
pub fn count_states(rows: &[SocketRow]) -> std::collections::BTreeMap<TcpState, usize> {
    let mut out = std::collections::BTreeMap::new();
    for r in rows {
        *out.entry(r.state).or_insert(0) += 1;
    }
    out
}

/// Take a snapshot of TCP sockets.
pub fn snapshot(query: &Query, method: Method) -> Result<Snapshot> {
    let (mut rows, used, note) = match method {
        Method::Netlink => (diag::dump(query)?, Method::Netlink, None),
        Method::Proc => (procfs::read(query)?, Method::Proc, None),
        Method::Auto => match diag::dump(query) {
            Ok(rows) => (rows, Method::Netlink, None),
            Err(e) => (
                procfs::read(query)?,
                Method::Proc,
                Some(format!(
                    "sock_diag failed ({e}); read /proc/net/tcp instead"
                )),
            ),
        },
    };
    if query.pids {
        pids::fill(&mut rows)?;
    }
    Ok(Snapshot {
        rows,
        method: used,
        note,
    })
}

/// Refuse a port number outside 0..=65535 with a message that says so.
pub fn check_port(port: i64) -> Result<u16> {
    u16::try_from(port).map_err(|_| Error::InvalidInput(format!("port {port} is outside 0..65535")))
}
