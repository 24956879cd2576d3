//! A TCP segment as it crossed the wire: who sent it to whom, its flags, its sequence and
//! acknowledgment numbers (absolute, and relative to each direction's first sequence number
//! as Wireshark shows them), its payload length, window and options.
//!
//! This module is pure: [`parse_frame`] reads the bytes of one Ethernet frame (what an
//! AF_PACKET socket on `lo` hands over) with the etherparse crate, and [`Numbering`] turns
//! absolute numbers into relative ones, connection by connection, in capture order. The
//! capture itself (sockets, rings, clocks) lives in [`crate::observe::capture`].
//!
//! Left out on purpose: IP options and IPv6 extension headers (a TCP segment behind one is
//! not parsed), checksums (loopback leaves them unfinished: the kernel offloads them to a
//! device that has no wire), payload bytes (only their count), the scaled window (it needs
//! the SYN's window scale; the raw field and the option are both here), and reassembly.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use etherparse::{LaxNetSlice, LaxSlicedPacket, TcpOptionElement, TransportSlice};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One TCP flag. Listed in [`Flag::ALL`] in the order they are printed; serialized by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Flag {
    Fin,
    Syn,
    Rst,
    Psh,
    Ack,
    Urg,
    Ece,
    Cwr,
}

impl Flag {
    /// Every flag, in the order Wireshark prints them (the header's bit order):
    /// `SYN, ACK`, `FIN, ACK`, `FIN, PSH, ACK`, `RST, ACK`.
    pub const ALL: [Flag; 8] = [
        Flag::Fin,
        Flag::Syn,
        Flag::Rst,
        Flag::Psh,
        Flag::Ack,
        Flag::Urg,
        Flag::Ece,
        Flag::Cwr,
    ];

    /// The flag's bit in the TCP header's flags byte.
    pub const fn bit(self) -> u8 {
        match self {
            Flag::Fin => 0x01,
            Flag::Syn => 0x02,
            Flag::Rst => 0x04,
            Flag::Psh => 0x08,
            Flag::Ack => 0x10,
            Flag::Urg => 0x20,
            Flag::Ece => 0x40,
            Flag::Cwr => 0x80,
        }
    }

    /// The name as tcpdump and Wireshark print it: `SYN`, `ACK`, ...
    pub const fn name(self) -> &'static str {
        match self {
            Flag::Syn => "SYN",
            Flag::Ack => "ACK",
            Flag::Fin => "FIN",
            Flag::Rst => "RST",
            Flag::Psh => "PSH",
            Flag::Urg => "URG",
            Flag::Ece => "ECE",
            Flag::Cwr => "CWR",
        }
    }
}

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for Flag {
    type Err = String;
    fn from_str(s: &str) -> Result<Flag, String> {
        Flag::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = Flag::ALL.iter().map(|f| f.name()).collect();
                format!("unknown TCP flag {s:?}; valid: {}", names.join(", "))
            })
    }
}

/// The flags of one segment: the header's flags byte. Serialized as a list of names
/// (`["FIN", "ACK"]`), printed as `FIN, ACK`, both in [`Flag::ALL`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u8);

impl Flags {
    /// Flags from a list.
    pub fn of(flags: &[Flag]) -> Flags {
        Flags(flags.iter().fold(0, |acc, f| acc | f.bit()))
    }

    pub fn has(self, flag: Flag) -> bool {
        self.0 & flag.bit() != 0
    }

    /// The flags set, in [`Flag::ALL`] order.
    pub fn list(self) -> Vec<Flag> {
        Flag::ALL.into_iter().filter(|f| self.has(*f)).collect()
    }

    /// The names of the flags set, in [`Flag::ALL`] order.
    pub fn names(self) -> Vec<&'static str> {
        self.list().into_iter().map(Flag::name).collect()
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.names().join(", "))
    }
}

impl Serialize for Flags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Flags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Flags, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut flags = Vec::with_capacity(names.len());
        for n in names {
            flags.push(n.parse::<Flag>().map_err(serde::de::Error::custom)?);
        }
        Ok(Flags::of(&flags))
    }
}

/// The TCP options tcplab looks at (RFC 9293 MSS, RFC 7323 window scale and timestamps,
/// RFC 2018 SACK). Absent options are `None`/`false`/empty and left out of the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TcpOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mss: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wscale: Option<u8>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sack_permitted: bool,
    /// SACK blocks (left edge, right edge), absolute sequence numbers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sack: Vec<(u32, u32)>,
    /// Timestamps option: (TSval, TSecr).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamps: Option<(u32, u32)>,
}

