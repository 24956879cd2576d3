#!/usr/bin/env python3
"""Build the lesson binaries (release) and copy them into the Python package.

``tcplab.run()`` starts lesson binaries in a child process. A user who installs the package
has no Rust toolchain at run time, so the binaries travel inside the wheel, in
``py/python/tcplab/bin/`` (gitignored). Run this before ``maturin develop``, ``maturin build``
or ``pip install ./py``:

    python py/build_bins.py            # cargo build --release, then copy
    python py/build_bins.py --no-build # copy what target/release already has
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEST = ROOT / "py" / "python" / "tcplab" / "bin"


def catalog_names() -> list[str]:
    """Every binary name in exercises/lessons.toml (plus the runner, `tcplab`)."""
    text = (ROOT / "exercises" / "lessons.toml").read_text()
    return ["tcplab", *re.findall(r'^name\s*=\s*"([^"]+)"', text, flags=re.M)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-build", action="store_true", help="do not run cargo build")
    args = ap.parse_args()
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release"
    if not args.no_build:
        subprocess.run(
            ["cargo", "build", "--release", "--quiet", "-p", "tcplab-exercises", "--bins"],
            cwd=ROOT,
            check=True,
        )
    DEST.mkdir(parents=True, exist_ok=True)
    for old in DEST.iterdir():
        old.unlink()
    copied = []
    for name in catalog_names():
        src = target / name
        if src.is_file():
            shutil.copy2(src, DEST / name)
            copied.append(name)
    if not copied:
        print(f"no lesson binaries in {target}; build them first", file=sys.stderr)
        return 1
    print(f"copied {len(copied)} binaries into {DEST.relative_to(ROOT)}: {' '.join(copied)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
