//! `tcplab capture`: every TCP segment on some ports of `lo`, printed live, with the socket
//! state changes of the same connections beside them, and optionally saved as pcapng (the
//! state changes become packet comments that Wireshark shows).
//!
//! Capture needs CAP_NET_RAW on the host's loopback (root). An ordinary user is told so in
//! one line and the command exits 1; lessons capture without root inside a namespace of
//! their own. Ends after `--duration`, or on Ctrl-C / SIGTERM: the signals only set a flag,
//! the loop sees it, stops the capture and the tracer (which removes its tracefs instance)
//! and writes the file. Left out on purpose: a filter language (`--port` is the filter),
//! interfaces other than loopback, and reading a pcapng back. At the end it prints the
//! ladder of what it saw ([`tcplab_core::ladder::wire`]), unless `--json` or `--no-ladder`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use tcplab_core::ladder::wire as ladder;
use tcplab_core::observe::capture::{self, CaptureConfig, pcapng};
use tcplab_core::observe::trace::{TraceConfig, Tracer};
use tcplab_core::{Event, Segment, Timeline};

use super::trace::format_event;

#[derive(Args, Debug, Clone)]
pub struct CaptureArgs {
    /// Capture TCP to or from port P (repeatable; none captures every TCP segment on lo).
    #[arg(long = "port", short = 'p', value_name = "P")]
    pub ports: Vec<u16>,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Also write the segments to FILE as pcapng, state changes as packet comments.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// One JSON object per segment per line: t_us, src, dst, flags, seq, ack (relative),
    /// len, win.
    #[arg(long)]
    pub json: bool,
    /// At the end, do not print the ladder (the segments as arrows, states beside them).
    #[arg(long)]
    pub no_ladder: bool,
    /// At the end, write the ladder as an SVG picture to FILE.
    #[arg(long, value_name = "FILE")]
    pub ladder_svg: Option<PathBuf>,
    /// The interface to capture on.
    #[arg(long, default_value = "lo", hide = true)]
    pub interface: String,
}

/// The `--json` form of a segment: exactly the keys the runner documents.
pub fn json_segment(s: &Segment) -> String {
    serde_json::json!({
        "t_us": s.t_us,
        "src": s.src.to_string(),
        "dst": s.dst.to_string(),
        "flags": s.flags.names(),
        "seq": s.seq,
        "ack": s.ack,
        "len": s.len,
        "win": s.win,
    })
    .to_string()
}

/// Shift events from the tracer's origin to the capture's (`later` microseconds on).
fn shifted(events: Vec<Event>, later: u64) -> Vec<Event> {
    events
        .into_iter()
        .map(|mut e| {
            e.t_us += later;
            e
        })
        .collect()
}

