//! The tracepoint backend leaves nothing behind: no tracefs instance and no private tracefs
//! mount, after a normal stop, a drop, a failure right after arming and a failure inside the
//! running tracer. Also: asking for the tracepoint without root is a Permission error that
//! points at the poll backend.
//!
//! One root test function on purpose (`#[ignore = "needs root"]`): this file is its own
//! process, and running the steps one after another means every `tcplab-<our pid>-*`
//! instance is one of ours. The refusal runs as an ordinary user: as root, the test runs
//! itself again as uid 65534. Left out: the Ctrl-C path, which needs a separate process
//! (exercises/tests/trace_cli.rs).

use std::fs;
use std::process::Command;
use std::time::Duration;

use tcplab_core::Error;
use tcplab_core::observe::trace::{Backend, Fault, TraceConfig, Tracer, is_root};
use tcplab_core::observe::tracefs::{INSTANCE_PREFIX, MOUNT_PREFIX, Tracefs};
use tcplab_core::sockets;

/// Our instances (by pid) and private mounts still present.
fn leftovers() -> (Vec<String>, Vec<String>) {
    let pid = std::process::id();
    let tracefs = Tracefs::open().expect("tracefs");
    let prefix = format!("{INSTANCE_PREFIX}{pid}-");
    let instances = fs::read_dir(tracefs.root().join("instances"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .collect();
    drop(tracefs);
    let mount_prefix = format!("{MOUNT_PREFIX}{pid}-");
    let mounts = fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&mount_prefix))
        .map(str::to_string)
        .collect();
    (instances, mounts)
}

fn assert_clean(step: &str) {
    let (instances, mounts) = leftovers();
    assert!(
        instances.is_empty(),
        "{step}: instances left: {instances:?}"
    );
    assert!(mounts.is_empty(), "{step}: mounts left: {mounts:?}");
}

fn cfg(port: u16, fault: Option<Fault>) -> TraceConfig {
    let cfg = TraceConfig::ports(&[port]).with_backend(Backend::Tracepoint);
    match fault {
        Some(f) => cfg.with_fault(f),
        None => cfg,
    }
}

/// Without root, asking for the tracepoint is a Permission error that points at polling.
#[test]
fn tracepoint_without_root_is_refused() {
    if is_root() {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tracepoint_without_root_is_refused",
                "--nocapture",
            ])
            .output()
            .expect("run setpriv (util-linux)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "as uid 65534:\n{text}");
        assert!(text.contains("1 passed"), "ran as uid 65534:\n{text}");
        return;
    }
    let listener = sockets::loopback_listener(false).unwrap();
    let port = listener.local_addr().unwrap().port();
    match Tracer::start(cfg(port, None)) {
        Err(e @ Error::TracepointNeedsRoot { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("needs root") && msg.contains("poll"), "{msg}");
            assert!(!msg.contains("--"), "core names no CLI flag: {msg}");
        }
        other => panic!("expected TracepointNeedsRoot, got {other:?}"),
    }
}

#[test]
#[ignore = "needs root"]
fn nothing_left_behind() {
    assert!(is_root(), "the tracepoint backend needs root");
    let listener = sockets::loopback_listener(false).unwrap();
    let port = listener.local_addr().unwrap().port();

    // A normal end, with an event on the way.
    let tracer = Tracer::start(cfg(port, None)).unwrap();
    let name = tracer.instance_name().unwrap().to_string();
    assert!(
        leftovers().0.contains(&name),
        "the instance exists while tracing"
    );
    let c = sockets::connect(listener.local_addr().unwrap(), Duration::from_secs(2)).unwrap();
    let (s, _) = listener.accept().unwrap();
    drop((c, s));
    let t = tracer.stop().unwrap();
    assert!(!t.is_empty());
    assert_clean("after stop()");

    // Dropped without stop().
    let tracer = Tracer::start(cfg(port, None)).unwrap();
    drop(tracer);
    assert_clean("after drop");

    // A failure right after the tracepoint was armed.
    let err = Tracer::start(cfg(port, Some(Fault::AfterArm))).unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    assert_clean("after an error in start()");

    // A failure in the running tracer: stop() reports it, and cleans up.
    let tracer = Tracer::start(cfg(port, Some(Fault::InWorker))).unwrap();
    let err = tracer.stop().unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    assert_clean("after an error in the tracer thread");

    // Without root the tracepoint is refused with a pointer to the poll backend: checked in
    // a child that drops privileges (trace_cli.rs); here, Auto as root picks the tracepoint.
    let tracer = Tracer::start(TraceConfig::ports(&[port])).unwrap();
    assert_eq!(tracer.backend(), Backend::Tracepoint);
    drop(tracer);
    assert_clean("after auto");
}
