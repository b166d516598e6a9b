"""`oxeo-flows graph`: static and per-request task graphs, Mermaid and DOT, graceful without `dot`."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from oxeo_flows import cli
from oxeo_flows.graph import request_graph, static_graph, to_dot, to_mermaid
from oxeo_flows.planning import DayPlan, WorkUnit


def _unit(tile: str, window: str) -> WorkUnit:
    return WorkUnit(tile, "sentinel-2", window, (DayPlan(date(2024, 1, 5), ()),))


def test_static_graphs_follow_the_flow_steps() -> None:
    water = static_graph("water")
    assert water.edges == [
        ("params", "search"),
        ("search", "extract"),
        ("extract", "predict"),
        ("predict", "timeseries"),
        ("timeseries", "report"),
    ]
    assert static_graph("predict").edges == [("params", "predict"), ("predict", "report")]


def test_request_graph_chains_units_of_one_archive_and_joins_tiles_per_aoi() -> None:
    units = [_unit("A", "2024-01"), _unit("A", "2024-02"), _unit("B", "2024-01")]
    g = request_graph(
        "water",
        units,
        archives=[("A", "sentinel-2"), ("B", "sentinel-2")],
        aoi_tiles={"lake": ["A", "B"], "pond": ["B"]},
    )
    x_a1, x_a2, x_b1 = "x_A_sentinel_2_2024_01", "x_A_sentinel_2_2024_02", "x_B_sentinel_2_2024_01"
    assert set(g.edges) == {
        (x_a1, x_a2),  # one writer per archive
        (x_a2, "p_A_sentinel_2"),
        (x_b1, "p_B_sentinel_2"),
        ("p_A_sentinel_2", "t_lake"),
        ("p_B_sentinel_2", "t_lake"),
        ("p_B_sentinel_2", "t_pond"),
    }
    mermaid = to_mermaid(g)
    assert mermaid.splitlines()[1] == "flowchart LR"
    assert f"    {x_a1} --> {x_a2}" in mermaid
    dot = to_dot(g)
    assert dot.startswith('digraph "water" {') and f"    {x_a1} -> {x_a2};" in dot


def test_cli_graph_writes_dot_when_graphviz_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    out = tmp_path / "water.png"
    assert cli.main(["graph", "water", "--format", "dot", "--output", str(out)]) == 0
    assert not out.exists()
    assert (tmp_path / "water.dot").read_text().startswith('digraph "water"')
    assert "Graphviz `dot` not found" in capsys.readouterr().out


def test_cli_graph_of_a_request_uses_the_catalog_and_archive_only(
    sample: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from oxeo_flows.extract import SOURCE_READS

    reads = SOURCE_READS.value
    args = [
        "graph", "water",
        "--param", f"aoi={sample / 'aoi.geojson'}",
        "--param", f"catalog={sample / 'catalog.json'}",
        "--param", f"storage={tmp_path / 'archive'}",
        "--param", "start_date=2024-01-01",
        "--param", "end_date=2024-02-29",
    ]  # fmt: skip
    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert SOURCE_READS.value == reads
    # 4 tiles x 2 months of extraction, 4 predict tasks, 1 AOI
    assert text.count('["extract ') == 8 and text.count('["predict ') == 4
    assert '["timeseries sample-lake"]' in text


def test_cli_graph_unknown_flow(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["graph", "nope"]) == 2
    assert capsys.readouterr().err.startswith("error: FLOW: unknown flow 'nope'")
