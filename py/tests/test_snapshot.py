"""tcplab.snapshot() against `ss -tanH`, on sockets each test makes itself."""

from __future__ import annotations

import os
import socket

import pytest
import tcplab
from conftest import Lab, needs_ss, ss_rows, table_rows


def five_states(lab: Lab) -> None:
    """LISTEN, ESTABLISHED (with unread bytes), CLOSE_WAIT/FIN_WAIT2, TIME_WAIT."""
    c1, _a1 = lab.pair()
    c1.sendall(b"hello")  # stays unread: Recv-Q 5 on the server child
    c2, _a2 = lab.pair()
    c2.close()  # client FIN_WAIT2, server CLOSE_WAIT (never closed)
    c3, a3 = lab.pair()
    a3.close()  # server closes first: TIME_WAIT on the server side
    c3.recv(1)
    c3.close()
    ok = tcplab.wait_for(
        lambda: {"CLOSE_WAIT", "TIME_WAIT", "FIN_WAIT2"} <= set(tcplab.snapshot(lab.port).counts())
    )
    assert ok, tcplab.snapshot(lab.port)


@needs_ss
@pytest.mark.parametrize("fixture", ["lab", "lab6"])
def test_rows_equal_ss(fixture: str, request: pytest.FixtureRequest) -> None:
    lab: Lab = request.getfixturevalue(fixture)
    five_states(lab)
    table = tcplab.snapshot(port=lab.port)
    assert table_rows(table) == ss_rows([lab.port])
    counts = table.counts()
    assert counts["LISTEN"] == 1
    assert counts["ESTABLISHED"] == 2  # c1 and its server child
    assert counts["CLOSE_WAIT"] == 1
    assert counts["FIN_WAIT2"] == 1
    assert counts["TIME_WAIT"] == 1


def test_socket_attributes(lab: Lab) -> None:
    c, _a = lab.pair()
    c.sendall(b"abc")
    tcplab.wait_for(lambda: any(s.recv_q == 3 for s in tcplab.snapshot(lab.port)))
    rows = {(s.local_port, s.remote_port): s for s in tcplab.snapshot(port=lab.port)}
    child = rows[(lab.port, c.getsockname()[1])]
    assert child.state == "ESTABLISHED"
    assert child.recv_q == 3
    assert child.local_addr == "127.0.0.1"
    assert child.uid == os.geteuid()
    assert child.inode > 0
    assert child.pids is None
    assert child.to_dict()["recv_q"] == 3
    assert "ESTABLISHED" in repr(child)


def test_time_wait_timer(lab: Lab) -> None:
    c, a = lab.pair()
    a.close()
    c.recv(1)
    c.close()
    assert tcplab.wait_for(lambda: len(tcplab.snapshot(lab.port, state="time-wait")) == 1)
    (tw,) = tcplab.snapshot(lab.port, state="TIME-WAIT")
    assert tw.timer == "timewait"
    assert tw.timer_ms is not None and 50_000 < tw.timer_ms <= 60_000
    assert tw.inode == 0


def test_state_filter_any_spelling(lab: Lab) -> None:
    five_states(lab)
    for spelling in ["CLOSE_WAIT", "close-wait", "Close_Wait", "CLOSE-WAIT"]:
        assert tcplab.snapshot(lab.port, state=spelling).counts() == {"CLOSE_WAIT": 1}
    both = tcplab.snapshot(lab.port, state=["fin-wait-2", "TIME-WAIT"]).counts()
    assert both == {"FIN_WAIT2": 1, "TIME_WAIT": 1}
    assert tcplab.snapshot(lab.port, state=("listening",)).counts() == {"LISTEN": 1}


def test_several_ports(lab: Lab) -> None:
    other = socket.create_server(("127.0.0.1", 0))
    try:
        p2 = other.getsockname()[1]
        assert len(tcplab.snapshot(port=[lab.port, p2], state="listen")) == 2
        assert len(tcplab.snapshot(port={p2}, state="listen")) == 1
    finally:
        other.close()


def test_sequence_protocol(lab: Lab) -> None:
    for _ in range(3):
        lab.pair()
    t = tcplab.snapshot(port=lab.port)
    assert len(t) == 7
    assert len(list(t)) == 7
    assert t[0] == t[0] and t[-1] == list(t)[-1]
    assert len(t[1:3]) == 2 and isinstance(t[1:3], tcplab.SocketTable)
    assert len(t[::-1]) == 7
    with pytest.raises(IndexError):
        t[7]
    with pytest.raises(IndexError):
        t[-8]
    with pytest.raises(IndexError):
        t[10**30]
    with pytest.raises(TypeError):
        t["0"]  # type: ignore[call-overload]
    assert t.method in ("sock_diag", "/proc/net/tcp")
    assert "7 sockets" in repr(t)
    assert len(t.to_dicts()) == 7


def test_html(lab: Lab) -> None:
    lab.pair()
    h = tcplab.snapshot(port=lab.port)._repr_html_()
    assert h.startswith("<p><b>3 TCP sockets</b>")
    assert "<table>" in h and "ESTABLISHED" in h


def test_pids(lab: Lab) -> None:
    lab.pair()
    t = tcplab.snapshot(port=lab.port, pids=True)
    assert all(s.pids == [os.getpid()] for s in t), list(t)


def test_proc_method_agrees(lab: Lab) -> None:
    five_states(lab)

    # /proc/net/tcp reports 0 in a listener's tx_queue where sock_diag gives the backlog.
    def key(t: tcplab.SocketTable) -> set[tuple[str, int, str, str]]:
        return {(s, r, lo, re) for (s, r, _q, lo, re) in table_rows(t)}

    diag = tcplab.snapshot(lab.port, method="sock_diag")
    proc = tcplab.snapshot(lab.port, method="proc")
    assert diag.method == "sock_diag" and proc.method == "/proc/net/tcp"
    assert key(diag) == key(proc)


def test_to_pandas(lab: Lab) -> None:
    pd = pytest.importorskip("pandas")
    five_states(lab)
    t = tcplab.snapshot(port=lab.port)
    df = t.to_pandas()
    assert isinstance(df, pd.DataFrame)
    assert len(df) == len(t)
    assert list(df.columns) == [
        "state",
        "local_addr",
        "local_port",
        "remote_addr",
        "remote_port",
        "timer_ms",
        "recv_q",
        "send_q",
        "uid",
        "inode",
    ]
    assert df["state"].value_counts()[lambda s: s > 0].to_dict() == t.counts()
    for i, s in enumerate(t):
        row = df.iloc[i]
        assert row["state"] == s.state
        assert row["local_port"] == s.local_port and row["remote_port"] == s.remote_port
        assert row["local_addr"] == s.local_addr and row["recv_q"] == s.recv_q
        assert row["inode"] == s.inode
        assert (pd.isna(row["timer_ms"]) and s.timer_ms is None) or row["timer_ms"] == s.timer_ms
    with_pids = tcplab.snapshot(port=lab.port, pids=True).to_pandas()
    assert "pids" in with_pids.columns


def test_gil_released_during_dump(lab: Lab) -> None:
    import threading

    ticks = 0
    stop = threading.Event()

    def spin() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    th = threading.Thread(target=spin)
    th.start()
    try:
        for _ in range(20):
            tcplab.snapshot()
    finally:
        stop.set()
        th.join()
    assert ticks > 0
