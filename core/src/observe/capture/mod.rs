//! The wire: every TCP segment on some ports of a loopback interface, with the kernel's
//! timestamp, on the tracer's clock, so segments and state changes make one
//! [`crate::Timeline`].
//!
//! How, in four steps:
//! 1. an AF_PACKET socket on the interface ([`ring`]), with a classic BPF program
//!    ([`bpf`]) attached in the kernel so only TCP on the watched ports is queued, as
//!    tcpdump's `tcp port P` does;
//! 2. a TPACKET_V3 ring shared with the kernel: a background thread wakes (poll with a
//!    timeout) when a block of frames is ready, so a churn of thousands of connections per
//!    second costs a few system calls; PACKET_STATISTICS says if any frame found no room;
//! 3. loopback shows each frame twice, as it leaves (PACKET_OUTGOING) and as it comes back in
//!    (PACKET_HOST). The kernel is told to skip the outgoing copy, and any that still comes
//!    is skipped here: one copy of each segment is kept, the one libpcap keeps;
//! 4. the kernel stamps frames with CLOCK_REALTIME; the tracer's events use CLOCK_MONOTONIC.
//!    The offset between the two clocks is measured at start (and again every second, in
//!    case the wall clock is stepped) and subtracted, so a segment's `t_us` counts from the
//!    same origin as the tracer's events. The offset is read to within a microsecond or
//!    two; an NTP slew between two readings is not followed.
//!
//! Capture needs CAP_NET_RAW in the user namespace that owns the network namespace. Root has
//! it on the host; any user has it inside a user + network namespace of its own (that
//! namespace's `lo`, and only its traffic). When it is refused, [`Capture::start`] returns
//! [`Error::Permission`] with one line saying so, and the caller goes on without segments.
//!
//! Left out on purpose: interfaces other than loopback are not tested (the code takes any
//! name), no promiscuous mode, no payload bytes kept past `snaplen`, no reassembly, and no
//! unbounded history: a capture keeps at most `max_segments` ([`MAX_SEGMENTS`] by default, a
//! lesson's few hundred many times over), counts what it leaves out past that and says so;
//! for hours of a busy interface, use tcpdump with a ring of files.

pub mod bpf;
pub mod pcapng;
pub mod ring;

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::segment::{Numbering, Segment, parse_frame};
use ring::{KernelStats, OpenError, PacketRing, RingSize};

/// How many segments a capture keeps at most by default: about 150 MB of segments, and as
/// much again of frames when they are kept for a file; minutes of the lessons' churn.
pub const MAX_SEGMENTS: usize = 1_000_000;

/// What to capture and how.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    /// The interface (`lo`).
    pub interface: String,
    /// TCP to or from one of these ports; empty captures every TCP segment.
    pub ports: Vec<u16>,
    /// Where `t_us` counts from: a tracer's [`crate::observe::trace::Tracer::started`] to
    /// share its clock; `None` counts from the capture's start.
    pub origin: Option<Instant>,
    /// Bytes of each frame the kernel copies into the ring and we keep for the pcapng file
    /// (headers and the start of the payload, like `tcpdump -s`; at least
    /// [`bpf::MIN_KEEP`], so the headers always fit). The segment's `len` is always the full
    /// payload length, from the IP header. Keeping the ring free of payload is what lets a
    /// lesson that sends megabytes be captured without a drop.
    pub snaplen: u32,
    /// Keep the frames (for a pcapng file); without, only the parsed segments are kept.
    pub keep_frames: bool,
    /// The most segments (and frames) kept; past it the capture counts what it leaves out
    /// (`CaptureStats::over_limit`) and says so when it finishes, so that its memory stays
    /// bounded however long it runs. [`MAX_SEGMENTS`] by default.
    pub max_segments: usize,
    /// The ring: bytes per block (a power of two, a multiple of the page size), blocks, and
    /// how long the kernel may hold a block that is not full.
    pub block_size: u32,
    pub blocks: u32,
    pub block_timeout: Duration,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interface: "lo".into(),
            ports: Vec::new(),
            origin: None,
            snaplen: 256,
            keep_frames: true,
            max_segments: MAX_SEGMENTS,
            block_size: 256 * 1024,
            blocks: 128,
            block_timeout: Duration::from_millis(5),
        }
    }
}

