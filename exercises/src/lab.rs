//! The frame every lesson binary runs in: its command-line flags, the narration, kernel
//! observation filtered to the lesson's own server port, the verdict and the JSON report.
//!
//! A lesson binary keeps only what it teaches (the server and client code, with the
//! `// LESSON:` lines); everything else is here. What a lesson concludes always comes from a
//! sock_diag snapshot or the tracer, never from what the program believes it did.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde::Serialize;
use tcplab_core::kernel::{open_file_limit, raise_open_file_limit};
use tcplab_core::observe::capture::{Capture, CaptureReport};
use tcplab_core::observe::trace::{Backend, TraceConfig, Tracer};
use tcplab_core::observe::{self, Method, Query, SocketRow};
use tcplab_core::timeline::Side;
use tcplab_core::{Segment, TcpState, Timeline};

use crate::catalog::{Binary, Catalog, Lesson, Verdict};
use crate::lessons::churn::ChurnArgs;

mod wire;

pub use tcplab_core::limits::MAX_CONNECTIONS;
use tcplab_core::limits::MAX_HOLD_SECS;

/// How long a program gets to close its socket after the peer's FIN has arrived before a
/// lesson calls the socket leaked. A correct program closes within microseconds; on a busy
/// machine a thread may wait a few milliseconds to be scheduled, never a second.
pub const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Flags every lesson binary takes.
#[derive(Parser, Debug, Clone)]
#[command(version, about = None)]
pub struct LessonArgs {
    /// Print one JSON report on stdout instead of the narration.
    #[arg(long)]
    pub json: bool,
    /// How many connections to make (each lesson has a default that finishes in seconds).
    #[arg(long, short = 'n', value_name = "N")]
    pub connections: Option<usize>,
    /// After the report, keep the process and its sockets alive this many seconds, so that
    /// `tcplab snapshot`, `ss` or a notebook can look.
    #[arg(long, value_name = "SECS")]
    pub hold: Option<f64>,
    /// How to watch state changes: the tracepoint (root), sock_diag polling (anyone), or
    /// auto (the tracepoint when permitted).
    #[arg(long, value_parser = crate::cli::one_of::<Backend>(), default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Lessons 05 and 09 only (hidden from the others' `--help`).
    #[command(flatten)]
    pub churn: ChurnArgs,
    /// Capture the segments on the lesson's port and write them to FILE as pcapng, state
    /// changes as packet comments; the report gains `segments`. Without root the lesson runs
    /// in a user + network namespace of its own to capture.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<std::path::PathBuf>,
    /// Print the ladder of the run: every segment on the lesson's port as an arrow, each
    /// side's state changes beside them (alike connections folded). Captures as `--pcap` does.
    #[arg(long)]
    pub ladder: bool,
    /// Write the same ladder as an SVG picture to FILE.
    #[arg(long, value_name = "FILE")]
    pub ladder_svg: Option<std::path::PathBuf>,
}

impl LessonArgs {
    /// Whether the run captures segments: for a pcapng file or a ladder.
    pub fn wants_wire(&self) -> bool {
        self.pcap.is_some() || self.ladder || self.ladder_svg.is_some()
    }
}

/// The lesson's tracer, reachable from the signal thread so that Ctrl-C still removes the
/// tracefs instance before the process exits.
static TRACER: Mutex<Option<Tracer>> = Mutex::new(None);

fn take_tracer() -> Option<Tracer> {
    TRACER
        .lock()
        .map(|mut t| t.take())
        .unwrap_or_else(|p| p.into_inner().take())
}

/// On SIGINT or SIGTERM: stop the tracer (which cleans up its tracefs instance), then exit.
fn install_signal_cleanup() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    let mut first = false;
    INSTALLED.call_once(|| first = true);
    if !first {
        return;
    }
    if let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                drop(take_tracer());
                std::process::exit(128 + sig);
            }
        });
    }
}

/// Socket counts per side of the lesson's connections and state, as the kernel reported
/// them (in JSON: `{"client": {...}, "server": {...}}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sides(pub BTreeMap<Side, BTreeMap<TcpState, usize>>);

