//! The tracepoint backend: `sock:inet_sock_set_state` lines from a private tracefs
//! instance's pipe, turned into events, with the mini-socket lookups (sock_diag) that the
//! tracepoint cannot do itself (see the parent module's `//!`). [`TpState`] is the
//! bookkeeping between lines; it talks to the running tracer through [`TpEnv`], which the
//! tests replace with recorded lines and a scripted lookup.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Ctx, Fault, endpoint, lock};
use crate::error::{Error, Result};
use crate::observe::SocketRow;
use crate::observe::tracefs::{self, Instance, RawEvent};
use crate::state::TcpState;
use crate::timeline::{Endpoint, Event, Source};

/// The tracepoint worker: read the pipe until told to stop, then clean up the instance.
pub(super) fn run(pipe: File, instance: Instance, ctx: Ctx, t0_ns: u64) -> Result<()> {
    let mut tp = TpState::new(t0_ns);
    let mut pipe = pipe;
    let res = tracepoint_loop(&mut pipe, &instance, &ctx, &mut tp);
    let _ = instance.disable();
    *lock(&ctx.shared.buffer) = instance.stats().ok();
    // The pipe must be closed before the instance can be removed.
    drop(pipe);
    drop(instance);
    res
}

fn tracepoint_loop(
    pipe: &mut File,
    instance: &Instance,
    ctx: &Ctx,
    tp: &mut TpState,
) -> Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let mut tail: Vec<u8> = Vec::new();
    // Mini-socket lookups and rechecks cost a sock_diag dump: at most one per round, and a
    // round lasts at least the poll interval and 4 times the last dump.
    let mut round = ctx.interval.max(Duration::from_millis(2));
    let mut next_round = Instant::now() + round;
    loop {
        let stopping = ctx.stopping();
        if stopping {
            // Let nothing new in, then drain what the kernel already wrote.
            let _ = instance.disable();
        }
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    tail.extend_from_slice(&buf[..n]);
                    let end = tail.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
                    for line in tail[..end].split(|&b| b == b'\n') {
                        if let Some(ev) =
                            std::str::from_utf8(line).ok().and_then(tracefs::parse_line)
                        {
                            ctx.shared.tracepoint_events.fetch_add(1, Ordering::Relaxed);
                            tp.handle(ev, ctx);
                        }
                    }
                    tail.drain(..end);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("read trace_pipe", e)),
            }
        }
        if ctx.fault == Some(Fault::InWorker) {
            return Err(Error::io(
                "injected failure in the tracer",
                io::Error::other("test fault"),
            ));
        }
        let now = Instant::now();
        if stopping || now >= next_round {
            let t = Instant::now();
            tp.resolve(ctx);
            round = ctx
                .interval
                .max(Duration::from_millis(2))
                .max(t.elapsed() * 4);
            next_round = Instant::now() + round;
        }
        if stopping {
            tp.flush_pending(ctx);
            return Ok(());
        }
        let wait = next_round
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(50));
        let mut pfd = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut pfd, 1, wait.as_millis().max(1) as i32) };
    }
}

/// A tracepoint line as an event, its time counted from `t0_ns` (CLOCK_MONOTONIC).
fn raw_to_event(t0_ns: u64, ev: &RawEvent, from: TcpState, to: TcpState, source: Source) -> Event {
    let t_us = ev.ts_ns.saturating_sub(t0_ns) / 1000;
    let mut e = Event::new(t_us, ev.local, ev.remote, from, to, source);
    e.pid = (ev.pid != 0).then_some(ev.pid);
    e
}

/// What the tracepoint bookkeeping needs from the running tracer: where events go, the
/// clock, and the sock_diag lookup of mini-sockets. A trait so that [`TpState`] can be
/// tested on recorded tracepoint lines with a scripted lookup.
trait TpEnv {
    fn emit(&self, e: Event);
    fn warn_once(&self, w: String);
    /// Microseconds since the trace started.
    fn now_us(&self) -> u64;
    /// The watched ports' sockets in TIME_WAIT or FIN_WAIT2 (mini-sockets included).
    fn mini_sockets(&self) -> Result<Vec<SocketRow>>;
}

impl TpEnv for Ctx {
    fn emit(&self, e: Event) {
        self.shared.emit(e);
    }

    fn warn_once(&self, w: String) {
        self.shared.warn_once(w);
    }

    fn now_us(&self) -> u64 {
        Ctx::now_us(self)
    }

    fn mini_sockets(&self) -> Result<Vec<SocketRow>> {
        self.dump_mini()
    }
}