impl TcpOptions {
    pub fn is_empty(&self) -> bool {
        *self == TcpOptions::default()
    }
}

/// One TCP segment seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Microseconds since the observation started, on the tracer's clock (CLOCK_MONOTONIC).
    pub t_us: u64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub flags: Flags,
    /// Sequence number relative to the sender's first (its SYN's, as Wireshark counts).
    pub seq: u32,
    /// Acknowledgment number relative to the receiver's first sequence number; 0 without ACK.
    pub ack: u32,
    /// The sequence number as it is in the header.
    pub raw_seq: u32,
    /// The acknowledgment number as it is in the header.
    pub raw_ack: u32,
    /// Payload bytes (from the IP header's lengths, so right even when the capture was cut).
    pub len: u32,
    /// The window field as it is in the header (not scaled).
    pub win: u16,
    #[serde(default, skip_serializing_if = "TcpOptions::is_empty")]
    pub options: TcpOptions,
}

impl Segment {
    pub fn has(&self, flag: Flag) -> bool {
        self.flags.has(flag)
    }

    /// Whether this segment travels between the two addresses, either way.
    pub fn between(&self, a: SocketAddr, b: SocketAddr) -> bool {
        (self.src == a && self.dst == b) || (self.src == b && self.dst == a)
    }

    /// The connection this segment belongs to.
    pub fn conn(&self) -> Conn {
        Conn::new(self.src, self.dst)
    }

    /// How many sequence numbers it uses: payload, plus one each for SYN and FIN.
    pub fn seq_len(&self) -> u32 {
        self.len + u32::from(self.has(Flag::Syn)) + u32::from(self.has(Flag::Fin))
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>10.3} ms  {:>21} > {:<21} [{}] seq={} ack={} win={} len={}",
            self.t_us as f64 / 1000.0,
            self.src.to_string(),
            self.dst.to_string(),
            self.flags,
            self.seq,
            self.ack,
            self.win,
            self.len
        )
    }
}

/// A connection, named by its two addresses in a fixed order (the smaller first), so both
/// directions of a segment map to the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Conn {
    pub a: SocketAddr,
    pub b: SocketAddr,
}

impl Conn {
    pub fn new(x: SocketAddr, y: SocketAddr) -> Conn {
        if x <= y {
            Conn { a: x, b: y }
        } else {
            Conn { a: y, b: x }
        }
    }
}

impl fmt::Display for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} <-> {}", self.a, self.b)
    }
}

/// What one endpoint said to another, read from the segments between them: counts of the
/// flags that end or start a connection, and how far the byte stream got. The numbers are
/// relative (the SYN takes sequence number 0, the first data byte 1), so the counts are bytes
/// of the stream, each counted once however often it was retransmitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sent {
    pub segments: usize,
    pub syn: usize,
    pub fin: usize,
    pub rst: usize,
    /// Bytes of the stream that left `from` (the highest data byte sent).
    pub bytes: u32,
    /// Of those, how many `to` acknowledged (its highest ACK, less the SYN and any FIN).
    pub acked: u32,
}

impl Sent {
    /// Summarize the segments from `from` to `to`, and the ACKs coming back.
    pub fn between(segments: &[Segment], from: SocketAddr, to: SocketAddr) -> Sent {
        let mut out = Sent::default();
        let mut highest_ack = 0u32;
        for s in segments {
            if s.src == from && s.dst == to {
                out.segments += 1;
                out.syn += usize::from(s.has(Flag::Syn));
                out.fin += usize::from(s.has(Flag::Fin));
                out.rst += usize::from(s.has(Flag::Rst));
                if s.len > 0 {
                    // Data starts at relative sequence number 1, after the SYN.
                    out.bytes = out.bytes.max(s.seq.saturating_add(s.len).saturating_sub(1));
                }
            } else if s.src == to && s.dst == from && s.has(Flag::Ack) && !s.has(Flag::Rst) {
                highest_ack = highest_ack.max(s.ack);
            }
        }
        out.acked = highest_ack.saturating_sub(1).min(out.bytes);
        out
    }

    /// Bytes that left but were never acknowledged.
    pub fn unacked(&self) -> u32 {
        self.bytes - self.acked
    }
}

/// A frame parsed, before relative numbering and before the clock is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub flags: Flags,
    pub seq: u32,
    pub ack: u32,
    pub len: u32,
    pub win: u16,
    pub options: TcpOptions,
}

