"""The AOI registry: add AOIs from vector files, search, show and remove them, and named AOI sets.

Search works the same on both backends: on PostGIS the bounding-box test is `ST_Intersects` against the
GiST-indexed geometry column; on SQLite the indexed bbox columns pre-filter and shapely makes the exact
test. Bounding boxes are (west, south, east, north) in degrees, EPSG:4326.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from shapely.geometry import MultiPolygon, box, mapping
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine

from oxeo_flows import store
from oxeo_flows.aoi import AOI, parse_aoi, validate_aoi_id
from oxeo_flows.errors import InputError
from oxeo_flows.schema import aoi_set_member_table, aoi_set_table, aoi_table, observation_table

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class AoiRecord:
    """An AOI as stored: geometry in lon/lat degrees, `area_m2` geodesic (WGS84), times naive UTC."""

    id: str
    name: str
    geometry: MultiPolygon
    labels: list[str]
    properties: dict[str, Any]
    area_m2: float
    bbox: BBox
    created_at: datetime
    updated_at: datetime
    sets: list[str] = field(default_factory=list)

    def to_feature(self) -> dict[str, Any]:
        """A GeoJSON Feature (RFC 7946) with the registry fields as properties."""
        return {
            "type": "Feature",
            "id": self.id,
            "bbox": list(self.bbox),
            "geometry": mapping(self.geometry),
            "properties": {
                "name": self.name,
                "labels": self.labels,
                "area_m2": self.area_m2,
                "created_at": self.created_at.isoformat() + "Z",
                "updated_at": self.updated_at.isoformat() + "Z",
                **({"sets": self.sets} if self.sets else {}),
                **{k: v for k, v in self.properties.items() if k not in ("name", "labels")},
            },
        }


def parse_bbox(value: str | Sequence[float], parameter: str = "bbox") -> BBox:
    """`west,south,east,north` in degrees (west <= east: boxes across the antimeridian are refused)."""
    parts: Sequence[Any] = value.split(",") if isinstance(value, str) else value
    try:
        w, s, e, n = (float(p) for p in parts)
    except (TypeError, ValueError):
        raise InputError(parameter, f"expected west,south,east,north in degrees, got {value!r}") from None
    if not all(math.isfinite(v) for v in (w, s, e, n)):
        raise InputError(parameter, f"expected finite numbers, got {value!r}")
    if not (-180 <= w <= e <= 180 and -90 <= s <= n <= 90):
        raise InputError(
            parameter,
            f"expected -180 <= west <= east <= 180 and -90 <= south <= north <= 90, got {w},{s},{e},{n}",
        )
    return (w, s, e, n)


def _filters(
    engine: Engine,
    ids: Sequence[str] | None,
    name: str | None,
    label: str | None,
    bbox: BBox | None,
    set_name: str | None,
) -> list[sa.ColumnElement[bool]]:
    t = aoi_table
    where: list[sa.ColumnElement[bool]] = []
    if ids:
        where.append(t.c.id.in_(list(ids)))
    if name:
        where.append(t.c.name.ilike(f"%{store.like_escape(name)}%", escape="\\"))
    if label:
        if engine.dialect.name == "postgresql":
            where.append(sa.cast(t.c.labels, JSONB).contains([label]))
        else:
            each = sa.func.json_each(t.c.labels).table_valued("value")
            where.append(sa.exists(sa.select(1).select_from(each).where(each.c.value == label)))
    if set_name:
        m = aoi_set_member_table
        where.append(t.c.id.in_(sa.select(m.c.aoi_id).where(m.c.set_name == set_name)))
    if bbox:
        w, s, e, n = bbox
        where += [t.c.west <= e, t.c.east >= w, t.c.south <= n, t.c.north >= s]
        if engine.dialect.name == "postgresql":
            where.append(sa.func.ST_Intersects(t.c.geometry, sa.func.ST_MakeEnvelope(w, s, e, n, 4326)))
    return where


def _record(r: Any, sets: list[str] | None = None) -> AoiRecord:
    return AoiRecord(
        id=r.id,
        name=r.name,
        geometry=r.geometry,
        labels=list(r.labels),
        properties=dict(r.properties),
        area_m2=r.area_m2,
        bbox=(r.west, r.south, r.east, r.north),
        created_at=r.created_at,
        updated_at=r.updated_at,
        sets=sets or [],
    )


def list_aois(
    engine: Engine,
    *,
    ids: Sequence[str] | None = None,
    name: str | None = None,
    label: str | None = None,
    bbox: BBox | None = None,
    set_name: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[AoiRecord]:
    """AOIs matching every filter given (name: case-insensitive substring), ordered by id."""
    q = (
        sa.select(aoi_table)
        .where(*_filters(engine, ids, name, label, bbox, set_name))
        .order_by(aoi_table.c.id)
    )
    exact_in_python = bbox is not None and engine.dialect.name != "postgresql"
    if limit is not None and not exact_in_python:
        q = q.limit(limit).offset(offset)
    with engine.connect() as conn:
        rows = [_record(r) for r in conn.execute(q)]
    if exact_in_python:
        assert bbox is not None
        envelope = box(*bbox)
        rows = [r for r in rows if r.geometry.intersects(envelope)]
        rows = rows[offset : None if limit is None else offset + limit]
    return rows


def count_aois(
    engine: Engine,
    *,
    ids: Sequence[str] | None = None,
    name: str | None = None,
    label: str | None = None,
    bbox: BBox | None = None,
    set_name: str | None = None,
) -> int:
    """How many AOIs `list_aois` would return without limit."""
    if bbox is not None and engine.dialect.name != "postgresql":
        return len(list_aois(engine, ids=ids, name=name, label=label, bbox=bbox, set_name=set_name))
    q = sa.select(sa.func.count()).select_from(aoi_table)
    q = q.where(*_filters(engine, ids, name, label, bbox, set_name))
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def get_aoi(engine: Engine, aoi_id: str) -> AoiRecord | None:
    """One AOI with the names of the sets it belongs to, or None."""
    with engine.connect() as conn:
        r = conn.execute(sa.select(aoi_table).where(aoi_table.c.id == aoi_id)).first()
        if r is None:
            return None
        m = aoi_set_member_table
        sets = list(
            conn.execute(sa.select(m.c.set_name).where(m.c.aoi_id == aoi_id).order_by(m.c.set_name)).scalars()
        )
    return _record(r, sets)


def observation_count(engine: Engine, aoi_id: str) -> int:
    with engine.connect() as conn:
        q = sa.select(sa.func.count()).select_from(observation_table)
        return int(conn.execute(q.where(observation_table.c.aoi_id == aoi_id)).scalar_one())


def remove_aoi(engine: Engine, aoi_id: str, *, cascade: bool = False) -> int:
    """Delete an AOI (and its set memberships); returns the number of time-series rows deleted with it.

    Refuses (InputError) when the AOI has time-series rows, unless `cascade`. One transaction.
    """
    validate_aoi_id(aoi_id)
    with engine.begin() as conn:
        if conn.execute(sa.select(aoi_table.c.id).where(aoi_table.c.id == aoi_id)).first() is None:
            raise InputError("ID", f"no AOI with id {aoi_id!r}")
        o = observation_table
        n = int(
            conn.execute(sa.select(sa.func.count()).select_from(o).where(o.c.aoi_id == aoi_id)).scalar_one()
        )
        if n and not cascade:
            raise InputError(
                "ID", f"AOI {aoi_id!r} has {n} time-series rows; pass --cascade to delete them with it"
            )
        conn.execute(o.delete().where(o.c.aoi_id == aoi_id))
        conn.execute(aoi_set_member_table.delete().where(aoi_set_member_table.c.aoi_id == aoi_id))
        conn.execute(aoi_table.delete().where(aoi_table.c.id == aoi_id))
    return n


def _json_safe(v: Any) -> Any:
    return json.loads(json.dumps(v, default=str))


def read_aoi_file(
    path: str | os.PathLike[str],
    *,
    id_column: str | None = None,
    name_column: str | None = None,
    label_column: str | None = None,
    labels: Sequence[str] = (),
    repair: bool = False,
) -> list[AOI]:
    """AOIs from a vector file GDAL reads (GeoJSON, GeoPackage, Shapefile, ...), reprojected to lon/lat.

    `id_column`/`name_column` pick the AOI ids and names (default: the rules of `parse_aoi`: Feature
    id, `properties.id`, else a hash of the geometry); `label_column` (comma-separated values) and
    `labels` set the labels. Every geometry is validated like any other AOI input.
    """
    import geopandas as gpd

    try:
        gdf = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises DataSourceError and friends
        raise InputError("FILE", f"cannot read {os.fspath(path)!r} as a vector file: {exc}") from None
    for col, param in (
        (id_column, "--id-column"),
        (name_column, "--name-column"),
        (label_column, "--label-column"),
    ):
        if col and col not in gdf.columns:
            raise InputError(
                param, f"no column {col!r} in {os.fspath(path)}; columns: {', '.join(map(str, gdf.columns))}"
            )
    if gdf.crs is not None and not gdf.crs.equals("EPSG:4326"):
        gdf = gdf.to_crs("EPSG:4326")
    features = []
    for row in gdf.itertuples(index=False):
        props = {str(k): _json_safe(v) for k, v in row._asdict().items() if k != "geometry" and v is not None}
        props = {k: v for k, v in props.items() if not (isinstance(v, float) and math.isnan(v))}
        feature: dict[str, Any] = {
            "type": "Feature",
            "geometry": mapping(row.geometry) if row.geometry is not None else None,
            "properties": props,
        }
        if id_column:
            feature["id"] = str(props.get(id_column, ""))
        if name_column:
            props["name"] = str(props.get(name_column, ""))
        row_labels = set(labels)
        if label_column and props.get(label_column):
            row_labels |= {x.strip() for x in str(props[label_column]).split(",") if x.strip()}
        props["labels"] = sorted(row_labels)
        features.append(feature)
    if not features:
        raise InputError("FILE", f"{os.fspath(path)} holds no features")
    return parse_aoi({"type": "FeatureCollection", "features": features}, repair=repair)


def add_aois(engine: Engine, aois: Sequence[AOI], *, set_name: str | None = None) -> None:
    """Insert or update AOIs (labels replaced by theirs) and optionally add them to a set, atomically."""
    store.upsert_aois(engine, aois, replace_labels=True)
    if set_name:
        add_to_set(engine, set_name, [a.id for a in aois])


def add_to_set(engine: Engine, set_name: str, aoi_ids: Sequence[str], description: str = "") -> None:
    """Create the set if needed and add the AOIs (which must exist)."""
    validate_aoi_id(set_name)
    known = {r.id for r in list_aois(engine, ids=list(aoi_ids))}
    missing = [i for i in aoi_ids if i not in known]
    if missing:
        raise InputError("AOI", f"unknown AOI id(s): {', '.join(missing)}")
    now = datetime.now(UTC).replace(tzinfo=None)
    ins_set = store.dialect_insert(engine, aoi_set_table).on_conflict_do_nothing(index_elements=["name"])
    ins_member = store.dialect_insert(engine, aoi_set_member_table).on_conflict_do_nothing(
        index_elements=["set_name", "aoi_id"]
    )
    with engine.begin() as conn:
        conn.execute(ins_set, {"name": set_name, "description": description, "created_at": now})
        if aoi_ids:
            conn.execute(ins_member, [{"set_name": set_name, "aoi_id": i} for i in aoi_ids])


def remove_from_set(engine: Engine, set_name: str, aoi_ids: Sequence[str]) -> int:
    m = aoi_set_member_table
    with engine.begin() as conn:
        res = conn.execute(m.delete().where(m.c.set_name == set_name, m.c.aoi_id.in_(list(aoi_ids))))
    return int(res.rowcount)


def delete_set(engine: Engine, set_name: str) -> None:
    """Delete a set (its AOIs stay)."""
    with engine.begin() as conn:
        conn.execute(aoi_set_member_table.delete().where(aoi_set_member_table.c.set_name == set_name))
        res = conn.execute(aoi_set_table.delete().where(aoi_set_table.c.name == set_name))
    if not res.rowcount:
        raise InputError("NAME", f"no AOI set named {set_name!r}")


def list_sets(engine: Engine) -> list[dict[str, Any]]:
    """Sets with their description and member count, by name."""
    s, m = aoi_set_table, aoi_set_member_table
    q = (
        sa.select(s.c.name, s.c.description, sa.func.count(m.c.aoi_id).label("members"))
        .select_from(s.outerjoin(m, m.c.set_name == s.c.name))
        .group_by(s.c.name, s.c.description)
        .order_by(s.c.name)
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(q)]
