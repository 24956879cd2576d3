#!/usr/bin/env python3
"""Install a built tcplab wheel into a fresh venv outside the checkout, with no Rust toolchain
on PATH, and use it as a student or a hub would: `tcplab.run("03")` and a snapshot.

    maturin build --release -m py/Cargo.toml -o DIR
    python3 scripts/test_wheel.py DIR/tcplab-*.whl

The lesson binaries must come from inside the wheel (not from this checkout's target/), and
the package must not import from the checkout: both are checked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs inside the fresh venv, from a folder outside the checkout.
CHECK = r"""
import json, sys
from pathlib import Path
import tcplab

root, venv = Path(sys.argv[1]), Path(sys.argv[2])
where = Path(tcplab.__file__).resolve()
assert venv in where.parents, f"tcplab imported from {where}, not from the venv"
leak = tcplab.find_binary("03-close-wait-leak").resolve()
assert venv in leak.parents, f"the lesson binary {leak} is not the wheel's"
r = tcplab.run("03")
assert r.passed, f"lesson 03: {r.verdict}, expected {r.expected}: {r.report.get('reasons')}"
fixed = tcplab.run("03", variant="fixed")
assert fixed.passed, f"lesson 03 fixed: {fixed.verdict}: {fixed.report.get('reasons')}"
table = tcplab.snapshot(state="listen")
assert table.method in ("sock_diag", "/proc/net/tcp"), table.method
print(json.dumps({
    "package": str(where.parent),
    "binary": str(leak),
    "lesson_03": [r.verdict, fixed.verdict],
    "backend": r.report.get("backend"),
    "snapshot": {"method": table.method, "listening": len(table)},
}))
"""


def main() -> int:
    if len(sys.argv) != 2 or not sys.argv[1].endswith(".whl"):
        sys.exit(__doc__)
    wheel = Path(sys.argv[1]).resolve()
    print(f"wheel: {wheel.name}")
    with tempfile.TemporaryDirectory(prefix="tcplab-wheel-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        py = venv / "bin" / "python"
        subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", str(wheel)],
            check=True,
        )
        # What a machine without Rust has: the system's folders only, no cargo or rustup.
        path = os.pathsep.join(
            d for d in ("/usr/local/bin", "/usr/bin", "/bin") if Path(d).is_dir()
        )
        for tool in ("cargo", "rustc"):
            found = shutil.which(tool, path=path)
            if found:
                sys.exit(
                    f"{tool} is on the reduced PATH ({found}): the test needs a PATH without Rust"
                )
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("CARGO", "RUSTUP", "TCPLAB_", "VIRTUAL_ENV", "PYTHON"))
        }
        env["PATH"] = path
        out = subprocess.run(
            [str(py), "-c", CHECK, str(ROOT), str(venv.resolve())],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if out.returncode != 0:
            print(out.stdout, out.stderr, sep="\n")
            return 1
        print(f"installed in a fresh venv, no Rust on PATH: {out.stdout.strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
