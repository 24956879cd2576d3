//! The classic BPF program that makes the kernel drop every frame but TCP on the watched
//! ports before it reaches our ring, as tcpdump's `tcp port P` does, for IPv4 and IPv6 on
//! Ethernet framing (what `lo` uses: a 14-byte header with zero addresses).
//!
//! Written by hand rather than taken from a crate: the program is fifteen instructions plus
//! two per port, the crates that compile filter expressions need libpcap, and seeing the
//! instructions is part of the lesson (compare `tcpdump -d 'tcp port 5000'`). A tiny
//! interpreter in the tests runs it on recorded frames.
//!
//! Left out on purpose: IPv6 extension headers (tcpdump's `tcp port` does not follow them
//! either), VLAN tags, and non-first IPv4 fragments (they carry no TCP header; they are
//! dropped).

// The classic BPF opcodes we use (linux/filter.h, linux/bpf_common.h).
const LD_H_ABS: u16 = 0x28; // A = u16 at [k]
const LD_B_ABS: u16 = 0x30; // A = u8 at [k]
const LD_H_IND: u16 = 0x48; // A = u16 at [X + k]
const LDX_B_MSH: u16 = 0xb1; // X = 4 * ([k] & 0xf)
const JEQ_K: u16 = 0x15; // if A == k
const JSET_K: u16 = 0x45; // if A & k
const JA: u16 = 0x05; // goto +k
const RET_K: u16 = 0x06; // return k (bytes to keep; 0 drops)

const ETHERTYPE_IPV4: u32 = 0x0800;
const ETHERTYPE_IPV6: u32 = 0x86dd;
const IPPROTO_TCP: u32 = 6;
/// The fewest bytes of a matching frame the filter lets through: the largest Ethernet,
/// IPv6 and TCP headers (14 + 40 + 60) fit. The kernel records the frame's full length
/// beside the bytes it keeps.
pub const MIN_KEEP: u32 = 128;

/// One instruction, laid out as `struct sock_filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// Where a jump goes, before offsets are known.
#[derive(Clone, Copy)]
enum To {
    Next,
    Accept,
    Drop,
    V6,
}

enum Op {
    Stmt(u16, u32),
    Jump(u16, u32, To, To),
    Label(To),
}

/// The most ports one filter takes: jump offsets are one byte.
pub const MAX_PORTS: usize = 60;

/// The program for TCP to or from any of `ports` (every TCP segment when `ports` is empty),
/// keeping the first `keep` bytes of each (at least [`MIN_KEEP`]). `None` when there are
/// more than [`MAX_PORTS`] ports.
pub fn tcp_ports(ports: &[u16], keep: u32) -> Option<Vec<Insn>> {
    if ports.len() > MAX_PORTS {
        return None;
    }
    let mut ops = vec![
        Op::Stmt(LD_H_ABS, 12),
        Op::Jump(JEQ_K, ETHERTYPE_IPV4, To::Next, To::V6),
        // IPv4: protocol TCP, not a later fragment, then the ports after the IP header.
        Op::Stmt(LD_B_ABS, 23),
        Op::Jump(JEQ_K, IPPROTO_TCP, To::Next, To::Drop),
        Op::Stmt(LD_H_ABS, 20),
        Op::Jump(JSET_K, 0x1fff, To::Drop, To::Next),
        Op::Stmt(LDX_B_MSH, 14),
    ];
    port_checks(&mut ops, ports, LD_H_IND, 14);
    ops.push(Op::Label(To::V6));
    // IPv6: next header TCP right after the fixed 40-byte header.
    ops.push(Op::Jump(JEQ_K, ETHERTYPE_IPV6, To::Next, To::Drop));
    ops.push(Op::Stmt(LD_B_ABS, 20));
    ops.push(Op::Jump(JEQ_K, IPPROTO_TCP, To::Next, To::Drop));
    port_checks(&mut ops, ports, LD_H_ABS, 54);
    ops.push(Op::Label(To::Drop));
    ops.push(Op::Stmt(RET_K, 0));
    ops.push(Op::Label(To::Accept));
    ops.push(Op::Stmt(RET_K, keep.max(MIN_KEEP)));
    Some(assemble(&ops))
}

/// Source port, then destination port, against every watched port; falls through to Drop.
fn port_checks(ops: &mut Vec<Op>, ports: &[u16], load: u16, at: u32) {
    if ports.is_empty() {
        ops.push(Op::Jump(JA, 0, To::Accept, To::Accept));
        return;
    }
    for offset in [at, at + 2] {
        ops.push(Op::Stmt(load, offset));
        for p in ports {
            ops.push(Op::Jump(JEQ_K, u32::from(*p), To::Accept, To::Next));
        }
    }
    ops.push(Op::Jump(JA, 0, To::Drop, To::Drop));
}

