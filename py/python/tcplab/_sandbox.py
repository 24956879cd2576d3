"""Run Python code in a network of its own, traced and captured: ``sandbox(fn)`` and
``run_python(path)``.

Without root, ``tcplab.trace()`` polls sock_diag and can miss a socket that lived less than
one poll, and ``tcplab.capture()`` is refused (it needs CAP_NET_RAW). Any user may make a
user + network namespace of their own, and has every capability inside it. So the code to
observe runs in a child process that moves into such a namespace (its own ``lo``, brought up,
and nothing else), and the child traces (sock_diag polling, which sees that namespace only)
and captures every TCP segment on its ``lo`` while the code runs. Both ends of every
connection live in the namespace, so the Timeline shows both sides, and the segments show
what was said even when a state was too brief to poll.

What it can do: any TCP over loopback the code makes (servers and clients, threads, child
processes it starts), on any port, fixed ports included (nothing else uses them there).

What it cannot do:

- reach anything outside: the namespace has only ``lo``; a connection to another host or to
  a server of the notebook's own (on the host's ``lo``) fails;
- change the caller: ``sandbox(fn)`` runs ``fn`` in a forked copy of the process, so what
  it changes in Python objects stays in the copy; only its return value (pickled) comes back;
- run where user namespaces are refused (a default Docker container, Ubuntu 24.04's AppArmor
  default): PermissionError then says why, and ``tcplab.trace()`` on the host is the way left;
- see states inside the kernel that polling misses; those are inferred from the model and
  marked "inferred", and the segments say what happened on the wire.
"""

from __future__ import annotations

import json
import os
import pickle
import runpy
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from typing import Any, Callable

from . import _native

DEFAULT_TIMEOUT = 60.0
"""Seconds the sandboxed code may run before its process is killed."""

SETTLE = 0.05
"""Seconds the trace keeps running after the code returns, for the last ACKs and polls."""


class SandboxRun:
    """What ran in a sandbox: ``value`` (what ``fn`` returned; None for ``run_python``),
    ``timeline`` (state changes of both sides and the segments, one clock), ``segments``
    (``timeline.segments``, a DataFrame), ``backend`` and ``note`` (how it traced),
    ``missed`` (what polling may have missed, see ``Trace.missed``), ``capture_stats``,
    ``namespace`` (what was made). ``run_python`` also fills ``returncode``, ``stdout`` and
    ``stderr`` of the script.
    """

    def __init__(self, payload: dict[str, Any], value: Any = None):
        self.value = value
        self.timeline = _native.Timeline.from_json(
            payload["timeline"], backend=payload.get("backend"), note=payload.get("note")
        )
        self.backend: str | None = payload.get("backend")
        self.note: str | None = payload.get("note")
        self.missed: dict[str, Any] | None = payload.get("missed")
        self.capture_stats: dict[str, Any] | None = payload.get("capture_stats")
        self.namespace: str = payload.get("namespace", "")
        self.returncode: int | None = payload.get("returncode")
        self.stdout = ""
        self.stderr = ""

    @property
    def segments(self) -> Any:
        """The captured segments, as a pandas DataFrame (see ``Timeline.segments``)."""
        return self.timeline.segments

    def __repr__(self) -> str:
        return (
            f"SandboxRun({len(self.timeline)} state changes, "
            f"{len(self.timeline.segments_to_dicts())} segments, {self.namespace})"
        )

    def _repr_svg_(self) -> str | None:
        """Jupyter draws a sandbox run as its timeline's ladder."""
        return self.timeline._repr_svg_()


def _observe(
    body: Callable[[], Any], port: Any, capture: bool, interval_ms: float, settle: float
) -> tuple[dict[str, Any], Any, BaseException | None]:
    """In the namespace: trace (and capture) while ``body`` runs."""
    tr = _native.trace(port=port, backend="poll", interval_ms=interval_ms, capture=capture)
    tr.start()
    value: Any = None
    error: BaseException | None = None
    try:
        value = body()
    except BaseException as e:  # handed to the caller, re-raised there
        error = e
    finally:
        time.sleep(settle)
        timeline = tr.stop()
    payload = {
        "timeline": timeline.to_json_object(),
        "backend": tr.backend,
        "note": tr.note,
        "missed": tr.missed,
        "capture_stats": tr.capture_stats,
    }
    return payload, value, error


