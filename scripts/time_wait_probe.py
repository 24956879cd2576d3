"""Ask the running kernel how a TIME_WAIT socket answers segments made by hand.

What it shows: the rules core::model's Linux profile follows for TIME_WAIT (Options in
core/src/model/machine.rs, after tcp_timewait_state_process() in net/ipv4/tcp_minisocks.c):
an in-window bare ACK restarts the 60 s silently; an old duplicate, a retransmitted FIN or a
SYN+ACK is ACKed and restarts them; a SYN that is not newer is ACKed without a restart; an
out-of-window RST is ignored; a SYN above RCV.NXT reopens the connection when a listener owns
the port (SYN+ACK with ISS = SND.NXT + 65537), and is only ACKed when none does.

How: two network namespaces of our own joined by a veth pair. The kernel under test (in
"tcplab-tw-a", 10.9.0.1) ends a real connection with a peer kernel (in "tcplab-tw-b",
10.9.0.2) and keeps the TIME_WAIT. The peer then gives up its address, so its kernel no longer
answers, and this script plays the peer with AF_PACKET frames; `ss` reads the timer.

What it leaves out: TCP options (no timestamps, so no PAWS and no RFC 6191 test), and rate
limits (tcp_invalid_ratelimit: the steps are seconds apart). Needs root; touches nothing
outside its two namespaces, which it removes at the end.

Usage: sudo python3 scripts/time_wait_probe.py
"""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import sys
import time

NS_A, NS_B = "tcplab-tw-a", "tcplab-tw-b"
IP_A, IP_B = "10.9.0.1", "10.9.0.2"
FLAGS = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16}


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def in_a(*args: str) -> list[str]:
    return ["ip", "netns", "exec", NS_A, *args]


def mac(dev: str, ns: str) -> str:
    return run("ip", "netns", "exec", ns, "cat", f"/sys/class/net/{dev}/address").strip()


def checksum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def kernel_a(role: str) -> None:
    """The kernel under test: close first, as the listener ("server") or the connector."""
    if role == "server":
        ls = socket.socket()
        ls.bind((IP_A, 0))
        ls.listen()
        print(ls.getsockname()[1], flush=True)
        s, _ = ls.accept()
    else:
        port = int(sys.stdin.readline())
        s = socket.create_connection((IP_B, port))
        print(s.getsockname()[1], flush=True)
    time.sleep(0.1)
    s.close()
    time.sleep(120)  # keep the listener (if any) while the peer probes


class Peer:
    """The peer, in namespace B: a real socket first, then hand-made frames on vb."""

    def __init__(self) -> None:
        self.sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        self.sniffer.bind(("vb", 0))
        self.sniffer.settimeout(0.05)
        self.eth = bytes.fromhex(mac("va", NS_A).replace(":", ""))
        self.eth += bytes.fromhex(mac("vb", NS_B).replace(":", "")) + b"\x08\x00"

    def sniff(self, secs: float) -> list[tuple[int, int, int, int, str]]:
        seen, end = [], time.time() + secs
        while time.time() < end:
            try:
                frame = self.sniffer.recv(65535)
            except socket.timeout:
                continue
            ip = frame[14:]
            if frame[12:14] != b"\x08\x00" or ip[9] != 6:
                continue
            sport, dport, seq, ack, _, fl = struct.unpack("!HHIIBB", ip[20:34])
            names = "".join(k for k, v in FLAGS.items() if fl & v)
            seen.append((sport, dport, seq, ack, names))
        return seen

    def send(self, sport: int, dport: int, seq: int, ack: int, flags: str, data: bytes) -> None:
        src, dst = socket.inet_aton(IP_B), socket.inet_aton(IP_A)
        bits = sum(FLAGS[c] for c in flags)
        tcp = struct.pack(
            "!HHIIBBHHH", sport, dport, seq % 2**32, ack % 2**32, 80, bits, 65535, 0, 0
        )
        pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp) + len(data))
        tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp + data)) + tcp[18:]
        total = 20 + len(tcp) + len(data)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
        self.sniffer.send(self.eth + ip + tcp + data)


def ss(port: int) -> str:
    out = run(*in_a("ss", "-tanoH", f"( sport = :{port} )"))
    return " | ".join(" ".join(line.split()) for line in out.strip().splitlines())


