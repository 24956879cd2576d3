"""tcplab.capture(), trace(capture=True) and Timeline.segments: the segments of the test's
own Python sockets, as a DataFrame with proper dtypes, on the tracer's clock."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tcplab

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="capture on the host's lo needs root (CAP_NET_RAW)"
)


@pytest.fixture
def server() -> Iterator[socket.socket]:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(5)
    yield srv
    srv.close()


def exchange(srv: socket.socket) -> None:
    """One connection: 5 bytes from the client, which then closes first; the server's end
    reads EOF and closes."""
    c = socket.create_connection(srv.getsockname(), timeout=5)
    a, _ = srv.accept()
    c.sendall(b"hello")
    assert a.recv(5) == b"hello"
    c.close()
    assert a.recv(5) == b""
    a.close()


@needs_root
def test_capture_sees_the_handshake_data_and_both_fins(server: socket.socket) -> None:
    port = server.getsockname()[1]
    with tcplab.capture(port=port) as cap:
        exchange(server)
        # Wait for the client's last ACK, the one after the server's FIN.
        assert tcplab.wait_for(lambda: (cap.segments["flags"] == "FIN, ACK").sum() == 2)
        assert tcplab.wait_for(lambda: cap.segments["flags"].iloc[-1] == "ACK")
    df = cap.segments
    client = df["src"][0]
    assert list(df["flags"][:3]) == ["SYN", "SYN, ACK", "ACK"]
    data = df[df["len"] > 0]
    assert (list(data["src"]), list(data["len"]), list(data["flags"])) == (
        [client],
        [5],
        ["PSH, ACK"],
    ), df
    # The client's FIN, then the server's (its ACK of the first is a segment of its own, or
    # rides on its FIN when it closed within the delayed-ACK time); the client's ACK last.
    fins = df[df["flags"].str.contains("FIN")]
    assert list(fins["src"]) == [client, f"127.0.0.1:{port}"], df
    # Relative numbers: the client's FIN follows its 5 bytes.
    assert int(fins["seq"].iloc[0]) == 6
    assert (df["src"].iloc[-1], df["flags"].iloc[-1]) == (client, "ACK"), df
    assert not df["flags"].str.contains("RST").any()
    assert int(df.mss[0]) > 0 and df.mss[2:].isna().all()
    assert cap.stats is not None and cap.stats["kernel_drops"] == 0
    assert cap.stats["segments"] == len(df)
    assert len(cap.timeline.segments) == len(df)


@needs_root
def test_trace_with_capture_puts_segments_beside_states(server: socket.socket) -> None:
    port = server.getsockname()[1]
    with tcplab.trace(port=port, capture=True) as tr:
        exchange(server)
        tcplab.wait_for(lambda: "TIME_WAIT" in str(tr.events))
    t = tr.timeline
    df = t.segments
    assert len(df) in (8, 9), df  # the server's ACK of the client's FIN, alone or not
    # One clock: the server's CLOSE_WAIT comes after the client's FIN, within 100 ms.
    fin_ms = float(df[df["flags"] == "FIN, ACK"].t_ms.iloc[0])
    cw = [e.t_ms for e in t if e.to_state == "CLOSE_WAIT"]
    assert len(cw) == 1 and fin_ms - 1.0 <= cw[0] <= fin_ms + 100, (fin_ms, cw)
    assert tr.capture_stats is not None and tr.capture_stats["kernel_drops"] == 0
    # The whole timeline, segments included, goes through JSON and back.
    back = tcplab.Timeline.from_json(t.to_json_object())
    assert len(back) == len(t) and back.segments_to_dicts() == t.segments_to_dicts()


def test_segments_frame_has_proper_dtypes_even_when_empty() -> None:
    df = tcplab.model("client-close").segments
    assert len(df) == 0
    assert list(df.columns) == [
        "t_ms",
        "src",
        "dst",
        "flags",
        "seq",
        "ack",
        "len",
        "win",
        "raw_seq",
        "raw_ack",
        "mss",
        "wscale",
    ]
    assert str(df.dtypes["t_ms"]) == "float64"
    assert str(df.dtypes["flags"]) == "string"
    assert str(df.dtypes["seq"]) == "int64"
    assert str(df.dtypes["mss"]) == "Int64"


def test_segments_from_a_report_json() -> None:
    seg = {
        "t_us": 1500,
        "src": "127.0.0.1:40000",
        "dst": "127.0.0.1:5000",
        "flags": ["FIN", "ACK"],
        "seq": 1,
        "ack": 1,
        "raw_seq": 10,
        "raw_ack": 20,
        "len": 0,
        "win": 512,
    }
    t = tcplab.Timeline.from_json(json.dumps({"events": [], "segments": [seg]}))
    df = t.segments
    assert list(df["flags"]) == ["FIN, ACK"] and float(df.t_ms[0]) == 1.5
    assert t.segments_to_dicts()[0]["flags"] == ["FIN", "ACK"]


UNPRIVILEGED_CAPTURE = """
import os, tcplab
if os.geteuid() == 0:
    os.setgid(65534); os.setuid(65534)
for start in (lambda: tcplab.capture(port=9).start(),
              lambda: tcplab.trace(port=9, backend="poll", capture=True).start()):
    try:
        start()
        print("started")
    except PermissionError as e:
        print("PermissionError:", e)
"""


def test_capture_without_cap_net_raw_says_what_works() -> None:
    out = subprocess.run(
        [sys.executable, "-c", UNPRIVILEGED_CAPTURE], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2, out.stdout
    for line in lines:
        assert line.startswith("PermissionError:"), line
        assert "tcplab.sandbox(fn)" in line and "CAP_NET_RAW" in line, line


def test_capture_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="port"):
        tcplab.capture(port="80")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="65535"):
        tcplab.capture(port=70000)
    cap = tcplab.capture(port=9)
    with pytest.raises(tcplab.TcplabError, match="never started"):
        cap.stop()
    with pytest.raises(tcplab.TcplabError, match="not stopped"):
        _ = cap.timeline
    assert cap.stats is None and not cap.running and cap.ports == [9]


def test_lesson_runs_carry_segments(tmp_path: Path) -> None:
    # Lesson 07 is about the wire: it captures on every run (in a namespace of its own
    # without root), and its RSTs are in the segments.
    r = tcplab.run("07", variant="leak")
    assert r.facts["wire"] is True, r.stderr
    assert r.segments["flags"].str.contains("RST").sum() == 2, r.segments
    # Any lesson with pcap: the file, and the same segments in the run.
    pcap = tmp_path / "03.pcapng"
    r = tcplab.run("03", variant="leak", connections=2, pcap=pcap)
    assert pcap.stat().st_size > 0
    fins_to_server = r.segments[
        r.segments["flags"].str.contains("FIN")
        & r.segments["dst"].str.endswith(f":{r.server_port}")
    ]
    assert len(fins_to_server) == 2
    assert len(tcplab.run("03", variant="leak", connections=2).segments) == 0
