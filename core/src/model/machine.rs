//! The RFC 9293 connection state machine for one endpoint: eleven states, the user calls,
//! the segments and the timers that move it, written as one exhaustive
//! `match (state, input)` with the section of the RFC each arm follows.
//!
//! What it teaches: which event moves a connection from one state to the next, what it sends
//! in answer, and where Linux deliberately differs from the RFC (see [`Options`]).
//!
//! What it leaves out on purpose: windows, MSS, congestion control, urgent data, options,
//! precedence, PAWS and timestamps, the rate limits on ACKs that answer bad segments
//! (tcp_invalid_ratelimit, tcp_challenge_ack_limit), and RTO backoff (one fixed RTO).
//! Sequence numbers are kept, but abstract: every data segment is one unit of sequence space
//! (like SYN and FIN), and the receive window is one unit wide, so a segment is acceptable
//! only if it is exactly the next one expected; a real TCP would also queue segments further
//! ahead in its window. That is enough to tell an old duplicate from new data, and a
//! retransmitted FIN from a new one. The machine is pure: no I/O, no clock, no randomness;
//! the caller passes the time in and chooses the initial sequence number (a connection that
//! reopens TIME-WAIT takes Linux's choice, see [`Options::reopen_time_wait_on_syn`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::state::TcpState;

/// The eleven states of RFC 9293 section 3.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum State {
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

impl State {
    /// Every state, in the order RFC 9293 section 3.3.2 lists them (CLOSED first here).
    pub const ALL: [State; 11] = [
        State::Closed,
        State::Listen,
        State::SynSent,
        State::SynReceived,
        State::Established,
        State::FinWait1,
        State::FinWait2,
        State::CloseWait,
        State::Closing,
        State::LastAck,
        State::TimeWait,
    ];

    /// The Linux state this RFC state is reported as.
    pub fn tcp(self) -> TcpState {
        match self {
            State::Closed => TcpState::Close,
            State::Listen => TcpState::Listen,
            State::SynSent => TcpState::SynSent,
            State::SynReceived => TcpState::SynRecv,
            State::Established => TcpState::Established,
            State::FinWait1 => TcpState::FinWait1,
            State::FinWait2 => TcpState::FinWait2,
            State::CloseWait => TcpState::CloseWait,
            State::Closing => TcpState::Closing,
            State::LastAck => TcpState::LastAck,
            State::TimeWait => TcpState::TimeWait,
        }
    }

    /// States in which both sides' sequence numbers are known (RFC 9293 3.10.7.4).
    pub fn synchronized(self) -> bool {
        !matches!(self, State::Closed | State::Listen | State::SynSent)
    }
}

impl fmt::Display for State {
    /// netstat's spelling, like [`TcpState`]: `FIN_WAIT1`, `CLOSE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.tcp().netstat())
    }
}

/// The kinds of segment the model knows, by their control bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SegKind {
    Syn,
    SynAck,
    Ack,
    /// A FIN without ACK: legal only before synchronisation; real stacks always set ACK.
    Fin,
    FinAck,
    /// A RST without ACK: what a TCP sends in answer to a segment that carried an ACK
    /// (`<SEQ=SEG.ACK><CTL=RST>`, RFC 9293 3.10.7.1), and what ABORT sends (3.10.5).
    Rst,
    /// A RST with ACK: the answer to a segment without ACK, a SYN above all
    /// (`<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`, RFC 9293 3.10.7.1). Only this kind can
    /// refuse a connection: in SYN-SENT a RST counts only if its ACK acknowledges our SYN
    /// (RFC 9293 3.10.7.3).
    RstAck,
    /// One unit of data, with ACK.
    Data,
}

impl SegKind {
    pub const ALL: [SegKind; 8] = [
        SegKind::Syn,
        SegKind::SynAck,
        SegKind::Ack,
        SegKind::Fin,
        SegKind::FinAck,
        SegKind::Rst,
        SegKind::RstAck,
        SegKind::Data,
    ];

    /// The label drawn on arrows: `SYN`, `SYN+ACK`, `FIN+ACK`, `DATA`.
    pub fn label(self) -> &'static str {
        match self {
            SegKind::Syn => "SYN",
            SegKind::SynAck => "SYN+ACK",
            SegKind::Ack => "ACK",
            SegKind::Fin => "FIN",
            SegKind::FinAck => "FIN+ACK",
            SegKind::Rst => "RST",
            SegKind::RstAck => "RST+ACK",
            SegKind::Data => "DATA",
        }
    }

    /// Whether the ACK bit is set (the `ack` field means something).
    pub fn has_ack(self) -> bool {
        matches!(
            self,
            SegKind::SynAck | SegKind::Ack | SegKind::FinAck | SegKind::RstAck | SegKind::Data
        )
    }

    /// Whether the RST bit is set.
    pub fn is_rst(self) -> bool {
        matches!(self, SegKind::Rst | SegKind::RstAck)
    }

    /// Whether the FIN bit is set.
    pub fn has_fin(self) -> bool {
        matches!(self, SegKind::Fin | SegKind::FinAck)
    }

    /// Sequence space consumed: SYN, FIN and (in this model) a data segment take one unit.
    pub fn seq_len(self) -> u32 {
        match self {
            SegKind::Syn | SegKind::SynAck | SegKind::Fin | SegKind::FinAck | SegKind::Data => 1,
            SegKind::Ack | SegKind::Rst | SegKind::RstAck => 0,
        }
    }
}

impl fmt::Display for SegKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.label())
    }
}

/// A segment: control bits plus the two sequence numbers that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Segment {
    pub kind: SegKind,
    pub seq: u32,
    /// Meaningful only when [`SegKind::has_ack`].
    pub ack: u32,
}

impl Segment {
    pub fn new(kind: SegKind, seq: u32, ack: u32) -> Segment {
        Segment { kind, seq, ack }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind.has_ack() {
            write!(f, "{} seq={} ack={}", self.kind, self.seq, self.ack)
        } else {
            write!(f, "{} seq={}", self.kind, self.seq)
        }
    }
}

/// The user calls of RFC 9293 section 3.10 (3.10.1 OPEN .. 3.10.5 ABORT), in sockets terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Call {
    /// `connect()`: OPEN with a foreign socket.
    ActiveOpen,
    /// `listen()`: passive OPEN.
    PassiveOpen,
    /// `write()` of one unit of data.
    Send,
    /// `read()` until the receive buffer is empty.
    Read,
    /// `close()`: CLOSE, and the program gives up the descriptor (the socket is orphaned).
    Close,
    /// `shutdown(SHUT_WR)`: CLOSE of the sending direction only; the program keeps reading.
    ShutdownWrite,
    /// `close()` with SO_LINGER {on, 0}: ABORT, a RST instead of a FIN.
    Abort,
}

impl Call {
    pub const ALL: [Call; 7] = [
        Call::ActiveOpen,
        Call::PassiveOpen,
        Call::Send,
        Call::Read,
        Call::Close,
        Call::ShutdownWrite,
        Call::Abort,
    ];

    /// What a program calls: `connect()`, `close()`, `shutdown(WR)`.
    pub fn label(self) -> &'static str {
        match self {
            Call::ActiveOpen => "connect()",
            Call::PassiveOpen => "listen()",
            Call::Send => "write()",
            Call::Read => "read()",
            Call::Close => "close()",
            Call::ShutdownWrite => "shutdown(WR)",
            Call::Abort => "abort()",
        }
    }

    /// The RFC's name for the call, for the state diagram: `active OPEN`, `CLOSE`.
    pub fn rfc_label(self) -> &'static str {
        match self {
            Call::ActiveOpen => "active OPEN",
            Call::PassiveOpen => "passive OPEN",
            Call::Send => "SEND",
            Call::Read => "RECEIVE",
            Call::Close => "CLOSE",
            Call::ShutdownWrite => "CLOSE (shutdown WR)",
            Call::Abort => "ABORT",
        }
    }
}

/// The timers of RFC 9293 section 3.10.8, plus Linux's orphan FIN_WAIT2 timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Timer {
    /// The TIME-WAIT timeout: 2*MSL in the RFC (MUST-13), 60 s on Linux.
    TimeWait,
    /// Linux's tcp_fin_timeout for an orphaned FIN_WAIT2 socket; the RFC has none.
    FinWait2,
    /// The retransmission timeout.
    Retransmit,
}

impl Timer {
    pub const ALL: [Timer; 3] = [Timer::TimeWait, Timer::FinWait2, Timer::Retransmit];

    pub fn label(self) -> &'static str {
        match self {
            Timer::TimeWait => "TIME_WAIT timer",
            Timer::FinWait2 => "fin_timeout",
            Timer::Retransmit => "RTO",
        }
    }
}

/// Everything that can happen to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Input {
    User(Call),
    Segment(Segment),
    Timer(Timer),
}

impl Input {
    /// A short label for diagrams: `close()`, `rcv FIN+ACK`, `RTO`.
    pub fn label(&self) -> String {
        match self {
            Input::User(c) => c.rfc_label().to_string(),
            Input::Segment(s) => format!("rcv {}", s.kind),
            Input::Timer(t) => t.label().to_string(),
        }
    }
}

/// An error reported to the program, with the RFC's wording (section 3.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UserError {
    /// ECONNRESET: a RST arrived on a synchronized connection.
    ConnectionReset,
    /// ECONNREFUSED: a RST answered our SYN.
    ConnectionRefused,
    /// ETIMEDOUT: retransmissions gave up.
    TimedOut,
    /// The call makes no sense after our FIN (EPIPE for a write after shutdown).
    ConnectionClosing,
    /// ENOTCONN: there is no connection.
    ConnectionDoesNotExist,
    /// EISCONN: the connection is already open.
    ConnectionExists,
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            UserError::ConnectionReset => "connection reset (ECONNRESET)",
            UserError::ConnectionRefused => "connection refused (ECONNREFUSED)",
            UserError::TimedOut => "connection timed out (ETIMEDOUT)",
            UserError::ConnectionClosing => "connection closing (EPIPE)",
            UserError::ConnectionDoesNotExist => "connection does not exist (ENOTCONN)",
            UserError::ConnectionExists => "connection already exists (EISCONN)",
        })
    }
}

