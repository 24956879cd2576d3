//! `tcplab doctor`: what this machine and this user can do, and what the sysctls that shape
//! the lessons are set to. Each line says `ok`, `note` or `fix` and what to do about it.

use std::fs;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::Result;
use clap::Args;
use tcplab_core::observe::{self, Method, Query};

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
}

/// One finding: `ok` (works), `note` (works, with something to know) or `fix` (needs action).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Finding {
    pub check: String,
    pub status: &'static str,
    pub value: String,
    pub meaning: String,
}

fn finding(
    check: &str,
    status: &'static str,
    value: impl Into<String>,
    meaning: impl Into<String>,
) -> Finding {
    Finding {
        check: check.to_string(),
        status,
        value: value.into(),
        meaning: meaning.into(),
    }
}

fn read_trim(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Run every check.
pub fn findings() -> Vec<Finding> {
    let mut out = Vec::new();
    let kernel = read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into());
    let major: u32 = kernel
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    out.push(finding(
        "kernel",
        if major >= 5 { "ok" } else { "note" },
        format!("Linux {kernel}"),
        if major >= 5 {
            "the lessons were checked on Linux 6.x; 5.x behaves the same for everything taught here"
        } else {
            "old kernel: the tracepoint needs >= 4.16 and NEW_SYN_RECV >= 4.4; results may differ from the book"
        },
    ));

    match observe::snapshot(&Query::ports(&[1]), Method::Netlink) {
        Ok(_) => out.push(finding("sock_diag", "ok", "usable", "snapshots come from netlink, like `ss`")),
        Err(e) => out.push(finding(
            "sock_diag",
            "fix",
            e.to_string(),
            "snapshots fall back to /proc/net/tcp (slower, no kernel-side filters); check that the inet_diag module is loaded (`modprobe inet_diag tcp_diag`)",
        )),
    }

    let tracefs = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .find(|p| {
            Path::new(p)
                .join("events/sock/inet_sock_set_state")
                .exists()
        });
    let (status, value, meaning) = match (is_root(), tracefs) {
        (true, Some(p)) => ("ok", format!("{p} (root)"), "transitions come from the sock:inet_sock_set_state tracepoint, in a private instance".to_string()),
        (true, None) => ("ok", "root; tracefs not mounted".to_string(), "tcplab mounts tracefs for a trace and unmounts it afterwards".to_string()),
        (false, _) => ("note", "not root".to_string(), "tracing needs root: transitions come from polling sock_diag every 1 ms, and states too brief to see are marked inferred".to_string()),
    };
    out.push(finding("tracepoint", status, value, meaning));

    let userns = Command::new("unshare")
        .args(["-rn", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .and_then(|mut child| wait_with_timeout(&mut child, Duration::from_secs(5)));
    out.push(match userns {
        Ok(true) => finding("user namespaces", "ok", "`unshare -rn` works", "lesson 09 runs port exhaustion in a private network namespace, touching nothing on the host"),
        Ok(false) | Err(_) => finding(
            "user namespaces",
            "fix",
            "`unshare -rn` failed",
            "lesson 09 needs a private network namespace: enable unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1 or user.max_user_namespaces > 0), or run it as root",
        ),
    });

    let range = read_trim("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let span = range
        .split(' ')
        .filter_map(|p| p.parse::<u32>().ok())
        .collect::<Vec<_>>();
    let ports = if span.len() == 2 {
        span[1].saturating_sub(span[0]) + 1
    } else {
        0
    };
    out.push(finding(
        "ip_local_port_range",
        "ok",
        range.clone(),
        format!("{ports} ephemeral ports per destination address and port: what a churning client runs out of (lesson 09)"),
    ));
    let fin = read_trim("/proc/sys/net/ipv4/tcp_fin_timeout").unwrap_or_default();
    out.push(finding(
        "tcp_fin_timeout",
        "ok",
        format!("{fin} s"),
        "how long an orphaned FIN_WAIT2 socket lives (lesson 10); it does NOT change TIME_WAIT, which Linux fixes at 60 s",
    ));
    let reuse = read_trim("/proc/sys/net/ipv4/tcp_tw_reuse").unwrap_or_default();
    let reuse_meaning = match reuse.as_str() {
        "0" => "connect() never reuses a TIME_WAIT port",
        "1" => "connect() may reuse a TIME_WAIT port after 1 s (with timestamps), on any address",
        "2" => {
            "connect() may reuse a loopback TIME_WAIT port after 1 s: port exhaustion does not show on loopback, so lesson 09 uses a private namespace"
        }
        _ => "unknown value",
    };
    out.push(finding("tcp_tw_reuse", "ok", reuse, reuse_meaning));
    let buckets = read_trim("/proc/sys/net/ipv4/tcp_max_tw_buckets").unwrap_or_default();
    out.push(finding(
        "tcp_max_tw_buckets",
        "ok",
        buckets,
        "the most TIME_WAIT sockets the kernel keeps; past it, closing sockets skip TIME_WAIT (and the kernel logs it)",
    ));
    out
}

fn wait_with_timeout(child: &mut std::process::Child, timeout: Duration) -> std::io::Result<bool> {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.success());
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn run(args: &DoctorArgs) -> Result<ExitCode> {
    let found = findings();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        for f in &found {
            println!("{:<5} {:<20} {}", f.status, f.check, f.value);
            println!("      {:<20} {}", "", f.meaning);
        }
    }
    Ok(ExitCode::SUCCESS)
}
