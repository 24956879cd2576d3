//! Segments on the wire: the peer's, built with etherparse (the crate the capture parses
//! with), and the kernel's, read back field by field with their options in the order they
//! were sent (a script compares the list as written, NOPs included, which the capture's
//! [`crate::segment::TcpOptions`] does not keep).

use std::net::Ipv4Addr;

use anyhow::{Result, anyhow};
use etherparse::{IpNumber, Ipv4Header, TcpHeader};

use super::script::{
    TCP_ACK, TCP_CWR, TCP_ECE, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN, TCP_URG, TcpOpt,
};

/// One TCP/IPv4 segment, with absolute (live) numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wire {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub sport: u16,
    pub dport: u16,
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    pub win: u16,
    /// Options in the order they were sent; an option this parser does not know is `None`.
    pub options: Vec<Option<TcpOpt>>,
    pub payload: Vec<u8>,
}

/// The raw bytes of an option list, padded with EOL to a multiple of four.
pub fn option_bytes(options: &[TcpOpt]) -> Vec<u8> {
    let mut b = Vec::new();
    for o in options {
        match o {
            TcpOpt::Nop => b.push(1),
            TcpOpt::Eol => b.push(0),
            TcpOpt::Mss(m) => {
                b.extend_from_slice(&[2, 4]);
                b.extend_from_slice(&m.to_be_bytes());
            }
            TcpOpt::Wscale(w) => b.extend_from_slice(&[3, 3, *w]),
            TcpOpt::SackOk => b.extend_from_slice(&[4, 2]),
            TcpOpt::Sack(blocks) => {
                b.extend_from_slice(&[5, 2 + 8 * blocks.len() as u8]);
                for (l, r) in blocks {
                    b.extend_from_slice(&l.to_be_bytes());
                    b.extend_from_slice(&r.to_be_bytes());
                }
            }
            TcpOpt::Timestamp { val, ecr } => {
                b.extend_from_slice(&[8, 10]);
                b.extend_from_slice(&val.to_be_bytes());
                b.extend_from_slice(&ecr.to_be_bytes());
            }
        }
    }
    while b.len() % 4 != 0 {
        b.push(0);
    }
    b
}

impl Wire {
    /// The IPv4 packet, checksums filled in.
    pub fn build(&self) -> Result<Vec<u8>> {
        let mut tcp = TcpHeader::new(self.sport, self.dport, self.seq, self.win);
        tcp.acknowledgment_number = self.ack;
        tcp.fin = self.flags & TCP_FIN != 0;
        tcp.syn = self.flags & TCP_SYN != 0;
        tcp.rst = self.flags & TCP_RST != 0;
        tcp.psh = self.flags & TCP_PSH != 0;
        tcp.ack = self.flags & TCP_ACK != 0;
        tcp.urg = self.flags & TCP_URG != 0;
        tcp.ece = self.flags & TCP_ECE != 0;
        tcp.cwr = self.flags & TCP_CWR != 0;
        let opts: Vec<TcpOpt> = self.options.iter().flatten().cloned().collect();
        tcp.set_options_raw(&option_bytes(&opts))
            .map_err(|e| anyhow!("TCP options too long: {e}"))?;
        let len = tcp.header_len() + self.payload.len();
        let mut ip = Ipv4Header::new(
            u16::try_from(len).map_err(|_| anyhow!("segment too large"))?,
            64,
            IpNumber::TCP,
            self.src.octets(),
            self.dst.octets(),
        )
        .map_err(|e| anyhow!("segment too large: {e}"))?;
        ip.header_checksum = ip.calc_header_checksum();
        tcp.checksum = tcp
            .calc_checksum_ipv4(&ip, &self.payload)
            .map_err(|e| anyhow!("segment too large: {e}"))?;
        let mut out = Vec::with_capacity(20 + len);
        out.extend_from_slice(&ip.to_bytes());
        out.extend_from_slice(&tcp.to_bytes());
        out.extend_from_slice(&self.payload);
        Ok(out)
    }

