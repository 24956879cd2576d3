//! Connection churn for lesson 05: open and close loopback connections as fast as two cores
//! allow, spread over a few listener ports, and sample how many TIME_WAIT sockets the kernel
//! holds every ~250 ms. It runs in a private network namespace so its flood of TIME_WAIT
//! sockets never fills the host's table (net.ipv4.tcp_max_tw_buckets is per namespace) and
//! never disturbs other programs' sockets.
//!
//! Left out on purpose: any payload (a connection here is connect, one close each way),
//! tuning (tcp_tw_reuse, port ranges), and IPv6. Several listener ports are used because one
//! server port and ~28k client ports allow only ~28k distinct connections at a time.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;
use tcplab_core::observe::{self, Method, Query};
use tcplab_core::{TcpState, sockets};
use tokio::io::AsyncReadExt;

/// The longest churn a run may ask for.
pub const MAX_SECS: f64 = 10.0;
/// Listener ports the clients spread over.
pub const PORTS: usize = 8;
/// Client tasks running connect/close loops at once.
pub const CLIENTS: usize = 64;
/// How long one connection may take before it counts as failed.
const CONN_TIMEOUT: Duration = Duration::from_secs(2);

/// Which side closes first in the churn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Closer {
    Server,
    Client,
}

/// How often the kernel's TIME_WAIT count is sampled. Each sample dumps every TIME_WAIT socket
/// on the churn ports (tens of thousands after a second), which costs CPU the churn would
/// otherwise use; four samples a second draw the curve and leave the cores to the churn.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// One sample of the kernel's TIME_WAIT count on the churn ports.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub t_ms: u64,
    pub connections: u64,
    pub server_time_wait: usize,
    pub client_time_wait: usize,
    /// How long the filtered sock_diag dump took.
    pub snapshot_ms: f64,
}

/// What a churn run did and what the kernel showed.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnReport {
    pub closer: Closer,
    pub secs: f64,
    pub connections: u64,
    pub failed: u64,
    pub rate_per_sec: f64,
    /// CPU time this process used meanwhile (user + system, all threads, sampler included):
    /// connections / cpu_secs is the rate per core, which a busy machine does not distort.
    pub cpu_secs: f64,
    pub samples: Vec<Sample>,
    pub peak_time_wait: usize,
    pub tcp_max_tw_buckets: Option<u64>,
}

/// Move this process into a new network namespace with loopback up. Must run before the
/// process starts any thread: an unprivileged process needs a user namespace too, and the
/// kernel creates one only for a single-threaded process. Returns how it was done.
pub fn enter_private_netns() -> Result<&'static str> {
    // SAFETY: unshare() only changes this process's namespaces.
    let how = if unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0 {
        "a new network namespace"
    } else if unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) } == 0 {
        "a new user and network namespace (no root needed)"
    } else {
        let e = io::Error::last_os_error();
        bail!(
            "the churn needs a private network namespace and unshare() failed ({e}); run as root \
             or enable unprivileged user namespaces (kernel.unprivileged_userns_clone)"
        );
    };
    loopback_up().context("bringing up loopback in the new namespace")?;
    Ok(how)
}

/// `ip link set lo up`, with the SIOCGIFFLAGS/SIOCSIFFLAGS ioctls.
fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain datagram socket used for two ioctls on a zeroed, named ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let err = io::Error::last_os_error();
        libc::close(fd);
        if rc == 0 { Ok(()) } else { Err(err) }
    }
}