def timer(port: int) -> str:
    m = re.search(r"timer:\(timewait,(\d+)sec", ss(port))
    return f"{m.group(1)} s" if m else "none"


def peer_b(role: str) -> None:
    """Namespace B: end one real connection with A, then probe A's TIME_WAIT by hand."""
    me = Peer()
    if role == "server":
        a = subprocess.Popen(
            in_a(sys.executable, __file__, "--kernel", role), stdout=subprocess.PIPE, text=True
        )
        assert a.stdout
        c = socket.create_connection((IP_A, int(a.stdout.readline())))
    else:
        ls = socket.socket()
        ls.bind((IP_B, 0))
        ls.listen()
        a = subprocess.Popen(
            in_a(sys.executable, __file__, "--kernel", role),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert a.stdin and a.stdout
        a.stdin.write(f"{ls.getsockname()[1]}\n")
        a.stdin.flush()
        a.stdout.readline()
        c, _ = ls.accept()
    tw_port, my_port = c.getpeername()[1], c.getsockname()[1]
    while c.recv(100):
        pass
    c.close()
    segs = me.sniff(0.5)
    fins = {s[0]: s for s in segs if "F" in s[4]}
    rcv_nxt, snd_nxt = fins[my_port][2] + 1, fins[tw_port][2] + 1
    run(
        *in_a(
            "ip",
            "neigh",
            "replace",
            IP_B,
            "lladdr",
            mac("vb", NS_B),
            "dev",
            "va",
            "nud",
            "permanent",
        )
    )
    run("ip", "addr", "flush", "dev", "vb")
    listener = "a listener owns the port" if role == "server" else "nobody listens on the port"
    print(f"\nTIME_WAIT in the kernel under test, {IP_A}:{tw_port} ({listener}): {ss(tw_port)}")

    def step(label: str, dseq: int, flags: str, data: bytes = b"") -> None:
        time.sleep(3)
        before = timer(tw_port)
        ack = snd_nxt if "A" in flags else 0
        me.send(my_port, tw_port, rcv_nxt + dseq, ack, flags, data)
        answers = [
            f"{f} seq=SND.NXT{s - snd_nxt:+d}"
            + (f" ack=RCV.NXT{k - rcv_nxt:+d}" if "A" in f else "")
            for (sp, _, s, k, f) in me.sniff(0.4)
            if sp == tw_port
        ]
        print(
            f"- {label} ({flags} seq=RCV.NXT{dseq:+d}): answer {answers or 'none'}; "
            f"timer {before} -> {timer(tw_port)}; now: {ss(tw_port) or 'gone'}"
        )

    if role == "server":
        step("in-window bare ACK", 0, "A")
        step("old duplicate data", -10, "PA", b"x")
        step("retransmitted FIN", -1, "FA")
        step("old SYN", -1000, "S")
        step("SYN+ACK, not newer", -1000, "SA")
        step("out-of-window RST", 5000, "R")
    step("new SYN", 100000, "S")
    a.kill()


def main() -> None:
    if sys.argv[1:2] == ["--kernel"]:
        return kernel_a(sys.argv[2])
    if sys.argv[1:2] == ["--peer"]:
        return peer_b(sys.argv[2])
    print(f"Linux {run('uname', '-r').strip()}")
    for role in ["server", "client"]:
        try:
            run("ip", "netns", "add", NS_A)
            run("ip", "netns", "add", NS_B)
            run(
                "ip",
                "link",
                "add",
                "va",
                "netns",
                NS_A,
                "type",
                "veth",
                "peer",
                "vb",
                "netns",
                NS_B,
            )
            for ns, dev, addr in [(NS_A, "va", IP_A), (NS_B, "vb", IP_B)]:
                run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                run("ip", "-n", ns, "link", "set", dev, "up")
                run("ip", "-n", ns, "link", "set", "lo", "up")
            time.sleep(1)
            cmd = ["ip", "netns", "exec", NS_B, sys.executable, __file__, "--peer", role]
            subprocess.run(cmd, check=True)
        finally:
            for ns in [NS_A, NS_B]:
                subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


if __name__ == "__main__":
    main()
