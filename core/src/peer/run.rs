//! Playing a script against the kernel, line by line, with packetdrill's clock rules:
//!
//! - the first event is at 0; `+T` counts from when the previous event finished (from the
//!   previous event's due time when both are inbound segments, so injections do not drift);
//! - an event is on time within a tolerance of 4 ms, or 12.5% of the gap since the previous
//!   event when that is larger; a range `A~B` widens the window;
//! - inbound segments, calls and commands wait until they are due; an outbound segment must
//!   arrive in its window, and the kernel's segments are taken in the order it sent them;
//! - a call with `...END` after its time blocks until END; the next call waits for it (one
//!   thread makes the calls, as in packetdrill). A call without it must not block.
//!
//! Sequence numbers are relative: the peer's from its own initial sequence number, the
//! kernel's from the one it chose in its SYN or SYN-ACK. One connection per script.
//!
//! The first line that does not hold ends the run, with `FILE:LINE: expected ..., got ...`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use super::link::{LOCAL_IP, Link, LinkKind, REMOTE_IP, Sent};
use super::script::{
    Direction, Packet, Script, Syscall, TCP_ACK, TCP_CWR, TCP_FIN, TCP_PSH, TCP_SYN, TcpOpt, What,
    When, flags_text,
};
use super::sys::{self, FdTable, Outcome, PORT};
use super::wire::Wire;
use crate::observe::capture::Frame;
use crate::observe::{Family, Query, diag, infer};
use crate::segment::{Numbering, Segment, parse_frame};
use crate::state::TcpState;
use crate::timeline::{Event, Source, Timeline};

/// packetdrill's default tolerance.
pub const TOLERANCE_US: i64 = 4_000;
/// packetdrill's default tolerance as a share of the gap since the previous event.
const TOLERANCE_PERCENT: f64 = 12.5;
/// The peer's initial sequence number; scripts count from it.
pub const REMOTE_ISN: u32 = 0x0100_0000;
/// The peer's port when the kernel's socket listens.
pub const REMOTE_PORT: u16 = 47_001;
/// How long a call without `...` may take before it counts as blocked.
const NONBLOCKING_LIMIT: Duration = Duration::from_millis(500);
/// How long after its window an outbound segment is still waited for (a late one is a
/// timing error, reported with its time; after this, "nothing came").
const LATE_GRACE: Duration = Duration::from_secs(1);
/// How long a shell command may run.
const COMMAND_LIMIT: Duration = Duration::from_secs(20);
/// How far ahead of the setup time 0 is.
const START_MARGIN: Duration = Duration::from_millis(5);
/// How often sock_diag is asked for the sockets' states.
const POLL_EVERY: Duration = Duration::from_millis(2);

/// How to run a script.
#[derive(Debug, Clone)]
pub struct Options {
    /// The script's name in messages.
    pub file: String,
    /// Where backtick commands run (the script's directory: `../common/defaults.sh`).
    pub dir: PathBuf,
    pub tolerance_us: i64,
    /// No event may be due later than this after the start.
    pub max_duration: Duration,
    /// The link to build; `None`: a TUN device where possible, else a veth pair.
    pub link: Option<LinkKind>,
}

impl Options {
    /// packetdrill's defaults for the script at `path`.
    pub fn for_script(path: &std::path::Path) -> Options {
        Options {
            file: path.display().to_string(),
            dir: path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), PathBuf::from),
            tolerance_us: TOLERANCE_US,
            max_duration: Duration::from_secs(120),
            link: None,
        }
    }
}

/// What one line did: the states of the namespace's sockets right after it.
#[derive(Debug, Clone)]
pub struct LineNote {
    pub line: usize,
    /// The event, as the script wrote it (normalized).
    pub text: String,
    /// When it happened, microseconds since the start.
    pub t_us: u64,
    pub states: Vec<(SocketAddr, SocketAddr, TcpState)>,
}