impl Sides {
    /// Classify rows by the lesson's server port: a socket whose local port is the server's
    /// is on the server side (listener included), one whose remote port is, on the client side.
    pub fn from_rows(rows: &[SocketRow], server_port: u16) -> Sides {
        let mut out: BTreeMap<Side, BTreeMap<TcpState, usize>> = BTreeMap::new();
        for r in rows {
            let side = if r.local.port() == server_port {
                Side::Server
            } else if r.remote.port() == server_port {
                Side::Client
            } else {
                continue;
            };
            *out.entry(side).or_default().entry(r.state).or_insert(0) += 1;
        }
        Sides(out)
    }

    /// How many sockets of `side` are in `state`.
    pub fn count(&self, side: Side, state: TcpState) -> usize {
        self.0
            .get(&side)
            .and_then(|m| m.get(&state))
            .copied()
            .unwrap_or(0)
    }

    /// How many sockets `side` has in any state.
    pub fn total(&self, side: Side) -> usize {
        self.0.get(&side).map(|m| m.values().sum()).unwrap_or(0)
    }

    /// `server: CLOSE_WAIT 10, LISTEN 1 | client: FIN_WAIT2 10`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for side in [Side::Server, Side::Client] {
            let states = match self.0.get(&side) {
                Some(m) if !m.is_empty() => m
                    .iter()
                    .map(|(s, n)| format!("{s} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => "no sockets".to_string(),
            };
            parts.push(format!("{side}: {states}"));
        }
        parts.join(" | ")
    }
}

/// The JSON report a lesson prints with `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub lesson: String,
    pub binary: String,
    pub backend: String,
    pub server_port: Option<u16>,
    pub verdict: Verdict,
    pub expected: Verdict,
    pub observed: Sides,
    /// Why the verdict is what it is, one sentence each: first every piece of evidence that
    /// failed (a descriptor still held, a reset where a graceful close was due, work left
    /// undone), then the lesson's own conclusion.
    pub reasons: Vec<String>,
    pub facts: serde_json::Map<String, serde_json::Value>,
    pub timeline: Timeline,
    /// With `--pcap`: every segment on the server port (also in `timeline.segments`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub segments: Vec<Segment>,
}

/// A running lesson.
pub struct Lab {
    pub args: LessonArgs,
    pub lesson: Lesson,
    pub binary: Binary,
    server_port: Option<u16>,
    backend: String,
    timeline: Timeline,
    /// Behind a lock so that code holding only `&Lab` (a binary's client) can add facts.
    facts: Mutex<serde_json::Map<String, serde_json::Value>>,
    /// With [`Lab::only_address`]: the listener's exact address; sockets whose ends are not
    /// it are left out of every view, whatever their port number.
    own_server: Option<SocketAddr>,
    /// Connections on the server port that predate [`Lab::watch`]: left over from an earlier
    /// program that had the same port number (say a client of it, still in TIME_WAIT). They
    /// are not this lesson's and are left out of every view.
    stale: Mutex<HashMap<(SocketAddr, SocketAddr), u64>>,
    /// Evidence that failed: each makes the verdict a leak, whatever the lesson concluded.
    failed: Vec<String>,
    /// How to look inside the lesson's private network namespace, when it made one.
    netns: Option<String>,
    /// With `--pcap`: the running capture, then what it saw (see `wire.rs`).
    wire: Option<Capture>,
    wire_report: Option<CaptureReport>,
    /// The interface the capture listens on: `lo`, or the scripted peer's `tun0`.
    wire_interface: String,
    /// Why a capture that was wanted is not running (one line), for the verdicts that fall
    /// back to other evidence.
    wire_missing: Option<String>,
}

