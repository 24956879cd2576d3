//! The capture against real loopback traffic: four ways a connection ends, each checked
//! segment by segment (who sent it, flags, relative seq/ack, payload length), and a capture
//! made by uid 65534 inside a user + network namespace of its own.
//!
//! Root captures on the host's `lo`. Any other user runs each test again inside
//! `unshare -rn` (a user + network namespace where it may open AF_PACKET sockets), so the
//! tests run, not skip, either way. Delayed ACKs would make the ladders vary (an ACK may
//! ride on the next segment), so the programs pause 250 ms wherever the kernel may hold an
//! ACK back: longer than Linux's largest delayed-ACK timeout (200 ms).
//!
//! Left out on purpose: IPv6 (the parser is tested on IPv6 bytes), and loss.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use tcplab_core::TcpState;
use tcplab_core::observe::capture::{self, CaptureConfig, CaptureReport};
use tcplab_core::observe::trace::{Backend, TraceConfig, Tracer};
use tcplab_core::segment::Flag;

mod support {
    pub mod in_netns;
}

use support::in_netns::{IN_NS, here_or_in_namespace};
use tcplab_core::observe::trace::is_root;

const PAUSE: Duration = Duration::from_millis(250);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// One segment as the test compares it: direction, flags, relative seq and ack, length.
type Row = (&'static str, String, u32, u32, u32);

/// Start a listener and a capture on its port, run `scenario`, stop, and return the
/// segments as rows (client to server is `C>S`).
fn capture_scenario(scenario: impl FnOnce(TcpListener, SocketAddr)) -> (Vec<Row>, CaptureReport) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let cap = capture::loopback(&[server.port()], None).expect("capture starts");
    scenario(listener, server);
    thread::sleep(Duration::from_millis(50));
    let report = cap.finish().expect("capture stops");
    let rows = report
        .segments
        .iter()
        .map(|s| {
            let dir = if s.dst == server { "C>S" } else { "S>C" };
            (dir, s.flags.to_string(), s.seq, s.ack, s.len)
        })
        .collect();
    (rows, report)
}