/// Where a profile deviates from the letter of RFC 9293. Each field says who does what.
///
/// [`Options::rfc`] follows the event processing of RFC 9293 section 3.10 to the letter and
/// takes none of its MAYs; [`Options::linux`] does what Linux 6.x does with default sysctls.
/// Where the two part ways on how a connection ends:
///
/// | field | RFC 9293 | Linux |
/// |---|---|---|
/// | `time_wait_us` | 2*MSL = 240 s (3.6.1, MUST-13) | 60 s, TCP_TIMEWAIT_LEN |
/// | `fin_wait2_timeout_us` | none: FIN-WAIT-2 waits forever | tcp_fin_timeout, 60 s, for an orphan |
/// | `rst_on_unread_close` | a SHOULD (3.6.1) that the event processing leaves out | yes (`__tcp_close()`) |
/// | `reopen_time_wait_on_syn` | no (reopening is MAY-2) | yes, a SYN above RCV.NXT reopens |
/// | `restart_time_wait_on_ack` | only a FIN restarts the 2*MSL timer | any segment with ACK restarts it |
/// | retries | time limits (3.8.3): 100 s, 3 min for a SYN | counts per state (sysctls) |
///
/// The Linux TIME-WAIT rows were seen on this project's 6.18 kernel with
/// `scripts/time_wait_probe.py` (root: it plays the peer with hand-made segments in two
/// network namespaces of its own and reads the timer with `ss`).
///
/// Where they agree, there is no field: a RST in SYN-SENT counts only with an acceptable ACK
/// (RFC 9293 3.10.7.3; Linux `tcp_rcv_synsent_state_process()`), and a SYN in a synchronized
/// state gets a challenge ACK (3.10.7.4 fourth check, RFC 5961 section 4.2; Linux
/// `tcp_validate_incoming()` -> `tcp_send_challenge_ack()`, in net/ipv4/tcp_input.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Options {
    /// A short name for output: `rfc` or `linux`.
    pub name: &'static str,
    /// How long TIME_WAIT lasts. RFC 9293 MUST-13: 2*MSL with MSL = 2 minutes, so 240 s.
    /// Linux: TCP_TIMEWAIT_LEN, a fixed 60 s that no sysctl changes.
    pub time_wait_us: u64,
    /// How long an orphaned FIN_WAIT2 socket (the program closed, the peer has not) may live.
    /// The RFC has no such timer: FIN-WAIT-2 waits forever. Linux: net.ipv4.tcp_fin_timeout,
    /// 60 s by default; the socket then disappears quietly, sending nothing.
    pub fin_wait2_timeout_us: Option<u64>,
    /// close() with unread received data (or data arriving after close()) sends RST instead
    /// of FIN. RFC 9293 section 3.6.1 says a TCP SHOULD do this (from RFC 1122 4.2.2.13), but
    /// Figure 5 does not draw it; RFC 2525 section 2.17 lists not doing it as a known
    /// implementation problem. Linux does it (tcp_close(): "data was lost").
    pub rst_on_unread_close: bool,
    /// Ignore a RST in TIME_WAIT (RFC 1337's fix for TIME-WAIT assassination). RFC 9293
    /// 3.10.7.4 says a RST closes TIME-WAIT; Linux's net.ipv4.tcp_rfc1337 is 0 by default,
    /// so Linux agrees with the RFC unless told otherwise.
    pub ignore_rst_in_time_wait: bool,
    /// A SYN in TIME-WAIT whose sequence number is above RCV.NXT reopens the connection: the
    /// TIME-WAIT socket goes, and the listener answers with SYN+ACK from SYN-RECEIVED.
    ///
    /// RFC 9293 3.6.1 allows it (MAY-2, taken from RFC 1122 4.2.2.13), provided the new ISS
    /// is above every sequence number the old connection used; RFC 6191 adds the same test
    /// with timestamps. The RFC's event processing (3.10.7.4 fourth check) answers any SYN
    /// with a challenge ACK (RFC 5961 section 4.2), and that is what the `rfc` profile does.
    ///
    /// Linux takes the MAY: `tcp_timewait_state_process()` (net/ipv4/tcp_minisocks.c)
    /// returns TCP_TW_SYN for a SYN without ACK that PAWS does not reject and whose sequence
    /// number is after `tw_rcv_nxt` or whose TSval is newer (the model has no timestamps, so
    /// only the first test applies), with ISS = `tw_snd_nxt + 65535 + 2`. `tcp_v4_rcv()`
    /// (net/ipv4/tcp_ipv4.c) then hands the SYN to a listener on the port if there is one;
    /// with none it answers with an ACK. The model's listener is the endpoint that opened
    /// passively ([`Tcb::passive`]), and it is taken to be still listening.
    pub reopen_time_wait_on_syn: bool,
    /// In TIME-WAIT, any segment with the ACK bit restarts the TIME-WAIT timer, and an
    /// in-window bare ACK (SEG.SEQ = RCV.NXT, no data, no FIN) is taken silently.
    ///
    /// RFC 9293 restarts the 2*MSL timeout only for a FIN (3.10.7.4 eighth check), answers
    /// an unacceptable segment with an ACK (first check), and has nothing to do for an
    /// acceptable bare ACK.
    ///
    /// Linux, in `tcp_timewait_state_process()`: an in-window bare ACK calls
    /// `inet_twsk_reschedule(tw, TCP_TIMEWAIT_LEN)` and returns TCP_TW_SUCCESS, so nothing is
    /// sent; any other segment (a retransmitted FIN, an old duplicate, data) is "out of
    /// window": it is ACKed (TCP_TW_ACK, rate-limited for bare ACKs and SYNs by
    /// `tcp_oow_rate_limited()`, which the model leaves out) and, if its ACK bit is set,
    /// the timer is restarted too. A SYN without ACK gets the ACK but no restart.
    pub restart_time_wait_on_ack: bool,
    /// The retransmission timeout, kept fixed (no backoff) to keep ladders readable.
    /// RFC 6298: 1 s initially. Linux on loopback: about TCP_RTO_MIN, 200 ms.
    pub rto_us: u64,
    /// Retransmissions of a SYN before connect() fails with ETIMEDOUT.
    /// Linux: net.ipv4.tcp_syn_retries, default 6. RFC 9293 3.8.3: a SYN MUST be retried for
    /// at least 3 minutes, here 180 retransmissions at the fixed 1 s RTO.
    pub syn_retries: u32,
    /// Retransmissions of a SYN+ACK before a passive open gives up.
    /// Linux: net.ipv4.tcp_synack_retries, default 5. RFC: as for a SYN.
    pub synack_retries: u32,
    /// Retransmissions on a connection the program still holds before it gives up.
    /// Linux: net.ipv4.tcp_retries2, default 15. RFC 9293 3.8.3: at least 100 s (R2),
    /// here 100 retransmissions at the fixed 1 s RTO.
    pub retries: u32,
    /// Retransmissions on an orphan (the program called close()) before it gives up.
    /// Linux: net.ipv4.tcp_orphan_retries is 0 by default, which `tcp_orphan_retries()`
    /// (net/ipv4/tcp_timer.c) turns into 8 as long as the RTO is below TCP_RTO_MAX (120 s;
    /// `tcp_write_timeout()` passes `alive = icsk_rto < TCP_RTO_MAX`). The RFC has no
    /// orphans: the same limit as `retries`.
    ///
    /// The model counts retransmissions at a fixed RTO; Linux turns tcp_retries2 and
    /// tcp_orphan_retries into a time budget computed as if the RTO doubled each time
    /// (`retransmits_timed_out()`, net/ipv4/tcp_timer.c), so a model run gives up much
    /// sooner than the kernel would.
    pub orphan_retries: u32,
}

impl Options {
    /// The letter of RFC 9293: TIME-WAIT for 2*MSL = 240 s, no FIN-WAIT-2 timer, no
    /// reopening from TIME-WAIT, only a FIN restarts the TIME-WAIT timer.
    pub fn rfc() -> Options {
        Options {
            name: "rfc",
            time_wait_us: 240_000_000,
            fin_wait2_timeout_us: None,
            rst_on_unread_close: false,
            ignore_rst_in_time_wait: false,
            reopen_time_wait_on_syn: false,
            restart_time_wait_on_ack: false,
            rto_us: 1_000_000,
            syn_retries: 180,
            synack_retries: 180,
            retries: 100,
            orphan_retries: 100,
        }
    }

    /// What Linux 6.x does with default sysctls (checked on this project's 6.18 machine:
    /// tcp_syn_retries 6, tcp_synack_retries 5, tcp_retries2 15, tcp_orphan_retries 0,
    /// tcp_rfc1337 0, tcp_fin_timeout 60).
    pub fn linux() -> Options {
        Options {
            name: "linux",
            time_wait_us: 60_000_000,
            fin_wait2_timeout_us: Some(60_000_000),
            rst_on_unread_close: true,
            ignore_rst_in_time_wait: false,
            reopen_time_wait_on_syn: true,
            restart_time_wait_on_ack: true,
            rto_us: 200_000,
            syn_retries: 6,
            synack_retries: 5,
            retries: 15,
            orphan_retries: 8,
        }
    }

