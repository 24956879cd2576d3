"""The model from Python: scenarios, the step-through Connection, the state diagram."""

from __future__ import annotations

import pytest
import tcplab

CLIENT = "10.0.0.1:40000 -> 10.0.0.2:80"
SERVER = "10.0.0.2:80 -> 10.0.0.1:40000"


def test_client_close() -> None:
    t = tcplab.model("client-close")
    seqs = t.sequences()
    assert seqs[CLIENT] == [
        "CLOSE",
        "SYN_SENT",
        "ESTABLISHED",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
    ]
    assert seqs[SERVER][-3:] == ["CLOSE_WAIT", "LAST_ACK", "CLOSE"]
    assert {e.source for e in t} == {"model"}
    assert {e.side for e in t} == {"client", "server"}
    assert "FIN" in t.ladder() and "TIME_WAIT" in t.ladder()
    svg = t._repr_svg_()
    assert svg is not None and svg.startswith("<svg")
    assert t.backend is None and t.note


def test_every_scenario_runs() -> None:
    names = [n for n, _ in tcplab.scenarios()]
    assert "close-wait-leak" in names and len(names) == 8
    for n in names:
        t = tcplab.model(n)
        assert len(t) > 0, n
        assert tcplab.model(n, rfc=True).ladder()


def test_close_wait_leak_and_server_close() -> None:
    finals = tcplab.model("close-wait-leak").final_states()
    # The orphaned FIN_WAIT2 expires (fin_timeout); CLOSE_WAIT stays until the program closes.
    assert finals == {CLIENT: "CLOSE", SERVER: "CLOSE_WAIT"}
    assert tcplab.model("server-close").sequences()[SERVER][-2] == "TIME_WAIT"


def test_unknown_scenario() -> None:
    with pytest.raises(ValueError, match="valid scenarios: client-close"):
        tcplab.model("client-closes-last")
    with pytest.raises(TypeError, match="scenario must be a str"):
        tcplab.model(3)  # type: ignore[arg-type]


def test_connection_step_through() -> None:
    c = tcplab.Connection()
    assert (c.client, c.server) == ("ESTABLISHED", "ESTABLISHED")
    assert c.pending == []
    c.close("client")
    assert c.client == "FIN_WAIT1" and len(c.pending) == 1
    assert c.pending[0].startswith("client -> server: FIN")
    c.deliver()
    assert (c.client, c.server) == ("FIN_WAIT1", "CLOSE_WAIT")
    c.deliver()
    assert c.client == "FIN_WAIT2"
    c.close("server")
    assert c.server == "LAST_ACK"
    c.deliver_all()
    assert (c.client, c.server) == ("TIME_WAIT", "CLOSE")
    c.expire("client")
    assert c.client == "CLOSE"
    seqs = c.timeline.sequences()
    assert seqs[CLIENT][-3:] == ["FIN_WAIT2", "TIME_WAIT", "CLOSE"]
    assert len(c.log) > 5


def test_connection_from_listen_and_abort() -> None:
    c = tcplab.Connection(established=False)
    assert (c.client, c.server) == ("CLOSE", "LISTEN")
    c.call("client", "connect")
    c.deliver_all()
    assert (c.client, c.server) == ("ESTABLISHED", "ESTABLISHED")
    c.abort("server")
    c.deliver()
    assert (c.client, c.server) == ("CLOSE", "CLOSE")


def test_connection_drop_and_errors() -> None:
    c = tcplab.Connection()
    with pytest.raises(tcplab.TcplabError, match="no segment in flight"):
        c.deliver()
    with pytest.raises(tcplab.TcplabError, match="no timer"):
        c.expire("client")
    with pytest.raises(ValueError, match='valid: "client", "server"'):
        c.close("middle")
    with pytest.raises(TypeError, match="side must be a str"):
        c.close(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown call"):
        c.call("client", "fork")
    c.shutdown("client")
    assert "dropped" in c.drop()
    assert c.pending == []


def test_diagram() -> None:
    d = tcplab.diagram()
    assert d._repr_svg_().startswith("<svg")
    assert "TIME_WAIT" in d.text and "digraph" in d.dot


def test_diagram_profiles_differ_on_time_wait_reopening() -> None:
    # Linux lets a newer SYN reopen TIME_WAIT (RFC 9293 3.6.1 MAY-2); the RFC profile answers
    # it with a challenge ACK, so only the Linux table has that edge.
    def reopens(text: str) -> bool:
        return any(
            line.split()[:3] == ["TIME_WAIT", "->", "SYN_RECV"] for line in text.splitlines()
        )

    assert reopens(tcplab.diagram().text)
    assert not reopens(tcplab.diagram(rfc=True).text)
    # In SYN_SENT only a RST that acknowledges the SYN refuses the connection.
    syn_sent_rst = [
        line
        for line in tcplab.diagram().text.splitlines()
        if line.startswith("SYN_SENT") and "RST" in line
    ]
    assert len(syn_sent_rst) == 1 and "rcv RST+ACK" in syn_sent_rst[0]


def _events(t: tcplab.Timeline) -> list[tuple[str | None, str, str, str | None]]:
    return [(e.side, e.from_state, e.to_state, e.segment) for e in t]


@pytest.mark.parametrize("rfc", [False, True])
def test_connection_replays_every_scenario(rfc: bool) -> None:
    # The step-through and the scenario run on one simulator: replaying a scenario's steps by
    # hand gives the same events, segment included, in the same order.
    for name, _ in tcplab.scenarios():
        steps = tcplab.scenario_steps(name, rfc=rfc)
        assert steps[0] == ("listen", "server"), name
        c = tcplab.Connection(established=False, rfc=rfc, network=name)
        for action, side in steps[1:]:
            if action == "deliver":
                c.deliver()
            elif action == "expire":
                c.expire(side)
            else:
                c.call(side, action)
        assert _events(c.timeline) == _events(tcplab.model(name, rfc=rfc)), name
        assert c.pending == [], name


def test_connection_segment_is_the_one_sent_on_a_call() -> None:
    c = tcplab.Connection()
    c.close("client")
    c.abort("server")
    events = list(c.timeline)[-2:]
    assert [(e.side, e.to_state, e.segment) for e in events] == [
        ("client", "FIN_WAIT1", "FIN+ACK"),
        ("server", "CLOSE", "RST"),
    ]
