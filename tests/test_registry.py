"""AOI registry, sets, exports, plots and migrations, on SQLite and on PostgreSQL/PostGIS (`db_url`)."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import geopandas as gpd
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from shapely.geometry import box, shape

from oxeo_flows import aoi_registry as reg
from oxeo_flows import migrate, store
from oxeo_flows.aoi import AOI, parse_aoi
from oxeo_flows.cli import main
from oxeo_flows.errors import InputError
from oxeo_flows.exports import EXPORT_COLUMNS
from oxeo_flows.plot import timeseries_figure
from oxeo_flows.timeseries import Observation

T0 = datetime(2024, 3, 1, 10, 0)


def _obs(aoi_id: str, day: int, const: str = "sentinel-2", usable: bool = True, px: int = 100) -> Observation:
    t = T0 + timedelta(days=day)
    return Observation(
        aoi_id,
        t,
        t.date(),
        const,
        "mndwi-v1",
        px * 100.0,
        px,
        900,
        60,
        40,
        1000,
        0.9,
        0.06,
        usable,
        10.0,
        ["t"],
    )


def _lakes_file(tmp_path: Path, driver: str = "GeoJSON", crs: str = "EPSG:4326") -> Path:
    gdf = gpd.GeoDataFrame(
        {
            "code": ["kariba", "volta", "naivasha"],
            "title": ["Lake Kariba", "Lake Volta", "Lake Naivasha"],
            "kind": ["reservoir", "reservoir,hydro", "lake"],
            "depth": [29.0, 18.8, 6.0],
        },
        geometry=[box(27.0, -17.5, 28.5, -16.4), box(-0.5, 6.3, 0.6, 8.6), box(36.25, -0.85, 36.45, -0.7)],
        crs="EPSG:4326",
    )
    ext = {"GeoJSON": "geojson", "GPKG": "gpkg", "ESRI Shapefile": "shp"}[driver]
    path = tmp_path / f"lakes.{ext}"
    gdf.to_crs(crs).to_file(path, driver=driver)
    return path


@pytest.fixture()
def engine(db_url: str) -> Any:
    eng = store.connect(db_url)
    yield eng
    eng.dispose()


@pytest.mark.parametrize("driver", ["GeoJSON", "GPKG", "ESRI Shapefile"])
def test_read_aoi_file_formats(tmp_path: Path, driver: str) -> None:
    # the Shapefile is written in UTM metres: the registry reprojects to lon/lat
    crs = "EPSG:32736" if driver == "ESRI Shapefile" else "EPSG:4326"
    aois = reg.read_aoi_file(
        _lakes_file(tmp_path, driver, crs), id_column="code", name_column="title", label_column="kind"
    )
    assert [a.id for a in aois] == ["kariba", "volta", "naivasha"]
    assert [a.name for a in aois] == ["Lake Kariba", "Lake Volta", "Lake Naivasha"]
    assert [a.properties["labels"] for a in aois] == [["reservoir"], ["hydro", "reservoir"], ["lake"]]
    assert aois[0].properties["depth"] == 29.0
    tol = 1e-6 if crs != "EPSG:4326" else 0.0
    assert (
        aois[2].geometry.equals_exact(
            parse_aoi(
                {"type": "Polygon", "coordinates": [list(box(36.25, -0.85, 36.45, -0.7).exterior.coords)]}
            )[0].geometry,
            tol,
        )
        or aois[2].geometry.symmetric_difference(box(36.25, -0.85, 36.45, -0.7)).area < 1e-9
    )


def test_read_aoi_file_errors(tmp_path: Path) -> None:
    path = _lakes_file(tmp_path)
    with pytest.raises(InputError) as e:
        reg.read_aoi_file(path, id_column="nope")
    assert e.value.parameter == "--id-column" and "code" in str(e.value)
    bad = tmp_path / "bad.gpkg"
    bad.write_bytes(b"not a geopackage")
    with pytest.raises(InputError) as e:
        reg.read_aoi_file(bad)
    assert e.value.parameter == "FILE"


def test_registry_search_show_remove(engine: Any, tmp_path: Path) -> None:
    aois = reg.read_aoi_file(
        _lakes_file(tmp_path), id_column="code", name_column="title", label_column="kind"
    )
    reg.add_aois(engine, aois, set_name="chosen")
    ids = lambda recs: [r.id for r in recs]  # noqa: E731
    assert ids(reg.list_aois(engine)) == ["kariba", "naivasha", "volta"]
    assert ids(reg.list_aois(engine, label="reservoir")) == ["kariba", "volta"]
    assert ids(reg.list_aois(engine, label="hydro")) == ["volta"]
    assert ids(reg.list_aois(engine, name="LAKE K")) == ["kariba"]
    assert ids(reg.list_aois(engine, name="%")) == []  # LIKE wildcards are literal
    assert ids(reg.list_aois(engine, bbox=(36.0, -1.0, 37.0, 0.0))) == ["naivasha"]
    # bbox overlaps Kariba's bbox and touches nothing else
    assert ids(reg.list_aois(engine, bbox=(28.0, -17.0, 30.0, -15.0))) == ["kariba"]
    assert ids(reg.list_aois(engine, bbox=(10.0, 10.0, 11.0, 11.0))) == []
    assert reg.count_aois(engine, label="reservoir") == 2
    assert reg.count_aois(engine, bbox=(-180, -90, 180, 90)) == 3
    pages = [ids(reg.list_aois(engine, limit=2, offset=o)) for o in (0, 2, 4)]
    assert pages == [["kariba", "naivasha"], ["volta"], []]
    assert ids(reg.list_aois(engine, set_name="chosen")) == ["kariba", "naivasha", "volta"]

    rec = reg.get_aoi(engine, "volta")
    assert rec is not None
    assert rec.sets == ["chosen"] and rec.labels == ["hydro", "reservoir"]
    assert rec.bbox == (-0.5, 6.3, 0.6, 8.6)
    # geodesic area of a 1.1 x 2.3 degree box near the equator: about 31,000 km²
    assert 30_000e6 < rec.area_m2 < 32_000e6
    feature = rec.to_feature()
    assert shape(feature["geometry"]).equals(box(-0.5, 6.3, 0.6, 8.6))
    assert feature["properties"]["name"] == "Lake Volta" and feature["properties"]["depth"] == 18.8

    # a flow run naming the AOI by GeoJSON updates geometry/name but keeps the registry's labels
    store.upsert_aois(engine, [AOI("volta", "Volta", box(-0.5, 6.3, 0.7, 8.6), {})])
    rec2 = reg.get_aoi(engine, "volta")
    assert rec2 is not None and rec2.labels == ["hydro", "reservoir"] and rec2.name == "Volta"
    assert rec2.created_at == rec.created_at

    store.upsert_observations(engine, [_obs("volta", 0), _obs("volta", 1)], None)
    with pytest.raises(InputError) as e:
        reg.remove_aoi(engine, "volta")
    assert e.value.parameter == "ID" and "2 time-series rows" in str(e.value)
    assert reg.get_aoi(engine, "volta") is not None
    assert reg.remove_aoi(engine, "volta", cascade=True) == 2
    assert reg.get_aoi(engine, "volta") is None
    assert store.query_observations(engine) == []
    assert ids(reg.list_aois(engine, set_name="chosen")) == ["kariba", "naivasha"]
    with pytest.raises(InputError):
        reg.remove_aoi(engine, "volta")
    with pytest.raises(InputError):
        reg.remove_aoi(engine, "../etc")


def test_sets_resolve_as_flow_aoi_parameter(engine: Any, db_url: str) -> None:
    store.upsert_aois(
        engine, [AOI(f"lake-{i}", f"Lake {i}", box(30 + i, 0, 30.1 + i, 0.1)) for i in range(4)]
    )
    reg.add_to_set(engine, "chosen", ["lake-2", "lake-0"], description="demo")
    reg.add_to_set(engine, "chosen", ["lake-0"])  # idempotent
    lookup = store.aoi_lookup(db_url)
    assert [a.id for a in parse_aoi("set:chosen", lookup=lookup)] == ["lake-0", "lake-2"]
    assert [a.id for a in parse_aoi("set:chosen,lake-3", lookup=lookup)] == ["lake-0", "lake-2", "lake-3"]
    assert [a.id for a in parse_aoi(["lake-1", "set:chosen"], lookup=lookup)] == [
        "lake-0",
        "lake-2",
        "lake-1",
    ]
    with pytest.raises(InputError, match="unknown or empty AOI set 'nope'"):
        parse_aoi("set:nope", lookup=lookup)
    with pytest.raises(InputError, match="invalid AOI id"):
        parse_aoi("set:../x", lookup=lookup)
    with pytest.raises(InputError, match="unknown AOI id"):
        reg.add_to_set(engine, "chosen", ["missing"])
    assert reg.list_sets(engine) == [{"name": "chosen", "description": "demo", "members": 2}]
    assert reg.remove_from_set(engine, "chosen", ["lake-2"]) == 1
    reg.delete_set(engine, "chosen")
    assert reg.list_sets(engine) == []
    assert len(reg.list_aois(engine)) == 4  # AOIs stay


def test_postgis_bbox_search_uses_the_spatial_index(db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("spatial index plan is a PostGIS property")
    engine = store.connect(db_url)
    aois = [
        AOI(f"g-{i:03d}-{j:03d}", "grid", box(i * 0.1, j * 0.1, i * 0.1 + 0.05, j * 0.1 + 0.05))
        for i in range(60)
        for j in range(60)
    ]
    store.upsert_aois(engine, aois)
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE aoi"))
    bbox = (1.0, 1.0, 1.26, 1.26)
    q = sa.select(store.aoi_table.c.id).where(*reg._filters(engine, None, None, None, bbox, None))
    sql = str(q.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        plan = "\n".join(conn.execute(sa.text("EXPLAIN " + sql)).scalars())
    assert "ix_aoi_geometry" in plan, plan
    assert len(reg.list_aois(engine, bbox=bbox)) == 9  # 3 x 3 boxes reach into the query box
    engine.dispose()


def test_migrating_a_0_1_database_keeps_its_rows(db_url: str) -> None:
    """A database made by 0.1 (no alembic_version) is stamped at 0001 and upgraded with its data."""
    engine = sa.create_engine(db_url)
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(migrate._config(conn), "0001")
        conn.execute(sa.text("DROP TABLE alembic_version"))
        geom = json.dumps(
            {"type": "MultiPolygon", "coordinates": [[[[30, 0], [30.1, 0], [30.1, 0.1], [30, 0.1], [30, 0]]]]}
        )
        conn.execute(
            sa.text(
                "INSERT INTO aoi (id, name, geometry, geometry_hash, properties, created_at) "
                "VALUES ('old', 'Old lake', :g, 'h', '{}', :t)"
            ),
            {"g": geom, "t": datetime(2024, 1, 1)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO flow_run (flow_run_id, flow, parameters, started_at, finished_at, state, "
                "counts) VALUES ('prefect-1', 'water', '{\"model\": \"mndwi\"}', :t, :t, 'COMPLETED', '{}')"
            ),
            {"t": datetime(2024, 1, 2)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO water_observation (aoi_id, acquired_at, solar_day, constellation, model, "
                "water_area_m2, water_px, valid_px, cloud_px, nodata_px, total_px, valid_fraction, "
                "cloud_fraction, usable, pixel_size_m, tiles, flow_run_id, computed_at) VALUES "
                "('old', :t, :d, 'sentinel-2', 'mndwi-v1', 100.0, 1, 1, 0, 0, 1, 1.0, 0.0, TRUE, 10.0, '[]', "
                "'prefect-1', :t)"
            ),
            {"t": datetime(2024, 1, 2), "d": date(2024, 1, 2)},
        )
    assert migrate.current(engine) is None
    # validation (the CLI's pre-flight, the flow's parameter check) reads the old schema without writing
    tables = set(sa.inspect(engine).get_table_names())
    (looked_up,) = store.aoi_lookup(db_url)(["old", "missing", "set:any"])
    assert looked_up.id == "old" and looked_up.name == "Old lake"
    assert looked_up.geometry.equals(box(30, 0, 30.1, 0.1))
    assert migrate.current(engine) is None and set(sa.inspect(engine).get_table_names()) == tables
    engine.dispose()
    engine = store.connect(db_url)
    assert migrate.current(engine) == migrate.head()
    assert store.aoi_lookup(db_url)(["old"]) == [looked_up]
    (aoi,) = store.get_aois(engine, ["old"])
    assert aoi.geometry.equals(box(30, 0, 30.1, 0.1))
    rec = reg.get_aoi(engine, "old")
    assert rec is not None and rec.bbox == (30.0, 0.0, 30.1, 0.1) and rec.labels == []
    (run,) = store.model_runs(engine)
    assert (run["prefect_flow_run_id"], run["state"], run["model"]) == ("prefect-1", "COMPLETED", "mndwi")
    (row,) = store.query_observations(engine)
    assert row["model_run_id"] == run["id"] and row["water_area_m2"] == 100.0
    engine.dispose()


def test_migrations_match_the_table_definitions(db_url: str) -> None:
    """Alembic's autogenerate finds nothing to change between the migrated DB and schema.py."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from oxeo_flows.schema import metadata

    engine = store.connect(db_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    # Not in schema.py on purpose: PostGIS' own table, and the GiST index that only PostgreSQL has
    # (created by migration 0002; test_postgis_bbox_search_uses_the_spatial_index proves it is used).
    pg_only = {("remove_table", "spatial_ref_sys"), ("remove_index", "ix_aoi_geometry")}
    named = [(d[0], d[1].name) for d in diff]
    assert [n for n in named if n not in pg_only] == []
    if db_url.startswith("postgresql"):
        assert ("remove_index", "ix_aoi_geometry") in named
    engine.dispose()


# --- CLI: aoi, export, plot -------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_cli_registry_export_and_plot(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = ["--database-url", db_url]
    path = _lakes_file(tmp_path, "GPKG")
    out = _cli(capsys, "aoi", "add", str(path), "--id-column", "code", "--name-column", "title",
               "--label", "africa", "--set", "chosen", *db)  # fmt: skip
    assert "added or updated 3 AOI(s) (set chosen): kariba, volta, naivasha" in out
    listed = json.loads(_cli(capsys, "aoi", "list", "--label", "africa", "--format", "json", *db))
    assert [a["id"] for a in listed] == ["kariba", "naivasha", "volta"]
    fc = json.loads(_cli(capsys, "aoi", "list", "--bbox", "36,-1,37,0", "--format", "geojson", *db))
    assert [f["id"] for f in fc["features"]] == ["naivasha"]
    shown = json.loads(_cli(capsys, "aoi", "show", "kariba", *db))
    assert shown["properties"]["name"] == "Lake Kariba" and shown["properties"]["observations"] == 0

    engine = store.connect(db_url)
    rows = [_obs("kariba", d, usable=d != 2, px=100 + d) for d in range(5)]
    rows += [_obs("kariba", d, "landsat-8", px=90) for d in (1, 3)] + [_obs("volta", 0)]
    store.upsert_observations(engine, rows, None)
    engine.dispose()

    csv_rows = list(csv.DictReader(io.StringIO(_cli(capsys, "export", "timeseries", "--aoi", "kariba", *db))))
    assert len(csv_rows) == 7 and list(csv_rows[0]) == EXPORT_COLUMNS
    assert csv_rows[0]["datetime"] == "2024-03-01T10:00:00Z"
    as_json = json.loads(_cli(capsys, "export", "timeseries", "--aoi", "set:chosen", "--format", "json", *db))
    assert len(as_json) == 8
    _cli(capsys, "export", "timeseries", "--aoi", "kariba", "--format", "parquet", "-o", "ts.parquet", *db)
    table = pq.read_table(tmp_path / "ts.parquet")
    assert table.column_names == EXPORT_COLUMNS
    assert str(table.schema.field("datetime").type) == "timestamp[us, tz=UTC]"
    got = table.to_pylist()
    assert [r["datetime"] for r in got] == [
        datetime.fromisoformat(r["datetime"].replace("Z", "+00:00")) for r in csv_rows
    ]
    assert [r["water_area_m2"] for r in got] == [float(r["water_area_m2"]) for r in csv_rows]
    assert [r["usable"] for r in got] == [r["usable"] == "True" for r in csv_rows]
    assert got[0]["datetime"].tzinfo is not None and got[0]["datetime"] == T0.replace(tzinfo=UTC)
    _cli(capsys, "export", "timeseries", "--format", "geojson", "-o", "ts.geojson", *db)
    gj = json.loads((tmp_path / "ts.geojson").read_text())
    assert len(gj["features"]) == 8
    volta = [f for f in gj["features"] if f["properties"]["aoi_id"] == "volta"]
    assert shape(volta[0]["geometry"]).equals(box(-0.5, 6.3, 0.6, 8.6))
    assert main(["export", "timeseries", "--format", "xlsx", *db]) == 2
    assert "error: --format: invalid choice: 'xlsx'" in capsys.readouterr().err
    assert main(["export", "timeseries", "--format", "parquet", *db]) == 2
    assert "error: --output:" in capsys.readouterr().err
    assert main(["export", "timeseries", "-o", "missing/dir/ts.csv", *db]) == 2
    assert "error: --output: expected a file in an existing directory" in capsys.readouterr().err
    assert main(["plot", "kariba", "-o", str(tmp_path), *db]) == 2
    assert "error: --output: expected a file name, got the directory" in capsys.readouterr().err

    out = _cli(capsys, "plot", "kariba", "-o", "kariba.png", *db)
    assert "wrote kariba.png (7 observations)" in out
    png = (tmp_path / "kariba.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert main(["plot", "nobody", *db]) == 2
    assert "error: ID: no AOI with id 'nobody'" in capsys.readouterr().err

    assert main(["aoi", "remove", "kariba", *db]) == 2
    assert "--cascade" in capsys.readouterr().err
    assert "and its 7 time-series rows" in _cli(capsys, "aoi", "remove", "kariba", "--cascade", *db)
    assert "revision 0002" in _cli(capsys, "db", "current", *db)


def test_plot_shows_unusable_observations_apart() -> None:
    rows = [{**_obs("a", d, usable=d != 2, px=100 + d).__dict__} for d in range(5)] + [
        {**_obs("a", d, "landsat-8", px=90).__dict__} for d in (1, 3)
    ]
    fig = timeseries_figure(rows, "A")
    (ax,) = fig.axes
    lines = {ln.get_gid(): ln for ln in ax.get_lines()}
    assert set(lines) == {
        "usable:sentinel-2:mndwi-v1",
        "unusable:sentinel-2:mndwi-v1",
        "usable:landsat-8:mndwi-v1",
    }
    usable = lines["usable:sentinel-2:mndwi-v1"]
    assert list(usable.get_ydata()) == [r["water_area_m2"] / 1e6 for r in rows[:5] if r["usable"]]
    bad = lines["unusable:sentinel-2:mndwi-v1"]
    assert list(bad.get_ydata()) == [rows[2]["water_area_m2"] / 1e6]
    assert bad.get_linestyle() == "None" and bad.get_markerfacecolor() == "none"
    assert list(lines["usable:landsat-8:mndwi-v1"].get_ydata()) == [90 * 100.0 / 1e6] * 2  # km²
    empty = timeseries_figure([], "nothing")
    assert [t.get_text() for t in empty.axes[0].texts] == ["no observations"]
