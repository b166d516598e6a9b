"""Planning: catalog offer minus archive content, grouped into (tile, constellation, window) units."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box, mapping

from oxeo_flows.archive import Archive, SliceMeta
from oxeo_flows.catalog import Scene
from oxeo_flows.constellations import CONSTELLATIONS
from oxeo_flows.errors import InputError
from oxeo_flows.planning import plan_extraction, window_key
from oxeo_flows.tiling import Tile
from tests.helpers import utm_to_lonlat

S2 = CONSTELLATIONS["sentinel-2"]
A = Tile(33, False, 10_000, 49, 499)
B = Tile(33, False, 10_000, 50, 499)


def _scene(sid: str, when: datetime, x0: float, x1: float) -> Scene:
    fp = utm_to_lonlat(box(x0, 4_991_000, x1, 4_999_000), 32633)
    return Scene(sid, when, "sentinel-2", "sentinel-2-l2a", mapping(fp), "05.10", {})


def _day(m: int, d: int, h: int = 10) -> datetime:
    return datetime(2024, m, d, h, tzinfo=UTC)


SCENES = [
    _scene("both-jan5", _day(1, 5), 495_000, 505_000),
    _scene("a-jan20", _day(1, 20), 491_000, 499_000),
    _scene("b-feb3", _day(2, 3), 501_000, 509_000),
    _scene("both-feb3-second", _day(2, 3, 11), 495_000, 505_000),
    _scene("both-apr1", _day(4, 1), 495_000, 505_000),
]


def test_units_per_tile_and_month(tmp_path: Path) -> None:
    plan = plan_extraction([A, B], SCENES, S2, str(tmp_path))
    got = {
        (u.tile_id, u.window): [(d.solar_day, [s.id for s in d.scenes]) for d in u.days] for u in plan.units
    }
    assert got == {
        (A.id, "2024-01"): [(date(2024, 1, 5), ["both-jan5"]), (date(2024, 1, 20), ["a-jan20"])],
        (A.id, "2024-02"): [(date(2024, 2, 3), ["both-feb3-second"])],
        (A.id, "2024-04"): [(date(2024, 4, 1), ["both-apr1"])],
        (B.id, "2024-01"): [(date(2024, 1, 5), ["both-jan5"])],
        (B.id, "2024-02"): [(date(2024, 2, 3), ["b-feb3", "both-feb3-second"])],
        (B.id, "2024-04"): [(date(2024, 4, 1), ["both-apr1"])],
    }
    assert plan.days_offered == 7 and plan.days_present == 0


def test_quarter_and_year_windows(tmp_path: Path) -> None:
    q = plan_extraction([A], SCENES, S2, str(tmp_path), window="quarter")
    assert [(u.window, len(u.days)) for u in q.units] == [("2024-Q1", 3), ("2024-Q2", 1)]
    y = plan_extraction([A], SCENES, S2, str(tmp_path), window="year")
    assert [(u.window, len(u.days)) for u in y.units] == [("2024", 4)]
    with pytest.raises(InputError, match="window"):
        plan_extraction([A], SCENES, S2, str(tmp_path), window="week")
    assert window_key(date(2024, 12, 31), "quarter") == "2024-Q4"


def test_archived_days_are_not_planned_again(tmp_path: Path) -> None:
    arc = Archive(str(tmp_path), A, S2)
    data = np.ones((len(S2.bands), 1000, 1000), np.uint16)
    for when in (_day(1, 20), _day(4, 1)):
        arc.write_slice(data, SliceMeta(when, when.date(), ("x",), None, (1.0,) * 8, (0.0,) * 8, 1.0))
    plan = plan_extraction([A, B], SCENES, S2, str(tmp_path))
    a_days = [d.solar_day for u in plan.units if u.tile_id == A.id for d in u.days]
    assert a_days == [date(2024, 1, 5), date(2024, 2, 3)]  # older and in-between days still planned
    assert plan.days_present == 2 and plan.days_offered == 7


def test_nothing_to_do_plans_nothing(tmp_path: Path) -> None:
    plan = plan_extraction([A], [], S2, str(tmp_path))
    assert plan.units == () and plan.days_offered == 0
