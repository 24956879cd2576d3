//! Lesson 09's driver: a private network namespace with 100 ephemeral ports, a keep-alive
//! request server inside it, and the grading. The binary provides the client loop.
//!
//! Why a namespace: on the host's loopback Linux lets connect() reuse a TIME_WAIT port older
//! than a second (tcp_tw_reuse = 2), and the default range has ~28k ports, so exhaustion would
//! take minutes or never show. A new network namespace has its own loopback, its own
//! ip_local_port_range and its own tcp_tw_reuse: we set 100 ports and reuse off, and the
//! exhaustion shows in well under a second. The namespace comes from unshare(2) with a user
//! namespace, which any user may create where unprivileged user namespaces are enabled; it
//! disappears with the process. Nothing on the host is changed.
//!
//! Left out on purpose: IPv6, several destinations (each distinct server address and port
//! has its own 100 ports), and SO_REUSEADDR/IP_BIND_ADDRESS_NO_PORT tricks.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tcplab_core::{TcpState, sockets};

use crate::catalog::Verdict;
use crate::lesson::Lab;

/// The ephemeral port range set inside the namespace: 100 ports.
pub const PORT_RANGE: (u16, u16) = (40000, 40099);
/// The server's port inside the namespace. The namespace is ours alone, so a fixed port
/// cannot clash with anything, and it sits outside the ephemeral range.
pub const SERVER_PORT: u16 = 8080;
/// How long one connect/read/write may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(1);
/// The whole client loop stops after this, whatever happened.
pub const TIME_BUDGET: Duration = Duration::from_secs(10);
/// Requests sent by default: three times the ports there are.
pub const DEFAULT_REQUESTS: usize = 300;

/// What the client loop did.
#[derive(Debug)]
pub struct Outcome {
    /// Requests answered.
    pub requests: usize,
    /// Connections opened (each took one local port).
    pub connections: usize,
    /// The error that stopped the loop, if any.
    pub error: Option<io::Error>,
    /// When the loop started, and when it failed.
    pub started: Instant,
    pub failed_after: Option<Duration>,
    /// Connections the loop keeps open (a pool), closed after the kernel has been asked.
    pub pool: Vec<TcpStream>,
}

impl Default for Outcome {
    fn default() -> Self {
        Outcome::new()
    }
}

impl Outcome {
    pub fn new() -> Outcome {
        Outcome {
            requests: 0,
            connections: 0,
            error: None,
            started: Instant::now(),
            failed_after: None,
            pool: Vec::new(),
        }
    }

    /// Record the error that stops the loop.
    pub fn fail(&mut self, e: io::Error) {
        self.failed_after = Some(self.started.elapsed());
        self.error = Some(e);
    }

    /// Whether the loop has used up [`TIME_BUDGET`].
    pub fn out_of_time(&self) -> bool {
        self.started.elapsed() > TIME_BUDGET
    }
}

/// Open a connection to the server (counted in `out`), with timeouts on every call.
pub fn connect(addr: SocketAddr, out: &mut Outcome) -> io::Result<TcpStream> {
    let stream = sockets::connect(addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    out.connections += 1;
    Ok(stream)
}

/// One request on a connection: send a line, read the three-byte answer.
pub fn request(stream: &mut TcpStream) -> io::Result<()> {
    stream.write_all(b"request\n")?;
    let mut answer = [0u8; 3];
    stream.read_exact(&mut answer)?;
    Ok(())
}

/// Enter a new network namespace: with a user namespace (any user), or, for root where user
/// namespaces are off, a network namespace alone. Must run before any thread is started.
pub fn enter_private_namespace() -> Result<&'static str> {
    // SAFETY: plain syscalls on our own process, which has no other thread yet.
    let (uid, gid, euid) = unsafe { (libc::getuid(), libc::getgid(), libc::geteuid()) };
    if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } == 0 {
        // Map our own ids to root inside, as `unshare -r` does; setgroups must be denied
        // before an unprivileged process may write gid_map.
        match std::fs::write("/proc/self/setgroups", "deny") {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context("write /proc/self/setgroups"),
        }
        std::fs::write("/proc/self/uid_map", format!("0 {uid} 1"))
            .context("write /proc/self/uid_map")?;
        std::fs::write("/proc/self/gid_map", format!("0 {gid} 1"))
            .context("write /proc/self/gid_map")?;
        return Ok("user + network namespace");
    }
    let userns_error = io::Error::last_os_error();
    if euid == 0 && unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
        return Ok("network namespace (as root)");
    }
    bail!(
        "cannot create a private network namespace (unshare: {userns_error}). Enable unprivileged \
         user namespaces (`sysctl user.max_user_namespaces=10000`; on Debian/Ubuntu also \
         `sysctl kernel.unprivileged_userns_clone=1`, and on Ubuntu 24.04 \
         `kernel.apparmor_restrict_unprivileged_userns=0`), or run the lesson as root"
    )
}

