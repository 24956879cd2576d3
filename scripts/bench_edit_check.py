#!/usr/bin/env python3
"""Edit-to-verdict: how long a student waits between saving a one-line change and reading the
kernel's verdict from `cargo lab check 03`.

Works on a copy of the workspace (the real desk is never touched): `start 03`, one warm-up
check, then ROUNDS rounds that each save a one-line change to the student's copy (the fix,
then the bug again, in turn) and time `tcplab check 03` from the save to its exit. What is
timed is everything the student waits for: cargo's incremental build of the one changed file,
the lesson's run, the kernel's grading and the diff.

    python3 scripts/bench_edit_check.py [ROUNDS]      # default 6

The runner must be built first (`cargo build --release -p tcplab-exercises --bin tcplab`).
Prints one line per round and the median, split into the fix's rounds and the bug's.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUG = "                thread::sleep(Duration::from_millis(20));\n                continue;"
FIX = "                return;"


def main() -> int:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    runner = ROOT / "target/release/tcplab"
    if not runner.is_file():
        print("build the runner first: cargo build --release -p tcplab-exercises --bin tcplab")
        return 2
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout.split(b"\0")
    with tempfile.TemporaryDirectory(prefix="tcplab-bench-") as tmp:
        copy = Path(tmp)
        for f in filter(None, files):
            src = ROOT / f.decode()
            if src.is_file():
                dst = copy / f.decode()
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        env = dict(os.environ, CARGO_TARGET_DIR=str(ROOT / "target/bench-edit"), NO_COLOR="1")

        def check() -> tuple[float, bool]:
            t0 = time.perf_counter()
            out = subprocess.run(
                [runner, "check", "03"], cwd=copy, env=env, capture_output=True, timeout=300
            )
            return time.perf_counter() - t0, out.returncode == 0

        subprocess.run([runner, "start", "03"], cwd=copy, env=env, check=True, capture_output=True)
        student = copy / "exercises/desk/src/bin/03-close-wait-student.rs"
        warm, _ = check()
        print(f"warm-up check (first build of the copy): {warm:.2f} s")
        times: dict[str, list[float]] = {"fix": [], "bug": []}
        for i in range(rounds):
            kind = "fix" if i % 2 == 0 else "bug"
            text = student.read_text()
            old, new = (BUG, FIX) if kind == "fix" else (FIX, BUG)
            student.write_text(text.replace(old, new, 1))
            took, passed = check()
            times[kind].append(took)
            verdict = "pass" if passed else "fail"
            print(f"round {i + 1}: saved the {kind}, verdict {verdict} in {took:.2f} s")
        for kind, ts in times.items():
            if ts:
                median = statistics.median(ts)
                print(f"median edit-to-verdict, {kind}: {median:.2f} s ({len(ts)} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
