//! Benchmark: can the tracepoint backend keep up with loopback churn? Clients connect at
//! full speed to a few listener ports whose servers accept and close at once (the server
//! closes first, so every connection writes exactly 10 tracepoint events: 5 per side), while
//! the tracer watches those ports. At the end we compare the events the tracer parsed with
//! the events the kernel wrote (connections x 10), and read the instance's ring buffer
//! counters (`overrun`, `dropped events`), which count what the kernel had to throw away.
//!
//! Run: `cargo bench -p tcplab-exercises --bench trace` (as root). Bounded by
//! TCPLAB_BENCH_SECS (default 10) and TCPLAB_BENCH_CONNS (default 150000), whichever comes
//! first. Left out on purpose: statistics over many runs (this is a capacity check, not a
//! micro-benchmark), and the poll backend, which by design samples rather than records.

mod common;

use common::env_or;

use std::io::Read;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tcplab_core::observe::trace::{Backend, TraceConfig, Tracer, is_root};
use tcplab_core::sockets;
use tcplab_core::{Source, TcpState};

const PORTS: usize = 4;
const CLIENTS: usize = 4;
const EVENTS_PER_CONNECTION: u64 = 10;

fn main() {
    if !is_root() {
        println!("skipped: the tracepoint benchmark needs root");
        return;
    }
    let secs: f64 = env_or("TCPLAB_BENCH_SECS", 10.0);
    let max_conns: u64 = env_or("TCPLAB_BENCH_CONNS", 150_000);

    let listeners: Vec<TcpListener> = (0..PORTS)
        .map(|_| {
            sockets::listen_on(
                sockets::loopback(false),
                sockets::ListenOptions {
                    reuseaddr: false,
                    backlog: 4096,
                },
            )
            .unwrap()
        })
        .collect();
    let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let ports: Vec<u16> = addrs.iter().map(|a| a.port()).collect();

    let mut cfg = TraceConfig::ports(&ports)
        .with_backend(Backend::Tracepoint)
        .with_interval(Duration::from_millis(1));
    cfg.buffer_kb = 32 * 1024;
    let tracer = Tracer::start(cfg).expect("start the tracer");
    eprintln!("tracer: {}", tracer.note());

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    // Servers: accept and close at once (the server closes first).
    let servers: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                // Blocking accept, woken every 50 ms to look at the stop flag (SO_RCVTIMEO
                // bounds accept() on Linux): no CPU spent spinning while clients churn.
                socket2::SockRef::from(&l)
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((s, _)) = l.accept() {
                        drop(s);
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(secs);
    let clients: Vec<_> = (0..env_or("TCPLAB_BENCH_CLIENTS", CLIENTS))
        .map(|i| {
            let (stop, done, failed) = (Arc::clone(&stop), Arc::clone(&done), Arc::clone(&failed));
            let addrs = addrs.clone();
            std::thread::spawn(move || {
                let mut n = i;
                let mut buf = [0u8; 16];
                while !stop.load(Ordering::Relaxed) {
                    if Instant::now() >= deadline || done.load(Ordering::Relaxed) >= max_conns {
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    n += 1;
                    match sockets::connect(addrs[n % addrs.len()], Duration::from_secs(2)) {
                        Ok(mut c) => {
                            // Wait for the server's FIN, then close: the client is the
                            // passive closer (CLOSE_WAIT -> LAST_ACK -> CLOSE).
                            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                            match c.read(&mut buf) {
                                Ok(0) => {
                                    done.fetch_add(1, Ordering::Relaxed);
                                }
                                _ => {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let churn = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for s in servers {
        s.join().unwrap();
    }
    // Let the last closes land before stopping.
    std::thread::sleep(Duration::from_millis(200));
    let t_stop = Instant::now();
    let report = tracer.finish().expect("stop the tracer");
    let stop_took = t_stop.elapsed();

    let conns = done.load(Ordering::Relaxed);
    let expected = conns * EVENTS_PER_CONNECTION;
    let got = report.stats.tracepoint_events;
    let tl = &report.timeline;
    let time_wait = tl
        .events
        .iter()
        .filter(|e| e.to == TcpState::TimeWait && e.source == Source::Diag)
        .count();
    let rate = conns as f64 / churn.as_secs_f64();
    println!(
        "trace benchmark: {PORTS} listener ports, {CLIENTS} client threads, server closes first"
    );
    println!(
        "  churn: {conns} connections in {:.2} s = {rate:.0} conn/s ({failed} failed)",
        churn.as_secs_f64(),
        failed = failed.load(Ordering::Relaxed)
    );
    println!(
        "  kernel wrote (expected): {expected} events = {:.0} events/s",
        expected as f64 / churn.as_secs_f64()
    );
    println!("  tracer parsed:           {got} events");
    println!(
        "  ring buffer: overrun {} dropped {}",
        report.stats.overrun, report.stats.dropped
    );
    println!(
        "  lost: {} ({:.4} %)",
        expected.saturating_sub(got),
        100.0 * expected.saturating_sub(got) as f64 / expected.max(1) as f64
    );
    println!(
        "  timeline: {} events, {time_wait} TIME_WAIT from sock_diag, {} sock_diag dumps; stop() took {:.0} ms",
        tl.len(),
        report.stats.dumps,
        stop_took.as_secs_f64() * 1000.0
    );
    for w in &report.warnings {
        println!("  warning: {w}");
    }
}
