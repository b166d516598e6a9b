"""Task graphs of the flows, as Mermaid or Graphviz DOT text.

Without a request the graph shows each flow's task types. With a request (AOIs, dates, constellations)
it shows the concrete tasks a run would submit: planning reads catalog and archive metadata only, never
pixels. Extraction units of one archive are chained (one writer per store); each archive's predict task
waits for its last unit; each AOI's time-series task waits for the predict tasks of its tiles.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from oxeo_flows.planning import WorkUnit

STEPS = {
    "extract": ("extract",),
    "predict": ("predict",),
    "timeseries": ("timeseries",),
    "water": ("extract", "predict", "timeseries"),
}
_LABELS = {
    "extract": "extract-unit\\n(tile x constellation x window)",
    "predict": "predict-archive\\n(tile x constellation)",
    "timeseries": "aoi-timeseries\\n(AOI)",
}


@dataclass
class Graph:
    name: str
    nodes: dict[str, str] = field(default_factory=dict)  # id -> label
    edges: list[tuple[str, str]] = field(default_factory=list)

    def add(self, node: str, label: str) -> str:
        self.nodes.setdefault(node, label)
        return node


def _nid(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def static_graph(flow: str) -> Graph:
    """Task types of `flow` in order."""
    g = Graph(flow)
    prev = g.add("params", "parameters\\n(AOIs, dates, constellations)")
    if "extract" in STEPS[flow]:
        prev_search = g.add("search", "search catalog + plan\\n(per constellation)")
        g.edges.append((prev, prev_search))
        prev = prev_search
    for step in STEPS[flow]:
        node = g.add(step, _LABELS[step])
        g.edges.append((prev, node))
        prev = node
    g.edges.append((prev, g.add("report", "artifacts\\n(report, rows, progress)")))
    return g


def request_graph(
    flow: str,
    units: Sequence[WorkUnit],
    archives: Sequence[tuple[str, str]],
    aoi_tiles: dict[str, list[str]],
) -> Graph:
    """Concrete tasks for one request: `archives` = (tile_id, constellation), `aoi_tiles` = AOI -> tiles."""
    g = Graph(flow)
    steps = STEPS[flow]
    last_unit: dict[tuple[str, str], str] = {}
    if "extract" in steps:
        for u in units:
            node = g.add(_nid("x_" + u.name), f"extract {u.name}")
            key = (u.tile_id, u.constellation)
            if key in last_unit:
                g.edges.append((last_unit[key], node))
            last_unit[key] = node
    predicted: dict[str, list[str]] = {}
    if "predict" in steps:
        for tile, const in archives:
            node = g.add(_nid(f"p_{tile}_{const}"), f"predict {tile} {const}")
            if key_node := last_unit.get((tile, const)):
                g.edges.append((key_node, node))
            predicted.setdefault(tile, []).append(node)
    if "timeseries" in steps:
        for aoi, tiles in aoi_tiles.items():
            node = g.add(_nid(f"t_{aoi}"), f"timeseries {aoi}")
            for t in tiles:
                g.edges.extend((p, node) for p in predicted.get(t, []))
    return g


def to_mermaid(g: Graph) -> str:
    lines = [f"%% oxeo-flows task graph: {g.name}", "flowchart LR"]
    lines += [f'    {n}["{label.replace(chr(92) + "n", "<br/>")}"]' for n, label in g.nodes.items()]
    lines += [f"    {a} --> {b}" for a, b in g.edges]
    return "\n".join(lines) + "\n"


def to_dot(g: Graph) -> str:
    lines = [f'digraph "{g.name}" {{', "    rankdir=LR;", "    node [shape=box];"]
    lines += [f'    {n} [label="{label}"];' for n, label in g.nodes.items()]
    lines += [f"    {a} -> {b};" for a, b in g.edges]
    return "\n".join(lines) + "\n}\n"
