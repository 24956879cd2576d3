//! `tcplab ladder FILE`: draw the ladder of a run that was saved as JSON: a lesson's report
//! (`--json`, with `--pcap` for the segments) or a bare timeline. Text by default, `--svg`
//! for a picture, `--normal` for the form the book's check compares (what a run shows,
//! without ports, sequence numbers or times), `--beside SCENARIO` to put the model's ladder
//! of a scenario next to it.
//!
//! What it leaves out on purpose: running anything. The lessons draw their own ladder with
//! `--ladder`; this reads what a run left behind.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use tcplab_core::Timeline;
use tcplab_core::ladder::{self, wire};
use tcplab_core::model::{Options, Scenario};

#[derive(Args, Debug, Clone)]
pub struct LadderArgs {
    /// A lesson's JSON report or a timeline as JSON (`-` for stdin).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Print the ladder as an SVG document.
    #[arg(long, conflicts_with = "normal")]
    pub svg: bool,
    /// Print only what the ladder shows that does not vary between runs: per kind of
    /// connection, the SYN, FIN and RST segments and each side's states, and how many
    /// connections were of that kind (what a picture's <desc> says).
    #[arg(long)]
    pub normal: bool,
    /// Put the model's ladder of this scenario beside the run's.
    #[arg(long, value_parser = super::model::parse_scenario, value_name = "SCENARIO")]
    pub beside: Option<Scenario>,
}

/// A timeline from a report (its `timeline` key) or from a timeline's own JSON.
pub fn read_timeline(text: &str) -> Result<Timeline> {
    let v: serde_json::Value = serde_json::from_str(text)
        .context("the file is not JSON; give a lesson's --json report")?;
    let t = v.get("timeline").cloned().unwrap_or(v);
    serde_json::from_value(t).context("no timeline in this JSON (want a lesson's --json report)")
}

pub fn run(args: &LadderArgs) -> Result<ExitCode> {
    let text = if args.file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("read stdin")?
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("read {}", args.file.display()))?
    };
    let t = read_timeline(&text)?;
    if args.normal {
        print!("{}", wire::Kinds::of(&t).described());
        return Ok(ExitCode::SUCCESS);
    }
    let model = args.beside.map(|s| s.run(&Options::linux()));
    match (args.svg, model) {
        (true, None) => print!("{}", wire::svg(&t)),
        (false, None) => print!("{}", wire::text(&t)),
        (true, Some(m)) => print!(
            "{}",
            ladder::side_by_side_svg(
                &tcplab_core::model::ladder::svg(&m),
                &wire::svg(&t),
                ("model", "kernel")
            )
        ),
        (false, Some(m)) => print!(
            "{}",
            ladder::side_by_side_text(&tcplab_core::model::ladder::text(&m), &wire::text(&t))
        ),
    }
    Ok(ExitCode::SUCCESS)
}
