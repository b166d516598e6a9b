"""Tests for oxeo_flows.store, on SQLite and on PostgreSQL/PostGIS (the `db_url` fixture)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from shapely.geometry import MultiPolygon, Polygon, box
from sqlalchemy.engine import Engine

import oxeo_flows
from oxeo_flows import store
from oxeo_flows.aoi import AOI
from oxeo_flows.errors import InputError
from oxeo_flows.schema import TABLES
from oxeo_flows.timeseries import Observation

LAKE_A = AOI("lake-a", "Lake A", box(30.0, -1.0, 30.1, -0.9), {"kind": "lake", "basin": 12})
LAKE_B = AOI(
    "lake-b",
    "Lake B",
    MultiPolygon([box(31.0, -1.0, 31.2, -0.8), box(31.3, -1.0, 31.4, -0.9)]),
    {"tags": ["reservoir", "dam"], "nested": {"depth_m": 12.5}},
)
T0 = datetime(2024, 3, 10, 9, 30, 15)


def obs(
    aoi_id: str = "lake-a",
    acquired_at: datetime = T0,
    constellation: str = "sentinel-2",
    model: str = "mndwi-v1",
    water_px: int = 100,
    **kw: object,
) -> Observation:
    fields: dict[str, object] = {
        "aoi_id": aoi_id,
        "acquired_at": acquired_at,
        "solar_day": acquired_at.date(),
        "constellation": constellation,
        "model": model,
        "water_area_m2": water_px * 100.0,
        "water_px": water_px,
        "valid_px": 900,
        "cloud_px": 60,
        "nodata_px": 40,
        "total_px": 1000,
        "valid_fraction": 0.9,
        "cloud_fraction": 0.06,
        "usable": True,
        "pixel_size_m": 10.0,
        "tiles": ["36M_0123_9876"],
    }
    fields.update(kw)
    return Observation(**fields)  # type: ignore[arg-type]


@pytest.fixture()
def engine(db_url: str) -> Iterator[Engine]:
    eng = store.connect(db_url)
    store.upsert_aois(eng, [LAKE_A, LAKE_B])
    yield eng
    eng.dispose()


def new_run(engine: Engine, flow: str = "water") -> str:
    return store.start_model_run(
        engine,
        flow=flow,
        prefect_flow_run_id=None,
        parameters={},
        model="mndwi-v1",
        model_version="1",
        constellations=["sentinel-2"],
        aoi_ids=["lake-a"],
        tiles=[],
        start_date=None,
        end_date=None,
        started_at=datetime.now(UTC),
    )


def _count(engine: Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_connect_creates_schema_and_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "oxeo.db"
    eng = store.connect(f"sqlite:///{path}")
    try:
        assert path.is_file()
        insp = sa.inspect(eng)
        assert set(insp.get_table_names()) == {t.name for t in TABLES} | {"alembic_version"}
        cols = {c["name"] for c in insp.get_columns("water_observation")}
        assert set(store.OBSERVATION_FIELDS) <= cols
        uniques = insp.get_unique_constraints("water_observation")
        assert [u["column_names"] for u in uniques] == [["aoi_id", "acquired_at", "constellation", "model"]]
        fks = insp.get_foreign_keys("water_observation")
        assert sorted((f["referred_table"], f["constrained_columns"]) for f in fks) == [
            ("aoi", ["aoi_id"]),
            ("model_run", ["model_run_id"]),
        ]
    finally:
        eng.dispose()
    # connecting again to an existing database is fine and keeps the data
    eng = store.connect(f"sqlite:///{path}")
    store.upsert_aois(eng, [LAKE_A])
    eng.dispose()
    eng = store.connect(f"sqlite:///{path}")
    assert [a.id for a in store.get_aois(eng, ["lake-a"])] == ["lake-a"]
    eng.dispose()


def test_connect_rejects_bad_url() -> None:
    with pytest.raises(InputError) as exc:
        store.connect("not a url")
    assert exc.value.parameter == "database_url"
    assert "'not a url'" in str(exc.value)


def test_aoi_round_trip(engine: Engine) -> None:
    got = store.get_aois(engine, ["lake-b", "missing", "lake-a"])
    assert [a.id for a in got] == ["lake-b", "lake-a"]
    b, a = got
    assert a == LAKE_A
    assert b == LAKE_B
    assert a.geometry.equals(LAKE_A.geometry)
    assert b.geometry.equals(LAKE_B.geometry)
    assert isinstance(a.geometry, MultiPolygon)
    assert a.name == "Lake A"
    assert a.properties == {"kind": "lake", "basin": 12}
    assert b.properties == {"tags": ["reservoir", "dam"], "nested": {"depth_m": 12.5}}
    assert a.geometry_hash == LAKE_A.geometry_hash
    assert store.get_aois(engine, ["missing"]) == []
    assert store.get_aois(engine, []) == []


def test_aoi_upsert_updates(engine: Engine) -> None:
    moved = AOI("lake-a", "Lake A (renamed)", Polygon(box(30.0, -1.0, 30.2, -0.9)), {"v": 2})
    store.upsert_aois(engine, [moved])
    store.upsert_aois(engine, [])
    assert _count(engine, store.aoi_table) == 2
    (got,) = store.get_aois(engine, ["lake-a"])
    assert got.name == "Lake A (renamed)"
    assert got.geometry.equals(moved.geometry)
    assert got.properties == {"v": 2}
    with engine.connect() as conn:
        h = conn.execute(
            sa.select(store.aoi_table.c.geometry_hash).where(store.aoi_table.c.id == "lake-a")
        ).scalar_one()
    assert h == moved.geometry_hash != LAKE_A.geometry_hash


def test_moved_aoi_loses_its_stale_rows_only(engine: Engine) -> None:
    store.upsert_observations(engine, [obs(), obs(aoi_id="lake-b")], None)
    # same geometry again (another name): nothing stale
    assert store.upsert_aois(engine, [replace(LAKE_A, name="Lake A again"), LAKE_B]) == {}
    assert _count(engine, store.observation_table) == 2
    moved = replace(LAKE_A, geometry=MultiPolygon([box(30.0, -1.0, 30.2, -0.9)]))
    assert store.upsert_aois(engine, [moved, LAKE_B]) == {"lake-a": 1}
    assert [r["aoi_id"] for r in store.query_observations(engine)] == ["lake-b"]
    (got,) = store.get_aois(engine, ["lake-a"])
    assert got.geometry.equals(moved.geometry)


def test_upsert_observations_is_idempotent_and_updates(engine: Engine) -> None:
    first = [obs(), obs(acquired_at=T0 + timedelta(days=5), water_px=120)]
    run1, run2 = new_run(engine), new_run(engine)
    assert store.upsert_observations(engine, first, run1) == 2
    assert _count(engine, store.observation_table) == 2
    changed = [
        obs(water_px=150, usable=False, tiles=["a", "b"]),
        obs(acquired_at=T0 + timedelta(days=5), water_px=130),
    ]
    assert store.upsert_observations(engine, changed, run2) == 2
    assert _count(engine, store.observation_table) == 2
    rows = store.query_observations(engine)
    assert [(r["acquired_at"], r["water_px"], r["water_area_m2"]) for r in rows] == [
        (T0, 150, 15000.0),
        (T0 + timedelta(days=5), 130, 13000.0),
    ]
    assert rows[0]["usable"] is False
    assert rows[0]["tiles"] == ["a", "b"]
    assert {r["model_run_id"] for r in rows} == {run2}
    # identical rerun: identical row set
    before = [{k: v for k, v in r.items() if k != "computed_at"} for r in rows]
    store.upsert_observations(engine, changed, run2)
    after = [{k: v for k, v in r.items() if k != "computed_at"} for r in store.query_observations(engine)]
    assert after == before


def test_upsert_observations_other_model_or_constellation_adds_rows(engine: Engine) -> None:
    store.upsert_observations(engine, [obs()], None)
    store.upsert_observations(engine, [obs(model="ndwi-v1")], None)
    store.upsert_observations(engine, [obs(constellation="landsat-8", pixel_size_m=30.0)], None)
    store.upsert_observations(engine, [obs(aoi_id="lake-b")], None)
    assert _count(engine, store.observation_table) == 4
    keys = [(r["aoi_id"], r["constellation"], r["model"]) for r in store.query_observations(engine)]
    assert keys == [
        ("lake-a", "landsat-8", "mndwi-v1"),
        ("lake-a", "sentinel-2", "mndwi-v1"),
        ("lake-a", "sentinel-2", "ndwi-v1"),
        ("lake-b", "sentinel-2", "mndwi-v1"),
    ]


def test_upsert_observations_empty(engine: Engine) -> None:
    assert store.upsert_observations(engine, [], None) == 0
    assert _count(engine, store.observation_table) == 0


def test_aware_datetimes_stored_as_naive_utc(engine: Engine) -> None:
    plus2 = timezone(timedelta(hours=2))
    local = datetime(2024, 3, 10, 10, 0, tzinfo=plus2)
    store.upsert_observations(engine, [obs(acquired_at=local, water_px=1)], None)
    (row,) = store.query_observations(engine)
    assert row["acquired_at"] == datetime(2024, 3, 10, 8, 0)
    assert row["acquired_at"].tzinfo is None
    assert row["computed_at"].tzinfo is None
    assert abs(row["computed_at"] - datetime.now(UTC).replace(tzinfo=None)) < timedelta(minutes=5)
    same_instant = datetime(2024, 3, 10, 8, 0, tzinfo=UTC)
    store.upsert_observations(engine, [obs(acquired_at=same_instant, water_px=2)], None)
    rows = store.query_observations(engine)
    assert len(rows) == 1
    assert rows[0]["water_px"] == 2
    assert rows[0]["acquired_at"] == datetime(2024, 3, 10, 8, 0)


def test_query_observations_ordering_and_filters(engine: Engine) -> None:
    d1, d2 = T0, T0 + timedelta(days=1)
    given = [
        obs("lake-b", d2, "sentinel-2", "mndwi-v1"),
        obs("lake-a", d2, "sentinel-2", "mndwi-v1"),
        obs("lake-a", d1, "sentinel-2", "ndwi-v1"),
        obs("lake-b", d1, "landsat-8", "mndwi-v1"),
        obs("lake-a", d1, "landsat-8", "mndwi-v1"),
        obs("lake-a", d1, "sentinel-2", "mndwi-v1"),
    ]
    run = new_run(engine)
    store.upsert_observations(engine, given, run)

    def keys(rows: list[dict[str, object]]) -> list[tuple[object, ...]]:
        return [(r["aoi_id"], r["acquired_at"], r["constellation"], r["model"]) for r in rows]

    expected = sorted((o.aoi_id, o.acquired_at, o.constellation, o.model) for o in given)
    assert keys(store.query_observations(engine)) == expected
    assert keys(store.query_observations(engine, ["lake-b"])) == [
        ("lake-b", d1, "landsat-8", "mndwi-v1"),
        ("lake-b", d2, "sentinel-2", "mndwi-v1"),
    ]
    assert keys(store.query_observations(engine, None, "landsat-8")) == [
        ("lake-a", d1, "landsat-8", "mndwi-v1"),
        ("lake-b", d1, "landsat-8", "mndwi-v1"),
    ]
    assert keys(store.query_observations(engine, ["lake-a"], "sentinel-2")) == [
        ("lake-a", d1, "sentinel-2", "mndwi-v1"),
        ("lake-a", d1, "sentinel-2", "ndwi-v1"),
        ("lake-a", d2, "sentinel-2", "mndwi-v1"),
    ]
    assert store.query_observations(engine, ["nobody"]) == []
    row = store.query_observations(engine, ["lake-a"], "landsat-8")[0]
    assert row["solar_day"] == date(2024, 3, 10)
    assert row["model_run_id"] == run
    assert set(row) == {"id", *store.OBSERVATION_FIELDS}


def test_foreign_key_violation_rolls_back(engine: Engine) -> None:
    good = obs()
    orphan = replace(obs(), aoi_id="no-such-aoi")
    with pytest.raises(sa.exc.IntegrityError):
        store.upsert_observations(engine, [good, orphan], None)
    assert _count(engine, store.observation_table) == 0
    with pytest.raises(sa.exc.IntegrityError):
        store.upsert_observations(engine, [orphan], None)
    assert _count(engine, store.observation_table) == 0


def test_model_run_lifecycle_and_extraction_log(engine: Engine) -> None:
    started = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=-3)))
    params = {
        "aoi": ["lake-a", "lake-b"],
        "start_date": date(2024, 1, 1),
        "end_date": date(2024, 3, 31),
        "tile_size_m": 10000,
        "catalog": None,
    }
    run_id = store.start_model_run(
        engine,
        flow="water",
        prefect_flow_run_id="0f1e2d3c",
        parameters=params,
        model="mndwi-v1",
        model_version="1",
        constellations=["sentinel-2", "landsat-8"],
        aoi_ids=["lake-a", "lake-b"],
        tiles=["36_M_10000_35_931"],
        start_date=date(2024, 1, 1),
        end_date=date(2024, 3, 31),
        started_at=started,
    )
    (row,) = store.model_runs(engine)
    assert row["id"] == run_id and row["state"] == "RUNNING" and row["finished_at"] is None
    store.log_extraction(
        engine,
        run_id,
        tile_id="36_M_10000_35_931",
        constellation="sentinel-2",
        window="2024-01",
        days_requested=[date(2024, 1, 5), date(2024, 1, 10)],
        days_written=[date(2024, 1, 10)],
        slices_written=1,
        slices_skipped=1,
        scenes_read=2,
        duration_s=1.25,
    )
    store.finish_model_run(
        engine, run_id, state="COMPLETED", counts={"rows_written": 4, "d": date(2024, 1, 2)}
    )
    (row,) = store.model_runs(engine)
    assert row["flow"] == "water"
    assert row["prefect_flow_run_id"] == "0f1e2d3c"
    assert row["state"] == "COMPLETED"
    assert row["parameters"] == {
        "aoi": ["lake-a", "lake-b"],
        "start_date": "2024-01-01",
        "end_date": "2024-03-31",
        "tile_size_m": 10000,
        "catalog": None,
    }
    assert row["constellations"] == ["sentinel-2", "landsat-8"]
    assert row["tiles"] == ["36_M_10000_35_931"]
    assert (row["start_date"], row["end_date"]) == (date(2024, 1, 1), date(2024, 3, 31))
    assert row["counts"] == {"rows_written": 4, "d": "2024-01-02"}
    assert row["started_at"] == datetime(2024, 5, 1, 15, 0)
    assert row["finished_at"].tzinfo is None
    assert row["duration_s"] == (row["finished_at"] - row["started_at"]).total_seconds()
    assert row["software_version"] == oxeo_flows.__version__
    assert store.get_model_run(engine, run_id) == row
    assert store.get_model_run(engine, "no-such-run") is None
    (log,) = store.extraction_log(engine, run_id)
    assert log["days_requested"] == ["2024-01-05", "2024-01-10"]
    assert log["days_written"] == ["2024-01-10"]
    assert (log["slices_written"], log["slices_skipped"], log["scenes_read"]) == (1, 1, 2)
    # a second run is a second record; a failed one keeps its error
    other = new_run(engine)
    store.finish_model_run(engine, other, state="FAILED", counts={}, error="SourceError: down")
    assert [r["state"] for r in store.model_runs(engine)] == ["FAILED", "COMPLETED"] or len(
        store.model_runs(engine)
    ) == 2
    assert {r["error"] for r in store.model_runs(engine)} == {None, "SourceError: down"}
    assert _count(engine, store.model_run_table) == 2


def test_harmonise_keeps_the_best_observation_per_day() -> None:

    def row(const: str, valid: float, px: float, hour: int, day: int = 1, model: str = "m") -> dict[str, Any]:
        return {
            "aoi_id": "a", "solar_day": date(2024, 1, day), "model": model, "constellation": const,
            "valid_fraction": valid, "pixel_size_m": px, "acquired_at": datetime(2024, 1, day, hour),
        }  # fmt: skip

    rows = [
        row("landsat-8", 1.0, 30.0, 9),
        row("sentinel-2", 0.95, 10.0, 10),  # less valid: loses
        row("sentinel-2", 0.9, 10.0, 10, day=2),
        row("landsat-9", 0.9, 30.0, 9, day=2),  # tie on validity: the finer pixels win
        row("landsat-9", 0.5, 30.0, 9, day=3, model="other"),
    ]
    got = [(r["solar_day"].day, r["constellation"], r["model"]) for r in store.harmonise(rows)]
    assert got == [(1, "landsat-8", "m"), (2, "sentinel-2", "m"), (3, "landsat-9", "other")]
