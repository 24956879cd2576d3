//! `tcplab model SCENARIO --kernel`: the model's scenario played on this kernel, one side at
//! a time, with the scripted peer as the other side (exercises/peer/model/, one script per
//! scenario and side), and the two stories side by side: each side's states from the model
//! and from the kernel, and every difference with why Linux and the model part ways.
//!
//! Each side runs in a network namespace of its own, made fresh for it. The scripts run
//! with the clock opened to a second: what is compared is the order of states, not their
//! timing (which the model does not claim to predict).
//!
//! Left out on purpose: both kernel sides in one run (the peer is not a kernel socket, so
//! each run observes one side), and the RFC profile (`--rfc` compares with the RFC's
//! predictions all the same; its differences say where Linux departs from the letter).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tcplab_core::TcpState;
use tcplab_core::model::{Difference, DifferenceKind, Mapping, Options, Scenario, compare_with};
use tcplab_core::peer;
use tcplab_core::timeline::{Side, Timeline};

use tcplab_core::netns;

/// The script in which the kernel plays `side` of `scenario`.
pub fn script(scenario: Scenario, side: Side) -> &'static str {
    macro_rules! pick {
        ($name:literal) => {
            match side {
                Side::Client => include_str!(concat!("../../peer/model/", $name, ".client.pkt")),
                Side::Server => include_str!(concat!("../../peer/model/", $name, ".server.pkt")),
            }
        };
    }
    match scenario {
        Scenario::ClientClose => pick!("client-close"),
        Scenario::ServerClose => pick!("server-close"),
        Scenario::SimultaneousClose => pick!("simultaneous-close"),
        Scenario::Abort => pick!("abort"),
        Scenario::HalfClose => pick!("half-close"),
        Scenario::LostLastAck => pick!("lost-last-ack"),
        Scenario::OldDuplicate => pick!("old-duplicate"),
        Scenario::CloseWaitLeak => pick!("close-wait-leak"),
    }
}

const SIDES: [Side; 2] = [Side::Client, Side::Server];

/// Each side's states, in order.
fn model_sequences(model: &Timeline) -> BTreeMap<Side, Vec<TcpState>> {
    let mut out = BTreeMap::new();
    for side in SIDES {
        let mut seq = Vec::new();
        for e in model.events.iter().filter(|e| e.side == Some(side)) {
            if seq.is_empty() {
                seq.push(e.from);
            }
            seq.push(e.to);
        }
        out.insert(side, seq);
    }
    out
}

/// What each side's run observed: its timeline (the connection's socket, not the listener),
/// which socket plays the side, and its states.
struct Played {
    observed: Timeline,
    mapping: Mapping,
    kernel: BTreeMap<Side, Vec<TcpState>>,
}

/// Play both sides on the kernel; the connection's socket of each run, in one timeline.
fn play(scenario: Scenario) -> Result<Played> {
    // Before any thread: a user namespace needs a single-threaded process.
    netns::enter(netns::Prefer::KeepRoot)?;
    let mut events = Vec::new();
    let mut kernel = BTreeMap::new();
    let mut mapping = Mapping::default();
    for side in SIDES {
        // A fresh network namespace for each side (the user namespace, if any, stays).
        // SAFETY: unshare of the network namespace only, which any thread may do.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error())
                .context("make a network namespace for the next side");
        }
        let name = format!("peer/model/{scenario}.{side}.pkt");
        let script = peer::parse(&name, script(scenario, side))?;
        let opts = peer::Options {
            file: name.clone(),
            dir: std::env::temp_dir(),
            tolerance_us: 1_000_000,
            max_duration: Duration::from_secs(30),
            link: None,
        };
        let report = peer::run(&script, &opts)?;
        if let Some(f) = report.failure {
            bail!("the kernel did not play {scenario} as the {side} as scripted: {f}");
        }
        // The connection's socket, not the listener.
        let conn: Vec<_> = report
            .timeline
            .events
            .into_iter()
            .filter(|e| e.remote.port() != 0)
            .collect();
        let mut seq = Vec::new();
        for e in &conn {
            if seq.is_empty() {
                seq.push(e.from);
            }
            seq.push(e.to);
        }
        kernel.insert(side, seq);
        let endpoint = conn.first().map(|e| e.endpoint());
        match side {
            Side::Client => mapping.client = endpoint,
            Side::Server => mapping.server = endpoint,
        }
        events.extend(conn);
    }
    Ok(Played {
        observed: Timeline::from_events(events),
        mapping,
        kernel,
    })
}

/// Where a difference comes from the way this run observes rather than from the kernel, say
/// so: the server's socket is a child the listener forks when the SYN arrives, so it never
/// is CLOSE or LISTEN itself (the listener is, and is left out of the comparison).
fn why(d: &Difference, kernel: &BTreeMap<Side, Vec<TcpState>>) -> String {
    let forked = d.side == Side::Server
        && matches!(d.state, Some(TcpState::Listen))
        && kernel
            .get(&Side::Server)
            .is_some_and(|k| k.iter().take(2).any(|s| *s == TcpState::SynRecv));
    if forked && d.kind == DifferenceKind::Missing {
        "Linux forks a child socket from the listener when the SYN arrives: the listener \
         stays in LISTEN and the child's story starts in SYN_RECV, so the connection's own \
         socket never shows LISTEN"
            .to_string()
    } else {
        d.explanation.clone()
    }
}

fn names(seq: &[TcpState]) -> Vec<String> {
    seq.iter().map(|s| s.to_string()).collect()
}

pub fn run(scenario: Scenario, opts: &Options, as_json: bool) -> Result<ExitCode> {
    let model = scenario.run(opts).timeline;
    let Played {
        observed,
        mapping,
        kernel,
    } = play(scenario)?;
    let differences: Vec<Difference> = compare_with(&model, &observed, &mapping)
        .into_iter()
        .map(|mut d| {
            d.explanation = why(&d, &kernel);
            d
        })
        .collect();
    let modelled = model_sequences(&model);
    if as_json {
        let side_map = |m: &BTreeMap<Side, Vec<TcpState>>| {
            serde_json::Value::Object(
                m.iter()
                    .map(|(side, seq)| (side.to_string(), json!(names(seq))))
                    .collect(),
            )
        };
        let diffs: Vec<_> = differences
            .iter()
            .map(|d| {
                json!({
                    "side": d.side.to_string(),
                    "state": d.state.map(|s| s.to_string()),
                    "kind": d.kind,
                    "why": d.explanation,
                })
            })
            .collect();
        let out = json!({
            "scenario": scenario.to_string(),
            "profile": opts.name,
            "model": side_map(&modelled),
            "kernel": side_map(&kernel),
            "differences": diffs,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{scenario}: {} ({} model against this kernel, the scripted peer as the other side)\n",
        scenario.summary(),
        opts.name
    );
    for side in SIDES {
        let empty = Vec::new();
        println!(
            "{side:<7} model:  {}",
            names(modelled.get(&side).unwrap_or(&empty)).join(" -> ")
        );
        println!(
            "{:<7} kernel: {}",
            "",
            names(kernel.get(&side).unwrap_or(&empty)).join(" -> ")
        );
    }
    if differences.is_empty() {
        println!("\nno differences");
    } else {
        println!("\ndifferences:");
        for d in &differences {
            println!("  {d}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
