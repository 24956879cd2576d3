//! An AF_PACKET socket with a TPACKET_V3 receive ring: the kernel writes frames into memory
//! we share with it, block by block, and hands a block over when it is full or when its
//! timeout runs out. One poll() wakes us for thousands of frames; no frame is copied by a
//! system call. This is what tcpdump (libpcap) does on Linux.
//!
//! Written by hand over libc: the well-kept packet crates (pnet's datalink, for one) read a
//! frame per recvfrom() and do not give the kernel's timestamp of each frame, which is the
//! point here; the ring is a few dozen lines of setsockopt and mmap.
//!
//! Order of setup matters, and is the one packet(7) documents: the socket is opened with
//! protocol 0 so it receives nothing; the filter, the ring and the options are set; only then
//! does bind() name the interface and ETH_P_ALL, so no unfiltered frame is ever queued.
//!
//! Left out on purpose: fanout over several sockets, transmit rings, hardware timestamps
//! (a loopback has none), VLAN tags.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use super::bpf::Insn;

/// One frame read from the ring.
pub struct RawFrame<'a> {
    /// The kernel's timestamp (CLOCK_REALTIME), in nanoseconds since the epoch.
    pub real_ns: u64,
    /// The frame's length on the wire.
    pub len: u32,
    /// What was captured of it (all of it, with our filter).
    pub data: &'a [u8],
    /// `PACKET_HOST`, `PACKET_OUTGOING`, ... from the frame's sockaddr_ll.
    pub pkttype: u8,
}

/// How the ring is laid out.
#[derive(Debug, Clone, Copy)]
pub struct RingSize {
    /// Bytes per block: a power of two, a multiple of the page size.
    pub block_size: u32,
    pub blocks: u32,
    /// How long the kernel may keep a block that is not full before handing it over.
    pub block_timeout: Duration,
}

/// Counters from PACKET_STATISTICS, accumulated (the kernel resets them on each read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Frames that passed the filter, including the dropped ones.
    pub packets: u64,
    /// Frames that passed the filter but found no room in the ring.
    pub drops: u64,
    /// How often the ring was full (the queue froze).
    pub freeze_q: u64,
}

/// Why the socket could not be opened: the syscall, and the error.
#[derive(Debug)]
pub struct OpenError {
    pub step: &'static str,
    pub error: io::Error,
}

/// An AF_PACKET socket bound to one interface, with its ring mapped.
pub struct PacketRing {
    fd: OwnedFd,
    map: NonNull<u8>,
    map_len: usize,
    size: RingSize,
    /// The next block to look at: the kernel fills them in order.
    next: u32,
    stats: KernelStats,
}

// SAFETY: the mapping belongs to this value alone; it is only touched through &mut self.
unsafe impl Send for PacketRing {}

fn last(step: &'static str) -> OpenError {
    OpenError {
        step,
        error: io::Error::last_os_error(),
    }
}

fn setopt<T>(
    fd: &OwnedFd,
    level: i32,
    name: i32,
    value: &T,
    step: &'static str,
) -> Result<(), OpenError> {
    // SAFETY: value points to a live T of the size we pass.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(last(step)) }
}

/// The interface's index, and whether it is a loopback.
fn interface(name: &str) -> Result<(i32, bool), OpenError> {
    let cname = CString::new(name).map_err(|_| OpenError {
        step: "if_nametoindex",
        error: io::Error::from(io::ErrorKind::InvalidInput),
    })?;
    // SAFETY: a NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(last("if_nametoindex"));
    }
    let loopback = std::fs::read_to_string(format!("/sys/class/net/{name}/type"))
        .map(|t| t.trim() == "772") // ARPHRD_LOOPBACK
        .unwrap_or(name == "lo");
    Ok((index as i32, loopback))
}

