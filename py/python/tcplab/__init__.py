"""tcplab: watch TCP connections end on a real Linux kernel, from Python.

- ``snapshot()``: the sockets the kernel has now (sock_diag, like ``ss -tan``), as a
  ``SocketTable`` with ``counts()`` and ``to_pandas()``.
- ``trace()``: a context manager that records every state change on some ports while your
  code runs, as a ``Timeline`` (``events``, ``to_pandas()``, ``state_counts()``, ``plot()``,
  ``ladder()``); with ``capture=True`` also the segments on the wire (``segments``, a
  DataFrame), on the same clock. Capture needs root (CAP_NET_RAW).
- ``capture()``: the segments alone, as a context manager (root).
- ``sandbox(fn)`` and ``run_python(path)``: run your code in a user + network namespace of
  its own, traced and captured, without root: both sides of every connection and every
  segment. It has only its own ``lo`` (no other host, none of the notebook's own servers),
  ``fn`` runs in a forked copy (only its return value comes back), and where user namespaces
  are refused (a default Docker container) it raises PermissionError.
- ``lessons()`` and ``run()``: the lesson catalog, and a lesson binary run in a child process
  with its kernel-graded verdict.
- ``model()``, ``scenarios()``, ``scenario_steps()``, ``Connection`` and ``diagram()``: the
  RFC 9293 model, for the board.

Everything is a thin face over the Rust crate tcplab-core (module ``tcplab._native``).

Example:

>>> import socket, tcplab
>>> srv = socket.create_server(("127.0.0.1", 0))
>>> tcplab.snapshot(port=srv.getsockname()[1]).counts()
{'LISTEN': 1}
>>> srv.close()
"""

from __future__ import annotations

import time
from typing import Callable

from . import _native
from ._lessons import LessonRun, bin_dirs, checkout, facts_table, find_binary, lessons, run
from ._native import (
    Capture,
    Connection,
    Diagram,
    Event,
    Socket,
    SocketTable,
    TcplabError,
    Timeline,
    Trace,
    capture,
    diagram,
    is_root,
    model,
    scenario_steps,
    scenarios,
    snapshot,
    state_name,
    states,
    trace,
)
from ._sandbox import SandboxRun, run_python, sandbox

__version__: str = _native.__version__


def wait_for(
    predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.005
) -> bool:
    """Call ``predicate`` until it returns something true or ``timeout`` seconds pass.

    Returns whether it came true. Handy inside ``with tcplab.trace(...)`` to wait until the
    kernel has shown a state (TIME_WAIT, CLOSE_WAIT) before leaving the block.

    Example:

    >>> import tcplab
    >>> tcplab.wait_for(lambda: True)
    True
    >>> tcplab.wait_for(lambda: False, timeout=0.01)
    False
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


__all__ = [
    "Capture",
    "Connection",
    "Diagram",
    "Event",
    "LessonRun",
    "SandboxRun",
    "Socket",
    "SocketTable",
    "TcplabError",
    "Timeline",
    "Trace",
    "__version__",
    "bin_dirs",
    "capture",
    "checkout",
    "diagram",
    "facts_table",
    "find_binary",
    "is_root",
    "lessons",
    "model",
    "run",
    "run_python",
    "sandbox",
    "scenario_steps",
    "scenarios",
    "snapshot",
    "state_name",
    "states",
    "trace",
    "wait_for",
]
