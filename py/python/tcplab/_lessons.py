"""Lessons from Python: the catalog, and running a lesson binary in a child process.

A lesson runs as its own process (``NN-name --json``) so that every socket it leaks ends
with the run, whatever the notebook does next. The report it prints is graded by the kernel
(sock_diag on the lesson's own server port), never by what the program believes.

Where the binaries come from, in order: ``$TCPLAB_BIN_DIR``; a fresh build of the lesson
when the notebook runs inside a tcplab checkout with ``cargo`` on the PATH (so a student's
edit, or the desk copy of ``variant="student"``, is what runs); the ``bin/`` folder inside
this package (filled by ``py/build_bins.py`` before the wheel is built, so users need no Rust
toolchain); the workspace's ``target/release`` and ``target/debug`` recorded at build time.
"""

from __future__ import annotations

import atexit
import html
import json
import os
import selectors
import shutil
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from typing_extensions import Self

from . import _native

# The limits are core's (tcplab_core::limits), the same ones the binaries check.
MAX_CONNECTIONS: int = _native.MAX_CONNECTIONS
"""The most connections a lesson accepts (the binaries refuse more)."""

DEFAULT_TIMEOUT: float = _native.LESSON_DEADLINE_SECS
"""Seconds a lesson may take before its child process is killed (not counting ``hold``)."""

MAX_CHURN_SECS: float = _native.MAX_CHURN_SECS
"""The longest churn phase a lesson accepts (``--churn-secs``)."""

BUILD_HINT = (
    "build them with `cargo build --release -p tcplab-exercises --bins` in the tcplab "
    "workspace, then either reinstall the package after `python py/build_bins.py` (which "
    "copies them into py/python/tcplab/bin) or set TCPLAB_BIN_DIR to target/release"
)

_live: weakref.WeakSet[LessonRun] = weakref.WeakSet()


def lessons() -> list[dict[str, Any]]:
    """The lesson catalog (exercises/lessons.toml), one dict per lesson.

    Keys: id, slug, title, summary, chapter, notebook, hints, churn (True when the lesson has
    a churn phase, see run()'s churn_secs), and binary: a list of
    {"name", "expect", "student"} (expect is the verdict the kernel must give: "leak" or
    "clean").

    Example:

    >>> import tcplab
    >>> [b["name"] for b in tcplab.lessons()[2]["binary"]]
    ['03-close-wait-leak', '03-close-wait-fixed']
    """
    out: list[dict[str, Any]] = json.loads(_native._catalog_json())
    return out


def bin_dirs() -> list[Path]:
    """The folders searched for lesson binaries, in order.

    Example:

    >>> import tcplab
    >>> any(d.name == "bin" for d in tcplab.bin_dirs())
    True
    """
    dirs = []
    env = os.environ.get("TCPLAB_BIN_DIR")
    if env:
        dirs.append(Path(env))
    dirs.append(Path(__file__).resolve().parent / "bin")
    target = Path(_native.BUILD_TARGET_DIR)
    dirs += [target / "release", target / "debug"]
    return dirs


def checkout(start: Path | None = None) -> Path | None:
    """The root of the tcplab checkout that holds ``start`` (the current folder by default),
    or None: the first folder up from it with ``Cargo.toml`` and ``exercises/lessons.toml``.

    Example:

    >>> import tcplab, tempfile
    >>> tcplab.checkout(Path(tempfile.gettempdir())) is None
    True
    """
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "Cargo.toml").is_file() and (d / "exercises" / "lessons.toml").is_file():
            return d
    return None


