//! Small questions to the kernel that lessons and the tracer share, each answered once: the
//! counters of the network namespace's MIBs (`/proc/net/snmp`, `/proc/net/netstat`), numeric
//! sysctls, errno names, the open-file limit and whether we are root.
//!
//! The MIB files are parsed by hand: each is two lines per group (names, then values), which
//! no crate covers better than the dozen lines below. Errno names come from `nix`'s `Errno`,
//! the open-file limit from its `getrlimit`/`setrlimit` and the uid from its `geteuid`, so
//! this file has no `unsafe`.

use std::collections::HashMap;
use std::io;

use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// One group of a /proc/net MIB file (`Tcp:` in `/proc/net/snmp`, `TcpExt:` in
/// `/proc/net/netstat`), by counter name, for this process's network namespace; empty when
/// the file cannot be read. In a namespace of a lesson's own they count only its traffic.
pub fn mib_counters(file: &str, group: &str) -> HashMap<String, u64> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    parse_mib(&text, group)
}

/// [`mib_counters`] on the text of a MIB file.
pub fn parse_mib(text: &str, group: &str) -> HashMap<String, u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    match (lines.next(), lines.next()) {
        (Some(names), Some(values)) => names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
            .filter_map(|(n, v)| Some((n.to_string(), v.parse().ok()?)))
            .collect(),
        _ => HashMap::new(),
    }
}

/// The namespace's `TcpExt` counters (`nstat`'s TcpExtNAME), from /proc/net/netstat.
pub fn tcp_ext_counters() -> HashMap<String, u64> {
    mib_counters("/proc/net/netstat", "TcpExt")
}

/// The namespace's `Tcp` counters (`ActiveOpens`, `OutRsts`...), from /proc/net/snmp.
pub fn tcp_counters() -> HashMap<String, u64> {
    mib_counters("/proc/net/snmp", "Tcp")
}

/// One `TcpExt` counter; `None` when /proc/net/netstat is unreadable or lacks it. These
/// count for the whole network namespace: other programs may add to them.
pub fn tcp_ext_counter(name: &str) -> Option<u64> {
    tcp_ext_counters().get(name).copied()
}

/// How much a `TcpExt` counter grew since `before` (`None` when unreadable).
pub fn tcp_ext_growth(name: &str, before: Option<u64>) -> Option<u64> {
    Some(tcp_ext_counter(name)?.saturating_sub(before?))
}

/// A numeric sysctl under /proc/sys, e.g. `net/ipv4/tcp_fin_timeout`; `None` if unreadable.
pub fn sysctl(path: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The kernel's name for the error a call returned: `ECONNRESET`, `EADDRINUSE`... A timeout
/// (`EAGAIN` from a socket timeout, or `ETIMEDOUT`) reads as `timeout`; an error without an
/// errno reads as its text.
pub fn errno_name(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::ETIMEDOUT) => "timeout".into(),
        Some(n) => match Errno::from_raw(n) {
            Errno::UnknownErrno => format!("errno {n} ({e})"),
            known => format!("{known:?}"),
        },
        None => e.to_string(),
    }
}

/// The open-file limit of this process (RLIMIT_NOFILE, soft); 1024 if it cannot be read.
pub fn open_file_limit() -> u64 {
    getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft)
}

/// Raise the soft open-file limit to the hard one (lessons with many sockets need it). Best
/// effort: on failure the limit stays, and [`open_file_limit`] says what it is.
pub fn raise_open_file_limit() {
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mib_groups_are_read_by_name() {
        let text = "Tcp: RtoAlgorithm ActiveOpens PassiveOpens OutRsts\n\
                    Tcp: 1 12 7 3\n\
                    Udp: InDatagrams\n\
                    Udp: 5\n";
        let tcp = parse_mib(text, "Tcp");
        assert_eq!(tcp.get("ActiveOpens"), Some(&12));
        assert_eq!(tcp.get("OutRsts"), Some(&3));
        assert_eq!(tcp.get("InDatagrams"), None);
        assert!(parse_mib(text, "TcpExt").is_empty());
        assert!(
            parse_mib("Tcp: A B\n", "Tcp").is_empty(),
            "a names line alone"
        );
    }

    #[test]
    fn errnos_read_as_the_kernel_names_them() {
        let name = |n| errno_name(&io::Error::from_raw_os_error(n));
        assert_eq!(name(libc::ECONNRESET), "ECONNRESET");
        assert_eq!(name(libc::EPIPE), "EPIPE");
        assert_eq!(name(libc::EADDRINUSE), "EADDRINUSE");
        assert_eq!(name(libc::EADDRNOTAVAIL), "EADDRNOTAVAIL");
        assert_eq!(name(libc::EAGAIN), "timeout");
        assert_eq!(name(libc::ETIMEDOUT), "timeout");
        assert_eq!(errno_name(&io::Error::other("plain")), "plain");
    }

    #[test]
    fn this_namespace_has_tcp_counters() {
        assert!(tcp_counters().contains_key("ActiveOpens"));
        assert!(open_file_limit() > 0);
    }
}
