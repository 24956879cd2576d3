"""tcplab.trace() observes the test's own Python socket code, with both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import tcplab
from conftest import Lab, root_only

BACKENDS = [
    "poll",
    pytest.param("tracepoint", marks=root_only),
    "auto",
]


def seen(tr: tcplab.Trace, state: str, n: int = 1) -> bool:
    """Wait until the tracer has reported `n` sockets entering `state`."""
    return tcplab.wait_for(lambda: sum(e.to_state == state for e in tr.events) >= n)


def client_closes_first(lab: Lab, tr: tcplab.Trace) -> tuple[int, int]:
    # Each step waits until the tracer saw the last one, as an instructor's cell would:
    # the poll backend sees a state only if it lasts longer than one poll (1 ms).
    c, a = lab.pair()
    cport = c.getsockname()[1]
    assert seen(tr, "ESTABLISHED", 2)
    c.close()
    assert a.recv(10) == b""  # the client's FIN
    assert seen(tr, "CLOSE_WAIT")
    a.close()
    assert tcplab.wait_for(lambda: any(e.to_state == "TIME_WAIT" for e in tr.events))
    return cport, lab.port


@pytest.mark.parametrize("backend", BACKENDS)
def test_python_connection_is_observed(lab: Lab, backend: str) -> None:
    with tcplab.trace(port=lab.port, backend=backend) as tr:
        assert tr.running
        cport, sport = client_closes_first(lab, tr)
    assert not tr.running
    t = tr.timeline
    assert t.backend == tr.backend
    assert tr.backend in ("poll", "tracepoint")
    if backend != "auto":
        assert tr.backend == backend
    assert tr.note
    seqs = t.sequences()
    client = seqs[f"127.0.0.1:{cport} -> 127.0.0.1:{sport}"]
    server = seqs[f"127.0.0.1:{sport} -> 127.0.0.1:{cport}"]
    # The active closer ends in TIME_WAIT after FIN_WAIT1/2; the passive closer goes
    # CLOSE_WAIT, LAST_ACK, CLOSE. With polling some of them are inferred, never skipped.
    assert client[-3:] == ["FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT"], client
    assert "ESTABLISHED" in client
    assert server[-3:] == ["CLOSE_WAIT", "LAST_ACK", "CLOSE"], server
    if tr.backend == "tracepoint":
        assert client[:3] == ["CLOSE", "SYN_SENT", "ESTABLISHED"], client
        sources = {e.source for e in t.events}
        assert "inferred" not in sources and "tracepoint" in sources
    else:
        sources = {e.source for e in t.events}
        assert sources <= {"poll", "inferred"}
    # Everything the Timeline offers works on the observed one.
    assert f"127.0.0.1:{cport} -> 127.0.0.1:{sport}" in t.ladder()
    assert "TIME_WAIT" in t.ladder()
    assert t.final_states()[f"127.0.0.1:{cport} -> 127.0.0.1:{sport}"] == "TIME_WAIT"
    last_t, last = t.state_counts()[-1]
    assert last == {"TIME_WAIT": 1} and last_t == t.events[-1].t_us
    assert [e.t_us for e in t] == sorted(e.t_us for e in t)
    back = tcplab.Timeline.from_json(t.to_json())
    assert back.sequences() == seqs
    assert "<table>" in t._repr_html_()
    # Jupyter draws an observed timeline as its ladder (states only: nothing was captured).
    svg = t._repr_svg_()
    assert svg is not None and svg.startswith("<svg")
    assert f"client 127.0.0.1:{cport}" in svg and "TIME_WAIT" in svg


def test_trace_to_pandas_and_plot(lab: Lab) -> None:
    pd = pytest.importorskip("pandas")
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    with tcplab.trace(port=lab.port, backend="poll") as tr:
        client_closes_first(lab, tr)
    df = tr.timeline.to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == len(tr.timeline)
    assert df["to_state"].iloc[-1] in ("TIME_WAIT", "CLOSE")
    # Proper dtypes: states are categories in the kernel's order, ports and pids integers.
    assert isinstance(df["to_state"].dtype, pd.CategoricalDtype)
    assert list(df["to_state"].cat.categories) == tcplab.states()
    assert str(df["local_port"].dtype) == "Int64" and str(df["pid"].dtype) == "Int64"
    # Swimlanes: one row per endpoint, a legend entry per state, the unit on the x axis.
    ax = tr.timeline.plot()
    _, labels = ax.get_legend_handles_labels()
    assert "TIME_WAIT" in labels and ax.get_xlabel() == "time (ms)"
    assert len(ax.get_yticks()) == len({e.endpoint for e in tr.timeline})
    # Counts: integer ticks from zero.
    from tcplab import plots

    ax = plots.counts(tr.timeline)
    ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    assert ax.get_ylim()[0] == 0 and all(float(t).is_integer() for t in ticks), ticks


def test_close_wait_leak_traced(lab: Lab) -> None:
    """A server that never closes: its child stays CLOSE_WAIT, the client FIN_WAIT2."""
    with tcplab.trace(port=lab.port, backend="poll") as tr:
        c, _a = lab.pair()
        c.close()
        assert tcplab.wait_for(lambda: any(e.to_state == "CLOSE_WAIT" for e in tr.events))
        assert tcplab.wait_for(lambda: any(e.to_state == "FIN_WAIT2" for e in tr.events))
    finals = set(tr.timeline.final_states().values())
    assert {"CLOSE_WAIT", "FIN_WAIT2"} <= finals


def test_trace_runs_without_the_gil(lab: Lab) -> None:
    """Pure-Python busy work inside the block does not starve the tracer."""
    with tcplab.trace(port=lab.port, backend="poll") as tr:
        _c, _a = lab.pair()
        total = 0
        for i in range(300_000):
            total += i
        assert tcplab.wait_for(lambda: len(tr.events) > 0)
    assert any(e.to_state == "ESTABLISHED" for e in tr.timeline)


def test_stop_returns_timeline_and_start_stop_api(lab: Lab) -> None:
    tr = tcplab.trace(port=[lab.port], backend="poll").start()
    lab.pair()
    assert tcplab.wait_for(lambda: len(tr.events) >= 2)
    t = tr.stop()
    assert len(t) == len(tr.timeline) >= 2
    assert tr.ports == [lab.port]
    assert "stopped" in repr(tr)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
def test_tracepoint_without_root_is_permission_error() -> None:
    code = textwrap.dedent(
        """
        import os
        import tcplab  # imported as root: the interpreter may live where nobody can read
        os.setgid(65534); os.setuid(65534)
        try:
            tcplab.trace(port=1, backend="tracepoint").start()
        except PermissionError as e:
            print("PermissionError:", e)
        tr = tcplab.trace(port=1, backend="auto").start()
        print("auto:", tr.backend)
        tr.stop()
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "PermissionError:" in out.stdout, out.stdout
    assert 'backend="poll"' in out.stdout
    assert "auto: poll" in out.stdout