fn connect(server: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&server, IO_TIMEOUT).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn accept(listener: &TcpListener) -> TcpStream {
    let (s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

fn read_to_eof(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    buf
}

fn row(dir: &'static str, flags: &str, seq: u32, ack: u32, len: u32) -> Row {
    (dir, flags.to_string(), seq, ack, len)
}

fn handshake() -> Vec<Row> {
    vec![
        row("C>S", "SYN", 0, 0, 0),
        row("S>C", "SYN, ACK", 0, 1, 0),
        row("C>S", "ACK", 1, 1, 0),
    ]
}

#[test]
fn client_closes_first() {
    if !here_or_in_namespace("client_closes_first") {
        return;
    }
    let (rows, report) = capture_scenario(|listener, server| {
        let mut c = connect(server);
        let mut s = accept(&listener);
        c.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        s.read_exact(&mut got).unwrap();
        thread::sleep(PAUSE);
        drop(c); // FIN from the client
        assert!(read_to_eof(&mut s).is_empty());
        thread::sleep(PAUSE);
        drop(s); // the server's FIN
        thread::sleep(PAUSE);
    });
    let mut want = handshake();
    want.extend([
        row("C>S", "PSH, ACK", 1, 1, 5),
        row("S>C", "ACK", 1, 6, 0),
        row("C>S", "FIN, ACK", 6, 1, 0),
        row("S>C", "ACK", 1, 7, 0),
        row("S>C", "FIN, ACK", 1, 7, 0),
        row("C>S", "ACK", 7, 2, 0),
    ]);
    assert_eq!(rows, want);
    assert_eq!(report.stats.kernel_drops, 0);
    // One copy of each frame: the kernel skipped the outgoing ones.
    assert_eq!(report.stats.segments, want.len() as u64);
    let syn = &report.segments[0];
    assert!(syn.options.mss.is_some() && syn.options.sack_permitted);
    assert!(syn.options.timestamps.is_some() && syn.options.wscale.is_some());
    assert!(report.segments.windows(2).all(|w| w[0].t_us <= w[1].t_us));
}

#[test]
fn server_closes_first() {
    if !here_or_in_namespace("server_closes_first") {
        return;
    }
    let (rows, _) = capture_scenario(|listener, server| {
        let mut c = connect(server);
        let mut s = accept(&listener);
        s.write_all(b"bye").unwrap();
        thread::sleep(PAUSE);
        drop(s);
        assert_eq!(read_to_eof(&mut c), b"bye");
        thread::sleep(PAUSE);
        drop(c);
        thread::sleep(PAUSE);
    });
    let mut want = handshake();
    want.extend([
        row("S>C", "PSH, ACK", 1, 1, 3),
        row("C>S", "ACK", 1, 4, 0),
        row("S>C", "FIN, ACK", 4, 1, 0),
        row("C>S", "ACK", 1, 5, 0),
        row("C>S", "FIN, ACK", 1, 5, 0),
        row("S>C", "ACK", 5, 2, 0),
    ]);
    assert_eq!(rows, want);
}

#[test]
fn linger_zero_aborts_with_unread_data() {
    if !here_or_in_namespace("linger_zero_aborts_with_unread_data") {
        return;
    }
    let (rows, _) = capture_scenario(|listener, server| {
        let mut c = connect(server);
        let mut s = accept(&listener);
        // The server never reads these bytes: they sit in its receive queue.
        c.write_all(b"in flight").unwrap();
        thread::sleep(PAUSE);
        socket2::SockRef::from(&c)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(c); // SO_LINGER {on, 0}: a RST, no FIN, no TIME_WAIT
        thread::sleep(PAUSE);
        // The reset reaches the server: it may still read the bytes already queued, then
        // its read fails with ECONNRESET.
        let mut buf = [0u8; 64];
        let err = (0..3).find_map(|_| s.read(&mut buf).err());
        assert_eq!(
            err.map(|e| e.kind()),
            Some(std::io::ErrorKind::ConnectionReset)
        );
    });
    let mut want = handshake();
    want.extend([
        row("C>S", "PSH, ACK", 1, 1, 9),
        row("S>C", "ACK", 1, 10, 0),
        row("C>S", "RST, ACK", 10, 1, 0),
    ]);
    assert_eq!(rows, want);
}

#[test]
fn half_close_then_reply() {
    if !here_or_in_namespace("half_close_then_reply") {
        return;
    }
    let (rows, _) = capture_scenario(|listener, server| {
        let mut c = connect(server);
        let mut s = accept(&listener);
        c.write_all(b"request").unwrap();
        thread::sleep(PAUSE);
        c.shutdown(Shutdown::Write).unwrap(); // FIN, but the client still reads
        assert_eq!(read_to_eof(&mut s), b"request");
        thread::sleep(PAUSE);
        s.write_all(b"reply").unwrap();
        thread::sleep(PAUSE);
        drop(s);
        assert_eq!(read_to_eof(&mut c), b"reply");
        thread::sleep(PAUSE);
        drop(c);
        thread::sleep(PAUSE);
    });
    let mut want = handshake();
    want.extend([
        row("C>S", "PSH, ACK", 1, 1, 7),
        row("S>C", "ACK", 1, 8, 0),
        row("C>S", "FIN, ACK", 8, 1, 0),
        row("S>C", "ACK", 1, 9, 0),
        row("S>C", "PSH, ACK", 1, 9, 5),
        row("C>S", "ACK", 9, 6, 0),
        row("S>C", "FIN, ACK", 6, 9, 0),
        row("C>S", "ACK", 9, 7, 0),
    ]);
    assert_eq!(rows, want);
}

/// The body of [`nobody_in_a_user_namespace_sees_fins`], run as uid 65534 in `unshare -rn`.
/// Run directly (as root, or via the namespace re-run), it is one more capture check.
#[test]
fn userns_capture_sees_fins() {
    if here_or_in_namespace("userns_capture_sees_fins") {
        capture_sees_fins();
    }
}

fn capture_sees_fins() {
    let (rows, _) = capture_scenario(|listener, server| {
        let c = connect(server);
        let mut s = accept(&listener);
        drop(c);
        read_to_eof(&mut s);
        drop(s);
        thread::sleep(PAUSE);
    });
    let fins: Vec<&str> = rows
        .iter()
        .filter(|r| r.1.contains("FIN"))
        .map(|r| r.0)
        .collect();
    assert_eq!(fins, ["C>S", "S>C"], "rows: {rows:?}");
}

#[test]
fn nobody_in_a_user_namespace_sees_fins() {
    if !is_root() || std::env::var_os(IN_NS).is_some() {
        // Not root: setpriv cannot switch to uid 65534; this user in a namespace of its
        // own is the same case.
        if here_or_in_namespace("nobody_in_a_user_namespace_sees_fins") {
            capture_sees_fins();
        }
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "unshare",
            "-rn",
        ])
        .arg(&exe)
        .args(["--exact", "userns_capture_sees_fins", "--nocapture"])
        .env(IN_NS, "1")
        .output()
        .expect("run setpriv");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "as uid 65534:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the test ran as uid 65534:\n{text}"
    );
}

