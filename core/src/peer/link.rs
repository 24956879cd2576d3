//! The wire between the kernel under test and the scripted peer, inside the caller's own
//! network namespace, laid out as packetdrill lays it out: the kernel's side is named `tun0`
//! and has a 192.168.0.0/16 address; the peer is 192.0.2.1, reached through the gateway
//! 192.168.0.1. Scripts that configure `tun0` (`tc qdisc add dev tun0 ...`) work unmodified.
//!
//! Two ways to build it:
//! - a TUN device, where /dev/net/tun opens and TUNSETIFF is allowed: the peer writes IP
//!   packets into its file descriptor, with a virtio-net header and the offloads packetdrill
//!   turns on, so the kernel hands big (TSO) segments over whole, as on a real NIC;
//! - a veth pair otherwise (/dev/net/tun mode 0600, no CAP_NET_ADMIN): `tun0` is the kernel's
//!   end and `peer0` the peer's, where an AF_PACKET socket injects frames. A veth also does
//!   TSO, so the kernel's segments look the same.
//!
//! Either way the kernel's segments are read with an AF_PACKET socket on `tun0` (outgoing
//! packets only), as packetdrill does, in a thread that stamps each on arrival.
//!
//! The links live in the namespace and vanish with it; [`Link`]'s drop also deletes them.
//! Setup calls `ip` (iproute2), as packetdrill does; the scripts need it anyway.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// The kernel's side of the link, named as packetdrill names it.
pub const DEVICE: &str = "tun0";
/// The peer's end of the veth pair.
pub const PEER_DEVICE: &str = "peer0";
/// The kernel's address (packetdrill picks one at random in 192.168.0.0/16).
pub const LOCAL_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 2);
/// The gateway the route to the peer goes through.
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
/// The peer's address (TEST-NET-1, RFC 5737).
pub const REMOTE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// How the link is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A TUN device named `tun0`.
    Tun,
    /// A veth pair `tun0`/`peer0`, the peer on an AF_PACKET socket.
    Veth,
}

impl LinkKind {
    pub const ALL: [LinkKind; 2] = [LinkKind::Tun, LinkKind::Veth];

    /// What it is, in a few words.
    pub fn describe(self) -> &'static str {
        match self {
            LinkKind::Tun => "a TUN device tun0",
            LinkKind::Veth => "a veth pair tun0/peer0, the peer on an AF_PACKET socket",
        }
    }
}

impl std::fmt::Display for LinkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            LinkKind::Tun => "tun",
            LinkKind::Veth => "veth",
        })
    }
}

impl std::str::FromStr for LinkKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        LinkKind::ALL
            .into_iter()
            .find(|k| k.to_string() == s)
            .ok_or_else(|| format!("unknown link {s:?}; valid: tun, veth"))
    }
}

/// One IP packet the kernel sent, and when it was read.
#[derive(Debug, Clone)]
pub struct Sent {
    pub at: Instant,
    pub bytes: Vec<u8>,
}