@pytest.mark.skipif(os.geteuid() == 0, reason="as root the tracepoint is permitted")
def test_tracepoint_as_user_is_permission_error() -> None:
    with pytest.raises(PermissionError, match='backend="poll"'):
        tcplab.trace(port=1, backend="tracepoint").start()


QUICK_EXCHANGE = """
import encodings.idna, json, os, socket, time  # all loaded before the uid changes:
import tcplab  # the interpreter may live where nobody else can read
if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)
srv = socket.create_server(("127.0.0.1", 0))
port = srv.getsockname()[1]
clients = []
with tcplab.trace(port=port, backend="poll") as tr:
    for _ in range(5):
        c = socket.create_connection(("127.0.0.1", port))
        s, peer = srv.accept()
        clients.append(f"127.0.0.1:{peer[1]}")
        c.close()  # the client closes first...
        t = time.perf_counter()
        while time.perf_counter() - t < 0.0002:
            pass
        s.close()  # ...the server 0.2 ms later
    time.sleep(0.05)
srv.close()
ends = {}
for e in tr.timeline:
    if e.local_port == port and e.remote_port != 0:
        ends.setdefault(f"{e.remote_addr}:{e.remote_port}", []).append((e.to_state, e.source))
print(json.dumps({"uid": os.geteuid(), "clients": clients, "ends": ends,
                  "missed": tr.missed, "note": tr.note}))
"""


def test_an_unprivileged_trace_shows_every_server_end_or_says_what_it_missed() -> None:
    """Five loopback connections, the server closing 0.2 ms after the client: the server's
    ends live far less than one poll. As uid 65534, the trace shows each one (seen, or
    inferred from its client) or says how many connections may be missing."""
    out = subprocess.run(
        [sys.executable, "-c", QUICK_EXCHANGE], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["uid"] != 0
    missed = r["missed"]
    assert missed is not None, "the poll backend accounts for what it may have missed"
    shown = [c for c in r["clients"] if c in r["ends"]]
    assert len(shown) + missed["count"] >= len(r["clients"]), r
    if missed["count"]:
        assert "may be missing" in missed["why"] and "may be missing" in r["note"], r
    for c in shown:
        states = [s for s, _ in r["ends"][c]]
        assert states[-1] == "CLOSE" and "LAST_ACK" in states, (c, r["ends"][c])