    /// The retransmission limit for `tcb` in its current state. Linux picks it in
    /// `tcp_write_timeout()` (net/ipv4/tcp_timer.c): tcp_syn_retries for a socket in
    /// SYN_SENT or SYN_RECV (a simultaneous open), tcp_orphan_retries for an orphan,
    /// tcp_retries2 otherwise; a request socket (a passive SYN_RECV) retransmits its SYN+ACK
    /// tcp_synack_retries times (`reqsk_timer_handler()`, net/ipv4/inet_connection_sock.c).
    pub fn retry_limit(&self, tcb: &Tcb) -> u32 {
        match tcb.state {
            State::SynSent => self.syn_retries,
            State::SynReceived if tcb.passive => self.synack_retries,
            State::SynReceived => self.syn_retries,
            State::Closed
            | State::Listen
            | State::Established
            | State::FinWait1
            | State::FinWait2
            | State::CloseWait
            | State::Closing
            | State::LastAck
            | State::TimeWait => {
                if tcb.orphaned {
                    self.orphan_retries
                } else {
                    self.retries
                }
            }
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::linux()
    }
}

/// Armed timers, as absolute simulated times in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timers {
    pub time_wait: Option<u64>,
    pub fin_wait2: Option<u64>,
    pub retransmit: Option<u64>,
}

impl Timers {
    /// The deadline of one timer.
    pub fn get(&self, t: Timer) -> Option<u64> {
        match t {
            Timer::TimeWait => self.time_wait,
            Timer::FinWait2 => self.fin_wait2,
            Timer::Retransmit => self.retransmit,
        }
    }

    /// The earliest armed timer.
    pub fn next(&self) -> Option<(u64, Timer)> {
        Timer::ALL
            .into_iter()
            .filter_map(|t| self.get(t).map(|at| (at, t)))
            .min()
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub from: State,
    /// Every state entered, in order; empty if the state did not change. A segment can move
    /// the machine twice (a FIN+ACK that acks our FIN in FIN_WAIT1 goes through FIN_WAIT2 to
    /// TIME_WAIT, as Linux reports it).
    pub path: Vec<State>,
    /// Segments to send, in order.
    pub send: Vec<Segment>,
    /// An error for the program, if any.
    pub error: Option<UserError>,
    /// Units of data handed to the receive buffer.
    pub delivered: u32,
    /// Which rule applied, citing RFC 9293 (or Linux) in a few words.
    pub why: &'static str,
}

impl Output {
    /// The state after the step.
    pub fn to(&self) -> State {
        self.path.last().copied().unwrap_or(self.from)
    }
}

/// The transmission control block: the state plus the few variables the model keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tcb {
    pub state: State,
    /// Reached SYN-RECEIVED from LISTEN (RFC 9293 Figure 5 note 1: a RST returns to LISTEN).
    pub passive: bool,
    pub iss: u32,
    pub snd_una: u32,
    pub snd_nxt: u32,
    pub irs: u32,
    pub rcv_nxt: u32,
    /// Our FIN has been sent (it is the last unit of sequence space we use).
    pub fin_sent: bool,
    /// Units received and not read by the program yet.
    pub unread: u32,
    /// The program called close(): nobody will read from or write to this socket again.
    pub orphaned: bool,
    pub timers: Timers,
    /// Segments sent and not acknowledged, oldest first (what the RTO resends).
    pub unacked: Vec<Segment>,
    pub retries: u32,
}

/// `a < b` in sequence space (RFC 9293 3.4, modulo 2^32).
fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

impl Tcb {
    /// A fresh CLOSED endpoint that will use `iss` as its initial send sequence number.
    pub fn new(iss: u32) -> Tcb {
        Tcb {
            state: State::Closed,
            passive: false,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            irs: 0,
            rcv_nxt: 0,
            fin_sent: false,
            unread: 0,
            orphaned: false,
            timers: Timers::default(),
            unacked: Vec::new(),
            retries: 0,
        }
    }

    /// Whether everything we sent, FIN included, is acknowledged.
    pub fn fin_acked(&self) -> bool {
        self.fin_sent && self.snd_una == self.snd_nxt
    }

    /// A segment from us with the current numbers.
    fn seg(&self, kind: SegKind) -> Segment {
        Segment::new(kind, self.snd_nxt, self.rcv_nxt)
    }

    /// Send a segment that uses sequence space, remember it for retransmission.
    fn emit(&mut self, kind: SegKind, now: u64, opts: &Options, out: &mut Output) {
        let s = self.seg(kind);
        self.snd_nxt = self.snd_nxt.wrapping_add(kind.seq_len());
        if kind.has_fin() {
            self.fin_sent = true;
        }
        self.unacked.push(s);
        if self.timers.retransmit.is_none() {
            self.timers.retransmit = Some(now + opts.rto_us);
        }
        out.send.push(s);
    }

    /// A bare ACK of everything received so far.
    fn ack_now(&self, out: &mut Output) {
        out.send.push(self.seg(SegKind::Ack));
    }

    /// Take in-order text (3.10.7.4 seventh check): queue it for the reader and ACK it.
    fn receive_data(&mut self, out: &mut Output) {
        self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
        self.unread += 1;
        out.delivered = 1;
        self.ack_now(out);
    }

    /// An acceptable RST in a synchronized state (3.10.7.4 second check): the user sees
    /// "connection reset" and the connection is gone.
    fn reset_by_peer(&mut self, now: u64, opts: &Options, out: &mut Output) {
        out.error = Some(UserError::ConnectionReset);
        self.enter(State::Closed, now, opts, out);
        out.why = "RFC 9293 3.10.7.4 second check: RST, connection reset";
    }

    /// Enter a state, arming or clearing the timers that belong to it.
    fn enter(&mut self, s: State, now: u64, opts: &Options, out: &mut Output) {
        self.state = s;
        out.path.push(s);
        match s {
            State::Closed => {
                self.timers = Timers::default();
                self.unacked.clear();
                self.orphaned = false;
                self.unread = 0;
            }
            State::TimeWait => {
                // MUST-13: TIME-WAIT lasts 2*MSL (Linux: a fixed 60 s).
                self.timers = Timers {
                    time_wait: Some(now + opts.time_wait_us),
                    ..Timers::default()
                };
                self.unacked.clear();
            }
            State::FinWait2 => self.arm_fin_wait2(now, opts),
            State::Listen => {
                // Back to LISTEN after a RST in SYN-RECEIVED: forget the half-open connection.
                self.timers = Timers::default();
                self.unacked.clear();
            }
            State::SynSent
            | State::SynReceived
            | State::Established
            | State::FinWait1
            | State::CloseWait
            | State::Closing
            | State::LastAck => {}
        }
    }

    fn arm_fin_wait2(&mut self, now: u64, opts: &Options) {
        if let (true, Some(t)) = (self.orphaned, opts.fin_wait2_timeout_us) {
            self.timers.fin_wait2 = Some(now + t);
        }
    }

    /// Abortive close: RST with our next sequence number, then CLOSED.
    fn reset_and_close(&mut self, now: u64, opts: &Options, out: &mut Output) {
        out.send.push(Segment::new(SegKind::Rst, self.snd_nxt, 0));
        self.enter(State::Closed, now, opts, out);
    }

    /// The RST a CLOSED or LISTEN endpoint answers a stray segment with (RFC 9293 3.10.7.1):
    /// `<SEQ=SEG.ACK><CTL=RST>` if it carried an ACK, else
    /// `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`, whose ACK lets SYN-SENT accept it.
    fn rst_for(seg: &Segment) -> Segment {
        if seg.kind.has_ack() {
            Segment::new(SegKind::Rst, seg.ack, 0)
        } else {
            Segment::new(SegKind::RstAck, 0, seg.seq.wrapping_add(seg.kind.seq_len()))
        }
    }

    /// RFC 9293 3.10.7.3: in SYN-SENT an ACK is acceptable if SND.UNA < SEG.ACK =< SND.NXT,
    /// that is, here, if it acknowledges our SYN.
    fn syn_sent_ack_ok(&self, seg: &Segment) -> bool {
        seg.kind.has_ack() && seq_lt(self.snd_una, seg.ack) && !seq_lt(self.snd_nxt, seg.ack)
    }

    /// Restart the TIME-WAIT timer (RFC 9293 3.10.7.4 eighth check; Linux
    /// `inet_twsk_reschedule(tw, TCP_TIMEWAIT_LEN)`).
    fn restart_time_wait(&mut self, now: u64, opts: &Options) {
        self.timers.time_wait = Some(now + opts.time_wait_us);
    }

    /// RFC 9293 3.10.7.4, first and fifth checks, for synchronized states but TIME-WAIT (whose
    /// arm does its own checks, as Linux's `tcp_timewait_state_process()` does): is the
    /// segment the next one expected, and does its ACK make sense? Returns `false` if the
    /// segment was dealt with here (dropped, perhaps with an ACK) and must not reach the
    /// state arms. Also takes the ACK: advances SND.UNA and forgets acknowledged segments.
    /// A RST's ACK field is not looked at: the RST check (second) comes before the ACK
    /// check (fifth).
    fn check_sequence(&mut self, seg: &Segment, out: &mut Output) -> bool {
        if self.state == State::TimeWait {
            return true;
        }
        if seg.seq != self.rcv_nxt {
            // First check: not acceptable (an old duplicate, or ahead of our one-unit window).
            // Send an ACK unless it is a RST, and drop it. With a one-unit window an
            // acceptable RST is always the exact match RFC 5961 section 3.2 asks for.
            if !seg.kind.is_rst() {
                self.ack_now(out);
            }
            out.why = "RFC 9293 3.10.7.4 first check: unacceptable segment, ACK and drop";
            return false;
        }
        if seg.kind.has_ack() && !seg.kind.is_rst() {
            if seq_lt(self.snd_nxt, seg.ack) {
                // Fifth check: it acks something not yet sent. (RFC 5961 section 5.2 also
                // answers an ACK below SND.UNA - MAX.SND.WND with an ACK and drops it; the model
                // keeps no send window, so it leaves that test out.)
                if self.state == State::SynReceived {
                    out.send.push(Tcb::rst_for(seg));
                } else {
                    self.ack_now(out);
                }
                out.why = "RFC 9293 3.10.7.4 fifth check: ACK of unsent data, drop";
                return false;
            }
            if seq_lt(self.snd_una, seg.ack) {
                self.snd_una = seg.ack;
                let una = self.snd_una;
                self.unacked
                    .retain(|s| !seq_lt(s.seq.wrapping_add(s.kind.seq_len()).wrapping_sub(1), una));
                self.retries = 0;
                if self.unacked.is_empty() {
                    self.timers.retransmit = None;
                }
            }
        }
        true
    }