def build_in_checkout(name: str, root: Path) -> Path:
    """Build one lesson binary (or a desk copy, ``NN-slug-student``) in the checkout at
    ``root`` with cargo, release mode, and return its path. TcplabError carries the
    compiler's messages when the build fails."""
    cargo = shutil.which("cargo")
    if cargo is None:
        raise _native.TcplabError("cargo is not on the PATH: cannot build from the checkout")
    package = "tcplab-desk" if name.endswith("-student") else "tcplab-exercises"
    if package == "tcplab-desk" and not (root / "exercises/desk/src/bin" / f"{name}.rs").is_file():
        lesson = name.split("-", 1)[0]
        raise _native.TcplabError(
            f"you have no copy of lesson {lesson} yet: `cargo lab start {lesson}` makes one"
        )
    out = subprocess.run(
        [cargo, "build", "--release", "--quiet", "-p", package, "--bin", name],
        cwd=root,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise _native.TcplabError(
            f"cargo could not build {name} in {root}:\n{out.stderr.strip()[-4000:]}"
        )
    target = Path(os.environ.get("CARGO_TARGET_DIR") or root / "target")
    if not target.is_absolute():
        target = root / target
    return target / "release" / name


def _source_build(name: str, build: bool | None) -> Path | None:
    """The freshly built binary when ``build`` asks for it (True) or allows it (None: inside
    a checkout with cargo, whose target folder we may write); None to use the installed
    ones."""
    if build is False or os.environ.get("TCPLAB_BIN_DIR"):
        return None
    root = checkout()
    if root is None:
        if build:
            raise _native.TcplabError(
                f"build=True needs a tcplab checkout: none holds {Path.cwd()}"
            )
        return None
    if build is None:
        target = Path(os.environ.get("CARGO_TARGET_DIR") or root / "target")
        writable = os.access(target if target.exists() else root, os.W_OK)
        if shutil.which("cargo") is None or not writable:
            return None
    return build_in_checkout(name, root)


def find_binary(name: str) -> Path:
    """The path of a lesson binary by name; TcplabError says how to build it when missing.

    Example:

    >>> import tcplab
    >>> tcplab.find_binary("03-close-wait-leak").name
    '03-close-wait-leak'
    """
    for d in bin_dirs():
        p = d / name
        if p.is_file() and os.access(p, os.X_OK):
            return p
    searched = ", ".join(str(d) for d in bin_dirs())
    raise _native.TcplabError(
        f"lesson binary {name} not found (looked in {searched}); {BUILD_HINT}"
    )


def _check_number(value: Any, what: str, lo: float, hi: float, integer: bool) -> int | float | None:
    if value is None:
        return None
    ok_types: tuple[type, ...] = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok_types):
        kind = "an int" if integer else "a number"
        raise TypeError(f"{what} must be {kind}, not {type(value).__name__}")
    number = cast("int | float", value)
    if not (lo <= number <= hi):  # also refuses NaN
        raise ValueError(f"{what} {value} is outside {lo:g}..{hi:g}")
    return number


class LessonRun:
    """One run of a lesson binary: its verdict, its JSON report and its Timeline.

    Attributes: lesson (id), binary (name), verdict ("leak" or "clean"), expected (what this
    binary should show), passed (verdict == expected), report (the whole JSON report as a
    dict: lesson, binary, backend, server_port, verdict, expected, observed, facts,
    timeline, and segments when captured), timeline (a Timeline), segments (the captured
    segments as a DataFrame: lessons about the wire capture on every run, any lesson with
    ``pcap``), server_port, observed, facts. With ``hold`` the child keeps its sockets alive
    after reporting: ``alive``, ``wait()`` and ``stop()`` manage it.

    Example:

    >>> import tcplab
    >>> r = tcplab.run("03", variant="fixed", connections=3)
    >>> r.verdict, r.passed
    ('clean', True)
    """

    def __init__(self, report: dict[str, Any], process: subprocess.Popen[str], stderr: str = ""):
        self.report = report
        self.lesson: str = report["lesson"]
        self.binary: str = report["binary"]
        self.verdict: str = report["verdict"]
        self.expected: str = report["expected"]
        self.server_port: int | None = report.get("server_port")
        self.observed: dict[str, dict[str, int]] = report.get("observed", {})
        self.facts: dict[str, Any] = report.get("facts", {})
        self.timeline = _native.Timeline.from_json(
            json.dumps(report.get("timeline") or {"events": []}),
            backend=report.get("backend"),
        )
        self.stderr = stderr
        self._process = process

    @property
    def segments(self) -> Any:
        """The segments captured on the lesson's port, as a pandas DataFrame (empty when the
        run did not capture; see ``Timeline.segments``)."""
        return self.timeline.segments

    @property
    def passed(self) -> bool:
        """Whether the kernel's verdict is the one this binary is expected to give."""
        return self.verdict == self.expected

    @property
    def alive(self) -> bool:
        """Whether the child process (holding its sockets) still runs."""
        return self._process.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to exit (after its hold); returns its exit code."""
        return self._process.wait(timeout=timeout)

    def stop(self) -> None:
        """End the child now (its sockets close with it)."""
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        mark = "as expected" if self.passed else f"expected {self.expected}"
        return f"LessonRun({self.binary}: {self.verdict}, {mark}, port {self.server_port})"

    def _repr_html_(self) -> str:
        color = "green" if self.passed else "red"
        rows = "".join(
            f"<tr><td>{html.escape(side)}</td><td>{html.escape(state)}</td><td>{n}</td></tr>"
            for side, states in sorted(self.observed.items())
            for state, n in states.items()
        )
        facts = "".join(
            f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in self.facts.items()
        )
        return (
            f"<p><b>{html.escape(self.binary)}</b>: verdict "
            f"<b style='color:{color}'>{html.escape(self.verdict)}</b> (expected "
            f"{html.escape(self.expected)}), server port {self.server_port}, observed with "
            f"{html.escape(str(self.report.get('backend')))}</p>"
            "<table><thead><tr><th>side</th><th>state</th><th>sockets</th></tr></thead>"
            f"<tbody>{rows}</tbody></table><ul>{facts}</ul>"
        )


def _read_line(proc: subprocess.Popen[str], deadline: float) -> str | None:
    """The first line of the child's stdout, or None on EOF; TimeoutError past deadline."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if not sel.select(timeout=left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return buf.decode() if buf else None
            buf += chunk
    return buf.decode().split("\n", 1)[0]


