//! `tcplab doctor`: what this machine and this user can really do, found by trying it, and
//! what to change where something is refused. Each finding says `ok`, `note` or `fix`, what
//! was seen, what it means for the lessons, and (when something is missing) the exact remedy:
//! the `docker run` flag, the sysctl, the AppArmor profile.
//!
//! Probes, not guesses: the tracepoint is armed for real (through the same tracer the
//! lessons start), namespaces are created by a child process (`tcplab doctor --probe ...`)
//! running lesson 09's own code, the AF_PACKET socket and /dev/net/tun are opened. What the
//! environment is (a container and its seccomp filter, WSL2, AppArmor's user-namespace
//! restriction) is read from /proc and only explains the results.
//!
//! Left out on purpose: fixing anything. The doctor never changes a setting.

use std::fs;
use std::io;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use tcplab_core::observe::trace::{Backend, TraceConfig, Tracer};
use tcplab_core::observe::{self, Method, Query};
use tcplab_core::sockets;

use tcplab_core::netns;

#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    pub json: bool,
    /// Internal: run one probe in this (fresh, single-threaded) process and print its result.
    #[arg(long, hide = true, value_name = "PROBE")]
    pub probe: Option<String>,
}

/// One finding: `ok` (works), `note` (works, with something to know) or `fix` (something
/// the lessons could use is refused; `remedy` says how to get it).
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: String,
    pub status: &'static str,
    pub value: String,
    pub meaning: String,
    pub remedy: Option<String>,
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
        remedy: None,
    }
}

impl Finding {
    fn remedy(mut self, remedy: Option<String>) -> Finding {
        self.remedy = remedy;
        self
    }
}

/// Where tcplab runs, read from /proc: it explains the probes' results.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub kernel: String,
    pub root: bool,
    /// `docker`, `podman`, `kubernetes`, `lxc`, `container` (some other), or none.
    pub container: Option<String>,
    pub wsl2: bool,
    /// Seccomp mode of this process: 0 none, 1 strict, 2 filter (Docker's default profile
    /// is a filter).
    pub seccomp: u8,
    /// Effective capabilities that matter here.
    pub cap_sys_admin: bool,
    pub cap_net_admin: bool,
    pub cap_net_raw: bool,
    /// kernel.apparmor_restrict_unprivileged_userns (Ubuntu 23.10+), when present.
    pub apparmor_restrict_userns: Option<u8>,
    /// kernel.unprivileged_userns_clone (Debian's and Ubuntu's patch), when present.
    pub unprivileged_userns_clone: Option<u8>,
    pub max_user_namespaces: Option<u64>,
    /// The environment variable that turns lesson 09's namespace off is set.
    pub no_netns_env: bool,
}

/// What the lessons will do here, from the probes.
#[derive(Debug, Clone, Serialize)]
pub struct LessonsHere {
    /// The backend `--backend auto` gets outside a namespace: `tracepoint` or `poll`.
    pub backend: &'static str,
    /// Lesson 09: `namespace` (a private one, the backend is then poll), `host`
    /// (IP_LOCAL_PORT_RANGE on this machine's loopback) or `unavailable`.
    pub lesson_09: &'static str,
    /// Lesson 05's `--churn-secs` works (a private network namespace can be made); lesson
    /// 09's also needs `lesson_09` to be `namespace`.
    pub churn: bool,
}

/// Everything `doctor` found; `--json` prints this.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub environment: Environment,
    pub lessons: LessonsHere,
    pub findings: Vec<Finding>,
}

fn read_trim(path: &str) -> Option<String> {
    fs::read_to_string(path)
        .ok()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn read_num(path: &str) -> Option<u64> {
    read_trim(path)?.parse().ok()
}

/// A field of /proc/self/status.
fn status_field(name: &str) -> Option<String> {
    let text = fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(|v| v.trim().to_string())
}

/// The filesystem type and source of the mount at `/`, from /proc/self/mountinfo.
fn root_mount() -> Option<(String, String)> {
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let fields: Vec<&str> = l.split_whitespace().collect();
        if fields.get(4) != Some(&"/") {
            return None;
        }
        let dash = fields.iter().position(|f| *f == "-")?;
        Some((
            fields.get(dash + 1)?.to_string(),
            fields.get(dash + 2)?.to_string(),
        ))
    })
}

