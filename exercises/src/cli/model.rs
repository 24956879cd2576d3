//! `tcplab model SCENARIO`: play one named scenario on the RFC 9293 model and print it as a
//! text ladder (default), an SVG, or JSON lines (one state change per line).
//!
//! What it leaves out on purpose: any socket. This command never touches the network; it
//! shows what the model predicts, which `tcplab trace` later holds against the kernel.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use tcplab_core::model::{Options, Scenario, ladder};

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// The scenario to play.
    #[arg(value_parser = parse_scenario, value_name = "SCENARIO")]
    pub scenario: Scenario,
    /// Print the ladder as an SVG document.
    #[arg(long, conflicts_with = "json")]
    pub svg: bool,
    /// Print one JSON object per state change: side, from, to, t_us (simulated), segment.
    #[arg(long)]
    pub json: bool,
    /// Use the letter of RFC 9293 (TIME-WAIT 240 s, no FIN-WAIT-2 timer, no reopening of
    /// TIME-WAIT by a new SYN) instead of Linux's defaults.
    #[arg(long)]
    pub rfc: bool,
    /// Also play the scenario on this kernel, one side at a time against the scripted peer,
    /// and print both sides' states from the model and from the kernel, with every
    /// difference explained (with --json: one object with `model`, `kernel`, `differences`).
    #[arg(long, conflicts_with = "svg")]
    pub kernel: bool,
}

/// clap value parser: a scenario name; the error lists every scenario.
pub fn parse_scenario(s: &str) -> Result<Scenario, String> {
    s.parse::<Scenario>().map_err(|e| e.to_string())
}

pub fn run(args: &ModelArgs) -> Result<ExitCode> {
    let opts = if args.rfc {
        Options::rfc()
    } else {
        Options::linux()
    };
    if args.kernel {
        return super::model_kernel::run(args.scenario, &opts, args.json);
    }
    let result = args.scenario.run(&opts);
    if args.json {
        for e in &result.timeline.events {
            let mut v = serde_json::to_value(e)?;
            if let Some(obj) = v.as_object_mut() {
                obj.entry("segment").or_insert(serde_json::Value::Null);
            }
            println!("{}", serde_json::to_string(&v)?);
        }
    } else if args.svg {
        print!("{}", ladder::svg(&result));
    } else {
        println!(
            "{}: {} ({} options)\n",
            args.scenario,
            args.scenario.summary(),
            opts.name
        );
        print!("{}", ladder::text(&result));
        println!();
        println!("{}", args.scenario.explanation(&opts));
    }
    Ok(ExitCode::SUCCESS)
}