def run(
    lesson: str | int,
    variant: str | None = None,
    connections: int | None = None,
    hold: float | None = None,
    backend: str = "auto",
    timeout: float = DEFAULT_TIMEOUT,
    churn_secs: float | None = None,
    churn_rate: float | None = None,
    build: bool | None = None,
    pcap: str | os.PathLike[str] | None = None,
) -> LessonRun:
    """Run a lesson binary in a child process and return its kernel-graded report.

    lesson: an id ("03", 3), a slug ("close-wait") or a full binary name
    ("03-close-wait-fixed"). variant: "leak" or "fixed" (resolved from the catalog's verdicts,
    as `tcplab run --variant` does) or a full binary name; without it, the binary that shows
    the lesson's problem. connections: how many connections to make (1..20000; each
    lesson has a default). hold: seconds the child keeps its sockets after reporting (0..3600;
    run() returns at once with the child alive, see LessonRun.stop). backend: how the lesson
    watches ("auto", "tracepoint", "poll"). timeout: seconds before the child is killed and
    TcplabError raised. churn_secs (lessons 05 and 09, 0.01..10): afterwards, run the churn
    generator that long in a private network namespace; its samples are in
    ``facts["churn_samples"]``. churn_rate (with churn_secs, 1..1000000): connections per
    second to aim at instead of full speed. build: None (the default) builds the binary from
    the checkout's sources when the current folder is inside a tcplab checkout and cargo is
    there, so an edited lesson or your desk copy (``variant="student"``) is what runs, and
    uses the installed binaries otherwise; True always builds (TcplabError outside a
    checkout, or with the compiler's errors); False never builds. pcap: a file to write the
    lesson's segments to as pcapng (state changes as packet comments, for Wireshark); the
    run's ``segments`` then hold them. Lessons about the wire (07, 08, 10, 11) capture on
    every run; without root a capturing lesson runs in a user + network namespace of its
    own, or says in its stderr that it goes on without segments.

    Raises ValueError for unknown lessons or variants (listing the valid ones) and numbers out
    of range, TypeError for wrong types, TcplabError when the binary is missing or fails.

    Example:

    >>> import tcplab
    >>> r = tcplab.run("03", variant="leak", connections=4)
    >>> r.verdict, r.observed["server"]["CLOSE_WAIT"]
    ('leak', 4)
    """
    lesson_id, name, _expect = _native._resolve(lesson, variant)
    n = _check_number(connections, "connections", 1, MAX_CONNECTIONS, integer=True)
    held = _check_number(hold, "hold", 0, _native.MAX_HOLD_SECS, integer=False)
    limit = _check_number(timeout, "timeout", 0.1, 86_400, integer=False)
    assert limit is not None
    churn = _check_number(
        churn_secs, "churn_secs", _native.MIN_CHURN_SECS, MAX_CHURN_SECS, integer=False
    )
    rate = _check_number(
        churn_rate, "churn_rate", _native.MIN_CHURN_RATE, _native.MAX_CHURN_RATE, integer=False
    )
    if rate is not None and churn is None:
        raise ValueError("churn_rate needs churn_secs (how long to churn at that rate)")
    churn_lessons = [x["id"] for x in lessons() if x.get("churn")]
    if churn is not None and lesson_id not in churn_lessons:
        raise ValueError(
            f"churn_secs is for lessons {' and '.join(churn_lessons)}; lesson {lesson_id} has no "
            "churn phase"
        )
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str, not {type(backend).__name__}")
    if backend not in _native.BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(_native.BACKENDS)}")
    if build is not None and not isinstance(build, bool):
        raise TypeError(f"build must be a bool or None, not {type(build).__name__}")
    if name.endswith("-student"):
        root = checkout() if build is not False else None
        if root is None:
            raise ValueError(
                f'variant "student" is your own copy ({name}): it is built from the desk of a '
                f"tcplab checkout, and {Path.cwd()} is in none. In the checkout, "
                f'`cargo lab start {lesson_id}` makes the copy; or choose "leak" or "fixed"'
            )
        path = build_in_checkout(name, root)
    else:
        path = _source_build(name, build) or find_binary(name)
    args = [str(path), "--json", "--backend", backend]
    if n is not None:
        args += ["--connections", str(n)]
    if held is not None:
        args += ["--hold", repr(float(held))]
    if churn is not None:
        args += ["--churn-secs", repr(float(churn))]
    if rate is not None:
        args += ["--churn-rate", repr(float(rate))]
    if pcap is not None:
        if not isinstance(pcap, (str, os.PathLike)):
            raise TypeError(f"pcap must be a path, not {type(pcap).__name__}")
        args += ["--pcap", os.fspath(pcap)]
    err = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True
    )
    deadline = time.monotonic() + limit

    def fail(why: str) -> _native.TcplabError:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        err.seek(0)
        tail = err.read()[-2000:].strip()
        err.close()
        detail = f": {tail}" if tail else ""
        return _native.TcplabError(f"lesson {lesson_id} ({name}) {why}{detail}")

    try:
        line = _read_line(proc, deadline)
    except TimeoutError:
        raise fail(f"did not report within {limit:g} s; killed it") from None
    if not line:
        raise fail(f"exited with code {proc.wait(timeout=10)} without a report")
    try:
        report = json.loads(line)
    except json.JSONDecodeError:
        raise fail(f"printed something that is not a JSON report: {line[:200]!r}") from None
    if held is None:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            raise fail(f"did not exit within {limit:g} s after reporting; killed it") from None
    err.seek(0)
    stderr = err.read()
    err.close()
    out = LessonRun(report, proc, stderr)
    if held is not None:
        _live.add(out)
    return out


def facts_table(*runs: LessonRun) -> Any:
    """Several runs' facts side by side, as a pandas DataFrame: one column per binary, the
    verdict in the first row, then each fact in the order the runs reported them (not sorted).
    Values keep their own type, an int stays an int, and a fact one run lacks is None (the
    table is of dtype object, so pandas never turns a column into floats and NaN).

    Example:

    >>> import tcplab
    >>> t = tcplab.facts_table(tcplab.run("03", variant="leak", connections=2))
    >>> t.index[0], t.iloc[0, 0]
    ('verdict', 'leak')
    """
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    keys = ["verdict"]
    for r in runs:
        keys += [k for k in r.facts if k not in keys]
    columns = {
        r.binary: [r.verdict if k == "verdict" else r.facts.get(k) for k in keys] for r in runs
    }
    return pd.DataFrame(columns, index=pd.Index(keys, name="fact"), dtype=object)


@atexit.register
def _stop_held_children() -> None:
    for r in list(_live):
        r.stop()