/// The result of a run.
#[derive(Debug)]
pub struct Report {
    /// `None` when every line held; else the first that did not.
    pub failure: Option<String>,
    /// The failure is the peer's own lateness (a busy machine), not a verdict on the kernel.
    pub late: bool,
    pub link: LinkKind,
    /// The segments both ways and the sockets' state changes.
    pub timeline: Timeline,
    /// The segments as frames (an Ethernet header with zero addresses in front of each IP
    /// packet), `frames[i]` being `timeline.segments[i]`.
    pub frames: Vec<Frame>,
    /// Each line that ran, in order.
    pub notes: Vec<LineNote>,
    pub elapsed: Duration,
}

struct Conn {
    local_port: u16,
    remote_port: u16,
    local_isn: Option<u32>,
}

type CallResult = (std::result::Result<Outcome, String>, Instant);

struct Pending {
    line: usize,
    call: Syscall,
    rx: mpsc::Receiver<CallResult>,
    /// Due time of the return, microseconds since the start, and its tolerance.
    end_us: i64,
    tolerance_us: i64,
}

struct Runner<'a> {
    opts: &'a Options,
    link: Link,
    rx: mpsc::Receiver<Sent>,
    start: Instant,
    conn: Option<Conn>,
    fds: Arc<FdTable>,
    pending: Vec<Pending>,
    /// Every segment, in order: when, whether the peer sent it, its bytes.
    wire: Vec<(Instant, Vec<u8>)>,
    notes: Vec<LineNote>,
    watchdog: Watchdog,
    /// The run failed because the peer itself fell behind the script's clock.
    late: bool,
}

