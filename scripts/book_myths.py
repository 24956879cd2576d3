#!/usr/bin/env python3
"""Check the claims of the book's "Myths, checked on a real kernel" chapter on this machine.

Every check runs over loopback with the Python standard library and reads the result back from
the kernel with `ss` (iproute2), so what it prints is what this kernel did, not what a blog
said. Servers bind 127.0.0.1:0 (a free port), so checks never collide with anything else.

Checks that change a sysctl, take the loopback device down or send raw packets run inside a
private network namespace (`unshare -n`, needs root): the sysctls they set (tcp_fin_timeout,
ip_local_port_range, tcp_tw_reuse, tcp_abort_on_overflow) belong to that namespace, so the
host's settings are never touched. Without root those checks are skipped and say so.

Each check has a name (the function name, printed after the number) so that the book's claims
ledger, book/src/reference/evidence.md, can point at it; py/tests/test_evidence.py fails when
the ledger names a check this script no longer has.

The book includes this script's output, recorded with:

    python3 scripts/book_myths.py > book/src/generated/myths.txt

Left out on purpose: anything slower than a few seconds per check (it never waits out a 60 s
TIME_WAIT; the SYN retransmission check is the longest, about 7.5 s) and anything that needs a
second machine.
"""

from __future__ import annotations

import errno
import os
import platform
import re
import select
import socket
import struct
import subprocess
import sys
import time

LOOPBACK = "127.0.0.1"


# ---------------------------------------------------------------------------------------------
# Small helpers: sockets and the kernel's view through ss
# ---------------------------------------------------------------------------------------------


def listener(reuseaddr: bool = False, reuseport: bool = False, port: int = 0, backlog: int = 16):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if reuseaddr:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuseport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind((LOOPBACK, port))
    s.listen(backlog)
    return s


def pair(lst: socket.socket):
    """Connect a client to `lst` and accept it: (client, server side)."""
    c = socket.create_connection(lst.getsockname(), timeout=3)
    s, _ = lst.accept()
    s.settimeout(3)
    return c, s


def set_linger(s: socket.socket, on: bool, seconds: int) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", int(on), seconds))


