#!/usr/bin/env python3
"""How much longer a lesson takes with `--pcap` than without: each lesson binary is run RUNS
times each way, alternating, and the medians of the whole process's wall time are compared.

    cargo build --release -p tcplab-exercises --bins
    python3 scripts/bench_lesson_pcap.py 11 02-four-way-close 03-close-wait-fixed
    TCPLAB_BENCH_UID=65534 python3 scripts/bench_lesson_pcap.py 11   # as root: as that user

Run as root, the lessons trace with the tracepoint and capture on the host's `lo`. With
TCPLAB_BENCH_UID (root only) they run as that user through setpriv: polling, and with
`--pcap` inside a user + network namespace of their own (the file goes to a directory that
user can write).

Lessons 07, 08, 10 and 11 are about the wire and capture on every run; for them the
comparison is the cost of keeping frames and writing the file, not of capturing.

A measurement, not a test: a busy machine moves the numbers, so the runs alternate and the
median is kept. Left out on purpose: the churn lessons (their capture ends before the churn).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = [
    "02-four-way-close",
    "03-close-wait-leak",
    "03-close-wait-fixed",
    "07-linger-zero",
    "07-graceful-close",
    "08-shutdown-write",
]


def wall(cmd: list[str]) -> float:
    uid = os.environ.get("TCPLAB_BENCH_UID")
    if uid:
        cmd = ["setpriv", "--reuid", uid, "--regid", uid, "--clear-groups", *cmd]
    # The bound is coreutils' timeout, not subprocess's: with a timeout, Python waits by
    # polling with sleeps that grow to 50 ms, which blurs a 70 ms run.
    cmd = ["timeout", "120", *cmd]
    t = time.monotonic()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
    return time.monotonic() - t


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    names = sys.argv[2:] or DEFAULT
    bindir = ROOT / "target" / "release"
    with tempfile.TemporaryDirectory() as out:
        os.chmod(out, 0o777)
        for name in names:
            binary = str(bindir / name)
            plain, captured = [], []
            for _ in range(runs):
                plain.append(wall([binary, "--json"]))
                captured.append(wall([binary, "--json", "--pcap", f"{out}/{name}.pcapng"]))
            p, c = statistics.median(plain), statistics.median(captured)
            print(
                f"{name}: median {p * 1000:.0f} ms without, {c * 1000:.0f} ms with --pcap "
                f"({(c / p - 1) * 100:+.1f} %)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
