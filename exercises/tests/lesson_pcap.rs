//! `--pcap FILE` on lesson binaries: the report's segments agree with its states, and an
//! ordinary user's lesson captures from a namespace of its own.
//!
//! - lesson 03 as uid 65534: the ten clients' FINs, and no FIN from the server that leaks
//!   CLOSE_WAIT; the pcapng file holds the same segments;
//! - lesson 02: TIME_WAIT is on the side whose FIN went first;
//! - lesson 07: a RST with SO_LINGER 0, none in the graceful close.
//!
//! Run as root (CI) the first one drops to uid 65534 with setpriv; run by an ordinary user
//! it runs as that user, which is the same case. Left out on purpose: the churn lessons
//! (their capture ends before the churn).

mod common;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use tcplab_core::observe::capture::pcapng;

fn segments(report: &Value) -> &Vec<Value> {
    report["segments"]
        .as_array()
        .unwrap_or_else(|| panic!("no segments in the report: {report}"))
}

fn has(seg: &Value, flag: &str) -> bool {
    seg["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f.as_str() == Some(flag))
}

fn to_server(seg: &Value, report: &Value) -> bool {
    let port = report["server_port"].as_u64().unwrap();
    seg["dst"].as_str().unwrap().ends_with(&format!(":{port}"))
}

/// A fresh world-writable folder for a pcapng file (uid 65534 writes there).
fn out_dir(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("tcplab-pcap-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

#[test]
fn lesson_03_as_nobody_captures_the_clients_fins() {
    let dir = out_dir("03");
    let file = dir.join("03.pcapng");
    let args = ["--pcap", file.to_str().unwrap()];
    let name = "03-close-wait-leak";
    let report = common::run_unprivileged(name, &args);
    assert_ne!(report["backend"], "tracepoint");
    let segs = segments(&report);
    let fins_in = segs
        .iter()
        .filter(|s| has(s, "FIN") && to_server(s, &report))
        .count();
    let fins_out = segs
        .iter()
        .filter(|s| has(s, "FIN") && !to_server(s, &report))
        .count();
    assert_eq!(fins_in, 10, "the ten clients' FINs: {report}");
    assert_eq!(fins_out, 0, "a CLOSE_WAIT server sends no FIN");
    assert_eq!(
        report["observed"]["server"]["CLOSE_WAIT"], 10,
        "{}",
        report["observed"]
    );
    let packets = pcapng::read(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(packets.len(), segs.len());
    assert!(packets.iter().any(|p| !p.comments.is_empty()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lesson_02_time_wait_is_on_the_side_whose_fin_went_first() {
    let dir = out_dir("02");
    let file = dir.join("02.pcapng");
    let report = common::run("02-four-way-close", &["--pcap", file.to_str().unwrap()]);
    let first_fin = segments(&report)
        .iter()
        .find(|s| has(s, "FIN"))
        .expect("a FIN");
    let side = if to_server(first_fin, &report) {
        "client"
    } else {
        "server"
    };
    assert_eq!(
        report["observed"][side]["TIME_WAIT"], 1,
        "the first FIN came from the {side}: {}",
        report["observed"]
    );
    // The same segments ride in the timeline, beside the state changes.
    assert_eq!(
        report["timeline"]["segments"].as_array().map(Vec::len),
        Some(segments(&report).len())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lesson_07_resets_only_with_linger_zero() {
    let dir = out_dir("07");
    for (name, resets) in [("07-linger-zero", true), ("07-graceful-close", false)] {
        let file = dir.join(format!("{name}.pcapng"));
        let report = common::run(name, &["--pcap", file.to_str().unwrap()]);
        let rst = segments(&report).iter().any(|s| has(s, "RST"));
        assert_eq!(rst, resets, "{name}: RST on the wire");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_pcap_the_report_has_no_segments() {
    let report = common::run("02-four-way-close", &[]);
    assert!(report.get("segments").is_none(), "{report}");
    assert!(report["timeline"].get("segments").is_none());
    let out = Command::new(common::binary_path("02-four-way-close"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--pcap"));
}