impl CaptureConfig {
    /// TCP on these ports of `lo`.
    pub fn loopback(ports: &[u16]) -> CaptureConfig {
        CaptureConfig {
            ports: ports.to_vec(),
            ..CaptureConfig::default()
        }
    }

    /// Count time from `origin` (a tracer's start), so segments and events share a clock.
    pub fn with_origin(mut self, origin: Instant) -> CaptureConfig {
        self.origin = Some(origin);
        self
    }
}

/// One captured frame as the kernel gave it, for the pcapng file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The kernel's timestamp, nanoseconds since the Unix epoch (CLOCK_REALTIME).
    pub real_ns: u64,
    /// The frame's length on the wire.
    pub len: u32,
    /// Its first `snaplen` bytes.
    pub data: Vec<u8>,
}

/// Counters for a finished capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CaptureStats {
    /// Frames the kernel let through the filter (PACKET_STATISTICS `tp_packets`, which
    /// includes the dropped ones).
    pub kernel_packets: u64,
    /// Frames that passed the filter but found the ring full: lost (`tp_drops`).
    pub kernel_drops: u64,
    /// How often the ring filled up (`tp_freeze_q_cnt`).
    pub ring_full: u64,
    /// Segments kept.
    pub segments: u64,
    /// Outgoing copies skipped on a loopback (0 when the kernel skipped them itself).
    pub duplicates: u64,
    /// Frames that were not a parsable TCP segment.
    pub unparsed: u64,
    /// Ring blocks read.
    pub blocks: u64,
    /// Segments left out because `max_segments` were kept already.
    pub over_limit: u64,
}

/// A finished capture.
#[derive(Debug, Clone, Default)]
pub struct CaptureReport {
    /// Every segment, in capture order, numbered.
    pub segments: Vec<Segment>,
    /// `frames[i]` is the frame of `segments[i]` (empty when frames were not kept).
    pub frames: Vec<Frame>,
    pub stats: CaptureStats,
    /// Things that went wrong but did not stop the capture.
    pub warnings: Vec<String>,
}

struct Shared {
    segments: Mutex<Vec<Segment>>,
    frames: Mutex<Vec<Frame>>,
    stats: Mutex<CaptureStats>,
    stop: AtomicBool,
    /// An eventfd the reader polls beside the ring, so a stop wakes it at once.
    wake: OwnedFd,
}