/// Parse one Ethernet frame (loopback frames carry a 14-byte Ethernet header with zero
/// addresses) holding IPv4 or IPv6 and TCP. The frame may be cut after the TCP header (the
/// capture keeps only the first bytes): the payload length comes from the IP header's
/// length fields. `None` for anything else, a fragment, or headers cut short.
pub fn parse_frame(frame: &[u8]) -> Option<Parsed> {
    let sliced = LaxSlicedPacket::from_ethernet(frame).ok()?;
    let (src_ip, dst_ip, declared, payload) = match sliced.net.as_ref()? {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            let declared = usize::from(h.total_len()).saturating_sub(usize::from(h.ihl()) * 4);
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                declared,
                v4.payload(),
            )
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            let exts = v6.extensions().slice().len();
            let declared = usize::from(h.payload_length()).saturating_sub(exts);
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                declared,
                v6.payload(),
            )
        }
        LaxNetSlice::Arp(_) => return None,
    };
    if payload.fragmented {
        return None;
    }
    // What the IP header says, when the bytes were cut; what is there, otherwise (a GSO
    // packet's length field may be stale, the bytes are not).
    let ip_payload_len = if payload.incomplete {
        declared
    } else {
        payload.payload.len()
    };
    let TransportSlice::Tcp(tcp) = sliced.transport? else {
        return None;
    };
    let header_len = usize::from(tcp.data_offset()) * 4;
    let mut options = TcpOptions::default();
    for opt in tcp.options_iterator() {
        match opt {
            Ok(TcpOptionElement::MaximumSegmentSize(m)) => options.mss = Some(m),
            Ok(TcpOptionElement::WindowScale(w)) => options.wscale = Some(w),
            Ok(TcpOptionElement::SelectiveAcknowledgementPermitted) => {
                options.sack_permitted = true
            }
            Ok(TcpOptionElement::SelectiveAcknowledgement(first, rest)) => {
                options.sack.push(first);
                options.sack.extend(rest.into_iter().flatten());
            }
            Ok(TcpOptionElement::Timestamp(val, ecr)) => options.timestamps = Some((val, ecr)),
            Ok(TcpOptionElement::Noop) => {}
            // A malformed or unknown option ends what we can read; the segment still counts.
            Err(_) => break,
        }
    }
    Some(Parsed {
        src: SocketAddr::new(src_ip, tcp.source_port()),
        dst: SocketAddr::new(dst_ip, tcp.destination_port()),
        flags: Flags(tcp.slice()[13]),
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        len: ip_payload_len.saturating_sub(header_len) as u32,
        win: tcp.window_size(),
        options,
    })
}

/// Relative sequence numbers, as Wireshark computes them: each direction of a connection
/// counts from its initial sequence number (the SYN's), or, when the capture began after
/// the SYN, from the first sequence number seen. A new SYN with another ISN on the same
/// addresses (a port reused after TIME_WAIT) starts a new connection.
#[derive(Debug, Default, Clone)]
pub struct Numbering {
    /// Per connection: the base of the direction from `Conn::a`, then from `Conn::b`.
    bases: HashMap<Conn, [Option<u32>; 2]>,
}

impl Numbering {
    pub fn new() -> Numbering {
        Numbering::default()
    }

