//! For tests that capture on `lo`: run here as root, otherwise run the same test again in a
//! user + network namespace of its own (`unshare -rn`), where an ordinary user may open an
//! AF_PACKET socket, and check that run. Shared by the capture tests of core and of the
//! runner (included with `#[path]`, as test crates cannot depend on each other).

use std::process::Command;

use tcplab_core::observe::trace::is_root;

/// Set in the re-run inside the namespace.
pub const IN_NS: &str = "TCPLAB_TEST_IN_NETNS";

/// `true`: go on with the test in this process. `false`: it already ran, and passed, in a
/// namespace.
pub fn here_or_in_namespace(name: &str) -> bool {
    if std::env::var_os(IN_NS).is_some() {
        // A new network namespace starts with `lo` down.
        tcplab_core::sockets::loopback_up().expect("bring lo up in the new namespace");
        return true;
    }
    if is_root() {
        return true;
    }
    let out = Command::new("unshare")
        .arg("-rn")
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(IN_NS, "1")
        .output()
        .expect("run unshare");
    assert!(
        out.status.success(),
        "{name} in a user + network namespace failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    false
}