impl Shared {
    fn new() -> Result<Shared> {
        // SAFETY: plain eventfd(2); the fd is owned at once.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(Error::io("eventfd", io::Error::last_os_error()));
        }
        Ok(Shared {
            segments: Mutex::default(),
            frames: Mutex::default(),
            stats: Mutex::default(),
            stop: AtomicBool::new(false),
            // SAFETY: a fresh fd we own.
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes to our eventfd; a full counter (EAGAIN) is fine.
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking worker must not take the recorded segments with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into; both clocks always exist.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC, in nanoseconds: the reading bracketed most tightly
/// by two monotonic readings, of a few tries.
pub fn realtime_offset_ns() -> i128 {
    let mut best = (i128::MAX, 0i128);
    for _ in 0..5 {
        let a = clock_ns(libc::CLOCK_MONOTONIC);
        let r = clock_ns(libc::CLOCK_REALTIME);
        let b = clock_ns(libc::CLOCK_MONOTONIC);
        if b - a < best.0 {
            best = (b - a, r - (a + (b - a) / 2));
        }
    }
    best.1
}

/// The CLOCK_MONOTONIC reading of an `Instant` (std's Instant is CLOCK_MONOTONIC on Linux).
fn instant_mono_ns(at: Instant) -> i128 {
    let now = clock_ns(libc::CLOCK_MONOTONIC);
    let since = Instant::now().saturating_duration_since(at);
    now - since.as_nanos() as i128
}

/// A running capture. Stop it with [`Capture::finish`] (dropping it stops it too).
pub struct Capture {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<Result<()>>>,
    started: Instant,
    note: String,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("note", &self.note)
            .finish_non_exhaustive()
    }
}

/// Start a capture of TCP on `ports` of `lo` for a lesson, with times counted from `origin`
/// (a tracer's start) or from now. The error, when capture is refused, is one line.
///
/// The ring is smaller than the default (64 blocks of 64 KiB, handed over after 4 ms): a
/// lesson's few thousand segments need a fraction of the default's 32 MiB. (Its size does
/// not change what setting it up costs: that is an RCU grace period, the same for any size;
/// see [`Opened`].) The kernel hands a block over when it is full or its timeout runs out,
/// so a quiet lesson still uses a block per timeout: 64 of them ride out a reader kept off
/// the CPU for a quarter of a second. Churn-sized traffic wants
/// [`CaptureConfig::default`]'s 32 MiB (see the capture benchmark).
pub fn loopback(ports: &[u16], origin: Option<Instant>) -> Result<Capture> {
    Capture::start(CaptureConfig::lesson(ports, origin))
}

impl CaptureConfig {
    /// The configuration [`loopback`] starts with (keeping frames), for a caller that
    /// changes a field first (say `keep_frames` when no file is written).
    pub fn lesson(ports: &[u16], origin: Option<Instant>) -> CaptureConfig {
        CaptureConfig {
            origin,
            block_size: 64 * 1024,
            blocks: 64,
            block_timeout: Duration::from_millis(4),
            ..CaptureConfig::loopback(ports)
        }
    }
}

fn open_error(cfg: &CaptureConfig, e: OpenError) -> Error {
    let what = format!("capture on {} refused", cfg.interface);
    match e.error.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => Error::Permission(format!(
            "{what}: {} needs CAP_NET_RAW ({}); run as root, or inside a user + network \
             namespace of your own (`unshare -rn`), where it sees that namespace's traffic only",
            e.step, e.error
        )),
        Some(libc::ENODEV) | Some(libc::ENXIO) => Error::InvalidInput(format!(
            "{what}: no interface named {:?} in this network namespace",
            cfg.interface
        )),
        Some(libc::EAFNOSUPPORT) => Error::Permission(format!(
            "{what}: this kernel or sandbox has no AF_PACKET sockets ({})",
            e.error
        )),
        _ => Error::io(format!("{what}: {}", e.step), e.error),
    }
}

/// A capture whose socket is open, filtered, bound and ringed, but whose reader has not
/// started: [`Capture::open`] does the slow part (the kernel waits for an RCU grace period
/// when it sets up the ring, `synchronize_net()` in `packet_set_ring()`,
/// net/packet/af_packet.c) so a caller can do it on another thread while it starts a
/// tracer, then [`Opened::run`] with the tracer's clock. Frames that arrive in between wait
/// in the ring.
pub struct Opened {
    cfg: CaptureConfig,
    ring: PacketRing,
    loopback: bool,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("interface", &self.cfg.interface)
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// Open the socket, attach the filter, map the ring and start the reader thread.
    /// Returns once the socket is bound: every segment after this returns is captured.
    pub fn start(cfg: CaptureConfig) -> Result<Capture> {
        let origin = cfg.origin;
        Capture::open(cfg)?.run(origin)
    }