/// The tracepoint backend's bookkeeping between lines.
struct TpState {
    t0_ns: u64,
    /// `CLOSE -> SYN_SENT` events with no local port yet, by (local ip, remote).
    pending_connect: HashMap<(IpAddr, SocketAddr), VecDeque<RawEvent>>,
    /// `FIN_WAIT2/CLOSING -> CLOSE` events waiting for a sock_diag lookup.
    closes: Vec<RawEvent>,
    /// Mini-sockets being watched: FIN_WAIT2 orphans and TIME_WAIT.
    mini: HashMap<Endpoint, TcpState>,
}

impl TpState {
    fn new(t0_ns: u64) -> TpState {
        TpState {
            t0_ns,
            pending_connect: HashMap::new(),
            closes: Vec::new(),
            mini: HashMap::new(),
        }
    }

    fn event(&self, ev: &RawEvent, from: TcpState, to: TcpState, source: Source) -> Event {
        raw_to_event(self.t0_ns, ev, from, to, source)
    }

    fn handle(&mut self, ev: RawEvent, env: &impl TpEnv) {
        // connect() reports CLOSE -> SYN_SENT before it picks the local port: hold it until
        // the socket's next change names the port.
        if ev.old == TcpState::Close && ev.new == TcpState::SynSent && ev.local.port() == 0 {
            self.pending_connect
                .entry((ev.local.ip(), ev.remote))
                .or_default()
                .push_back(ev);
            return;
        }
        if ev.old == TcpState::SynSent
            && let Some(q) = self.pending_connect.get_mut(&(ev.local.ip(), ev.remote))
        {
            // Same task first (a blocking connect() sees its own SYN-ACK), else the oldest.
            let at = q.iter().position(|p| p.pid == ev.pid).unwrap_or(0);
            if let Some(mut first) = q.remove(at) {
                first.local = ev.local;
                let e = raw_to_event(self.t0_ns, &first, first.old, first.new, Source::Tracepoint);
                env.emit(e);
            }
            if q.is_empty() {
                self.pending_connect.remove(&(ev.local.ip(), ev.remote));
            }
        }
        if ev.new == TcpState::Close && matches!(ev.old, TcpState::FinWait2 | TcpState::Closing) {
            // Maybe a mini-socket took over: ask sock_diag at the end of the round.
            self.closes.push(ev);
            return;
        }
        env.emit(self.event(&ev, ev.old, ev.new, Source::Tracepoint));
    }

    /// One sock_diag dump: settle the pending `-> CLOSE` events and recheck mini-sockets.
    fn resolve(&mut self, env: &impl TpEnv) {
        if self.closes.is_empty() && self.mini.is_empty() {
            return;
        }
        let rows = match env.mini_sockets() {
            Ok(rows) => rows,
            Err(e) => {
                env.warn_once(format!(
                    "sock_diag failed ({e}): TIME_WAIT and orphaned FIN_WAIT2 are shown as CLOSE"
                ));
                for ev in std::mem::take(&mut self.closes) {
                    env.emit(self.event(&ev, ev.old, ev.new, Source::Tracepoint));
                }
                return;
            }
        };
        let now: HashMap<Endpoint, TcpState> = rows
            .iter()
            .map(|r| (endpoint(r.local, r.remote), r.state))
            .collect();
        // Recheck the mini-sockets we already knew (before adding new ones); the final
        // round too, so a change just before stop() is not lost between two rounds.
        {
            let t = env.now_us();
            let mut gone = Vec::new();
            for (ep, st) in self.mini.iter_mut() {
                match now.get(ep) {
                    Some(&s) if s == *st => {}
                    Some(&s) => {
                        env.emit(Event::new(t, ep.local, ep.remote, *st, s, Source::Diag));
                        *st = s;
                    }
                    None => {
                        env.emit(Event::new(
                            t,
                            ep.local,
                            ep.remote,
                            *st,
                            TcpState::Close,
                            Source::Diag,
                        ));
                        gone.push(*ep);
                    }
                }
            }
            for ep in gone {
                self.mini.remove(&ep);
            }
        }
        for ev in std::mem::take(&mut self.closes) {
            let ep = endpoint(ev.local, ev.remote);
            match now.get(&ep) {
                Some(&TcpState::TimeWait) => {
                    env.emit(self.event(&ev, ev.old, TcpState::TimeWait, Source::Diag));
                    self.mini.insert(ep, TcpState::TimeWait);
                }
                // An orphan: the program closed, the peer has not. Still FIN_WAIT2.
                Some(&TcpState::FinWait2) => {
                    self.mini.insert(ep, TcpState::FinWait2);
                }
                _ => env.emit(self.event(&ev, ev.old, ev.new, Source::Tracepoint)),
            }
        }
    }

