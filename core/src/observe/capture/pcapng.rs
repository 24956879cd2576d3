//! A capture as a pcapng file that Wireshark, tshark, tcpdump and scapy open: one Enhanced
//! Packet Block per segment with the kernel's timestamp (nanosecond resolution), and every
//! socket state change of the same run written as a packet comment on the packet nearest to
//! it in time, so a student sees `ESTABLISHED -> CLOSE_WAIT` beside the FIN that caused it
//! (Wireshark: the "Packet comments" tree, or the `frame.comment` column). Written with the
//! pcap-file crate.
//!
//! Left out on purpose: name resolution blocks, several interfaces in one file, and comments
//! for state changes when no packet was captured at all (there is nothing to hang them on).

use std::borrow::Cow;
use std::io::Write;
use std::time::Duration;

use pcap_file::DataLink;
use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::interface_statistics::{
    InterfaceStatisticsBlock, InterfaceStatisticsOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::{Block, PcapNgBlock, PcapNgReader, PcapNgWriter};

use super::{CaptureStats, Frame};
use crate::error::{Error, Result};
use crate::segment::Segment;
use crate::timeline::Event;

/// What the file says about where its packets came from.
#[derive(Debug, Clone, Default)]
pub struct PcapInfo {
    /// The interface captured (`lo`).
    pub interface: String,
    /// The ports watched, written as the filter (`tcp port 5000`).
    pub ports: Vec<u16>,
    /// The kernel's counters, written as an interface statistics block.
    pub stats: Option<CaptureStats>,
    /// Bytes kept of each frame (0: no limit).
    pub snaplen: u32,
}

/// The filter as tcpdump would spell it.
pub fn filter_text(ports: &[u16]) -> String {
    if ports.is_empty() {
        return "tcp".into();
    }
    let ps: Vec<String> = ports.iter().map(|p| format!("port {p}")).collect();
    format!("tcp and ({})", ps.join(" or "))
}

/// The comment for one state change.
pub fn comment(e: &Event) -> String {
    format!(
        "state {} -> {}: {} -> {} ({})",
        e.local,
        e.remote,
        e.from.netstat(),
        e.to.netstat(),
        e.source
    )
}

/// For each event, the index of the segment nearest to it in time (the earlier one on a
/// tie: a change usually follows the segment that caused it). Empty segments: none.
pub fn nearest(segments: &[Segment], events: &[Event]) -> Vec<Option<usize>> {
    // Capture order is time order only to within a few microseconds (two CPUs may hand
    // frames over a little out of order): search the segments sorted by time.
    let mut order: Vec<usize> = (0..segments.len()).collect();
    order.sort_by_key(|&i| segments[i].t_us);
    events
        .iter()
        .map(|e| {
            let after = order.partition_point(|&i| segments[i].t_us <= e.t_us);
            let before = after.checked_sub(1).map(|k| order[k]);
            let after = order.get(after).copied();
            match (before, after) {
                (Some(b), Some(a)) => {
                    let db = e.t_us - segments[b].t_us;
                    let da = segments[a].t_us - e.t_us;
                    Some(if db <= da { b } else { a })
                }
                (b, a) => b.or(a),
            }
        })
        .collect()
}

fn pcap_err(e: pcap_file::PcapError) -> Error {
    Error::io("write pcapng", std::io::Error::other(e.to_string()))
}

/// Write the frames (`frames[i]` is `segments[i]`) and the state changes as comments.
/// Returns how many comments were written.
pub fn write<W: Write>(
    out: W,
    frames: &[Frame],
    segments: &[Segment],
    events: &[Event],
    info: &PcapInfo,
) -> Result<usize> {
    if frames.len() != segments.len() {
        return Err(Error::InvalidInput(format!(
            "pcapng: {} frames for {} segments",
            frames.len(),
            segments.len()
        )));
    }
    let shb = SectionHeaderBlock {
        endianness: pcap_file::Endianness::native(),
        options: vec![SectionHeaderOption::UserApplication(Cow::Borrowed(
            "tcplab (states as packet comments)",
        ))],
        ..SectionHeaderBlock::default()
    };
    let mut w = PcapNgWriter::with_section_header(out, shb).map_err(pcap_err)?;
    let mut filter = vec![0u8]; // 0: the filter is a libpcap filter string
    filter.extend_from_slice(filter_text(&info.ports).as_bytes());
    let idb = InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: info.snaplen,
        options: vec![
            InterfaceDescriptionOption::IfName(Cow::Owned(info.interface.clone())),
            // Timestamps in nanoseconds, which is how pcap-file writes them.
            InterfaceDescriptionOption::IfTsResol(9),
            InterfaceDescriptionOption::IfFilter(Cow::Owned(filter)),
        ],
    };
    w.write_block(&idb.into_block()).map_err(pcap_err)?;
    let mut comments: Vec<Vec<String>> = vec![Vec::new(); frames.len()];
    let mut written = 0;
    for (e, at) in events.iter().zip(nearest(segments, events)) {
        if let Some(i) = at {
            comments[i].push(comment(e));
            written += 1;
        }
    }
    for (f, notes) in frames.iter().zip(comments) {
        let epb = EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(f.real_ns),
            original_len: f.len,
            data: Cow::Borrowed(&f.data),
            options: notes
                .into_iter()
                .map(|c| EnhancedPacketOption::Comment(Cow::Owned(c)))
                .collect(),
        };
        w.write_block(&epb.into_block()).map_err(pcap_err)?;
    }
    if let Some(st) = info.stats {
        let last = frames.last().map_or(0, |f| f.real_ns);
        let isb = InterfaceStatisticsBlock {
            interface_id: 0,
            timestamp: last,
            options: vec![
                InterfaceStatisticsOption::IsbIfRecv(st.kernel_packets),
                InterfaceStatisticsOption::IsbIfDrop(st.kernel_drops),
                InterfaceStatisticsOption::IsbUsrDeliv(st.segments),
            ],
        };
        w.write_block(&isb.into_block()).map_err(pcap_err)?;
    }
    w.into_inner()
        .flush()
        .map_err(|e| Error::io("write pcapng", e))?;
    Ok(written)
}