pub fn run(args: &CaptureArgs) -> Result<ExitCode> {
    // Handlers first, so a signal never finds a tracefs instance with nobody to remove it.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("install signal handler")?;
    }
    if let Some(path) = &args.pcap {
        // Fail before capturing, not after, when the file cannot be written.
        File::create(path).with_context(|| format!("create {}", path.display()))?;
    }
    let origin = Instant::now();
    let cfg = CaptureConfig {
        interface: args.interface.clone(),
        ports: args.ports.clone(),
        origin: Some(origin),
        // The frames are only needed for the file.
        keep_frames: args.pcap.is_some(),
        ..CaptureConfig::default()
    };
    let cap = match capture::Capture::start(cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tcplab: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    eprintln!("tcplab: {}", cap.note());
    // The state changes of the same ports, for the text view and the pcapng comments.
    let tracer = match Tracer::start(TraceConfig::ports(&args.ports)) {
        Ok(t) => {
            eprintln!(
                "tcplab: states from the {} backend: {}",
                t.backend(),
                t.note()
            );
            Some(t)
        }
        Err(e) => {
            eprintln!("tcplab: no state changes ({e}); segments only");
            None
        }
    };
    let later = tracer.as_ref().map_or(0, |t| {
        t.started().saturating_duration_since(origin).as_micros() as u64
    });
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    // Segments reach us a block timeout late and some state changes a sock_diag round late:
    // hold each line back this long, then print in time order, so the ladder reads down.
    let hold_us = 100_000u64;
    let stdout = io::stdout();
    let mut pipe_closed = false;
    let mut pending: Vec<(u64, String)> = Vec::new();
    let (mut shown_segs, mut shown_events) = (0, 0);
    let mut collect =
        |pending: &mut Vec<(u64, String)>, cap: &capture::Capture, tracer: Option<&Tracer>| {
            let segs = cap.segments_since(shown_segs);
            shown_segs += segs.len();
            for s in &segs {
                let line = if args.json {
                    json_segment(s)
                } else {
                    s.to_string()
                };
                pending.push((s.t_us, line));
            }
            let events = tracer.map_or_else(Vec::new, |t| t.events_since(shown_events));
            shown_events += events.len();
            if !args.json {
                for e in shifted(events, later) {
                    pending.push((e.t_us, format_event(&e)));
                }
            }
            // Stable: a segment and the change it caused keep their order on equal times.
            pending.sort_by_key(|(t, _)| *t);
        };
    let mut print = |pending: &mut Vec<(u64, String)>, upto: u64| -> io::Result<()> {
        let n = pending.partition_point(|(t, _)| *t <= upto);
        let lines: Vec<(u64, String)> = pending.drain(..n).collect();
        if pipe_closed {
            return Ok(());
        }
        let mut out = stdout.lock();
        let res = lines
            .iter()
            .try_for_each(|(_, l)| writeln!(out, "{l}"))
            .and_then(|()| out.flush());
        match res {
            // `tcplab capture | head`: keep going quietly until told to stop.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                pipe_closed = true;
                Ok(())
            }
            other => other,
        }
    };
    loop {
        let ended = stop.load(Ordering::SeqCst)
            || deadline.is_some_and(|d| Instant::now() >= d)
            || cap.is_finished();
        if ended {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        collect(&mut pending, &cap, tracer.as_ref());
        let now = origin.elapsed().as_micros() as u64;
        print(&mut pending, now.saturating_sub(hold_us))?;
    }
    let mut cap = cap;
    cap.halt()?;
    let mut tracer = tracer;
    if let Some(t) = tracer.as_mut() {
        t.halt()?;
    }
    // What the final drains brought, then everything still held.
    collect(&mut pending, &cap, tracer.as_ref());
    print(&mut pending, u64::MAX)?;
    let report = cap.finish()?;
    let events = match tracer {
        Some(t) => {
            let r = t.finish()?;
            for w in &r.warnings {
                eprintln!("tcplab: {w}");
            }
            shifted(r.timeline.events, later)
        }
        None => Vec::new(),
    };
    for w in &report.warnings {
        eprintln!("tcplab: {w}");
    }
    eprintln!(
        "tcplab: {} segments; the kernel passed {} frames and dropped {} (PACKET_STATISTICS)",
        report.segments.len(),
        report.stats.kernel_packets,
        report.stats.kernel_drops
    );
    let timeline = (!args.no_ladder && !args.json) || args.ladder_svg.is_some();
    let timeline = timeline
        .then(|| Timeline::from_events(events.clone()).with_segments(report.segments.clone()));
    if let Some(t) = timeline.as_ref().filter(|_| !args.no_ladder && !args.json) {
        if !pipe_closed {
            // A closed pipe here is the reader's choice: nothing left to clean up.
            let mut out = stdout.lock();
            let _ = writeln!(out, "\nthe ladder (alike connections folded):")
                .and_then(|()| write!(out, "{}", ladder::text(t)))
                .and_then(|()| out.flush());
        }
    }
    if let (Some(t), Some(path)) = (&timeline, &args.ladder_svg) {
        std::fs::write(path, ladder::svg(t))
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("tcplab: wrote the ladder to {}", path.display());
    }
    if let Some(path) = &args.pcap {
        let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
        let info = pcapng::PcapInfo {
            interface: args.interface.clone(),
            ports: args.ports.clone(),
            stats: Some(report.stats),
            snaplen: CaptureConfig::default().snaplen,
        };
        let comments = pcapng::write(
            BufWriter::new(file),
            &report.frames,
            &report.segments,
            &events,
            &info,
        )?;
        eprintln!(
            "tcplab: wrote {} ({} packets, {comments} state changes as packet comments)",
            path.display(),
            report.frames.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}