    /// At the end: connects that never got a port are reported as they are.
    fn flush_pending(&mut self, env: &impl TpEnv) {
        let t0 = self.t0_ns;
        for (_, q) in self.pending_connect.drain() {
            for ev in q {
                env.emit(raw_to_event(t0, &ev, ev.old, ev.new, Source::Tracepoint));
            }
        }
    }
}

/// [`TpState`] on tracepoint lines recorded on this project's 6.18 kernel (a Python client
/// and server on 127.0.0.1:47001, the client closing first), with a scripted sock_diag
/// lookup in place of the kernel.
#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;
    use crate::observe::trace::test_row as row;
    use crate::state::TcpState::*;
    use crate::timeline::Timeline;

    const CLIENT_CLOSES_FIRST: &str = include_str!("../testdata/client_closes_first.trace");
    /// The first line's timestamp: the trace starts there.
    const T0_NS: u64 = 9_947_848_275_000;

    /// Collects what the bookkeeping emits; answers lookups from a script.
    #[derive(Default)]
    struct Fake {
        events: RefCell<Vec<Event>>,
        warnings: RefCell<Vec<String>>,
        /// The next lookup's answer; `None` means the lookup fails.
        next: RefCell<Option<Vec<SocketRow>>>,
        lookups: Cell<u32>,
        now_us: Cell<u64>,
    }

    impl TpEnv for Fake {
        fn emit(&self, e: Event) {
            self.events.borrow_mut().push(e);
        }
        fn warn_once(&self, w: String) {
            self.warnings.borrow_mut().push(w);
        }
        fn now_us(&self) -> u64 {
            self.now_us.get()
        }
        fn mini_sockets(&self) -> Result<Vec<SocketRow>> {
            self.lookups.set(self.lookups.get() + 1);
            self.next
                .borrow()
                .clone()
                .ok_or_else(|| Error::io("sock_diag", io::Error::other("scripted failure")))
        }
    }

    impl Fake {
        fn answer(&self, rows: Vec<SocketRow>) {
            *self.next.borrow_mut() = Some(rows);
        }
        fn timeline(&self) -> Timeline {
            Timeline::from_events(self.events.borrow().clone())
        }
    }

    fn lines(text: &str) -> Vec<RawEvent> {
        text.lines().filter_map(tracefs::parse_line).collect()
    }

    const CLIENT: Endpoint = Endpoint {
        local: SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 50358),
        remote: SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 47001),
    };
    const CHILD: Endpoint = Endpoint {
        local: CLIENT.remote,
        remote: CLIENT.local,
    };

    /// The recorded lines up to the client's `FIN_WAIT2 -> CLOSE` (the mini-socket took
    /// over), and the rest (the server's close).
    fn split() -> (Vec<RawEvent>, Vec<RawEvent>) {
        let mut all = lines(CLIENT_CLOSES_FIRST);
        assert_eq!(all.len(), 11, "every recorded line parses");
        let rest = all.split_off(9);
        (all, rest)
    }

    #[test]
    fn connect_without_a_port_is_held_until_the_port_is_known() {
        let (first, _) = split();
        let env = Fake::default();
        let mut tp = TpState::new(T0_NS);
        tp.handle(first[0].clone(), &env);
        tp.handle(first[1].clone(), &env);
        // The listener's event only: `CLOSE -> SYN_SENT` with port 0 waits.
        assert_eq!(env.events.borrow().len(), 1);
        tp.handle(first[2].clone(), &env);
        let events = env.events.borrow();
        assert_eq!(events.len(), 3);
        let connect = &events[1];
        assert_eq!(
            connect.endpoint(),
            CLIENT,
            "the port comes from the next line"
        );
        assert_eq!((connect.from, connect.to), (Close, SynSent));
        assert_eq!(
            connect.t_us, 1_824,
            "the connect's own time, not the next line's"
        );
        assert_eq!(connect.pid, Some(17417));
        assert!(tp.pending_connect.is_empty());
    }

    #[test]
    fn an_orphan_in_fin_wait2_then_time_wait_then_gone() {
        let (first, rest) = split();
        let env = Fake::default();
        let mut tp = TpState::new(T0_NS);
        for ev in first {
            tp.handle(ev, &env);
        }
        // `FIN_WAIT2 -> CLOSE` is held for the lookup, not reported.
        assert_eq!(
            env.timeline().sequence(CLIENT),
            vec![Close, SynSent, Established, FinWait1, FinWait2]
        );
        // The server has not closed: sock_diag shows the orphan still in FIN_WAIT2.
        env.answer(vec![
            row(FinWait2, 50358, 47001),
            row(CloseWait, 47001, 50358),
        ]);
        tp.resolve(&env);
        assert_eq!(env.lookups.get(), 1);
        assert_eq!(
            env.timeline().sequence(CLIENT).last(),
            Some(&FinWait2),
            "still FIN_WAIT2, no CLOSE"
        );
        for ev in rest {
            tp.handle(ev, &env);
        }
        // The server's FIN came: the mini-socket is in TIME_WAIT.
        env.now_us.set(60_000);
        env.answer(vec![row(TimeWait, 50358, 47001)]);
        tp.resolve(&env);
        // The TIME_WAIT mini-socket went.
        env.now_us.set(70_000);
        env.answer(vec![]);
        tp.resolve(&env);
        let t = env.timeline();
        assert_eq!(
            t.sequence(CLIENT),
            vec![
                Close,
                SynSent,
                Established,
                FinWait1,
                FinWait2,
                TimeWait,
                Close
            ]
        );
        assert_eq!(
            t.sequence(CHILD),
            vec![Listen, SynRecv, Established, CloseWait, LastAck, Close]
        );
        let diag: Vec<(TcpState, TcpState, u64)> = t
            .events_of(CLIENT)
            .filter(|e| e.source == Source::Diag)
            .map(|e| (e.from, e.to, e.t_us))
            .collect();
        assert_eq!(
            diag,
            vec![(FinWait2, TimeWait, 60_000), (TimeWait, Close, 70_000)]
        );
        assert!(tp.mini.is_empty());
        // Nothing left to look up: no more dumps.
        tp.resolve(&env);
        assert_eq!(env.lookups.get(), 3);
        assert!(env.warnings.borrow().is_empty());
    }

    #[test]
    fn time_wait_found_at_once_keeps_the_tracepoint_time() {
        let (first, _) = split();
        let env = Fake::default();
        let mut tp = TpState::new(T0_NS);
        for ev in first {
            tp.handle(ev, &env);
        }
        env.now_us.set(99_999);
        env.answer(vec![row(TimeWait, 50358, 47001)]);
        tp.resolve(&env);
        let last = env.timeline().events_of(CLIENT).last().cloned().unwrap();
        assert_eq!(
            (last.from, last.to, last.source),
            (FinWait2, TimeWait, Source::Diag)
        );
        assert_eq!(last.t_us, 9_779, "the time of the tracepoint line");
        assert_eq!(tp.mini.get(&CLIENT), Some(&TimeWait));
    }

    #[test]
    fn a_failed_lookup_reports_close_and_says_so() {
        let (first, _) = split();
        let env = Fake::default();
        let mut tp = TpState::new(T0_NS);
        for ev in first {
            tp.handle(ev, &env);
        }
        tp.resolve(&env);
        let last = env.timeline().events_of(CLIENT).last().cloned().unwrap();
        assert_eq!(
            (last.from, last.to, last.source),
            (FinWait2, Close, Source::Tracepoint)
        );
        let warnings = env.warnings.borrow();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("shown as CLOSE"), "{warnings:?}");
        assert!(tp.closes.is_empty());
    }

    #[test]
    fn connects_are_matched_by_task_and_flushed_at_the_end() {
        let (first, _) = split();
        let mut other = first[1].clone();
        other.pid = 4242;
        other.ts_ns += 10_000;
        let env = Fake::default();
        let mut tp = TpState::new(T0_NS);
        // Two connects to the same place: the recorded one (pid 17417), then another task's.
        tp.handle(first[1].clone(), &env);
        tp.handle(other, &env);
        let mut established = first[2].clone();
        established.pid = 4242;
        tp.handle(established, &env);
        {
            let events = env.events.borrow();
            let connect = events
                .iter()
                .find(|e| e.to == SynSent)
                .expect("one connect resolved");
            assert_eq!(connect.pid, Some(4242), "same task first");
            assert_eq!(connect.local.port(), 50358);
        }
        // The other never got a port: reported as it is at the end.
        tp.flush_pending(&env);
        let events = env.events.borrow();
        let unresolved: Vec<&Event> = events
            .iter()
            .filter(|e| e.to == SynSent && e.local.port() == 0)
            .collect();
        assert_eq!(unresolved.len(), 1);
        assert_eq!(unresolved[0].pid, Some(17417));
        assert!(tp.pending_connect.is_empty());
    }
}
