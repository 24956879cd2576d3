//! `tcplab trace`: every TCP state change on some ports, printed live as it happens, from the
//! kernel's tracepoint (root) or sock_diag polling (anyone).
//!
//! Ends after `--duration`, or on Ctrl-C / SIGTERM: the signals only set a flag, the loop
//! sees it, stops the tracer (which removes its tracefs instance and any private mount) and
//! exits 0. With the poll backend, the end of the trace adds the loopback ends that were
//! never seen themselves (inferred from their peers), and says how many connections may be
//! missing altogether when the kernel counted more than it shows. Left out on purpose:
//! filters by state or address (pipe `--json` into jq).

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use tcplab_core::Event;
use tcplab_core::observe::trace::{Backend, Missed, TraceConfig, Tracer};

#[derive(Args, Debug, Clone)]
pub struct TraceArgs {
    /// Watch sockets whose local or remote port is P (repeatable; none watches every port).
    #[arg(long = "port", short = 'p', value_name = "P")]
    pub ports: Vec<u16>,
    /// tracepoint (root), poll (anyone), or auto: the tracepoint when permitted.
    #[arg(long, value_parser = super::one_of::<Backend>(), default_value_t = Backend::Auto)]
    pub backend: Backend,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// How often the poll backend asks sock_diag, in milliseconds.
    #[arg(long = "interval-ms", value_name = "N", default_value_t = 1.0)]
    pub interval_ms: f64,
    /// One JSON object per line: t_us, local, remote, from, to, source; with the poll
    /// backend, a last line {"missed": {...}} when connections may be missing from the trace.
    #[arg(long)]
    pub json: bool,
}

/// One line per event: time, endpoint, `FROM -> TO`, source.
pub fn format_event(e: &Event) -> String {
    format!(
        "{:>10.3} ms  {:<22} {:<22} {:>12} -> {:<12} {}",
        e.t_us as f64 / 1000.0,
        e.local.to_string(),
        e.remote.to_string(),
        e.from.netstat(),
        e.to.netstat(),
        e.source
    )
}

/// The `--json` form: exactly the keys the runner documents.
pub fn json_event(e: &Event) -> String {
    serde_json::json!({
        "t_us": e.t_us,
        "local": e.local.to_string(),
        "remote": e.remote.to_string(),
        "from": e.from.netstat(),
        "to": e.to.netstat(),
        "source": e.source.to_string(),
    })
    .to_string()
}

pub fn run(args: &TraceArgs) -> Result<ExitCode> {
    if !(args.interval_ms > 0.0 && args.interval_ms.is_finite()) {
        anyhow::bail!("--interval-ms must be a number above 0");
    }
    // Register the handlers before anything is created, so a signal can never find a
    // tracefs instance with nobody to remove it.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("install signal handler")?;
    }
    let cfg = TraceConfig::ports(&args.ports)
        .with_backend(args.backend)
        .with_interval(Duration::from_secs_f64(args.interval_ms / 1000.0));
    let tracer = Tracer::start(cfg)?;
    eprintln!("tcplab: {} backend: {}", tracer.backend(), tracer.note());
    if !args.json {
        eprintln!(
            "{:>13}  {:<22} {:<22} {:>12}    {:<12} source",
            "time", "local", "remote", "from", "to"
        );
    }
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let stdout = io::stdout();
    let mut shown = 0;
    let mut pipe_closed = false;
    let print = |events: &[Event]| -> io::Result<()> {
        let mut out = stdout.lock();
        for e in events {
            let line = if args.json {
                json_event(e)
            } else {
                format_event(e)
            };
            writeln!(out, "{line}")?;
        }
        out.flush()
    };
    loop {
        let ended = stop.load(Ordering::SeqCst)
            || deadline.is_some_and(|d| Instant::now() >= d)
            || tracer.is_finished();
        if ended {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
        let new = tracer.events_since(shown);
        shown += new.len();
        if !pipe_closed && let Err(e) = print(&new) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                // `tcplab trace | head`: keep going quietly until told to stop.
                pipe_closed = true;
            } else {
                return Err(e.into());
            }
        }
    }
    let mut tracer = tracer;
    tracer.halt()?;
    // Events learned during the final drain.
    let rest = tracer.events_since(shown);
    let report = tracer.finish()?;
    if !pipe_closed {
        match print(&rest) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            other => other?,
        }
    }
    if args.json
        && !pipe_closed
        && let Some(m) = report.missed.as_ref().filter(|m| m.count() > 0)
    {
        let line = serde_json::json!({ "missed": missed_json(m) }).to_string();
        match writeln!(io::stdout(), "{line}") {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            other => other?,
        }
    }
    for w in &report.warnings {
        eprintln!("tcplab: {w}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The `{"missed": ...}` line's object: the count, what the kernel counted and what the
/// trace shows, the watched ports, and the sentence the text output prints.
pub fn missed_json(m: &Missed) -> serde_json::Value {
    let mut v = serde_json::to_value(m).unwrap_or_default();
    v["count"] = m.count().into();
    v["why"] = m.describe().unwrap_or_default().into();
    v
}
