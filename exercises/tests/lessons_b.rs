//! Lessons 04, 07 and 08, run as a student runs them (`BINARY --json`): each binary must give
//! the verdict the catalog expects, and the facts the lesson teaches must hold as the kernel
//! reported them. Every lesson uses its own port 0 listener and counts only its own sockets,
//! so these tests run in parallel with anything else on the machine.

mod common;

use common::{fact, num, run, run_unprivileged};
use tcplab_exercises::facts;

#[test]
fn lesson_04_async_leak_keeps_every_socket_in_close_wait() {
    let r = run("04-async-leak", &[]);
    let n = num(&r, facts::CONNECTIONS);
    assert_eq!(n, 10);
    assert_eq!(num(&r, facts::SERVER_CLOSE_WAIT), n, "{r}");
    assert_eq!(num(&r, facts::CLIENT_FIN_WAIT2), n, "{r}");
    assert_eq!(num(&r, facts::CLIENT_TIME_WAIT), 0, "{r}");
    assert_eq!(r["observed"]["server"]["CLOSE_WAIT"], n);
}

#[test]
fn lesson_04_async_fixed_closes_every_socket() {
    let r = run("04-async-fixed", &[]);
    let n = num(&r, facts::CONNECTIONS);
    assert_eq!(num(&r, facts::SERVER_CLOSE_WAIT), 0, "{r}");
    assert_eq!(num(&r, facts::CLIENT_FIN_WAIT2), 0, "{r}");
    assert_eq!(num(&r, facts::CLIENT_TIME_WAIT), n, "{r}");
    assert!(r["observed"]["server"].get("CLOSE_WAIT").is_none(), "{r}");
}

#[test]
fn lesson_07_linger_zero_loses_bytes_to_rst() {
    let r = run("07-linger-zero", &[]);
    let sent = num(&r, facts::BYTES_SENT);
    let received = num(&r, facts::BYTES_RECEIVED);
    assert!(sent > 0, "{r}");
    assert!(received < sent, "SO_LINGER 0 should lose bytes: {r}");
    assert_eq!(fact(&r, facts::CLIENT_ERROR), "ECONNRESET", "{r}");
    assert_eq!(num(&r, facts::SERVER_TIME_WAIT), 0, "{r}");
    // The second way: close() with unread data in the receive buffer.
    assert_eq!(fact(&r, facts::UNREAD_CLIENT_ERROR), "ECONNRESET", "{r}");
    assert_eq!(num(&r, facts::UNREAD_SERVER_TIME_WAIT), 0, "{r}");
    // The wire: a RST each time, no FIN, and bytes that never arrived.
    assert_eq!(num(&r, facts::WIRE_SERVER_RST), 1, "{r}");
    assert_eq!(num(&r, facts::WIRE_SERVER_FIN), 0, "{r}");
    assert!(num(&r, facts::WIRE_BYTES_ACKED) < sent, "{r}");
    assert_eq!(num(&r, facts::UNREAD_WIRE_SERVER_RST), 1, "{r}");
}

#[test]
fn lesson_07_graceful_close_delivers_every_byte() {
    let r = run("07-graceful-close", &[]);
    let sent = num(&r, facts::BYTES_SENT);
    assert!(sent > 0, "{r}");
    assert_eq!(num(&r, facts::BYTES_RECEIVED), sent, "{r}");
    assert!(fact(&r, facts::CLIENT_ERROR).is_null(), "{r}");
    assert_eq!(num(&r, facts::SERVER_TIME_WAIT), 1, "{r}");
    assert!(fact(&r, facts::UNREAD_CLIENT_ERROR).is_null(), "{r}");
    assert_eq!(num(&r, facts::UNREAD_SERVER_TIME_WAIT), 1, "{r}");
    assert_eq!(num(&r, facts::WIRE_SERVER_RST), 0, "{r}");
    assert_eq!(num(&r, facts::WIRE_SERVER_FIN), 1, "{r}");
    assert_eq!(num(&r, facts::WIRE_BYTES_ACKED), sent, "{r}");
    assert_eq!(num(&r, facts::UNREAD_WIRE_SERVER_RST), 0, "{r}");
}

