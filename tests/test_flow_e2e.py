"""End to end: the CLI runs the Prefect `water` flow on the sample data (slow, kept in CI)."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from oxeo_flows import cli, store
from oxeo_flows.archive import open_archive, stores_under
from oxeo_flows.extract import SOURCE_READS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def _run(sample: Path, work: Path, start: str, end: str, *extra: str, aoi: str | None = None) -> list[str]:
    return [
        "run",
        "water",
        "--param",
        f"aoi={aoi or sample / 'aoi.geojson'}",
        "--param",
        f"catalog={sample / 'catalog.json'}",
        "--param",
        f"storage={work / 'archive'}",
        "--param",
        f"database_url=sqlite:///{work / 'oxeo.db'}",
        "--param",
        f"start_date={start}",
        "--param",
        f"end_date={end}",
        *extra,
    ]


def _cli(args: list[str]) -> str:
    # stdout only: Prefect's console log handler keeps the stderr it saw first, so per-test
    # capture objects (pytest capsys) must not be handed to it.
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cli.main(args) == 0
    return buf.getvalue()


def _export(work: Path) -> list[dict[str, str]]:
    out = _cli(["export", "timeseries", "--database-url", f"sqlite:///{work / 'oxeo.db'}"])
    return list(csv.DictReader(io.StringIO(out)))


def _archive_digest(storage: Path) -> dict[str, str]:
    """Per store: hash of the committed slices in time order (data, masks and per-slice metadata)."""
    out = {}
    for path in stores_under(str(storage)):
        ds = open_archive(path)
        h = hashlib.sha256()
        for name in sorted(ds.data_vars):
            h.update(name.encode())
            h.update(np.ascontiguousarray(ds[name].values).tobytes())
        h.update(ds["time"].values.tobytes())
        out[Path(path).relative_to(storage).as_posix()] = h.hexdigest()
    return out


ALL = "sentinel-2,landsat-8,landsat-9"


def _check_artifacts(flow_run_id: str, n_rows: int) -> None:
    """The run left a markdown report, a table of the rows and a finished progress artifact."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        arts = [a for a in client.read_artifacts() if str(a.flow_run_id) == flow_run_id]
    by_type = {a.type: a for a in arts}
    assert set(by_type) >= {"markdown", "table", "progress", "image"}
    report = str(by_type["markdown"].data)
    assert by_type["markdown"].key == "water-report"
    for word in ("scenes_found", "slices_written", "rows_written", "sample-lake", "33_T_10000_49_498"):
        assert word in report
    table = by_type["table"].data
    rows = json.loads(table) if isinstance(table, str) else table
    assert len(rows) == n_rows and {"aoi_id", "datetime", "water_area_m2"} <= set(rows[0])
    assert float(by_type["progress"].data) == 100.0
    image = by_type["image"]
    assert image.key == "water-area-sample-lake"
    assert str(image.data).startswith("data:image/png;base64,iVBORw0KGgo")  # a PNG


def test_water_flow_matches_ground_truth_and_reruns_read_nothing(sample: Path, tmp_path: Path) -> None:
    before = SOURCE_READS.value
    run = _run(sample, tmp_path, "2024-01-01", "2024-06-30", "--param", f"constellations={ALL}")
    summary = json.loads(_cli(run))
    assert summary["slices_written"] > 0 and summary["rows_written"] > 0
    assert SOURCE_READS.value > before
    engine = store.connect(f"sqlite:///{tmp_path / 'oxeo.db'}")
    with engine.connect() as conn:
        (run_row,) = conn.execute(sa.select(store.model_run_table)).mappings().all()
        obs_runs = set(conn.execute(sa.select(store.observation_table.c.model_run_id)).scalars())
    assert run_row["flow"] == "water" and run_row["state"] == "COMPLETED" and run_row["prefect_flow_run_id"]
    assert run_row["counts"]["rows_written"] == summary["rows_written"]
    assert run_row["constellations"] == ALL.split(",") and run_row["aoi_ids"] == ["sample-lake"]
    assert run_row["duration_s"] > 0 and run_row["model"] == "mndwi-v1-lu"
    assert obs_runs == {run_row["id"]}  # every row references the run that wrote it
    log = store.extraction_log(engine, run_row["id"])
    assert len(log) == summary["work_units"]
    assert sum(r["slices_written"] for r in log) == summary["slices_written"]
    assert all(r["days_written"] == r["days_requested"] for r in log)  # a fresh archive: all written
    _check_artifacts(run_row["prefect_flow_run_id"], summary["rows_written"])
    rows = _export(tmp_path)
    assert list(rows[0])[:5] == [
        "aoi_id",
        "datetime",
        "constellation",
        "water_area_m2",
        "valid_fraction",
    ]

    truth = {
        (r["constellation"], r["solar_day"]): r
        for r in csv.DictReader((sample / "truth.csv").open())
        if "2024-01-01" <= r["solar_day"] <= "2024-06-30"
    }
    # every date of every constellation, cloudy ones included
    assert sorted((r["constellation"], r["solar_day"]) for r in rows) == sorted(truth)
    assert {r["constellation"] for r in rows} == set(ALL.split(","))
    checked = 0
    for r in rows:
        t = truth[(r["constellation"], r["solar_day"])]
        assert r["datetime"] == t["datetime"]  # acquisition time (UTC), not a day bin
        valid = float(r["valid_fraction"])
        true_invalid = float(t["aoi_cloud_fraction"]) + float(t["aoi_nodata_fraction"])
        if r["constellation"] == "sentinel-2":
            assert valid == pytest.approx(1 - true_invalid, abs=0.03)
        else:  # QA_PIXEL's dilated-cloud bit also masks a buffer around the clouds
            assert valid <= 1 - true_invalid + 1e-9
        if valid >= 0.9:
            checked += 1
            true_area = float(t["true_water_area_m2"])
            assert float(r["water_area_m2"]) == pytest.approx(true_area, rel=0.05), r["solar_day"]
        else:
            assert r["usable"] == "False"
    assert checked >= 11
    assert any(float(r["valid_fraction"]) < 0.2 for r in rows)  # the very cloudy date is reported as such

    # Rerun of the same request: zero source reads, same archive, same rows (no duplicates).
    digest = _archive_digest(tmp_path / "archive")
    reads = SOURCE_READS.value
    # ... this time naming the AOI by its id in the database
    again = json.loads(
        _cli(
            _run(
                sample,
                tmp_path,
                "2024-01-01",
                "2024-06-30",
                "--param",
                f"constellations={ALL}",
                aoi="sample-lake",
            )
        )
    )
    assert SOURCE_READS.value == reads
    assert again["work_units"] == 0 and again["slices_written"] == 0 and again["masks_written"] == 0
    assert _archive_digest(tmp_path / "archive") == digest
    rows2 = _export(tmp_path)
    assert rows2 == rows