impl PacketRing {
    /// Open, filter, map and bind. On a loopback the kernel is asked not to pass us the
    /// outgoing copy of each frame (PACKET_IGNORE_OUTGOING): every frame also comes back in
    /// as PACKET_HOST, so one copy is kept and the ring holds half as much.
    pub fn open(
        ifname: &str,
        filter: &[Insn],
        size: RingSize,
    ) -> Result<(PacketRing, bool), OpenError> {
        let (ifindex, loopback) = interface(ifname)?;
        // SAFETY: plain socket(2); the fd is owned at once.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(last("socket(AF_PACKET)"));
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let prog = libc::sock_fprog {
            len: filter.len() as u16,
            // The kernel copies the program; it only reads through this pointer.
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        setopt(
            &fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            &prog,
            "SO_ATTACH_FILTER",
        )?;
        if loopback {
            let one: libc::c_int = 1;
            setopt(
                &fd,
                libc::SOL_PACKET,
                libc::PACKET_IGNORE_OUTGOING,
                &one,
                "PACKET_IGNORE_OUTGOING",
            )?;
        }
        let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setopt(
            &fd,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &version,
            "PACKET_VERSION",
        )?;
        // frame_size and frame_nr are not used by V3 (frames are packed into blocks) but
        // the kernel checks them: one frame slot per 2 KiB.
        let frame_size = 2048u32;
        let req = libc::tpacket_req3 {
            tp_block_size: size.block_size,
            tp_block_nr: size.blocks,
            tp_frame_size: frame_size,
            tp_frame_nr: size.block_size / frame_size * size.blocks,
            tp_retire_blk_tov: size.block_timeout.as_millis().max(1) as u32,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setopt(
            &fd,
            libc::SOL_PACKET,
            libc::PACKET_RX_RING,
            &req,
            "PACKET_RX_RING",
        )?;
        let map_len = size.block_size as usize * size.blocks as usize;
        // SAFETY: mapping the ring the kernel just allocated for this fd.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(last("mmap"));
        }
        let ring = PacketRing {
            fd,
            // SAFETY: mmap succeeded, so the pointer is not null.
            map: unsafe { NonNull::new_unchecked(map.cast()) },
            map_len,
            size,
            next: 0,
            stats: KernelStats::default(),
        };
        // SAFETY: sockaddr_ll is plain data; zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: a valid sockaddr_ll of the size we pass.
        let rc = unsafe {
            libc::bind(
                ring.fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(last("bind"));
        }
        Ok((ring, loopback))
    }

    /// Wait up to `timeout` for a block to be handed over, or for `wake` (an eventfd) to
    /// become readable.
    pub fn wait(&self, timeout: Duration, wake: &OwnedFd) -> io::Result<()> {
        if self.block_ready(self.next) {
            return Ok(());
        }
        let mut pfds = [
            libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN | libc::POLLERR,
                revents: 0,
            },
            libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: two valid pollfds for the duration of the call.
        let rc = unsafe {
            libc::poll(
                pfds.as_mut_ptr(),
                2,
                timeout.as_millis().clamp(1, 60_000) as i32,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    fn block(&self, i: u32) -> *mut libc::tpacket_block_desc {
        // SAFETY: i < blocks, so the block lies inside the mapping.
        unsafe {
            self.map
                .as_ptr()
                .add(i as usize * self.size.block_size as usize)
                .cast()
        }
    }

    fn block_ready(&self, i: u32) -> bool {
        let desc = self.block(i);
        // SAFETY: the descriptor is inside the mapping; the kernel writes block_status, so
        // read it volatile, then fence so the frames are read after it.
        let status = unsafe { std::ptr::addr_of!((*desc).hdr.bh1.block_status).read_volatile() };
        fence(Ordering::Acquire);
        status & libc::TP_STATUS_USER != 0
    }

    /// Whether nothing waits to be read: the next block is still the kernel's and it has
    /// written no frame into it yet (the kernel counts frames in the block's header as it
    /// fills it, before handing it over).
    pub fn idle(&self) -> bool {
        if self.block_ready(self.next) {
            return false;
        }
        let desc = self.block(self.next);
        // SAFETY: the descriptor is inside the mapping; a volatile read of a counter the
        // kernel writes, used only as a hint.
        let n = unsafe { std::ptr::addr_of!((*desc).hdr.bh1.num_pkts).read_volatile() };
        n == 0
    }

    /// Hand every ready block's frames to `f`, in order, and give the blocks back.
    /// Returns how many blocks were read.
    pub fn drain(&mut self, mut f: impl FnMut(RawFrame<'_>)) -> u32 {
        let mut blocks = 0;
        // At most one lap: the kernel cannot fill more blocks than there are.
        for _ in 0..self.size.blocks {
            if !self.block_ready(self.next) {
                break;
            }
            let desc = self.block(self.next);
            let base = desc.cast::<u8>();
            // SAFETY: the block is ours until we set its status back to TP_STATUS_KERNEL;
            // every offset comes from the kernel and stays inside the block.
            unsafe {
                let bh = std::ptr::addr_of!((*desc).hdr.bh1).read();
                let mut off = bh.offset_to_first_pkt as usize;
                for _ in 0..bh.num_pkts {
                    let hdr = base.add(off).cast::<libc::tpacket3_hdr>().read_unaligned();
                    let sll_at =
                        off + libc::TPACKET_ALIGN(std::mem::size_of::<libc::tpacket3_hdr>());
                    let sll = base
                        .add(sll_at)
                        .cast::<libc::sockaddr_ll>()
                        .read_unaligned();
                    let data = std::slice::from_raw_parts(
                        base.add(off + hdr.tp_mac as usize),
                        hdr.tp_snaplen as usize,
                    );
                    f(RawFrame {
                        real_ns: u64::from(hdr.tp_sec) * 1_000_000_000 + u64::from(hdr.tp_nsec),
                        len: hdr.tp_len,
                        data,
                        pkttype: sll.sll_pkttype,
                    });
                    if hdr.tp_next_offset == 0 {
                        break;
                    }
                    off += hdr.tp_next_offset as usize;
                }
                fence(Ordering::Release);
                std::ptr::addr_of_mut!((*desc).hdr.bh1.block_status)
                    .write_volatile(libc::TP_STATUS_KERNEL);
            }
            self.next = (self.next + 1) % self.size.blocks;
            blocks += 1;
        }
        blocks
    }

    /// Read PACKET_STATISTICS (which resets the kernel's counters) into the running totals.
    pub fn stats(&mut self) -> KernelStats {
        let mut st = libc::tpacket_stats_v3 {
            tp_packets: 0,
            tp_drops: 0,
            tp_freeze_q_cnt: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats_v3>() as libc::socklen_t;
        // SAFETY: st and len are valid for the kernel to write.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats_v3).cast(),
                &mut len,
            )
        };
        if rc == 0 {
            self.stats.packets += u64::from(st.tp_packets);
            self.stats.drops += u64::from(st.tp_drops);
            self.stats.freeze_q += u64::from(st.tp_freeze_q_cnt);
        }
        self.stats
    }
}

impl Drop for PacketRing {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what open() mapped; the fd closes after (OwnedFd).
        unsafe { libc::munmap(self.map.as_ptr().cast(), self.map_len) };
    }
}
