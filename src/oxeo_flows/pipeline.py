"""The pipeline's steps as plain functions (no Prefect): the flows wire these into tasks.

Each step takes and returns small serialisable values (ids, paths, work units, summaries); arrays stay
inside. The same calls run from a notebook, a test, a benchmark or another orchestrator.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy.engine import Engine

from oxeo_flows import store
from oxeo_flows.aoi import AOI, min_tile_count, parse_aoi
from oxeo_flows.archive import Archive
from oxeo_flows.catalog import Scene, scenes_for, search_items
from oxeo_flows.constellations import Constellation, get_constellation, parse_constellations
from oxeo_flows.errors import InputError
from oxeo_flows.extract import ReadPolicy, load_day
from oxeo_flows.models import WaterModel, predict_slice
from oxeo_flows.models.registry import pipeline_model
from oxeo_flows.planning import Plan, WorkUnit, plan_extraction
from oxeo_flows.settings import Settings, load_settings
from oxeo_flows.tiling import Tile, tiles_for_geometry
from oxeo_flows.timeseries import Observation, aoi_observations

MAX_YEARS = 100
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """A validated request: AOIs, dates, constellations, model."""

    aois: tuple[AOI, ...]
    start: date
    end: date
    constellations: tuple[Constellation, ...]
    model: WaterModel
    tiles: tuple[Tile, ...]


@dataclass
class ExtractSummary:
    unit: str
    days_planned: int = 0
    slices_written: int = 0
    slices_skipped: int = 0
    scenes_read: int = 0
    days_written: list[date] = field(default_factory=list)  # solar days this call committed
    errors: list[str] = field(default_factory=list)


def _as_date(value: Any, name: str) -> date:
    """A `date` from a date, a datetime (its date), an ISO string or an ISO basic int (20240101)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str | int) and not isinstance(value, bool):
        try:
            return date.fromisoformat(str(value).strip())
        except ValueError:
            pass
    raise InputError(name, f"expected an ISO date YYYY-MM-DD, got {value!r}")


def _model_params(params: Any) -> dict[str, float]:
    """`params` as {name: float}, or `InputError('model_params')` unless a mapping of names to numbers."""
    if params is None:
        return {}
    ok = isinstance(params, Mapping) and all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for k, v in params.items()
    )
    if not ok:
        raise InputError(
            "model_params",
            f'expected an object of parameter names to numbers, e.g. {{"threshold": -0.1}}, got {params!r}',
        )
    return {k: float(v) for k, v in params.items()}


def build_request(
    aoi: Any,
    start_date: Any,
    end_date: Any,
    constellations: Any,
    model: str,
    settings: Settings,
    lookup: Callable[[list[str]], list[AOI]] | None = None,
    repair: bool = False,
    model_params: Mapping[str, Any] | None = None,
) -> Request:
    """Validate every parameter before anything is written; raise `InputError` naming the first bad one.

    The water model is `pipeline_model(model, **model_params)` with the settings' shoreline refinement
    and cloud dilation."""
    start = _as_date(start_date, "start_date")
    end = _as_date(end_date, "end_date")
    if end < start:
        raise InputError("end_date", f"expected a date on or after start_date {start}, got {end}")
    if (end - start).days > MAX_YEARS * 366:
        raise InputError("end_date", f"expected a range of at most {MAX_YEARS} years, got {start}..{end}")
    if not (
        isinstance(constellations, str)
        or (isinstance(constellations, list | tuple) and all(isinstance(c, str) for c in constellations))
    ):
        raise InputError(
            "constellations",
            f"expected a name, a comma-separated string or a list of names, got {constellations!r}",
        )
    consts = tuple(parse_constellations(constellations))
    if not isinstance(model, str):
        raise InputError("model", f"expected a model name (a string), got {model!r}")
    water_model = pipeline_model(
        model, settings.shoreline_refinement, settings.cloud_dilation_m, **_model_params(model_params)
    )
    aois = tuple(parse_aoi(aoi, lookup=lookup, repair=repair))
    size, most = settings.tile_size_m, settings.max_tiles_per_run
    too_many = f"at most {most} per run are allowed (setting max_tiles_per_run, env OXEO_MAX_TILES_PER_RUN)"
    at_least = min_tile_count(aois, size)  # cheap: refuse a continent before enumerating its tiles
    if at_least > most:
        raise InputError("aoi", f"the AOIs need at least {at_least} tiles of {size} m; {too_many}")
    tiles: dict[str, Tile] = {}
    for a in aois:
        for part in a.geometry.geoms:  # per polygon: far-apart parts never enumerate the space between
            for t in tiles_for_geometry(part, size):
                tiles[t.id] = t
    if len(tiles) > most:
        raise InputError("aoi", f"the AOIs need {len(tiles)} tiles of {size} m; {too_many}")
    return Request(aois, start, end, consts, water_model, tuple(tiles[k] for k in sorted(tiles)))