def test_incremental_runs_in_both_directions_equal_one_full_run(sample: Path, tmp_path: Path) -> None:
    full, inc = tmp_path / "full", tmp_path / "inc"
    _cli(_run(sample, full, "2024-01-01", "2024-06-30"))
    # newer dates first, then older ones, then the whole range
    _cli(_run(sample, inc, "2024-04-01", "2024-06-30"))
    reads = SOURCE_READS.value
    second = json.loads(_cli(_run(sample, inc, "2024-01-01", "2024-03-31")))
    assert second["slices_written"] > 0 and SOURCE_READS.value > reads
    reads = SOURCE_READS.value
    third = json.loads(_cli(_run(sample, inc, "2024-01-01", "2024-06-30")))
    assert third["slices_written"] == 0 and SOURCE_READS.value == reads
    assert _archive_digest(inc / "archive") == _archive_digest(full / "archive")
    # time series identical apart from bookkeeping columns
    assert _export(inc) == _export(full)


def test_pekel_model_on_sentinel2_and_landsat8(sample: Path, tmp_path: Path) -> None:
    extra = ("--param", "constellations=sentinel-2,landsat-8", "--param", "model=pekel")
    _cli(_run(sample, tmp_path, "2024-03-01", "2024-06-30", *extra))
    rows = _export(tmp_path)
    assert {r["constellation"] for r in rows} == {"sentinel-2", "landsat-8"}
    assert {r["model"] for r in rows} == {"pekel-v2-lu"}  # shoreline refinement is on by default
    # Landsat's surface temperature is extracted (kelvin) where the scene has it; the L2SR scene of
    # 2024-06-17 has none: its band is all no data and its scale NaN
    from oxeo_flows.sample_data import ST_CLOUD_K, ST_LAND_K, ST_WATER_K

    stores = [p for p in stores_under(str(tmp_path / "archive")) if p.endswith("landsat-8.zarr")]
    assert stores
    seen = set()
    for path in stores:
        ds = open_archive(path)
        ti = list(ds["band"].values).index("lwir11")
        for k, day in enumerate(ds["solar_day"].values.astype("datetime64[D]").astype(str)):
            seen.add(day)
            dn = ds["data"].values[k, ti]
            scale, offset = float(ds["scale"].values[k, ti]), float(ds["offset"].values[k, ti])
            if day == "2024-06-17":
                assert not dn.any() and np.isnan(scale)
                continue
            kelvin = np.unique(np.round(dn[dn > 0] * scale + offset, 1))
            assert set(kelvin) <= {ST_WATER_K, ST_LAND_K, ST_CLOUD_K} and ST_WATER_K in kelvin
    assert {"2024-04-14", "2024-06-17"} <= seen
    truth = {(r["constellation"], r["solar_day"]): r for r in csv.DictReader((sample / "truth.csv").open())}
    usable = [r for r in rows if r["usable"] == "True"]
    assert {r["constellation"] for r in usable} == {"sentinel-2", "landsat-8"}
    for r in usable:
        true_area = float(truth[(r["constellation"], r["solar_day"])]["true_water_area_m2"])
        assert float(r["water_area_m2"]) == pytest.approx(true_area, rel=0.05)


def test_model_params_and_stage_settings_reach_the_model_key(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`model_params`, `shoreline_refinement` and `cloud_dilation_m` are flow parameters (UI-settable).
    The CLI's pre-flight check and the flow share one catalog search."""
    from oxeo_flows import catalog

    searches: list[str] = []
    real = catalog._search

    def counted(*args: Any) -> Any:
        searches.append(args[0])
        return real(*args)

    monkeypatch.setattr(catalog, "_search", counted)
    extra = (
        "--param",
        'model_params={"threshold": -0.2}',
        "--param",
        "shoreline_refinement=false",
        "--param",
        "cloud_dilation_m=20",
    )
    _cli(_run(sample, tmp_path, "2024-03-01", "2024-03-31", *extra))
    assert searches == [str(sample / "catalog.json")]  # one constellation, searched once
    rows = _export(tmp_path)
    assert rows and {r["model"] for r in rows} == {"mndwi-v1-t-0.2-cd20"}
    engine = store.connect(f"sqlite:///{tmp_path / 'oxeo.db'}")
    (run,) = store.model_runs(engine)
    assert run["model"] == "mndwi-v1-t-0.2-cd20"
    assert run["parameters"]["model_params"] == {"threshold": -0.2}
    ds = open_archive(stores_under(str(tmp_path / "archive"))[0])
    done = ds["mask_mndwi-v1-t-0_2-cd20_done"].values  # the archive spells '.' in a key as '_'
    assert done.size == len(rows) and (done == 1).all()