/// Bring the namespace's loopback interface up (SIOCGIFFLAGS/SIOCSIFFLAGS, like `ip link set
/// lo up`): a new namespace starts with `lo` down.
pub fn loopback_up() -> Result<()> {
    // SAFETY: an ordinary socket used only for interface ioctls, closed before returning;
    // ifreq is plain data, its name NUL-terminated.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error()).context("socket for ioctl");
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr);
        if rc == 0 {
            ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &mut ifr);
        }
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc != 0 {
            return Err(err).context("bring lo up in the namespace");
        }
    }
    Ok(())
}

fn sysctl(name: &str, value: &str) -> Result<()> {
    let path = format!("/proc/sys/net/ipv4/{name}");
    std::fs::write(&path, value).with_context(|| format!("write {value:?} to {path}"))
}

/// A keep-alive server: one thread per connection, one answer per request line, close on EOF.
fn serve(listener: TcpListener, stop: Arc<AtomicBool>) -> JoinHandle<()> {
    thread::spawn(move || {
        if listener.set_nonblocking(true).is_err() {
            return;
        }
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let stop = stop.clone();
                    thread::spawn(move || {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
                        let mut writer = match stream.try_clone() {
                            Ok(w) => w,
                            Err(_) => return,
                        };
                        let mut lines = BufReader::new(stream);
                        let mut line = String::new();
                        while !stop.load(Ordering::Relaxed) {
                            line.clear();
                            match lines.read_line(&mut line) {
                                Ok(0) => return, // EOF: the client closed; we close too
                                Ok(_) => {
                                    if writer.write_all(b"ok\n").is_err() {
                                        return;
                                    }
                                }
                                Err(e)
                                    if matches!(
                                        e.kind(),
                                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                                    ) => {}
                                Err(_) => return,
                            }
                        }
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return,
            }
        }
    })
}

/// Run the lesson: namespace, server, the binary's client loop, then the kernel's view.
pub fn run(lab: &mut Lab, send_requests: fn(SocketAddr, usize) -> Outcome) -> Result<()> {
    let n = lab.connections(DEFAULT_REQUESTS, 3)?;
    lab.step("Enter a private network namespace (nothing on the host is touched)");
    let kind = enter_private_namespace()?;
    loopback_up()?;
    let range = format!("{} {}", PORT_RANGE.0, PORT_RANGE.1);
    sysctl("ip_local_port_range", &range)?;
    sysctl("tcp_tw_reuse", "0")?;
    let ports = usize::from(PORT_RANGE.1 - PORT_RANGE.0) + 1;
    lab.say(format!(
        "a new {kind} of this process: its own loopback (brought up), ip_local_port_range = \
         {range} ({ports} ports), tcp_tw_reuse = 0. The host's settings and sockets are \
         untouched, and the namespace vanishes when the lesson ends."
    ));
    lab.fact("namespace", "private");
    lab.fact("port_range", &range);

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, SERVER_PORT));
    let listener = sockets::listen_on(addr, sockets::ListenOptions::default())
        .with_context(|| format!("listen on {addr} inside the namespace"))?;
    lab.watch(SERVER_PORT)?;
    let stop = Arc::new(AtomicBool::new(false));
    let server = serve(listener, stop.clone());
    lab.step(format!(
        "A keep-alive server listens on {addr} (inside the namespace)"
    ));
    lab.show("before any request")?;

    lab.step(format!("The client sends {n} requests"));
    let result = grade(lab, addr, n, send_requests);
    stop.store(true, Ordering::Relaxed);
    let _ = server.join();
    result
}

