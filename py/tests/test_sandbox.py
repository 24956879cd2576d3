"""tcplab.sandbox(fn) and tcplab.run_python(path): code traced and captured in a user +
network namespace of its own, so that a run without root sees both sides and every segment.
Run as uid 65534 when the tests are root (as on a hub), else as the current user."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tcplab


def close_both(port: int) -> str:
    """A server on a fixed port (the namespace is ours), one connection, client closes first."""
    srv = socket.create_server(("127.0.0.1", port))
    c = socket.create_connection(("127.0.0.1", port), timeout=5)
    a, peer = srv.accept()
    c.close()
    assert a.recv(1) == b""
    a.close()
    srv.close()
    return f"127.0.0.1:{peer[1]}"


def test_sandbox_shows_both_sides_and_every_segment() -> None:
    run = tcplab.sandbox(close_both, 5000)
    client = run.value
    assert run.namespace.startswith("user + network namespace")
    assert run.backend == "poll"
    finals = run.timeline.final_states()
    # Both ends of the connection, seen or inferred: the client's TIME_WAIT, the server's end.
    assert finals[f"{client} -> 127.0.0.1:5000"] == "TIME_WAIT", finals
    assert f"127.0.0.1:5000 -> {client}" in finals, finals
    df = run.segments
    assert list(df["flags"][:3]) == ["SYN", "SYN, ACK", "ACK"], df
    # The client's FIN, then the server's (its ACK of the first may ride with it), then the
    # client's last ACK.
    fins = df[df["flags"].str.contains("FIN")]
    assert list(fins["src"]) == [client, "127.0.0.1:5000"], df
    assert (df["src"].iloc[-1], df["flags"].iloc[-1]) == (client, "ACK"), df
    assert run.capture_stats is not None and run.capture_stats["kernel_drops"] == 0
    # A step the poll did not see is placed at the segment behind it: the server's
    # CLOSE_WAIT at the client's FIN, its LAST_ACK at its own FIN.
    server_end = {e.to_state: e for e in run.timeline if e.local_port == 5000 and e.remote_port}
    for state, row in (("CLOSE_WAIT", fins.iloc[0]), ("LAST_ACK", fins.iloc[1])):
        e = server_end[state]
        if e.source == "inferred":
            assert abs(e.t_ms - float(row["t_ms"])) < 1e-6, (state, e, df)


def test_nothing_of_the_host_is_seen_or_reachable() -> None:
    # A server of this process, on the host's lo, is not in the sandbox's network.
    host_srv = socket.create_server(("127.0.0.1", 0))
    port = host_srv.getsockname()[1]
    try:

        def try_connect() -> str:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            except ConnectionRefusedError:
                return "refused"
            return "connected"

        run = tcplab.sandbox(try_connect)
        assert run.value == "refused"
        # The trace saw no listener: the host's is not in the namespace.
        assert all(not e.endswith("0.0.0.0:0") for e in run.timeline.endpoints())
    finally:
        host_srv.close()


def test_the_function_s_exception_is_raised_here() -> None:
    def fails() -> None:
        raise ValueError("inside the sandbox")

    with pytest.raises(ValueError, match="inside the sandbox"):
        tcplab.sandbox(fails)


def test_a_slow_function_is_killed_with_its_namespace(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    def sleeps() -> None:
        pid_file.write_text(str(os.getpid()))
        time.sleep(30)

    with pytest.raises(TimeoutError, match="killed"):
        tcplab.sandbox(sleeps, timeout=1.0)
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists(), "the sandboxed child outlived the call"


def test_where_namespaces_are_refused_it_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # TCPLAB_NO_NETNS=1 makes the namespace step refuse, as a container's seccomp would.
    monkeypatch.setenv("TCPLAB_NO_NETNS", "1")
    with pytest.raises(PermissionError, match="TCPLAB_NO_NETNS"):
        tcplab.sandbox(lambda: None)


def test_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="function"):
        tcplab.sandbox(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        tcplab.sandbox(lambda: None, timeout=0)
    with pytest.raises(ValueError, match="65535"):
        tcplab.sandbox(lambda: None, port=70000)
    with pytest.raises(FileNotFoundError, match="no Python script"):
        tcplab.run_python("/nonexistent/script.py")


SCRIPT = """
import socket, sys
port = int(sys.argv[1])
srv = socket.create_server(("127.0.0.1", port))
c = socket.create_connection(("127.0.0.1", port)); a, _ = srv.accept()
a.close()  # the server closes first this time
c.close()
print("closed", port)
"""


def test_run_python_runs_a_script_traced_and_captured(tmp_path: Path) -> None:
    script = tmp_path / "close.py"
    script.write_text(SCRIPT)
    run = tcplab.run_python(script, "8080")
    assert (run.returncode, run.stdout) == (0, "closed 8080\n"), run.stderr
    df = run.segments
    fins = df[df["flags"] == "FIN, ACK"]
    assert list(fins["src"].str.endswith(":8080")) == [True, False], df
    script.write_text("raise SystemExit(3)")
    assert tcplab.run_python(script).returncode == 3
    script.write_text("raise ValueError('broken script')")
    run = tcplab.run_python(script)
    assert run.returncode == 1 and "ValueError: broken script" in run.stderr


QUICK_EXCHANGE = """
import encodings.idna, json, os, socket, time  # all loaded before the uid changes
import tcplab
if os.geteuid() == 0:
    os.setgid(65534)
    os.setuid(65534)

def five_quick_closes():
    srv = socket.create_server(("127.0.0.1", 7000))
    clients = []
    for _ in range(5):
        c = socket.create_connection(("127.0.0.1", 7000))
        s, peer = srv.accept()
        clients.append(f"127.0.0.1:{peer[1]}")
        c.close()  # the client closes first...
        t = time.perf_counter()
        while time.perf_counter() - t < 0.0002:
            pass
        s.close()  # ...the server 0.2 ms later
    srv.close()
    return clients

run = tcplab.sandbox(five_quick_closes)
segs = run.timeline.segments_to_dicts()
print(json.dumps({"uid": os.geteuid(), "clients": run.value, "segments": segs,
                  "finals": run.timeline.final_states(), "missed": run.missed}))
"""


def test_as_nobody_every_server_end_is_on_the_wire() -> None:
    """The acceptance case of the non-root trace (client closes, server 0.2 ms later, five
    times), in a sandbox as uid 65534: every server end's FIN is captured, and the trace
    shows each end or says what it missed."""
    out = subprocess.run(
        [sys.executable, "-c", QUICK_EXCHANGE], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["uid"] != 0
    for client in r["clients"]:
        fins = [
            s["src"]
            for s in r["segments"]
            if "FIN" in s["flags"] and client in (s["src"], s["dst"])
        ]
        assert fins == [client, "127.0.0.1:7000"], (client, r["segments"])
    shown = [c for c in r["clients"] if f"127.0.0.1:7000 -> {c}" in r["finals"]]
    assert len(shown) + r["missed"]["count"] >= 5, r
