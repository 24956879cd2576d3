//! The narrated output of every lesson binary, as insta snapshots with what varies from run
//! to run (ports, times, pids, timers, rates) redacted. The book includes these files, so its
//! transcripts come from real runs and a change in a lesson's story fails this test until the
//! snapshot is reviewed (`cargo insta review`).
//!
//! Recorded as root, where the tracer uses the tracepoint and lesson 11 may destroy sockets;
//! as another user the narration differs in those places, so these tests are
//! `#[ignore = "needs root"]` (`scripts/test-all` runs them when it is root).

use std::path::Path;
use std::process::Command;

use tcplab_core::netns::NO_NETNS_ENV;
use tcplab_exercises::catalog::Catalog;

/// Replace what varies between runs with a placeholder.
fn filters() -> Vec<(&'static str, &'static str)> {
    vec![
        // The tracer line names the backend, an instance and a mount point.
        (
            r"(?m)^    watching port .*$",
            "    watching port [PORT] with [BACKEND]",
        ),
        (r":\d{4,5}\b", ":[PORT]"),
        (r"(?i)\b(ports?) \d{4,5}\b", "$1 [PORT]"),
        (r"\bpids? \[[\d, ]+\]", "pid [PIDS]"),
        (r"\bpid \d+", "pid [PID]"),
        (r"/proc/\d+/", "/proc/[PID]/"),
        (r"\binode \d+", "inode [INODE]"),
        (r"\d+(\.\d+)? ?(ms|us|µs)\b", "[N] $2"),
        (r"\b\d+\.\d+ ?(s|sec|seconds)\b", "[T] s"),
        (r"\b\d+(\.\d+)?[kK]?/s\b", "[RATE]/s"),
        (
            r"\b\d[\d,]*(\.\d+)? (connections|requests)/s\b",
            "[RATE] $2/s",
        ),
        (r"tcplab-\d+-\d+", "tcplab-[ID]"),
        // Machine-wide kernel counters move with whatever else runs.
        (r"grew by \d+", "grew by [N]"),
        (r"meanwhile: \d+", "meanwhile: [N]"),
        (r"/tmp/tcplab-tracefs-\S+", "[MOUNT]"),
    ]
}

/// A timer read just after it started at 60 s (TIME_WAIT, or an orphaned FIN_WAIT2 with
/// tcp_fin_timeout 60): kept as a range, so the transcript still says how long it runs and
/// fails if the kernel ever starts it elsewhere.
const SIXTY_SECOND_TIMER: (&str, &str) = (r"\b(5\d|60)\.\d s\b", "[50-60] s");

/// Numbers that vary in one lesson only (the rest of the book shows them as they are).
fn filters_for(name: &str) -> Vec<(&'static str, &'static str)> {
    match name {
        "02-four-way-close" | "15-rst-handling" => vec![SIXTY_SECOND_TIMER],
        // Lesson 10's point is that the reconnect is late by a retransmission, yet fast: the
        // client resends its SYN at once after the RST, not after the 1 s timeout.
        "10-stuck-close-wait" => {
            vec![(r"connected after \d{1,3} ms", "connected after [0-999] ms")]
        }
        // How far the queue got before the accept thread drained it is a race.
        "01-accepts" => vec![
            (r"accept queue now \d+", "accept queue now [Q]"),
            (r"queue peaked at \d+", "queue peaked at [Q]"),
        ],
        // How much reached the client before the RST depends on scheduling.
        "07-linger-zero" => vec![
            (r"read \d+ bytes, then", "read [BYTES] bytes, then"),
            (r"\d+ bytes never arrived", "[BYTES] bytes never arrived"),
            (r"RST lost \d+ of", "RST lost [BYTES] of"),
            (
                r"\d+ of the (\d+) bytes left it, the client acknowledged \d+: \d+ were in flight when it ended, \d+ never left",
                "[BYTES] of the $1 bytes left it, the client acknowledged [BYTES]: [BYTES] were in flight when it ended, [BYTES] never left",
            ),
            (
                r"acknowledged \d+ of (\d+) bytes and read \d+",
                "acknowledged [BYTES] of $1 bytes and read [BYTES]",
            ),
        ],
        // A slow run lets a later connection take over an earlier one's TIME_WAIT 4-tuple, so
        // the count may fall a little short of 200 (the lesson says so when it happens).
        "05-server-closes-first" | "05-client-closes-first" => vec![
            (
                r"(?m)^    \d+ of the \d+ connections left no TIME_WAIT.*\n",
                "",
            ),
            (r"(TIME_WAIT|all) (1[89]\d|200)\b", "$1 [about 200]"),
            (r"\b(1[89]\d|200) TIME_WAIT", "[about 200] TIME_WAIT"),
            SIXTY_SECOND_TIMER,
        ],
        // Without a namespace the client's 100 ports are cut from the machine's range, around
        // the listener's port, and a port in it that another program bound (a listener of a
        // test running beside) is no use to connect(): the count may fall a little short.
        "09-port-exhaustion-churn-no-netns" | "09-port-exhaustion-pool-no-netns" => vec![
            (
                r"IP_LOCAL_PORT_RANGE = \d+ \d+",
                "IP_LOCAL_PORT_RANGE = [LOW] [HIGH]",
            ),
            (r"whole range \d+ \d+", "whole range [LOW] [HIGH]"),
            (
                r"\b(9\d|100) (connections|requests|client sockets)",
                "[about 100] $2",
            ),
            (r"TIME_WAIT (9\d|100)\b", "TIME_WAIT [about 100]"),
            (r"shows (9\d|100) TIME_WAIT", "shows [about 100] TIME_WAIT"),
        ],
        _ => Vec::new(),
    }
}

