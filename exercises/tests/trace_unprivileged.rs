//! `tcplab trace` without root, over the exchange that polling finds hardest: five loopback
//! connections, each closed by the client and by the server 0.2 ms later, all within a few
//! milliseconds. The server's ends live far less than one poll. The trace must still show
//! every server end (seen, or inferred from its client and marked so), or say how many
//! connections it may have missed.
//!
//! Run as root, the test drops to uid 65534 (nobody) with `setpriv`, as an instructor on a
//! shared hub would be; run as anyone else, it already is unprivileged.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn unprivileged(program: &str) -> Command {
    if tcplab_core::kernel::is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", program]);
        c
    } else {
        Command::new(program)
    }
}

/// Five connections: the client closes, the server closes 0.2 ms later. Returns the
/// clients' addresses.
fn quick_exchange(listener: &TcpListener) -> Vec<SocketAddr> {
    let mut clients = Vec::new();
    for _ in 0..5 {
        let c = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (s, peer) = listener.accept().unwrap();
        clients.push(peer);
        drop(c);
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(200) {
            std::hint::spin_loop();
        }
        drop(s);
    }
    clients
}

#[test]
fn every_server_end_is_shown_or_the_trace_says_what_it_missed() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut child = unprivileged(env!("CARGO_BIN_EXE_tcplab"))
        .args(["trace", "--backend", "poll", "--json", "--duration", "2"])
        .args(["--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tcplab trace");
    // The first line on stderr says which backend runs: the tracer is armed by then.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert!(first.contains("poll backend"), "{first}");
    let clients = quick_exchange(&listener);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(child.wait().unwrap().success(), "{first}{rest}");

    let server = SocketAddr::from(([127, 0, 0, 1], port));
    // For each server end: its states in order, and whether any step was seen.
    let mut ends: BTreeMap<SocketAddr, (Vec<String>, bool)> = BTreeMap::new();
    let mut missed = 0;
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(m) = v.get("missed") {
            missed = m["count"].as_u64().unwrap();
            assert!(m["why"].as_str().unwrap().contains("may be missing"), "{m}");
            continue;
        }
        if v["local"] != server.to_string() || v["remote"] == "0.0.0.0:0" {
            continue;
        }
        let remote: SocketAddr = v["remote"].as_str().unwrap().parse().unwrap();
        let end = ends.entry(remote).or_default();
        end.0.push(v["to"].as_str().unwrap().to_string());
        end.1 |= v["source"] != "inferred";
    }
    let shown = clients.iter().filter(|c| ends.contains_key(c)).count();
    assert!(
        shown + missed as usize >= clients.len(),
        "{shown} of {} server ends shown and {missed} said to be missing:\n{out}{rest}",
        clients.len()
    );
    for c in &clients {
        if let Some((states, _)) = ends.get(c) {
            assert_eq!(
                states.last().map(String::as_str),
                Some("CLOSE"),
                "the server end for {c} must end closed: {states:?}"
            );
            assert!(
                states.iter().any(|s| s == "LAST_ACK"),
                "the server closed second, so it passed LAST_ACK: {states:?}"
            );
        }
    }
}
