//! Benchmark: does the capture keep up with the lessons' churn generator? Each measurement
//! runs in a child process of its own (this binary, re-run with `--one MODE CLOSER SECS`) in a
//! fresh private network namespace, where the churn is the only TCP traffic on `lo`; the
//! capture takes every TCP segment there (no port filter: the churn picks its own listener
//! ports). Runs alternate between churn alone and churn under capture, so both see the
//! machine in the same mood; the parent prints every run and the medians.
//!
//! Reported per run: connections/s; under capture also segments kept and segments/s, the
//! kernel's PACKET_STATISTICS (frames passed by the filter, frames dropped for want of ring
//! space, times the ring filled up), segments per connection, and how long stopping took.
//!
//! Run: `cargo bench -p tcplab-exercises --bench capture`. TCPLAB_BENCH_RUNS (default 3) pairs
//! of runs of TCPLAB_BENCH_SECS (default 3, at most 10) seconds per closer;
//! TCPLAB_BENCH_BLOCKS (default 128, the capture's default) ring blocks of 256 KiB. Needs root or unprivileged user
//! namespaces; says so and stops otherwise. Left out on purpose: the tracer (its own bench
//! is `--bench trace`) and pcapng writing (it happens after the capture).

mod common;

use common::{env_or, median};

use std::process::Command;
use std::time::Instant;

use tcplab_core::netns;
use tcplab_core::observe::capture::{Capture, CaptureConfig};
use tcplab_exercises::lessons::churn::{self, Closer, Config};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--one") {
        one(&args[i + 1], &args[i + 2], &args[i + 3]);
        return;
    }
    let runs: usize = env_or("TCPLAB_BENCH_RUNS", 3).clamp(1, 20);
    let secs: f64 = env_or("TCPLAB_BENCH_SECS", 3.0_f64).clamp(0.5, churn::MAX_SECS);
    let blocks: u32 = env_or("TCPLAB_BENCH_BLOCKS", 128).clamp(1, 4096);
    println!(
        "capture under churn: {runs} pairs of runs x {secs} s per closer, each run in a fresh \
         network namespace; ring of {blocks} x 256 KiB blocks"
    );
    for closer in ["server", "client"] {
        let mut plain = Vec::new();
        let mut captured = Vec::new();
        let mut seg_rates = Vec::new();
        let mut drops = 0u64;
        for run in 1..=runs {
            for mode in ["plain", "capture"] {
                let out = Command::new(&args[0])
                    .args(["--one", mode, closer, &secs.to_string()])
                    .env("TCPLAB_BENCH_BLOCKS", blocks.to_string())
                    .output()
                    .expect("re-run this bench binary");
                let text = String::from_utf8_lossy(&out.stdout);
                if !out.status.success() {
                    println!(
                        "cannot measure here: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                    return;
                }
                println!(
                    "  {closer} closes first, run {run}, {mode}: {}",
                    text.trim()
                );
                let v: Vec<f64> = text
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect();
                if mode == "plain" {
                    plain.push(v[0]);
                } else {
                    captured.push(v[0]);
                    seg_rates.push(v[1]);
                    drops += v[3] as u64;
                }
            }
        }
        let (p, c) = (median(&mut plain), median(&mut captured));
        println!(
            "{closer} closes first: churn alone median {p:.0} connections/s; under capture \
             median {c:.0} connections/s ({:+.1} %), {:.0} segments/s captured; kernel drops \
             over all runs: {drops}",
            (c / p - 1.0) * 100.0,
            median(&mut seg_rates)
        );
    }
}

/// One measurement in this (child) process: a fresh namespace, one churn, one line of
/// numbers (the first is connections/s).
fn one(mode: &str, closer: &str, secs: &str) {
    let closer = if closer == "server" {
        Closer::Server
    } else {
        Closer::Client
    };
    let secs: f64 = secs.parse().expect("seconds");
    if let Err(e) = netns::enter(netns::Prefer::KeepRoot) {
        eprintln!("{e:#}");
        std::process::exit(1);
    }
    let cap = if mode == "capture" {
        let cfg = CaptureConfig {
            blocks: env_or("TCPLAB_BENCH_BLOCKS", 128),
            ..CaptureConfig::loopback(&[])
        };
        match Capture::start(cfg) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    let r = match churn::run(Config::new(secs, closer), |_| {}) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(1);
        }
    };
    let Some(cap) = cap else {
        println!(
            "{:.0} connections/s ({} connections in {:.2} s)",
            r.rate_per_sec, r.connections, r.secs
        );
        return;
    };
    let t = Instant::now();
    let report = cap.finish().expect("capture stops");
    let stop_ms = t.elapsed().as_secs_f64() * 1000.0;
    let st = report.stats;
    println!(
        "{:.0} connections/s {:.0} segments/s, {} segments, {} kernel drops, {} frames passed \
         the filter, ring full {} times, {:.2} segments per connection, stop {:.0} ms",
        r.rate_per_sec,
        st.segments as f64 / r.secs,
        st.segments,
        st.kernel_drops,
        st.kernel_packets,
        st.ring_full,
        st.segments as f64 / r.connections.max(1) as f64,
        stop_ms
    );
}
