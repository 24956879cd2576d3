//! Lessons 04, 07 and 08, run as a student runs them (`BINARY --json`): each binary must give
//! the verdict the catalog expects, and the facts the lesson teaches must hold as the kernel
//! reported them. Every lesson uses its own port 0 listener and counts only its own sockets,
//! so these tests run in parallel with anything else on the machine.

mod common;

use common::{fact, num, run, run_unprivileged};

#[test]
fn lesson_04_async_leak_keeps_every_socket_in_close_wait() {
    let r = run("04-async-leak", &[]);
    let n = num(&r, "connections");
    assert_eq!(n, 10);
    assert_eq!(num(&r, "server_close_wait"), n, "{r}");
    assert_eq!(num(&r, "client_fin_wait2"), n, "{r}");
    assert_eq!(num(&r, "client_time_wait"), 0, "{r}");
    assert_eq!(r["observed"]["server"]["CLOSE_WAIT"], n);
}

#[test]
fn lesson_04_async_fixed_closes_every_socket() {
    let r = run("04-async-fixed", &[]);
    let n = num(&r, "connections");
    assert_eq!(num(&r, "server_close_wait"), 0, "{r}");
    assert_eq!(num(&r, "client_fin_wait2"), 0, "{r}");
    assert_eq!(num(&r, "client_time_wait"), n, "{r}");
    assert!(r["observed"]["server"].get("CLOSE_WAIT").is_none(), "{r}");
}

#[test]
fn lesson_07_linger_zero_loses_bytes_to_rst() {
    let r = run("07-linger-zero", &[]);
    let sent = num(&r, "bytes_sent");
    let received = num(&r, "bytes_received");
    assert!(sent > 0, "{r}");
    assert!(received < sent, "SO_LINGER 0 should lose bytes: {r}");
    assert_eq!(fact(&r, "client_error"), "ECONNRESET", "{r}");
    assert_eq!(num(&r, "server_time_wait"), 0, "{r}");
    // The second way: close() with unread data in the receive buffer.
    assert_eq!(fact(&r, "unread_client_error"), "ECONNRESET", "{r}");
    assert_eq!(num(&r, "unread_server_time_wait"), 0, "{r}");
}

#[test]
fn lesson_07_graceful_close_delivers_every_byte() {
    let r = run("07-graceful-close", &[]);
    let sent = num(&r, "bytes_sent");
    assert!(sent > 0, "{r}");
    assert_eq!(num(&r, "bytes_received"), sent, "{r}");
    assert!(fact(&r, "client_error").is_null(), "{r}");
    assert_eq!(num(&r, "server_time_wait"), 1, "{r}");
    assert!(fact(&r, "unread_client_error").is_null(), "{r}");
    assert_eq!(num(&r, "unread_server_time_wait"), 1, "{r}");
}

#[test]
fn lesson_08_close_too_early_loses_the_reply() {
    let r = run("08-close-too-early", &[]);
    let expected = num(&r, "reply_bytes_expected");
    assert!(num(&r, "reply_bytes_received") < expected, "{r}");
    let err = fact(&r, "server_error").as_str().unwrap_or("none");
    assert!(
        err == "EPIPE" || err == "ECONNRESET",
        "server should see the RST: {r}"
    );
    assert_eq!(num(&r, "client_time_wait"), 0, "{r}");
    assert_eq!(num(&r, "half_closed_server_close_wait"), 1, "{r}");
    assert_eq!(num(&r, "half_closed_client_fin_wait2"), 1, "{r}");
}

#[test]
fn lesson_08_shutdown_write_receives_the_reply() {
    let r = run("08-shutdown-write", &[]);
    let expected = num(&r, "reply_bytes_expected");
    assert!(expected > 0);
    assert_eq!(num(&r, "reply_bytes_received"), expected, "{r}");
    assert!(fact(&r, "server_error").is_null(), "{r}");
    assert_eq!(num(&r, "client_time_wait"), 1, "{r}");
    assert_eq!(num(&r, "half_closed_server_close_wait"), 1, "{r}");
    assert_eq!(num(&r, "half_closed_client_fin_wait2"), 1, "{r}");
}

/// A student without root gets the same verdict: sock_diag dumps and /proc/net/netstat need
/// no privileges.
#[test]
fn lesson_07_works_without_root() {
    let r = run_unprivileged("07-linger-zero", &[]);
    assert!(num(&r, "bytes_received") < num(&r, "bytes_sent"), "{r}");
    assert_eq!(fact(&r, "client_error"), "ECONNRESET", "{r}");
    assert_eq!(num(&r, "server_time_wait"), 0, "{r}");
}
