//! Lesson 11's driver: a "mystery" server process that leaks CLOSE_WAIT sockets, and an
//! operator who finds it from the outside, the way one would on a production machine.
//!
//! The mystery server is this same binary started again with a hidden flag
//! (`--mystery-server PARENT_PID [PORT]`): it accepts connections and never reads or closes
//! them. It names itself `mystery-server` (what /proc/PID/comm and `ps` show), and it can
//! never outlive the lesson: the parent kills it on every path ([`Owner`]'s Drop), the kernel
//! kills it if the parent dies (PR_SET_PDEATHSIG), it exits when its stdin (a pipe from the
//! parent) closes, and it gives up after a minute whatever happens.
//!
//! The operator's tools are the kernel's: a sock_diag snapshot filtered to CLOSE_WAIT, socket
//! inodes mapped to pids through /proc/*/fd (like `ss -p`), /proc/PID/comm for the name, and
//! SOCK_DESTROY (like `ss -K`) to end sockets without the owner's help.
//!
//! Left out on purpose: finding the leak in the owner's source (lesson 03 does that), and
//! systemd or containers (a real restart goes through them).

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tcplab_core::observe::{self, Method, Query, SocketRow, diag};
use tcplab_core::segment::Flag;
use tcplab_core::timeline::Side;
use tcplab_core::{TcpState, sockets};

use crate::catalog::Verdict;
use crate::facts;
use crate::lab::Lab;

/// The hidden flag that turns the binary into the mystery server.
pub const CHILD_FLAG: &str = "--mystery-server";
/// The name the mystery server gives itself.
pub const CHILD_NAME: &str = "mystery-server";
/// How long the mystery server lives at most, whatever happens.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
/// Clients that connect and leave.
pub const DEFAULT_CLIENTS: usize = 5;

// ---------------------------------------------------------------------------------------
// The mystery server (the child process).

/// If this process was started as the mystery server, run it and return its exit code.
pub fn child_main() -> Option<ExitCode> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) != Some(CHILD_FLAG) {
        return None;
    }
    Some(match mystery_server(&args[2..]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{CHILD_NAME}: {e:#}");
            ExitCode::FAILURE
        }
    })
}

fn mystery_server(args: &[String]) -> Result<()> {
    let parent: i32 = args
        .first()
        .and_then(|s| s.parse().ok())
        .context("usage: --mystery-server PARENT_PID [PORT]")?;
    let port: u16 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: prctl with integer and string arguments on our own process.
    unsafe {
        // Die with the parent; then check it did not die before we asked.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            bail!("the lesson that started me is gone");
        }
        libc::prctl(libc::PR_SET_NAME, c"mystery-server".as_ptr());
    }
    // Exit when the parent closes our stdin (it does on every path, or by dying).
    thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
    let opts = sockets::ListenOptions {
        reuseaddr: true,
        ..Default::default()
    };
    let listener = sockets::listen_on(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), opts)?;
    listener.set_nonblocking(true)?;
    println!("{}", listener.local_addr()?.port());
    io::stdout().flush()?;
    let started = Instant::now();
    let mut kept = Vec::new();
    while started.elapsed() < CHILD_LIFETIME {
        match listener.accept() {
            // The bug we pretend not to know about: every connection is kept, never read,
            // never closed.
            Ok((stream, _)) => kept.push(stream),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The parent's handle on it.

/// The running mystery server. Dropping it kills the process and waits for it.
pub struct Owner {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its pid.
    pub pid: u32,
    /// Its listening port.
    pub port: u16,
    /// Every pid started so far (the first and any restart).
    pub all_pids: Vec<u32>,
}

impl Owner {
    /// Start the mystery server (on `port`, or one the kernel picks) and read its port.
    pub fn start(port: u16) -> Result<Owner> {
        let exe = std::env::current_exe().context("find this binary")?;
        let mut child = Command::new(exe)
            .arg(CHILD_FLAG)
            .arg(std::process::id().to_string())
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start the mystery server")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        // Build the guard first: from here on any error kills the child.
        let mut owner = Owner {
            pid: child.id(),
            child,
            stdin,
            port: 0,
            all_pids: Vec::new(),
        };
        owner.all_pids.push(owner.pid);
        let stdout = stdout.context("no pipe from the mystery server")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(5))
            .context("the mystery server did not report its port within 5 s")?;
        owner.port = line
            .trim()
            .parse()
            .with_context(|| format!("the mystery server said {line:?} instead of a port"))?;
        Ok(owner)
    }

    /// Stop the process and start a fresh one on the same port: its exit closes every
    /// socket it held (its code still leaks; the restart only buys time).
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let mut fresh = Owner::start(self.port)?;
        fresh.all_pids = std::mem::take(&mut self.all_pids);
        fresh.all_pids.push(fresh.pid);
        *self = fresh;
        Ok(())
    }

    fn stop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The name a process gives itself (/proc/PID/comm).
pub fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".to_string())
}

