//! A private tracefs instance for the `sock:inet_sock_set_state` tracepoint, and the parser
//! for the lines its `trace_pipe` prints.
//!
//! What it teaches: how to use kernel tracing without touching anybody else's. The global
//! tracing files (`<tracefs>/trace`, `set_event`, `tracing_on`) belong to the machine; an
//! instance (`mkdir <tracefs>/instances/NAME`) is a ring buffer of our own, with its own
//! events, filters and clock, removed with `rmdir`. When tracefs is not mounted we mount it
//! at a private temporary directory (tracefs is one filesystem, it can be mounted at many
//! places at once) and unmount that mount point when done, so parallel tracers never step on
//! each other's mounts. Everything we create is removed by `Drop`, so an error or an early
//! return cleans up too; a process that was SIGKILLed leaves its instance behind, and the
//! next tracer removes instances and mounts whose owner pid is gone.
//!
//! Left out on purpose: the binary per-CPU buffers (`per_cpu/cpuN/trace_pipe_raw`). The text
//! pipe is fast enough for loopback churn and shows what a student can `cat` by hand.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::state::TcpState;

/// The event we enable, relative to an instance's `events/` directory.
pub const EVENT: &str = "sock/inet_sock_set_state";

/// Prefix of our instance names (`tcplab-<pid>-<n>`).
pub const INSTANCE_PREFIX: &str = "tcplab-";

/// Prefix of our private mount points, in the temp directory (`tcplab-tracefs-<pid>-<n>`).
pub const MOUNT_PREFIX: &str = "tcplab-tracefs-";

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn next_n() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Where tracefs is mounted already, if it is (first `tracefs` line of /proc/mounts that is
/// not one of our private mounts).
pub fn find_mount() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (_dev, dir, fstype) = (it.next()?, it.next()?, it.next()?);
            (fstype == "tracefs").then(|| PathBuf::from(unescape_mount_path(dir)))
        })
        .find(|p| {
            !p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(MOUNT_PREFIX))
        })
}

/// /proc/mounts escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// A tracefs mount of our own at a fresh temporary directory, unmounted on drop.
#[derive(Debug)]
pub struct PrivateMount {
    dir: PathBuf,
}

