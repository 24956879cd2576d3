"""Shared helpers: loopback sockets in known states, on ephemeral ports only, so the tests
run in parallel with each other and with anything else on the machine."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
import tcplab


def ss_rows(ports: list[int]) -> set[tuple[str, int, int, str, str]]:
    """`ss -tanH` filtered to these ports: (state, recv_q, send_q, local, remote)."""
    flt = " or ".join(f"sport = :{p} or dport = :{p}" for p in ports)
    out = subprocess.run(
        ["ss", "-tanH", f"( {flt} )"], capture_output=True, text=True, check=True
    ).stdout
    rows = set()
    for line in out.splitlines():
        f = line.split()
        if len(f) < 5:
            continue
        # ss prints port 0 (a listener's peer) as "*".
        local, remote = (a[:-2] + ":0" if a.endswith(":*") else a for a in f[3:5])
        rows.add((tcplab.state_name(f[0]), int(f[1]), int(f[2]), local, remote))
    return rows


def fmt(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def table_rows(table: tcplab.SocketTable) -> set[tuple[str, int, int, str, str]]:
    return {
        (
            s.state,
            s.recv_q,
            s.send_q,
            fmt(s.local_addr, s.local_port),
            fmt(s.remote_addr, s.remote_port),
        )
        for s in table
    }


class Lab:
    """Loopback sockets in chosen states; everything closed at the end of the test."""

    def __init__(self, stack: ExitStack, host: str = "127.0.0.1") -> None:
        self.stack = stack
        self.host = host
        self.srv = self.keep(socket.create_server((host, 0), family=self.family()))
        self.port: int = self.srv.getsockname()[1]

    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET

    def keep(self, s: socket.socket) -> socket.socket:
        self.stack.callback(s.close)
        return s

    def pair(self) -> tuple[socket.socket, socket.socket]:
        """A connected (client, accepted server child) pair."""
        c = self.keep(socket.create_connection((self.host, self.port)))
        a, _ = self.srv.accept()
        self.keep(a)
        return c, a


@pytest.fixture
def lab() -> Iterator[Lab]:
    with ExitStack() as stack:
        yield Lab(stack)


@pytest.fixture
def lab6() -> Iterator[Lab]:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    with ExitStack() as stack:
        try:
            yield Lab(stack, "::1")
        except OSError as e:  # pragma: no cover - depends on the machine
            pytest.skip(f"no IPv6 loopback: {e}")


needs_ss = pytest.mark.skipif(shutil.which("ss") is None, reason="ss (iproute2) not installed")
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the tracepoint backend needs root")
