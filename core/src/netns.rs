//! A private network namespace for the lessons that flood or tune the kernel (05's churn,
//! 09's port exhaustion): its own loopback, its own socket table and its own copy of the
//! per-namespace `net.ipv4` sysctls (most of them; a few such as tcp_mem and tcp_max_orphans
//! are machine-wide), gone when the process ends. Nothing on the host is changed or filled.
//!
//! unshare(2) only works while the process has a single thread (a new user namespace
//! requires it), so a lesson calls [`enter`] before it starts any thread.
//!
//! Where unshare is refused (a default Docker container's seccomp profile, Ubuntu 24.04's
//! AppArmor restriction on unprivileged user namespaces, a kernel built without them),
//! [`try_enter`] says so without failing, and a lesson that has another way (09) takes it.
//! Setting [`NO_NETNS_ENV`] to `1` makes [`try_enter`] refuse on purpose, so that the other
//! way can be run and tested on a machine where namespaces work.

use std::fmt;
use std::io;

use anyhow::{Context, Result, bail};

/// The environment variable that makes [`try_enter`] act as if namespaces were refused.
pub const NO_NETNS_ENV: &str = "TCPLAB_NO_NETNS";

/// Why no private network namespace was made; the process is still in the one it started in.
#[derive(Debug)]
pub enum Refused {
    /// [`NO_NETNS_ENV`] asked for it.
    Asked,
    /// unshare(2) failed with this error.
    Unshare(io::Error),
    /// /proc/sys is mounted read-only (Docker does this to every container): a new
    /// namespace's sysctls could not be set, so it would be no use to a lesson that sets them.
    ReadOnlySysctls,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Asked => write!(f, "{NO_NETNS_ENV}=1 asks for no private network namespace"),
            Refused::ReadOnlySysctls => write!(
                f,
                "/proc/sys is mounted read-only here (as in a container), so a private \
                 namespace's sysctls could not be set"
            ),
            Refused::Unshare(e) => write!(
                f,
                "cannot create a private network namespace (unshare: {e}). In a container, \
                 the runtime's seccomp profile refuses unshare (Docker: `--security-opt \
                 seccomp=unconfined`, or `--cap-add SYS_ADMIN`); elsewhere enable unprivileged \
                 user namespaces (`sysctl user.max_user_namespaces=10000`; on Debian/Ubuntu \
                 also `sysctl kernel.unprivileged_userns_clone=1`, and on Ubuntu 24.04 \
                 `kernel.apparmor_restrict_unprivileged_userns=0`), or run as root. \
                 `tcplab doctor` checks all of these"
            ),
        }
    }
}

/// Whether /proc/sys/net is mounted read-only, as in a Docker container (even one allowed to
/// unshare): a namespace made there cannot change its own sysctls.
pub fn sysctls_read_only() -> bool {
    let path = c"/proc/sys/net";
    // SAFETY: statvfs writes into the zeroed struct we pass; the path is NUL-terminated.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        libc::statvfs(path.as_ptr(), &mut st) == 0 && st.f_flag & libc::ST_RDONLY != 0
    }
}

/// [`try_enter`] for a lesson that sets the namespace's sysctls: refused up front where
/// /proc/sys is read-only, before any namespace is made.
pub fn try_enter_with_sysctls(
    prefer: Prefer,
) -> Result<std::result::Result<&'static str, Refused>> {
    if refused_on_purpose() {
        return Ok(Err(Refused::Asked));
    }
    if sysctls_read_only() {
        return Ok(Err(Refused::ReadOnlySysctls));
    }
    try_enter(prefer)
}

/// Whether [`NO_NETNS_ENV`] is set to `1`.
pub fn refused_on_purpose() -> bool {
    std::env::var_os(NO_NETNS_ENV).is_some_and(|v| v == "1")
}

/// Which kind of namespace to try first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefer {
    /// A network namespace alone when root (the tracepoint tracer stays usable: it needs
    /// privileges in the initial user namespace), else a user + network namespace.
    KeepRoot,
    /// A user + network namespace even for root: the tracer then polls sock_diag, which
    /// sees this namespace only. For a lesson on a fixed port number, which other
    /// namespaces (another run of the same lesson) may use at the same time: the
    /// tracepoint is global and would see them too.
    UserNamespace,
}

/// Move this process into a new network namespace and bring its loopback up. Returns what
/// was created, for the narration.
pub fn enter(prefer: Prefer) -> Result<&'static str> {
    match try_enter(prefer)? {
        Ok(how) => Ok(how),
        Err(refused) => bail!("{refused}"),
    }
}

/// Like [`enter`], but a refused unshare (or [`NO_NETNS_ENV`]) is an answer, not an error:
/// `Ok(Err(why))` leaves the process where it was. An error after unshare succeeded (the ids
/// cannot be mapped, the loopback cannot be brought up) is still an error: the process is
/// then in a namespace it cannot use.
pub fn try_enter(prefer: Prefer) -> Result<std::result::Result<&'static str, Refused>> {
    if refused_on_purpose() {
        return Ok(Err(Refused::Asked));
    }
    // SAFETY: plain syscalls on our own process, which has no other thread yet. The ids are
    // read before unshare(): inside a new user namespace they read as unmapped (65534).
    let (uid, gid, euid) = unsafe { (libc::getuid(), libc::getgid(), libc::geteuid()) };
    // Root without CAP_NET_ADMIN (a container given only CAP_SYS_ADMIN) could make a network
    // namespace but not bring its loopback up: it takes the user namespace way instead.
    let how = if prefer == Prefer::KeepRoot
        && euid == 0
        && has_cap_net_admin()
        && unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0
    {
        "network namespace (as root)"
    } else if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } == 0 {
        map_ids(uid, gid)?;
        "user + network namespace"
    } else {
        let userns_error = io::Error::last_os_error();
        if euid != 0 || unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Ok(Err(Refused::Unshare(userns_error)));
        }
        "network namespace (as root)"
    };
    crate::sockets::loopback_up().context("bring lo up in the new namespace")?;
    Ok(Ok(how))
}

/// CAP_NET_ADMIN's bit in the capability sets (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;

/// Whether this process has CAP_NET_ADMIN (in CapEff of /proc/self/status).
fn has_cap_net_admin() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            let hex = text.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << CAP_NET_ADMIN) != 0)
}

/// Map our own (outside) uid and gid to root inside the new user namespace, as `unshare -r` does, so
/// that the namespace's sysctls are writable. setgroups must be denied before an
/// unprivileged process may write gid_map.
fn map_ids(uid: libc::uid_t, gid: libc::gid_t) -> Result<()> {
    match std::fs::write("/proc/self/setgroups", "deny") {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).context("write /proc/self/setgroups"),
    }
    std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
        .context("write /proc/self/uid_map")?;
    std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
        .context("write /proc/self/gid_map")?;
    Ok(())
}

/// Write `/proc/sys/net/ipv4/NAME` (in the namespace: only ours changes).
pub fn set_ipv4_sysctl(name: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv4/{name}");
    std::fs::write(&path, value).with_context(|| format!("write {value:?} to {path}"))
}

/// Resets this namespace's TCP has sent so far: `Tcp: OutRsts` of /proc/net/snmp (every RST,
/// whether from SO_LINGER 0, unread data at close, or an answer to a segment for no socket).
pub fn resets_sent() -> u64 {
    crate::kernel::tcp_counters()
        .get("OutRsts")
        .copied()
        .unwrap_or(0)
}
