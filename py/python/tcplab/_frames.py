"""pandas tables and matplotlib plots for tcplab's native types.

Imported only when a table or a plot is asked for, so ``import tcplab`` needs neither pandas
nor matplotlib. The native side hands over packed columns (bytes buffers of little-endian
numbers) that numpy reads in one step; that is what keeps ``snapshot().to_pandas()`` fast at
100k sockets.
"""

from __future__ import annotations

from typing import Any

from . import _native


def sockets_frame(cols: dict[str, Any]) -> Any:
    """A DataFrame from ``SocketTable._columns()`` (one row per socket)."""
    import numpy as np
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    n = cols["n"]
    codes = np.frombuffer(cols["state_code"], dtype=np.uint8).astype(np.int16) - 1
    state = pd.Categorical.from_codes(codes, categories=_native.states())
    timer = np.frombuffer(cols["timer_ms"], dtype="<i8")
    data: dict[str, Any] = {
        "state": state,
        "local_addr": cols["local_addr"],
        "local_port": np.frombuffer(cols["local_port"], dtype="<u2"),
        "remote_addr": cols["remote_addr"],
        "remote_port": np.frombuffer(cols["remote_port"], dtype="<u2"),
        "timer_ms": pd.arrays.IntegerArray(timer.copy(), timer < 0),
        "recv_q": np.frombuffer(cols["recv_q"], dtype="<u4"),
        "send_q": np.frombuffer(cols["send_q"], dtype="<u4"),
        "uid": np.frombuffer(cols["uid"], dtype="<u4"),
        "inode": np.frombuffer(cols["inode"], dtype="<u8"),
    }
    if "pids" in cols:
        data["pids"] = cols["pids"]
    return pd.DataFrame(data, index=pd.RangeIndex(n))


TIMELINE_COLUMNS = [
    "t_ms",
    "endpoint",
    "from_state",
    "to_state",
    "source",
    "local_addr",
    "local_port",
    "remote_addr",
    "remote_port",
    "pid",
    "side",
    "segment",
]


def timeline_frame(timeline: _native.Timeline) -> Any:
    """A DataFrame, one row per event, in time order."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    rows = []
    for e in timeline.events:
        d = e.to_dict()
        d["t_ms"] = d.pop("t_us") / 1000.0
        d["endpoint"] = e.endpoint
        rows.append(d)
    return pd.DataFrame(rows, columns=TIMELINE_COLUMNS)


def plot_timeline(timeline: _native.Timeline, ax: Any = None) -> Any:
    """Step plot of sockets per state over time; returns the Axes."""
    if ax is None:
        import matplotlib.pyplot as plt  # type: ignore[import-untyped,unused-ignore]

        _, ax = plt.subplots(figsize=(8, 3.5))
    points = timeline.state_counts()
    names = [s for s in _native.states() if any(s in c for _, c in points)]
    ts = [t / 1000.0 for t, _ in points]
    for name in names:
        ax.step(ts, [c.get(name, 0) for _, c in points], where="post", label=name)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("sockets")
    title = "TCP states over time"
    if timeline.backend:
        title += f" ({timeline.backend})"
    ax.set_title(title)
    if names:
        ax.legend(loc="best", fontsize="small")
    return ax