def _check(port: Any, timeout: float, interval_ms: float, settle: float) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds, not {type(timeout).__name__}")
    if not 0.1 <= timeout <= 86_400:
        raise ValueError(f"timeout {timeout} is outside 0.1..86400 seconds")
    if isinstance(settle, bool) or not isinstance(settle, (int, float)) or not 0 <= settle <= 10:
        raise ValueError(f"settle must be a number of seconds in 0..10, not {settle!r}")
    # The port and the interval are checked by trace() itself; check them here too, so that a
    # mistake is raised in the caller, not in the child.
    _native.trace(port=port, backend="poll", interval_ms=interval_ms)


def sandbox(
    fn: Callable[..., Any],
    *args: Any,
    port: int | list[int] | None = None,
    capture: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    interval_ms: float = 1.0,
    settle: float = SETTLE,
    **kwargs: Any,
) -> SandboxRun:
    """Run ``fn(*args, **kwargs)`` in a user + network namespace of its own, traced and
    captured, and return a SandboxRun: both sides' state changes and every segment, without
    root.

    The call forks: the child enters the namespace (its own ``lo``, nothing else), starts the
    tracer (sock_diag polling, which sees only the namespace) and, with ``capture``, the
    capture of every TCP segment on its ``lo``; then calls ``fn``, stops both after
    ``settle`` seconds, and sends the Timeline and ``fn``'s return value (pickled) back.
    ``fn``'s exception is raised here. port: the ports to watch (None: every TCP socket in
    the namespace, which holds only what ``fn`` makes). timeout: seconds before the child is
    killed (TimeoutError). Nothing outlives the call: the namespace ends with the child,
    which is killed on timeout, on KeyboardInterrupt, and if this process dies.

    Raises PermissionError where user namespaces are refused, saying how to allow them.

    Example:

    >>> import socket, tcplab
    >>> def close_both():
    ...     srv = socket.create_server(("127.0.0.1", 5000))
    ...     c = socket.create_connection(("127.0.0.1", 5000)); a, _ = srv.accept()
    ...     c.close(); a.close(); srv.close()
    >>> run = tcplab.sandbox(close_both)
    >>> sorted(set(run.timeline.final_states().values()))
    ['CLOSE', 'TIME_WAIT']
    >>> "FIN, ACK" in list(run.segments["flags"])
    True
    """
    if not callable(fn):
        raise TypeError(f"sandbox needs a function to call, not {type(fn).__name__}")
    _check(port, timeout, interval_ms, settle)
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # A notebook's kernel has threads; the child uses none of them (it runs fn alone).
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        code = 0
        try:
            namespace = _native._enter_namespace()
            payload, value, error = _observe(
                lambda: fn(*args, **kwargs), port, capture, interval_ms, settle
            )
            payload["namespace"] = namespace
            try:
                data = pickle.dumps(("ok", payload, value, error))
            except Exception as e:  # said to the caller
                what = "its exception" if error is not None else "its return value"
                data = pickle.dumps(("unpicklable", f"{what} cannot be sent back: {e}", None, None))
        except BaseException as e:  # said to the caller
            data = pickle.dumps(("failed", type(e).__name__, str(e), traceback.format_exc()))
            code = 1
        try:
            with os.fdopen(write_fd, "wb") as out:
                out.write(data)
        finally:
            os._exit(code)
    os.close(write_fd)
    try:
        data = _read_all(read_fd, time.monotonic() + timeout)
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    if not data:
        raise _native.TcplabError(f"the sandboxed child ended ({_status(status)}) without a result")
    kind, a, b, c = pickle.loads(data)
    if kind == "failed":
        if a == "PermissionError":
            raise PermissionError(f"{b}. tcplab.trace() on the host works without a namespace")
        raise _native.TcplabError(f"the sandbox could not run: {a}: {b}\n{c}")
    if kind == "unpicklable":
        raise _native.TcplabError(f"{getattr(fn, '__name__', 'the function')} ran, but {a}")
    if c is not None:
        raise c
    return SandboxRun(a, b)