/// How many socket descriptors a process holds (/proc/PID/fd).
pub fn socket_fds(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    dir.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|t| t.to_string_lossy().starts_with("socket:"))
        .count()
}

// ---------------------------------------------------------------------------------------
// The operator.

/// The CLOSE_WAIT sockets on `port`, with their owners.
fn close_wait_rows(port: u16) -> Result<Vec<SocketRow>> {
    let query = Query {
        pids: true,
        ..Query::ports(&[port]).with_states(&[TcpState::CloseWait])
    };
    Ok(observe::snapshot(&query, Method::Auto)?
        .rows
        .into_iter()
        .filter(|r| r.local.port() == port)
        .collect())
}

/// pid -> how many of `rows` it holds.
fn holders(rows: &[SocketRow]) -> BTreeMap<u32, usize> {
    let mut out = BTreeMap::new();
    for r in rows {
        for &pid in r.pids.iter().flatten() {
            *out.entry(pid).or_insert(0) += 1;
        }
    }
    out
}

/// End each socket with SOCK_DESTROY, as `ss -K` does; narrate and record what the kernel
/// allowed. Returns how many it destroyed.
pub fn destroy_all(lab: &mut Lab, rows: &[SocketRow]) -> usize {
    let mut destroyed = 0;
    let mut refusal = None;
    for row in rows {
        match diag::destroy(row) {
            Ok(()) => destroyed += 1,
            Err(e) => {
                refusal = Some(e.to_string());
                break;
            }
        }
    }
    lab.say(format!(
        "SOCK_DESTROY (like `ss -K`): {destroyed} of {} sockets destroyed",
        rows.len()
    ));
    if let Some(why) = &refusal {
        lab.say(format!("the kernel refused: {why}"));
    }
    if let Some(port) = rows.first().map(|r| r.local.port())
        && let Ok(left) = close_wait_rows(port)
    {
        lab.say(format!(
            "kernel says: {} CLOSE_WAIT sockets left on port {port}",
            left.len()
        ));
    }
    lab.fact("destroyed", destroyed);
    lab.fact("destroy_error", refusal);
    destroyed
}

/// Run the lesson; `respond` is what the operator does once the leak is found.
pub fn run(
    lab: &mut Lab,
    respond: fn(&mut Lab, &[SocketRow], &mut Owner) -> Result<()>,
) -> Result<()> {
    let n = lab.connections(DEFAULT_CLIENTS, 2)?;
    let mut owner = Owner::start(0)?;
    let result = operate(lab, n, &mut owner, respond);
    let pids = owner.all_pids.clone();
    drop(owner);
    if lab.narrating() {
        println!("(stopped the mystery server: pid {pids:?})");
    }
    result
}