fn grade(
    lab: &mut Lab,
    addr: SocketAddr,
    n: usize,
    send_requests: fn(SocketAddr, usize) -> Outcome,
) -> Result<()> {
    let out = send_requests(addr, n);
    let errno = out.error.as_ref().and_then(|e| e.raw_os_error());
    let error_name = match errno {
        Some(libc::EADDRNOTAVAIL) => Some("EADDRNOTAVAIL".to_string()),
        Some(_) | None => out.error.as_ref().map(|e| e.to_string()),
    };
    match (&out.error, out.failed_after) {
        (Some(e), Some(t)) => lab.say(format!(
            "after {} connections and {} requests, {} ms: {e}",
            out.connections,
            out.requests,
            t.as_millis()
        )),
        _ => lab.say(format!(
            "{} requests answered over {} connection(s) in {} ms, no error",
            out.requests,
            out.connections,
            out.started.elapsed().as_millis()
        )),
    }

    lab.step("What the kernel shows on the client's side");
    let expect_tw = out.connections - out.pool.len();
    // Settled: the closed connections in TIME_WAIT and, since a dump is not atomic and the
    // server thread may still be closing the last one, nothing left in CLOSE_WAIT/LAST_ACK.
    let seen = lab.wait_until(Duration::from_secs(3), |s| {
        s.count("client", TcpState::TimeWait) >= expect_tw
            && s.count("client", TcpState::FinWait2) == 0
            && s.count("server", TcpState::CloseWait) == 0
            && s.count("server", TcpState::LastAck) == 0
    })?;
    lab.say(format!("kernel says: {}", seen.describe()));
    let tw = seen.count("client", TcpState::TimeWait);
    let est = seen.count("client", TcpState::Established);
    lab.fact("requests", out.requests);
    lab.fact("connections_opened", out.connections);
    lab.fact(
        "connections_before_error",
        out.error.as_ref().map(|_| out.connections),
    );
    lab.fact("error", &error_name);
    lab.fact(
        "ms_to_exhaustion",
        out.failed_after.map(|t| t.as_millis() as u64),
    );
    lab.fact("client_time_wait", tw);
    lab.fact("client_established", est);

    let (verdict, why) = if errno == Some(libc::EADDRNOTAVAIL)
        && tw > 0
        && tw * 10 >= out.connections * 9
    {
        lab.say(format!(
            "{tw} client sockets in TIME_WAIT, one per closed connection, each holding one of \
             the {} local ports for 60 s: connect() found no free port and failed with \
             EADDRNOTAVAIL.",
            PORT_RANGE.1 - PORT_RANGE.0 + 1
        ));
        (
            Verdict::Leak,
            format!(
                "connect() failed with EADDRNOTAVAIL after {} connections; the kernel shows {tw} \
                 TIME_WAIT sockets on the client's ports",
                out.connections
            ),
        )
    } else if out.error.is_none() && out.requests == n && tw == 0 {
        lab.say(format!(
            "{n} requests over {est} kept-alive connections: no new port per request, no \
             TIME_WAIT, nothing to run out of."
        ));
        (
            Verdict::Clean,
            format!(
                "{n} requests, {} connections, no error, no TIME_WAIT on the client",
                out.connections
            ),
        )
    } else {
        bail!(
            "neither outcome is in view: {} requests of {n}, error {:?}, {tw} client TIME_WAIT \
             ({}). With fewer requests than the {} ports there is nothing to exhaust: try more \
             `--connections`.",
            out.requests,
            error_name,
            seen.describe(),
            PORT_RANGE.1 - PORT_RANGE.0 + 1
        );
    };
    if lab.narrating() && lab.args.hold.is_some() {
        lab.say(format!(
            "the sockets live in this process's namespace: look with `nsenter -t {} -U -n ss -tan` \
             (as root: `nsenter -t {} -n ss -tan`)",
            std::process::id(),
            std::process::id()
        ));
    }
    lab.finish(verdict, seen, &why)?;
    drop(out.pool);
    Ok(())
}