fn binary(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_BIN_EXE_tcplab")).with_file_name(name)
}

use tcplab_core::kernel::is_root;

fn transcript(name: &str) {
    transcript_as(name, name, &[]);
}

/// Record `name`'s transcript as the snapshot `snapshot`, with `env` set for the lesson.
fn transcript_as(name: &str, snapshot: &str, env: &[(&str, &str)]) {
    assert!(
        is_root(),
        "transcripts are recorded as root (the tracepoint backend)"
    );
    let out = Command::new(binary(name))
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut settings = insta::Settings::clone_current();
    for (pattern, replacement) in filters_for(snapshot).into_iter().chain(filters()) {
        settings.add_filter(pattern, replacement);
    }
    settings.set_prepend_module_to_snapshot(true);
    settings.bind(|| insta::assert_snapshot!(snapshot.to_string(), text));
}

macro_rules! transcripts {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(#[test] #[ignore = "needs root"] fn $test() { transcript($name); })*

        /// Every catalog binary has a transcript test above.
        #[test]
        fn every_binary_has_a_transcript() {
            let listed: Vec<&str> = vec![$($name),*];
            for name in Catalog::builtin().binary_names() {
                assert!(listed.contains(&name), "{name} has no transcript test");
            }
        }
    };
}

transcripts! {
    t01_full => "01-accept-queue-full",
    t01_accepts => "01-accepts",
    t02 => "02-four-way-close",
    t03_leak => "03-close-wait-leak",
    t03_fixed => "03-close-wait-fixed",
    t04_leak => "04-async-leak",
    t04_fixed => "04-async-fixed",
    t05_server => "05-server-closes-first",
    t05_client => "05-client-closes-first",
    t06_no => "06-restart-no-reuseaddr",
    t06_yes => "06-restart-reuseaddr",
    t07_zero => "07-linger-zero",
    t07_graceful => "07-graceful-close",
    t08_early => "08-close-too-early",
    t08_shutdown => "08-shutdown-write",
    t09_churn => "09-port-exhaustion-churn",
    t09_pool => "09-port-exhaustion-pool",
    t10_stuck => "10-stuck-close-wait",
    t10_fixed => "10-fixed-server",
    t11_leak => "11-mystery-leak",
    t11_fix => "11-find-and-fix",
    t12_leak => "12-half-open-leak",
    t12_keepalive => "12-half-open-keepalive",
    t13 => "13-lost-last-ack",
    t14 => "14-simultaneous-close",
    t15 => "15-rst-handling",
    t16_orphan => "16-zero-window-orphan",
    t16_fixed => "16-zero-window-fixed",
}

/// Lesson 09 where no private network namespace can be made (a default container), forced
/// with the lesson's environment variable.
#[test]
#[ignore = "needs root"]
fn t09_churn_without_a_namespace() {
    transcript_as(
        "09-port-exhaustion-churn",
        "09-port-exhaustion-churn-no-netns",
        &[(NO_NETNS_ENV, "1")],
    );
}

#[test]
#[ignore = "needs root"]
fn t09_pool_without_a_namespace() {
    transcript_as(
        "09-port-exhaustion-pool",
        "09-port-exhaustion-pool-no-netns",
        &[(NO_NETNS_ENV, "1")],
    );
}