    /// Read an IPv4 packet holding TCP; `None` for anything else (ARP never gets here: the
    /// capture reads IP only; IPv6 and other protocols are not the peer's business).
    pub fn parse(ip: &[u8]) -> Option<Wire> {
        if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
            return None;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let tcp = ip.get(ihl..)?;
        if tcp.len() < 20 {
            return None;
        }
        let doff = usize::from(tcp[12] >> 4) * 4;
        if doff < 20 || tcp.len() < doff {
            return None;
        }
        let u16_at = |i: usize| u16::from_be_bytes([tcp[i], tcp[i + 1]]);
        let u32_at = |b: &[u8], i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(Wire {
            src: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
            dst: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
            sport: u16_at(0),
            dport: u16_at(2),
            seq: u32_at(tcp, 4),
            ack: u32_at(tcp, 8),
            flags: tcp[13],
            win: u16_at(14),
            options: parse_options(&tcp[20..doff]),
            // A TSO segment's bytes are all here; its IP length field may not be.
            payload: tcp[doff..].to_vec(),
        })
    }
}

fn parse_options(mut b: &[u8]) -> Vec<Option<TcpOpt>> {
    let mut out = Vec::new();
    while let Some(&kind) = b.first() {
        match kind {
            0 => {
                // EOL: the rest is padding.
                out.push(Some(TcpOpt::Eol));
                break;
            }
            1 => {
                out.push(Some(TcpOpt::Nop));
                b = &b[1..];
                continue;
            }
            _ => {}
        }
        let Some(&len) = b.get(1) else {
            out.push(None);
            break;
        };
        let len = usize::from(len);
        if len < 2 || b.len() < len {
            out.push(None);
            break;
        }
        let d = &b[2..len];
        let u32_at = |i: usize| u32::from_be_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
        out.push(match (kind, len) {
            (2, 4) => Some(TcpOpt::Mss(u16::from_be_bytes([d[0], d[1]]))),
            (3, 3) => Some(TcpOpt::Wscale(d[0])),
            (4, 2) => Some(TcpOpt::SackOk),
            (5, l) if l >= 10 && (l - 2) % 8 == 0 => Some(TcpOpt::Sack(
                (0..(l - 2) / 8)
                    .map(|k| (u32_at(8 * k), u32_at(8 * k + 4)))
                    .collect(),
            )),
            (8, 10) => Some(TcpOpt::Timestamp {
                val: u32_at(0),
                ecr: u32_at(4),
            }),
            _ => None,
        });
        b = &b[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_then_parse_round_trips() {
        let w = Wire {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(192, 168, 0, 2),
            sport: 40000,
            dport: 8080,
            flags: TCP_SYN | TCP_ACK,
            seq: 7,
            ack: 99,
            win: 32768,
            options: vec![
                Some(TcpOpt::Mss(1000)),
                Some(TcpOpt::Nop),
                Some(TcpOpt::Wscale(6)),
                Some(TcpOpt::Nop),
                Some(TcpOpt::Nop),
                Some(TcpOpt::SackOk),
            ],
            payload: vec![0; 3],
        };
        let bytes = w.build().unwrap();
        assert_eq!(bytes.len(), 20 + 32 + 3);
        assert_eq!(Wire::parse(&bytes).unwrap(), w);
        // And the capture's own parser agrees on the checksummed packet's fields.
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&bytes);
        let p = crate::segment::parse_frame(&frame).unwrap();
        assert_eq!((p.seq, p.ack, p.len, p.win), (7, 99, 3, 32768));
        let sliced = etherparse::SlicedPacket::from_ip(&bytes).unwrap();
        let Some(etherparse::TransportSlice::Tcp(tcp)) = sliced.transport else {
            panic!("not TCP")
        };
        let ip = etherparse::Ipv4Header::from_slice(&bytes).unwrap().0;
        assert_eq!(
            tcp.calc_checksum_ipv4(ip.source, ip.destination).unwrap(),
            tcp.checksum()
        );
    }
}
