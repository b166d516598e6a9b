"""`oxeo-flows check [--repair]`: archive and database integrity findings, exact."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
import zarr
from shapely.geometry import box

from oxeo_flows import cli, store
from oxeo_flows.aoi import AOI
from oxeo_flows.archive import Archive, SliceMeta
from oxeo_flows.constellations import CONSTELLATIONS
from oxeo_flows.integrity import check_all, problems
from oxeo_flows.tiling import Tile
from oxeo_flows.timeseries import Observation

S2 = CONSTELLATIONS["sentinel-2"]
TILE = Tile(33, False, 10_000, 49, 499)


def _archive(storage: Path, days: int = 2) -> Archive:
    arc = Archive(str(storage), TILE, S2)
    data = np.ones((len(S2.bands), 1000, 1000), np.uint16)
    for d in range(1, days + 1):
        t = datetime(2024, 1, d, 10, tzinfo=UTC)
        arc.write_slice(data, SliceMeta(t, t.date(), ("i",), None, (1.0,) * 8, (0.0,) * 8, 1.0))
        arc.write_mask("mndwi-v1", d - 1, np.zeros((1000, 1000), np.uint8))
    return arc


def test_clean_archive_has_no_findings(tmp_path: Path) -> None:
    _archive(tmp_path)
    assert check_all(str(tmp_path), None) == []


def test_uneven_lengths_and_stray_mask_flags_are_found_and_repaired(tmp_path: Path) -> None:
    arc = _archive(tmp_path)
    g = zarr.open_group(arc.path, mode="r+", zarr_format=3)
    g["data"].resize((3, *g["data"].shape[1:]))  # a crash mid-resize
    findings = problems(check_all(str(tmp_path), None))
    assert len(findings) == 1 and findings[0].message.startswith("time-indexed arrays of uneven length")
    assert "'data': 3" in findings[0].message and "'time': 2" in findings[0].message
    repaired = check_all(str(tmp_path), None, repair=True)
    assert any(f.repaired and "uneven length" in f.message for f in repaired)
    after = check_all(str(tmp_path), None)
    assert problems(after) == []
    assert [f.message for f in after] == ["1 uncommitted slot(s) (crash leftovers; reused)"]
    g["mask_mndwi-v1_done"][2] = 1  # a flag for the uncommitted slot
    assert any("set for uncommitted slots" in f.message for f in problems(check_all(str(tmp_path), None)))
    check_all(str(tmp_path), None, repair=True)
    assert problems(check_all(str(tmp_path), None)) == []
    assert int(g["mask_mndwi-v1_done"][2]) == 0


def test_duplicate_day_and_wrong_grid_are_problems(tmp_path: Path) -> None:
    arc = _archive(tmp_path)
    g = zarr.open_group(arc.path, mode="r+", zarr_format=3)
    g["solar_day"][1] = g["solar_day"][0]
    g["x"][0] = 0.0
    msgs = [f.message for f in problems(check_all(str(tmp_path), None))]
    assert "solar days committed more than once: 2024-01-01" in msgs
    assert "x/y coordinates differ from the tile grid" in msgs


def test_observation_without_its_archive_slice_is_a_problem(tmp_path: Path) -> None:
    _archive(tmp_path, days=1)
    engine = store.connect(f"sqlite:///{tmp_path / 'db.sqlite'}")
    store.upsert_aois(engine, [AOI("lake", "Lake", box(14.9, 45.0, 15.0, 45.1))])
    obs = [
        Observation("lake", datetime(2024, 1, d, 10, tzinfo=UTC), date(2024, 1, d), "sentinel-2", "mndwi-v1",
                    100.0, 1, 1, 0, 0, 1, 1.0, 0.0, True, 10.0, [TILE.id])
        for d in (1, 2)
    ]  # fmt: skip
    store.upsert_observations(engine, obs, None)
    msgs = [str(f) for f in problems(check_all(str(tmp_path), engine))]
    assert msgs == [
        f"problem: observation lake 2024-01-02 sentinel-2 mndwi-v1: no committed archive slice in {TILE.id}"
    ]


def test_cli_check_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arc = _archive(tmp_path / "archive")
    db = f"sqlite:///{tmp_path / 'none.db'}"
    assert cli.main(["check", "--storage", str(tmp_path / "archive"), "--database-url", db]) == 0
    assert capsys.readouterr().out.strip().endswith("0 problem(s), 0 repaired, 0 note(s)")
    assert not (tmp_path / "none.db").exists()  # checking never creates a database
    g = zarr.open_group(arc.path, mode="r+", zarr_format=3)
    g["data"].resize((3, *g["data"].shape[1:]))
    assert cli.main(["check", "--storage", str(tmp_path / "archive"), "--database-url", db]) == 1
    assert cli.main(["check", "--repair", "--storage", str(tmp_path / "archive"), "--database-url", db]) == 0
    assert "1 repaired" in capsys.readouterr().out
