"""AOI registry (PostGIS geometry, bbox, area, labels, named sets), model runs and the extraction log.

- aoi: geometry becomes PostGIS `geometry(MULTIPOLYGON, 4326)` with a GiST index on PostgreSQL (GeoJSON
  text stays on SQLite); new columns west/south/east/north (degrees, indexed), area_m2 (geodesic, WGS84
  ellipsoid), labels, updated_at, filled from the stored geometry.
- aoi_set, aoi_set_member: named sets of AOIs (`set:NAME` as a flow's `aoi`).
- model_run replaces flow_run (old rows are carried over); extraction_log is new.
- water_observation.flow_run_id (Prefect's id) becomes model_run_id, a foreign key to model_run.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import sqlalchemy as sa
from alembic import op
from pyproj import Geod
from shapely.geometry import shape

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_GEOD = Geod(ellps="WGS84")


def _geodesic_area_m2(geojson: str) -> float:
    geom = shape(json.loads(geojson))
    return abs(float(_GEOD.geometry_area_perimeter(geom)[0]))


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"

    # --- aoi: new columns, filled from the stored GeoJSON, then made NOT NULL.
    with op.batch_alter_table("aoi") as b:
        for col in ("west", "south", "east", "north", "area_m2"):
            b.add_column(sa.Column(col, sa.Float, nullable=True))
        b.add_column(sa.Column("labels", sa.JSON, nullable=True))
        b.add_column(sa.Column("updated_at", sa.DateTime, nullable=True))
    aoi = sa.table(
        "aoi",
        sa.column("id", sa.String),
        sa.column("geometry", sa.Text),
        sa.column("created_at", sa.DateTime),
        sa.column("west", sa.Float),
        sa.column("south", sa.Float),
        sa.column("east", sa.Float),
        sa.column("north", sa.Float),
        sa.column("area_m2", sa.Float),
        sa.column("labels", sa.JSON),
        sa.column("updated_at", sa.DateTime),
    )
    for row in bind.execute(sa.select(aoi.c.id, aoi.c.geometry, aoi.c.created_at)).all():
        x0, y0, x1, y1 = shape(json.loads(row.geometry)).bounds
        bind.execute(
            aoi.update()
            .where(aoi.c.id == row.id)
            .values(
                west=x0,
                south=y0,
                east=x1,
                north=y1,
                area_m2=_geodesic_area_m2(row.geometry),
                labels=[],
                updated_at=row.created_at,
            )
        )
    with op.batch_alter_table("aoi") as b:
        for col in ("west", "south", "east", "north", "area_m2"):
            b.alter_column(col, existing_type=sa.Float, nullable=False)
        b.alter_column("labels", existing_type=sa.JSON, nullable=False)
        b.alter_column("updated_at", existing_type=sa.DateTime, nullable=False)
    op.create_index("ix_aoi_bbox", "aoi", ["west", "east", "south", "north"])
    if postgres:
        op.execute(
            "ALTER TABLE aoi ALTER COLUMN geometry TYPE geometry(MULTIPOLYGON, 4326) "
            "USING ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(geometry), 4326))"
        )
        op.create_index("ix_aoi_geometry", "aoi", ["geometry"], postgresql_using="gist")

    # --- named sets
    op.create_table(
        "aoi_set",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "aoi_set_member",
        sa.Column(
            "set_name",
            sa.String(128),
            sa.ForeignKey("aoi_set.name", ondelete="CASCADE", name="fk_aoi_set_member_set_name_aoi_set"),
            primary_key=True,
        ),
        sa.Column(
            "aoi_id",
            sa.String(128),
            sa.ForeignKey("aoi.id", ondelete="CASCADE", name="fk_aoi_set_member_aoi_id_aoi"),
            primary_key=True,
        ),
    )

    # --- model runs and extraction log
    model_run = op.create_table(
        "model_run",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("prefect_flow_run_id", sa.String(64)),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("model", sa.String(64)),
        sa.Column("model_version", sa.String(32)),
        sa.Column("constellations", sa.JSON, nullable=False),
        sa.Column("aoi_ids", sa.JSON, nullable=False),
        sa.Column("tiles", sa.JSON, nullable=False),
        sa.Column("start_date", sa.Date),
        sa.Column("end_date", sa.Date),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("duration_s", sa.Float),
        sa.Column("counts", sa.JSON, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("software_version", sa.String(32), nullable=False),
    )
    assert model_run is not None
    op.create_index("ix_model_run_prefect_flow_run_id", "model_run", ["prefect_flow_run_id"])
    op.create_table(
        "extraction_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "model_run_id",
            sa.String(36),
            sa.ForeignKey(
                "model_run.id", ondelete="CASCADE", name="fk_extraction_log_model_run_id_model_run"
            ),
            nullable=False,
        ),
        sa.Column("tile_id", sa.String(64), nullable=False),
        sa.Column("constellation", sa.String(32), nullable=False),
        sa.Column("window", sa.String(16), nullable=False),
        sa.Column("days_requested", sa.JSON, nullable=False),
        sa.Column("days_written", sa.JSON, nullable=False),
        sa.Column("slices_written", sa.Integer, nullable=False),
        sa.Column("slices_skipped", sa.Integer, nullable=False),
        sa.Column("scenes_read", sa.Integer, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_extraction_log_model_run_id", "extraction_log", ["model_run_id"])

    # Carry the old flow_run records over; observations point at the newest run of their Prefect id.
    flow_run = sa.table(
        "flow_run",
        sa.column("id", sa.Integer),
        sa.column("flow_run_id", sa.String),
        sa.column("flow", sa.String),
        sa.column("parameters", sa.JSON),
        sa.column("started_at", sa.DateTime),
        sa.column("finished_at", sa.DateTime),
        sa.column("state", sa.String),
        sa.column("counts", sa.JSON),
    )
    by_prefect_id: dict[str, str] = {}
    for r in bind.execute(sa.select(flow_run).order_by(flow_run.c.id)).all():
        new_id = str(uuid.uuid4())
        params: dict[str, Any] = dict(r.parameters or {})
        duration = (r.finished_at - r.started_at).total_seconds() if r.finished_at else None
        bind.execute(
            model_run.insert().values(
                id=new_id,
                prefect_flow_run_id=r.flow_run_id,
                flow=r.flow,
                parameters=params,
                model=params.get("model"),
                constellations=[],
                aoi_ids=[],
                tiles=[],
                state=r.state,
                started_at=r.started_at,
                finished_at=r.finished_at,
                duration_s=duration,
                counts=r.counts or {},
                error=(r.counts or {}).get("error"),
                software_version="0.1.0",
            )
        )
        if r.flow_run_id:
            by_prefect_id[r.flow_run_id] = new_id

    with op.batch_alter_table("water_observation") as b:
        b.add_column(sa.Column("model_run_id", sa.String(36), nullable=True))
    obs = sa.table(
        "water_observation", sa.column("flow_run_id", sa.String), sa.column("model_run_id", sa.String)
    )
    for prefect_id, run_id in by_prefect_id.items():
        bind.execute(obs.update().where(obs.c.flow_run_id == prefect_id).values(model_run_id=run_id))
    with op.batch_alter_table("water_observation") as b:
        b.drop_column("flow_run_id")
        b.create_foreign_key(
            "fk_water_observation_model_run_id_model_run", "model_run", ["model_run_id"], ["id"]
        )
        b.create_index("ix_water_observation_model_run_id", ["model_run_id"])
    op.drop_table("flow_run")


def downgrade() -> None:
    raise NotImplementedError("0002 is not reversible: restore the database from a backup instead")