    /// Take one input at time `now_us`: the heart of the model.
    pub fn step(&mut self, input: Input, now_us: u64, opts: &Options) -> Output {
        use SegKind as K;
        use State as S;
        let now = now_us;
        let mut out = Output {
            from: self.state,
            path: Vec::new(),
            send: Vec::new(),
            error: None,
            delivered: 0,
            why: "",
        };
        // A timer that is not armed (or not yet due) does nothing: it was cancelled.
        if let Input::Timer(t) = input {
            match self.timers.get(t) {
                Some(at) if at <= now => {}
                Some(_) | None => {
                    out.why = "timer not armed";
                    return out;
                }
            }
        }
        if let Input::Segment(seg) = input {
            if self.state.synchronized() && !self.check_sequence(&seg, &mut out) {
                return out;
            }
        }
        match (self.state, input) {
            // ---------------------------------------------------------------- CLOSED
            (S::Closed, Input::User(Call::ActiveOpen)) => {
                // 3.10.1 OPEN (active): send SYN, enter SYN-SENT.
                self.snd_una = self.iss;
                self.snd_nxt = self.iss;
                self.passive = false;
                self.fin_sent = false;
                self.emit(K::Syn, now, opts, &mut out);
                self.enter(S::SynSent, now, opts, &mut out);
                out.why = "RFC 9293 3.10.1 active OPEN: send SYN";
            }
            (S::Closed, Input::User(Call::PassiveOpen)) => {
                // 3.10.1 OPEN (passive): wait for a SYN.
                self.enter(S::Listen, now, opts, &mut out);
                out.why = "RFC 9293 3.10.1 passive OPEN";
            }
            (
                S::Closed,
                Input::User(
                    Call::Send | Call::Read | Call::Close | Call::ShutdownWrite | Call::Abort,
                ),
            ) => {
                // 3.10.2-3.10.5: "error: connection does not exist".
                out.error = Some(UserError::ConnectionDoesNotExist);
                out.why = "RFC 9293 3.10: no connection";
            }
            (S::Closed, Input::Segment(seg)) => {
                // 3.10.7.1: a CLOSED port answers everything but a RST with a RST.
                if !seg.kind.is_rst() {
                    out.send.push(Tcb::rst_for(&seg));
                }
                out.why = "RFC 9293 3.10.7.1 CLOSED: answer with RST";
            }
            (S::Closed, Input::Timer(_)) => {
                // Timers are cleared on entering CLOSED; nothing to do.
                out.why = "no timer runs in CLOSED";
            }

            // ---------------------------------------------------------------- LISTEN
            (S::Listen, Input::User(Call::ActiveOpen | Call::Send)) => {
                // 3.10.1/3.10.2: OPEN or SEND with a foreign socket turns LISTEN active.
                self.passive = false;
                self.emit(K::Syn, now, opts, &mut out);
                self.enter(S::SynSent, now, opts, &mut out);
                out.why = "RFC 9293 3.10.1/3.10.2 OPEN or SEND in LISTEN: send SYN";
            }
            (S::Listen, Input::User(Call::PassiveOpen)) => {
                out.error = Some(UserError::ConnectionExists);
                out.why = "RFC 9293 3.10.1: connection already exists";
            }
            (S::Listen, Input::User(Call::Read)) => {
                // 3.10.3: queued until the connection is established.
                out.why = "RFC 9293 3.10.3 RECEIVE in LISTEN: queued";
            }
            (S::Listen, Input::User(Call::Close | Call::Abort)) => {
                // 3.10.4/3.10.5: delete the TCB.
                self.enter(S::Closed, now, opts, &mut out);
                out.why = "RFC 9293 3.10.4/3.10.5 CLOSE or ABORT in LISTEN";
            }
            (S::Listen, Input::User(Call::ShutdownWrite)) => {
                // Linux: shutdown() on a listener that never connected is ENOTCONN.
                out.error = Some(UserError::ConnectionDoesNotExist);
                out.why = "shutdown() of a listener: not connected";
            }
            (S::Listen, Input::Segment(seg)) => match seg.kind {
                K::Syn => {
                    // 3.10.7.2: a SYN: send SYN,ACK, enter SYN-RECEIVED.
                    self.passive = true;
                    self.irs = seg.seq;
                    self.rcv_nxt = seg.seq.wrapping_add(1);
                    self.snd_una = self.iss;
                    self.snd_nxt = self.iss;
                    self.fin_sent = false;
                    self.emit(K::SynAck, now, opts, &mut out);
                    self.enter(S::SynReceived, now, opts, &mut out);
                    out.why = "RFC 9293 3.10.7.2 LISTEN: SYN, send SYN+ACK";
                }
                K::SynAck | K::Ack | K::FinAck | K::Data => {
                    // 3.10.7.2: any ACK in LISTEN is bad: RST <SEQ=SEG.ACK>.
                    out.send.push(Tcb::rst_for(&seg));
                    out.why = "RFC 9293 3.10.7.2 LISTEN: ACK, send RST";
                }
                K::Fin | K::Rst | K::RstAck => {
                    // 3.10.7.2: a RST is ignored; anything else without ACK is dropped.
                    out.why = "RFC 9293 3.10.7.2 LISTEN: ignore";
                }
            },
            (S::Listen, Input::Timer(_)) => {
                out.why = "no timer runs in LISTEN";
            }

            // ---------------------------------------------------------------- SYN-SENT
            (S::SynSent, Input::User(Call::ActiveOpen | Call::PassiveOpen)) => {
                out.error = Some(UserError::ConnectionExists);
                out.why = "RFC 9293 3.10.1: connection already exists";
            }
            (S::SynSent, Input::User(Call::Send | Call::Read)) => {
                // 3.10.2/3.10.3: queued until ESTABLISHED (the model keeps no queue).
                out.why = "RFC 9293 3.10.2 SEND in SYN-SENT: queued";
            }
            (S::SynSent, Input::User(Call::Close | Call::ShutdownWrite | Call::Abort)) => {
                // 3.10.4: CLOSE in SYN-SENT deletes the TCB, nothing sent.
                self.enter(S::Closed, now, opts, &mut out);
                out.why = "RFC 9293 3.10.4/3.10.5 CLOSE or ABORT in SYN-SENT";
            }
            (S::SynSent, Input::Segment(seg)) => match seg.kind {
                K::SynAck if seg.ack == self.snd_nxt => {
                    // 3.10.7.3: our SYN is acked: send ACK, ESTABLISHED.
                    self.irs = seg.seq;
                    self.rcv_nxt = seg.seq.wrapping_add(1);
                    self.snd_una = seg.ack;
                    self.unacked.clear();
                    self.timers.retransmit = None;
                    self.retries = 0;
                    self.ack_now(&mut out);
                    self.enter(S::Established, now, opts, &mut out);
                    out.why = "RFC 9293 3.10.7.3 SYN-SENT: SYN+ACK, send ACK";
                }
                K::SynAck | K::Ack | K::FinAck | K::Data => {
                    // 3.10.7.3: an unacceptable ACK (an old duplicate): RST <SEQ=SEG.ACK>.
                    if seg.ack != self.snd_nxt {
                        out.send.push(Tcb::rst_for(&seg));
                    }
                    out.why = "RFC 9293 3.10.7.3 SYN-SENT: bad ACK, send RST";
                }
                K::Syn => {
                    // 3.10.7.3: simultaneous open: SYN without ACK, send SYN,ACK.
                    self.irs = seg.seq;
                    self.rcv_nxt = seg.seq.wrapping_add(1);
                    self.snd_nxt = self.iss;
                    self.unacked.clear();
                    self.timers.retransmit = None;
                    self.emit(K::SynAck, now, opts, &mut out);
                    self.enter(S::SynReceived, now, opts, &mut out);
                    out.why = "RFC 9293 3.10.7.3 SYN-SENT: SYN, simultaneous open";
                }
                K::RstAck if self.syn_sent_ack_ok(&seg) => {
                    // 3.10.7.3 (and RFC 5961 section 3.2): a RST whose ACK acknowledges our
                    // SYN: "error: connection reset", CLOSED; sockets say ECONNREFUSED. Linux:
                    // `tcp_rcv_synsent_state_process()` calls `tcp_reset()` only inside its
                    // `if (th->ack)` branch, after the ACK passed the SND.UNA/SND.NXT test.
                    out.error = Some(UserError::ConnectionRefused);
                    self.enter(S::Closed, now, opts, &mut out);
                    out.why = "RFC 9293 3.10.7.3 SYN-SENT: RST with acceptable ACK, refused";
                }
                K::RstAck => {
                    // 3.10.7.3: an unacceptable ACK would be answered with a RST, "unless the
                    // RST bit is set, if so drop the segment". Linux: `reset_and_undo`, and
                    // `tcp_v4_send_reset()` never answers a RST.
                    out.why = "RFC 9293 3.10.7.3 SYN-SENT: RST with bad ACK, drop";
                }
                K::Rst => {
                    // 3.10.7.3: a RST without ACK is dropped ("Otherwise (no ACK), drop the
                    // segment"): nothing proves it answers our SYN. Linux does the same
                    // (`tcp_rcv_synsent_state_process()`, "No ACK in the segment": a RST is
                    // discarded).
                    out.why = "RFC 9293 3.10.7.3 SYN-SENT: RST without ACK, drop";
                }
                K::Fin => {
                    // 3.10.7.3: neither SYN nor RST: drop.
                    out.why = "RFC 9293 3.10.7.3 SYN-SENT: drop";
                }
            },

            // -------------------------------------------- retransmission (3.10.8), all states
            (
                S::SynSent
                | S::SynReceived
                | S::Established
                | S::FinWait1
                | S::FinWait2
                | S::CloseWait
                | S::Closing
                | S::LastAck,
                Input::Timer(Timer::Retransmit),
            ) => {
                // 3.10.8: resend the oldest unacknowledged segment, or give up.
                // How many times depends on the state and on whether the program still holds
                // the socket ([`Options::retry_limit`]).
                self.retries += 1;
                if self.retries > opts.retry_limit(self) {
                    out.error = Some(UserError::TimedOut);
                    self.enter(S::Closed, now, opts, &mut out);
                    out.why = "RFC 9293 3.10.8 retransmission timeout: give up";
                } else {
                    if let Some(first) = self.unacked.first() {
                        let mut s = *first;
                        s.ack = self.rcv_nxt;
                        out.send.push(s);
                    }
                    self.timers.retransmit = Some(now + opts.rto_us);
                    out.why = "RFC 9293 3.10.8 retransmission timeout: resend";
                }
            }
            (
                S::SynSent
                | S::SynReceived
                | S::Established
                | S::FinWait1
                | S::CloseWait
                | S::Closing
                | S::LastAck,
                Input::Timer(Timer::TimeWait | Timer::FinWait2),
            ) => {
                // These timers are only armed in TIME-WAIT and FIN-WAIT-2.
                out.why = "timer does not apply in this state";
            }

            // ---------------------------------------------------------------- SYN-RECEIVED
            (S::SynReceived, Input::User(Call::ActiveOpen | Call::PassiveOpen)) => {
                out.error = Some(UserError::ConnectionExists);
                out.why = "RFC 9293 3.10.1: connection already exists";
            }
            (S::SynReceived, Input::User(Call::Send | Call::Read)) => {
                out.why = "RFC 9293 3.10.2 SEND in SYN-RECEIVED: queued";
            }
            (S::SynReceived, Input::User(Call::Close | Call::ShutdownWrite)) => {
                // 3.10.4: CLOSE in SYN-RECEIVED: send FIN, FIN-WAIT-1.
                self.orphaned = input == Input::User(Call::Close);
                self.emit(K::FinAck, now, opts, &mut out);
                self.enter(S::FinWait1, now, opts, &mut out);
                out.why = "RFC 9293 3.10.4 CLOSE in SYN-RECEIVED: send FIN";
            }
            (S::SynReceived, Input::User(Call::Abort)) => {
                // 3.10.5 ABORT: send RST, delete the TCB.
                self.reset_and_close(now, opts, &mut out);
                out.why = "RFC 9293 3.10.5 ABORT: send RST";
            }
            (S::SynReceived, Input::Segment(seg)) => match seg.kind {
                K::Ack | K::Data | K::FinAck if self.snd_una == self.snd_nxt => {
                    // 3.10.7.4 fifth check: our SYN is acked: ESTABLISHED; then text and FIN.
                    self.enter(S::Established, now, opts, &mut out);
                    if seg.kind == K::Data {
                        self.receive_data(&mut out);
                    }
                    if seg.kind == K::FinAck {
                        self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                        self.ack_now(&mut out);
                        self.enter(S::CloseWait, now, opts, &mut out);
                    }
                    out.why = "RFC 9293 3.10.7.4 SYN-RECEIVED: ACK of SYN, ESTABLISHED";
                }
                K::Ack | K::Data | K::FinAck | K::Fin => {
                    // Our SYN is not acked yet: nothing to act on.
                    out.why = "RFC 9293 3.10.7.4 SYN-RECEIVED: SYN not acked yet, drop";
                }
                K::Rst | K::RstAck if self.passive => {
                    // 3.10.7.4 second check, Figure 5 note 1: back to LISTEN.
                    self.enter(S::Listen, now, opts, &mut out);
                    out.why = "RFC 9293 3.10.7.4 SYN-RECEIVED: RST, back to LISTEN";
                }
                K::Rst | K::RstAck => {
                    // 3.10.7.4 second check: active open: "connection refused".
                    out.error = Some(UserError::ConnectionRefused);
                    self.enter(S::Closed, now, opts, &mut out);
                    out.why = "RFC 9293 3.10.7.4 SYN-RECEIVED: RST, connection refused";
                }
                K::Syn | K::SynAck => {
                    // 3.10.7.4 fourth check (RFC 5961 section 4.2): challenge ACK.
                    self.ack_now(&mut out);
                    out.why = "RFC 9293 3.10.7.4 fourth check: SYN, challenge ACK (RFC 5961 4.2)";
                }
            },

            // ------------------------------------ ESTABLISHED and CLOSE-WAIT (peer may send)
            (S::Established | S::CloseWait, Input::User(Call::ActiveOpen | Call::PassiveOpen)) => {
                out.error = Some(UserError::ConnectionExists);
                out.why = "RFC 9293 3.10.1: connection already exists";
            }
            (S::Established | S::CloseWait, Input::User(Call::Send)) => {
                // 3.10.2: send data (CLOSE-WAIT may still send: the peer only stopped sending).
                self.emit(K::Data, now, opts, &mut out);
                out.why = "RFC 9293 3.10.2 SEND";
            }
            (
                S::Established
                | S::FinWait1
                | S::FinWait2
                | S::CloseWait
                | S::Closing
                | S::LastAck
                | S::TimeWait,
                Input::User(Call::Read),
            ) => {
                // 3.10.3 RECEIVE: the program empties the receive buffer.
                self.unread = 0;
                out.why = "RFC 9293 3.10.3 RECEIVE";
            }
            (S::Established | S::CloseWait, Input::User(Call::Close | Call::ShutdownWrite)) => {
                let is_close = input == Input::User(Call::Close);
                if is_close && opts.rst_on_unread_close && self.unread > 0 {
                    // RFC 9293 3.6 SHOULD (RFC 1122 4.2.2.13, RFC 2525 2.17), Linux:
                    // closing with unread data tells the peer data was lost with a RST.
                    self.reset_and_close(now, opts, &mut out);
                    out.why = "close() with unread data: RST (RFC 2525 2.17; Linux)";
                } else {
                    // 3.10.4 CLOSE: send FIN; ESTABLISHED -> FIN-WAIT-1, CLOSE-WAIT -> LAST-ACK.
                    self.orphaned = is_close;
                    self.emit(K::FinAck, now, opts, &mut out);
                    let next = if self.state == S::Established {
                        S::FinWait1
                    } else {
                        S::LastAck
                    };
                    self.enter(next, now, opts, &mut out);
                    out.why = "RFC 9293 3.10.4 CLOSE: send FIN";
                }
            }
            (
                S::Established | S::FinWait1 | S::FinWait2 | S::CloseWait,
                Input::User(Call::Abort),
            ) => {
                // 3.10.5 ABORT (SO_LINGER 0): send RST, delete the TCB; the peer sees ECONNRESET.
                self.reset_and_close(now, opts, &mut out);
                out.why = "RFC 9293 3.10.5 ABORT: send RST";
            }
            (S::Established, Input::Segment(seg)) => match seg.kind {
                K::Ack => {
                    out.why = "RFC 9293 3.10.7.4 ESTABLISHED: ACK";
                }
                K::Data => {
                    // 3.10.7.4 seventh check: deliver the text, ACK it.
                    self.receive_data(&mut out);
                    out.why = "RFC 9293 3.10.7.4 ESTABLISHED: data, send ACK";
                }
                K::Fin | K::FinAck => {
                    // 3.10.7.4 eighth check: FIN: ACK it, enter CLOSE-WAIT; read() returns 0.
                    self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                    self.ack_now(&mut out);
                    self.enter(S::CloseWait, now, opts, &mut out);
                    out.why = "RFC 9293 3.10.7.4 eighth check: FIN, send ACK";
                }
                K::Rst | K::RstAck => {
                    // 3.10.7.4 second check: "connection reset".
                    self.reset_by_peer(now, opts, &mut out);
                }
                K::Syn | K::SynAck => {
                    // 3.10.7.4 fourth check (RFC 5961 section 4.2): challenge ACK.
                    self.ack_now(&mut out);
                    out.why = "RFC 9293 3.10.7.4 fourth check: SYN, challenge ACK (RFC 5961 4.2)";
                }
            },
            (S::CloseWait, Input::Segment(seg)) => match seg.kind {
                K::Ack => {
                    out.why = "RFC 9293 3.10.7.4 CLOSE-WAIT: ACK";
                }
                K::Data | K::Fin | K::FinAck => {
                    // 3.10.7.4 seventh/eighth checks: after the peer's FIN nothing new can
                    // come; ignore it (an in-window segment here is a peer bug).
                    out.why = "RFC 9293 3.10.7.4 CLOSE-WAIT: ignore text and FIN";
                }
                K::Rst | K::RstAck => {
                    self.reset_by_peer(now, opts, &mut out);
                }
                K::Syn | K::SynAck => {
                    self.ack_now(&mut out);
                    out.why = "RFC 9293 3.10.7.4 fourth check: SYN, challenge ACK (RFC 5961 4.2)";
                }
            },

            // -------------------------------------------- FIN-WAIT-1, FIN-WAIT-2 (we closed)
            (
                S::FinWait1 | S::FinWait2 | S::Closing | S::LastAck | S::TimeWait,
                Input::User(Call::ActiveOpen | Call::PassiveOpen),
            ) => {
                out.error = Some(UserError::ConnectionExists);
                out.why = "RFC 9293 3.10.1: connection already exists";
            }
            (
                S::FinWait1 | S::FinWait2 | S::Closing | S::LastAck | S::TimeWait,
                Input::User(Call::Send | Call::ShutdownWrite),
            ) => {
                // 3.10.2: "error: connection closing" (a write after shutdown is EPIPE).
                out.error = Some(UserError::ConnectionClosing);
                out.why = "RFC 9293 3.10.2 SEND after CLOSE: connection closing";
            }
            (
                S::FinWait1 | S::FinWait2 | S::Closing | S::LastAck | S::TimeWait,
                Input::User(Call::Close),
            ) => {
                // 3.10.4 calls a second CLOSE an error ("connection closing"); a sockets
                // close() after shutdown() just gives up the descriptor and returns 0. The
                // socket is now an orphan, which starts Linux's FIN_WAIT2 timer.
                self.orphaned = true;
                if self.state == S::FinWait2 {
                    self.arm_fin_wait2(now, opts);
                }
                out.why = "close() after FIN: orphan the socket";
            }
            (S::FinWait1 | S::FinWait2, Input::Segment(seg))
                if seg.kind == K::Data && self.orphaned && opts.rst_on_unread_close =>
            {
                // RFC 9293 3.6 SHOULD / Linux: data after close() is lost: tell the peer.
                self.reset_and_close(now, opts, &mut out);
                out.why = "data after close(): RST (RFC 2525 2.17; Linux)";
            }
            (S::FinWait1, Input::Segment(seg)) => match seg.kind {
                K::Ack | K::Data => {
                    // 3.10.7.4 fifth check: "if the FIN is now acknowledged, FIN-WAIT-2".
                    if seg.kind == K::Data {
                        self.receive_data(&mut out);
                    }
                    if self.fin_acked() {
                        self.enter(S::FinWait2, now, opts, &mut out);
                    }
                    out.why = "RFC 9293 3.10.7.4 FIN-WAIT-1: ACK of FIN, FIN-WAIT-2";
                }
                K::Fin | K::FinAck => {
                    // 3.10.7.4 eighth check: our FIN acked (perhaps in this segment):
                    // TIME-WAIT (through FIN-WAIT-2, as Linux reports it); else CLOSING.
                    self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                    self.ack_now(&mut out);
                    if self.fin_acked() {
                        self.enter(S::FinWait2, now, opts, &mut out);
                        self.enter(S::TimeWait, now, opts, &mut out);
                        out.why = "RFC 9293 3.10.7.4 FIN-WAIT-1: FIN acking our FIN, TIME-WAIT";
                    } else {
                        self.enter(S::Closing, now, opts, &mut out);
                        out.why = "RFC 9293 3.6 simultaneous close: FIN, CLOSING";
                    }
                }
                K::Rst | K::RstAck => {
                    self.reset_by_peer(now, opts, &mut out);
                }
                K::Syn | K::SynAck => {
                    self.ack_now(&mut out);
                    out.why = "RFC 9293 3.10.7.4 fourth check: SYN, challenge ACK (RFC 5961 4.2)";
                }
            },
            (S::FinWait2, Input::Segment(seg)) => match seg.kind {
                K::Ack => {
                    out.why = "RFC 9293 3.10.7.4 FIN-WAIT-2: ACK";
                }
                K::Data => {
                    // Half-close: the peer may still send, and we still read.
                    self.receive_data(&mut out);
                    out.why = "RFC 9293 3.10.7.4 FIN-WAIT-2: data, send ACK";
                }
                K::Fin | K::FinAck => {
                    // 3.10.7.4 eighth check: FIN: ACK it, TIME-WAIT, start 2*MSL (MUST-13).
                    self.rcv_nxt = self.rcv_nxt.wrapping_add(1);
                    self.ack_now(&mut out);
                    self.enter(S::TimeWait, now, opts, &mut out);
                    out.why = "RFC 9293 3.10.7.4 FIN-WAIT-2: FIN, send ACK, TIME-WAIT";
                }
                K::Rst | K::RstAck => {
                    self.reset_by_peer(now, opts, &mut out);
                }
                K::Syn | K::SynAck => {
                    self.ack_now(&mut out);
                    out.why = "RFC 9293 3.10.7.4 fourth check: SYN, challenge ACK (RFC 5961 4.2)";
                }
            },
            (S::FinWait2, Input::Timer(Timer::FinWait2)) => {
                // Linux only (tcp_fin_timeout): an orphan gives up waiting for the peer's
                // FIN and disappears quietly. The RFC never arms this timer.
                self.enter(S::Closed, now, opts, &mut out);
                out.why = "Linux tcp_fin_timeout: orphaned FIN_WAIT2 expires";
            }
            (S::FinWait2, Input::Timer(Timer::TimeWait)) => {
                out.why = "timer does not apply in this state";
            }

            // ---------------------------------------------------- CLOSING and LAST-ACK
            (S::Closing | S::LastAck, Input::User(Call::Abort)) => {
                // 3.10.5 ABORT in CLOSING/LAST-ACK/TIME-WAIT: respond "ok", delete the TCB.
                self.enter(S::Closed, now, opts, &mut out);
                out.why = "RFC 9293 3.10.5 ABORT in CLOSING/LAST-ACK: delete the TCB";
            }
            (S::Closing, Input::Segment(seg)) => match seg.kind {
                K::Ack | K::Data | K::Fin | K::FinAck => {
                    // 3.10.7.4 fifth check: "if the ACK acknowledges our FIN, enter TIME-WAIT".
                    if self.fin_acked() {
                        self.enter(S::TimeWait, now, opts, &mut out);
                    }
                    out.why = "RFC 9293 3.10.7.4 CLOSING: ACK of FIN, TIME-WAIT";
                }
                K::Rst | K::RstAck => {
                    // 3.10.7.4 second check: CLOSING, LAST-ACK, TIME-WAIT: RST -> CLOSED.
                    self.enter(S::Closed, now, opts, &mut out);
                    out.why = "RFC 9293 3.10.7.4 second check: RST in CLOSING";
                }
                K::Syn | K::SynAck => {
                    self.ack_now(&mut out);
                    out.why = "RFC 9293 3.10.7.4 fourth check: SYN, challenge ACK (RFC 5961 4.2)";
                }
            },
            (S::LastAck, Input::Segment(seg)) => match seg.kind {
                K::Ack | K::Data | K::Fin | K::FinAck => {
                    // 3.10.7.4 fifth check: "the only thing that can arrive is an ACK of our
                    // FIN": then delete the TCB, CLOSED. No TIME-WAIT for the passive closer.
                    if self.fin_acked() {
                        self.enter(S::Closed, now, opts, &mut out);
                    }
                    out.why = "RFC 9293 3.10.7.4 LAST-ACK: ACK of FIN, CLOSED";
                }
                K::Rst | K::RstAck => {
                    self.enter(S::Closed, now, opts, &mut out);
                    out.why = "RFC 9293 3.10.7.4 second check: RST in LAST-ACK";
                }
                K::Syn | K::SynAck => {
                    self.ack_now(&mut out);
                    out.why = "RFC 9293 3.10.7.4 fourth check: SYN, challenge ACK (RFC 5961 4.2)";
                }
            },

            // ---------------------------------------------------------------- TIME-WAIT
            (S::TimeWait, Input::User(Call::Abort)) => {
                // 3.10.5 ABORT in TIME-WAIT: delete the TCB.
                self.enter(S::Closed, now, opts, &mut out);
                out.why = "RFC 9293 3.10.5 ABORT in TIME-WAIT";
            }
            (S::TimeWait, Input::Segment(seg)) => {
                // TIME-WAIT does its own sequence checks (check_sequence() lets every segment
                // through), because Linux's rules differ from the RFC's here: they follow
                // `tcp_timewait_state_process()` (net/ipv4/tcp_minisocks.c), whose cases are
                // an in-window bare ACK or RST, a new SYN, and everything else ("out of
                // window": ACKed). See [`Options::restart_time_wait_on_ack`] and
                // [`Options::reopen_time_wait_on_syn`].
                let in_window = seg.seq == self.rcv_nxt;
                let newer = seq_lt(self.rcv_nxt, seg.seq);
                let retransmitted_fin =
                    seg.kind.has_fin() && seg.seq.wrapping_add(1) == self.rcv_nxt;
                let linux = opts.restart_time_wait_on_ack;
                match seg.kind {
                    K::Rst | K::RstAck if !in_window => {
                        // RFC 9293 3.10.7.4 first check: an unacceptable RST is dropped with
                        // no answer (RFC 5961 section 3.2). Linux: an out-of-window RST ends
                        // in TCP_TW_SUCCESS, nothing sent, timer untouched.
                        out.why = "RFC 9293 3.10.7.4 first check: RST out of window, drop";
                    }
                    K::Rst | K::RstAck if opts.ignore_rst_in_time_wait => {
                        // RFC 1337 (Linux tcp_rfc1337=1): no TIME-WAIT assassination. Linux
                        // neither answers nor restarts the timer.
                        out.why = "RFC 1337: RST ignored in TIME-WAIT";
                    }
                    K::Rst | K::RstAck => {
                        // 3.10.7.4 second check: RST closes TIME-WAIT early ("TIME-WAIT
                        // assassination", RFC 1337). Linux does the same by default
                        // (tcp_rfc1337=0: `inet_twsk_deschedule_put()`).
                        self.enter(S::Closed, now, opts, &mut out);
                        out.why = "RFC 9293 3.10.7.4 second check: RST in TIME-WAIT (RFC 1337)";
                    }
                    K::Syn if opts.reopen_time_wait_on_syn && newer && self.passive => {
                        // RFC 9293 3.6.1 MAY-2, as Linux takes it: a SYN above RCV.NXT cannot
                        // be an old duplicate of this connection, so the TIME-WAIT socket goes
                        // and the listener answers it (TCP_TW_SYN in `tcp_v4_rcv()`). The new
                        // ISS is above every sequence number the old connection used, as
                        // MAY-2 requires: Linux takes `tw_snd_nxt + 65535 + 2`. Linux does not
                        // return to TIME-WAIT if the SYN turns out old (MAY-2's second
                        // condition); a RST in SYN-RECEIVED sends the listener back to LISTEN.
                        let iss = self.snd_nxt.wrapping_add(65_535 + 2);
                        self.timers = Timers::default();
                        self.unacked.clear();
                        self.retries = 0;
                        self.unread = 0;
                        self.orphaned = false;
                        self.fin_sent = false;
                        self.iss = iss;
                        self.snd_una = iss;
                        self.snd_nxt = iss;
                        self.irs = seg.seq;
                        self.rcv_nxt = seg.seq.wrapping_add(1);
                        self.emit(K::SynAck, now, opts, &mut out);
                        self.enter(S::SynReceived, now, opts, &mut out);
                        out.why = "RFC 9293 3.6.1 MAY-2 (Linux): new SYN reopens TIME-WAIT";
                    }
                    K::Syn if opts.reopen_time_wait_on_syn && newer => {
                        // Linux: TCP_TW_SYN, but nobody listens on our port (we connected):
                        // `tcp_v4_rcv()` falls through to TCP_TW_ACK. ACK, timer not restarted.
                        self.ack_now(&mut out);
                        out.why = "Linux TIME_WAIT: new SYN, no listener: ACK";
                    }
                    K::Syn | K::SynAck => {
                        // RFC 9293 3.10.7.4 fourth check: challenge ACK (RFC 5961 section
                        // 4.2), timer untouched. Linux: a SYN that is not newer is out of
                        // window: ACK; the timer restarts only if the ACK bit is set (SYN+ACK).
                        self.ack_now(&mut out);
                        if linux && seg.kind.has_ack() {
                            self.restart_time_wait(now, opts);
                        }
                        out.why =
                            "RFC 9293 3.10.7.4 fourth check: SYN, challenge ACK (RFC 5961 4.2)";
                    }
                    K::Fin | K::FinAck if retransmitted_fin => {
                        // 3.10.7.4 eighth check: the peer retransmitted its FIN (our last ACK
                        // was lost): ACK it again and restart the 2*MSL timeout. This is the
                        // first reason TIME-WAIT exists (RFC 9293 3.6). Linux: out of window,
                        // TCP_TW_ACK and `inet_twsk_reschedule()`: the same, except that a FIN
                        // without ACK (which no real stack sends) does not restart the timer.
                        self.ack_now(&mut out);
                        if !linux || seg.kind.has_ack() {
                            self.restart_time_wait(now, opts);
                        }
                        out.why = "RFC 9293 3.10.7.4 TIME-WAIT: FIN again, ACK, restart 2*MSL";
                    }
                    K::Ack if in_window && linux => {
                        // Linux: "In window segment, it may be only reset or bare ack": restart
                        // the 60 s (`inet_twsk_reschedule()`), send nothing (TCP_TW_SUCCESS).
                        self.restart_time_wait(now, opts);
                        out.why = "Linux TIME_WAIT: in-window ACK, restart 60 s, send nothing";
                    }
                    K::Ack if in_window => {
                        // RFC 9293 3.10.7.4: an acceptable ACK with no text and no FIN has
                        // nothing to act on in TIME-WAIT; only a FIN restarts the timer.
                        out.why = "RFC 9293 3.10.7.4 TIME-WAIT: ACK, nothing to do";
                    }
                    K::Data if in_window && !linux => {
                        // RFC 9293 3.10.7.4 seventh check, TIME-WAIT: text after the peer's
                        // FIN "should not occur": ignore it; nothing is sent.
                        out.why = "RFC 9293 3.10.7.4 TIME-WAIT: ignore text";
                    }
                    K::Fin | K::FinAck if in_window && !linux => {
                        // RFC 9293 3.10.7.4 eighth check, TIME-WAIT: "Remain in the TIME-WAIT
                        // state. Restart the 2 MSL time-wait timeout", and ACK the FIN.
                        self.ack_now(&mut out);
                        self.restart_time_wait(now, opts);
                        out.why = "RFC 9293 3.10.7.4 TIME-WAIT: FIN, ACK, restart 2*MSL";
                    }
                    K::Ack | K::Data | K::Fin | K::FinAck => {
                        // RFC 9293 3.10.7.4 first check: unacceptable (an old duplicate, or
                        // ahead of the window): ACK and drop; the timer runs on. Linux: "out
                        // of window" is anything but an in-window bare ACK or RST: ACK it
                        // (TCP_TW_ACK) and, if its ACK bit is set, restart the 60 s.
                        self.ack_now(&mut out);
                        if linux && seg.kind.has_ack() {
                            self.restart_time_wait(now, opts);
                            out.why = "Linux TIME_WAIT: out of window, ACK, restart 60 s";
                        } else {
                            out.why = "RFC 9293 3.10.7.4 first check: unacceptable, ACK and drop";
                        }
                    }
                }
            }
            (S::TimeWait, Input::Timer(Timer::TimeWait)) => {
                // 3.10.8: "the time-wait timeout expires: delete the TCB, CLOSED" (MUST-13).
                self.enter(S::Closed, now, opts, &mut out);
                out.why = "RFC 9293 3.10.8 TIME-WAIT timeout (2*MSL, MUST-13)";
            }
            (S::TimeWait, Input::Timer(Timer::FinWait2 | Timer::Retransmit)) => {
                out.why = "timer does not apply in this state";
            }
        }
        // A timer that fired and was not re-armed by its arm is spent.
        if let Input::Timer(t) = input {
            let spent = |at: Option<u64>| at.filter(|at| *at > now);
            match t {
                Timer::TimeWait => self.timers.time_wait = spent(self.timers.time_wait),
                Timer::FinWait2 => self.timers.fin_wait2 = spent(self.timers.fin_wait2),
                Timer::Retransmit => self.timers.retransmit = spent(self.timers.retransmit),
            }
        }
        out
    }

