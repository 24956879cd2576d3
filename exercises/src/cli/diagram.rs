//! `tcplab diagram`: the TCP state diagram (RFC 9293 Figure 5), generated from the model's
//! transition table, as a text listing (default), Graphviz DOT or SVG.
//!
//! What it leaves out on purpose: layout smarts. The SVG uses a fixed grid like the RFC's
//! figure; for a nicer layout pipe `--dot` into graphviz.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use tcplab_core::model::{Options, diagram};

#[derive(Args, Debug, Clone)]
#[command(group = clap::ArgGroup::new("format").multiple(false))]
pub struct DiagramArgs {
    /// Graphviz DOT.
    #[arg(long, group = "format")]
    pub dot: bool,
    /// A standalone SVG document.
    #[arg(long, group = "format")]
    pub svg: bool,
    /// One line per transition with the rule it follows (the default).
    #[arg(long, group = "format")]
    pub text: bool,
    /// The letter of RFC 9293 instead of Linux (no FIN_WAIT2 timeout, no RST on unread close,
    /// no TIME_WAIT -> SYN_RECV reopening by a new SYN).
    #[arg(long)]
    pub rfc: bool,
}

pub fn run(args: &DiagramArgs) -> Result<ExitCode> {
    let opts = if args.rfc {
        Options::rfc()
    } else {
        Options::linux()
    };
    let edges = diagram::transitions(&opts);
    if args.dot {
        print!("{}", diagram::dot(&edges));
    } else if args.svg {
        print!("{}", diagram::svg(&edges));
    } else {
        print!("{}", diagram::text(&edges));
    }
    Ok(ExitCode::SUCCESS)
}
