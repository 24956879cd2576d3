//! `tcplab trace` as a user runs it: Ctrl-C and SIGTERM end it cleanly (exit 0, no tracefs
//! instance, no private mount left), and an unprivileged user gets the poll backend, is told
//! so on stderr, and still sees the connection's events. The signal tests use the tracepoint
//! and are `#[ignore = "needs root"]`; the unprivileged ones run as uid 65534 when root, and
//! as the user running them otherwise.
//!
//! Each test makes its own listener on an ephemeral port and traces only that port. Left
//! out on purpose: the table format's exact spacing (the JSON form is what scripts read).

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use tcplab_core::observe::trace::is_root;
use tcplab_core::observe::tracefs::{INSTANCE_PREFIX, MOUNT_PREFIX, Tracefs};
use tcplab_core::sockets;

const BIN: &str = env!("CARGO_BIN_EXE_tcplab");

/// Stderr lines as they come, and the rest of stdout at the end.
struct Running {
    child: Child,
    stderr: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
}

fn spawn(cmd: &mut Command) -> Running {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tcplab");
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    Running {
        child,
        stderr: rx,
        stderr_seen: Vec::new(),
    }
}

impl Running {
    /// Wait for the "... backend: ..." line: the tracer is armed once it is printed.
    fn wait_armed(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(line) = self.stderr.recv_timeout(Duration::from_millis(100)) {
                self.stderr_seen.push(line.clone());
                if line.contains("backend:") {
                    return line;
                }
            }
        }
        panic!(
            "tcplab trace never said it was armed: {:?}",
            self.stderr_seen
        );
    }

    fn finish(mut self) -> (std::process::ExitStatus, String, String) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("tcplab trace did not exit");
            }
            sleep(Duration::from_millis(10));
        };
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        while let Ok(l) = self.stderr.recv_timeout(Duration::from_millis(200)) {
            self.stderr_seen.push(l);
        }
        (status, out, self.stderr_seen.join("\n"))
    }
}

/// A loopback connection on the listener, closed client first.
fn connect_and_close(listener: &std::net::TcpListener) -> u16 {
    let c = sockets::connect(listener.local_addr().unwrap(), Duration::from_secs(2)).unwrap();
    let (s, _) = listener.accept().unwrap();
    let port = c.local_addr().unwrap().port();
    sleep(Duration::from_millis(20));
    drop(c);
    sleep(Duration::from_millis(20));
    drop(s);
    sleep(Duration::from_millis(50));
    port
}

fn json_events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .collect()
}

fn signal_ends_cleanly(signal: i32) {
    assert!(is_root(), "the tracepoint backend needs root");
    let listener = sockets::loopback_listener(false).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut run = spawn(Command::new(BIN).args([
        "trace",
        "--port",
        &port.to_string(),
        "--backend",
        "tracepoint",
        "--json",
    ]));
    let pid = run.child.id();
    let note = run.wait_armed();
    assert!(note.contains("tracepoint"), "{note}");
    let client_port = connect_and_close(&listener);
    // SAFETY: kill() with a pid we spawned and a valid signal number.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
    let (status, stdout, stderr) = run.finish();
    assert!(status.success(), "exit {status:?}, stderr: {stderr}");
    let events = json_events(&stdout);
    assert!(
        events
            .iter()
            .any(|e| e["local"] == format!("127.0.0.1:{client_port}")
                && e["to"] == "TIME_WAIT"
                && e["source"] == "diag"),
        "{stdout}\nstderr: {stderr}"
    );
    for e in &events {
        for key in ["t_us", "local", "remote", "from", "to", "source"] {
            assert!(e.get(key).is_some(), "{key} missing in {e}");
        }
    }
    // Nothing left: no instance named after the child, no private mount of it.
    let tracefs = Tracefs::open().unwrap();
    let prefix = format!("{INSTANCE_PREFIX}{pid}-");
    let left: Vec<String> = fs::read_dir(tracefs.root().join("instances"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    drop(tracefs);
    assert!(left.is_empty(), "instances left: {left:?}");
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    let mount_prefix = format!("{MOUNT_PREFIX}{pid}-");
    assert!(!mounts.contains(&mount_prefix), "mount left:\n{mounts}");
}

#[test]
#[ignore = "needs root"]
fn sigint_ends_cleanly() {
    signal_ends_cleanly(libc::SIGINT);
}

#[test]
#[ignore = "needs root"]
fn sigterm_ends_cleanly() {
    signal_ends_cleanly(libc::SIGTERM);
}

/// A copy of the binary in a 0755 temp directory, so uid 65534 can run it whatever the
/// permissions on the build directory; removed on drop.
struct NobodyBinary {
    /// The copy's folder, removed on drop (none when the runner runs in place).
    dir: Option<PathBuf>,
    bin: PathBuf,
}

impl Drop for NobodyBinary {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// The runner as an unprivileged user: as root, a copy in a world-readable folder run as
/// uid 65534 (nobody) through `setpriv`; as anyone else, the runner itself.
fn binary_for_nobody(test: &str) -> NobodyBinary {
    if !is_root() {
        return NobodyBinary {
            dir: None,
            bin: PathBuf::from(BIN),
        };
    }
    let dir = std::env::temp_dir().join(format!("tcplab-cli-{}-{test}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.join("tcplab");
    fs::copy(BIN, &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    NobodyBinary {
        dir: Some(dir),
        bin,
    }
}

fn as_nobody(bin: &PathBuf, args: &[&str]) -> Command {
    let mut cmd = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(args);
    cmd
}

#[test]
fn unprivileged_user_polls_and_sees_events() {
    let nobody = binary_for_nobody("poll");
    let bin = &nobody.bin;
    let listener = sockets::loopback_listener(false).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let mut run = spawn(&mut as_nobody(
        bin,
        &["trace", "--port", &port, "--duration", "2", "--json"],
    ));
    let note = run.wait_armed();
    assert!(note.contains("poll backend"), "{note}");
    assert!(note.contains("needs root"), "{note}");
    let client_port = connect_and_close(&listener);
    let (status, stdout, stderr) = run.finish();
    assert!(status.success(), "exit {status:?}, stderr: {stderr}");
    let events = json_events(&stdout);
    let client = format!("127.0.0.1:{client_port}");
    let mine: Vec<&serde_json::Value> = events.iter().filter(|e| e["local"] == client).collect();
    assert!(
        mine.iter()
            .any(|e| e["to"] == "TIME_WAIT" && e["source"] == "poll"),
        "{stdout}"
    );
    assert!(
        mine.iter()
            .any(|e| e["to"] == "SYN_SENT" && e["source"] == "inferred"),
        "{stdout}"
    );
    assert!(events.iter().all(|e| e["source"] != "tracepoint"));
}

#[test]
fn unprivileged_tracepoint_is_refused_with_a_way_out() {
    let nobody = binary_for_nobody("refused");
    let out = as_nobody(
        &nobody.bin,
        &["trace", "--backend", "tracepoint", "--duration", "1"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs root"), "{stderr}");
    assert!(stderr.contains("--backend poll"), "{stderr}");
}