fn operate(
    lab: &mut Lab,
    n: usize,
    owner: &mut Owner,
    respond: fn(&mut Lab, &[SocketRow], &mut Owner) -> Result<()>,
) -> Result<()> {
    let port = owner.port;
    lab.watch(port)?;
    lab.step(format!(
        "A process we know nothing about listens on 127.0.0.1:{port}; {n} clients connect, \
         send a line and close"
    ));
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    for _ in 0..n {
        let mut c: TcpStream = sockets::connect(addr, Duration::from_secs(3))?;
        c.set_write_timeout(Some(Duration::from_secs(3)))?;
        c.write_all(b"are you there?\n")?;
    }

    lab.step(format!(
        "Like an operator: which sockets on port {port} are in CLOSE_WAIT, and who holds them? \
         (`ss -tnp state close-wait '( sport = :{port} )'`)"
    ));
    let deadline = Instant::now() + Duration::from_secs(3);
    let found = loop {
        let rows = close_wait_rows(port)?;
        // A connection not yet accept()ed has no inode and no owner: wait for all of them.
        let owned = rows
            .iter()
            .filter(|r| r.pids.as_ref().is_some_and(|p| !p.is_empty()))
            .count();
        if owned >= n || Instant::now() >= deadline {
            break rows;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let held = holders(&found);
    for r in &found {
        lab.say(format!(
            "CLOSE_WAIT {} <- {}  inode {}  Recv-Q {}  pid {:?}",
            r.local,
            r.remote,
            r.inode,
            r.recv_q,
            r.pids.clone().unwrap_or_default()
        ));
    }
    let Some((&pid, &count)) = held.iter().max_by_key(|(_, c)| **c) else {
        bail!(
            "the kernel showed {} CLOSE_WAIT sockets on port {port} but no owner for them; \
             run as the same user as the server (or root) so /proc/*/fd is readable",
            found.len()
        );
    };
    let name = process_name(pid);
    lab.say(format!(
        "{count} CLOSE_WAIT sockets held by pid {pid} ({name}), found by matching socket inodes \
         to /proc/{pid}/fd; each one is an open file descriptor of that process"
    ));
    lab.fact("close_wait_found", found.len());
    lab.fact("owner_pid", pid);
    lab.fact("owner_name", &name);
    lab.fact("owner_identified", pid == owner.pid);
    if pid != owner.pid {
        bail!(
            "the sockets are held by pid {pid}, not by the mystery server (pid {})",
            owner.pid
        );
    }

    lab.step("What the operator does about it");
    respond(lab, &found, owner)?;

    lab.step("What the kernel shows afterwards");
    let deadline = Instant::now() + Duration::from_secs(1);
    let after = loop {
        let rows = close_wait_rows(port)?;
        if rows.is_empty() || Instant::now() >= deadline {
            break rows;
        }
        thread::sleep(Duration::from_millis(5));
    };
    let held_after = holders(&after);
    let seen = lab.sides()?;
    lab.say(format!("kernel says: {}", seen.describe()));
    lab.fact("close_wait_after", after.len());
    // The wire: what the server's port said to its clients. Before the operator acts it
    // sends no FIN and no RST; a socket ended with unread data (each client's line) sends
    // RST, whether by SOCK_DESTROY or by its owner's exit (tcp_close in net/ipv4/tcp.c).
    if let Some(segs) = lab.wire()? {
        let from_server = |flag: Flag| {
            segs.iter()
                .filter(|s| s.src.port() == port && s.dst.port() != port && s.has(flag))
                .count()
        };
        let (rst, fin) = (from_server(Flag::Rst), from_server(Flag::Fin));
        lab.say(format!(
            "on the wire, port {port} sent its clients {rst} RST and {fin} FIN: {}",
            if rst + fin == 0 {
                "the leaked sockets never answered their clients' FINs"
            } else if fin == 0 {
                "each socket was aborted (SOCK_DESTROY) or closed with unread data (the \
                 client's line, at its owner's exit), and either way the kernel sends RST, not \
                 FIN: no LAST_ACK, no TIME_WAIT"
            } else {
                "some sockets were closed with FIN"
            }
        ));
        lab.fact(facts::WIRE_SERVER_RST, rst);
        lab.fact(facts::WIRE_SERVER_FIN, fin);
    }
    lab.fact("child_pids", &owner.all_pids);
    lab.fact("owner_pid_after", owner.pid);

    let (verdict, why) = if !after.is_empty() && held_after.contains_key(&pid) {
        lab.say(format!(
            "{} sockets still in CLOSE_WAIT, still held by pid {pid} ({name}): they stay until \
             it closes them or exits, or something aborts them (a RST from a client, ss -K).",
            after.len()
        ));
        (
            Verdict::Leak,
            format!(
                "{} CLOSE_WAIT sockets held by pid {pid} ({name}), found and left alone",
                after.len()
            ),
        )
    } else if after.is_empty() {
        // No CLOSE_WAIT left is the symptom gone. The service must still run, and the process
        // on the port must hold nothing but its listener: SOCK_DESTROY ends the sockets but
        // leaves their descriptors taken in the owner.
        let listening = seen.count(Side::Server, TcpState::Listen);
        lab.fact("listening_after", listening);
        lab.require(
            listening > 0,
            format!(
                "nothing listens on port {port} any more: the CLOSE_WAIT sockets are gone \
                 because the server is, and its clients now get connection refused"
            ),
        );
        let fds = socket_fds(owner.pid);
        lab.fact("owner_socket_fds_after", fds);
        lab.require(
            fds <= 1,
            format!(
                "pid {} still holds {fds} socket descriptors where its listener needs 1: the \
                 sockets were ended (SOCK_DESTROY), but the descriptors stay taken until the \
                 process closes them or exits",
                owner.pid
            ),
        );
        lab.say(format!(
            "no CLOSE_WAIT left on port {port}; the server now runs as pid {} ({} socket \
             descriptor(s): the listener)",
            owner.pid,
            socket_fds(owner.pid)
        ));
        (
            Verdict::Clean,
            format!(
                "{} CLOSE_WAIT sockets of pid {pid} ended; none left",
                found.len()
            ),
        )
    } else {
        bail!(
            "neither outcome is in view: {} CLOSE_WAIT sockets left, held by {:?}",
            after.len(),
            held_after
        );
    };
    lab.finish(verdict, seen, &why)
}