fn assemble(ops: &[Op]) -> Vec<Insn> {
    // Instruction index of each label.
    let mut index = 0usize;
    let mut accept = 0;
    let mut drop = 0;
    let mut v6 = 0;
    for op in ops {
        match op {
            Op::Label(To::Accept) => accept = index,
            Op::Label(To::Drop) => drop = index,
            Op::Label(To::V6) => v6 = index,
            Op::Label(To::Next) => {}
            Op::Stmt(..) | Op::Jump(..) => index += 1,
        }
    }
    let mut out = Vec::with_capacity(index);
    for op in ops {
        let here = out.len();
        // Offsets count from the next instruction; the program only jumps forward.
        let rel = |to: To| -> usize {
            match to {
                To::Next => 0,
                To::Accept => accept - here - 1,
                To::Drop => drop - here - 1,
                To::V6 => v6 - here - 1,
            }
        };
        match *op {
            Op::Label(_) => {}
            Op::Stmt(code, k) => out.push(Insn {
                code,
                jt: 0,
                jf: 0,
                k,
            }),
            Op::Jump(JA, _, to, _) => out.push(Insn {
                code: JA,
                jt: 0,
                jf: 0,
                k: rel(to) as u32,
            }),
            Op::Jump(code, k, t, f) => out.push(Insn {
                code,
                // MAX_PORTS keeps every offset under 256 (tested with MAX_PORTS ports).
                jt: u8::try_from(rel(t)).expect("jump offset fits a byte"),
                jf: u8::try_from(rel(f)).expect("jump offset fits a byte"),
                k,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segment::tests::{SYN_V4, fin_v6, hex};

    const KEEP: u32 = 256;

    /// Runs the instructions this module emits, as the kernel would: the bytes to keep.
    fn run(prog: &[Insn], pkt: &[u8]) -> u32 {
        let (mut a, mut x) = (0u32, 0u32);
        let mut pc = 0;
        let byte = |i: usize| pkt.get(i).copied();
        let half = |i: usize| Some(u16::from_be_bytes([byte(i)?, byte(i + 1)?]));
        for _ in 0..1000 {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_H_ABS => match half(i.k as usize) {
                    Some(v) => a = v.into(),
                    None => return 0,
                },
                LD_B_ABS => match byte(i.k as usize) {
                    Some(v) => a = v.into(),
                    None => return 0,
                },
                LD_H_IND => match half((x + i.k) as usize) {
                    Some(v) => a = v.into(),
                    None => return 0,
                },
                LDX_B_MSH => match byte(i.k as usize) {
                    Some(v) => x = 4 * u32::from(v & 0xf),
                    None => return 0,
                },
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                JSET_K => pc += usize::from(if a & i.k != 0 { i.jt } else { i.jf }),
                JA => pc += i.k as usize,
                RET_K => return i.k,
                other => panic!("opcode {other:#x} not emitted"),
            }
        }
        panic!("the program does not end");
    }

    #[test]
    fn keeps_only_the_watched_ports() {
        let syn = hex(SYN_V4); // 127.0.0.1:54928 -> 127.0.0.1:36917
        let v6 = fin_v6(); // [::1]:5000 -> [::1]:41234
        for (ports, want_v4, want_v6) in [
            (vec![36917], true, false),
            (vec![54928], true, false),
            (vec![41234], false, true),
            (vec![7, 36917, 5000], true, true),
            (vec![5001], false, false),
            (vec![], true, true),
        ] {
            let prog = tcp_ports(&ports, KEEP).unwrap();
            assert_eq!(run(&prog, &syn) == KEEP, want_v4, "v4, ports {ports:?}");
            assert_eq!(run(&prog, &v6) == KEEP, want_v6, "v6, ports {ports:?}");
        }
    }

    #[test]
    fn drops_udp_fragments_and_short_frames() {
        let prog = tcp_ports(&[5000], KEEP).unwrap();
        let mut udp = hex(SYN_V4);
        udp[23] = 17;
        assert_eq!(run(&prog, &udp), 0);
        let mut frag = hex(SYN_V4);
        frag[20] = 0x00;
        frag[21] = 0x10; // fragment offset 16 (x8 bytes)
        assert_eq!(run(&prog, &frag), 0);
        assert_eq!(run(&prog, &hex(SYN_V4)[..20]), 0);
        let mut arp = hex(SYN_V4);
        arp[13] = 0x06;
        assert_eq!(run(&prog, &arp), 0);
    }

    #[test]
    fn refuses_too_many_ports() {
        let many: Vec<u16> = (1..=MAX_PORTS as u16 + 1).collect();
        assert!(tcp_ports(&many, KEEP).is_none());
        let max: Vec<u16> = (1..=MAX_PORTS as u16).collect();
        let prog = tcp_ports(&max, KEEP).unwrap();
        assert!(prog.len() < 4096);
        let mut syn = hex(SYN_V4);
        syn[36..38].copy_from_slice(&(MAX_PORTS as u16).to_be_bytes()); // dst port
        assert_eq!(run(&prog, &syn), KEEP);
    }
}