impl Lab {
    fn new(name: &str, args: LessonArgs) -> Result<Lab> {
        if let Some(secs) = args.hold {
            if !(0.0..=MAX_HOLD_SECS).contains(&secs) {
                bail!("--hold {secs} is outside 0..{MAX_HOLD_SECS} seconds");
            }
        }
        let catalog = Catalog::builtin();
        let (lesson, binary) = catalog.program(name).with_context(|| {
            format!(
                "{name} is not in exercises/lessons.toml, and its name does not start with the \
                 id of a lesson that has a student copy (such as `03-`)"
            )
        })?;
        if args.churn.given() && !lesson.churn {
            bail!(
                "--churn-secs is for lessons {}; lesson {} has no churn phase",
                catalog.churn_lessons().join(" and "),
                lesson.id
            );
        }
        Ok(Lab {
            args,
            lesson: lesson.clone(),
            binary: binary.clone(),
            server_port: None,
            backend: "none".to_string(),
            timeline: Timeline::new(),
            facts: Mutex::new(serde_json::Map::new()),
            own_server: None,
            stale: Mutex::new(HashMap::new()),
            failed: Vec::new(),
            netns: None,
            wire: None,
            wire_report: None,
            wire_interface: "lo".to_string(),
            wire_missing: None,
        })
    }

    /// Whether narration is printed (not in `--json` mode).
    pub fn narrating(&self) -> bool {
        !self.args.json
    }

    /// A heading for a step of the lesson.
    pub fn step(&self, text: impl AsRef<str>) {
        if self.narrating() {
            print_line(&format!("\n==> {}", text.as_ref()));
        }
    }

    /// A line of narration.
    pub fn say(&self, text: impl AsRef<str>) {
        if self.narrating() {
            print_line(&format!("    {}", text.as_ref()));
        }
    }

    /// The number of connections to make: `--connections` or the lesson's default, checked
    /// against [`MAX_CONNECTIONS`] and against the open-file limit (each connection costs
    /// `fds_per_connection` descriptors in this process).
    pub fn connections(&self, default: usize, fds_per_connection: usize) -> Result<usize> {
        let n = self.args.connections.unwrap_or(default);
        if n == 0 {
            bail!("--connections must be at least 1");
        }
        if n > MAX_CONNECTIONS {
            bail!(
                "--connections {n} is more than this lesson allows ({MAX_CONNECTIONS}); pick a smaller number"
            );
        }
        let need = (n * fds_per_connection + 64) as u64;
        let limit = open_file_limit();
        if need > limit {
            bail!(
                "--connections {n} needs about {need} open files but this process may open {limit}; \
                 raise the limit (`ulimit -n {need}`) or ask for fewer connections"
            );
        }
        Ok(n)
    }

    /// Watch the lesson's server port: snapshots are filtered to it in the kernel, and a
    /// tracer (the tracepoint with root, sock_diag polling without) records every state
    /// change of sockets on it until [`Lab::finish`]. Connections already on the port (not
    /// the listener) belong to an earlier user of the same port number and are left out.
    pub fn watch(&mut self, server_port: u16) -> Result<()> {
        self.server_port = Some(server_port);
        let snap = observe::snapshot(&lesson_query(server_port), Method::Auto)?;
        let stale = snap
            .rows
            .iter()
            .filter(|r| r.state != TcpState::Listen)
            .map(|r| ((r.local, r.remote), r.inode))
            .collect();
        *self.stale.lock().unwrap_or_else(|e| e.into_inner()) = stale;
        let cfg = TraceConfig::ports(&[server_port]).with_backend(self.args.backend);
        // The signal thread starts here, not in main(): lesson 09 must still be
        // single-threaded when it enters its private namespace (unshare refuses otherwise).
        install_signal_cleanup();
        let opening = self.open_wire(server_port);
        let tracer = Tracer::start(cfg);
        // Joined before an error from the tracer is returned: no thread is left opening.
        self.run_wire(
            opening,
            tracer
                .as_ref()
                .map_or_else(|_| Instant::now(), |t| t.started()),
        );
        let tracer = tracer?;
        self.backend = tracer.backend().to_string();
        self.say(format!(
            "watching port {server_port} with the {} backend ({})",
            tracer.backend(),
            tracer.note()
        ));
        if let Ok(mut slot) = TRACER.lock() {
            *slot = Some(tracer);
        }
        Ok(())
    }

