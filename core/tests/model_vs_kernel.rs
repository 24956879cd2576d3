//! The model's `client-close` and `server-close` against the real kernel on loopback, with
//! Linux options on: each side's sequence of states must be the one the tracer records (the
//! tracepoint as root; sock_diag polling with inferred gaps otherwise), and every difference
//! `compare` reports must be an explained one, never a state the model did not predict.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use tcplab_core::TcpState::{self, *};
use tcplab_core::model::{DifferenceKind, Options, Scenario, compare};
use tcplab_core::observe::trace::{TraceConfig, Tracer};
use tcplab_core::observe::{self, Method, Query};
use tcplab_core::sockets;
use tcplab_core::timeline::{Side, Timeline};

/// Wait until the kernel shows `state` on the port, at most 3 s.
fn wait_for(port: u16, state: TcpState) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let snap = observe::snapshot(&Query::ports(&[port]), Method::Netlink).unwrap();
        if snap.rows.iter().any(|r| r.state == state) {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("the kernel never showed {state} on port {port}");
}

/// Play one connection on loopback; `client_first` picks who closes first.
fn observe_close(client_first: bool) -> Timeline {
    let listener: TcpListener = sockets::loopback_listener(false).unwrap();
    let port = listener.local_addr().unwrap().port();
    let tracer = Tracer::start(TraceConfig::ports(&[port])).unwrap();
    let client = sockets::connect(listener.local_addr().unwrap(), Duration::from_secs(2)).unwrap();
    let (server, _) = listener.accept().unwrap();
    let (first, mut second): (TcpStream, TcpStream) = if client_first {
        (client, server)
    } else {
        (server, client)
    };
    wait_for(port, Established);
    drop(first);
    second
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(second.read(&mut buf).unwrap(), 0, "expected end of stream");
    drop(second);
    wait_for(port, TimeWait);
    // Let the tracer's mini-socket check see the TIME_WAIT before stopping.
    std::thread::sleep(Duration::from_millis(50));
    tracer.stop().unwrap()
}

/// The model's states for one side, as the kernel would show them for the connection's own
/// socket: the listener's part (CLOSE -> LISTEN) belongs to the listening socket on Linux,
/// and the final TIME_WAIT -> CLOSE comes 60 s later, after the observation ends.
fn modelled(scenario: Scenario, side: Side) -> Vec<TcpState> {
    let run = scenario.run(&Options::linux());
    let mut seq: Vec<TcpState> = run.states(side).into_iter().map(|s| s.tcp()).collect();
    if side == Side::Server {
        // Linux's accepted child starts as a copy of the listener, in LISTEN.
        seq.remove(0);
    }
    if seq.last() == Some(&Close) && seq.len() >= 2 && seq[seq.len() - 2] == TimeWait {
        seq.pop();
    }
    seq
}

fn check(scenario: Scenario, client_first: bool) {
    let observed = observe_close(client_first);
    let mapping = tcplab_core::model::map_by_role(&observed);
    let client = mapping.client.expect("no client socket observed");
    let server = mapping.server.expect("no server socket observed");
    assert_eq!(
        observed.sequence(client),
        modelled(scenario, Side::Client),
        "client side of {scenario}"
    );
    assert_eq!(
        observed.sequence(server),
        modelled(scenario, Side::Server),
        "server side of {scenario}"
    );
    let model = scenario.run(&Options::linux()).timeline;
    for d in compare(&model, &observed) {
        println!("{d}");
        assert_ne!(d.kind, DifferenceKind::Extra, "{d}");
        assert_ne!(d.kind, DifferenceKind::NoEndpoint, "{d}");
    }
}

#[test]
fn client_close_matches_the_kernel() {
    check(Scenario::ClientClose, true);
}

#[test]
fn server_close_matches_the_kernel() {
    check(Scenario::ServerClose, false);
}