    /// The time of the next armed timer, and which one.
    pub fn next_timer(&self) -> Option<(u64, Timer)> {
        self.timers.next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(kind: SegKind, seq: u32, ack: u32) -> Input {
        Input::Segment(Segment::new(kind, seq, ack))
    }

    #[test]
    fn handshake_and_active_close() {
        let o = Options::linux();
        let mut c = Tcb::new(100);
        let mut s = Tcb::new(300);
        s.step(Input::User(Call::PassiveOpen), 0, &o);
        let out = c.step(Input::User(Call::ActiveOpen), 0, &o);
        assert_eq!(out.send, vec![Segment::new(SegKind::Syn, 100, 0)]);
        let out = s.step(Input::Segment(out.send[0]), 1, &o);
        assert_eq!(out.to(), State::SynReceived);
        let out = c.step(Input::Segment(out.send[0]), 2, &o);
        assert_eq!(out.to(), State::Established);
        let out = s.step(Input::Segment(out.send[0]), 3, &o);
        assert_eq!(out.to(), State::Established);
        let fin = c.step(Input::User(Call::Close), 4, &o);
        assert_eq!(fin.to(), State::FinWait1);
        let ack = s.step(Input::Segment(fin.send[0]), 5, &o);
        assert_eq!(ack.to(), State::CloseWait);
        assert_eq!(
            c.step(Input::Segment(ack.send[0]), 6, &o).to(),
            State::FinWait2
        );
        let fin2 = s.step(Input::User(Call::Close), 7, &o);
        assert_eq!(fin2.to(), State::LastAck);
        let last = c.step(Input::Segment(fin2.send[0]), 8, &o);
        assert_eq!(last.to(), State::TimeWait);
        assert_eq!(
            s.step(Input::Segment(last.send[0]), 9, &o).to(),
            State::Closed
        );
        // Too early: the TIME_WAIT timer is not due.
        assert_eq!(
            c.step(Input::Timer(Timer::TimeWait), 10, &o).to(),
            State::TimeWait
        );
        let end = c.step(Input::Timer(Timer::TimeWait), 8 + 60_000_000, &o);
        assert_eq!(end.to(), State::Closed);
    }

    #[test]
    fn close_with_unread_data_sends_rst_on_linux_only() {
        for (o, expect) in [
            (Options::linux(), SegKind::Rst),
            (Options::rfc(), SegKind::FinAck),
        ] {
            let mut t = Tcb::new(10);
            t.state = State::Established;
            t.snd_una = 11;
            t.snd_nxt = 11;
            t.rcv_nxt = 51;
            t.step(seg(SegKind::Data, 51, 11), 0, &o);
            assert_eq!(t.unread, 1);
            let out = t.step(Input::User(Call::Close), 1, &o);
            assert_eq!(out.send[0].kind, expect, "{}", o.name);
        }
    }

    /// An endpoint in TIME-WAIT, reached through the machine at times 0..=5. `passive`: it
    /// accepted the connection (ISS 300, peer's ISS 100); else it connected (ISS 100, peer's
    /// 300). Either way it closed first.
    fn time_wait(passive: bool, o: &Options) -> Tcb {
        let (mut t, inputs) = if passive {
            (
                Tcb::new(300),
                vec![
                    Input::User(Call::PassiveOpen),
                    seg(SegKind::Syn, 100, 0),
                    seg(SegKind::Ack, 101, 301),
                    Input::User(Call::Close),
                    seg(SegKind::Ack, 101, 302),
                    seg(SegKind::FinAck, 101, 302),
                ],
            )
        } else {
            (
                Tcb::new(100),
                vec![
                    Input::User(Call::ActiveOpen),
                    seg(SegKind::SynAck, 300, 101),
                    Input::User(Call::Close),
                    seg(SegKind::Ack, 301, 102),
                    seg(SegKind::FinAck, 301, 102),
                ],
            )
        };
        for (now, i) in inputs.into_iter().enumerate() {
            t.step(i, now as u64, o);
        }
        assert_eq!(t.state, State::TimeWait);
        t
    }

    #[test]
    fn new_syn_reopens_time_wait_on_linux_only() {
        // Linux (tcp_timewait_state_process(): TCP_TW_SYN, and a listener in tcp_v4_rcv()):
        // a SYN above RCV.NXT reopens, with ISS = the old SND.NXT + 65535 + 2.
        let o = Options::linux();
        let mut t = time_wait(true, &o);
        let syn = Segment::new(SegKind::Syn, t.rcv_nxt + 1000, 0);
        let out = t.step(Input::Segment(syn), 10, &o);
        assert_eq!(out.path, vec![State::SynReceived]);
        let iss = 302 + 65_535 + 2;
        assert_eq!(
            out.send,
            vec![Segment::new(SegKind::SynAck, iss, syn.seq + 1)]
        );
        assert_eq!(t.timers.time_wait, None, "the TIME-WAIT timer is gone");
        assert!(t.passive);
        // The reopened connection completes its handshake.
        let out = t.step(seg(SegKind::Ack, syn.seq + 1, iss + 1), 11, &o);
        assert_eq!(out.to(), State::Established);

        // The RFC's event processing answers the same SYN with a challenge ACK (3.10.7.4
        // fourth check, RFC 5961 4.2) and leaves the timer alone.
        let r = Options::rfc();
        let mut t = time_wait(true, &r);
        let before = t.timers.time_wait;
        let out = t.step(seg(SegKind::Syn, t.rcv_nxt + 1000, 0), 10, &r);
        assert!(out.path.is_empty());
        assert_eq!(out.send, vec![Segment::new(SegKind::Ack, 302, 102)]);
        assert!(out.why.contains("RFC 5961 4.2"), "{}", out.why);
        assert_eq!(t.timers.time_wait, before);
    }

    #[test]
    fn syn_in_time_wait_without_listener_or_not_newer_gets_an_ack_on_linux() {
        let o = Options::linux();
        // We connected: no listener on our port, so tcp_v4_rcv() answers TCP_TW_SYN with
        // an ACK; an ACK-less SYN does not restart the timer.
        let mut t = time_wait(false, &o);
        let before = t.timers.time_wait;
        let out = t.step(seg(SegKind::Syn, t.rcv_nxt + 1000, 0), 10, &o);
        assert!(out.path.is_empty());
        assert_eq!(out.send, vec![Segment::new(SegKind::Ack, 102, 302)]);
        assert_eq!(t.timers.time_wait, before);
        // A SYN at or below RCV.NXT may be an old duplicate: ACK, even with a listener.
        let mut t = time_wait(true, &o);
        let out = t.step(seg(SegKind::Syn, t.rcv_nxt - 5, 0), 10, &o);
        assert_eq!((out.path.len(), out.send[0].kind), (0, SegKind::Ack));
        assert_eq!(t.state, State::TimeWait);
    }

    #[test]
    fn in_window_bare_ack_in_time_wait_restarts_silently_on_linux() {
        // Linux: "In window segment, it may be only reset or bare ack":
        // inet_twsk_reschedule(tw, TCP_TIMEWAIT_LEN), TCP_TW_SUCCESS (nothing sent).
        let o = Options::linux();
        let mut t = time_wait(false, &o);
        assert_eq!(t.timers.time_wait, Some(4 + 60_000_000));
        let now = 30_000_000;
        let out = t.step(seg(SegKind::Ack, t.rcv_nxt, t.snd_nxt), now, &o);
        assert!(out.send.is_empty(), "Linux sends nothing: {:?}", out.send);
        assert_eq!(t.timers.time_wait, Some(now + 60_000_000));
        assert_eq!(t.state, State::TimeWait);
        // RFC 9293: nothing to act on; only a FIN restarts the 2*MSL timer.
        let r = Options::rfc();
        let mut t = time_wait(false, &r);
        let before = t.timers.time_wait;
        let out = t.step(seg(SegKind::Ack, t.rcv_nxt, t.snd_nxt), now, &r);
        assert!(out.send.is_empty());
        assert_eq!(t.timers.time_wait, before);
    }

    #[test]
    fn retransmitted_fin_in_time_wait_is_acked_and_restarts_the_timer_in_both() {
        for o in [Options::linux(), Options::rfc()] {
            let mut t = time_wait(false, &o);
            let now = 30_000_000;
            let fin = seg(SegKind::FinAck, t.rcv_nxt - 1, t.snd_nxt);
            let out = t.step(fin, now, &o);
            assert_eq!(
                out.send,
                vec![Segment::new(SegKind::Ack, 102, 302)],
                "{}",
                o.name
            );
            assert_eq!(t.timers.time_wait, Some(now + o.time_wait_us), "{}", o.name);
        }
    }

    #[test]
    fn old_duplicate_in_time_wait_restarts_the_timer_on_linux_only() {
        // Linux: out of window with ACK set: TCP_TW_ACK and inet_twsk_reschedule().
        // RFC 9293 3.10.7.4 first check: ACK and drop; the timer runs on.
        for (o, restarts) in [(Options::linux(), true), (Options::rfc(), false)] {
            let mut t = time_wait(false, &o);
            let before = t.timers.time_wait;
            let now = 30_000_000;
            let out = t.step(seg(SegKind::Data, t.rcv_nxt - 2, t.snd_nxt), now, &o);
            assert_eq!(
                out.send,
                vec![Segment::new(SegKind::Ack, 102, 302)],
                "{}",
                o.name
            );
            assert_eq!(out.delivered, 0);
            let expect = if restarts {
                Some(now + o.time_wait_us)
            } else {
                before
            };
            assert_eq!(t.timers.time_wait, expect, "{}", o.name);
        }
    }

    #[test]
    fn rst_in_time_wait_counts_only_in_window() {
        for o in [Options::linux(), Options::rfc()] {
            let mut t = time_wait(false, &o);
            let out = t.step(seg(SegKind::Rst, t.rcv_nxt + 3, 0), 10, &o);
            assert!(out.path.is_empty() && out.send.is_empty(), "{}", o.name);
            let out = t.step(seg(SegKind::Rst, t.rcv_nxt, 0), 11, &o);
            assert_eq!(out.to(), State::Closed, "{}", o.name);
        }
    }

    #[test]
    fn syn_sent_takes_a_rst_only_with_an_acceptable_ack() {
        // RFC 9293 3.10.7.3 and Linux tcp_rcv_synsent_state_process() agree.
        for o in [Options::linux(), Options::rfc()] {
            let fresh = || {
                let mut t = Tcb::new(100);
                t.step(Input::User(Call::ActiveOpen), 0, &o);
                t
            };
            // A RST without ACK: nothing proves it answers our SYN. Dropped.
            let mut t = fresh();
            let out = t.step(seg(SegKind::Rst, 0, 0), 1, &o);
            assert_eq!((out.to(), out.error), (State::SynSent, None), "{}", o.name);
            assert!(out.send.is_empty());
            // A RST+ACK that acknowledges something else: dropped, never answered.
            let mut t = fresh();
            let out = t.step(seg(SegKind::RstAck, 0, 555), 1, &o);
            assert_eq!((out.to(), out.error), (State::SynSent, None), "{}", o.name);
            assert!(out.send.is_empty());
            // A RST+ACK of our SYN: connection refused.
            let mut t = fresh();
            let out = t.step(seg(SegKind::RstAck, 0, 101), 1, &o);
            assert_eq!(out.to(), State::Closed, "{}", o.name);
            assert_eq!(out.error, Some(UserError::ConnectionRefused));
            // That is what a closed port sends back to a SYN (3.10.7.1).
            let mut closed = Tcb::new(7);
            let out = closed.step(seg(SegKind::Syn, 100, 0), 0, &o);
            assert_eq!(out.send, vec![Segment::new(SegKind::RstAck, 0, 101)]);
        }
    }

    #[test]
    fn linux_retry_limits_follow_the_sysctls() {
        let o = Options::linux();
        // Retransmissions before ETIMEDOUT (each RTO resends once, the next one gives up).
        let count = |t: &mut Tcb| {
            let mut now = 0;
            let mut resent = 0;
            loop {
                now += o.rto_us;
                let out = t.step(Input::Timer(Timer::Retransmit), now, &o);
                if out.error == Some(UserError::TimedOut) {
                    return resent;
                }
                resent += out.send.len() as u32;
                assert!(resent < 1000);
            }
        };
        // connect(): tcp_syn_retries = 6.
        let mut t = Tcb::new(100);
        t.step(Input::User(Call::ActiveOpen), 0, &o);
        assert_eq!(count(&mut t), 6);
        // A passive SYN+ACK: tcp_synack_retries = 5.
        let mut t = Tcb::new(300);
        t.step(Input::User(Call::PassiveOpen), 0, &o);
        t.step(seg(SegKind::Syn, 100, 0), 0, &o);
        assert_eq!(count(&mut t), 5);
        // Data on a socket the program holds: tcp_retries2 = 15.
        let mut t = Tcb::new(100);
        t.step(Input::User(Call::ActiveOpen), 0, &o);
        t.step(seg(SegKind::SynAck, 300, 101), 0, &o);
        t.step(Input::User(Call::Send), 0, &o);
        assert_eq!(count(&mut t), 15);
        // A FIN after close(): an orphan, tcp_orphan_retries 0 read as 8.
        let mut t = Tcb::new(100);
        t.step(Input::User(Call::ActiveOpen), 0, &o);
        t.step(seg(SegKind::SynAck, 300, 101), 0, &o);
        t.step(Input::User(Call::Close), 0, &o);
        assert_eq!(count(&mut t), 8);
    }

    #[test]
    fn syn_in_a_synchronized_state_cites_rfc_5961_section_4_2() {
        for o in [Options::linux(), Options::rfc()] {
            let mut t = Tcb::new(100);
            t.step(Input::User(Call::ActiveOpen), 0, &o);
            t.step(seg(SegKind::SynAck, 300, 101), 0, &o);
            let out = t.step(seg(SegKind::Syn, 301, 0), 1, &o);
            assert_eq!(out.send, vec![Segment::new(SegKind::Ack, 101, 301)]);
            assert!(out.why.contains("RFC 5961 4.2"), "{}", out.why);
        }
    }

    #[test]
    fn old_duplicate_is_acked_not_delivered() {
        let o = Options::rfc();
        let mut t = Tcb::new(10);
        t.state = State::TimeWait;
        t.rcv_nxt = 60;
        t.snd_nxt = 12;
        t.snd_una = 12;
        let out = t.step(seg(SegKind::Data, 55, 11), 0, &o);
        assert_eq!(out.delivered, 0);
        assert_eq!(out.send, vec![Segment::new(SegKind::Ack, 12, 60)]);
        assert_eq!(t.state, State::TimeWait);
    }
}
