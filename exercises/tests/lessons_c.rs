//! Lessons 09, 10, 11, 15 and 16, run as built: each binary's `--json` report must carry the verdict
//! the catalog expects and the facts the lesson teaches, as the kernel showed them. Every
//! lesson picks its own ports (or runs in its own network namespace), so these tests run in
//! parallel with anything else.

mod common;

use std::path::Path;

use common::{run, run_unprivileged, run_with_env};
use serde_json::Value;
use tcplab_core::netns::NO_NETNS_ENV;
use tcplab_exercises::facts;

#[test]
fn port_exhaustion_churn_runs_out_of_ports() {
    let r = run("09-port-exhaustion-churn", &[]);
    let f = &r["facts"];
    assert_eq!(f["namespace"], "private");
    assert_eq!(f["port_range"], "40000 40099");
    assert_eq!(f["error"], "EADDRNOTAVAIL");
    let before = f["connections_before_error"].as_u64().unwrap();
    assert!((90..=100).contains(&before), "{f}");
    let tw = f["client_time_wait"].as_u64().unwrap();
    assert!(tw >= 90 && tw <= before, "{f}");
}

#[test]
fn port_exhaustion_pool_needs_no_new_ports() {
    let r = run("09-port-exhaustion-pool", &[]);
    let f = &r["facts"];
    assert_eq!(f["namespace"], "private");
    assert_eq!(f["error"], Value::Null);
    assert_eq!(f["connections_before_error"], Value::Null);
    assert_eq!(f["requests"], 300);
    assert_eq!(f["client_time_wait"], 0);
    assert!(f["connections_opened"].as_u64().unwrap() <= 4, "{f}");
}

/// `--churn-secs`: the generator against one server port with the default port range and
/// the client closing first, in the lesson's namespace.
#[test]
fn port_exhaustion_churn_at_scale_fills_the_default_range() {
    let r = run("09-port-exhaustion-churn", &["--churn-secs", "1"]);
    let f = &r["facts"];
    assert_eq!(f["churn_closer"], "client", "{f}");
    assert_eq!(f["churn_ports"], 1, "{f}");
    assert_eq!(f["churn_port_range"], "32768 60999", "{f}");
    assert_eq!(f["churn_sustainable_rate"], 471, "{f}");
    let made = f["churn_connections"].as_u64().unwrap();
    assert!(made > 1000, "{f}");
    // Every closed connection holds a client port in TIME_WAIT; the server keeps none.
    let samples = f["churn_samples"].as_array().unwrap();
    let last = samples.last().unwrap();
    assert_eq!(last["server_time_wait"], 0, "{f}");
    let tw = last["client_time_wait"].as_u64().unwrap();
    let at_sample = last["connections"].as_u64().unwrap();
    assert!(tw * 10 >= at_sample * 9 && tw <= 28232, "{f}");
    // Either the ports ran out (then the count is the range, give or take the listener's
    // port) or they did not, and the report says neither.
    match f["churn_first_exhausted_ms"].as_u64() {
        Some(_) => assert!(f["churn_connections_before_exhaustion"].as_u64().unwrap() > 28000),
        None => assert_eq!(f["churn_exhausted"], 0, "{f}"),
    }
    // The lesson's own verdict is unchanged by the churn phase.
    assert_eq!(f["error"], "EADDRNOTAVAIL");
}

/// Without a private namespace (as in a default container): IP_LOCAL_PORT_RANGE gives the
/// client 100 ports of the machine's own range, the ports still run out, and tcp_tw_reuse
/// hands the first one back after tcp_tw_reuse_delay.
#[test]
fn port_exhaustion_churn_without_a_namespace() {
    let r = run_with_env("09-port-exhaustion-churn", &[], &[(NO_NETNS_ENV, "1")]);
    let f = &r["facts"];
    assert_eq!(f["namespace"], "none", "{f}");
    assert_eq!(f["port_range_option"], "IP_LOCAL_PORT_RANGE", "{f}");
    assert_eq!(f["error"], "EADDRNOTAVAIL", "{f}");
    let before = f["connections_before_error"].as_u64().unwrap();
    assert!((90..=100).contains(&before), "{f}");
    let tw = f["client_time_wait"].as_u64().unwrap();
    assert!(tw >= 90 && tw <= before, "{f}");
    // On the host another program's socket may hold a port of the range when it runs out
    // (then fewer than 100 connections were made) and let it go a moment later: the lesson
    // must not credit tcp_tw_reuse with that port (seen once in 25 runs beside other tests).
    if f["port_came_back_by"] == "another socket" {
        assert!(before < 100, "{f}");
        return;
    }
    // With tcp_tw_reuse = 2 and a 1000 ms delay (this kernel's defaults) a port comes back
    // about a second after the first connection closed; measured here: 1004 to 1016 ms.
    if f["tcp_tw_reuse"] == 2 && f["tcp_tw_reuse_delay_ms"] == 1000 {
        assert_eq!(f["port_came_back_by"], "tcp_tw_reuse", "{f}");
        let ms = f["ms_until_a_port_came_back"]
            .as_u64()
            .expect("a port came back");
        assert!((1000..2000).contains(&ms), "{f}");
    }
}

