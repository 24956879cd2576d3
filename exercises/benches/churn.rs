//! Benchmark: how many connections per second does the lessons' churn generator make on this
//! machine? Each measurement runs in a child process of its own (this binary, re-run with
//! `--one CLOSER SECS`) in a fresh private network namespace, so no run inherits the previous
//! run's TIME_WAIT sockets; the parent prints every run and the median per closer.
//!
//! Run: `cargo bench -p tcplab-exercises --bench churn`. TCPLAB_BENCH_RUNS (default 5) runs
//! of TCPLAB_BENCH_SECS (default 3, at most 10) seconds per closer. Needs root or
//! unprivileged user namespaces (the namespace); says so and stops otherwise. Left out on
//! purpose: --churn-rate (a paced churn measures the pacing, not the machine).

mod common;

use common::{env_or, median};

use std::process::Command;

use tcplab_core::netns;
use tcplab_exercises::lessons::churn::{self, Closer, Config};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--one") {
        one(&args[i + 1], &args[i + 2]);
        return;
    }
    let runs: usize = env_or("TCPLAB_BENCH_RUNS", 5).clamp(1, 50);
    let secs: f64 = env_or("TCPLAB_BENCH_SECS", 3.0_f64).clamp(0.5, churn::MAX_SECS);
    println!(
        "churn generator: {runs} runs x {secs} s per closer, {} tasks on {} single-threaded \
         runtimes, {} listener ports, each run in a fresh network namespace",
        churn::TASKS,
        churn::WORKERS,
        churn::TASKS
    );
    for closer in ["server", "client"] {
        let mut rates = Vec::new();
        let mut per_cpu = Vec::new();
        for run in 1..=runs {
            let out = Command::new(&args[0])
                .args(["--one", closer, &secs.to_string()])
                .output()
                .expect("re-run this bench binary");
            let text = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                println!(
                    "skipped: {}",
                    String::from_utf8_lossy(&out.stderr)
                        .trim()
                        .trim_start_matches("Error: ")
                );
                return;
            }
            let (rate, cpu) = parse(&text).expect("a child's line: RATE PER_CPU ...");
            println!("  {closer} closes first, run {run}: {}", text.trim());
            rates.push(rate);
            per_cpu.push(cpu);
        }
        println!(
            "{closer} closes first: median {:.0} connections/s (min {:.0}, max {:.0}); median \
             {:.0} per CPU-second",
            median(&mut rates),
            rates[0],
            rates[rates.len() - 1],
            median(&mut per_cpu)
        );
    }
}

/// One measurement, in this (child) process: a fresh namespace, one churn, one line.
fn one(closer: &str, secs: &str) {
    let closer = if closer == "server" {
        Closer::Server
    } else {
        Closer::Client
    };
    let secs: f64 = secs.parse().expect("seconds");
    let result = netns::enter(netns::Prefer::KeepRoot)
        .and_then(|_| churn::run(Config::new(secs, closer), |_| {}));
    match result {
        Ok(r) => println!(
            "{:.0} connections/s {:.0} per CPU-second ({} connections in {:.2} s, {} failed, peak \
             TIME_WAIT {})",
            r.rate_per_sec,
            r.connections as f64 / r.cpu_secs.max(1e-3),
            r.connections,
            r.secs,
            r.failed,
            r.peak_time_wait
        ),
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(1);
        }
    }
}

fn parse(line: &str) -> Option<(f64, f64)> {
    let mut words = line.split_whitespace();
    let rate = words.next()?.parse().ok()?;
    let cpu = words.nth(1)?.parse().ok()?;
    Some((rate, cpu))
}