    /// Leave out the connections that predate [`Lab::watch`]: same address pair, same inode
    /// (0 for TIME_WAIT and other mini-sockets). The same pair with another inode is this
    /// lesson's connection reusing the pair (tcp_tw_reuse), and it counts from then on.
    /// With [`Lab::only_address`], also leave out sockets whose ends are not the listener's
    /// exact address.
    fn own_rows(&self, rows: Vec<SocketRow>) -> Vec<SocketRow> {
        let rows = match self.own_server {
            Some(server) => rows
                .into_iter()
                .filter(|r| r.local == server || r.remote == server)
                .collect(),
            None => rows,
        };
        let mut stale = self.stale.lock().unwrap_or_else(|e| e.into_inner());
        if stale.is_empty() {
            return rows;
        }
        rows.into_iter()
            .filter(|r| {
                let key = (r.local, r.remote);
                match stale.get(&key) {
                    None => true,
                    Some(inode) if *inode == r.inode => false,
                    Some(_) => {
                        stale.remove(&key);
                        true
                    }
                }
            })
            .collect()
    }

    /// Count only the connections of the listener at `server` (call after [`Lab::watch`]).
    /// The port filter alone also matches other programs' sockets that share the number:
    /// a `[::1]` socket beside our `127.0.0.1` listener, say. With this, every view
    /// ([`Lab::sides`], [`Lab::rows`], [`Lab::wait_until`]) keeps only sockets with `server`
    /// at one end.
    pub fn only_address(&mut self, server: SocketAddr) {
        self.own_server = Some(server);
    }

    /// The lesson's server port (after [`Lab::watch`]).
    pub fn server_port(&self) -> Result<u16> {
        self.server_port
            .context("the lesson did not say which port to watch")
    }

    /// Ask the kernel now: sockets on the server port, counted per side and state.
    pub fn sides(&self) -> Result<Sides> {
        let port = self.server_port()?;
        let snap = observe::snapshot(&lesson_query(port), Method::Auto)?;
        Ok(Sides::from_rows(&self.own_rows(snap.rows), port))
    }

    /// The rows themselves, for lessons that show timers or queues.
    pub fn rows(&self) -> Result<Vec<SocketRow>> {
        let port = self.server_port()?;
        let rows = observe::snapshot(&lesson_query(port), Method::Auto)?.rows;
        Ok(self.own_rows(rows))
    }

    /// Ask the kernel and narrate what it says.
    pub fn show(&self, label: &str) -> Result<Sides> {
        let sides = self.sides()?;
        self.say(format!("kernel says ({label}): {}", sides.describe()));
        Ok(sides)
    }

