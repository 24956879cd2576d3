//! How fast is a snapshot at scale? This bench fills the machine with TIME_WAIT sockets on
//! loopback (the server closes first, over ~20 ephemeral listener ports) and times whole
//! processes: `tcplab snapshot` against `ss -tan`, unfiltered and filtered, as JSON and through
//! /proc/net/tcp. Run it with `cargo bench -p tcplab-exercises --bench snapshot`.
//!
//! It prints a markdown table (min and median over several runs, and the median's ratio to
//! the matching `ss` command). It is a measurement, not a test: nothing fails on a slow run.
//! Left out on purpose: statistics beyond min/median, and CPU pinning (the machine is shared).
//! TIME_WAIT lasts 60 s, so the timings run right after the sockets are made.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tcplab_core::TcpState;
use tcplab_core::observe::{self, Method, Query};
use tcplab_core::sockets::{self, ListenOptions};

const LISTENERS: usize = 20;
const THREADS: usize = 2;
/// Stop after this many connections in all...
const TARGET: usize = 60_000;
/// ...or after this long, whichever comes first.
const MAX_FILL: Duration = Duration::from_secs(60);
const REPS: usize = 9;

fn main() {
    // `cargo bench` passes `--bench`; ignore any arguments.
    let listeners: Vec<TcpListener> = (0..LISTENERS)
        .map(|_| {
            sockets::listen_on(
                sockets::loopback(false),
                ListenOptions {
                    reuseaddr: false,
                    backlog: 1024,
                },
            )
            .expect("listen on loopback")
        })
        .collect();
    let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let ports: Vec<u16> = addrs.iter().map(SocketAddr::port).collect();

    println!(
        "tcp_max_tw_buckets = {}",
        sysctl("net/ipv4/tcp_max_tw_buckets")
    );
    println!(
        "ip_local_port_range = {}",
        sysctl("net/ipv4/ip_local_port_range")
    );
    let made = fill(&listeners, &addrs);
    drop(listeners);

    let tw = observe::snapshot(
        &Query::ports(&ports).with_states(&[TcpState::TimeWait]),
        Method::Netlink,
    )
    .expect("count TIME_WAIT")
    .rows
    .len();
    let all = observe::snapshot(&Query::default(), Method::Netlink)
        .expect("count sockets")
        .rows
        .len();
    println!(
        "made {made} connections; {tw} TIME_WAIT on the bench's ports; {all} TCP sockets in all"
    );
    if tw < 50_000 {
        println!("WARNING: fewer than 50,000 TIME_WAIT sockets; the numbers below are for {tw}");
    }

    let bin = env!("CARGO_BIN_EXE_tcplab");
    let p = ports[0].to_string();
    let filter = format!("( sport = :{p} )");
    // (label, program, args, index of the ss line to compare with)
    let cmds: Vec<(String, &str, Vec<&str>, usize)> = vec![
        ("`ss -tan`".into(), "ss", vec!["-tan"], 0),
        ("`tcplab snapshot`".into(), bin, vec!["snapshot"], 0),
        (
            "`tcplab snapshot --json`".into(),
            bin,
            vec!["snapshot", "--json"],
            0,
        ),
        (
            "`tcplab snapshot --method proc`".into(),
            bin,
            vec!["snapshot", "--method", "proc"],
            0,
        ),
        (
            format!("`ss -tan state time-wait '{filter}'`"),
            "ss",
            vec!["-tan", "state", "time-wait", &filter],
            4,
        ),
        (
            format!("`tcplab snapshot --state time-wait --port {p}`"),
            bin,
            vec!["snapshot", "--state", "time-wait", "--port", &p],
            4,
        ),
    ];
    // Warm up (page cache, binary), then interleave repetitions so drift hits all alike.
    for (_, prog, args, _) in &cmds {
        run(prog, args);
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); cmds.len()];
    for _ in 0..REPS {
        for (i, (_, prog, args, _)) in cmds.iter().enumerate() {
            times[i].push(run(prog, args));
        }
    }
    // The same work in-process, without starting a program or printing: what the kernel
    // exchange and the parsing cost by themselves.
    let mut bare: Vec<Duration> = (0..REPS)
        .map(|_| {
            let t = Instant::now();
            let rows = observe::diag::dump(&Query::default()).expect("dump");
            std::hint::black_box(rows);
            t.elapsed()
        })
        .collect();
    bare.sort();
    let still = observe::snapshot(
        &Query::ports(&ports).with_states(&[TcpState::TimeWait]),
        Method::Netlink,
    )
    .map(|s| s.rows.len())
    .unwrap_or(0);
    println!("{still} TIME_WAIT left after timing\n");

    let stats: Vec<(f64, f64)> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            (ms(t[0]), ms(t[t.len() / 2]))
        })
        .collect();
    println!("| command | min ms | median ms | ratio to ss (median) |");
    println!("|---|---:|---:|---:|");
    for (i, (label, _, _, base)) in cmds.iter().enumerate() {
        let (min, med) = stats[i];
        println!(
            "| {label} | {min:.1} | {med:.1} | {:.2} |",
            med / stats[*base].1
        );
    }
    println!(
        "| in-process `observe::diag::dump` (no process, no output) | {:.1} | {:.1} | {:.2} |",
        ms(bare[0]),
        ms(bare[bare.len() / 2]),
        ms(bare[bare.len() / 2]) / stats[0].1
    );
}

/// Connect, accept, close the server side first, let the client see EOF and close: the
/// server's end of each connection sits in TIME_WAIT for 60 s.
fn fill(listeners: &[TcpListener], addrs: &[SocketAddr]) -> usize {
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (done, stop) = (&done, &stop);
            s.spawn(move || {
                let mut buf = [0u8; 1];
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    if done.fetch_add(1, Ordering::Relaxed) >= TARGET || start.elapsed() > MAX_FILL
                    {
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    // Each thread uses its own listeners so accept() gets its own client.
                    let k = (i % (LISTENERS / THREADS)) * THREADS + t;
                    i += 1;
                    let Ok(mut c) = sockets::connect(addrs[k], Duration::from_secs(2)) else {
                        continue;
                    };
                    let Ok((server, _)) = listeners[k].accept() else {
                        continue;
                    };
                    drop(server);
                    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                    let _ = c.read(&mut buf);
                    drop(c);
                }
            });
        }
    });
    let made = done.load(Ordering::Relaxed).min(TARGET);
    println!(
        "filled in {:.1} s ({:.0} connections/s)",
        start.elapsed().as_secs_f64(),
        made as f64 / start.elapsed().as_secs_f64()
    );
    made
}

fn run(prog: &str, args: &[&str]) -> Duration {
    let null = File::create("/dev/null").unwrap();
    let t = Instant::now();
    let status = Command::new(prog)
        .args(args)
        .stdout(Stdio::from(null))
        .status()
        .unwrap_or_else(|e| panic!("cannot run {prog}: {e}"));
    let d = t.elapsed();
    assert!(status.success(), "{prog} {args:?} failed: {status}");
    d
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn sysctl(name: &str) -> String {
    std::fs::read_to_string(format!("/proc/sys/{name}"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".into())
}
