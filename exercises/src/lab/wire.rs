//! `--pcap FILE` for every lesson binary: capture the segments on the lesson's server port
//! while the lesson is watched, add them to the report (`segments`, and the timeline's
//! `segments`) and write them as pcapng with the state changes as packet comments.
//! `--ladder` and `--ladder-svg FILE` capture the same way and draw the run
//! ([`tcplab_core::ladder::wire`]).
//!
//! Lessons about the wire (`wire = true` in the catalog: 07, 08, 10, 11) capture on every
//! run and read the segments for their verdicts through [`Lab::wire`]; where capture is
//! refused they say so in one line and grade on the socket states and errors alone.
//!
//! Capture needs CAP_NET_RAW. As root the lesson captures on the host's `lo`, filtered in the
//! kernel to its port. An ordinary user's lesson first moves into a user + network namespace
//! of its own (where it has the capability, and `lo` carries only its traffic); where even
//! that is refused, the lesson says so in one line on stderr and goes on without segments.
//! Kept apart from the lesson frame so the frame's own logic stays in view; left out on
//! purpose: capturing the churn phase of lessons 05 and 09 (the capture ends with the tracer,
//! before the churn).

use std::fs::File;
use std::io::BufWriter;
use std::time::Instant;

use tcplab_core::Timeline;
use tcplab_core::ladder::wire as ladder;
use tcplab_core::observe::capture::{self, CaptureReport, pcapng};
use tcplab_core::observe::trace::is_root;

use super::{Lab, print_line};

/// A capture being opened on its own thread ([`Lab::open_wire`]).
pub(super) struct PendingWire(std::thread::JoinHandle<tcplab_core::error::Result<capture::Opened>>);
use tcplab_core::netns;

impl Lab {
    /// Before the lesson starts any thread: an ordinary user who asked for `--pcap` gets a
    /// user + network namespace, so the capture is allowed there.
    pub(super) fn enter_namespace_for_capture(&mut self) {
        if !self.capture_wanted() || is_root() {
            return;
        }
        // `--hold` is there to look at the sockets from outside (`ss`, `lsof`, a notebook's
        // snapshot), which a private namespace would hide. Unless a pcapng file or a ladder
        // was asked for, the lesson stays on the host and is graded without the wire.
        if self.args.hold.is_some() && !self.args.wants_wire() {
            self.wire_missing = Some(
                "--hold keeps the lesson on the host's loopback, where other tools can see its \
                 sockets, and capturing there needs root"
                    .to_string(),
            );
            return;
        }
        match netns::enter(netns::Prefer::UserNamespace) {
            Ok(how) => {
                self.in_private_namespace(true);
                self.say(format!(
                    "capturing needs CAP_NET_RAW: running in a {how} of its own, where this \
                     user has it"
                ));
            }
            Err(e) => {
                let why = format!("{e:#}")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                eprintln!(
                    "{}: no capture, going on without segments: {why}",
                    self.binary.name
                );
                self.wire_missing = Some(why);
            }
        }
    }

    /// Capture on `interface` instead of `lo` (a lesson whose peer is the scripted one, on
    /// `tun0`). Call before [`Lab::watch`].
    pub fn capture_on(&mut self, interface: &str) {
        self.wire_interface = interface.to_string();
    }

    /// Whether this run captures: for a pcapng file or a ladder, or always for a lesson
    /// about the wire.
    fn capture_wanted(&self) -> bool {
        self.args.wants_wire() || self.lesson.wire
    }

    /// Stop the capture now and return every segment it saw on the server port, for a
    /// verdict read from the wire; call it once the traffic to grade is over. `None` when
    /// there is no capture: the lesson then says so in one line (once) and falls back to
    /// other evidence. The segments still go to the report and the pcapng file.
    pub fn wire(&mut self) -> anyhow::Result<Option<Vec<tcplab_core::Segment>>> {
        self.stop_wire()?;
        if let Some(segments) = self.wire_report.as_ref().map(|r| r.segments.clone()) {
            self.fact(crate::facts::WIRE, true);
            return Ok(Some(segments));
        }
        let said = self
            .facts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(crate::facts::WIRE);
        if !said {
            let why = self
                .wire_missing
                .clone()
                .unwrap_or_else(|| "capture was not started".to_string());
            self.say(format!(
                "no capture of the wire ({why}): graded on the socket states and errors alone"
            ));
            self.fact(crate::facts::WIRE, false);
        }
        Ok(None)
    }