/// Interrupts the main thread's system call when it blocks for too long: a signal sent to
/// that thread alone, whose handler does nothing and is installed without SA_RESTART, so
/// the call returns EINTR.
struct Watchdog {
    /// Microseconds since `origin` after which to interrupt; 0 when disarmed.
    deadline_us: Arc<AtomicU64>,
    fired: Arc<AtomicBool>,
    origin: Instant,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

extern "C" fn ignore_signal(_: libc::c_int) {}

impl Watchdog {
    fn start() -> Result<Watchdog> {
        // SAFETY: installs a handler that does nothing (async-signal-safe) for SIGALRM,
        // which nothing else in this process uses; pthread_self is always safe.
        let target = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = ignore_signal as *const () as usize;
            sa.sa_flags = 0;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut());
            libc::pthread_self()
        };
        let deadline_us = Arc::new(AtomicU64::new(0));
        let fired = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let origin = Instant::now();
        let handle = {
            let (deadline_us, fired, stop) = (deadline_us.clone(), fired.clone(), stop.clone());
            std::thread::Builder::new()
                .name("peer-watchdog".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(10));
                        let d = deadline_us.load(Ordering::Acquire);
                        if d != 0 && origin.elapsed().as_micros() as u64 > d {
                            fired.store(true, Ordering::Release);
                            // SAFETY: signals the main thread, which outlives this one (it
                            // joins it before returning).
                            unsafe { libc::pthread_kill(target, libc::SIGALRM) };
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                })
                .context("start the watchdog thread")?
        };
        Ok(Watchdog {
            deadline_us,
            fired,
            origin,
            stop,
            handle: Some(handle),
        })
    }

    fn arm(&self, limit: Duration) {
        self.fired.store(false, Ordering::Release);
        let d = (self.origin.elapsed() + limit).as_micros() as u64;
        self.deadline_us.store(d.max(1), Ordering::Release);
    }

    /// Disarm; whether it fired.
    fn disarm(&self) -> bool {
        self.deadline_us.store(0, Ordering::Release);
        self.fired.load(Ordering::Acquire)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Build the link in this process's namespace (which must be one of its own), run the
/// init command and every line. `Err` is for a run that could not start (no link, a bad
/// init command); a line that does not hold is `Report::failure`.
pub fn run(script: &Script, opts: &Options) -> Result<Report> {
    let (link, rx) = Link::open(opts.link)?;
    if let Some(init) = &script.init {
        shell(opts, init.line, &init.text)?;
    }
    // Time 0 is a little ahead, so that starting the capture, poller and watchdog threads
    // does not make the first line late.
    let start = Instant::now() + START_MARGIN;
    let real_start = SystemTime::now() + START_MARGIN;
    let stop = Arc::new(AtomicBool::new(false));
    let poller = spawn_poller(start, stop.clone())?;
    let watchdog = Watchdog::start()?;
    let mut r = Runner {
        opts,
        link,
        rx,
        start,
        conn: None,
        fds: Arc::new(FdTable::default()),
        pending: Vec::new(),
        wire: Vec::new(),
        notes: Vec::new(),
        watchdog,
        late: false,
    };
    let mut failure = r.play(script).err().map(|e| e.to_string());
    if failure.is_none() {
        failure = r.finish_pending().err().map(|e| e.to_string());
    }
    let elapsed = start.elapsed();
    // What the kernel sent after the last line (an unexpected RST, a retransmission).
    std::thread::sleep(Duration::from_millis(5));
    while let Ok(s) = r.rx.try_recv() {
        r.wire.push((s.at, s.bytes));
    }
    stop.store(true, Ordering::Relaxed);
    let events = poller
        .join()
        .map_err(|_| anyhow::anyhow!("the state poller panicked"))?;
    let (segments, frames) = r.segments(real_start);
    // Close what the script left open before the link goes away.
    for (_, fd) in r.fds.lock().map(|t| t.clone()).unwrap_or_default() {
        // SAFETY: descriptors this run opened and nothing else uses.
        unsafe { libc::close(fd) };
    }
    let late = r.late;
    let mut notes = r.notes;
    fill_states(&mut notes, &events);
    Ok(Report {
        failure,
        late,
        link: r.link.kind,
        timeline: Timeline::from_events(events).with_segments(segments),
        frames,
        notes,
        elapsed,
    })
}

fn us_since(start: Instant, at: Instant) -> i64 {
    at.saturating_duration_since(start).as_micros() as i64
}

fn secs(us: i64) -> String {
    format!("{:.6}", us as f64 / 1e6)
}

impl Runner<'_> {
    fn now_us(&self) -> i64 {
        us_since(self.start, Instant::now())
    }

    fn fail<T>(&self, line: usize, what: impl std::fmt::Display) -> Result<T> {
        anyhow::bail!("{}:{}: {}", self.opts.file, line, what)
    }

    fn play(&mut self, script: &Script) -> Result<()> {
        let mut last: Option<(i64, bool)> = None; // due time, inbound segment
        // When the previous event finished: relative times count from here.
        let mut finished = Instant::now();
        for (i, ev) in script.events.iter().enumerate() {
            self.poll_pending()?;
            if matches!(ev.what, What::Syscall(_)) && !self.pending.is_empty() {
                // One thread makes the calls: this one starts when the blocked one returns.
                self.finish_pending()?;
                finished = Instant::now();
            }
            let inbound = matches!(&ev.what, What::Packet(p) if p.direction == Direction::Inbound);
            if i == 0 && !matches!(ev.when, When::Absolute(0)) {
                return self.fail(ev.line, "the first event must be at time 0");
            }
            let offset = match last {
                Some((t, true)) if inbound => t,
                _ => us_since(self.start, finished),
            };
            let (due, due_end, any) = match ev.when {
                When::Any => (self.now_us(), self.now_us(), true),
                When::Absolute(t) => (t, t, false),
                When::Relative(t) => (offset + t, offset + t, false),
                When::AbsoluteRange(a, b) => (a, b, false),
                When::RelativeRange(a, b) => (offset + a, offset + b, false),
            };
            if due_end > self.opts.max_duration.as_micros() as i64 {
                return self.fail(
                    ev.line,
                    format!(
                        "due at {} s, after the run's limit of {} s",
                        secs(due_end),
                        self.opts.max_duration.as_secs()
                    ),
                );
            }
            let mut tolerance = self.opts.tolerance_us;
            if let Some((prev, _)) = last {
                tolerance = tolerance.max(((due - prev) as f64 * TOLERANCE_PERCENT / 100.0) as i64);
            }
            let window = if any {
                None
            } else {
                Some((due, due_end, tolerance))
            };
            let happened = match &ev.what {
                What::Command(text) => {
                    self.wait_until(due);
                    self.check_time(ev.line, "command", window, Instant::now())?;
                    shell(self.opts, ev.line, text)?;
                    Instant::now()
                }
                What::Syscall(call) => {
                    self.wait_until(due);
                    self.check_time(ev.line, "system call start", window, Instant::now())?;
                    let end = ev.blocking_until.map(|end| match ev.when {
                        When::Relative(_) | When::RelativeRange(..) => offset + end,
                        _ => end,
                    });
                    self.syscall(ev.line, call, end, tolerance)?
                }
                What::Packet(p) if p.direction == Direction::Inbound => {
                    self.wait_until(due);
                    self.check_time(ev.line, "inbound packet", window, Instant::now())?;
                    self.inject(ev.line, p)?
                }
                What::Packet(p) => self.expect(ev.line, p, window)?,
            };
            // The next relative time counts from when this one happened (a call's return,
            // an injection, the kernel's stamp on its segment), not from when this thread
            // got round to it: on a busy machine that can be milliseconds later.
            finished = happened;
            self.note(ev.line, &ev.what, happened);
            last = Some((
                if any {
                    us_since(self.start, happened)
                } else {
                    due
                },
                inbound,
            ));
        }
        Ok(())
    }

    fn note(&mut self, line: usize, what: &What, at: Instant) {
        let text = match what {
            What::Command(c) => format!("`{c}`"),
            What::Syscall(c) => c.to_string(),
            What::Packet(p) => format!(
                "{} {p}",
                if p.direction == Direction::Inbound {
                    "<"
                } else {
                    ">"
                }
            ),
        };
        self.notes.push(LineNote {
            line,
            text,
            t_us: us_since(self.start, at) as u64,
            states: Vec::new(),
        });
    }

    /// Sleep until `due_us`, the last half millisecond by yielding.
    fn wait_until(&self, due_us: i64) {
        let target = self.start + Duration::from_micros(due_us.max(0) as u64);
        loop {
            let now = Instant::now();
            if now >= target {
                return;
            }
            let left = target - now;
            if left > Duration::from_micros(500) {
                std::thread::sleep(left - Duration::from_micros(500));
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Check an event's time. `ours`: the peer itself made it happen (an injection, a call,
    /// a command), so lateness is the peer's, not the kernel's.
    fn check_time(
        &mut self,
        line: usize,
        what: &str,
        window: Option<(i64, i64, i64)>,
        at: Instant,
    ) -> Result<()> {
        let Some((due, due_end, tol)) = window else {
            return Ok(());
        };
        let actual = us_since(self.start, at);
        let ours = matches!(what, "command" | "system call start" | "inbound packet");
        if ours && actual > due_end + tol {
            self.late = true;
            return self.fail(
                line,
                format!(
                    "timing error: the peer was late: {what} due at {} sec ran at {} sec \
                     (tolerance {} sec); the machine was too busy to keep the script's time, \
                     which says nothing about the kernel: run it again",
                    secs(due_end),
                    secs(actual),
                    secs(tol)
                ),
            );
        }
        if actual < due - tol || actual > due_end + tol {
            let expected = if due == due_end {
                format!("at {} sec", secs(due))
            } else {
                format!("in {}~{} sec", secs(due), secs(due_end))
            };
            return self.fail(
                line,
                format!(
                    "timing error: expected {what} {expected}, but it happened at {} sec \
                     (tolerance {} sec)",
                    secs(actual),
                    secs(tol)
                ),
            );
        }
        Ok(())
    }

    fn syscall(
        &mut self,
        line: usize,
        call: &Syscall,
        end_us: Option<i64>,
        tolerance_us: i64,
    ) -> Result<Instant> {
        let Some(end_us) = end_us else {
            // A call that must not block runs right here: handing it to another thread
            // costs a wake-up, milliseconds on a busy machine. The watchdog interrupts it
            // (EINTR) if it blocks after all.
            // Its time is when it began: the kernel may send before the call returns.
            let at = Instant::now();
            self.watchdog.arm(NONBLOCKING_LIMIT);
            let out = sys::call(call, &self.fds);
            if self.watchdog.disarm() {
                return self.fail(
                    line,
                    format!(
                        "expected {}(...) to return at once, it was still blocked after {} ms \
                         (write `+T...END` in front of a call that blocks)",
                        call.name,
                        NONBLOCKING_LIMIT.as_millis()
                    ),
                );
            }
            self.check_call(line, call, out)?;
            return Ok(at);
        };
        let (tx, rx) = mpsc::channel();
        let (began_tx, began_rx) = mpsc::channel();
        let fds = self.fds.clone();
        let c = call.clone();
        std::thread::Builder::new()
            .name("peer-syscall".into())
            .spawn(move || {
                let _ = began_tx.send(Instant::now());
                let out = sys::call(&c, &fds);
                let _ = tx.send((out, Instant::now()));
            })
            .context("start a system call thread")?;
        // What follows a blocking call counts from when it really began.
        let began = began_rx
            .recv_timeout(NONBLOCKING_LIMIT)
            .unwrap_or_else(|_| Instant::now());
        self.pending.push(Pending {
            line,
            call: call.clone(),
            rx,
            end_us,
            tolerance_us,
        });
        Ok(began)
    }

    fn check_call(
        &self,
        line: usize,
        call: &Syscall,
        out: std::result::Result<Outcome, String>,
    ) -> Result<()> {
        match out {
            Ok(got) => match sys::check(call, got) {
                Ok(()) => Ok(()),
                Err(e) => self.fail(line, e),
            },
            Err(e) => self.fail(line, e),
        }
    }

    /// Check blocking calls that have returned, without waiting.
    fn poll_pending(&mut self) -> Result<()> {
        let mut i = 0;
        while i < self.pending.len() {
            match self.pending[i].rx.try_recv() {
                Ok((out, at)) => {
                    let p = self.pending.remove(i);
                    self.check_return(&p, out, at)?;
                }
                Err(_) => i += 1,
            }
        }
        Ok(())
    }

    /// Wait for every blocking call to return, each until its due time plus a grace.
    fn finish_pending(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            let p = self.pending.remove(0);
            let deadline = self.start
                + Duration::from_micros((p.end_us + p.tolerance_us).max(0) as u64)
                + LATE_GRACE;
            let left = deadline.saturating_duration_since(Instant::now());
            match p.rx.recv_timeout(left) {
                Ok((out, at)) => self.check_return(&p, out, at)?,
                Err(_) => {
                    return self.fail(
                        p.line,
                        format!(
                            "expected {}(...) to return at {} sec, it still blocks at {} sec",
                            p.call.name,
                            secs(p.end_us),
                            secs(self.now_us())
                        ),
                    );
                }
            }
        }
        Ok(())
    }

    fn check_return(
        &mut self,
        p: &Pending,
        out: std::result::Result<Outcome, String>,
        at: Instant,
    ) -> Result<()> {
        self.check_call(p.line, &p.call, out)?;
        self.check_time(
            p.line,
            &format!("{}(...) to return", p.call.name),
            Some((p.end_us, p.end_us, p.tolerance_us)),
            at,
        )
    }

    fn inject(&mut self, line: usize, p: &Packet) -> Result<Instant> {
        if self.conn.is_none() {
            if p.flags & (TCP_SYN | TCP_ACK) != TCP_SYN {
                return self.fail(
                    line,
                    format!(
                        "the peer sends {} before any connection exists: the first segment \
                         of a connection is a SYN",
                        flags_text(p.flags)
                    ),
                );
            }
            self.conn = Some(Conn {
                local_port: PORT,
                remote_port: REMOTE_PORT,
                local_isn: None,
            });
        }
        let Some(conn) = self.conn.as_ref() else {
            unreachable!("set above")
        };
        let ack = match (p.ack, conn.local_isn) {
            (None, _) => 0,
            (Some(a), Some(isn)) => isn.wrapping_add(a),
            (Some(_), None) => {
                return self.fail(
                    line,
                    "the peer acknowledges before the kernel sent its SYN: nothing to count from",
                );
            }
        };
        let Some(options) = &p.options else {
            return self.fail(
                line,
                "`<...>` matches any options the kernel sends; a segment the peer sends \
                 needs its options written out",
            );
        };
        let w = Wire {
            src: REMOTE_IP,
            dst: LOCAL_IP,
            sport: conn.remote_port,
            dport: conn.local_port,
            flags: p.flags,
            seq: REMOTE_ISN.wrapping_add(p.seq),
            ack,
            // packetdrill's default when a script writes no `win`.
            win: p.win.unwrap_or(65535),
            options: options.iter().cloned().map(Some).collect(),
            payload: vec![0; p.len as usize],
        };
        let bytes = w
            .build()
            .map_err(|e| anyhow::anyhow!("{}:{line}: {e}", self.opts.file))?;
        // The kernel may answer before the write returns (it runs the segment through TCP
        // on this thread): the injection's time is when the write began.
        let at = Instant::now();
        self.link
            .inject(&bytes)
            .with_context(|| format!("{}:{line}: inject the segment", self.opts.file))?;
        self.wire.push((at, bytes));
        Ok(at)
    }

    /// The next segment the kernel sends to the peer, until `deadline`.
    fn next_outbound(&mut self, deadline: Instant) -> Option<(Instant, Wire)> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let s = self.rx.recv_timeout(left).ok()?;
            self.wire.push((s.at, s.bytes.clone()));
            if let Some(w) = Wire::parse(&s.bytes)
                && w.dst == REMOTE_IP
            {
                return Some((s.at, w));
            }
        }
    }

    fn expect(
        &mut self,
        line: usize,
        p: &Packet,
        window: Option<(i64, i64, i64)>,
    ) -> Result<Instant> {
        let deadline = match window {
            Some((_, end, tol)) => {
                self.start + Duration::from_micros((end + tol).max(0) as u64) + LATE_GRACE
            }
            None => Instant::now() + self.opts.max_duration,
        };
        let Some((at, mut w)) = self.next_outbound(deadline) else {
            return self.fail(
                line,
                format!(
                    "expected outbound {p}, got nothing by {} sec",
                    secs(self.now_us())
                ),
            );
        };
        // As packetdrill does: a script's big segment may leave as several smaller ones
        // (TSO autosizing cuts a burst by the pacing rate): take following segments, each
        // continuing the last with the same header, until the payload is as long.
        while w.payload.len() < p.len as usize && !w.payload.is_empty() {
            let Some((_, next)) = self.next_outbound(deadline) else {
                break;
            };
            let loose = TCP_FIN | TCP_PSH | TCP_CWR;
            let continues = next.sport == w.sport
                && next.dport == w.dport
                && next.seq == w.seq.wrapping_add(w.payload.len() as u32)
                && next.flags & !loose == w.flags & !loose
                && next.ack == w.ack
                && !next.payload.is_empty();
            if !continues {
                let mut shown = w.clone();
                shown.flags |= next.flags & loose;
                return self.fail(
                    line,
                    format!(
                        "expected outbound {p}, got {} bytes in {} then a segment that does \
                         not continue it (flags {}, seq {})",
                        w.payload.len(),
                        flags_text(w.flags),
                        flags_text(next.flags),
                        next.seq.wrapping_sub(
                            self.conn.as_ref().and_then(|c| c.local_isn).unwrap_or(0)
                        )
                    ),
                );
            }
            w.flags |= next.flags & loose;
            w.payload.extend_from_slice(&next.payload);
        }
        if self.conn.is_none() && w.flags & (TCP_SYN | TCP_ACK) == TCP_SYN {
            self.conn = Some(Conn {
                local_port: w.sport,
                remote_port: w.dport,
                local_isn: None,
            });
        }
        let Some(conn) = self.conn.as_mut() else {
            return self.fail(
                line,
                format!(
                    "expected outbound {p}, got {} before any connection",
                    flags_text(w.flags)
                ),
            );
        };
        if conn.local_isn.is_none() && w.flags & TCP_SYN != 0 {
            conn.local_isn = Some(w.seq);
        }
        let isn = conn.local_isn.unwrap_or(w.seq);
        let got = Packet {
            direction: Direction::Outbound,
            flags: w.flags,
            seq: w.seq.wrapping_sub(isn),
            len: w.payload.len() as u32,
            ack: (w.flags & TCP_ACK != 0).then(|| w.ack.wrapping_sub(REMOTE_ISN)),
            win: Some(w.win),
            options: Some(
                w.options
                    .iter()
                    .map(|o| match o {
                        Some(TcpOpt::Sack(b)) => TcpOpt::Sack(
                            b.iter()
                                .map(|(l, r)| {
                                    (l.wrapping_sub(REMOTE_ISN), r.wrapping_sub(REMOTE_ISN))
                                })
                                .collect(),
                        ),
                        Some(o) => o.clone(),
                        None => TcpOpt::Eol,
                    })
                    .collect(),
            ),
        };
        let ports_differ = w.sport != conn.local_port || w.dport != conn.remote_port;
        let mut differs = Vec::new();
        if ports_differ {
            differs.push(format!(
                "ports {} -> {} instead of {} -> {}",
                w.sport, w.dport, conn.local_port, conn.remote_port
            ));
        }
        if got.flags != p.flags {
            differs.push("flags".to_string());
        }
        if got.seq != p.seq || got.len != p.len {
            differs.push("sequence range".to_string());
        }
        if p.ack.is_some() && got.ack != p.ack {
            differs.push("ack".to_string());
        }
        if p.win.is_some() && got.win != p.win {
            differs.push("window".to_string());
        }
        if let Some(want) = &p.options {
            let have = got.options.as_deref().unwrap_or(&[]);
            let same = want.len() == have.len()
                && w.options.iter().all(Option::is_some)
                && want.iter().zip(have).all(|(a, b)| match (a, b) {
                    // packetdrill checks the timestamp's presence, not its clock.
                    (TcpOpt::Timestamp { .. }, TcpOpt::Timestamp { .. }) => true,
                    (a, b) => a == b,
                });
            if !same {
                differs.push("options".to_string());
            }
        }
        if w.payload.iter().any(|&b| b != 0) {
            differs.push("payload (the script's data is zeros)".to_string());
        }
        if !differs.is_empty() {
            let mut shown = got.clone();
            if p.win.is_none() {
                shown.win = None;
            }
            if p.options.is_none() {
                shown.options = None;
            }
            return self.fail(
                line,
                format!(
                    "expected outbound {p}, got {shown} ({} differ)",
                    differs.join(", ")
                ),
            );
        }
        self.check_time(line, "outbound packet", window, at)?;
        Ok(at)
    }

    /// The segments in the order they crossed, numbered, and as frames for pcapng.
    fn segments(&self, real_start: SystemTime) -> (Vec<Segment>, Vec<Frame>) {
        let base_ns = real_start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut order: Vec<&(Instant, Vec<u8>)> = self.wire.iter().collect();
        order.sort_by_key(|(at, _)| *at);
        let mut numbering = Numbering::new();
        let mut segments = Vec::new();
        let mut frames = Vec::new();
        for (at, bytes) in order {
            let mut frame = vec![0u8; 12];
            frame.extend_from_slice(&[0x08, 0x00]);
            frame.extend_from_slice(bytes);
            let Some(parsed) = parse_frame(&frame) else {
                continue;
            };
            let t_us = us_since(self.start, *at) as u64;
            segments.push(numbering.number(parsed, t_us));
            frames.push(Frame {
                real_ns: base_ns + t_us * 1000,
                len: frame.len() as u32,
                data: frame,
            });
        }
        (segments, frames)
    }
}