def _read_all(fd: int, deadline: float) -> bytes:
    """Everything from the pipe until the child closes it; TimeoutError past the deadline."""
    chunks: list[bytes] = []
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the sandboxed code did not finish in time; it was killed")
            if not sel.select(timeout=min(left, 1.0)):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)


def _status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def run_python(
    path: str | os.PathLike[str],
    *argv: str,
    port: int | list[int] | None = None,
    capture: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    interval_ms: float = 1.0,
    settle: float = SETTLE,
) -> SandboxRun:
    """Run the Python script at ``path`` (with ``argv``) in a user + network namespace of its
    own, traced and captured, as ``sandbox`` does for a function; return a SandboxRun with
    the script's ``returncode``, ``stdout`` and ``stderr``.

    The script runs in a fresh interpreter (this one's ``sys.executable``) as ``__main__``; a
    script that fails gives its traceback in ``stderr`` and a returncode of 1, it does not
    raise here. TimeoutError after ``timeout`` seconds (the script is killed), PermissionError
    where user namespaces are refused.

    Example:

    >>> import pathlib, tempfile, tcplab
    >>> script = pathlib.Path(tempfile.mkdtemp()) / "close.py"
    >>> _ = script.write_text(
    ...     "import socket\\n"
    ...     "srv = socket.create_server(('127.0.0.1', 8080))\\n"
    ...     "c = socket.create_connection(('127.0.0.1', 8080)); a, _ = srv.accept()\\n"
    ...     "a.close(); c.close(); print('closed')\\n")
    >>> run = tcplab.run_python(script)
    >>> run.returncode, run.stdout
    (0, 'closed\\n')
    >>> int((run.segments["flags"] == "FIN, ACK").sum())
    2
    """
    script = os.fspath(path)
    if not os.path.isfile(script):
        raise FileNotFoundError(f"no Python script at {script}")
    _check(port, timeout, interval_ms, settle)
    cfg = {"port": port, "capture": capture, "interval_ms": interval_ms, "settle": settle}
    fd, result = tempfile.mkstemp(prefix="tcplab-sandbox-", suffix=".pickle")
    os.close(fd)
    try:
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _CHILD, result, json.dumps(cfg), script, *argv],
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise TimeoutError(
                f"{script} did not finish within {timeout:g} s in the sandbox; it was killed"
            ) from None
        with open(result, "rb") as f:
            data = f.read()
    finally:
        os.unlink(result)
    if not data:
        raise _native.TcplabError(
            f"the sandbox for {script} ended (exit code {proc.returncode}) without a result: "
            f"{proc.stderr[-2000:].strip()}"
        )
    kind, a, _, _ = pickle.loads(data)
    if kind == "failed":
        if "PermissionError" in a:
            raise PermissionError(f"{a}. tcplab.trace() on the host works without a namespace")
        raise _native.TcplabError(f"the sandbox could not run {script}: {a}")
    out = SandboxRun(a)
    out.returncode = a.get("returncode")
    out.stdout = proc.stdout
    out.stderr = proc.stderr
    return out


_CHILD = "import sys; from tcplab._sandbox import _child_main; sys.exit(_child_main(sys.argv[1:]))"
"""The child's program: ``python -c _CHILD RESULT CONFIG SCRIPT [ARGS]``."""


def _child_main(argv: list[str]) -> int:
    """In the child of ``run_python``: enter the namespace, observe the script, write."""
    result, cfg_text, script, *args = argv
    cfg = json.loads(cfg_text)
    returncode = 0

    def body() -> None:
        nonlocal returncode
        sys.argv = [script, *args]
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as e:
            returncode = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:  # the script's failure is reported, not raised
            traceback.print_exc()
            returncode = 1
        finally:
            sys.stdout.flush()

    try:
        namespace = _native._enter_namespace()
        payload, _, _ = _observe(
            body, cfg["port"], cfg["capture"], cfg["interval_ms"], cfg["settle"]
        )
        payload["namespace"] = namespace
        payload["returncode"] = returncode
        data = pickle.dumps(("ok", payload, None, None))
    except BaseException as e:  # said to the caller
        data = pickle.dumps(("failed", f"{type(e).__name__}: {e}", None, None))
    with open(result, "wb") as f:
        f.write(data)
    return 0
