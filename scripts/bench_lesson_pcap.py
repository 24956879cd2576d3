#!/usr/bin/env python3
"""How much longer a lesson takes with `--pcap` than without: each lesson binary is run RUNS
times each way, alternating, and the medians of the whole process's wall time are compared.

    cargo build --release -p tcplab-exercises --bins
    python3 scripts/bench_lesson_pcap.py 11 02-four-way-close 03-close-wait-fixed

A measurement, not a test: a busy machine moves the numbers, so the runs alternate and the
median is kept. Left out on purpose: the churn lessons (their capture ends before the churn).
"""

from __future__ import annotations

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
    t = time.monotonic()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, timeout=120)
    return time.monotonic() - t


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    names = sys.argv[2:] or DEFAULT
    bindir = ROOT / "target" / "release"
    with tempfile.TemporaryDirectory() as out:
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
