"""Results database: AOIs, water observations and flow runs (SQLAlchemy Core; SQLite or PostgreSQL).

All times are stored as naive UTC. Observations are unique on (aoi_id, acquired_at, constellation,
model) and written with `INSERT ... ON CONFLICT DO UPDATE` in one transaction per call, so reruns
rewrite the same rows instead of duplicating them. Only bound parameters are used, never SQL built
from strings.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from shapely.geometry import mapping, shape
from sqlalchemy.engine import Engine

from oxeo_flows.aoi import AOI
from oxeo_flows.errors import InputError
from oxeo_flows.timeseries import Observation

metadata = sa.MetaData()

aoi_table = sa.Table(
    "aoi",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("geometry", sa.Text, nullable=False),  # GeoJSON MultiPolygon, EPSG:4326
    sa.Column("geometry_hash", sa.String(64), nullable=False, index=True),
    sa.Column("properties", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

observation_table = sa.Table(
    "water_observation",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("aoi_id", sa.String(128), sa.ForeignKey("aoi.id"), nullable=False),
    sa.Column("acquired_at", sa.DateTime, nullable=False),
    sa.Column("solar_day", sa.Date, nullable=False),
    sa.Column("constellation", sa.String(32), nullable=False),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("water_area_m2", sa.Float, nullable=False),
    sa.Column("water_px", sa.Integer, nullable=False),
    sa.Column("valid_px", sa.Integer, nullable=False),
    sa.Column("cloud_px", sa.Integer, nullable=False),
    sa.Column("nodata_px", sa.Integer, nullable=False),
    sa.Column("total_px", sa.Integer, nullable=False),
    sa.Column("valid_fraction", sa.Float, nullable=False),
    sa.Column("cloud_fraction", sa.Float, nullable=False),
    sa.Column("usable", sa.Boolean, nullable=False),
    sa.Column("pixel_size_m", sa.Float, nullable=False),
    sa.Column("tiles", sa.JSON, nullable=False),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("computed_at", sa.DateTime, nullable=False),
    sa.UniqueConstraint("aoi_id", "acquired_at", "constellation", "model", name="uq_observation"),
)

flow_run_table = sa.Table(
    "flow_run",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flow_run_id", sa.String(64)),
    sa.Column("flow", sa.String(64), nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("counts", sa.JSON, nullable=False),
)

OBSERVATION_FIELDS = [c.name for c in observation_table.columns if c.name != "id"]
_KEY = ("aoi_id", "acquired_at", "constellation", "model")


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo else t


def connect(database_url: str) -> Engine:
    """Engine for `database_url`; creates the schema (and a local SQLite file's folder) if missing."""
    try:
        url = sa.engine.make_url(database_url)
    except sa.exc.ArgumentError as exc:
        raise InputError("database_url", f"expected a SQLAlchemy URL, got {database_url!r}: {exc}") from None
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    if url.get_backend_name() == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    metadata.create_all(engine)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _insert(engine: Engine, table: sa.Table) -> Any:
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    if engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    raise InputError("database_url", f"expected a sqlite or postgresql URL, got {engine.dialect.name}")


def upsert_aois(engine: Engine, aois: Iterable[AOI]) -> None:
    """Insert or update AOIs (id, name, geometry, properties) in one transaction."""
    rows = [
        {
            "id": a.id,
            "name": a.name,
            "geometry": json.dumps(mapping(a.geometry)),
            "geometry_hash": a.geometry_hash,
            "properties": a.properties,
            "created_at": _naive_utc(datetime.now(UTC)),
        }
        for a in aois
    ]
    if not rows:
        return
    stmt = _insert(engine, aoi_table)
    stmt = stmt.on_conflict_do_update(
        index_elements=["id"],
        set_={k: stmt.excluded[k] for k in ("name", "geometry", "geometry_hash", "properties")},
    )
    with engine.begin() as conn:
        conn.execute(stmt, rows)


def get_aois(engine: Engine, ids: Sequence[str]) -> list[AOI]:
    """AOIs with these ids, in the order asked; unknown ids are left out (the caller reports them)."""
    with engine.connect() as conn:
        found = {r.id: r for r in conn.execute(sa.select(aoi_table).where(aoi_table.c.id.in_(list(ids))))}
    out = []
    for i in ids:
        r = found.get(i)
        if r is not None:
            out.append(
                AOI(
                    id=r.id,
                    name=r.name,
                    geometry=shape(json.loads(r.geometry)),
                    properties=dict(r.properties),
                )
            )
    return out


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
            return get_aois(engine, ids)
        finally:
            engine.dispose()

    return lookup


def upsert_observations(engine: Engine, observations: Sequence[Observation], flow_run_id: str | None) -> int:
    """Upsert observations in one transaction; returns the number of rows written."""
    if not observations:
        return 0
    now = _naive_utc(datetime.now(UTC))
    rows = []
    for o in observations:
        row = asdict(o)
        row["acquired_at"] = _naive_utc(o.acquired_at)
        row["flow_run_id"] = flow_run_id
        row["computed_at"] = now
        rows.append(row)
    stmt = _insert(engine, observation_table)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(_KEY),
        set_={k: stmt.excluded[k] for k in OBSERVATION_FIELDS if k not in _KEY},
    )
    with engine.begin() as conn:
        conn.execute(stmt, rows)
    return len(rows)


def query_observations(
    engine: Engine, aoi_ids: Sequence[str] | None = None, constellation: str | None = None
) -> list[dict[str, Any]]:
    """Observation rows ordered by (aoi_id, acquired_at, constellation, model)."""
    t = observation_table
    q = sa.select(t).order_by(t.c.aoi_id, t.c.acquired_at, t.c.constellation, t.c.model)
    if aoi_ids:
        q = q.where(t.c.aoi_id.in_(list(aoi_ids)))
    if constellation:
        q = q.where(t.c.constellation == constellation)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]


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


def record_flow_run(
    engine: Engine,
    *,
    flow: str,
    flow_run_id: str | None,
    parameters: dict[str, Any],
    started_at: datetime,
    state: str,
    counts: dict[str, Any],
) -> None:
    """Append one flow-run record (what a run did, for users to query)."""
    with engine.begin() as conn:
        conn.execute(
            flow_run_table.insert(),
            {
                "flow_run_id": flow_run_id,
                "flow": flow,
                "parameters": json.loads(json.dumps(parameters, default=str)),
                "started_at": _naive_utc(started_at),
                "finished_at": _naive_utc(datetime.now(UTC)),
                "state": state,
                "counts": counts,
            },
        )
