"""A PNG of an AOI's water area over time, one series per constellation (matplotlib, no display).

Usable observations are filled markers joined by a line; observations flagged not usable (too much cloud
or no data for the area statistic) are hollow grey markers without a line, so a reader sees them but does
not read them as a drop in water.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.dates as mdates
from matplotlib.figure import Figure  # Figure without pyplot: no display, no global state, thread-safe

COLOURS = {
    "sentinel-2": "#1f77b4",
    "landsat-5": "#8c564b",
    "landsat-7": "#9467bd",
    "landsat-8": "#2ca02c",
    "landsat-9": "#d62728",
}


def timeseries_figure(rows: Sequence[Mapping[str, Any]], title: str) -> Figure:
    """The figure: x = acquisition time (UTC), y = water area in km²; one line per (constellation, model)."""
    fig = Figure(figsize=(9, 4.2), dpi=100)
    ax = fig.add_subplot()
    series: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: r["acquired_at"]):
        series[(r["constellation"], r["model"])].append(r)
    multi_model = len({m for _, m in series}) > 1
    for (const, model), rs in sorted(series.items()):
        colour = COLOURS.get(const, "#333333")
        label = f"{const} ({model})" if multi_model else const
        good = [r for r in rs if r["usable"]]
        bad = [r for r in rs if not r["usable"]]
        ax.plot(
            [r["acquired_at"] for r in good],
            [r["water_area_m2"] / 1e6 for r in good],
            marker="o",
            linestyle="-",
            color=colour,
            label=label,
            gid=f"usable:{const}:{model}",
        )
        if bad:
            ax.plot(
                [r["acquired_at"] for r in bad],
                [r["water_area_m2"] / 1e6 for r in bad],
                marker="o",
                linestyle="none",
                markerfacecolor="none",
                color="#999999",
                label=f"{label}: not usable (clouds / no data)",
                gid=f"unusable:{const}:{model}",
            )
    ax.set_title(title)
    ax.set_ylabel("water area (km²)")
    ax.set_xlabel("acquisition date (UTC)")
    ax.grid(True, alpha=0.3)
    if rows:
        ax.legend(loc="best", fontsize="small")
        ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    else:
        ax.text(0.5, 0.5, "no observations", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def timeseries_png(rows: Sequence[Mapping[str, Any]], title: str) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    timeseries_figure(rows, title).savefig(buf, format="png")
    return buf.getvalue()