def ss(port: int, state: str = "all") -> list[dict]:
    """Rows of `ss -tanoH state STATE ( sport = :PORT or dport = :PORT )`."""
    out = subprocess.run(
        ["ss", "-tanoH", "state", state, f"( sport = :{port} or dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        f = line.split()
        if not f:
            continue
        if state != "all":
            f.insert(0, state.upper())
        timer = re.search(r"timer:\((\w+),([^,]+),", line)
        rows.append(
            {
                "state": f[0],
                "recvq": int(f[1]),
                "local": f[3],
                "peer": f[4],
                "timer": timer.group(1) if timer else None,
                "left": timer.group(2) if timer else None,
            }
        )
    return rows


def side(rows: list[dict], port: int) -> str:
    """'server TIME-WAIT, client ...' : who holds which state, by the lesson's server port."""
    parts = []
    for r in rows:
        who = "server" if r["local"].endswith(f":{port}") else "client"
        t = f" (timer {r['timer']} {r['left']})" if r["timer"] else " (no timer)"
        parts.append(f"{who} {r['state']}{t}")
    return ", ".join(sorted(parts)) or "no sockets"


def wait_for(port: int, pred, timeout: float = 3.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        rows = ss(port)
        if pred(rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.01)


def seconds(left: str | None) -> float:
    """ss (iproute2 6.1) prints timers like '1min', '59sec', '500ms' and '4.980ms' (which means
    4 s 980 ms)."""
    if not left:
        return float("nan")
    m = re.fullmatch(r"(?:(\d+)min)?(?:(\d+)sec)?(?:(\d+)\.)?(?:(\d+)ms)?", left)
    if not m:
        return float("nan")
    mins, secs, secs_dot, ms = (int(g) if g else 0 for g in m.groups())
    return mins * 60 + secs + secs_dot + ms / 1000


def errname(e: OSError) -> str:
    return errno.errorcode.get(e.errno or 0, str(e.errno))


def head(n: int | str, claim: str) -> None:
    """The check's number, its name (the calling function, which the claims ledger cites) and
    the claim it tests."""
    name = sys._getframe(1).f_code.co_name
    print(f"\n[{n}] {name}\n    myth:    {claim}")


def ipv4_frames(cap: socket.socket, deadline: float):
    """Yield (IPv4 packet, its header length) for each frame an AF_PACKET socket on `lo`
    receives until `deadline` (monotonic), one copy each: loopback shows every frame twice,
    outgoing and incoming, and the outgoing copy is skipped."""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([cap], [], [], 0.1)
        if not ready:
            continue
        frame, addr = cap.recvfrom(65535)
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        ip = frame[14:]
        yield ip, (ip[0] & 15) * 4


def seen(text: str) -> None:
    print(f"    seen:    {text}")


def verdict(text: str) -> None:
    print(f"    verdict: {text}")


def counted(rows: list[dict], state: str) -> int:
    return sum(1 for r in rows if r["state"] == state)


# ---------------------------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------------------------


def time_wait_is_240s() -> None:
    head(1, "TIME_WAIT lasts 240 seconds (4 minutes)")
    lst = listener()
    port = lst.getsockname()[1]
    c, s = pair(lst)
    c.close()  # the client closes first: it is the active closer
    s.recv(1)  # EOF
    s.close()
    rows = wait_for(port, lambda rs: counted(rs, "TIME-WAIT") == 1)
    tw = [r for r in rows if r["state"] == "TIME-WAIT"]
    seen(f"client closes first, server closes on EOF -> {side(rows, port)}")
    if tw:
        verdict(
            f"false on Linux: the timer starts at 60 s ({seconds(tw[0]['left']):.0f} s left "
            "when read); 240 s is the Windows default (TcpTimedWaitDelay)"
        )
    lst.close()


def linger_off_avoids_time_wait() -> None:
    head(2, "turning SO_LINGER off avoids TIME_WAIT")
    lst = listener()
    port = lst.getsockname()[1]
    for label, on, secs in [
        ("SO_LINGER off (the default)", False, 0),
        ("SO_LINGER on, 5 s", True, 5),
        ("SO_LINGER on, 0 s", True, 0),
    ]:
        c, s = pair(lst)
        set_linger(c, on, secs)
        c.sendall(b"x" * 100)
        got = s.recv(100)
        cport = c.getsockname()[1]
        c.close()
        try:
            rest = s.recv(100)
            peer = "EOF (read() == 0)" if rest == b"" else f"{len(rest)} more bytes"
        except OSError as e:
            peer = errname(e)
        s.close()  # the server closes too, on EOF or error
        time.sleep(0.05)
        mine = [r for r in ss(port) if r["local"].endswith(f":{cport}")]
        states = ", ".join(r["state"] for r in mine) or "no socket left"
        seen(
            f"{label}: server read {len(got)} bytes, then {peer}; once both closed, "
            f"the client's port shows: {states}"
        )
    verdict(
        "false: with linger off or a non-zero linger the close is graceful and the closer keeps "
        "TIME_WAIT; only linger on with timeout 0 skips it, by sending RST (the peer reads "
        "ECONNRESET)"
    )
    lst.close()


def linger_zero_discards_data() -> None:
    head(3, "SO_LINGER {on, 0} is a harmless way to close fast")
    lst = listener()
    c, s = pair(lst)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.setblocking(False)
    sent = 0
    chunk = b"y" * 65536
    try:
        while sent < 64 * 1024 * 1024:
            sent += c.send(chunk)
    except BlockingIOError:
        pass
    set_linger(c, True, 0)
    c.close()
    got = 0
    ending = "EOF"
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += len(b)
    except OSError as e:
        ending = errname(e)
    seen(
        f"client queued {sent} bytes (send() accepted them), then close() with linger 0; "
        f"server read {got} bytes, then {ending}"
    )
    verdict(
        f"false: {sent - got} bytes the program had successfully sent were thrown away, and the "
        "peer got a reset instead of an end of stream"
    )
    s.close()
    lst.close()


def unread_data_rst() -> None:
    head(4, "close() always sends FIN")
    lst = listener()
    c, s = pair(lst)
    c.sendall(b"request the server never reads\n")
    time.sleep(0.05)
    s.close()  # unread bytes in the receive buffer
    try:
        data = c.recv(100)
        what = "EOF" if data == b"" else f"{len(data)} bytes"
    except OSError as e:
        what = errname(e)
    seen(f"server close()s with unread bytes in its receive buffer; client's read(): {what}")
    verdict("false: close() with unread data sends RST, not FIN (RFC 2525 section 2.17)")
    c.close()
    lst.close()


def reuseaddr_two_listeners() -> None:
    head(5, "SO_REUSEADDR lets two servers listen on one port")
    a = listener(reuseaddr=True)
    port = a.getsockname()[1]
    try:
        b = listener(reuseaddr=True, port=port)
        seen("second listener with SO_REUSEADDR: listening")
        b.close()
    except OSError as e:
        seen(f"second listener with SO_REUSEADDR on the same port: bind() fails with {errname(e)}")
    a.close()
    a = listener(reuseport=True)
    port = a.getsockname()[1]
    try:
        b = listener(reuseport=True, port=port)
        seen("two listeners with SO_REUSEPORT (same user) on the same port: both listening")
        b.close()
    except OSError as e:
        seen(f"second listener with SO_REUSEPORT: {errname(e)}")
    a.close()
    verdict(
        "false on Linux: SO_REUSEADDR only lets bind() ignore sockets that are not listening "
        "(TIME_WAIT ones); sharing a port between live listeners is SO_REUSEPORT"
    )


def restart(old_reuse: bool, new_reuse: bool) -> str:
    lst = listener(reuseaddr=old_reuse)
    port = lst.getsockname()[1]
    c, s = pair(lst)
    s.close()  # the server closes first: TIME_WAIT lands on the server's port
    c.recv(1)
    c.close()
    lst.close()
    rows = wait_for(port, lambda rs: counted(rs, "TIME-WAIT") == 1)
    tw = side(rows, port)
    try:
        again = listener(reuseaddr=new_reuse, port=port)
        again.close()
        result = "bind() succeeds"
    except OSError as e:
        result = f"bind() fails with {errname(e)}"
    return f"{tw}; restart: {result}"


def reuseaddr_unsafe() -> None:
    head(6, "port reuse (SO_REUSEADDR) is unsafe and should be avoided")
    seen(f"old and new listener without SO_REUSEADDR: {restart(False, False)}")
    seen(f"old and new listener with SO_REUSEADDR:    {restart(True, True)}")
    seen(f"old without, new with SO_REUSEADDR:        {restart(False, True)}")
    recycle = os.path.exists("/proc/sys/net/ipv4/tcp_tw_recycle")
    seen(f"/proc/sys/net/ipv4/tcp_tw_recycle exists on this kernel: {'yes' if recycle else 'no'}")
    verdict(
        "false: SO_REUSEADDR is how a server restarts while its old connections sit in "
        "TIME_WAIT (set it on every listener: the TIME_WAIT socket inherits the old "
        "listener's flag); the knob that broke connections (behind NAT) was tcp_tw_recycle, "
        "removed in Linux 4.12"
    )


def time_wait_is_a_leak() -> None:
    head(7, "TIME_WAIT is a leak in your program")
    lst = listener()
    port = lst.getsockname()[1]
    before = len(os.listdir("/proc/self/fd"))
    n = 20
    for _ in range(n):
        c, s = pair(lst)
        c.close()
        s.recv(1)
        s.close()
    rows = wait_for(port, lambda rs: counted(rs, "TIME-WAIT") == n)
    after = len(os.listdir("/proc/self/fd"))
    seen(
        f"{n} connections closed client-first: {counted(rows, 'TIME-WAIT')} TIME-WAIT sockets; "
        f"open file descriptors of this process before: {before}, after: {after}"
    )
    lst.close()
    lst = listener()
    port = lst.getsockname()[1]
    kept = []
    for _ in range(n):
        c, s = pair(lst)
        c.close()
        kept.append(s)  # the leak: never closed after the peer's FIN
    rows = wait_for(port, lambda rs: counted(rs, "CLOSE-WAIT") == n)
    cw = [r for r in rows if r["state"] == "CLOSE-WAIT"]
    with_fds = len(os.listdir("/proc/self/fd"))
    timers = {r["timer"] for r in cw}
    seen(
        f"{n} connections the server never closes: {len(cw)} CLOSE-WAIT sockets, timers "
        f"{sorted(str(t) for t in timers)}; open file descriptors now: {with_fds}"
    )
    verdict(
        "false: TIME_WAIT holds no file descriptor and ends by itself; CLOSE_WAIT is the leak "
        "(one descriptor each, and no timer of its own: only the program's close() moves it on; "
        "check 11 shows what else can end it)"
    )
    for s in kept:
        s.close()
    lst.close()


def accept_queue() -> None:
    head(8, "connect() succeeds only once the server calls accept()")
    lst = listener(backlog=2)
    port = lst.getsockname()[1]
    clients = []
    results = []
    for _ in range(5):
        c = socket.socket()
        c.settimeout(0.3)
        try:
            c.connect((LOOPBACK, port))
            results.append("connected")
        except OSError as e:
            results.append(type(e).__name__ if not e.errno else errname(e))
        clients.append(c)
    rows = ss(port)
    lrow = [r for r in rows if r["state"] == "LISTEN"]
    seen(
        f"listen(backlog=2), never accept(), 5 clients: {', '.join(results)}; listener "
        f"Recv-Q (queued connections): {lrow[0]['recvq'] if lrow else '?'}"
    )
    verdict(
        "false: the kernel completes the handshake by itself and queues up to backlog + 1 "
        "connections; later SYNs are dropped and those clients wait"
    )
    for c in clients:
        c.close()
    lst.close()


def close_wait_lasts_forever() -> None:
    head(11, "CLOSE_WAIT lasts until the program calls close(), whatever happens")
    lst = listener()
    port = lst.getsockname()[1]
    c, s = pair(lst)
    c.shutdown(socket.SHUT_WR)  # the client's FIN; the client keeps its socket (FIN_WAIT2)
    rows = wait_for(port, lambda rs: counted(rs, "CLOSE-WAIT") == 1)
    before = [r["recvq"] for r in rows if r["state"] == "CLOSE-WAIT"]
    got = s.recv(10)
    rows = ss(port)
    after = [r["recvq"] for r in rows if r["state"] == "CLOSE-WAIT"]
    seen(
        f"server CLOSE-WAIT, Recv-Q {before[0] if before else '?'} before the program reads; "
        f"read() returns {len(got)} bytes (EOF), then Recv-Q {after[0] if after else '?'}: "
        "the FIN counts in Recv-Q only until the program has read the end of the stream"
    )
    fd = s.fileno()
    set_linger(c, True, 0)
    c.close()  # the peer aborts: a RST reaches the CLOSE_WAIT socket
    rows = wait_for(port, lambda rs: counted(rs, "CLOSE-WAIT") == 0)
    try:
        s.send(b"x")
        after_send = "send() succeeds"
    except OSError as e:
        after_send = f"send() fails with {errname(e)}"
    held = os.path.exists(f"/proc/self/fd/{fd}")
    seen(
        f"the peer closes with SO_LINGER {{on, 0}} (RST): CLOSE-WAIT sockets left: "
        f"{counted(rows, 'CLOSE-WAIT')}; the program's {after_send}; its descriptor {fd} is "
        f"{'still open' if held else 'gone'}"
    )
    verdict(
        "false: CLOSE_WAIT has no timer, and only close() moves it to LAST_ACK, but a RST from "
        "the peer ends it (tcp_reset() in net/ipv4/tcp_input.c), and so do an unanswered "
        "keepalive (check 13) and SOCK_DESTROY (ss -K); the "
        "descriptor stays open until the program closes it, so a falling CLOSE_WAIT count does "
        "not prove a leak fixed"
    )
    s.close()
    lst.close()


EXIT_CHILD = """
import socket, sys
lst = socket.socket()
lst.bind(("127.0.0.1", 0))
lst.listen(1)
print(lst.getsockname()[1], flush=True)
conn, _ = lst.accept()
conn.recv(1)  # wait for the request's first byte
if sys.argv[1] == "drain":
    while conn.recv(65536):
        pass
sys.exit(0)  # no close(): the process exits with the connection open
"""


def exit_sends_fin() -> None:
    head(12, "when a program exits, the kernel sends FIN on each of its connections")
    for mode, label in [
        ("unread", "leaves request bytes unread"),
        ("drain", "reads the request to EOF"),
    ]:
        child = subprocess.Popen(
            [sys.executable, "-c", EXIT_CHILD, mode], stdout=subprocess.PIPE, text=True
        )
        assert child.stdout is not None
        port = int(child.stdout.readline())
        c = socket.create_connection((LOOPBACK, port), timeout=3)
        c.sendall(b"request line\n" + b"body" * 100)
        if mode == "drain":
            c.shutdown(socket.SHUT_WR)
        child.wait(timeout=5)
        try:
            data = c.recv(100)
            what = "EOF (a FIN)" if data == b"" else f"{len(data)} bytes"
        except OSError as e:
            what = f"{errname(e)} (a RST)"
        seen(f"a child process {label}, then exits without close(): client's read(): {what}")
        c.close()
    verdict(
        "false: exit closes every descriptor, and each close follows the usual rule: a socket "
        "with unread received data sends RST (__tcp_close() in net/ipv4/tcp.c), only a drained "
        "one sends FIN"
    )


def sysctls_per_namespace() -> None:
    head(17, "every net.ipv4 sysctl is private to a network namespace")
    host = set(os.listdir("/proc/sys/net/ipv4"))
    out = subprocess.run(
        ["unshare", "-n", "ls", "/proc/sys/net/ipv4"], capture_output=True, text=True, check=True
    ).stdout
    private = set(out.split())
    shared = sorted(host - private)
    seen(
        f"/proc/sys/net/ipv4 lists {len(host)} entries on the host and {len(private)} in a new "
        f"network namespace; only on the host (global): {', '.join(shared)}"
    )
    verdict(
        "false: most are per namespace (tcp_fin_timeout, tcp_tw_reuse, ip_local_port_range, "
        "tcp_max_tw_buckets...), but a few, such as tcp_mem and tcp_max_orphans, are one "
        "setting for the whole machine and a namespace cannot change them"
    )


# ---------------------------------------------------------------------------------------------
# Checks that set sysctls: only inside a private network namespace
# ---------------------------------------------------------------------------------------------


def read_sysctl(name: str) -> str:
    with open(f"/proc/sys/net/ipv4/{name}") as f:
        return f.read().strip()


def write_sysctl(name: str, value: str) -> None:
    with open(f"/proc/sys/net/ipv4/{name}", "w") as f:
        f.write(value)


def fin_timeout_sets_time_wait() -> None:
    head(9, "net.ipv4.tcp_fin_timeout sets the TIME_WAIT length")
    write_sysctl("tcp_fin_timeout", "5")
    seen("in a private network namespace: tcp_fin_timeout = 5")
    lst = listener()
    port = lst.getsockname()[1]
    # A full close: the client ends in TIME_WAIT.
    c, s = pair(lst)
    c.close()
    s.recv(1)
    s.close()
    # An orphaned FIN_WAIT2: the client closes, the server never does.
    c2, s2 = pair(lst)
    c2port = c2.getsockname()[1]
    c2.close()
    rows = wait_for(port, lambda rs: counted(rs, "TIME-WAIT") == 1 and counted(rs, "FIN-WAIT-2"))
    for r in rows:
        if r["state"] in ("TIME-WAIT", "FIN-WAIT-2") and not r["local"].endswith(f":{port}"):
            seen(
                f"client {r['state']}: timer {r['timer']} {r['left']} "
                f"({seconds(r['left']):.1f} s left)"
            )
    time.sleep(5.5)
    rows = ss(port)
    gone = not any(r["local"].endswith(f":{c2port}") for r in rows)
    seen(
        f"5.5 s later: orphaned FIN-WAIT-2 {'gone' if gone else 'still there'}; "
        f"TIME-WAIT still there: {'yes' if counted(rows, 'TIME-WAIT') == 1 else 'no'}; "
        f"server CLOSE-WAIT: {counted(rows, 'CLOSE-WAIT')}"
    )
    verdict(
        "false: tcp_fin_timeout bounds only an orphaned FIN_WAIT2; TIME_WAIT stays a fixed 60 s "
        "(TCP_TIMEWAIT_LEN in include/net/tcp.h)"
    )
    s2.close()
    lst.close()


def tw_reuse_outgoing() -> None:
    head(10, "tcp_tw_reuse lets a server reuse TIME_WAIT sockets")
    saved = {n: read_sysctl(n) for n in ("ip_local_port_range", "tcp_tw_reuse")}
    write_sysctl("ip_local_port_range", "40000 40009")
    seen("in a private network namespace: ip_local_port_range = 40000 40009 (10 ports)")
    lst = listener(backlog=64)
    port = lst.getsockname()[1]
    seen(f"the listener took port {port} of them (bind to port 0 draws from the same range)")
    for mode in ("0", "1"):
        write_sysctl("tcp_tw_reuse", mode)
        made = 0
        failure = "none"
        for _ in range(12):
            try:
                c, s = pair(lst)
            except OSError as e:
                failure = errname(e)
                break
            made += 1
            c.close()  # the client closes first and keeps TIME_WAIT on its port
            s.recv(1)
            s.close()
        time.sleep(1.1)  # older than tcp_tw_reuse_delay (1000 ms by default)
        try:
            c, s = pair(lst)
            later = "connect() succeeds"
            c.close()
            s.close()
        except OSError as e:
            later = f"connect() fails with {errname(e)}"
        seen(f"tcp_tw_reuse = {mode}: {made} connections, then {failure}; 1.1 s later: {later}")
    verdict(
        "false: tcp_tw_reuse acts on connect() (outgoing connections) only, reusing a TIME_WAIT "
        "port older than 1 s when timestamps allow it; a server's accept() has nothing to reuse"
    )
    lst.close()
    for name, value in saved.items():  # the later checks need the usual range
        write_sysctl(name, value)


def close_wait_keepalive() -> None:
    head(13, "a CLOSE_WAIT socket whose peer has vanished waits for the program forever")
    lst = listener()
    port = lst.getsockname()[1]
    c, s = pair(lst)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 2)
    c.shutdown(socket.SHUT_WR)
    s.recv(10)  # EOF: the server program knows, and still does not close
    rows = wait_for(port, lambda rs: counted(rs, "CLOSE-WAIT") == 1)
    cw = [r for r in rows if r["state"] == "CLOSE-WAIT"]
    seen(
        "server socket with SO_KEEPALIVE, TCP_KEEPIDLE 1 s, TCP_KEEPINTVL 1 s, TCP_KEEPCNT 2: "
        f"CLOSE-WAIT, timer {cw[0]['timer'] if cw else '?'}"
    )
    subprocess.run(["ip", "link", "set", "lo", "down"], check=True)  # no probe gets an answer
    start = time.monotonic()
    rows = wait_for(port, lambda rs: counted(rs, "CLOSE-WAIT") == 0, timeout=6)
    took = time.monotonic() - start
    seen(
        f"the namespace's lo taken down, so the peer looks gone: CLOSE-WAIT sockets after "
        f"{took:.1f} s: {counted(rows, 'CLOSE-WAIT')}"
    )
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    verdict(
        "false: tcp_keepalive_timer() (net/ipv4/tcp_timer.c) probes a CLOSE_WAIT socket like an "
        "established one and, with no answer, ends it after idle + count x interval"
    )
    s.close()
    c.close()
    lst.close()


def abort_on_overflow() -> None:
    head(14, "with tcp_abort_on_overflow = 1, a SYN to a full accept queue is answered with RST")
    write_sysctl("tcp_abort_on_overflow", "1")
    seen("in a private network namespace: tcp_abort_on_overflow = 1")
    lst = listener(backlog=0)  # Linux queues backlog + 1 = 1 connection
    port = lst.getsockname()[1]
    # A client whose final ACK of the handshake is delayed: with TCP_DEFER_ACCEPT set on a
    # connecting socket, the kernel holds that ACK for the delayed-ACK timer (about 200 ms),
    # yet connect() returns as soon as the SYN-ACK arrives.
    a = socket.socket()
    a.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
    a.settimeout(3)
    a.connect((LOOPBACK, port))
    rows = ss(port)
    seen(
        "client A (final ACK delayed) connect() succeeded; server side: "
        + ", ".join(sorted(r["state"] for r in rows if r["local"].endswith(f":{port}")))
    )
    b = socket.create_connection((LOOPBACK, port), timeout=3)
    late = socket.socket()
    late.settimeout(0.5)
    try:
        late.connect((LOOPBACK, port))
        late_result = "connected"
    except OSError as e:
        late_result = "timed out (its SYNs were dropped, no RST)" if e.errno is None else errname(e)
    try:
        a.settimeout(1)
        data = a.recv(10)
        a_result = "EOF" if data == b"" else f"{len(data)} bytes"
    except OSError as e:
        a_result = errname(e)
    seen(
        "client B connected and filled the queue; client C's connect() while it was full: "
        f"{late_result}; client A's first read(), once its ACK reached the full queue: {a_result}"
    )
    verdict(
        "false: a SYN that finds the accept queue full is dropped whatever the sysctl says "
        "(tcp_conn_request() in net/ipv4/tcp_input.c); the sysctl acts when the handshake's "
        "final ACK finds the queue full (tcp_check_req() in net/ipv4/tcp_minisocks.c), and then "
        "it resets a connection whose connect() had already succeeded"
    )
    for sock in (a, b, late):
        sock.close()
    lst.close()
    write_sysctl("tcp_abort_on_overflow", "0")


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def time_wait_exactly_60s() -> None:
    head(15, "TIME_WAIT always lasts exactly 60 s from the moment it starts")
    # The server gets an address of its own, so that it can be removed later and nothing on
    # it answers the TIME_WAIT socket's ACK (a listener would answer with RST).
    server_ip = "10.255.0.1"
    subprocess.run(["ip", "addr", "add", f"{server_ip}/32", "dev", "lo"], check=True)
    lst = socket.socket()
    lst.bind((server_ip, 0))
    lst.listen(4)
    port = lst.getsockname()[1]
    cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    cap.bind(("lo", 0))
    c = socket.create_connection((server_ip, port), timeout=3)
    s, _ = lst.accept()
    cport = c.getsockname()[1]
    c.close()  # the client closes first and will hold TIME_WAIT
    s.recv(1)
    s.close()
    fin = b""
    for ip, ihl in ipv4_frames(cap, time.monotonic() + 2):
        total = struct.unpack("!H", ip[2:4])[0]
        sport, dport = struct.unpack("!HH", ip[ihl : ihl + 4])
        if sport == port and dport == cport and ip[ihl + 13] & 1:  # the server's FIN
            fin = bytes(ip[:total])
            break
    cap.close()
    subprocess.run(["ip", "addr", "del", f"{server_ip}/32", "dev", "lo"], check=True)

    def left() -> str:
        rows = [r for r in ss(cport) if r["state"] == "TIME-WAIT"]
        return f"{seconds(rows[0]['left']):.0f} s left" if rows else "no TIME-WAIT"

    wait_for(cport, lambda rs: counted(rs, "TIME-WAIT") == 1)
    seen(f"client TIME-WAIT: {left()}")
    time.sleep(3)
    seen(f"3 s later: {left()}")
    if fin:
        # Send the server's own FIN again, as the peer's kernel would if our last ACK were
        # lost. Loopback leaves the TCP checksum to be filled in, so compute it here.
        ihl = (fin[0] & 15) * 4
        seg = bytearray(fin[ihl:])
        seg[16:18] = b"\0\0"
        pseudo = fin[12:20] + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(seg))
        seg[16:18] = struct.pack("!H", checksum(pseudo + bytes(seg)))
        raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        raw.sendto(fin[:ihl] + bytes(seg), (LOOPBACK, 0))
        raw.close()
        time.sleep(0.05)
        seen(f"the server's FIN sent again (captured on lo, replayed with a raw socket): {left()}")
    verdict(
        "false: the length is a fixed 60 s, but a retransmitted FIN (or any ACK-bearing "
        "segment) restarts it (inet_twsk_reschedule() called from tcp_timewait_state_process() "
        "in net/ipv4/tcp_minisocks.c); a RST (with tcp_rfc1337 = 0), a new SYN, tcp_tw_reuse or "
        "SOCK_DESTROY ends it early"
    )
    c.close()
    lst.close()


def syn_backoff_exponential() -> None:
    head(16, "a dropped SYN is retried after 1 s, 3 s, 7 s...: exponential backoff")
    linear = read_sysctl("tcp_syn_linear_timeouts")
    lst = listener(backlog=0)
    port = lst.getsockname()[1]
    first = socket.create_connection((LOOPBACK, port), timeout=3)  # fills the accept queue
    cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    cap.bind(("lo", 0))
    c = socket.socket()
    c.setblocking(False)
    try:
        c.connect((LOOPBACK, port))
    except BlockingIOError:
        pass
    cport = c.getsockname()[1]
    times: list[float] = []
    for ip, ihl in ipv4_frames(cap, time.monotonic() + 7.6):
        sport = struct.unpack("!H", ip[ihl : ihl + 2])[0]
        if sport == cport and ip[ihl + 13] & 0x02:  # a SYN from our client
            times.append(time.monotonic())
    sent = ", ".join(f"{t - times[0]:.1f}" for t in times) if times else "none"
    seen(
        f"tcp_syn_linear_timeouts = {linear}; SYNs of one connect() to a full accept queue, "
        f"seen on lo at these seconds after the first: {sent}"
    )
    verdict(
        "false on this kernel: the first tcp_syn_linear_timeouts (4) timeouts stay at 1 s and "
        "the backoff after them starts again from 1 s, so five retries come 1 s apart before "
        "the gaps double (Documentation/networking/ip-sysctl.rst); kernels without that sysctl "
        "double from the first retry"
    )
    cap.close()
    c.close()
    first.close()
    lst.close()


def tw_overflow_logged() -> None:
    head(18, 'past tcp_max_tw_buckets the kernel logs "time wait bucket table overflow"')
    write_sysctl("tcp_max_tw_buckets", "5")
    seen("in a private network namespace: tcp_max_tw_buckets = 5")

    def counter() -> int:
        out = subprocess.run(
            ["nstat", "-az", "TcpExtTCPTimeWaitOverflow"], capture_output=True, text=True
        ).stdout
        found = re.search(r"TcpExtTCPTimeWaitOverflow\s+(\d+)", out)
        return int(found.group(1)) if found else -1

    def kernel_log() -> list[str]:
        out = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
        return [line for line in out.splitlines() if "bucket table overflow" in line]

    log_before, count_before = len(kernel_log()), counter()
    lst = listener()
    port = lst.getsockname()[1]
    for _ in range(10):
        c, s = pair(lst)
        c.close()  # the client closes first: each wants a TIME_WAIT socket
        s.recv(1)
        s.close()
    wait_for(port, lambda rs: counted(rs, "TIME-WAIT") >= 5)
    time.sleep(0.1)
    seen(
        f"10 connections closed client-first: {counted(ss(port), 'TIME-WAIT')} TIME-WAIT "
        f"sockets; TcpExtTCPTimeWaitOverflow grew by {counter() - count_before}; new kernel "
        f"log lines about a bucket table overflow: {len(kernel_log()) - log_before}"
    )
    verdict(
        "false on current kernels: the connections past the cap close without TIME_WAIT and "
        "are only counted (TCPTimeWaitOverflow, from tcp_time_wait() in "
        "net/ipv4/tcp_minisocks.c); the log line is from old kernels, and tcp(7) still "
        "mentions it"
    )
    lst.close()


def syn_backlog_is_syn_queue() -> None:
    head(19, "net.ipv4.tcp_max_syn_backlog is the size of a listener's SYN queue")
    seen(
        "in a private network namespace, 40 clients whose final ACK is held back (TCP_DEFER_ACCEPT "
        "on the connecting socket) each leave a request in SYN-RECV for about 200 ms; how many "
        "requests does the listener keep?"
    )
    for cookies, backlog, max_syn in [
        ("0", 4, 2048),
        ("0", 64, 2048),
        ("0", 64, 16),
        ("1", 64, 16),
    ]:
        write_sysctl("tcp_syncookies", cookies)
        write_sysctl("tcp_max_syn_backlog", str(max_syn))
        lst = listener(backlog=backlog)
        port = lst.getsockname()[1]
        clients = []
        for _ in range(40):
            c = socket.socket()
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
            c.setblocking(False)
            try:
                c.connect((LOOPBACK, port))
            except BlockingIOError:
                pass
            clients.append(c)
        time.sleep(0.05)
        kept = sum(1 for r in ss(port) if r["state"] == "SYN-RECV")
        seen(
            f"tcp_syncookies = {cookies}, listen backlog {backlog}, tcp_max_syn_backlog "
            f"{max_syn}: {kept} SYN-RECV"
        )
        for c in clients:
            c.close()
        lst.close()
    write_sysctl("tcp_syncookies", "1")
    write_sysctl("tcp_max_syn_backlog", "2048")
    verdict(
        "false: the listen backlog bounds the requests too (inet_csk_reqsk_queue_is_full() in "
        "include/net/inet_connection_sock.h; past it SYN cookies, or with cookies off a drop); "
        "tcp_max_syn_backlog matters only with cookies off, where tcp_conn_request() in "
        "net/ipv4/tcp_input.c keeps its last quarter for peers it has talked to before"
    )


def inside_netns() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    fin_timeout_sets_time_wait()
    tw_reuse_outgoing()
    close_wait_keepalive()
    abort_on_overflow()
    time_wait_exactly_60s()
    syn_backoff_exponential()
    tw_overflow_logged()
    syn_backlog_is_syn_queue()


def main() -> int:
    if "--inside-netns" in sys.argv:
        inside_netns()
        return 0
    print(f"kernel: Linux {platform.release()}; every run over 127.0.0.1, read back with ss")
    time_wait_is_240s()
    linger_off_avoids_time_wait()
    linger_zero_discards_data()
    unread_data_rst()
    reuseaddr_two_listeners()
    reuseaddr_unsafe()
    time_wait_is_a_leak()
    accept_queue()
    close_wait_lasts_forever()
    exit_sends_fin()
    sys.stdout.flush()
    if os.geteuid() == 0:
        sysctls_per_namespace()
        sys.stdout.flush()
        subprocess.run(
            ["unshare", "-n", sys.executable, os.path.abspath(__file__), "--inside-netns"],
            check=True,
        )
    else:
        print(
            "\n[9], [10], [13] to [19] skipped: they set sysctls or send raw "
            "packets in a private network namespace (needs root)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
