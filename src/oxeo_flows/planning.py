"""Work units: what the catalog offers minus what the archive already holds.

A work unit is one (tile, constellation, time window) with the scenes of each solar day still missing
from that tile's archive. Planning reads only archive metadata (the committed solar days), never pixels,
so re-running a finished request plans zero units and reads zero source pixels.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

from oxeo_flows.archive import Archive
from oxeo_flows.catalog import Scene
from oxeo_flows.constellations import Constellation
from oxeo_flows.errors import InputError
from oxeo_flows.tiling import Tile

WINDOWS = ("month", "quarter", "year")


@dataclass(frozen=True)
class DayPlan:
    solar_day: date
    scenes: tuple[Scene, ...]


@dataclass(frozen=True)
class WorkUnit:
    """Extraction of the missing solar days of one tile x constellation within one time window."""

    tile_id: str
    constellation: str
    window: str  # e.g. "2024-03", "2024-Q1", "2024"
    days: tuple[DayPlan, ...]

    @property
    def name(self) -> str:
        return f"{self.tile_id}-{self.constellation}-{self.window}"

    @property
    def n_scenes(self) -> int:
        return sum(len(d.scenes) for d in self.days)


@dataclass(frozen=True)
class Plan:
    units: tuple[WorkUnit, ...]
    days_offered: int  # (tile, day) pairs the catalog offers
    days_present: int  # of which already in the archive


def window_key(day: date, window: str) -> str:
    if window == "month":
        return f"{day.year}-{day.month:02d}"
    if window == "quarter":
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    if window == "year":
        return f"{day.year}"
    raise InputError("window", f"expected one of {', '.join(WINDOWS)}, got {window!r}")


def scenes_by_tile(tiles: Iterable[Tile], scenes: Sequence[Scene]) -> dict[str, list[Scene]]:
    """Scenes whose footprint intersects each tile's footprint (lon/lat)."""
    out: dict[str, list[Scene]] = {}
    for tile in tiles:
        fp = tile.footprint_lonlat()
        out[tile.id] = [s for s in scenes if s.footprint.intersects(fp)]
    return out


def plan_extraction(
    tiles: Sequence[Tile],
    scenes: Sequence[Scene],
    constellation: Constellation,
    storage: str,
    window: str = "month",
) -> Plan:
    """Work units for the (tile, solar day) pairs that `scenes` offer and the archive lacks."""
    if window not in WINDOWS:
        raise InputError("window", f"expected one of {', '.join(WINDOWS)}, got {window!r}")
    units: list[WorkUnit] = []
    offered = present = 0
    for tile_id, tile_scenes in scenes_by_tile(tiles, scenes).items():
        by_day: dict[date, list[Scene]] = defaultdict(list)
        for s in tile_scenes:
            by_day[s.solar_day].append(s)
        done = Archive(storage, Tile.from_id(tile_id), constellation).committed()
        offered += len(by_day)
        missing = {d: ss for d, ss in by_day.items() if d not in done}
        present += len(by_day) - len(missing)
        by_window: dict[str, list[DayPlan]] = defaultdict(list)
        for d in sorted(missing):
            plan = DayPlan(d, tuple(sorted(missing[d], key=lambda s: (s.datetime, s.id))))
            by_window[window_key(d, window)].append(plan)
        for key in sorted(by_window):
            units.append(WorkUnit(tile_id, constellation.name, key, tuple(by_window[key])))
    return Plan(tuple(units), offered, present)