/// Which container runtime, if any, this process runs under. The marker files alone are
/// not enough: a VM booted from a container image keeps `/.dockerenv`, but its root is a
/// block device, where a container's is an overlay.
fn container_kind() -> Option<String> {
    let on_block_device = root_mount().is_some_and(|(_, source)| source.starts_with("/dev/"));
    if Path::new("/.dockerenv").exists() && !on_block_device {
        return Some("docker".into());
    }
    if Path::new("/run/.containerenv").exists() && !on_block_device {
        return Some("podman".into());
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return Some("kubernetes".into());
    }
    // systemd and lxc set `container=` in the environment of the container's first process.
    if let Ok(env) = fs::read("/proc/1/environ") {
        for var in env.split(|b| *b == 0) {
            if let Some(v) = var.strip_prefix(b"container=") {
                return Some(String::from_utf8_lossy(v).into_owned());
            }
        }
    }
    let cgroup = fs::read_to_string("/proc/1/cgroup").unwrap_or_default();
    for (needle, kind) in [
        ("docker", "docker"),
        ("kubepods", "kubernetes"),
        ("lxc", "lxc"),
        ("containerd", "container"),
    ] {
        if cgroup.contains(needle) {
            return Some(kind.into());
        }
    }
    None
}

fn environment() -> Environment {
    let kernel = read_trim("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into());
    let caps = status_field("CapEff")
        .and_then(|h| u64::from_str_radix(&h, 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| caps & (1u64 << bit) != 0;
    Environment {
        wsl2: kernel.to_lowercase().contains("microsoft")
            || std::env::var_os("WSL_DISTRO_NAME").is_some(),
        kernel,
        root: tcplab_core::kernel::is_root(),
        container: container_kind(),
        seccomp: status_field("Seccomp")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        cap_sys_admin: has(21),
        cap_net_admin: has(12),
        cap_net_raw: has(13),
        apparmor_restrict_userns: read_num(
            "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
        )
        .map(|v| v as u8),
        unprivileged_userns_clone: read_num("/proc/sys/kernel/unprivileged_userns_clone")
            .map(|v| v as u8),
        max_user_namespaces: read_num("/proc/sys/user/max_user_namespaces"),
        no_netns_env: netns::refused_on_purpose(),
    }
}

/// The result of a probe: whether it worked and what was seen.
#[derive(Debug, Clone)]
struct Probe {
    ok: bool,
    seen: String,
}

/// Run `tcplab doctor --probe NAME` in a child process (namespaces need a process with a
/// single thread, and must not change this one) and read its one line.
fn probe_in_child(name: &str) -> Probe {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            return Probe {
                ok: false,
                seen: format!("cannot find this program to run the probe: {e}"),
            };
        }
    };
    let child = Command::new(exe)
        .args(["doctor", "--probe", name])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Probe {
                ok: false,
                seen: format!("cannot start the probe: {e}"),
            };
        }
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Probe {
                    ok: false,
                    seen: "the probe did not finish within 5 s".into(),
                };
            }
        }
    }
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = io::Read::read_to_string(&mut out, &mut text);
    }
    let line = text.lines().next().unwrap_or("no answer from the probe");
    match line.split_once(' ') {
        Some(("ok", seen)) => Probe {
            ok: true,
            seen: seen.to_string(),
        },
        Some((_, seen)) => Probe {
            ok: false,
            seen: seen.to_string(),
        },
        None => Probe {
            ok: false,
            seen: line.to_string(),
        },
    }
}

