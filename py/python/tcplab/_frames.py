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
    """A DataFrame, one row per event, in time order: states as categories in the kernel's
    order, ports and pids as nullable integers (never floats), text as strings."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    rows = []
    for e in timeline.events:
        d = e.to_dict()
        d["t_ms"] = d.pop("t_us") / 1000.0
        d["endpoint"] = e.endpoint
        rows.append(d)
    df = pd.DataFrame(rows, columns=TIMELINE_COLUMNS)
    states = pd.CategoricalDtype(_native.states(), ordered=True)
    for col in ("from_state", "to_state"):
        df[col] = df[col].astype(states)
    for col in ("local_port", "remote_port", "pid"):
        df[col] = df[col].astype("Int64")
    for col in ("endpoint", "source", "local_addr", "remote_addr", "side", "segment"):
        df[col] = df[col].astype("string")
    df["t_ms"] = df["t_ms"].astype("float64")
    return df


def plot_timeline(timeline: _native.Timeline, ax: Any = None) -> Any:
    """Swimlanes: one row per endpoint, coloured by state (see ``tcplab.plots.lanes``)."""
    from . import plots

    return plots.lanes(timeline, ax=ax)


SEGMENT_COLUMNS = [
    "t_ms",
    "src",
    "dst",
    "flags",
    "seq",
    "ack",
    "len",
    "win",
    "raw_seq",
    "raw_ack",
    "mss",
    "wscale",
]


def segments_frame(rows: list[dict[str, Any]]) -> Any:
    """A DataFrame, one row per captured segment, in time order: addresses and flags as
    strings ("FIN, ACK", the order Wireshark prints), sequence numbers and lengths as int64,
    the SYN-only options (mss, wscale) as nullable integers, never floats."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    data = []
    for d in rows:
        d = dict(d)
        d["t_ms"] = d.pop("t_us") / 1000.0
        d["flags"] = ", ".join(d["flags"])
        data.append(d)
    df = pd.DataFrame(data, columns=SEGMENT_COLUMNS)
    df["t_ms"] = df["t_ms"].astype("float64")
    for col in ("src", "dst", "flags"):
        df[col] = df[col].astype("string")
    for col in ("seq", "ack", "len", "win", "raw_seq", "raw_ack"):
        df[col] = df[col].astype("int64")
    for col in ("mss", "wscale"):
        df[col] = df[col].astype("Int64")
    return df
