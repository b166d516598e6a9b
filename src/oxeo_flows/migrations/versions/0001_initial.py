"""The first schema (oxeo-flows 0.1): aoi, water_observation, flow_run.

Databases created by 0.1 before migrations existed have these tables without `alembic_version`;
`oxeo_flows.migrate` stamps them at this revision and upgrades from here.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "aoi",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("geometry", sa.Text, nullable=False),
        sa.Column("geometry_hash", sa.String(64), nullable=False),
        sa.Column("properties", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_aoi_geometry_hash", "aoi", ["geometry_hash"])
    op.create_table(
        "water_observation",
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
    op.create_table(
        "flow_run",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("flow_run_id", sa.String(64)),
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("parameters", sa.JSON, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("counts", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("flow_run")
    op.drop_table("water_observation")
    op.drop_index("ix_aoi_geometry_hash", "aoi")
    op.drop_table("aoi")