    /// Poll the kernel until `done` holds or `timeout` passes; returns the last view either
    /// way (the verdict is graded on it, not on the wait).
    pub fn wait_until(&self, timeout: Duration, done: impl Fn(&Sides) -> bool) -> Result<Sides> {
        let deadline = Instant::now() + timeout;
        loop {
            let sides = self.sides()?;
            if done(&sides) || Instant::now() >= deadline {
                return Ok(sides);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Record a lesson-specific fact for the report.
    pub fn fact(&self, key: &str, value: impl Serialize) {
        let v = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
        self.facts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), v);
    }

    /// A piece of evidence the verdict rests on: when `holds` is false, `sentence` says what
    /// went wrong and the verdict becomes a leak, whatever the lesson concludes otherwise.
    /// This is how a grader refuses a fix that only hides the symptom.
    pub fn require(&mut self, holds: bool, sentence: impl Into<String>) {
        if !holds {
            let sentence = sentence.into();
            self.say(format!("evidence against a clean close: {sentence}"));
            self.failed.push(sentence);
        }
    }

    /// The server's sockets this process still holds a descriptor for although their
    /// connection is over or closing from the peer's end (CLOSE_WAIT, LAST_ACK, CLOSING, or
    /// CLOSE after a shutdown()). Read from the descriptor table and TCP_INFO, not from what
    /// the program did: a handler that shuts the socket down but keeps the stream shows here.
    pub fn held_after_peer_closed(&self) -> Result<Vec<observe::fds::HeldSocket>> {
        let port = self.server_port()?;
        Ok(observe::fds::held_tcp_sockets()
            .into_iter()
            .filter(|h| h.local.map(|a| a.port()) == Some(port))
            .filter(|h| {
                matches!(
                    h.state,
                    TcpState::CloseWait | TcpState::LastAck | TcpState::Closing | TcpState::Close
                )
            })
            .collect())
    }

    /// Require that the server holds no descriptor for a connection its clients closed
    /// (after [`CLOSE_GRACE`] for a slow thread), and record the count as a fact.
    pub fn require_no_held_descriptors(&mut self) -> Result<usize> {
        let deadline = Instant::now() + CLOSE_GRACE;
        let mut held = self.held_after_peer_closed()?;
        while !held.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
            held = self.held_after_peer_closed()?;
        }
        let n = held.len();
        self.fact("server_descriptors_held", n);
        let mut states: BTreeMap<TcpState, usize> = BTreeMap::new();
        for h in &held {
            *states.entry(h.state).or_default() += 1;
        }
        let states = states
            .iter()
            .map(|(s, n)| format!("{n} in {s}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.require(
            n == 0,
            format!(
                "the server process still holds {n} socket descriptors for connections its \
                 clients closed ({states}): shutdown() or a peer's FIN ends the connection, but \
                 only close() (dropping the stream) gives the descriptor back"
            ),
        );
        Ok(n)
    }

    /// Say that the lesson runs in a private network namespace, so that `--hold` tells how
    /// to look inside it (the host's `tcplab snapshot` cannot see its sockets).
    pub fn in_private_namespace(&mut self, user_namespace: bool) {
        let pid = std::process::id();
        self.netns = Some(if user_namespace {
            format!("nsenter -t {pid} -U -n --preserve-credentials")
        } else {
            format!("sudo nsenter -t {pid} -n")
        });
    }

    /// Stop the tracer now and keep its timeline for the report. A lesson calls this before
    /// heavy work on other ports (lesson 05's churn): the tracepoint fires for every state
    /// change in the kernel, and the tracer's TIME_WAIT rechecks walk the whole socket table,
    /// which the churn fills with tens of thousands of TIME_WAIT sockets.
    pub fn stop_watching(&mut self) -> Result<()> {
        if self.stop_tracer()? {
            self.say(format!(
                "stopped the {} tracer: its timeline ({} events) covers the lesson up to here",
                self.backend,
                self.timeline.events.len()
            ));
        }
        Ok(())
    }

    /// Stop the tracer, if one runs, and keep its timeline; says whether one ran.
    fn stop_tracer(&mut self) -> Result<bool> {
        self.stop_wire()?;
        match take_tracer() {
            Some(tracer) => {
                self.timeline = tracer.stop()?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Print the verdict (or the JSON report), then hold the process if asked. Call it while
    /// the lesson's sockets are still alive, so `--hold` keeps them.
    pub fn finish(&mut self, verdict: Verdict, observed: Sides, why: &str) -> Result<()> {
        self.stop_tracer()?;
        self.write_wire()?;
        let mut reasons = self.failed.clone();
        let verdict = if self.failed.is_empty() {
            reasons.push(why.to_string());
            verdict
        } else {
            if verdict == Verdict::Clean {
                reasons.push(format!("the socket table alone looked clean ({why})"));
            } else {
                reasons.push(why.to_string());
            }
            Verdict::Leak
        };
        let why = reasons.join("; ");
        let report = Report {
            lesson: self.lesson.id.clone(),
            binary: self.binary.name.clone(),
            backend: self.backend.clone(),
            server_port: self.server_port,
            verdict,
            expected: self.binary.expect,
            observed,
            reasons,
            facts: self.facts.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            segments: self.timeline.segments.clone(),
            timeline: std::mem::take(&mut self.timeline),
        };
        self.draw_ladder(&report.timeline)?;
        if self.args.json {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer(&mut out, &report)?;
            writeln!(out)?;
            out.flush()?;
        } else {
            print_line("");
            let mark = if verdict == self.binary.expect {
                "as expected"
            } else {
                "NOT what this binary is expected to show"
            };
            print_line(&format!("verdict: {verdict} ({mark}) - {why}"));
        }
        if let Some(secs) = self.args.hold {
            if self.narrating() {
                let port = self.server_port.unwrap_or(0);
                let look = match &self.netns {
                    Some(enter) => format!(
                        "the lesson runs in a private network namespace, so look from inside it: \
                         `{enter} {} snapshot --port {port}`",
                        runner_path()
                    ),
                    None => format!(
                        "look with `{} snapshot --port {port}`",
                        crate::cli::runner::command_name()
                    ),
                };
                print_line(&format!(
                    "holding the sockets for {secs} s (port {port}): {look}"
                ));
            }
            std::thread::sleep(Duration::from_secs_f64(secs));
        }
        Ok(())
    }
}

/// What a lesson asks the kernel: its server port, IPv4 only (every lesson serves on
/// 127.0.0.1; a stranger on `[::1]` with the same port number is not ours).
fn lesson_query(port: u16) -> Query {
    Query {
        family: observe::Family::V4,
        ..Query::ports(&[port])
    }
}

/// The runner's path, for commands the narration suggests: beside this binary when it is
/// there (so it works from any folder, and inside a namespace), else the runner's name.
fn runner_path() -> String {
    std::env::current_exe()
        .ok()
        .map(|me| me.with_file_name("tcplab"))
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| crate::cli::runner::command_name().to_string())
}

/// Print a line of narration. A closed stdout (`| head`) must not stop the lesson, which
/// still has sockets and a tracer to clean up.
pub fn print_line(text: &str) {
    let _ = writeln!(std::io::stdout(), "{text}");
}

/// The lesson binary's flags; the churn flags are listed in `--help` only for the lessons
/// that have a churn phase (the others still parse them, to refuse them in words).
fn parse_args(name: &str) -> LessonArgs {
    use clap::{CommandFactory, FromArgMatches};
    let churn = Catalog::builtin()
        .program(name)
        .is_some_and(|(lesson, _)| lesson.churn);
    let mut cmd = LessonArgs::command();
    if !churn {
        for id in ChurnArgs::IDS {
            cmd = cmd.mut_arg(id, |a| a.hide(true));
        }
    }
    let matches = cmd.get_matches();
    LessonArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// The `main` of every lesson binary: parse flags, run the lesson, report errors plainly.
pub fn main(name: &str, body: fn(&mut Lab) -> Result<()>) -> ExitCode {
    let args = parse_args(name);
    raise_open_file_limit();
    let result = Lab::new(name, args).and_then(|mut lab| {
        if lab.narrating() {
            print_line(&format!(
                "Lesson {}: {}\n({name})",
                lab.lesson.id, lab.lesson.title
            ));
        }
        lab.enter_namespace_for_capture();
        body(&mut lab)
    });
    // A lesson that failed before finish() still removes its tracer's tracefs instance.
    drop(take_tracer());
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {}", crate::cli::describe_error(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod stale_tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    /// A client of an earlier server on the same port number, still in TIME_WAIT, is not the
    /// lesson's: a port number comes back from bind(port 0) while such sockets still point at it.
    #[test]
    fn time_wait_from_an_earlier_server_on_the_port_is_left_out() {
        let old = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = old.local_addr().unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let (mut served, _) = old.accept().unwrap();
        drop(client); // the client closes first: its TIME_WAIT points at `addr`
        served
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(served.read(&mut [0u8; 8]).unwrap(), 0);
        drop(served);
        drop(old);

        let new = TcpListener::bind(addr).unwrap();
        let args = LessonArgs::parse_from(["lesson", "--json"]);
        let mut lab = Lab::new("03-close-wait-fixed", args).unwrap();
        let before = Sides::from_rows(
            &observe::snapshot(&Query::ports(&[addr.port()]), Method::Auto)
                .unwrap()
                .rows,
            addr.port(),
        );
        assert_eq!(
            before.count(Side::Client, TcpState::TimeWait),
            1,
            "{before:?}"
        );
        lab.watch(addr.port()).unwrap();
        let sides = lab.sides().unwrap();
        assert_eq!(
            sides.count(Side::Client, TcpState::TimeWait),
            0,
            "{sides:?}"
        );
        assert_eq!(sides.count(Side::Server, TcpState::Listen), 1, "{sides:?}");

        // A new connection on the port counts as usual.
        let c = TcpStream::connect(addr).unwrap();
        let (_s, _) = new.accept().unwrap();
        let sides = lab.sides().unwrap();
        assert_eq!(
            sides.count(Side::Client, TcpState::Established),
            1,
            "{sides:?}"
        );
        drop(c);
    }
}
