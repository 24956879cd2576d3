#!/usr/bin/env python3
"""Benchmark: tcplab.snapshot().to_pandas() against psutil.net_connections("tcp").

Creates at least 40,000 TIME_WAIT sockets on loopback (the server closes first, over about
20 listener ports so no single 4-tuple space runs dry), bounded in count and in time, then
times both in this one process (median of several runs). TIME_WAIT sockets hold no file
descriptor and end by themselves after 60 s; nothing else on the machine is touched.

    python py/bench/snapshot_vs_psutil.py [--target 40000] [--runs 7]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time

import tcplab

LISTENERS = 20


def churn(target: int, deadline_s: float) -> list[int]:
    """Make `target` TIME_WAIT sockets (server side closes first); returns listener ports."""
    servers = [socket.create_server(("127.0.0.1", 0), backlog=1024) for _ in range(LISTENERS)]
    ports = [s.getsockname()[1] for s in servers]
    end = time.monotonic() + deadline_s
    made = 0
    try:
        while made < target and time.monotonic() < end:
            for srv, port in zip(servers, ports):
                c = socket.socket()
                try:
                    c.connect(("127.0.0.1", port))
                except OSError:
                    c.close()
                    continue
                a, _ = srv.accept()
                a.close()  # server closes first: TIME_WAIT lands on the server side
                c.recv(1)
                c.close()
                made += 1
    finally:
        for s in servers:
            s.close()
    return ports


def median_time(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", type=int, default=40_000, help="TIME_WAIT sockets to make")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--max-seconds", type=float, default=50.0, help="bound on the churn")
    args = ap.parse_args()
    if not 1 <= args.target <= 200_000:
        ap.error("--target must be in 1..200000")
    import psutil

    t0 = time.monotonic()
    churn(args.target, args.max_seconds)
    churn_s = time.monotonic() - t0
    tw = tcplab.snapshot(state="time-wait")
    total = len(tcplab.snapshot())
    print(f"made TIME_WAIT in {churn_s:.1f} s: {len(tw)} TIME_WAIT now, {total} TCP sockets")
    if len(tw) < args.target:
        print(f"warning: fewer than {args.target} TIME_WAIT sockets", file=sys.stderr)

    df = tcplab.snapshot().to_pandas()
    conns = psutil.net_connections("tcp")
    print(f"rows: tcplab {len(df)}, psutil {len(conns)}")

    t_tcplab = median_time(lambda: tcplab.snapshot().to_pandas(), args.runs)
    t_snap = median_time(lambda: tcplab.snapshot(), args.runs)
    t_psutil = median_time(lambda: psutil.net_connections("tcp"), args.runs)
    print(f"tcplab.snapshot().to_pandas(): {t_tcplab * 1000:8.1f} ms (median of {args.runs})")
    print(f"tcplab.snapshot() alone:       {t_snap * 1000:8.1f} ms")
    print(f'psutil.net_connections("tcp"): {t_psutil * 1000:8.1f} ms')
    print(f"speed-up: {t_psutil / t_tcplab:.1f}x (goal >= 10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
