//! `tcplab peer SCRIPT.pkt`: play the other side of a connection from a packetdrill script,
//! against this kernel, in a network namespace of its own (a user + network namespace when
//! not root, so no privilege is needed). Exit 0 when every line held; otherwise the first
//! line that did not, as `FILE:LINE: expected ..., got ...`, and exit 1; exit 2 when the
//! peer itself fell behind the script's clock (a busy machine), which is no verdict.
//!
//! It prints the run as a ladder (the renderer the lessons' real ladders use: the segments,
//! and the kernel socket's states polled with sock_diag during the run), and `--explain`
//! prints each line of the script with the states it left behind. `--pcap FILE` saves the segments, states as packet comments.
//!
//! Left out on purpose: packetdrill's command-line options (tolerance, addresses, IPv6);
//! the defaults are packetdrill's.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tcplab_core::ladder::wire;
use tcplab_core::observe::capture::pcapng::{self, PcapInfo};
use tcplab_core::peer::link::LinkKind;
use tcplab_core::peer::{self, Options, Report};

use tcplab_core::netns;

#[derive(Args, Debug, Clone)]
pub struct PeerArgs {
    /// The script (packetdrill's language; backtick commands run in its directory).
    #[arg(value_name = "SCRIPT.pkt")]
    pub script: PathBuf,
    /// Also write the run's segments to FILE as pcapng, state changes as packet comments.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// Print each line of the script with the sockets' states right after it.
    #[arg(long)]
    pub explain: bool,
    /// The link to the peer: `tun` or `veth` (default: a TUN device where one can be made,
    /// else a veth pair).
    #[arg(long, value_parser = parse_link, value_name = "LINK")]
    pub link: Option<LinkKind>,
    /// How far from its due time an event may happen, in microseconds (packetdrill's
    /// `--tolerance_usecs`; 12.5% of the gap since the previous event when larger).
    #[arg(long, value_name = "USECS", default_value_t = peer::run::TOLERANCE_US)]
    pub tolerance_usecs: i64,
    /// Print only the verdict, not the run.
    #[arg(long, short)]
    pub quiet: bool,
}

fn parse_link(s: &str) -> Result<LinkKind, String> {
    s.parse()
}

pub fn run(args: &PeerArgs) -> Result<ExitCode> {
    let text = std::fs::read_to_string(&args.script)
        .with_context(|| format!("read {}", args.script.display()))?;
    let mut opts = Options::for_script(&args.script);
    opts.link = args.link;
    if args.tolerance_usecs <= 0 {
        anyhow::bail!("--tolerance-usecs must be positive");
    }
    opts.tolerance_us = args.tolerance_usecs;
    let script = peer::parse(&opts.file, &text)?;
    // Before any thread: unshare needs a single-threaded process.
    let how = netns::enter(netns::Prefer::KeepRoot)?;
    let report = peer::run(&script, &opts)?;
    if !args.quiet {
        println!(
            "{}: {} over {} (in a {how})",
            opts.file,
            if report.failure.is_none() {
                "passed"
            } else {
                "FAILED"
            },
            report.link.describe()
        );
        if args.explain {
            explain(&report);
        } else {
            ladder(&report);
        }
    }
    if let Some(path) = &args.pcap {
        write_pcap(&report, path)?;
    }
    match &report.failure {
        None => {
            println!(
                "{}: every line held ({:.3} s)",
                opts.file,
                report.elapsed.as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(f) => {
            eprintln!("{f}");
            // 2: inconclusive, the peer fell behind on a busy machine; 1: the kernel did
            // not do what the script says.
            Ok(ExitCode::from(if report.late { 2 } else { 1 }))
        }
    }
}

/// The run as a ladder, drawn by the renderer the lessons share: the kernel's socket in its
/// column, the scripted peer (no socket, no states) in the other, the segments between.
fn ladder(report: &Report) {
    print!("{}", wire::text(&report.timeline));
}

/// Each line that ran, with the states after it.
fn explain(report: &Report) {
    for n in &report.notes {
        let states: Vec<String> = n
            .states
            .iter()
            .map(|(l, r, s)| {
                if r.port() == 0 {
                    format!("{l} {s}")
                } else {
                    format!("{l}->{r} {s}")
                }
            })
            .collect();
        let states = if states.is_empty() {
            "no socket".to_string()
        } else {
            states.join(", ")
        };
        println!(
            "{:>4} {:>9.3} ms  {:<55}  => {states}",
            n.line,
            n.t_us as f64 / 1000.0,
            n.text
        );
    }
}

fn write_pcap(report: &Report, path: &PathBuf) -> Result<()> {
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let info = PcapInfo {
        interface: "tun0".into(),
        ports: Vec::new(),
        stats: None,
        snaplen: 0,
    };
    pcapng::write(
        BufWriter::new(file),
        &report.frames,
        &report.timeline.segments,
        &report.timeline.events,
        &info,
    )?;
    Ok(())
}