impl PrivateMount {
    /// Mount tracefs at `$TMPDIR/tcplab-tracefs-<pid>-<n>` (needs root).
    pub fn new() -> Result<PrivateMount> {
        let dir =
            std::env::temp_dir().join(format!("{MOUNT_PREFIX}{}-{}", std::process::id(), next_n()));
        fs::create_dir(&dir).map_err(|e| Error::io(format!("mkdir {}", dir.display()), e))?;
        let c_dir = std::ffi::CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| Error::InvalidInput("temp dir path has a NUL byte".into()))?;
        // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call;
        // tracefs takes no mount data.
        let rc = unsafe {
            libc::mount(
                c"nodev".as_ptr(),
                c_dir.as_ptr(),
                c"tracefs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            let _ = fs::remove_dir(&dir);
            return Err(Error::io(format!("mount tracefs at {}", dir.display()), e));
        }
        Ok(PrivateMount { dir })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PrivateMount {
    fn drop(&mut self) {
        unmount_and_remove(&self.dir);
    }
}

fn unmount_and_remove(dir: &Path) {
    if let Ok(c_dir) = std::ffi::CString::new(dir.as_os_str().as_bytes()) {
        // SAFETY: a valid NUL-terminated path. A plain unmount first; if something still holds
        // a file open, detach it (it goes away when the last file closes).
        unsafe {
            if libc::umount2(c_dir.as_ptr(), 0) != 0 {
                libc::umount2(c_dir.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// tracefs, found mounted or mounted privately by us.
#[derive(Debug)]
pub struct Tracefs {
    root: PathBuf,
    mount: Option<PrivateMount>,
}

impl Tracefs {
    /// Use the mounted tracefs, or mount a private one (root only).
    pub fn open() -> Result<Tracefs> {
        if let Some(root) = find_mount()
            && root.join("instances").is_dir()
        {
            return Ok(Tracefs { root, mount: None });
        }
        let mount = PrivateMount::new()?;
        Ok(Tracefs {
            root: mount.path().to_path_buf(),
            mount: Some(mount),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Our private mount point, if we had to mount tracefs ourselves.
    pub fn private_mount(&self) -> Option<&Path> {
        self.mount.as_ref().map(|m| m.path())
    }

    /// Remove instances and private mounts left by tcplab processes that no longer exist
    /// (a SIGKILL gives no chance to clean up).
    pub fn reap_stale(&self) {
        let alive = |pid: &str| Path::new("/proc").join(pid).exists();
        if let Ok(rd) = fs::read_dir(self.root.join("instances")) {
            for entry in rd.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if let Some(pid) = owner_pid(&name, INSTANCE_PREFIX)
                    && !alive(pid)
                {
                    let dir = entry.path();
                    let _ = fs::write(dir.join("events").join(EVENT).join("enable"), "0");
                    let _ = fs::remove_dir(&dir);
                }
            }
        }
        if let Ok(mounts) = fs::read_to_string("/proc/mounts") {
            for l in mounts.lines() {
                let mut it = l.split_whitespace();
                let (Some(_), Some(dir), Some("tracefs")) = (it.next(), it.next(), it.next())
                else {
                    continue;
                };
                let dir = PathBuf::from(unescape_mount_path(dir));
                let Some(name) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else {
                    continue;
                };
                if let Some(pid) = owner_pid(&name, MOUNT_PREFIX)
                    && !alive(pid)
                {
                    unmount_and_remove(&dir);
                }
            }
        }
    }
}

/// `tcplab-1234-0` -> `1234`.
fn owner_pid<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = name.strip_prefix(prefix)?;
    let (pid, n) = rest.split_once('-')?;
    (!pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && n.bytes().all(|b| b.is_ascii_digit()))
    .then_some(pid)
}

/// The kernel's per-CPU bookkeeping for an instance (`per_cpu/cpuN/stats`), summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BufferStats {
    /// Events still in the buffer.
    pub entries: u64,
    /// Events overwritten before anybody read them.
    pub overrun: u64,
    /// Events the kernel could not write at all.
    pub dropped: u64,
    /// Events read out so far.
    pub read: u64,
}

/// A private tracing instance with `sock:inet_sock_set_state` enabled in it; disabled and
/// removed on drop (before a private mount under it is unmounted).
#[derive(Debug)]
pub struct Instance {
    name: String,
    dir: PathBuf,
    // Dropped after `Drop::drop` removed the instance: unmounts a private mount last.
    tracefs: Tracefs,
}

impl Instance {
    /// Create `instances/tcplab-<pid>-<n>`: not yet tracing anything.
    pub fn create(tracefs: Tracefs) -> Result<Instance> {
        tracefs.reap_stale();
        let name = format!("{INSTANCE_PREFIX}{}-{}", std::process::id(), next_n());
        let dir = tracefs.root().join("instances").join(&name);
        fs::create_dir(&dir).map_err(|e| Error::io(format!("mkdir {}", dir.display()), e))?;
        Ok(Instance { name, dir, tracefs })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn private_mount(&self) -> Option<&Path> {
        self.tracefs.private_mount()
    }

    fn write(&self, rel: &str, value: &str) -> Result<()> {
        let path = self.dir.join(rel);
        fs::write(&path, value)
            .map_err(|e| Error::io(format!("write {value:?} to {}", path.display()), e))
    }

    /// Set clock, buffer size, wake-up threshold and filter, open the pipe, then enable the
    /// event. Once this returns, every matching state change is recorded.
    pub fn arm(&self, ports: &[u16], buffer_kb: u32) -> Result<File> {
        // CLOCK_MONOTONIC, the clock behind std::time::Instant, so times line up.
        self.write("trace_clock", "mono")?;
        self.write("buffer_size_kb", &buffer_kb.to_string())?;
        // Wake a poll()ing reader as soon as one event is in, not when half the buffer is.
        self.write("buffer_percent", "0")?;
        self.write(&format!("events/{EVENT}/filter"), &filter(ports))?;
        let pipe = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(self.dir.join("trace_pipe"))
            .map_err(|e| Error::io("open trace_pipe", e))?;
        self.write(&format!("events/{EVENT}/enable"), "1")?;
        Ok(pipe)
    }

    /// Stop recording (the buffer keeps what it has).
    pub fn disable(&self) -> Result<()> {
        self.write(&format!("events/{EVENT}/enable"), "0")
    }

    /// Overruns and drops summed over CPUs.
    pub fn stats(&self) -> Result<BufferStats> {
        let mut total = BufferStats::default();
        let per_cpu = self.dir.join("per_cpu");
        let rd = fs::read_dir(&per_cpu)
            .map_err(|e| Error::io(format!("read {}", per_cpu.display()), e))?;
        for entry in rd.flatten() {
            let Ok(text) = fs::read_to_string(entry.path().join("stats")) else {
                continue;
            };
            for line in text.lines() {
                let Some((k, v)) = line.split_once(':') else {
                    continue;
                };
                let v: u64 = v.trim().parse().unwrap_or(0);
                match k.trim() {
                    "entries" => total.entries += v,
                    "overrun" => total.overrun += v,
                    "dropped events" => total.dropped += v,
                    "read events" => total.read += v,
                    _ => {}
                }
            }
        }
        Ok(total)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.disable();
        // rmdir fails with EBUSY while a file of the instance is still open (the pipe is
        // closed before we get here; a reader thread may take a moment to let go).
        for _ in 0..50 {
            match fs::remove_dir(&self.dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break,
            }
        }
    }
}

/// The in-kernel filter: TCP only, and a watched port at either end.
pub fn filter(ports: &[u16]) -> String {
    let mut f = String::from("protocol == 6");
    if !ports.is_empty() {
        let alts: Vec<String> = ports
            .iter()
            .map(|p| format!("sport == {p} || dport == {p}"))
            .collect();
        f.push_str(&format!(" && ({})", alts.join(" || ")));
    }
    f
}

/// One `inet_sock_set_state` line, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// The trace clock (CLOCK_MONOTONIC here), in nanoseconds (microsecond resolution).
    pub ts_ns: u64,
    /// The task that was running when the state changed (often the one that caused it;
    /// a softirq shows whoever it interrupted, or `ksoftirqd`).
    pub pid: u32,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub old: TcpState,
    pub new: TcpState,
}

/// Parse one line of `trace_pipe`:
/// `  comm-PID  [CPU] FLAGS  SECS.USECS: inet_sock_set_state: family=AF_INET ...`.
/// `None` for anything else (other events, comments, a torn line).
pub fn parse_line(line: &str) -> Option<RawEvent> {
    let (head, body) = line.split_once(" inet_sock_set_state: ")?;
    let mut tokens: Vec<&str> = head.split_whitespace().collect();
    let ts = tokens.pop()?.strip_suffix(':')?;
    let (secs, frac) = ts.split_once('.')?;
    let frac_ns: u64 = match frac.len() {
        6 => frac.parse::<u64>().ok()? * 1000,
        9 => frac.parse().ok()?,
        _ => return None,
    };
    let ts_ns = secs.parse::<u64>().ok()? * 1_000_000_000 + frac_ns;
    let cpu_at = tokens
        .iter()
        .rposition(|t| t.starts_with('[') && t.ends_with(']'))?;
    let task = tokens[..cpu_at].join(" ");
    let pid: u32 = task.rsplit_once('-')?.1.parse().ok()?;

    let (mut family, mut sport, mut dport) = (None, None, None);
    let (mut s4, mut d4, mut s6, mut d6) = (None, None, None, None);
    let (mut old, mut new) = (None, None);
    for kv in body.split_whitespace() {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        match k {
            "family" => family = Some(v),
            "protocol" if v != "IPPROTO_TCP" => return None,
            "sport" => sport = v.parse::<u16>().ok(),
            "dport" => dport = v.parse::<u16>().ok(),
            "saddr" => s4 = v.parse::<IpAddr>().ok(),
            "daddr" => d4 = v.parse::<IpAddr>().ok(),
            "saddrv6" => s6 = v.parse::<IpAddr>().ok(),
            "daddrv6" => d6 = v.parse::<IpAddr>().ok(),
            "oldstate" => old = v.strip_prefix("TCP_")?.parse::<TcpState>().ok(),
            "newstate" => new = v.strip_prefix("TCP_")?.parse::<TcpState>().ok(),
            _ => {}
        }
    }
    let (saddr, daddr) = match family? {
        "AF_INET" => (s4?, d4?),
        "AF_INET6" => (s6?, d6?),
        _ => return None,
    };
    Some(RawEvent {
        ts_ns,
        pid,
        local: SocketAddr::new(saddr, sport?),
        remote: SocketAddr::new(daddr, dport?),
        old: old?,
        new: new?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &str = "         python3-7062    [001] ..s2.   524.224974: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=35713 dport=50004 saddr=127.0.0.1 daddr=127.0.0.1 saddrv6=::ffff:127.0.0.1 daddrv6=::ffff:127.0.0.1 oldstate=TCP_LISTEN newstate=TCP_SYN_RECV";

    #[test]
    fn parses_a_real_v4_line() {
        let e = parse_line(V4).unwrap();
        assert_eq!(e.ts_ns, 524_224_974_000);
        assert_eq!(e.pid, 7062);
        assert_eq!(e.local, "127.0.0.1:35713".parse().unwrap());
        assert_eq!(e.remote, "127.0.0.1:50004".parse().unwrap());
        assert_eq!((e.old, e.new), (TcpState::Listen, TcpState::SynRecv));
    }

    #[test]
    fn parses_v6_and_task_names_with_spaces_and_dashes() {
        let line = " my worker-thread-1-77 [000] d.s1. 3.000001: inet_sock_set_state: family=AF_INET6 protocol=IPPROTO_TCP sport=1 dport=2 saddr=0.0.0.0 daddr=0.0.0.0 saddrv6=::1 daddrv6=::1 oldstate=TCP_FIN_WAIT2 newstate=TCP_CLOSE";
        let e = parse_line(line).unwrap();
        assert_eq!(e.pid, 77);
        assert_eq!(e.ts_ns, 3_000_001_000);
        assert_eq!(e.local, "[::1]:1".parse().unwrap());
        assert_eq!((e.old, e.new), (TcpState::FinWait2, TcpState::Close));
        let nsr = V4.replace("TCP_SYN_RECV", "TCP_NEW_SYN_RECV");
        assert_eq!(parse_line(&nsr).unwrap().new, TcpState::NewSynRecv);
    }

    #[test]
    fn rejects_other_lines() {
        assert_eq!(parse_line("# tracer: nop"), None);
        assert_eq!(
            parse_line(&V4.replace("IPPROTO_TCP", "IPPROTO_MPTCP")),
            None
        );
        assert_eq!(parse_line(&V4[..V4.len() - 20]), None);
    }

    #[test]
    fn filters_and_owner_pids() {
        assert_eq!(filter(&[]), "protocol == 6");
        assert_eq!(
            filter(&[80, 443]),
            "protocol == 6 && (sport == 80 || dport == 80 || sport == 443 || dport == 443)"
        );
        assert_eq!(owner_pid("tcplab-123-4", INSTANCE_PREFIX), Some("123"));
        assert_eq!(owner_pid("tcplab-x-4", INSTANCE_PREFIX), None);
        assert_eq!(owner_pid("other", INSTANCE_PREFIX), None);
    }
}