    /// Number one parsed frame, in capture order, and stamp it with its time.
    pub fn number(&mut self, p: Parsed, t_us: u64) -> Segment {
        let conn = Conn::new(p.src, p.dst);
        let (me, peer) = if p.src == conn.a { (0, 1) } else { (1, 0) };
        let bases = self.bases.entry(conn).or_insert([None, None]);
        let syn = p.flags.has(Flag::Syn);
        let ack = p.flags.has(Flag::Ack);
        if syn && bases[me] != Some(p.seq) {
            if !ack {
                // A fresh connection attempt: forget whatever the old one used.
                *bases = [None, None];
            }
            bases[me] = Some(p.seq);
        }
        let my_base = *bases[me].get_or_insert(p.seq);
        let rel_ack = if ack {
            // The peer never spoke yet (a RST answering a SYN we did not see, say): its
            // base is what this segment acknowledges.
            let peer_base = *bases[peer].get_or_insert(p.ack);
            p.ack.wrapping_sub(peer_base)
        } else {
            0
        };
        Segment {
            t_us,
            src: p.src,
            dst: p.dst,
            flags: p.flags,
            seq: p.seq.wrapping_sub(my_base),
            ack: rel_ack,
            raw_seq: p.seq,
            raw_ack: p.ack,
            len: p.len,
            win: p.win,
            options: p.options,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Recorded on `lo` by this capture: a SYN from 127.0.0.1:54928 to 127.0.0.1:36917 with
    /// MSS 65495, SACK permitted, timestamps, NOP, window scale 10.
    pub(crate) const SYN_V4: &str = "00000000000000000000000008004500003c96dd40004006a5dc7f0000017f000001d690903517c8114200000000a002ffd7fe3000000204ffd70402080a419c2382000000000103030a";

    /// A FIN, ACK with 5 bytes of payload over IPv6 (::1 port 5000 -> ::1 port 41234), with
    /// timestamps and one SACK block.
    pub(crate) fn fin_v6() -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&[0; 12]);
        f.extend_from_slice(&[0x86, 0xdd]);
        let tcp_len = 20 + 12 + 12;
        let payload = b"hello";
        // IPv6 header
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&((tcp_len + payload.len()) as u16).to_be_bytes());
        f.push(6);
        f.push(64);
        let mut one = [0u8; 16];
        one[15] = 1;
        f.extend_from_slice(&one);
        f.extend_from_slice(&one);
        // TCP header
        f.extend_from_slice(&5000u16.to_be_bytes());
        f.extend_from_slice(&41234u16.to_be_bytes());
        f.extend_from_slice(&1000u32.to_be_bytes());
        f.extend_from_slice(&2000u32.to_be_bytes());
        f.push(((tcp_len / 4) as u8) << 4);
        f.push(0x11); // FIN, ACK
        f.extend_from_slice(&512u16.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0]);
        // NOP NOP TS(10) = 12 bytes
        f.extend_from_slice(&[1, 1, 8, 10]);
        f.extend_from_slice(&7u32.to_be_bytes());
        f.extend_from_slice(&9u32.to_be_bytes());
        // NOP NOP SACK(10) = 12 bytes
        f.extend_from_slice(&[1, 1, 5, 10]);
        f.extend_from_slice(&3000u32.to_be_bytes());
        f.extend_from_slice(&3100u32.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn sent_counts_stream_bytes_once_and_what_came_back() {
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let seg = |src, dst, flags: &[Flag], seq, ack, len| Segment {
            t_us: 0,
            src,
            dst,
            flags: Flags::of(flags),
            seq,
            ack,
            raw_seq: seq,
            raw_ack: ack,
            len,
            win: 0,
            options: TcpOptions::default(),
        };
        let segs = [
            seg(b, a, &[Flag::Syn], 0, 0, 0),
            seg(a, b, &[Flag::Syn, Flag::Ack], 0, 1, 0),
            seg(a, b, &[Flag::Ack], 1, 1, 100),
            seg(a, b, &[Flag::Ack], 101, 1, 100),
            // A retransmission of the first 100 bytes counts once.
            seg(a, b, &[Flag::Ack], 1, 1, 100),
            seg(b, a, &[Flag::Ack], 1, 101, 0),
            seg(a, b, &[Flag::Rst, Flag::Ack], 201, 1, 0),
        ];
        let from_a = Sent::between(&segs, a, b);
        assert_eq!(
            from_a,
            Sent {
                segments: 5,
                syn: 1,
                fin: 0,
                rst: 1,
                bytes: 200,
                acked: 100,
            }
        );
        assert_eq!(from_a.unacked(), 100);
        let from_b = Sent::between(&segs, b, a);
        assert_eq!((from_b.syn, from_b.bytes, from_b.acked), (1, 0, 0));
    }

    #[test]
    fn parses_a_recorded_syn() {
        let p = parse_frame(&hex(SYN_V4)).expect("a TCP segment");
        assert_eq!(p.src, "127.0.0.1:54928".parse().unwrap());
        assert_eq!(p.dst, "127.0.0.1:36917".parse().unwrap());
        assert_eq!(p.flags.names(), vec!["SYN"]);
        assert_eq!(p.seq, 0x17c8_1142);
        assert_eq!(p.ack, 0);
        assert_eq!(p.len, 0);
        assert_eq!(p.win, 65495);
        assert_eq!(p.options.mss, Some(65495));
        assert_eq!(p.options.wscale, Some(10));
        assert!(p.options.sack_permitted);
        assert_eq!(p.options.timestamps, Some((0x419c_2382, 0)));
        assert!(p.options.sack.is_empty());
    }

    #[test]
    fn parses_ipv6_fin_with_payload_and_sack() {
        let p = parse_frame(&fin_v6()).expect("a TCP segment");
        assert_eq!(p.src, "[::1]:5000".parse().unwrap());
        assert_eq!(p.flags.to_string(), "FIN, ACK");
        assert_eq!(p.flags.names(), vec!["FIN", "ACK"]);
        assert_eq!(p.len, 5);
        assert_eq!(p.win, 512);
        assert_eq!(p.options.timestamps, Some((7, 9)));
        assert_eq!(p.options.sack, vec![(3000, 3100)]);
    }

    #[test]
    fn a_frame_cut_after_the_headers_keeps_its_length() {
        let full = fin_v6();
        let cut = &full[..full.len() - 5]; // the payload's 5 bytes not captured
        let p = parse_frame(cut).expect("a TCP segment");
        assert_eq!(p.len, 5);
        assert_eq!(p.options.sack, vec![(3000, 3100)]);
        let mut v4 = hex(SYN_V4);
        // Say the IPv4 packet carries 100 bytes of payload that were not captured.
        v4[16..18].copy_from_slice(&(60u16 + 100).to_be_bytes());
        assert_eq!(parse_frame(&v4).unwrap().len, 100);
        // Cut inside the TCP header: nothing to parse.
        assert_eq!(parse_frame(&full[..14 + 40 + 10]), None);
    }

    #[test]
    fn ignores_what_is_not_tcp() {
        let mut udp = hex(SYN_V4);
        udp[23] = 17; // protocol UDP
        assert_eq!(parse_frame(&udp), None);
        assert_eq!(parse_frame(&hex(SYN_V4)[..30]), None);
        let mut arp = hex(SYN_V4);
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert_eq!(parse_frame(&arp), None);
    }

    fn parsed(src: u16, dst: u16, flags: &[Flag], seq: u32, ack: u32, len: u32) -> Parsed {
        Parsed {
            src: SocketAddr::from(([127, 0, 0, 1], src)),
            dst: SocketAddr::from(([127, 0, 0, 1], dst)),
            flags: Flags::of(flags),
            seq,
            ack,
            len,
            win: 100,
            options: TcpOptions::default(),
        }
    }

    #[test]
    fn relative_numbers_follow_each_isn() {
        use Flag::*;
        let mut n = Numbering::new();
        let c = 1_000_000u32;
        let s = u32::MAX - 2; // the server's ISN wraps around
        let segs = [
            n.number(parsed(40000, 5000, &[Syn], c, 0, 0), 0),
            n.number(parsed(5000, 40000, &[Syn, Ack], s, c + 1, 0), 1),
            n.number(parsed(40000, 5000, &[Ack], c + 1, s.wrapping_add(1), 0), 2),
            n.number(
                parsed(40000, 5000, &[Psh, Ack], c + 1, s.wrapping_add(1), 5),
                3,
            ),
            n.number(parsed(5000, 40000, &[Ack], s.wrapping_add(1), c + 6, 0), 4),
            n.number(
                parsed(40000, 5000, &[Fin, Ack], c + 6, s.wrapping_add(1), 0),
                5,
            ),
        ];
        let rel: Vec<(u32, u32)> = segs.iter().map(|s| (s.seq, s.ack)).collect();
        assert_eq!(rel, vec![(0, 0), (0, 1), (1, 1), (1, 1), (1, 6), (6, 1)]);
        assert_eq!(segs[1].raw_seq, s);
        // The same ports again with a new ISN: counted afresh.
        let again = n.number(parsed(40000, 5000, &[Syn], 77, 0, 0), 9);
        assert_eq!((again.seq, again.ack), (0, 0));
        let reply = n.number(parsed(5000, 40000, &[Rst, Ack], 0, 78, 0), 10);
        assert_eq!((reply.seq, reply.ack), (0, 1));
    }

    #[test]
    fn flags_serialize_as_names() {
        let f = Flags::of(&[Flag::Fin, Flag::Ack]);
        assert_eq!(serde_json::to_string(&f).unwrap(), r#"["FIN","ACK"]"#);
        let back: Flags = serde_json::from_str(r#"["fin","ACK"]"#).unwrap();
        assert_eq!(back, f);
        assert!(serde_json::from_str::<Flags>(r#"["NOPE"]"#).is_err());
    }
}
