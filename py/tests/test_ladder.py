"""The kernel's ladder from Python: `Timeline.ladder_text()`, `ladder_svg()` and the SVG that
Jupyter shows, drawn from a timeline with segments (the JSON a lesson's report carries)."""

from __future__ import annotations

import json

import tcplab

C, S = "127.0.0.1:40000", "127.0.0.1:5000"


def event(t: int, local: str, remote: str, frm: str, to: str) -> dict:
    return {
        "t_us": t,
        "local": local,
        "remote": remote,
        "from": frm,
        "to": to,
        "source": "tracepoint",
    }


def segment(t: int, src: str, dst: str, flags: list[str], seq: int, ack: int) -> dict:
    return {
        "t_us": t,
        "src": src,
        "dst": dst,
        "flags": flags,
        "seq": seq,
        "ack": ack,
        "raw_seq": seq,
        "raw_ack": ack,
        "len": 0,
        "win": 512,
    }


def close_by_client() -> tcplab.Timeline:
    """The client closes first: FIN, ACK, FIN, ACK."""
    events = [
        event(100, C, S, "ESTABLISHED", "FIN_WAIT1"),
        event(110, S, C, "ESTABLISHED", "CLOSE_WAIT"),
        event(120, C, S, "FIN_WAIT1", "FIN_WAIT2"),
        event(200, S, C, "CLOSE_WAIT", "LAST_ACK"),
        event(210, S, C, "LAST_ACK", "CLOSE"),
        event(211, C, S, "FIN_WAIT2", "TIME_WAIT"),
    ]
    segments = [
        segment(101, C, S, ["FIN", "ACK"], 1, 1),
        segment(115, S, C, ["ACK"], 1, 2),
        segment(201, S, C, ["FIN", "ACK"], 1, 2),
        segment(205, C, S, ["ACK"], 2, 2),
    ]
    text = json.dumps({"events": events, "segments": segments})
    return tcplab.Timeline.from_json(text)


def test_ladder_text_draws_segments_and_states() -> None:
    text = close_by_client().ladder_text()
    lines = text.splitlines()
    assert "client 127.0.0.1:40000" in lines[0] and "server 127.0.0.1:5000" in lines[0]
    fin = next(line for line in lines if "FIN+ACK seq=1 ack=1" in line)
    assert "FIN_WAIT1" in fin and fin.rstrip().endswith(">")
    assert any("LAST_ACK" in line and "FIN+ACK seq=1 ack=2" in line for line in lines)
    assert "= TIME_WAIT (timer running)" in lines[-1]


def test_ladder_svg_and_jupyter() -> None:
    t = close_by_client()
    svg = t.ladder_svg()
    assert svg.startswith("<svg") and "FIN+ACK seq=1 ack=1" in svg
    assert t._repr_svg_() == svg
    # A listener alone has no connection to draw: Jupyter falls back to the table.
    lone = tcplab.Timeline.from_json(json.dumps([event(1, S, "0.0.0.0:0", "CLOSE", "LISTEN")]))
    assert lone._repr_svg_() is None
    assert lone.ladder_text().startswith("no connections")


def test_the_model_keeps_its_own_ladder() -> None:
    t = tcplab.model("abort")
    assert "RST seq=1001" in t.ladder_text()
    assert t.ladder_svg() == t._repr_svg_()
