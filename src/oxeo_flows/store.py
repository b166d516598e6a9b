"""Results database access: AOIs, water observations, model runs, extraction log (SQLite or PostGIS).

The tables are in `oxeo_flows.schema`; `connect` creates/upgrades them with the Alembic migrations. All
times are stored as naive UTC. Observations are unique on (aoi_id, acquired_at, constellation, model)
and written with `INSERT ... ON CONFLICT DO UPDATE` in one transaction per call, so reruns and
concurrent runs rewrite the same rows instead of duplicating them. Only bound parameters are used,
never SQL built from strings.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pyproj import Geod
from shapely.geometry import shape
from sqlalchemy.engine import Engine

from oxeo_flows import migrate
from oxeo_flows.aoi import AOI, SET_PREFIX
from oxeo_flows.errors import InputError
from oxeo_flows.observation import Observation
from oxeo_flows.schema import (
    aoi_set_member_table,
    aoi_table,
    extraction_log_table,
    model_run_table,
    observation_table,
)

__all__ = [
    "aoi_table",
    "extraction_log_table",
    "model_run_table",
    "observation_table",
]
_GEOD = Geod(ellps="WGS84")
log = logging.getLogger(__name__)

OBSERVATION_FIELDS = [c.name for c in observation_table.columns if c.name != "id"]
# What users read (exports, API, plots): no internal row id, tile list or computation time.
TIMESERIES_FIELDS = [c for c in OBSERVATION_FIELDS if c not in ("tiles", "computed_at")]
_KEY = ("aoi_id", "acquired_at", "constellation", "model")


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def connect(database_url: str) -> Engine:
    """Engine for `database_url`; creates or upgrades the schema (and a SQLite file's folder) if needed."""
    try:
        url = sa.engine.make_url(database_url)
    except sa.exc.ArgumentError as exc:
        raise InputError("database_url", f"expected a SQLAlchemy URL, got {database_url!r}: {exc}") from None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = sa.create_engine(url, pool_pre_ping=url.get_backend_name() == "postgresql")
    except (ImportError, sa.exc.ArgumentError) as exc:
        raise InputError("database_url", f"cannot use {url.render_as_string()!r}: {exc}") from None
    if url.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    try:
        migrate.upgrade(engine)
    except sa.exc.OperationalError as exc:
        engine.dispose()
        msg = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise InputError("database_url", f"cannot open {url.render_as_string()!r}: {msg}") from None
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def dialect_insert(engine: Engine, table: sa.Table) -> Any:
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise InputError("database_url", f"expected a sqlite or postgresql URL, got {engine.dialect.name}")


def _labels(a: AOI) -> list[str]:
    raw = a.properties.get("labels", [])
    if isinstance(raw, str):
        raw = [x for x in raw.split(",")]
    return sorted({str(x).strip() for x in raw if str(x).strip()}) if isinstance(raw, list) else []


def aoi_row(a: AOI, now: datetime) -> dict[str, Any]:
    """The `aoi` table row of an AOI (bbox in degrees, geodesic area on the WGS84 ellipsoid in m²)."""
    x0, y0, x1, y1 = a.geometry.bounds
    return {
        "id": a.id,
        "name": a.name,
        "geometry": a.geometry,
        "geometry_hash": a.geometry_hash,
        "west": x0,
        "south": y0,
        "east": x1,
        "north": y1,
        "area_m2": abs(float(_GEOD.geometry_area_perimeter(a.geometry)[0])),
        "labels": _labels(a),
        "properties": a.properties,
        "created_at": now,
        "updated_at": now,
    }


def upsert_aois(engine: Engine, aois: Iterable[AOI], *, replace_labels: bool = False) -> dict[str, int]:
    """Insert or update AOIs in one transaction; returns {AOI id: stale rows deleted} for moved AOIs.

    An existing AOI keeps its `created_at` and (unless `replace_labels`) its labels: a flow run that
    names an AOI by GeoJSON does not undo what the registry set. When an existing AOI's geometry changes,
    its time-series rows were measured on the old polygon: they are deleted in the same transaction (the
    archive still holds the pixels; the next time-series run measures the new polygon), so an AOI's
    series never mixes two geometries.
    """
    now = _naive_utc(datetime.now(UTC))
    rows = [aoi_row(a, now) for a in aois]
    if not rows:
        return {}
    stmt = dialect_insert(engine, aoi_table)
    keep = {"id", "created_at"} | (set() if replace_labels else {"labels"})
    stmt = stmt.on_conflict_do_update(
        index_elements=["id"], set_={k: stmt.excluded[k] for k in rows[0] if k not in keep}
    )
    new_hash = {r["id"]: r["geometry_hash"] for r in rows}
    o = observation_table
    stale: dict[str, int] = {}
    with engine.begin() as conn:
        old = conn.execute(
            sa.select(aoi_table.c.id, aoi_table.c.geometry_hash).where(aoi_table.c.id.in_(list(new_hash)))
        ).all()
        moved = sorted(r.id for r in old if r.geometry_hash != new_hash[r.id])
        for aoi_id in moved:
            stale[aoi_id] = int(conn.execute(o.delete().where(o.c.aoi_id == aoi_id)).rowcount)
        conn.execute(stmt, rows)
    for aoi_id, n in stale.items():
        if n:
            log.warning("AOI %s has a new geometry: %d time-series rows of the old one deleted", aoi_id, n)
    return stale


def _aoi(r: Any) -> AOI:
    return AOI(id=r.id, name=r.name, geometry=r.geometry, properties=dict(r.properties))


def _rows_by_id(conn: sa.Connection, table: sa.Table, ids: Sequence[str]) -> list[Any]:
    """Rows of `table` whose `id` is in `ids`, in the order asked; unknown ids are left out."""
    if not ids:
        return []
    found = {r.id: r for r in conn.execute(sa.select(table).where(table.c.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


def get_aois(engine: Engine, ids: Sequence[str]) -> list[AOI]:
    """AOIs with these ids, in the order asked; unknown ids are left out (the caller reports them).

    An id `set:NAME` stands for the members of that AOI set (sorted by id).
    """
    plain = [i for i in ids if not i.startswith(SET_PREFIX)]
    sets = [i.removeprefix(SET_PREFIX) for i in ids if i.startswith(SET_PREFIX)]
    out: dict[str, AOI] = {}
    with engine.connect() as conn:
        for name in sets:
            q = (
                sa.select(aoi_table)
                .join(aoi_set_member_table, aoi_set_member_table.c.aoi_id == aoi_table.c.id)
                .where(aoi_set_member_table.c.set_name == name)
                .order_by(aoi_table.c.id)
            )
            out.update((r.id, _aoi(r)) for r in conn.execute(q))
        out.update((r.id, _aoi(r)) for r in _rows_by_id(conn, aoi_table, plain))
    return list(out.values())


def aoi_lookup(database_url: str) -> Callable[[list[str]], list[AOI]]:
    """A read-only AOI lookup for validation: creates no file, table or row (missing DB -> no AOIs)."""

    def lookup(ids: list[str]) -> list[AOI]:
        url = sa.engine.make_url(database_url)
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            if not Path(url.database).expanduser().exists():
                return []
        engine = sa.create_engine(url)
        try:
            if not sa.inspect(engine).has_table(aoi_table.name):
                return []
            if migrate.current(engine) in (None, "0001"):  # 0.1 schema: read it as it is, migrate later
                return _get_aois_0_1(engine, ids)
            return get_aois(engine, ids)
        finally:
            engine.dispose()

    return lookup


def _get_aois_0_1(engine: Engine, ids: Sequence[str]) -> list[AOI]:
    """`get_aois` on a database still at the 0.1 schema (GeoJSON text geometry, no AOI sets), read-only:
    validation must not write, and the run's own `connect` migrates it afterwards."""
    legacy = sa.Table(
        "aoi",
        sa.MetaData(),
        sa.Column("id", sa.String),
        sa.Column("name", sa.String),
        sa.Column("geometry", sa.Text),
        sa.Column("properties", sa.JSON),
    )
    plain = [i for i in ids if not i.startswith(SET_PREFIX)]
    with engine.connect() as conn:
        rows = _rows_by_id(conn, legacy, plain)
    return [
        AOI(id=r.id, name=r.name, geometry=shape(json.loads(r.geometry)), properties=dict(r.properties))
        for r in rows
    ]


def upsert_observations(engine: Engine, observations: Sequence[Observation], model_run_id: str | None) -> int:
    """Upsert observations in one transaction, each referencing `model_run_id`; returns the row count."""
    if not observations:
        return 0
    now = _naive_utc(datetime.now(UTC))
    rows = []
    for o in observations:
        row = asdict(o)
        row["acquired_at"] = _naive_utc(o.acquired_at)
        row["model_run_id"] = model_run_id
        row["computed_at"] = now
        rows.append(row)
    stmt = dialect_insert(engine, observation_table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={k: stmt.excluded[k] for k in OBSERVATION_FIELDS if k not in _KEY},
    )
    with engine.begin() as conn:
        conn.execute(stmt, rows)
    return len(rows)


def observations_query(
    aoi_ids: Sequence[str] | None = None,
    constellation: str | Sequence[str] | None = None,
    model: str | None = None,
    start: date | datetime | None = None,
    end: date | datetime | None = None,
    usable_only: bool = False,
) -> sa.Select[Any]:
    """SELECT of observation rows matching the filters (dates inclusive, UTC), in a stable order."""
    t = observation_table
    q = sa.select(t).order_by(t.c.aoi_id, t.c.acquired_at, t.c.constellation, t.c.model)
    if aoi_ids:
        q = q.where(t.c.aoi_id.in_(list(aoi_ids)))
    if constellation:
        consts = [constellation] if isinstance(constellation, str) else list(constellation)
        q = q.where(t.c.constellation.in_(consts))
    if model:
        # A model name without a version ("mndwi") matches every version of it ("mndwi-v1", ...).
        q = q.where(sa.or_(t.c.model == model, t.c.model.like(like_escape(model) + "-v%", escape="\\")))
    if start is not None:
        q = q.where(t.c.solar_day >= (start.date() if isinstance(start, datetime) else start))
    if end is not None:
        q = q.where(t.c.solar_day <= (end.date() if isinstance(end, datetime) else end))
    if usable_only:
        q = q.where(t.c.usable.is_(True))
    return q


def like_escape(text: str) -> str:
    """`text` with LIKE's wildcards escaped, for patterns used with `escape="\\"`."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def query_observations(
    engine: Engine,
    aoi_ids: Sequence[str] | None = None,
    constellation: str | Sequence[str] | None = None,
    *,
    model: str | None = None,
    start: date | datetime | None = None,
    end: date | datetime | None = None,
    usable_only: bool = False,
    limit: int | None = None,
    offset: int = 0,
    columns: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Observation rows ordered by (aoi_id, acquired_at, constellation, model); see `observations_query`.

    `columns`: the fields to return (default: all; `TIMESERIES_FIELDS` is what users read).
    """
    q = observations_query(aoi_ids, constellation, model, start, end, usable_only)
    if columns is not None:
        unknown = sorted(set(columns) - set(observation_table.c.keys()))
        if unknown:
            raise InputError("columns", f"unknown observation column(s) {', '.join(unknown)}")
        q = q.with_only_columns(*(observation_table.c[c] for c in columns))
    if limit is not None:
        q = q.limit(limit).offset(offset)
    with engine.connect() as conn:
        result = conn.execute(q)
        keys = tuple(result.keys())
        rows = result.fetchall()  # one driver call, not one per row
    return [dict(zip(keys, row, strict=True)) for row in rows]


def count_observations(engine: Engine, **filters: Any) -> int:
    """Number of rows `query_observations(engine, **filters)` would return without limit."""
    q = observations_query(**filters).order_by(None)
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(q.subquery())).scalar_one())


def harmonise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (aoi, solar day, model): the best observation across constellations.

    Best = highest `valid_fraction`, then the finer `pixel_size_m`, then the earlier acquisition and
    the constellation name (deterministic). Areas are comparable across sensors because every row counts
    the same AOI polygon in m².
    """
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        key = (r["aoi_id"], r["solar_day"], r["model"])
        rank = (-r["valid_fraction"], r["pixel_size_m"], r["acquired_at"], r["constellation"])
        cur = best.get(key)
        if cur is None or rank < (
            -cur["valid_fraction"],
            cur["pixel_size_m"],
            cur["acquired_at"],
            cur["constellation"],
        ):
            best[key] = r
    return sorted(best.values(), key=lambda r: (r["aoi_id"], r["acquired_at"], r["model"]))


def start_model_run(
    engine: Engine,
    *,
    flow: str,
    prefect_flow_run_id: str | None,
    parameters: dict[str, Any],
    model: str | None,
    model_version: str | None,
    constellations: Sequence[str],
    aoi_ids: Sequence[str],
    tiles: Sequence[str],
    start_date: date | None,
    end_date: date | None,
    started_at: datetime,
) -> str:
    """Record a run as RUNNING before it writes anything; returns its `model_run.id` (uuid4)."""
    from oxeo_flows import __version__

    run_id = str(uuid.uuid4())
    with engine.begin() as conn:
        conn.execute(
            model_run_table.insert(),
            {
                "id": run_id,
                "prefect_flow_run_id": prefect_flow_run_id,
                "flow": flow,
                "parameters": json.loads(json.dumps(parameters, default=str)),
                "model": model,
                "model_version": model_version,
                "constellations": list(constellations),
                "aoi_ids": list(aoi_ids),
                "tiles": list(tiles),
                "start_date": start_date,
                "end_date": end_date,
                "state": "RUNNING",
                "started_at": _naive_utc(started_at),
                "counts": {},
                "software_version": __version__,
            },
        )
    return run_id


def finish_model_run(
    engine: Engine, run_id: str, *, state: str, counts: dict[str, Any], error: str | None = None
) -> None:
    """Close a run: final state (COMPLETED or FAILED), counts, error text, duration."""
    now = _naive_utc(datetime.now(UTC))
    with engine.begin() as conn:
        started = conn.execute(
            sa.select(model_run_table.c.started_at).where(model_run_table.c.id == run_id)
        ).scalar_one()
        conn.execute(
            model_run_table.update()
            .where(model_run_table.c.id == run_id)
            .values(
                state=state,
                finished_at=now,
                duration_s=(now - started).total_seconds(),
                counts=json.loads(json.dumps(counts, default=str)),
                error=error,
            )
        )


def log_extraction(
    engine: Engine,
    run_id: str,
    *,
    tile_id: str,
    constellation: str,
    window: str,
    days_requested: Sequence[date],
    days_written: Sequence[date],
    slices_written: int,
    slices_skipped: int,
    scenes_read: int,
    duration_s: float,
) -> None:
    """One extraction-log row: what one work unit was asked to extract and what it committed."""
    with engine.begin() as conn:
        conn.execute(
            extraction_log_table.insert(),
            {
                "model_run_id": run_id,
                "tile_id": tile_id,
                "constellation": constellation,
                "window": window,
                "days_requested": [d.isoformat() for d in days_requested],
                "days_written": [d.isoformat() for d in days_written],
                "slices_written": slices_written,
                "slices_skipped": slices_skipped,
                "scenes_read": scenes_read,
                "duration_s": duration_s,
                "finished_at": _naive_utc(datetime.now(UTC)),
            },
        )


def model_runs(engine: Engine, limit: int = 20) -> list[dict[str, Any]]:
    """The newest model runs first."""
    q = sa.select(model_run_table).order_by(model_run_table.c.started_at.desc()).limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


def get_model_run(engine: Engine, run_id: str) -> dict[str, Any] | None:
    """One model run by id, or None."""
    q = sa.select(model_run_table).where(model_run_table.c.id == run_id)
    with engine.connect() as conn:
        row = conn.execute(q).first()
    return None if row is None else dict(row._mapping)


def extraction_log(engine: Engine, run_id: str) -> list[dict[str, Any]]:
    """Extraction-log rows of one run, by tile, constellation and window."""
    t = extraction_log_table
    q = sa.select(t).where(t.c.model_run_id == run_id).order_by(t.c.tile_id, t.c.constellation, t.c.window)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]
