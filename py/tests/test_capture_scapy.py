"""tcplab's capture checked against an independent one: scapy sniffs `lo` with its own
AF_PACKET code while `tcplab capture --json --pcap` runs, on the same traffic, for four ways
a connection ends. Three lists of segments must be equal (who sent it, flags, relative
seq/ack, payload length): tcplab's JSON lines, what scapy sniffed (numbered here, in Python,
from each direction's SYN), and tcplab's pcapng file as scapy reads it.

Root sniffs the host's `lo`. Anyone else runs this test again inside `unshare -rn`, a user +
network namespace where both captures are allowed on the namespace's own `lo`.
Left out on purpose: IPv6 and loss (the Rust tests cover the parser on IPv6 bytes).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import tcplab

scapy_all = pytest.importorskip("scapy.all")

IN_NS = "TCPLAB_TEST_IN_NETNS"
FLAG_NAMES = {
    "F": "FIN",
    "S": "SYN",
    "R": "RST",
    "P": "PSH",
    "A": "ACK",
    "U": "URG",
    "E": "ECE",
    "C": "CWR",
}
Row = tuple[str, tuple[str, ...], int, int, int]


def client_closes_first(srv: socket.socket, port: int) -> None:
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    s, _ = srv.accept()
    c.sendall(b"hello")
    s.recv(16)
    c.close()
    s.recv(16)
    s.close()


def server_closes_first(srv: socket.socket, port: int) -> None:
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    s, _ = srv.accept()
    s.sendall(b"bye")
    s.close()
    while c.recv(16):
        pass
    c.close()


def linger_zero_abort(srv: socket.socket, port: int) -> None:
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    s, _ = srv.accept()
    c.sendall(b"in flight" * 1000)  # never read by the server
    time.sleep(0.05)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    time.sleep(0.05)
    s.close()


def half_close_with_reply(srv: socket.socket, port: int) -> None:
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    s, _ = srv.accept()
    s.settimeout(5)
    c.sendall(b"request")
    c.shutdown(socket.SHUT_WR)
    while s.recv(16):
        pass
    s.sendall(b"reply")
    s.close()
    assert c.recv(16) == b"reply"
    c.close()


SCENARIOS = [client_closes_first, server_closes_first, linger_zero_abort, half_close_with_reply]


def relative(packets: list, server_port: int) -> list[Row]:
    """Rows from scapy packets, numbered from each direction's SYN, as Wireshark does."""
    tcp_layer, ip_layer = scapy_all.TCP, scapy_all.IP
    base: dict[str, int] = {}
    rows = []
    for p in packets:
        if tcp_layer not in p or ip_layer not in p:
            continue
        ip, tcp = p[ip_layer], p[tcp_layer]
        side = "C>S" if tcp.dport == server_port else "S>C"
        other = "S>C" if side == "C>S" else "C>S"
        flags = tuple(sorted(FLAG_NAMES[f] for f in str(tcp.flags)))
        if "SYN" in flags:
            base[side] = tcp.seq
        seq = (tcp.seq - base.setdefault(side, tcp.seq)) % 2**32
        ack = (tcp.ack - base.setdefault(other, tcp.ack)) % 2**32 if "ACK" in flags else 0
        length = ip.len - ip.ihl * 4 - tcp.dataofs * 4
        rows.append((side, flags, seq, ack, length))
    return rows


def one_copy_each(packets: list) -> list:
    """Loopback shows a sniffer each frame twice, as it leaves and as it comes back in, with
    the same bytes; scapy keeps both. Keep the first of each pair."""
    unpaired: Counter[bytes] = Counter()
    kept = []
    for p in packets:
        raw = bytes(p)
        if unpaired[raw]:
            unpaired[raw] -= 1
        else:
            unpaired[raw] += 1
            kept.append(p)
    return kept


def in_namespace_or_root(test_id: str) -> bool:
    """True: run here. Otherwise run this test again in `unshare -rn` and check it passed."""
    if os.environ.get(IN_NS):
        subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
        return True
    if os.geteuid() == 0:
        return True
    out = subprocess.run(
        ["unshare", "-rn", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_id],
        env={**os.environ, IN_NS: "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert " passed" in out.stdout and "skipped" not in out.stdout, out.stdout
    return False


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_capture_matches_scapy(scenario, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if not in_namespace_or_root(request.node.nodeid):
        return
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    pcap = tmp_path / "run.pcapng"

    started = threading.Event()

    def ours_only(p) -> bool:
        tcp = p.getlayer(scapy_all.TCP)
        return tcp is not None and port in (tcp.sport, tcp.dport)

    sniffer = scapy_all.AsyncSniffer(iface="lo", lfilter=ours_only, started_callback=started.set)
    sniffer.start()
    assert started.wait(10), "scapy did not start sniffing"

    cmd = [str(tcplab.find_binary("tcplab")), "capture", "--port", str(port), "--json"]
    cmd += ["--pcap", str(pcap), "--duration", "60"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 10
        seen = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            seen.append(line)
            if "states from" in line or "no state changes" in line:
                break
        else:
            raise AssertionError(f"tcplab capture never armed: {seen}")
        scenario(srv, port)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        sniffer.stop()
        srv.close()
    assert proc.returncode == 0, err

    ours = [
        (
            "C>S" if r["dst"] == f"127.0.0.1:{port}" else "S>C",
            tuple(sorted(r["flags"])),
            r["seq"],
            r["ack"],
            r["len"],
        )
        for r in map(json.loads, out.splitlines())
    ]
    sniffed = one_copy_each(list(sniffer.results))
    theirs = relative(sniffed, port)
    from_file = relative(list(scapy_all.rdpcap(str(pcap))), port)
    assert ours, err
    assert ours == theirs
    assert from_file == ours
    if scenario is linger_zero_abort:
        assert any("RST" in r[1] for r in ours)
    if scenario is half_close_with_reply:
        fins = [r[0] for r in ours if "FIN" in r[1]]
        assert fins == ["C>S", "S>C"]