#[test]
fn refused_capture_says_why_in_one_line() {
    if !is_root() && std::env::var_os(IN_NS).is_none() {
        // An ordinary user on the host: this is the refusal itself.
        let e = capture::loopback(&[1], None).unwrap_err().to_string();
        assert!(e.contains("CAP_NET_RAW") && !e.contains('\n'), "{e}");
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&exe)
        .args([
            "--exact",
            "refused_capture_says_why_in_one_line",
            "--nocapture",
        ])
        .output()
        .expect("run setpriv");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A megabyte in flight: the ring holds only the first bytes of each frame, yet every
/// segment's length, from the IP header, adds up to what was sent, and nothing is dropped.
#[test]
fn a_megabyte_is_counted_from_headers() {
    if !here_or_in_namespace("a_megabyte_is_counted_from_headers") {
        return;
    }
    const SIZE: usize = 1 << 20;
    let (_, report) = capture_scenario(|listener, server| {
        let mut c = connect(server);
        let mut s = accept(&listener);
        let reader = thread::spawn(move || read_to_eof(&mut s).len());
        c.write_all(&vec![7u8; SIZE]).unwrap();
        drop(c);
        assert_eq!(reader.join().unwrap(), SIZE);
        thread::sleep(PAUSE);
    });
    let sent: u64 = report
        .segments
        .iter()
        .filter(|s| s.dst == report.segments[0].dst)
        .map(|s| u64::from(s.len))
        .sum();
    assert_eq!(sent, SIZE as u64);
    assert_eq!(report.stats.kernel_drops, 0);
    assert!(report.frames.iter().all(|f| f.data.len() <= 256));
    assert!(report.frames.iter().any(|f| f.len as usize > 1000));
}

/// The history is bounded: past `max_segments` the capture keeps counting but keeps nothing
/// more, and says so when it finishes.
#[test]
fn history_is_bounded() {
    if !here_or_in_namespace("history_is_bounded") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let cap = capture::Capture::start(CaptureConfig {
        max_segments: 4,
        ..CaptureConfig::lesson(&[server.port()], None)
    })
    .expect("capture starts");
    for _ in 0..3 {
        let mut c = connect(server);
        let mut s = accept(&listener);
        drop(c.write_all(b"x"));
        drop(c);
        read_to_eof(&mut s);
    }
    thread::sleep(Duration::from_millis(50));
    let report = cap.finish().expect("capture stops");
    assert_eq!(report.segments.len(), 4);
    assert_eq!(report.frames.len(), 4);
    assert_eq!(report.stats.segments, 4);
    // Three connections of at least seven segments each (handshake, data and its ACK, two
    // FINs, the last ACK): the rest were counted, not kept.
    assert!(report.stats.over_limit >= 3 * 7 - 4, "{:?}", report.stats);
    assert!(
        report.warnings.iter().any(|w| w.contains("left out")),
        "{:?}",
        report.warnings
    );
}

/// A segment's time is on CLOCK_MONOTONIC from the origin, like the tracer's events: the
/// SYN lies between two readings of `Instant` taken around connect().
#[test]
fn times_share_the_tracer_clock() {
    if !here_or_in_namespace("times_share_the_tracer_clock") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let origin = Instant::now();
    thread::sleep(Duration::from_millis(20));
    let cap = capture::loopback(&[server.port()], Some(origin)).unwrap();
    let before = origin.elapsed().as_micros() as u64;
    let c = connect(server);
    let after = origin.elapsed().as_micros() as u64;
    drop(c);
    thread::sleep(Duration::from_millis(20));
    let report = cap.finish().unwrap();
    let syn = &report.segments[0];
    assert!(syn.has(Flag::Syn));
    // The clocks' offset is read to within a few microseconds on a quiet machine; a loaded
    // one can preempt the reading, so allow a millisecond (two clocks would be apart by far
    // more: seconds, or the time since boot).
    assert!(
        before <= syn.t_us + 1_000 && syn.t_us <= after + 1_000,
        "SYN at {} us, connect() between {before} and {after} us",
        syn.t_us
    );
}

/// Tracer and capture in one Timeline: the server's `ESTABLISHED -> CLOSE_WAIT` is linked to
/// the client's FIN, which (with the tracepoint) came a moment before it on the same clock.
#[test]
fn one_timeline_links_the_fin_to_close_wait() {
    if !here_or_in_namespace("one_timeline_links_the_fin_to_close_wait") {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let tracer = Tracer::start(TraceConfig::ports(&[server.port()])).unwrap();
    let cap = capture::loopback(&[server.port()], Some(tracer.started())).unwrap();
    let c = connect(server);
    let mut s = accept(&listener);
    thread::sleep(Duration::from_millis(20));
    drop(c);
    read_to_eof(&mut s);
    thread::sleep(Duration::from_millis(20));
    drop(s);
    thread::sleep(Duration::from_millis(50));
    let report = cap.finish().unwrap();
    let backend = tracer.backend();
    let timeline = tracer.stop().unwrap().with_segments(report.segments);
    let i = timeline
        .events
        .iter()
        .position(|e| e.local == server && e.to == TcpState::CloseWait)
        .expect("the server went to CLOSE_WAIT");
    let fin = timeline.cause_of(i).expect("a cause on the wire");
    assert!(fin.has(Flag::Fin) && fin.dst == server, "{fin}");
    eprintln!(
        "backend {backend}: FIN at {} us, CLOSE_WAIT at {} us",
        fin.t_us, timeline.events[i].t_us
    );
    // One clock: the FIN and the state change it caused are close together. Not a timing
    // test: the bound is loose (milliseconds), because the packet's stamp and the tracepoint's
    // are taken at different points of the receive path, and a loaded machine moves them
    // apart by a few hundred microseconds (seen: the state 137 us before the frame's stamp).
    // Two clocks would be apart by seconds or by the time since boot.
    if backend == Backend::Tracepoint {
        let e = &timeline.events[i];
        assert!(
            fin.t_us <= e.t_us + 2_000 && e.t_us < fin.t_us + 5_000,
            "FIN at {} us, CLOSE_WAIT at {} us",
            fin.t_us,
            e.t_us
        );
    }
    let json = serde_json::to_string(&timeline).unwrap();
    assert!(json.contains("\"segments\"") && json.contains("CLOSE_WAIT"));
}

#[test]
fn flags_and_config_are_checked() {
    let many: Vec<u16> = (1..=100).collect();
    let e = capture::Capture::start(CaptureConfig::loopback(&many)).unwrap_err();
    assert!(e.to_string().contains("at most"), "{e}");
    let e = capture::Capture::start(CaptureConfig {
        interface: "no-such-if0".into(),
        ..CaptureConfig::loopback(&[1])
    })
    .unwrap_err();
    assert!(e.to_string().contains("no-such-if0"), "{e}");
    assert_eq!(Flag::Fin.to_string(), "FIN");
}
