"""Integrity checks of the archive stores and the results database (`oxeo-flows check [--repair]`).

Archive, per store: required arrays and attributes present and matching the store's tile and
constellation; every time-indexed array of one length; data and mask shapes equal to the tile grid;
`x`/`y` equal to the tile grid's cell centres; committed solar days unique; no mask marked done for an
uncommitted slot. Uncommitted slots (left by a crash) are reported as notes: they are invisible to readers
and reused by the next write. Database: every observation names a known AOI and, for each of its tiles, a
committed archive slice of its solar day and constellation.

`repair` fixes what can be fixed without guessing: uneven array lengths and stray mask flags.
Observations without their slice are reported, not deleted (re-run the flow to rebuild them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import PurePosixPath

import numpy as np
import sqlalchemy as sa
import zarr
from sqlalchemy.engine import Engine

from oxeo_flows.archive import NAT, Archive, get_array, stores_under, time_arrays
from oxeo_flows.constellations import CONSTELLATIONS
from oxeo_flows.errors import InputError
from oxeo_flows.store import aoi_table, observation_table
from oxeo_flows.tiling import Tile

REQUIRED = ("data", "time", "solar_day", "band", "x", "y", "spatial_ref", "scale", "offset", "item_ids")


@dataclass(frozen=True)
class Finding:
    where: str
    message: str
    severity: str = "problem"  # "problem" or "note"
    repaired: bool = False

    def __str__(self) -> str:
        tag = "repaired" if self.repaired else self.severity
        return f"{tag}: {self.where}: {self.message}"


def _store_identity(path: str) -> tuple[Tile, str]:
    p = PurePosixPath(path.rstrip("/"))
    const = p.name.removesuffix(".zarr")
    if const not in CONSTELLATIONS:
        raise InputError("storage", f"{path}: unknown constellation {const!r}")
    return Tile.from_id(p.parent.name), const


def check_store(storage: str, path: str, repair: bool = False) -> list[Finding]:
    """Findings for one store; with `repair`, fixable problems are fixed and reported as repaired."""
    try:
        tile, const = _store_identity(path)
    except InputError as exc:
        return [Finding(path, str(exc))]
    arc = Archive(storage, tile, CONSTELLATIONS[const])
    g = zarr.open_group(arc.path, mode="r+" if repair else "r", zarr_format=3)
    out: list[Finding] = []
    missing = [n for n in REQUIRED if n not in g]
    if missing:
        return [Finding(path, f"missing arrays: {', '.join(missing)}")]
    attrs = dict(g.attrs)
    if attrs.get("tile_id") != tile.id or attrs.get("constellation") != const:
        out.append(Finding(path, f"attributes name {attrs.get('tile_id')}/{attrs.get('constellation')}"))
    lengths = {name: int(arr.shape[0]) for name, arr in time_arrays(g)}
    if len(set(lengths.values())) > 1:
        n = max(lengths.values())
        if repair:
            for _, arr in time_arrays(g):
                if arr.shape[0] != n:
                    arr.resize((n, *arr.shape[1:]))
        out.append(Finding(path, f"time-indexed arrays of uneven length {lengths}", repaired=repair))
    ny, nx = arc.geobox.shape
    if tuple(get_array(g, "data").shape[1:]) != (len(arc.bands), ny, nx):
        out.append(Finding(path, f"data shape {get_array(g, 'data').shape} does not match the tile grid"))
    a = arc.geobox.affine
    if not (
        np.array_equal(np.asarray(get_array(g, "x")[:]), a.c + a.a * (np.arange(nx) + 0.5))
        and np.array_equal(np.asarray(get_array(g, "y")[:]), a.f + a.e * (np.arange(ny) + 0.5))
    ):
        out.append(Finding(path, "x/y coordinates differ from the tile grid"))
    n = min(int(get_array(g, "time").shape[0]), int(get_array(g, "solar_day").shape[0]))
    times = np.asarray(get_array(g, "time")[:n])
    days = np.asarray(get_array(g, "solar_day")[:n])
    committed = times != NAT
    values, counts = np.unique(days[committed], return_counts=True)
    if (counts > 1).any():
        dup = [str(np.datetime64(int(v), "D")) for v in values[counts > 1]]
        out.append(Finding(path, f"solar days committed more than once: {', '.join(dup)}"))
    if (~committed).any():
        out.append(
            Finding(path, f"{int((~committed).sum())} uncommitted slot(s) (crash leftovers; reused)", "note")
        )
    for name, arr in list(g.arrays()):
        if name.startswith("mask_") and name.endswith("_done"):
            flags = np.asarray(arr[:n])
            stray = (flags == 1) & ~committed
            if stray.any():
                if repair:
                    for i in np.flatnonzero(stray):
                        arr[int(i)] = 0
                out.append(Finding(path, f"{name}: set for uncommitted slots", repaired=repair))
            mask = get_array(g, name.removesuffix("_done"))
            if tuple(mask.shape[1:]) != (ny, nx):
                out.append(Finding(path, f"{name.removesuffix('_done')} shape {mask.shape} off the grid"))
    return out


def check_database(engine: Engine, storage: str) -> list[Finding]:
    """Observations that point at unknown AOIs or at archive slices that do not exist."""
    out: list[Finding] = []
    committed: dict[tuple[str, str], set[date]] = {}

    def days_of(tile_id: str, const: str) -> set[date]:
        key = (tile_id, const)
        if key not in committed:
            committed[key] = set(Archive(storage, Tile.from_id(tile_id), CONSTELLATIONS[const]).committed())
        return committed[key]

    t = observation_table
    with engine.connect() as conn:
        known = {r.id for r in conn.execute(sa.select(aoi_table.c.id))}
        rows = conn.execute(
            sa.select(t.c.aoi_id, t.c.solar_day, t.c.constellation, t.c.model, t.c.tiles)
        ).all()
    for r in rows:
        where = f"observation {r.aoi_id} {r.solar_day} {r.constellation} {r.model}"
        if r.aoi_id not in known:
            out.append(Finding(where, "unknown AOI"))
        missing = [tid for tid in r.tiles if r.solar_day not in days_of(tid, r.constellation)]
        if missing:
            out.append(Finding(where, f"no committed archive slice in {', '.join(missing)}"))
    return out


def check_all(storage: str, engine: Engine | None, repair: bool = False) -> list[Finding]:
    findings: list[Finding] = []
    for path in stores_under(storage):
        findings += check_store(storage, _with_scheme(storage, path), repair)
    if engine is not None:
        findings += check_database(engine, storage)
    return findings


def _with_scheme(storage: str, path: str) -> str:
    scheme = storage.split("://", 1)[0] + "://" if "://" in storage else ""
    return path if path.startswith(scheme) else scheme + path


def problems(findings: Iterable[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "problem" and not f.repaired]