#[test]
fn port_exhaustion_pool_without_a_namespace() {
    let r = run_with_env("09-port-exhaustion-pool", &[], &[(NO_NETNS_ENV, "1")]);
    let f = &r["facts"];
    assert_eq!(f["namespace"], "none", "{f}");
    assert_eq!(f["requests"], 300, "{f}");
    assert_eq!(f["error"], Value::Null, "{f}");
    assert_eq!(f["closed_without_time_wait"], 0, "{f}");
    assert!(f["connections_opened"].as_u64().unwrap() <= 4, "{f}");
}

/// The namespace needs no privilege: the churn binary as nobody (uid 65534).
#[test]
fn port_exhaustion_works_unprivileged() {
    let r = run_unprivileged("09-port-exhaustion-churn", &[]);
    assert_eq!(r["facts"][facts::ERROR], "EADDRNOTAVAIL");
    assert_eq!(r["facts"][facts::NAMESPACE], "private");
}

#[test]
fn stuck_close_wait_meets_the_reconnect() {
    let r = run("10-stuck-close-wait", &[]);
    let f = &r["facts"];
    // What this kernel does: the SYN meets the stale CLOSE_WAIT socket, a challenge ACK and
    // the client's RST clear it, and the retransmitted SYN connects (or, where the RST is
    // lost, connect() times out).
    assert_eq!(f["server_close_wait_before"], 1, "{f}");
    if f["connect_result"] == "connected" {
        assert!(f["syn_retransmits"].as_u64().unwrap() >= 1, "{f}");
        assert_eq!(f["server_close_wait_after"], 0, "{f}");
        // On the wire: SYN, the challenge ACK, the client's RST, the SYN again, SYN-ACK.
        let ladder: Vec<&str> = f["wire_reconnect"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            ladder[..5],
            [
                "client SYN",
                "server ACK",
                "client RST",
                "client SYN",
                "server SYN, ACK"
            ],
            "{f}"
        );
        assert_eq!(f["challenge_acks_seen"], 1, "{f}");
    }
}

#[test]
fn fixed_server_reconnects_at_once() {
    let r = run("10-fixed-server", &[]);
    let f = &r["facts"];
    assert_eq!(f["connect_result"], "connected");
    assert_eq!(f["syn_retransmits"], 0);
    assert_eq!(f["server_close_wait_before"], 0);
    assert_eq!(f["server_close_wait_after"], 0);
    assert!(f["connect_ms"].as_u64().unwrap() < 1000, "{f}");
    assert_eq!(f["wire_reconnect"][0], "client SYN", "{f}");
    assert_eq!(f["wire_reconnect"][1], "server SYN, ACK", "{f}");
    assert_eq!(f["wire_syns"], 1, "{f}");
    assert_eq!(f["challenge_acks_seen"], 0, "{f}");
}

fn assert_gone(pids: &Value) {
    let pids = pids.as_array().expect("child_pids");
    assert!(!pids.is_empty());
    for pid in pids {
        let pid = pid.as_u64().unwrap();
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "mystery server pid {pid} outlived the lesson"
        );
    }
}

#[test]
fn mystery_leak_owner_is_found() {
    let r = run("11-mystery-leak", &[]);
    let f = &r["facts"];
    assert_eq!(f["owner_identified"], true);
    assert_eq!(f["owner_name"], "mystery-server");
    assert_eq!(f["close_wait_found"], 5);
    assert_eq!(f["close_wait_after"], 5);
    // Left alone, the leaked sockets say nothing to their clients.
    assert_eq!(f["wire_server_rst"], 0, "{f}");
    assert_eq!(f["wire_server_fin"], 0, "{f}");
    assert_eq!(f["owner_pid"], f["child_pids"][0]);
    assert_gone(&f["child_pids"]);
}

#[test]
fn find_and_fix_leaves_no_close_wait() {
    let r = run("11-find-and-fix", &[]);
    let f = &r["facts"];
    assert_eq!(f["owner_identified"], true);
    assert_eq!(f["close_wait_found"], 5);
    assert_eq!(f["close_wait_after"], 0);
    // Ended with unread data (each client's line): RST, not FIN.
    assert_eq!(f["wire_server_rst"], 5, "{f}");
    assert_eq!(f["wire_server_fin"], 0, "{f}");
    assert_eq!(f["child_pids"].as_array().unwrap().len(), 2);
    assert_gone(&f["child_pids"]);
}