#[test]
fn lesson_08_close_too_early_loses_the_reply() {
    let r = run("08-close-too-early", &[]);
    let expected = num(&r, facts::REPLY_BYTES_EXPECTED);
    assert!(num(&r, facts::REPLY_BYTES_RECEIVED) < expected, "{r}");
    let err = fact(&r, facts::SERVER_ERROR).as_str().unwrap_or("none");
    assert!(
        err == "EPIPE" || err == "ECONNRESET",
        "server should see the RST: {r}"
    );
    assert_eq!(num(&r, facts::CLIENT_TIME_WAIT), 0, "{r}");
    assert_eq!(num(&r, facts::HALF_CLOSED_SERVER_CLOSE_WAIT), 1, "{r}");
    assert_eq!(num(&r, facts::HALF_CLOSED_CLIENT_FIN_WAIT2), 1, "{r}");
    // The wire: the client's FIN, then its kernel's RST answering the reply.
    assert_eq!(num(&r, facts::WIRE_CLIENT_FIN), 1, "{r}");
    assert!(num(&r, facts::WIRE_CLIENT_RST) >= 1, "{r}");
}

#[test]
fn lesson_08_shutdown_write_receives_the_reply() {
    let r = run("08-shutdown-write", &[]);
    let expected = num(&r, facts::REPLY_BYTES_EXPECTED);
    assert!(expected > 0);
    assert_eq!(num(&r, facts::REPLY_BYTES_RECEIVED), expected, "{r}");
    assert!(fact(&r, facts::SERVER_ERROR).is_null(), "{r}");
    assert_eq!(num(&r, facts::CLIENT_TIME_WAIT), 1, "{r}");
    assert_eq!(num(&r, facts::HALF_CLOSED_SERVER_CLOSE_WAIT), 1, "{r}");
    assert_eq!(num(&r, facts::HALF_CLOSED_CLIENT_FIN_WAIT2), 1, "{r}");
    assert_eq!(num(&r, facts::WIRE_CLIENT_RST), 0, "{r}");
    assert_eq!(num(&r, facts::WIRE_REPLY_BYTES_ACKED), expected, "{r}");
}

/// A student without root gets the same verdict: sock_diag dumps and /proc/net/netstat need
/// no privileges.
#[test]
fn lesson_07_works_without_root() {
    let r = run_unprivileged("07-linger-zero", &[]);
    assert!(
        num(&r, facts::BYTES_RECEIVED) < num(&r, facts::BYTES_SENT),
        "{r}"
    );
    assert_eq!(fact(&r, facts::CLIENT_ERROR), "ECONNRESET", "{r}");
    assert_eq!(num(&r, facts::SERVER_TIME_WAIT), 0, "{r}");
    // It captured from a user + network namespace of its own.
    assert_eq!(fact(&r, facts::WIRE), true, "{r}");
    assert_eq!(num(&r, facts::WIRE_SERVER_RST), 1, "{r}");
}

/// Where capture is refused (here: no user namespace for uid 65534, as on a host that forbids
/// them), the lessons about the wire say so and grade on the socket states and errors alone,
/// with the same verdicts.
#[test]
fn wire_lessons_fall_back_without_capture() {
    for name in [
        "07-linger-zero",
        "07-graceful-close",
        "08-close-too-early",
        "10-stuck-close-wait",
    ] {
        let r = common::run_unprivileged_with_env(name, &[], &[("TCPLAB_NO_NETNS", "1")]);
        // An ordinary user with no namespace of its own has no CAP_NET_RAW: no capture.
        assert_eq!(fact(&r, facts::WIRE), false, "{name}: {r}");
        assert!(r.get("segments").is_none(), "{name}: {r}");
        assert!(fact(&r, facts::WIRE_SERVER_RST).is_null(), "{name}: {r}");
    }
}
