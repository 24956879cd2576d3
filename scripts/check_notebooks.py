"""Check the instructors' notebooks: no stored outputs, and (with --execute) every cell runs.

    python scripts/check_notebooks.py FILES...             # only the no-outputs check
    python scripts/check_notebooks.py --execute FILES...   # the check, then run each notebook
    python scripts/check_notebooks.py --strip FILES...     # remove outputs and counts in place
    python scripts/check_notebooks.py --execute --html DIR FILES...   # and export the runs

The no-outputs check always runs first and fails (exit 1) listing every notebook that has
outputs or execution counts, or cells without an id (nbformat 4.5): notebooks are committed
clean, so a diff shows only what changed in the lesson, and the kernel's numbers are always
the ones from the class's own run. --strip also gives every cell an id.

--html DIR writes each executed notebook as DIR/NAME.html (nbconvert), to look at its figures
the way a class will see them.

--execute runs each notebook top to bottom with nbclient in a kernel that is this interpreter
(sys.executable, so the venv that has tcplab), with the notebook's folder as working
directory and a per-cell timeout. The executed copy stays in memory: files are never
rewritten. On the first failing cell it prints the notebook, the cell number, the start of
the cell's source and the error, and exits 1. It prints the time each notebook took.

Needs only the standard library, nbformat and nbclient (with ipykernel in the interpreter).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat

CELL_TIMEOUT = 120
"""Seconds one cell may run before the notebook fails."""

KERNEL_NAME = "tcplab-check-python"
"""A kernel spec written to a temporary folder, so the kernel is this very interpreter."""

DEFAULT_GLOB = "notebooks/*.ipynb"


def dirty_cells(nb: nbformat.NotebookNode) -> list[str]:
    """Descriptions of the code cells that carry outputs or an execution count."""
    found = []
    for i, cell in enumerate(nb.cells, start=1):
        if cell.cell_type != "code":
            continue
        what = []
        if cell.get("outputs"):
            what.append(f"{len(cell.outputs)} output(s)")
        if cell.get("execution_count") is not None:
            what.append(f"execution_count {cell.execution_count}")
        if what:
            found.append(f"cell {i}: " + ", ".join(what))
    return found


def read_raw(path: Path) -> nbformat.NotebookNode:
    """The notebook as stored: nbformat.read() would quietly invent the missing cell ids."""
    return nbformat.from_dict(json.loads(path.read_text()))


def missing_ids(nb: nbformat.NotebookNode) -> list[str]:
    """What keeps the notebook from nbformat 4.5: an old minor version, cells without id."""
    found = []
    if (nb.nbformat, nb.nbformat_minor) < (4, 5):
        found.append(f"nbformat {nb.nbformat}.{nb.nbformat_minor} (4.5 has cell ids)")
    for i, cell in enumerate(nb.cells, start=1):
        if not cell.get("id"):
            found.append(f"cell {i}: no id")
    return found


def add_ids(nb: nbformat.NotebookNode) -> bool:
    """Give every cell without one a stable id (`cell-NN`, unique); returns whether any."""
    taken = {c.get("id") for c in nb.cells}
    changed = False
    for i, cell in enumerate(nb.cells):
        if cell.get("id"):
            continue
        n = i
        while f"cell-{n:02d}" in taken:
            n += 100
        cell["id"] = f"cell-{n:02d}"
        taken.add(cell["id"])
        changed = True
    if nb.nbformat_minor < 5:
        nb.nbformat_minor = 5
        changed = True
    return changed


def strip(nb: nbformat.NotebookNode) -> bool:
    """Remove outputs and execution counts in place, and give cells ids; returns whether
    anything changed."""
    changed = add_ids(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.get("outputs") or cell.get("execution_count") is not None:
            changed = True
        cell.outputs = []
        cell.execution_count = None
        for key in ("execution", "collapsed", "scrolled"):
            if key in cell.metadata:
                del cell.metadata[key]
                changed = True
    for key in ("widgets",):
        if key in nb.metadata:
            del nb.metadata[key]
            changed = True
    return changed


def install_kernel_spec(folder: Path) -> None:
    """Write a kernel spec for sys.executable and put it first on JUPYTER_PATH."""
    spec_dir = folder / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({sys.executable})",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    old = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = str(folder) + (os.pathsep + old if old else "")


def execute(path: Path, html_dir: Path | None = None) -> tuple[bool, float]:
    """Run one notebook top to bottom; returns (ok, seconds). Prints the failing cell. With
    ``html_dir``, writes the executed notebook there as HTML (even when a cell failed)."""
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    nb = nbformat.read(path, as_version=4)
    # The kernel talks to us over Unix sockets in a private folder, not over loopback TCP
    # ports: nothing to collide with, nothing another user could connect to.
    sockets = tempfile.mkdtemp(prefix="tcplab-kernel-")
    km = KernelManager(kernel_name=KERNEL_NAME, transport="ipc", ip=str(Path(sockets) / "k"))
    client = NotebookClient(
        nb,
        km=km,
        kernel_name=KERNEL_NAME,
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    # Matplotlib never opens a window: it draws nothing (Agg), or, for the HTML export, into
    # the cell's output as Jupyter would (the inline backend).
    if html_dir is not None:
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    else:
        os.environ.setdefault("MPLBACKEND", "Agg")
    start = time.monotonic()
    failed_cell = None
    error = ""
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError) as exc:
        error = str(exc)
        failed_cell = next(
            (
                i
                for i, cell in enumerate(nb.cells, start=1)
                if cell.cell_type == "code"
                and any(o.get("output_type") == "error" for o in cell.get("outputs", []))
            ),
            None,
        )
        if failed_cell is None and isinstance(exc, CellTimeoutError):
            # The cell that timed out is the last one that started.
            failed_cell = max(
                (
                    i
                    for i, cell in enumerate(nb.cells, start=1)
                    if cell.cell_type == "code" and cell.get("execution_count") is not None
                ),
                default=None,
            )
    except (
        RuntimeError,
        OSError,
        KeyError,
        TimeoutError,
    ) as exc:  # kernel died or never started
        error = f"{type(exc).__name__}: {exc}"
    finally:
        # A client given its kernel manager leaves the kernel running: stop it here.
        if km.has_kernel:
            km.shutdown_kernel(now=True)
        shutil.rmtree(sockets, ignore_errors=True)
    seconds = time.monotonic() - start
    if html_dir is not None:
        from nbconvert import HTMLExporter

        html_dir.mkdir(parents=True, exist_ok=True)
        body, _ = HTMLExporter().from_notebook_node(nb)
        (html_dir / f"{path.stem}.html").write_text(body)
    if not error:
        return True, seconds
    where = f"cell {failed_cell}" if failed_cell else "before any cell ran"
    print(f"FAIL {path} ({seconds:.1f} s): {where}", file=sys.stderr)
    if failed_cell:
        source = nb.cells[failed_cell - 1].source.splitlines()
        head = "\n".join("    | " + line for line in source[:12])
        more = "\n    | ..." if len(source) > 12 else ""
        print(f"  source:\n{head}{more}", file=sys.stderr)
    print(
        "  error:\n" + "\n".join("    " + line for line in error.splitlines()),
        file=sys.stderr,
    )
    return False, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--execute", action="store_true", help="also run every notebook")
    mode.add_argument("--strip", action="store_true", help="remove outputs and counts in place")
    parser.add_argument(
        "--html", type=Path, metavar="DIR", help="with --execute: write the runs there as HTML"
    )
    parser.add_argument("files", nargs="*", type=Path, help=f"notebooks (default {DEFAULT_GLOB})")
    args = parser.parse_args(argv)

    files: list[Path] = args.files or sorted(Path().glob(DEFAULT_GLOB))
    if not files:
        print(f"no notebooks given and none match {DEFAULT_GLOB}", file=sys.stderr)
        return 1
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        print("no such notebook: " + ", ".join(missing), file=sys.stderr)
        return 1

    if args.strip:
        for f in files:
            nb = read_raw(f)
            if strip(nb):
                nbformat.write(nb, f)
                print(f"stripped {f}")
        return 0

    dirty = {}
    for f in files:
        nb = read_raw(f)
        if d := dirty_cells(nb) + missing_ids(nb):
            dirty[f] = d
    if dirty:
        print(
            "notebooks must be committed without outputs or execution counts, with cell ids:",
            file=sys.stderr,
        )
        for f, cells in dirty.items():
            print(f"  {f}: " + "; ".join(cells), file=sys.stderr)
        print(
            f"fix: python {sys.argv[0]} --strip " + " ".join(map(str, dirty)),
            file=sys.stderr,
        )
        return 1
    print(f"{len(files)} notebook(s) without outputs")
    if not args.execute:
        return 0

    failures = 0
    total = 0.0
    with tempfile.TemporaryDirectory(prefix="tcplab-nb-") as tmp:
        install_kernel_spec(Path(tmp))
        for f in files:
            ok, seconds = execute(f, args.html)
            total += seconds
            failures += not ok
            if ok:
                print(f"ok   {f} {seconds:6.1f} s", flush=True)
    print(f"{len(files) - failures}/{len(files)} notebook(s) ran, {total:.1f} s in all")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