/// Lesson 15's first connection: of four RSTs only the one at `rcv_nxt` ends it. The wire
/// (what came back), the namespace's counters, sock_diag and read()'s errno must agree.
#[test]
fn l15_only_the_rst_at_rcv_nxt_resets() {
    let r = run("15-rst-handling", &[]);
    assert_eq!(common::num(&r, facts::ANSWERS_TO_FAR_RST), 0, "{r}");
    assert_eq!(common::fact(&r, facts::STATE_AFTER_FAR_RST), "ESTABLISHED");
    assert_eq!(
        common::fact(&r, facts::STATE_AFTER_NEAR_RSTS),
        "ESTABLISHED"
    );
    // Two RSTs in the window: one challenge ACK on the wire, counted; the other held back by
    // the per-socket rate limit, counted too.
    let seen = common::num(&r, facts::CHALLENGE_ACKS_SEEN);
    let counted = common::num(&r, facts::TCP_CHALLENGE_ACK_COUNTED);
    let skipped = common::num(&r, facts::TCP_CHALLENGE_ACK_SKIPPED);
    assert!(
        seen >= 1 && counted == seen && counted + skipped == 2,
        "{r}"
    );
    assert_eq!(common::fact(&r, facts::GONE_AFTER_EXACT_RST), true, "{r}");
    assert_eq!(common::num(&r, facts::ESTAB_RESETS), 1, "{r}");
    assert_eq!(common::fact(&r, facts::SERVER_READ_RESULT), "ECONNRESET");
}

/// Lesson 15's second connection, run by an unprivileged user: the lesson sets tcp_rfc1337 in
/// a user + network namespace of its own; with 1 the TIME_WAIT socket outlives a RST at
/// `rcv_nxt`, with 0 the same RST ends it.
#[test]
fn l15_time_wait_ignores_the_rst_only_with_rfc1337() {
    let r = run_unprivileged("15-rst-handling", &[]);
    assert_eq!(common::fact(&r, "tcp_rfc1337_default"), 0, "{r}");
    assert_eq!(
        common::fact(&r, facts::STATE_AFTER_RST_RFC1337_ON),
        "TIME_WAIT",
        "{r}"
    );
    assert_eq!(common::num(&r, facts::ANSWERS_TO_RST_RFC1337_ON), 0, "{r}");
    assert_eq!(
        common::fact(&r, facts::GONE_AFTER_RST_RFC1337_OFF),
        true,
        "{r}"
    );
}

/// Lesson 16's leak: the program closed, the kernel still holds the reply and the FIN in an
/// orphan (no file) in FIN_WAIT1, and nothing but zero-window probes left it.
fn assert_zero_window_orphan(r: &Value) {
    let f = &r["facts"];
    assert_eq!(f[facts::ORPHANED], true, "{f}");
    // The 10 000-byte reply and the FIN's sequence number.
    assert_eq!(f[facts::SEND_Q_AT_CLOSE], 10_001, "{f}");
    assert_eq!(f[facts::DATA_BYTES_SENT], 0, "{f}");
    assert_eq!(f[facts::FINS_SENT], 0, "{f}");
    assert_eq!(f[facts::RESETS_SENT], 0, "{f}");
    assert!(common::num(r, facts::ZERO_WINDOW_PROBES) >= 1, "{f}");
    assert_eq!(f[facts::GONE_AFTER_CLOSE_MS], Value::Null, "{f}");
    assert!(
        f["states_seen"]
            .as_array()
            .unwrap()
            .contains(&"FIN_WAIT1".into()),
        "{f}"
    );
}

/// Lesson 16's fix: the same orphan, then TCP_USER_TIMEOUT ends it silently (no RST, the
/// namespace's TCPAbortOnTimeout), and the peer's window update draws a RST.
fn assert_zero_window_bounded(r: &Value) {
    let f = &r["facts"];
    assert_eq!(f[facts::ORPHANED], true, "{f}");
    assert_eq!(f[facts::DATA_BYTES_SENT], 0, "{f}");
    assert_eq!(f[facts::FINS_SENT], 0, "{f}");
    assert_eq!(f[facts::RESETS_SENT], 0, "{f}");
    assert!(common::num(r, facts::ZERO_WINDOW_PROBES) >= 1, "{f}");
    assert!(f[facts::GONE_AFTER_CLOSE_MS].is_u64(), "{f}");
    assert_eq!(f[facts::TCP_EXT_ABORT_ON_TIMEOUT_GROWTH], 1, "{f}");
    assert_eq!(f[facts::RST_TO_WINDOW_UPDATE], true, "{f}");
}

#[test]
fn zero_window_orphan_stays_in_fin_wait1() {
    assert_zero_window_orphan(&run("16-zero-window-orphan", &[]));
}

#[test]
fn zero_window_orphan_ends_with_user_timeout() {
    assert_zero_window_bounded(&run("16-zero-window-fixed", &[]));
}

/// Without root the lesson makes a user + network namespace of its own: the same story.
#[test]
fn zero_window_orphan_without_root() {
    assert_zero_window_orphan(&run_unprivileged("16-zero-window-orphan", &[]));
    assert_zero_window_bounded(&run_unprivileged("16-zero-window-fixed", &[]));
}
