#!/usr/bin/env python3
"""List, or switch on, the book's includes that wait for a file that does not exist yet.

mdBook cannot include a file that is missing, so a chapter keeps such an include inside an
HTML comment that names the file it waits for:

    <!-- PENDING exercises/tests/snapshots/transcripts__03-close-wait-leak.snap
    ```text
    \\{{#include ../../exercises/tests/snapshots/transcripts__03-close-wait-leak.snap:5:}}
    ```
    -->

(the backslash keeps mdBook from acting on the line while it is pending).

    python3 scripts/book_pending.py             # list every pending include and whether it is ready
    python3 scripts/book_pending.py --activate  # switch on those whose file (and anchor) exist

An include is ready when its file exists and, for `file:NAME` includes, the file has an
`ANCHOR: NAME` marker. Paths in the PENDING line are relative to the repository root.
Exits 1 with --check when any include is still pending.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "book" / "src"
BLOCK = re.compile(r"<!-- PENDING (?P<path>\S+)\n(?P<body>.*?)\n-->\n", re.DOTALL)
INCLUDE = re.compile(r"\\\{\{#include (?P<target>[^}]+)\}\}")


def ready(path: str, body: str) -> tuple[bool, str]:
    file = ROOT / path
    if not file.is_file():
        return False, "file missing"
    for m in INCLUDE.finditer(body):
        target = m.group("target")
        parts = target.split(":")
        if len(parts) == 2 and not parts[1].isdigit():
            anchor = parts[1]
            text = file.read_text(encoding="utf-8")
            if not re.search(rf"ANCHOR:\s*{re.escape(anchor)}\b", text):
                return False, f"no ANCHOR: {anchor}"
    return True, "ready"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--activate", action="store_true", help="switch on the ready includes")
    ap.add_argument("--check", action="store_true", help="exit 1 if any include is pending")
    args = ap.parse_args(argv)
    pending = 0
    for md in sorted(SRC.rglob("*.md")):
        text = md.read_text(encoding="utf-8")
        changed = False

        def replace(m: re.Match[str], md: Path = md) -> str:
            nonlocal pending, changed
            ok, why = ready(m.group("path"), m.group("body"))
            print(f"{md.relative_to(ROOT)}: {m.group('path')}: {why}")
            if ok and args.activate:
                changed = True
                return m.group("body").replace("\\{{#include", "{{#include") + "\n"
            pending += 1
            return m.group(0)

        new = BLOCK.sub(replace, text)
        if changed:
            md.write_text(new, encoding="utf-8")
    print(f"{pending} include(s) pending")
    return 1 if args.check and pending else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