    /// The first half of [`Capture::start`]: open, filter, map and bind; every segment
    /// after this returns is captured once [`Opened::run`] starts the reader.
    pub fn open(cfg: CaptureConfig) -> Result<Opened> {
        let filter = bpf::tcp_ports(&cfg.ports, cfg.snaplen).ok_or_else(|| {
            Error::InvalidInput(format!(
                "capture watches at most {} ports, not {}",
                bpf::MAX_PORTS,
                cfg.ports.len()
            ))
        })?;
        let page = 4096u32;
        if !cfg.block_size.is_power_of_two() || cfg.block_size < page || cfg.blocks == 0 {
            return Err(Error::InvalidInput(format!(
                "capture ring: block size {} must be a power of two of at least {page} bytes, \
                 and there must be at least one block",
                cfg.block_size
            )));
        }
        let size = RingSize {
            block_size: cfg.block_size,
            blocks: cfg.blocks,
            block_timeout: cfg.block_timeout,
        };
        let (ring, loopback) =
            PacketRing::open(&cfg.interface, &filter, size).map_err(|e| open_error(&cfg, e))?;
        Ok(Opened {
            cfg,
            ring,
            loopback,
        })
    }
}

impl Opened {
    /// Start the reader: `t_us` counts from `origin` (a tracer's start), else from the
    /// configuration's origin, else from now.
    pub fn run(self, origin: Option<Instant>) -> Result<Capture> {
        let Opened {
            cfg,
            ring,
            loopback,
        } = self;
        let started = origin.or(cfg.origin).unwrap_or_else(Instant::now);
        let origin_ns = instant_mono_ns(started);
        let shared = Arc::new(Shared::new()?);
        let ports = if cfg.ports.is_empty() {
            "every port".to_string()
        } else {
            let ps: Vec<String> = cfg.ports.iter().map(u16::to_string).collect();
            format!("port {}", ps.join(", "))
        };
        let note = format!(
            "capturing TCP on {} ({ports}) through AF_PACKET, TPACKET_V3 ring of {} x {} KiB",
            cfg.interface,
            cfg.blocks,
            cfg.block_size / 1024
        );
        let reader = Reader {
            ring,
            shared: Arc::clone(&shared),
            numbering: Numbering::new(),
            origin_ns,
            offset_ns: realtime_offset_ns(),
            offset_at: Instant::now(),
            loopback,
            snaplen: cfg.snaplen as usize,
            keep_frames: cfg.keep_frames,
            max_segments: cfg.max_segments,
            block_timeout: cfg.block_timeout,
        };
        let worker = std::thread::Builder::new()
            .name("tcplab-capture".into())
            .spawn(move || reader.run())
            .map_err(|e| Error::io("start the capture thread", e))?;
        Ok(Capture {
            shared,
            worker: Some(worker),
            started,
            note,
        })
    }
}

impl Capture {
    /// What is captured, for a human.
    pub fn note(&self) -> &str {
        &self.note
    }

    /// Where `t_us` counts from.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The segments captured after the first `from`: for a live display.
    pub fn segments_since(&self, from: usize) -> Vec<Segment> {
        lock(&self.shared.segments)
            .get(from..)
            .map(<[Segment]>::to_vec)
            .unwrap_or_default()
    }

    /// Every segment so far.
    pub fn segments(&self) -> Vec<Segment> {
        self.segments_since(0)
    }

    /// Whether the reader thread has ended (on an error) without being stopped.
    pub fn is_finished(&self) -> bool {
        self.worker.as_ref().is_none_or(|w| w.is_finished())
    }

    /// Stop: the reader drains what the kernel has already queued (waiting out one block
    /// timeout so a block that is not full is handed over), then ends. The segments stay
    /// readable; the error, if the reader failed, is returned here (once).
    pub fn halt(&mut self) -> Result<()> {
        self.shared.stop();
        match self.worker.take() {
            None => Ok(()),
            Some(w) => match w.join() {
                Ok(r) => r,
                Err(_) => Err(Error::io(
                    "the capture thread",
                    io::Error::other("panicked"),
                )),
            },
        }
    }