    /// Start opening the capture of the server port on a thread of its own, so that the
    /// kernel's wait in setting up the ring (an RCU grace period) overlaps the tracer's
    /// start; [`Lab::run_wire`] then starts it on the tracer's clock. `None` when this run
    /// does not capture.
    pub(super) fn open_wire(&mut self, server_port: u16) -> Option<PendingWire> {
        if !self.capture_wanted() || self.wire_missing.is_some() {
            return None;
        }
        let cfg = capture::CaptureConfig {
            keep_frames: self.args.pcap.is_some(),
            interface: self.wire_interface.clone(),
            ..capture::CaptureConfig::lesson(&[server_port], None)
        };
        let opening = std::thread::Builder::new()
            .name("tcplab-capture-open".into())
            .spawn(move || capture::Capture::open(cfg));
        match opening {
            Ok(handle) => Some(PendingWire(handle)),
            Err(e) => {
                eprintln!(
                    "{}: going on without segments: start a thread: {e}",
                    self.binary.name
                );
                self.wire_missing = Some(e.to_string());
                None
            }
        }
    }

    /// Start the capture [`Lab::open_wire`] opened, counting from `origin` (the tracer's
    /// start).
    pub(super) fn run_wire(&mut self, pending: Option<PendingWire>, origin: Instant) {
        let Some(PendingWire(handle)) = pending else {
            return;
        };
        let started = match handle.join() {
            Ok(opened) => opened.and_then(|o| o.run(Some(origin))),
            Err(_) => Err(tcplab_core::Error::InvalidInput(
                "the thread opening the capture panicked".into(),
            )),
        };
        match started {
            Ok(c) => {
                self.say(format!("capturing segments: {}", c.note()));
                self.wire = Some(c);
            }
            Err(e) => {
                eprintln!("{}: going on without segments: {e}", self.binary.name);
                self.wire_missing = Some(e.to_string());
            }
        }
    }

    /// Stop the capture, if one runs, and keep what it saw.
    pub(super) fn stop_wire(&mut self) -> anyhow::Result<()> {
        if let Some(c) = self.wire.take() {
            let report = c.finish()?;
            for w in &report.warnings {
                eprintln!("{}: {w}", self.binary.name);
            }
            self.wire_report = Some(report);
        }
        Ok(())
    }

    /// Put the segments beside the state changes and write the pcapng file.
    pub(super) fn write_wire(&mut self) -> anyhow::Result<()> {
        let Some(report) = self.wire_report.take() else {
            return Ok(());
        };
        let CaptureReport {
            segments,
            frames,
            stats,
            ..
        } = report;
        if let Some(path) = &self.args.pcap {
            let file = File::create(path)
                .map_err(|e| anyhow::anyhow!("create {}: {e}", path.display()))?;
            let info = pcapng::PcapInfo {
                interface: "lo".into(),
                ports: self.server_port.into_iter().collect(),
                stats: Some(stats),
                snaplen: capture::CaptureConfig::default().snaplen,
            };
            let comments = pcapng::write(
                BufWriter::new(file),
                &frames,
                &segments,
                &self.timeline.events,
                &info,
            )?;
            if self.narrating() {
                print_line(&format!(
                    "    wrote {} ({} segments, {comments} state changes as packet comments)",
                    path.display(),
                    segments.len()
                ));
            }
        }
        let timeline = std::mem::take(&mut self.timeline);
        self.timeline = timeline.with_segments(segments);
        // Steps a poll filled in are dated by the segments behind them.
        self.timeline.date_inferred_by_segments();
        Ok(())
    }

    /// `--ladder` and `--ladder-svg FILE`: draw the run. The text goes to stdout with the
    /// narration, or to stderr beside a `--json` report (stdout stays one JSON object).
    pub(super) fn draw_ladder(&self, timeline: &Timeline) -> anyhow::Result<()> {
        if self.args.ladder {
            let text = ladder::text(timeline);
            if self.narrating() {
                print_line("");
                print_line("the ladder of this run (segments on the wire, states beside them):");
                for line in text.lines() {
                    print_line(line);
                }
            } else {
                eprint!("{text}");
            }
        }
        if let Some(path) = &self.args.ladder_svg {
            std::fs::write(path, ladder::svg(timeline))
                .map_err(|e| anyhow::anyhow!("write {}: {e}", path.display()))?;
            if self.narrating() {
                print_line(&format!("    wrote the ladder to {}", path.display()));
            }
        }
        Ok(())
    }
}