/// `tcplab doctor --probe NAME`, in the child: try one thing, print `ok WHAT` or `no WHY`.
fn run_probe(name: &str) -> ExitCode {
    let result: std::result::Result<String, String> = match name {
        "userns" => {
            // SAFETY: unshare on our own, single-threaded process, which exits right after.
            if unsafe { libc::unshare(libc::CLONE_NEWUSER) } == 0 {
                Ok("a user namespace was created".into())
            } else {
                Err(format!(
                    "unshare(CLONE_NEWUSER): {}",
                    io::Error::last_os_error()
                ))
            }
        }
        // Lesson 09's way exactly: the namespace, then its two sysctls.
        "netns" => match netns::try_enter_with_sysctls(netns::Prefer::UserNamespace) {
            Ok(Ok(kind)) => netns::set_ipv4_sysctl("ip_local_port_range", "40000 40099")
                .and_then(|()| netns::set_ipv4_sysctl("tcp_tw_reuse", "0"))
                .map(|()| format!("a {kind}, its sysctls writable"))
                .map_err(|e| format!("a {kind}, but {e:#}")),
            Ok(Err(refused)) => Err(short(&refused)),
            Err(e) => Err(format!("{e:#}")),
        },
        // Lesson 05's churn: a network namespace alone when root (keeps the tracepoint).
        "netns-root" => match netns::try_enter(netns::Prefer::KeepRoot) {
            Ok(Ok(kind)) => Ok(format!("a {kind}")),
            Ok(Err(refused)) => Err(short(&refused)),
            Err(e) => Err(format!("{e:#}")),
        },
        // The capture without root: AF_PACKET inside a user + network namespace of its own.
        "packet-netns" => match netns::try_enter(netns::Prefer::UserNamespace) {
            Ok(Ok(kind)) => open_packet_socket()
                .map(|()| format!("opens inside a {kind}"))
                .map_err(|e| format!("refused inside a {kind}: {e}")),
            Ok(Err(refused)) => Err(short(&refused)),
            Err(e) => Err(format!("{e:#}")),
        },
        other => Err(format!("unknown probe {other}")),
    };
    match result {
        Ok(seen) => {
            println!("ok {seen}");
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("no {why}");
            ExitCode::FAILURE
        }
    }
}

/// What was refused, without the advice the lessons print (the doctor gives its own remedy).
fn short(refused: &netns::Refused) -> String {
    match refused {
        netns::Refused::Unshare(e) => format!("unshare: {e}"),
        other => other.to_string(),
    }
}

/// socket(AF_PACKET, SOCK_RAW, ETH_P_ALL), closed at once: what the capture opens.
fn open_packet_socket() -> io::Result<()> {
    let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
    // SAFETY: a plain socket() call; the descriptor is closed before returning.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is ours and open.
    unsafe { libc::close(fd) };
    Ok(())
}

/// Open /dev/net/tun read-write, as the scripted peer would.
fn open_tun() -> io::Result<()> {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map(drop)
}

/// IP_LOCAL_PORT_RANGE on a fresh socket (Linux 6.3+): lesson 09's way without a namespace.
fn port_range_option() -> io::Result<()> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sockets::set_local_port_range(&s, 60900, 60999)
}