    /// Stop and return everything captured, with the counters.
    pub fn finish(mut self) -> Result<CaptureReport> {
        self.halt()?;
        let segments = std::mem::take(&mut *lock(&self.shared.segments));
        let frames = std::mem::take(&mut *lock(&self.shared.frames));
        let stats = *lock(&self.shared.stats);
        let mut warnings = Vec::new();
        if stats.kernel_drops > 0 {
            warnings.push(format!(
                "the capture ring overflowed: the kernel dropped {} of {} frames \
                 (PACKET_STATISTICS); a bigger ring (more blocks) keeps up",
                stats.kernel_drops, stats.kernel_packets
            ));
        }
        if stats.over_limit > 0 {
            warnings.push(format!(
                "the capture kept its first {} segments and left out {} more \
                 (CaptureConfig::max_segments bounds its memory); a shorter run, or tcpdump \
                 with a ring of files, keeps them all",
                stats.segments, stats.over_limit
            ));
        }
        Ok(CaptureReport {
            segments,
            frames,
            stats,
            warnings,
        })
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.halt();
    }
}

/// The reader thread's state.
struct Reader {
    ring: PacketRing,
    shared: Arc<Shared>,
    numbering: Numbering,
    /// The origin's CLOCK_MONOTONIC reading.
    origin_ns: i128,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC, and when it was last read.
    offset_ns: i128,
    offset_at: Instant,
    loopback: bool,
    snaplen: usize,
    keep_frames: bool,
    max_segments: usize,
    block_timeout: Duration,
}

impl Reader {
    fn run(mut self) -> Result<()> {
        let tick = Duration::from_millis(50);
        loop {
            let stopping = self.shared.stop.load(Ordering::SeqCst);
            if stopping {
                // A block that is not full is handed over after block_timeout: when the
                // kernel has begun one, wait that out (twice at most), then stop. A frame
                // still in a softirq gets a millisecond to land first.
                let until = Instant::now() + self.block_timeout * 2 + Duration::from_millis(5);
                while Instant::now() < until {
                    // The eventfd stays readable now: this sleeps instead of polling.
                    std::thread::sleep(Duration::from_millis(1));
                    self.read_blocks();
                    if self.ring.idle() {
                        break;
                    }
                }
                self.read_blocks();
                self.update_stats();
                // Closing an AF_PACKET socket waits for an RCU grace period
                // (synchronize_net), tens of milliseconds on a busy machine: done off the
                // caller's path, once everything is read.
                let ring = self.ring;
                let _ = std::thread::Builder::new()
                    .name("tcplab-capture-close".into())
                    .spawn(move || drop(ring));
                return Ok(());
            }
            self.ring
                .wait(tick, &self.shared.wake)
                .map_err(|e| Error::io("poll the capture socket", e))?;
            self.read_blocks();
            if self.offset_at.elapsed() >= Duration::from_secs(1) {
                self.offset_ns = realtime_offset_ns();
                self.offset_at = Instant::now();
                self.update_stats();
            }
        }
    }

    fn update_stats(&mut self) {
        let k: KernelStats = self.ring.stats();
        let mut st = lock(&self.shared.stats);
        st.kernel_packets = k.packets;
        st.kernel_drops = k.drops;
        st.ring_full = k.freeze_q;
    }

    fn read_blocks(&mut self) {
        let mut segs = Vec::new();
        let mut frames = Vec::new();
        let (mut dup, mut unparsed) = (0u64, 0u64);
        let Reader {
            ring,
            numbering,
            origin_ns,
            offset_ns,
            loopback,
            snaplen,
            keep_frames,
            ..
        } = self;
        let blocks = ring.drain(|f| {
            if *loopback && f.pkttype == libc::PACKET_OUTGOING {
                dup += 1;
                return;
            }
            let Some(parsed) = parse_frame(f.data) else {
                unparsed += 1;
                return;
            };
            let mono = i128::from(f.real_ns) - *offset_ns;
            let t_us = ((mono - *origin_ns).max(0) / 1000) as u64;
            segs.push(numbering.number(parsed, t_us));
            if !*keep_frames {
                return;
            }
            frames.push(Frame {
                real_ns: f.real_ns,
                len: f.len,
                data: f.data[..f.data.len().min(*snaplen)].to_vec(),
            });
        });
        if blocks == 0 {
            return;
        }
        // Bounded: past max_segments only the count goes on.
        let kept = lock(&self.shared.segments).len();
        let room = self.max_segments.saturating_sub(kept);
        let over = segs.len().saturating_sub(room);
        segs.truncate(room);
        frames.truncate(room);
        {
            let mut st = lock(&self.shared.stats);
            st.over_limit += over as u64;
            st.blocks += u64::from(blocks);
            st.segments += segs.len() as u64;
            st.duplicates += dup;
            st.unparsed += unparsed;
        }
        // Frames first: a reader that sees a segment finds its frame.
        lock(&self.shared.frames).append(&mut frames);
        lock(&self.shared.segments).append(&mut segs);
    }
}