def search_scenes(request: Request, const: Constellation, settings: Settings) -> list[Scene]:
    """Scenes of `const` over the request's AOIs and dates, from `settings.catalog`."""
    from shapely.ops import unary_union

    footprint = unary_union([a.geometry for a in request.aois])
    token = settings.catalog_token
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else None
    items = search_items(
        settings.catalog, footprint, request.start, request.end, const.collections, headers=headers
    )
    scenes = scenes_for(items, const)
    log.info("%s: %d items, %d %s scenes", settings.catalog, len(items), len(scenes), const.name)
    return scenes


def plan(request: Request, const: Constellation, scenes: Sequence[Scene], settings: Settings) -> Plan:
    return plan_extraction(request.tiles, scenes, const, settings.storage, settings.window)


def extract_unit(
    unit: WorkUnit, storage: str, resampling: str = "nearest", policy: ReadPolicy | None = None
) -> ExtractSummary:
    """Load and write every missing solar day of one work unit; already-committed days are skipped.

    Source reads follow `policy` (default: from `load_settings()`, i.e. the `OXEO_SOURCE_*` settings).
    When a day cannot be read, the days before it stay committed and the `SourceError` (naming scene,
    band, href and tile) propagates; a rerun resumes at that day.
    """
    policy = policy or ReadPolicy.from_settings(load_settings())
    const = get_constellation(unit.constellation)
    archive = Archive(storage, Tile.from_id(unit.tile_id), const)
    summary = ExtractSummary(unit.name, days_planned=len(unit.days))
    done = archive.committed()
    bands = archive.bands  # an existing store keeps the band list it was created with
    log.info("%s: %d solar days to extract into %s", unit.name, len(unit.days), archive.path)

    def record(slot: int | None, day: date) -> None:
        if slot is None:
            summary.slices_skipped += 1
        else:
            summary.slices_written += 1
            summary.days_written.append(day)

    # Decode day i+1 while day i is written: one writer thread keeps slices in order and at most two
    # slices in memory.
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending: tuple[Future[int | None], date] | None = None
        for day in unit.days:
            if day.solar_day in done:
                summary.slices_skipped += 1
                continue
            loaded = load_day(
                day.scenes,
                const,
                archive.geobox,
                resampling,
                policy=policy,
                tile_id=unit.tile_id,
                bands=bands,
            )
            summary.scenes_read += len(day.scenes)
            if pending is not None:
                record(pending[0].result(), pending[1])
            pending = (writer.submit(archive.write_slice, loaded.data, loaded.meta), day.solar_day)
        if pending is not None:
            record(pending[0].result(), pending[1])
    return summary


def predict_archive(tile_id: str, constellation: str, model: WaterModel, storage: str) -> int:
    """Compute `model`'s mask for every committed slice of one archive that lacks it; returns the count."""
    const = get_constellation(constellation)
    archive = Archive(storage, Tile.from_id(tile_id), const)
    n = 0
    for slot, done in sorted(archive.mask_done(model.key).items()):
        if done:
            continue
        meta = archive.slice_meta(slot)
        mask = predict_slice(archive.read_slice(slot), archive.bands, meta.scale, meta.offset, const, model)
        archive.write_mask(model.key, slot, mask)
        n += 1
    return n


def aoi_timeseries(
    aoi: AOI, request: Request, settings: Settings, engine: Engine, model_run_id: str | None
) -> list[Observation]:
    """Measure one AOI for every requested constellation; upsert the rows in one transaction, each
    referencing `model_run_id`."""
    rows: list[Observation] = []
    for const in request.constellations:
        rows.extend(
            aoi_observations(
                aoi,
                const,
                request.model.key,
                settings.storage,
                tile_size_m=settings.tile_size_m,
                start=request.start,
                end=request.end,
                min_object_m2=settings.min_object_m2,
                min_hole_m2=settings.min_hole_m2,
                max_invalid_fraction=settings.max_invalid_fraction,
            )
        )
    store.upsert_observations(engine, rows, model_run_id)
    return rows