/// Arm the tracepoint the way a lesson does (a private tracefs instance, removed again).
fn probe_tracepoint() -> std::result::Result<String, String> {
    let cfg = TraceConfig::ports(&[1]).with_backend(Backend::Tracepoint);
    match Tracer::start(cfg) {
        Ok(tracer) => {
            let note = tracer.note().to_string();
            tracer.stop().map_err(|e| e.to_string())?;
            Ok(note)
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The `docker run` flags that give a container what a probe lacked, for the remedies.
const DOCKER_NAMESPACES: &str = "--security-opt seccomp=unconfined";
const DOCKER_TRACEFS: &str = "--cap-add SYS_ADMIN";
const DOCKER_SYSCTLS: &str = "--security-opt systempaths=unconfined";

/// Run every check.
pub fn report() -> Report {
    let env = environment();
    let mut out = Vec::new();
    let docker = env.container.as_deref() == Some("docker");
    let in_container = env.container.is_some();

    let major: u32 = env
        .kernel
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    out.push(finding(
        "kernel",
        if major >= 5 { "ok" } else { "note" },
        format!("Linux {}", env.kernel),
        if major >= 5 {
            "the lessons were checked on Linux 6.x; 5.x behaves the same for everything taught here"
        } else {
            "old kernel: the tracepoint needs >= 4.16 and NEW_SYN_RECV >= 4.4; results may differ from the book"
        },
    ));

    let mut where_ = Vec::new();
    match &env.container {
        Some(kind) => where_.push(format!("in a {kind} container")),
        None => where_.push("not in a container".to_string()),
    }
    if env.wsl2 {
        where_.push("under WSL2".into());
    }
    where_.push(match env.seccomp {
        0 => "no seccomp filter".to_string(),
        2 => "a seccomp filter".to_string(),
        n => format!("seccomp mode {n}"),
    });
    where_.push(format!(
        "{}; CAP_SYS_ADMIN {}, CAP_NET_ADMIN {}, CAP_NET_RAW {}",
        if env.root { "root" } else { "not root" },
        yes_no(env.cap_sys_admin),
        yes_no(env.cap_net_admin),
        yes_no(env.cap_net_raw)
    ));
    let env_meaning = match (&env.container, env.seccomp) {
        (Some(_), 2) => {
            "a container with a seccomp filter: Docker's default profile refuses unshare() and \
             mount() to a process without CAP_SYS_ADMIN, so lessons poll sock_diag and lesson 09 \
             uses IP_LOCAL_PORT_RANGE; the probes below say what is really refused"
        }
        (Some(_), _) => {
            "a container: what it may do depends on its runtime's settings; see the probes below"
        }
        (None, _) if env.wsl2 => {
            "WSL2 runs a real Linux kernel in a VM: the lessons behave as on Linux (not tested on \
             WSL2 by this project)"
        }
        (None, _) => "a Linux machine (or VM): the probes below say what this user may do",
    };
    out.push(finding("environment", "ok", where_.join(", "), env_meaning));

    match observe::snapshot(&Query::ports(&[1]), Method::Netlink) {
        Ok(_) => out.push(finding(
            "sock_diag",
            "ok",
            "usable",
            "snapshots come from netlink, like `ss`",
        )),
        Err(e) => out.push(
            finding(
                "sock_diag",
                "fix",
                e.to_string(),
                "snapshots fall back to /proc/net/tcp (slower, no kernel-side filters)",
            )
            .remedy(Some(
                "load the inet_diag modules: `sudo modprobe inet_diag tcp_diag`".into(),
            )),
        ),
    }

    // Namespaces first, in children: the tracer probe below starts threads in this process.
    let userns = probe_in_child("userns");
    let netns_probe = probe_in_child("netns");
    let netns_root = if env.root {
        probe_in_child("netns-root")
    } else {
        netns_probe.clone()
    };
    let packet_netns = probe_in_child("packet-netns");

    let userns_remedy = || -> String {
        if docker || in_container {
            format!(
                "run the container with `{DOCKER_NAMESPACES}` (the default seccomp profile \
                 refuses unshare), or `{DOCKER_TRACEFS}`"
            )
        } else if env.apparmor_restrict_userns == Some(1) {
            "AppArmor restricts unprivileged user namespaces (Ubuntu 23.10+): either `sudo \
             sysctl kernel.apparmor_restrict_unprivileged_userns=0` (until reboot), or allow \
             tcplab alone with a profile, /etc/apparmor.d/tcplab: `abi <abi/4.0>, include \
             <tunables/global> profile tcplab /path/to/tcplab/target/** flags=(unconfined) \
             { userns, }` then `sudo apparmor_parser -r /etc/apparmor.d/tcplab`"
                .to_string()
        } else if env.unprivileged_userns_clone == Some(0) {
            "`sudo sysctl kernel.unprivileged_userns_clone=1`".to_string()
        } else if env.max_user_namespaces == Some(0) {
            "`sudo sysctl user.max_user_namespaces=10000`".to_string()
        } else {
            "run as root, or enable unprivileged user namespaces in the kernel \
             (CONFIG_USER_NS)"
                .to_string()
        }
    };

    let range_option = port_range_option();
    let lesson_09 = if netns_probe.ok {
        "namespace"
    } else if range_option.is_ok() {
        "host"
    } else {
        "unavailable"
    };

    out.push(if userns.ok {
        finding(
            "user namespace",
            "ok",
            &userns.seen,
            "an unprivileged process may make a user namespace",
        )
    } else {
        finding(
            "user namespace",
            if lesson_09 == "unavailable" {
                "fix"
            } else {
                "note"
            },
            &userns.seen,
            "no user namespace for this process: no private network namespace without root",
        )
        .remedy(Some(userns_remedy()))
    });
    out.push(if netns_probe.ok {
        finding(
            "network namespace",
            "ok",
            &netns_probe.seen,
            "lesson 09 runs in a private network namespace with 100 ports and tcp_tw_reuse 0, \
             touching nothing on the host",
        )
    } else {
        let remedy = if env.no_netns_env {
            Some(format!("unset {}", netns::NO_NETNS_ENV))
        } else if netns::sysctls_read_only() {
            Some(if in_container {
                format!(
                    "run the container with `{DOCKER_SYSCTLS}` (Docker mounts /proc/sys \
                     read-only){}",
                    if userns.ok {
                        String::new()
                    } else {
                        format!(" and `{DOCKER_NAMESPACES}`")
                    }
                )
            } else {
                "remount /proc/sys read-write".to_string()
            })
        } else {
            Some(userns_remedy())
        };
        finding(
            "network namespace",
            if lesson_09 == "host" { "note" } else { "fix" },
            &netns_probe.seen,
            if lesson_09 == "host" {
                "lesson 09 runs on this machine's loopback instead, its client narrowed to 100 \
                 ports by IP_LOCAL_PORT_RANGE (same verdicts); `--churn-secs` (lessons 05, 09) \
                 needs the namespace"
            } else {
                "lesson 09 cannot run: no namespace and no IP_LOCAL_PORT_RANGE"
            },
        )
        .remedy(remedy)
    });
    out.push(match &range_option {
        Ok(()) => finding(
            "IP_LOCAL_PORT_RANGE",
            "ok",
            "the socket option works (Linux 6.3+)",
            "lesson 09's way without a namespace",
        ),
        Err(e) => finding(
            "IP_LOCAL_PORT_RANGE",
            if netns_probe.ok { "note" } else { "fix" },
            e.to_string(),
            "Linux before 6.3 lacks it: lesson 09 needs its namespace here",
        )
        .remedy((!netns_probe.ok).then(|| "a Linux 6.3 or later kernel".to_string())),
    });

    let tracepoint = probe_tracepoint();
    let backend = if tracepoint.is_ok() {
        "tracepoint"
    } else {
        "poll"
    };
    out.push(match &tracepoint {
        Ok(note) => finding(
            "tracepoint",
            "ok",
            note.clone(),
            "transitions come from sock:inet_sock_set_state, in a private tracefs instance (lesson 09 in its user namespace polls)",
        ),
        Err(e) => {
            let remedy = if !env.root {
                "run as root (`sudo`): tracefs is root-only".to_string()
            } else if in_container {
                format!(
                    "run the container with `{DOCKER_TRACEFS}` (mounting tracefs needs it; \
                     Docker's seccomp profile then allows mount())"
                )
            } else {
                "mount tracefs (`sudo mount -t tracefs nodev /sys/kernel/tracing`) or use a \
                 kernel with CONFIG_FTRACE"
                    .to_string()
            };
            finding(
                "tracepoint",
                "note",
                e.clone(),
                "transitions come from polling sock_diag every 1 ms; states too brief to see are marked inferred",
            )
            .remedy(Some(remedy))
        }
    });

    out.push(if netns_root.ok {
        finding(
            "churn namespace",
            "ok",
            &netns_root.seen,
            "lesson 05's `--churn-secs` floods a private namespace, not this machine (lesson \
             09's runs where lesson 09 itself has its namespace)",
        )
    } else {
        finding(
            "churn namespace",
            "note",
            &netns_root.seen,
            "`--churn-secs` (lessons 05 and 09) is refused here; every lesson runs without it",
        )
        .remedy(Some(userns_remedy()))
    });

    let packet_here = open_packet_socket();
    out.push(match (&packet_here, packet_netns.ok) {
        (Ok(()), _) => finding(
            "AF_PACKET",
            "ok",
            "opens in this namespace",
            "segment capture on lo works",
        ),
        (Err(_), true) => finding(
            "AF_PACKET",
            "ok",
            packet_netns.seen.clone(),
            "segment capture works inside a private user + network namespace (the capture's way without root)",
        ),
        (Err(e), false) => finding(
            "AF_PACKET",
            "fix",
            format!("{e}; in a private namespace: {}", packet_netns.seen),
            "no segment capture: lessons still run, without packets",
        )
        .remedy(Some(if in_container {
            "run the container with `--cap-add NET_RAW` (Docker gives it by default)".into()
        } else {
            "run as root, or enable unprivileged user namespaces (see above)".into()
        })),
    });

    out.push(match open_tun() {
        Ok(()) => finding(
            "/dev/net/tun",
            "ok",
            "opens read-write",
            "the scripted peer can use a tun device",
        ),
        Err(e) => finding(
            "/dev/net/tun",
            "note",
            e.to_string(),
            "the scripted peer uses a veth pair + AF_PACKET in a namespace instead",
        )
        .remedy(Some(if in_container {
            "run the container with `--device /dev/net/tun --cap-add NET_ADMIN`".into()
        } else {
            "run as root (the device is usually mode 0600)".into()
        })),
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
    let delay = read_trim("/proc/sys/net/ipv4/tcp_tw_reuse_delay")
        .map(|ms| format!("{ms} ms (tcp_tw_reuse_delay)"))
        .unwrap_or_else(|| "a second".into());
    let reuse_meaning = match reuse.as_str() {
        "0" => "connect() never reuses a TIME_WAIT port".to_string(),
        "1" => format!(
            "connect() may reuse a TIME_WAIT port after {delay} (with timestamps), on any address"
        ),
        "2" => format!(
            "connect() may reuse a loopback TIME_WAIT port after {delay}: port exhaustion hardly shows on loopback, which lesson 09 works around"
        ),
        _ => "unknown value".to_string(),
    };
    out.push(finding("tcp_tw_reuse", "ok", reuse, reuse_meaning));
    let buckets = read_trim("/proc/sys/net/ipv4/tcp_max_tw_buckets").unwrap_or_default();
    out.push(finding(
        "tcp_max_tw_buckets",
        "ok",
        buckets,
        "the most TIME_WAIT sockets the kernel keeps; past it, closing sockets skip TIME_WAIT (and the kernel logs it)",
    ));

    Report {
        lessons: LessonsHere {
            backend,
            lesson_09,
            churn: netns_root.ok,
        },
        environment: env,
        findings: out,
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

pub fn run(args: &DoctorArgs) -> Result<ExitCode> {
    if let Some(name) = &args.probe {
        return Ok(run_probe(name));
    }
    let report = report();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.findings {
            println!("{:<5} {:<20} {}", f.status, f.check, f.value);
            println!("      {:<20} {}", "", f.meaning);
            if let Some(r) = &f.remedy {
                println!("      {:<20} remedy: {r}", "");
            }
        }
        let l = &report.lessons;
        println!();
        println!(
            "lessons here: the {} backend; lesson 09 {}; --churn-secs {}",
            l.backend,
            match l.lesson_09 {
                "namespace" => "in a private network namespace",
                "host" => "on this machine's loopback with IP_LOCAL_PORT_RANGE",
                _ => "cannot run",
            },
            match (l.churn, l.lesson_09 == "namespace") {
                (true, true) => "works",
                (true, false) => "works in lesson 05, not in lesson 09",
                (false, _) => "is refused",
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