/// The wire, up and routed.
pub struct Link {
    pub kind: LinkKind,
    /// TUN: the device's fd. veth: an AF_PACKET socket bound to `peer0`.
    inject: OwnedFd,
    /// veth: the MAC of `tun0`, where injected frames go.
    dest_mac: [u8; 6],
    peer_ifindex: i32,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

/// `struct virtio_net_hdr` with nothing set: no checksum to finish, no segmentation.
const VNET_HDR_LEN: usize = 10;
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_ulong = 0x01;
const TUN_F_TSO4: libc::c_ulong = 0x02;
const TUN_F_TSO6: libc::c_ulong = 0x04;
const TUN_F_TSO_ECN: libc::c_ulong = 0x08;
/// Large enough for a 64 KiB TSO segment.
const RECV_BUF: usize = 70_000;

impl Link {
    /// Build the link in this process's network namespace, which must be one of the
    /// caller's own (nothing named `tun0` yet): `want`, or a TUN device where one can be
    /// made and a veth pair otherwise. Returns the packets the kernel sends on the channel,
    /// until the link is dropped.
    pub fn open(want: Option<LinkKind>) -> Result<(Link, mpsc::Receiver<Sent>)> {
        if ifindex(DEVICE).is_ok() {
            bail!(
                "a device named {DEVICE} exists already: the scripted peer runs in a network \
                 namespace of its own (`tcplab peer` makes one)"
            );
        }
        let tun = match want {
            Some(LinkKind::Veth) => None,
            Some(LinkKind::Tun) => Some(open_tun().context(
                "make a TUN device (it needs /dev/net/tun and CAP_NET_ADMIN in the namespace; \
                 `--link veth` needs neither)",
            )?),
            None => open_tun().ok(),
        };
        let (kind, inject, tun) = match tun {
            Some(fd) => (LinkKind::Tun, fd, true),
            None => {
                ip(&[
                    "link",
                    "add",
                    DEVICE,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    PEER_DEVICE,
                ])?;
                (LinkKind::Veth, packet_socket(libc::ETH_P_IP as u16)?, false)
            }
        };
        // No IPv6 on the link: router solicitations would only add noise.
        for dev in [DEVICE, PEER_DEVICE] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6"), "1");
        }
        ip(&["link", "set", DEVICE, "up"])?;
        let mut peer_ifindex = 0;
        let mut dest_mac = [0u8; 6];
        if !tun {
            ip(&["link", "set", PEER_DEVICE, "up"])?;
            peer_ifindex = ifindex(PEER_DEVICE)?;
            dest_mac = mac(DEVICE)?;
            bind_packet(&inject, peer_ifindex, libc::ETH_P_IP as u16)?;
        }
        ip(&["addr", "add", &format!("{LOCAL_IP}/16"), "dev", DEVICE])?;
        if !tun {
            let peer_mac = mac(PEER_DEVICE)?;
            let m = peer_mac.map(|b| format!("{b:02x}")).join(":");
            ip(&[
                "neigh",
                "add",
                &GATEWAY_IP.to_string(),
                "lladdr",
                &m,
                "dev",
                DEVICE,
                "nud",
                "permanent",
            ])?;
        }
        ip(&[
            "route",
            "add",
            "192.0.2.0/24",
            "via",
            &GATEWAY_IP.to_string(),
            "dev",
            DEVICE,
        ])?;
        // The kernel's segments: every outgoing packet on tun0.
        let capture = packet_socket(libc::ETH_P_ALL as u16)?;
        bind_packet(&capture, ifindex(DEVICE)?, libc::ETH_P_ALL as u16)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        // A TUN device keeps what the kernel sends until someone reads it, and TCP holds
        // back its next segments until then (TCP small queues count them as still in the
        // host): packetdrill reads it as it sniffs, and so does the capture thread, in the
        // same wake-up.
        let tun_fd = if tun {
            let fd = inject.try_clone().context("dup the TUN fd")?;
            // SAFETY: fcntl on our own descriptor.
            unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
            Some(fd)
        } else {
            None
        };
        let reader = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("peer-capture".into())
                .spawn(move || read_outgoing(capture, tun_fd, tx, &stop))
                .context("start the capture thread")?
        };
        Ok((
            Link {
                kind,
                inject,
                dest_mac,
                peer_ifindex,
                stop,
                reader: Some(reader),
            },
            rx,
        ))
    }

    /// Hand one IPv4 packet to the kernel, as if it came from the wire.
    pub fn inject(&self, packet: &[u8]) -> Result<()> {
        let fd = self.inject.as_raw_fd();
        let n = match self.kind {
            LinkKind::Tun => {
                let mut buf = vec![0u8; VNET_HDR_LEN];
                buf.extend_from_slice(packet);
                // SAFETY: writes a buffer we own to our TUN fd.
                unsafe {
                    libc::write(fd, buf.as_ptr().cast(), buf.len()) as isize - VNET_HDR_LEN as isize
                }
            }
            LinkKind::Veth => {
                // SAFETY: a zeroed sockaddr_ll filled with the destination; the buffer is ours.
                unsafe {
                    let mut sll: libc::sockaddr_ll = std::mem::zeroed();
                    sll.sll_family = libc::AF_PACKET as u16;
                    sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
                    sll.sll_ifindex = self.peer_ifindex;
                    sll.sll_halen = 6;
                    sll.sll_addr[..6].copy_from_slice(&self.dest_mac);
                    libc::sendto(
                        fd,
                        packet.as_ptr().cast(),
                        packet.len(),
                        0,
                        (&sll as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    )
                }
            }
        };
        if n < 0 {
            return Err(io::Error::last_os_error()).context("inject a segment");
        }
        Ok(())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
        if self.kind == LinkKind::Veth {
            // Deleting one end deletes both; the namespace's end would do it anyway.
            let _ = Command::new("ip")
                .args(["link", "del", DEVICE])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().with_context(
        || "run `ip` (iproute2): install it (`apt-get install iproute2`) to use the scripted peer",
    )?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn open_tun() -> io::Result<OwnedFd> {
    // SAFETY: open/ioctl on a fd we own, with a zeroed ifreq naming the device.
    unsafe {
        let fd = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in DEVICE.bytes().enumerate() {
            ifr.ifr_name[i] = b as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
        if libc::ioctl(fd.as_raw_fd(), TUNSETIFF, &ifr) < 0 {
            return Err(io::Error::last_os_error());
        }
        let offload = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
        if libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD, offload) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }
}

/// An AF_PACKET socket without link-layer headers (SOCK_DGRAM): it reads and writes IP.
fn packet_socket(protocol: u16) -> Result<OwnedFd> {
    // SAFETY: a plain socket(2) call.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(protocol.to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error())
            .context("open an AF_PACKET socket (it needs CAP_NET_RAW in the namespace)");
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bind_packet(fd: &OwnedFd, ifindex: i32, protocol: u16) -> Result<()> {
    // SAFETY: bind with a zeroed sockaddr_ll naming the interface.
    let rc = unsafe {
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = protocol.to_be();
        sll.sll_ifindex = ifindex;
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error()).context("bind the AF_PACKET socket");
    }
    Ok(())
}

fn ifindex(name: &str) -> Result<i32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: a NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        bail!("no interface named {name}");
    }
    Ok(i as i32)
}

/// The MAC address of an interface of this namespace (/sys shows the host's interfaces,
/// not the namespace's, so ask the kernel with SIOCGIFHWADDR).
fn mac(name: &str) -> Result<[u8; 6]> {
    // SAFETY: a datagram socket used for one ioctl on a zeroed ifreq with a NUL-terminated
    // name, owned and closed here.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error()).context("open a socket for SIOCGIFHWADDR");
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in name.bytes().take(libc::IFNAMSIZ - 1).enumerate() {
            ifr.ifr_name[i] = b as libc::c_char;
        }
        if libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFHWADDR, &mut ifr) < 0 {
            return Err(io::Error::last_os_error())
                .with_context(|| format!("read the MAC address of {name}"));
        }
        let mut out = [0u8; 6];
        for (o, b) in out.iter_mut().zip(ifr.ifr_ifru.ifru_hwaddr.sa_data) {
            *o = b as u8;
        }
        Ok(out)
    }
}

