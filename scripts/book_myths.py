#!/usr/bin/env python3
"""Check the claims of the book's "Myths, checked on a real kernel" chapter on this machine.

Every check runs over loopback with the Python standard library and reads the result back from
the kernel with `ss` (iproute2), so what it prints is what this kernel did, not what a blog
said. Servers bind 127.0.0.1:0 (a free port), so checks never collide with anything else.

Checks that change a sysctl run inside a private network namespace (`unshare -n`, needs root):
sysctls under net.ipv4 are per namespace, so the host's settings are never touched. Without
root those checks are skipped and say so.

The book includes this script's output, recorded with:

    python3 scripts/book_myths.py > book/src/generated/myths.txt

Left out on purpose: anything slower than a few seconds (it never waits out a 60 s TIME_WAIT)
and anything that needs a second machine.
"""

from __future__ import annotations

import errno
import os
import platform
import re
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


def head(n: int, claim: str) -> None:
    print(f"\n[{n}] myth: {claim}")


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
        "(one descriptor each, no timer: it lasts until the program closes)"
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


# ---------------------------------------------------------------------------------------------
# Checks that set sysctls: only inside a private network namespace
# ---------------------------------------------------------------------------------------------


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


def inside_netns() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    fin_timeout_sets_time_wait()
    tw_reuse_outgoing()


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
    sys.stdout.flush()
    if os.geteuid() == 0:
        subprocess.run(
            ["unshare", "-n", sys.executable, os.path.abspath(__file__), "--inside-netns"],
            check=True,
        )
    else:
        print("\n[9], [10] skipped: they set sysctls in a private network namespace (needs root)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
