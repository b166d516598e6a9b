"""The results database's tables (SQLAlchemy Core), the same on SQLite and PostgreSQL/PostGIS.

Tables: `aoi` (+ `aoi_set`, `aoi_set_member`), `model_run` (one row per flow run: what it was asked and
what it did), `extraction_log` (one row per extracted work unit) and `water_observation` (the time
series; each row references the model run that last wrote it). Migrations in
`oxeo_flows/migrations` create and upgrade exactly this schema; `tests/test_migrations.py` checks that
the migrated database and these definitions agree.

Geometry: on PostgreSQL the `aoi.geometry` column is a PostGIS `geometry(MULTIPOLYGON, 4326)` with a GiST
index (GeoAlchemy2 type); on SQLite it is the GeoJSON text of the same MultiPolygon, and the bounding box
columns `west..north` (degrees, indexed) pre-filter spatial queries there. Python code always sees a
shapely MultiPolygon in lon/lat degrees. All times are naive UTC.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import shapely
import sqlalchemy as sa
from geoalchemy2 import Geometry
from shapely.geometry import MultiPolygon, mapping, shape
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

SRID = 4326


class AoiGeometry(TypeDecorator[MultiPolygon]):
    """A lon/lat MultiPolygon: PostGIS geometry on PostgreSQL, GeoJSON text elsewhere (exact round trip)."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            # The GiST index is created by the migration (GeoAlchemy2's own index hook does not see a
            # TypeDecorator), named ix_aoi_geometry.
            return dialect.type_descriptor(Geometry("MULTIPOLYGON", srid=SRID, spatial_index=False))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "postgresql":  # hex EWKB: exact doubles, read by PostGIS' geometry input
            return shapely.to_wkb(shapely.set_srid(value, SRID), hex=True, include_srid=True)
        return json.dumps(mapping(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> MultiPolygon | None:
        if value is None:
            return None
        if dialect.name == "postgresql":
            data = getattr(value, "data", value)  # GeoAlchemy2 hands over a WKBElement
            geom = shapely.from_wkb(data if isinstance(data, str | bytes) else bytes(data))
            return shapely.set_srid(geom, 0)
        return shape(json.loads(value))


def _parse_datetime(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _parse_date(value: Any) -> date | None:
    return None if value is None else date.fromisoformat(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A naive-UTC DATETIME. On SQLite, values are stored as SQLAlchemy always stores them
    ("YYYY-MM-DD HH:MM:SS.ffffff") but read with `datetime.fromisoformat` (C) instead of SQLAlchemy's
    regex: reading 10,000 time-series rows is several times faster. Plain TIMESTAMP on PostgreSQL."""

    impl = sa.DateTime
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        if dialect.name == "sqlite":
            return _parse_datetime
        return super().result_processor(dialect, coltype)


class PlainDate(TypeDecorator[date]):
    """A DATE; on SQLite read with `date.fromisoformat` (see `UTCDateTime`)."""

    impl = sa.Date
    cache_ok = True

    def result_processor(self, dialect: Dialect, coltype: object) -> Any:
        if dialect.name == "sqlite":
            return _parse_date
        return super().result_processor(dialect, coltype)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

aoi_table = sa.Table(
    "aoi",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("geometry", AoiGeometry(), nullable=False),
    sa.Column("geometry_hash", sa.String(64), nullable=False, index=True),
    sa.Column("west", sa.Float, nullable=False),
    sa.Column("south", sa.Float, nullable=False),
    sa.Column("east", sa.Float, nullable=False),
    sa.Column("north", sa.Float, nullable=False),
    sa.Column("area_m2", sa.Float, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),  # list of strings, e.g. ["reservoir", "kenya"]
    sa.Column("properties", sa.JSON, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    sa.Index("ix_aoi_bbox", "west", "east", "south", "north"),
)

aoi_set_table = sa.Table(
    "aoi_set",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
)

aoi_set_member_table = sa.Table(
    "aoi_set_member",
    metadata,
    sa.Column(
        "set_name", sa.String(128), sa.ForeignKey("aoi_set.name", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("aoi_id", sa.String(128), sa.ForeignKey("aoi.id", ondelete="CASCADE"), primary_key=True),
)

model_run_table = sa.Table(
    "model_run",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),  # uuid4, ours
    sa.Column("prefect_flow_run_id", sa.String(64), index=True),
    sa.Column("flow", sa.String(64), nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("model", sa.String(64)),  # model key incl. version, e.g. mndwi-v1
    sa.Column("model_version", sa.String(32)),
    sa.Column("constellations", sa.JSON, nullable=False),
    sa.Column("aoi_ids", sa.JSON, nullable=False),
    sa.Column("tiles", sa.JSON, nullable=False),
    sa.Column("start_date", sa.Date),
    sa.Column("end_date", sa.Date),
    sa.Column("state", sa.String(32), nullable=False),  # RUNNING, COMPLETED, FAILED
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("duration_s", sa.Float),
    sa.Column("counts", sa.JSON, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("software_version", sa.String(32), nullable=False),
)

extraction_log_table = sa.Table(
    "extraction_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "model_run_id",
        sa.String(36),
        sa.ForeignKey("model_run.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("tile_id", sa.String(64), nullable=False),
    sa.Column("constellation", sa.String(32), nullable=False),
    sa.Column("window", sa.String(16), nullable=False),
    sa.Column("days_requested", sa.JSON, nullable=False),  # solar days (ISO) the plan asked for
    sa.Column("days_written", sa.JSON, nullable=False),  # solar days committed by this unit
    sa.Column("slices_written", sa.Integer, nullable=False),
    sa.Column("slices_skipped", sa.Integer, nullable=False),
    sa.Column("scenes_read", sa.Integer, nullable=False),
    sa.Column("duration_s", sa.Float, nullable=False),
    sa.Column("finished_at", sa.DateTime, nullable=False),
)

observation_table = sa.Table(
    "water_observation",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("aoi_id", sa.String(128), sa.ForeignKey("aoi.id"), nullable=False),
    sa.Column("acquired_at", UTCDateTime, nullable=False),
    sa.Column("solar_day", PlainDate, nullable=False),
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
    sa.Column("model_run_id", sa.String(36), sa.ForeignKey("model_run.id"), index=True),
    sa.Column("computed_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("aoi_id", "acquired_at", "constellation", "model", name="uq_observation"),
)

TABLES = (
    aoi_table,
    aoi_set_table,
    aoi_set_member_table,
    model_run_table,
    extraction_log_table,
    observation_table,
)