/// Give each line the states its sockets were in just before the next line ran (the poller
/// looks every few milliseconds; reading them between lines would delay the next line).
fn fill_states(notes: &mut [LineNote], events: &[Event]) {
    let mut states: BTreeMap<SockKey, TcpState> = BTreeMap::new();
    let mut next = 0;
    let bounds: Vec<u64> = notes
        .iter()
        .skip(1)
        .map(|n| n.t_us)
        .chain([u64::MAX])
        .collect();
    for (note, bound) in notes.iter_mut().zip(bounds) {
        while next < events.len() && events[next].t_us <= bound.max(note.t_us) {
            let e = &events[next];
            if e.to == TcpState::Close {
                states.remove(&(e.local, e.remote));
            } else {
                states.insert((e.local, e.remote), e.to);
            }
            next += 1;
        }
        note.states = states.iter().map(|(k, s)| (k.0, k.1, *s)).collect();
    }
}

/// Run a backtick command in the script's directory, bounded in time.
fn shell(opts: &Options, line: usize, text: &str) -> Result<()> {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut child = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(text)
        .current_dir(&opts.dir)
        // sysctl, ip and tc live in sbin, which an unprivileged user's PATH may lack.
        .env("PATH", format!("{path}:/usr/sbin:/sbin"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{}:{line}: start `{text}`", opts.file))?;
    let deadline = Instant::now() + COMMAND_LIMIT;
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            let out = child.wait_with_output()?;
            anyhow::bail!(
                "{}:{line}: command `{text}` failed ({status}): {}",
                opts.file,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "{}:{line}: command `{text}` still ran after {} s and was killed",
                opts.file,
                COMMAND_LIMIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

type SockKey = (SocketAddr, SocketAddr);

/// The namespace's IPv4 TCP sockets and their states.
fn snapshot() -> BTreeMap<SockKey, TcpState> {
    let q = Query {
        family: Family::V4,
        ..Query::default()
    };
    diag::dump(&q)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.local.ip() == IpAddr::V4(LOCAL_IP) || r.local.ip().is_unspecified())
        .map(|r| ((r.local, r.remote), r.state))
        .collect()
}

/// Poll sock_diag until `stop`, turning differences into state changes.
fn spawn_poller(start: Instant, stop: Arc<AtomicBool>) -> Result<JoinHandle<Vec<Event>>> {
    std::thread::Builder::new()
        .name("peer-states".into())
        .spawn(move || {
            let mut events = Vec::new();
            let mut prev: HashMap<SockKey, TcpState> = HashMap::new();
            loop {
                let done = stop.load(Ordering::Relaxed);
                let now: HashMap<SockKey, TcpState> = snapshot().into_iter().collect();
                let t_us = start.elapsed().as_micros() as u64;
                for (k, &s) in &now {
                    let Some(&from) = prev.get(k) else {
                        events.push(Event::new(t_us, k.0, k.1, TcpState::Close, s, Source::Poll));
                        continue;
                    };
                    if from == s {
                        continue;
                    }
                    // A state shorter than one poll (FIN_WAIT1 on the way to CLOSING) is
                    // filled in from Linux's state graph, marked as inferred.
                    let path = infer::shortest_path(from, s).unwrap_or_else(|| vec![from, s]);
                    for (i, step) in path.windows(2).enumerate() {
                        let source = if i + 2 == path.len() {
                            Source::Poll
                        } else {
                            Source::Inferred
                        };
                        events.push(Event::new(t_us, k.0, k.1, step[0], step[1], source));
                    }
                }
                for (k, &s) in &prev {
                    if !now.contains_key(k) {
                        events.push(Event::new(t_us, k.0, k.1, s, TcpState::Close, Source::Poll));
                    }
                }
                prev = now;
                if done {
                    return events;
                }
                std::thread::sleep(POLL_EVERY);
            }
        })
        .context("start the state poller")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(line: usize, t_us: u64) -> LineNote {
        LineNote {
            line,
            text: String::new(),
            t_us,
            states: Vec::new(),
        }
    }

    #[test]
    fn each_line_gets_the_states_before_the_next() {
        let a: SocketAddr = "192.168.0.2:8080".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:47001".parse().unwrap();
        let ev = |t, from, to| Event::new(t, a, b, from, to, Source::Poll);
        let events = [
            ev(5, TcpState::Close, TcpState::Established),
            ev(25, TcpState::Established, TcpState::CloseWait),
            ev(45, TcpState::CloseWait, TcpState::Close),
        ];
        let mut notes = vec![note(1, 0), note(2, 20), note(3, 40)];
        fill_states(&mut notes, &events);
        let states: Vec<Vec<TcpState>> = notes
            .iter()
            .map(|n| n.states.iter().map(|s| s.2).collect())
            .collect();
        assert_eq!(
            states,
            vec![
                vec![TcpState::Established],
                vec![TcpState::CloseWait],
                // The last line sees the end: the socket is gone.
                vec![],
            ]
        );
    }
}
