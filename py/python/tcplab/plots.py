"""Plots worth projecting: one place for the choices every tcplab figure makes.

- Counts get integer ticks and an axis that starts at zero, so a flat line is flat and a
  count of 3 is not drawn between 2.5 and 3.5.
- The legend sits outside the data, to the right, where it hides nothing.
- The x axis says its unit.
- A connection is drawn as swimlanes, one row per endpoint coloured by state, instead of one
  step line per state on top of each other.

matplotlib is imported only when a function here runs, as in the rest of the package.

Example:

>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import tcplab
>>> from tcplab import plots
>>> ax = plots.lanes(tcplab.model("client-close"))
>>> [t.get_text() for t in ax.get_yticklabels()][:1]
['client 10.0.0.1:40000']
"""

from __future__ import annotations

from typing import Any

from . import _native

# One colour per state, the same in every figure: the opening in blues, the side that closes
# first in oranges, the side that closes second in greens, the end in grey.
STATE_COLORS = {
    "CLOSE": "#bbbbbb",
    "LISTEN": "#c6dbef",
    "SYN_SENT": "#6baed6",
    "SYN_RECV": "#9ecae1",
    "NEW_SYN_RECV": "#deebf7",
    "ESTABLISHED": "#2171b5",
    "FIN_WAIT1": "#fdae6b",
    "FIN_WAIT2": "#fd8d3c",
    "CLOSING": "#f16913",
    "TIME_WAIT": "#d94801",
    "CLOSE_WAIT": "#74c476",
    "LAST_ACK": "#238b45",
}


def _pyplot() -> Any:
    import matplotlib.pyplot as plt  # type: ignore[import-untyped,unused-ignore]

    return plt


def count_axis(ax: Any, axis: str = "y") -> Any:
    """Make ``axis`` ("y" or "x") of ``ax`` a count: integer ticks, starting at zero."""
    from matplotlib.ticker import MaxNLocator  # type: ignore[import-untyped,unused-ignore]

    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(MaxNLocator(integer=True))
    if axis == "y":
        ax.set_ylim(bottom=0)
    else:
        ax.set_xlim(left=0)
    return ax


def legend_outside(ax: Any, **kwargs: Any) -> Any:
    """The legend to the right of the axes, outside the data; returns it (None if empty)."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    return ax.legend(
        handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, **kwargs
    )


def _name(endpoint: str, side: str | None) -> str:
    return f"{side} {endpoint.split(' -> ')[0]}" if side else endpoint


def lanes(timeline: _native.Timeline, ax: Any = None, min_width_ms: float | None = None) -> Any:
    """One row per endpoint, a bar per state it was in, coloured by state; returns the Axes.

    A state whose start and end fall at the same time (the poll inferred it, or the model
    passed through it in one step) still gets a bar of ``min_width_ms`` (default: 1 % of the
    time shown) so that it can be seen; such bars follow each other in order. Inferred states
    are hatched. The state an endpoint is left in runs to the end of the plot.
    """
    plt = _pyplot()
    events = list(timeline.events)
    endpoints: list[str] = []
    sides: dict[str, str | None] = {}
    for e in events:
        if e.endpoint not in sides:
            endpoints.append(e.endpoint)
            sides[e.endpoint] = e.side
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 0.6 * max(len(endpoints), 2) + 1.2))
    end_ms = max((e.t_us for e in events), default=0) / 1000.0
    span = max(end_ms, 1e-3)
    tail = span * 0.08
    width = min_width_ms if min_width_ms is not None else span * 0.01
    seen: set[str] = set()
    for row, ep in enumerate(endpoints):
        mine = [e for e in events if e.endpoint == ep]
        cursor = mine[0].t_us / 1000.0
        for i, e in enumerate(mine):
            start = max(e.t_us / 1000.0, cursor)
            stop = mine[i + 1].t_us / 1000.0 if i + 1 < len(mine) else end_ms + tail
            length = max(stop - start, width)
            label = e.to_state if e.to_state not in seen else None
            seen.add(e.to_state)
            ax.broken_barh(
                [(start, length)],
                (row - 0.35, 0.7),
                facecolors=STATE_COLORS.get(e.to_state, "#999999"),
                edgecolor="white",
                hatch="///" if e.source == "inferred" else None,
                label=label,
            )
            cursor = start + length
    ax.set_yticks(range(len(endpoints)))
    ax.set_yticklabels([_name(ep, sides[ep]) for ep in endpoints])
    ax.invert_yaxis()
    ax.set_xlim(left=min((e.t_us for e in events), default=0) / 1000.0 - tail / 4)
    ax.set_xlabel("time (ms)")
    title = "TCP states per endpoint"
    if timeline.backend:
        title += f" ({timeline.backend}; hatched: inferred)"
    ax.set_title(title, loc="left")
    ax.text(
        1.0,
        1.01,
        f"a state shorter than {width:.3g} ms is drawn {width:.3g} ms wide",
        transform=ax.transAxes,
        ha="right",
        va="bottom",
        fontsize="x-small",
        color="#555555",
    )
    legend_outside(ax, fontsize="small")
    ax.figure.tight_layout()
    return ax


def counts(timeline: _native.Timeline, states: list[str] | None = None, ax: Any = None) -> Any:
    """Sockets per state over time, as steps: integer counts from zero, legend outside."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.5))
    points = timeline.state_counts()
    names = states or [s for s in _native.states() if any(s in c for _, c in points)]
    ts = [t / 1000.0 for t, _ in points]
    for name in names:
        ax.step(
            ts,
            [c.get(name, 0) for _, c in points],
            where="post",
            label=name,
            color=STATE_COLORS.get(name),
        )
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("sockets")
    count_axis(ax)
    legend_outside(ax, fontsize="small")
    ax.figure.tight_layout()
    return ax