/// Wait up to `ms` for any of `fds` (-1: none) to be readable.
fn readable(fds: [i32; 2], ms: i32) -> bool {
    let mut p = fds.map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: two pollfds we own; poll ignores negative descriptors.
    unsafe { libc::poll(p.as_mut_ptr(), 2, ms) > 0 }
}

/// Read and drop every packet waiting on the (non-blocking) TUN descriptor.
fn drain(fd: Option<&OwnedFd>, buf: &mut [u8]) {
    let Some(fd) = fd else { return };
    // SAFETY: reads into our buffer until the queue is empty (EAGAIN).
    while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
}

fn read_outgoing(fd: OwnedFd, tun: Option<OwnedFd>, tx: mpsc::Sender<Sent>, stop: &AtomicBool) {
    let mut buf = vec![0u8; RECV_BUF];
    let mut tun_buf = vec![0u8; RECV_BUF];
    let fds = [fd.as_raw_fd(), tun.as_ref().map_or(-1, |t| t.as_raw_fd())];
    // The kernel stamps each packet as it leaves; a busy machine may wake this thread
    // milliseconds later, and the script's timing is about the kernel, not about us.
    let on: libc::c_int = 1;
    // SAFETY: setsockopt with an int on our own socket.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        );
    }
    while !stop.load(Ordering::Relaxed) {
        if !readable(fds, 20) {
            continue;
        }
        drain(tun.as_ref(), &mut tun_buf);
        let mut control = [0u64; 16];
        // SAFETY: recvmsg into our buffer, a zeroed sockaddr_ll and a control buffer, all
        // sized as the msghdr says; the cmsg walk stays within the control length returned.
        let (n, pkttype, stamp) = unsafe {
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_name = (&mut sll as *mut libc::sockaddr_ll).cast();
            msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
            let n = libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT);
            let mut stamp = None;
            if n > 0 {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_TIMESTAMPNS
                    {
                        let ts: libc::timespec =
                            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                        stamp = Some(std::time::Duration::new(
                            ts.tv_sec as u64,
                            ts.tv_nsec as u32,
                        ));
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
            (n, sll.sll_pkttype, stamp)
        };
        if n <= 0 || pkttype != libc::PACKET_OUTGOING {
            continue;
        }
        // The kernel's stamp is wall-clock time; move it onto the monotonic clock.
        let now = Instant::now();
        let at = match (
            stamp,
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH),
        ) {
            (Some(sent), Ok(wall)) if wall >= sent => now.checked_sub(wall - sent).unwrap_or(now),
            _ => now,
        };
        let bytes = buf[..n as usize].to_vec();
        if tx.send(Sent { at, bytes }).is_err() {
            return;
        }
    }
}