/// One packet read back from a pcapng file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadPacket {
    pub real_ns: u64,
    pub len: u32,
    pub data: Vec<u8>,
    pub comments: Vec<String>,
}

/// Read the packets of a pcapng file (ours, or any with nanosecond timestamps).
pub fn read(bytes: &[u8]) -> Result<Vec<ReadPacket>> {
    let mut r = PcapNgReader::new(bytes).map_err(pcap_err)?;
    let mut out = Vec::new();
    while let Some(block) = r.next_block() {
        if let Block::EnhancedPacket(p) = block.map_err(pcap_err)? {
            out.push(ReadPacket {
                real_ns: p.timestamp.as_nanos() as u64,
                len: p.original_len,
                data: p.data.to_vec(),
                comments: p
                    .options
                    .iter()
                    .filter_map(|o| match o {
                        EnhancedPacketOption::Comment(c) => Some(c.to_string()),
                        _ => None,
                    })
                    .collect(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::tests::{SYN_V4, fin_v6, hex};
    use crate::segment::{Numbering, parse_frame};
    use crate::state::TcpState;
    use crate::timeline::Source;

    #[test]
    fn round_trip_with_comments() {
        let raw = [hex(SYN_V4), fin_v6()];
        let mut n = Numbering::new();
        let segments: Vec<Segment> = raw
            .iter()
            .zip([100u64, 900])
            .map(|(f, t)| n.number(parse_frame(f).unwrap(), t))
            .collect();
        let frames: Vec<Frame> = raw
            .iter()
            .zip([1_700_000_000_000_000_100u64, 1_700_000_000_000_000_900])
            .map(|(f, ns)| Frame {
                real_ns: ns,
                len: f.len() as u32,
                data: f.clone(),
            })
            .collect();
        let ev = |t, from, to| {
            Event::new(
                t,
                "127.0.0.1:5000".parse().unwrap(),
                "127.0.0.1:41234".parse().unwrap(),
                from,
                to,
                Source::Tracepoint,
            )
        };
        let events = [
            ev(120, TcpState::Listen, TcpState::SynRecv),
            ev(950, TcpState::Established, TcpState::FinWait1),
            ev(5_000_000, TcpState::TimeWait, TcpState::Close),
        ];
        let mut buf = Vec::new();
        let info = PcapInfo {
            interface: "lo".into(),
            ports: vec![5000],
            stats: Some(CaptureStats::default()),
            snaplen: 256,
        };
        assert_eq!(
            write(&mut buf, &frames, &segments, &events, &info).unwrap(),
            3
        );
        let back = read(&buf).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].data, frames[0].data);
        assert_eq!(back[0].real_ns, frames[0].real_ns);
        assert_eq!(
            back[0].comments,
            vec!["state 127.0.0.1:5000 -> 127.0.0.1:41234: LISTEN -> SYN_RECV (tracepoint)"]
        );
        assert_eq!(back[1].comments.len(), 2);
        assert!(back[1].comments[1].contains("TIME_WAIT -> CLOSE"));
    }

    #[test]
    fn nearest_tolerates_frames_slightly_out_of_order() {
        let mut n = Numbering::new();
        let p = parse_frame(&hex(SYN_V4)).unwrap();
        let segs: Vec<Segment> = [100, 90, 200]
            .into_iter()
            .map(|t| n.number(p.clone(), t))
            .collect();
        let ev = |t| {
            Event::new(
                t,
                p.src,
                p.dst,
                TcpState::SynSent,
                TcpState::Established,
                Source::Tracepoint,
            )
        };
        assert_eq!(
            nearest(&segs, &[ev(95), ev(0), ev(180), ev(999)]),
            vec![Some(1), Some(1), Some(2), Some(2)]
        );
        assert_eq!(nearest(&[], &[ev(5)]), vec![None]);
    }

    #[test]
    fn filter_reads_like_tcpdump() {
        assert_eq!(filter_text(&[]), "tcp");
        assert_eq!(
            filter_text(&[5000, 6000]),
            "tcp and (port 5000 or port 6000)"
        );
    }
}