/// Churn for `secs` seconds; `on_sample` sees every sample as it is taken.
pub fn run(secs: f64, closer: Closer, mut on_sample: impl FnMut(&Sample)) -> Result<ChurnReport> {
    if !(secs > 0.0 && secs <= MAX_SECS) {
        bail!("--churn-secs {secs} is outside (0, {MAX_SECS}]");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..PORTS {
        let l = sockets::listen_on(
            sockets::loopback(false),
            sockets::ListenOptions {
                reuseaddr: false,
                backlog: 4096,
            },
        )?;
        ports.push(l.local_addr()?.port());
        listeners.push(l);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));

    let _guard = rt.enter();
    let mut acceptors = Vec::new();
    for l in listeners {
        l.set_nonblocking(true)?;
        // SAFETY: the AsyncFd owns the listener and with it the descriptor; nothing else
        // closes or replaces that descriptor while it is registered.
        let l = unsafe { tokio::io::unix::AsyncFd::register(l)? };
        acceptors.push(rt.spawn(async move {
            loop {
                let Ok(mut ready) = l.readable().await else {
                    return;
                };
                // Take every queued connection while the listener is readable. A std stream
                // that is dropped at once is closed without ever being registered with tokio.
                while let Ok((stream, _)) = l.get_ref().accept() {
                    match closer {
                        // The server closes at once: it is the active closer.
                        Closer::Server => drop(stream),
                        // The server waits for the client's FIN, then closes.
                        Closer::Client => {
                            tokio::spawn(async move {
                                let Ok(mut stream) = sockets::to_tokio(stream) else {
                                    return;
                                };
                                let mut buf = [0u8; 16];
                                let _ = tokio::time::timeout(CONN_TIMEOUT, async {
                                    while stream.read(&mut buf).await? != 0 {}
                                    Ok::<_, io::Error>(())
                                })
                                .await;
                            });
                        }
                    }
                }
                ready.clear_ready();
            }
        }));
    }
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (stop, done, failed, ports) =
            (stop.clone(), done.clone(), failed.clone(), ports.clone());
        clients.push(rt.spawn(async move {
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ports[i % ports.len()]));
                i += 1;
                let one = tokio::time::timeout(CONN_TIMEOUT, async {
                    let mut stream = tokio::net::TcpStream::connect(addr).await?;
                    if closer == Closer::Server {
                        // Wait for the server's FIN, then close.
                        let mut buf = [0u8; 16];
                        while stream.read(&mut buf).await? != 0 {}
                    }
                    drop(stream);
                    Ok::<_, io::Error>(())
                })
                .await;
                match one {
                    Ok(Ok(())) => done.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }

    // This thread samples the kernel while the runtime's two workers churn.
    let query = Query::ports(&ports).with_states(&[TcpState::TimeWait]);
    let cpu0 = cpu_secs();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs_f64(secs);
    let mut samples = Vec::new();
    let mut elapsed;
    loop {
        std::thread::sleep(SAMPLE_EVERY.min(deadline.saturating_duration_since(Instant::now())));
        let connections = done.load(Ordering::Relaxed);
        let s0 = Instant::now();
        let rows = observe::snapshot(&query, Method::Auto)?.rows;
        let server = rows
            .iter()
            .filter(|r| ports.contains(&r.local.port()))
            .count();
        let sample = Sample {
            t_ms: t0.elapsed().as_millis() as u64,
            connections,
            server_time_wait: server,
            client_time_wait: rows.len() - server,
            snapshot_ms: s0.elapsed().as_secs_f64() * 1000.0,
        };
        on_sample(&sample);
        samples.push(sample);
        elapsed = t0.elapsed();
        if Instant::now() >= deadline {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let connections = done.load(Ordering::Relaxed);
    let cpu = cpu_secs() - cpu0;
    rt.block_on(async {
        for c in clients {
            let _ = tokio::time::timeout(CONN_TIMEOUT * 2, c).await;
        }
    });
    for a in &acceptors {
        a.abort();
    }
    drop(_guard);
    rt.shutdown_timeout(Duration::from_secs(1));
    let peak = samples
        .iter()
        .map(|s| s.server_time_wait + s.client_time_wait)
        .max()
        .unwrap_or(0);
    Ok(ChurnReport {
        closer,
        secs: elapsed.as_secs_f64(),
        connections,
        failed: failed.load(Ordering::Relaxed),
        rate_per_sec: connections as f64 / elapsed.as_secs_f64(),
        cpu_secs: cpu,
        samples,
        peak_time_wait: peak,
        tcp_max_tw_buckets: super::wait::sysctl("net/ipv4/tcp_max_tw_buckets"),
    })
}

/// User + system CPU seconds this process has used (all threads).
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}
