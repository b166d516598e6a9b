"""Tests for oxeo_flows.cli, run in-process (no Prefect flow is ever started here)."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import box

from oxeo_flows import store
from oxeo_flows.aoi import AOI
from oxeo_flows.cli import EXPORT_COLUMNS, main, parse_params
from oxeo_flows.errors import InputError
from oxeo_flows.timeseries import Observation

FLOW_PARAMS = [
    "aoi",
    "start_date",
    "end_date",
    "constellations",
    "model",
    "model_params",
    "catalog",
    "storage",
    "database_url",
    "window",
    "tile_size_m",
    "cloud_dilation_m",
    "shoreline_refinement",
    "catalog_token",
]
LAKE = {
    "type": "FeatureCollection",
    "features": [
        {
            "type": "Feature",
            "id": "lake-a",
            "properties": {"name": "Lake A"},
            "geometry": {
                "type": "Polygon",
                "coordinates": [
                    [[15.00, 45.00], [15.02, 45.00], [15.02, 45.02], [15.00, 45.02], [15.00, 45.00]]
                ],
            },
        }
    ],
}


@pytest.fixture(autouse=True)
def workdir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Empty working directory, no OXEO_* settings, Prefect env defaults restored afterwards."""
    for key in list(os.environ):
        if key.startswith("OXEO_"):
            monkeypatch.delenv(key)
    for key, value in {
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "oxeo_flows",
    }.items():
        monkeypatch.setenv(key, os.environ.get(key, value))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


class FakeFlow:
    """Stands in for a Prefect flow: same signature (`.fn`), records calls, never starts Prefect."""

    def __init__(self, real: Any) -> None:
        self.fn = real.fn
        self.description = real.description
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        return {"rows_written": 0, "day": date(2024, 1, 1)}


@pytest.fixture(autouse=True)
def flows(monkeypatch: pytest.MonkeyPatch) -> dict[str, FakeFlow]:
    from oxeo_flows import cli
    from oxeo_flows.flows import FLOWS

    # These tests use the default (online) catalog with fake flows: skip the catalog pre-flight search,
    # which tests/test_bad_inputs.py covers.
    monkeypatch.setattr(cli, "_preflight_catalog", lambda request, settings: None)

    fakes = {name: FakeFlow(fl) for name, fl in FLOWS.items()}
    for name, fake in fakes.items():
        monkeypatch.setitem(FLOWS, name, fake)
    return fakes


@pytest.fixture()
def aoi_file(tmp_path: Path) -> Path:
    path = tmp_path / "inputs" / "lake.geojson"
    path.parent.mkdir()
    path.write_text(json.dumps(LAKE))
    return path


# --------------------------------------------------------------------------------------------------
# parse_params


def test_parse_params_json_values() -> None:
    got = parse_params(
        [
            "n=3",
            "x=2.5",
            'l=["sentinel-2","landsat-8"]',
            'd={"a": 1, "b": [true, null]}',
            "flag=true",
            "off=false",
            "nothing=null",
            'quoted="2024-01-01"',
        ]
    )
    assert got == {
        "n": 3,
        "x": 2.5,
        "l": ["sentinel-2", "landsat-8"],
        "d": {"a": 1, "b": [True, None]},
        "flag": True,
        "off": False,
        "nothing": None,
        "quoted": "2024-01-01",
    }
    assert type(got["n"]) is int


def test_parse_params_plain_strings() -> None:
    got = parse_params(["start_date=2024-01-01", "aoi=lake-a,lake-b", "a=b=c", "empty=", "path=./x.geojson"])
    assert got == {
        "start_date": "2024-01-01",
        "aoi": "lake-a,lake-b",
        "a": "b=c",
        "empty": "",
        "path": "./x.geojson",
    }
    assert parse_params([]) == {}


@pytest.mark.parametrize("pair", ["novalue", "=value", ""])
def test_parse_params_missing_equals(pair: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_params([pair])
    assert exc.value.parameter == "--param"
    assert repr(pair) in str(exc.value)


def test_parse_params_duplicate_key() -> None:
    with pytest.raises(InputError) as exc:
        parse_params(["a=1", "b=2", "a=3"])
    assert exc.value.parameter == "--param"
    assert "'a'" in str(exc.value)
    assert "twice" in str(exc.value)


# --------------------------------------------------------------------------------------------------
# run: bad input exits 2 with one line and writes nothing


def _run_bad(argv: list[str], capsys: pytest.CaptureFixture[str], workdir: Path, prefix: str) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(prefix), lines[0]
    assert sorted(p.name for p in workdir.iterdir()) == []
    from oxeo_flows.flows import FLOWS

    assert all(not fl.calls for fl in FLOWS.values())  # type: ignore[attr-defined]
    return lines[0]


def test_run_unknown_flow(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    line = _run_bad(["run", "nope"], capsys, workdir, "error: FLOW: ")
    assert "'nope'" in line
    assert "extract, predict, timeseries, water" in line


def test_run_unknown_param(capsys: pytest.CaptureFixture[str], workdir: Path, aoi_file: Path) -> None:
    argv = [
        "run",
        "water",
        "-p",
        f"aoi={aoi_file}",
        "-p",
        "start_date=2024-01-01",
        "-p",
        "end_date=2024-01-31",
        "-p",
        "colour=blue",
    ]
    line = _run_bad(argv, capsys, workdir, "error: --param: ")
    assert "colour" in line
    assert line.endswith("valid: " + ", ".join(FLOW_PARAMS))


def test_run_missing_required(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    line = _run_bad(["run", "water"], capsys, workdir, "error: --param: ")
    assert line.endswith("missing required parameter(s): aoi, start_date, end_date")
    line = _run_bad(
        ["run", "extract", "--param", "start_date=2024-01-01"], capsys, workdir, "error: --param: "
    )
    assert line.endswith("missing required parameter(s): aoi, end_date")


def test_run_bad_param_syntax(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    _run_bad(["run", "water", "-p", "aoi"], capsys, workdir, "error: --param: expected key=value")


def _water(aoi: Path, *extra: str, start: str = "2024-01-01", end: str = "2024-01-31") -> list[str]:
    argv = [
        "run",
        "water",
        "-p",
        f"aoi={aoi}",
        "-p",
        f"start_date={start}",
        "-p",
        f"end_date={end}",
    ]
    for e in extra:
        argv += ["-p", e]
    return argv


def test_run_bad_date(capsys: pytest.CaptureFixture[str], workdir: Path, aoi_file: Path) -> None:
    line = _run_bad(_water(aoi_file, start="2024-13-01"), capsys, workdir, "error: start_date: ")
    assert "'2024-13-01'" in line
    _run_bad(_water(aoi_file, end="31/01/2024"), capsys, workdir, "error: end_date: ")
    _run_bad(_water(aoi_file, start="2024-02-30"), capsys, workdir, "error: start_date: ")
    _run_bad(_water(aoi_file, start="true"), capsys, workdir, "error: start_date: ")


def test_run_end_before_start(capsys: pytest.CaptureFixture[str], workdir: Path, aoi_file: Path) -> None:
    line = _run_bad(
        _water(aoi_file, start="2024-02-01", end="2024-01-31"), capsys, workdir, "error: end_date: "
    )
    assert "2024-02-01" in line


def test_run_unknown_constellation(capsys: pytest.CaptureFixture[str], workdir: Path, aoi_file: Path) -> None:
    line = _run_bad(
        _water(aoi_file, 'constellations=["sentinel-2","modis"]'),
        capsys,
        workdir,
        "error: constellations: ",
    )
    assert "'modis'" in line
    _run_bad(_water(aoi_file, "constellations=landsat-6"), capsys, workdir, "error: constellations: ")


def test_run_unknown_model(capsys: pytest.CaptureFixture[str], workdir: Path, aoi_file: Path) -> None:
    line = _run_bad(_water(aoi_file, "model=cnn"), capsys, workdir, "error: model: ")
    assert "'cnn'" in line


def test_run_missing_aoi_file(capsys: pytest.CaptureFixture[str], workdir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "inputs" / "missing.geojson"
    line = _run_bad(_water(missing), capsys, workdir, "error: aoi: ")
    assert str(missing) in line


def test_run_bad_settings(capsys: pytest.CaptureFixture[str], workdir: Path, aoi_file: Path) -> None:
    _run_bad(_water(aoi_file, "window=week"), capsys, workdir, "error: window: ")
    _run_bad(_water(aoi_file, "tile_size_m=0"), capsys, workdir, "error: tile_size_m: ")


def test_run_unknown_aoi_id(capsys: pytest.CaptureFixture[str], workdir: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db' / 'oxeo.db'}"
    line = _run_bad(
        [
            "run",
            "water",
            "-p",
            "aoi=lake-zz",
            "-p",
            "start_date=2024-01-01",
            "-p",
            "end_date=2024-01-31",
            "-p",
            f"database_url={url}",
        ],
        capsys,
        workdir,
        "error: aoi: ",
    )
    assert "unknown AOI id(s): lake-zz" in line
    assert not (tmp_path / "db").exists()  # validation created no database


def test_run_unknown_aoi_id_default_database_writes_nothing(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    args = ["run", "water", "-p", "aoi=lake-zz", "-p", "start_date=2024-01-01", "-p", "end_date=2024-01-31"]
    line = _run_bad(args, capsys, workdir, "error: aoi: ")
    assert "lake-zz" in line


# --------------------------------------------------------------------------------------------------
# run: valid input reaches the flow (a stand-in; no Prefect run)


def test_run_valid_calls_flow_with_validated_dates(
    capsys: pytest.CaptureFixture[str],
    workdir: Path,
    aoi_file: Path,
    flows: dict[str, FakeFlow],
) -> None:
    argv = _water(aoi_file, 'constellations=["sentinel-2","landsat-8"]', "tile_size_m=5000", end="2024-01-31")
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert json.loads(out) == {"rows_written": 0, "day": "2024-01-01"}
    assert flows["water"].calls == [
        {
            "aoi": str(aoi_file),
            "start_date": date(2024, 1, 1),
            "end_date": date(2024, 1, 31),
            "constellations": ["sentinel-2", "landsat-8"],
            "tile_size_m": 5000,
        }
    ]
    assert all(not f.calls for name, f in flows.items() if name != "water")
    assert sorted(p.name for p in workdir.iterdir()) == []


def test_run_date_given_as_json_number_reaches_flow_as_date(
    capsys: pytest.CaptureFixture[str], aoi_file: Path, flows: dict[str, FakeFlow]
) -> None:
    # `start_date=20240101` parses as the JSON number 20240101; validation reads it as the ISO
    # basic date 2024-01-01, so the flow must get that date (pydantic would take the int as a Unix
    # time and fail after Prefect has started).
    assert (
        main(
            [
                "run",
                "extract",
                "-p",
                f"aoi={aoi_file}",
                "-p",
                "start_date=20240101",
                "-p",
                "end_date=20240131",
            ]
        )
        == 0
    )
    capsys.readouterr()
    (call,) = flows["extract"].calls
    assert call["start_date"] == date(2024, 1, 1)
    assert call["end_date"] == date(2024, 1, 31)
    assert type(call["start_date"]) is date


# --------------------------------------------------------------------------------------------------
# flows


def test_flows_lists_flows_and_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flows"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    lines = out.splitlines()
    headers = [line for line in lines if not line.startswith("    ")]
    assert [h.split(":")[0] for h in headers] == ["extract", "predict", "timeseries", "water"]
    assert headers[3] == "water: oxeo-flows `water`: extract, then predict, then timeseries."
    assert len(lines) == 4 * (1 + len(FLOW_PARAMS))
    n = 1 + len(FLOW_PARAMS)
    for i in range(4):
        block = lines[i * n + 1 : (i + 1) * n]
        assert [b.strip().split(":")[0] for b in block] == FLOW_PARAMS
        assert block[0] == "    aoi: AoiParam (required)"
        assert block[1] == "    start_date: date (required)"
        assert block[2] == "    end_date: date (required)"
        assert block[3] == "    constellations: list[str] | str (default 'sentinel-2')"
        assert block[4] == "    model: str (default 'mndwi')"
        assert block[5] == "    model_params: dict[str, float] | None (default None)"
        assert block[10] == "    tile_size_m: int | None (default None)"
        assert block[12] == "    shoreline_refinement: bool | None (default None)"


# --------------------------------------------------------------------------------------------------
# export timeseries


def _obs(aoi_id: str, t: datetime, constellation: str, water_px: int) -> Observation:
    px = 30.0 if constellation.startswith("landsat") else 10.0
    return Observation(
        aoi_id=aoi_id,
        acquired_at=t,
        solar_day=t.date(),
        constellation=constellation,
        model="mndwi-v1",
        water_area_m2=water_px * px * px,
        water_px=water_px,
        valid_px=950,
        cloud_px=30,
        nodata_px=20,
        total_px=1000,
        valid_fraction=0.95,
        cloud_fraction=0.03,
        usable=water_px != 7,
        pixel_size_m=px,
        tiles=["33T_0500_4990"],
    )


@pytest.fixture()
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'db' / 'results.db'}"
    engine = store.connect(url)
    store.upsert_aois(
        engine,
        [
            AOI("lake-a", "Lake A", box(15.0, 45.0, 15.02, 45.02)),
            AOI("lake-b", "Lake B", box(16.0, 45.0, 16.02, 45.02)),
        ],
    )
    store.upsert_observations(
        engine,
        [
            _obs("lake-b", datetime(2024, 3, 2, 9, 50), "landsat-8", 7),
            _obs("lake-a", datetime(2024, 3, 10, 10, 0, 12, 345678), "sentinel-2", 1200),
            _obs("lake-a", datetime(2024, 3, 1, 10, 0), "sentinel-2", 1100),
            _obs("lake-a", datetime(2024, 3, 2, 9, 50), "landsat-8", 130),
        ],
        None,
    )
    engine.dispose()
    return url


def _export(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["export", "timeseries", *argv]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    return out


def test_export_csv(capsys: pytest.CaptureFixture[str], db_url: str, workdir: Path) -> None:
    out = _export(capsys, "--database-url", db_url)
    header = out.splitlines()[0]
    assert header.startswith("aoi_id,datetime,constellation,water_area_m2,valid_fraction")
    assert header.split(",") == EXPORT_COLUMNS
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["aoi_id"], r["datetime"], r["constellation"]) for r in rows] == [
        ("lake-a", "2024-03-01T10:00:00Z", "sentinel-2"),
        ("lake-a", "2024-03-02T09:50:00Z", "landsat-8"),
        ("lake-a", "2024-03-10T10:00:12.345678Z", "sentinel-2"),
        ("lake-b", "2024-03-02T09:50:00Z", "landsat-8"),
    ]
    assert all(r["datetime"].endswith("Z") for r in rows)
    first = rows[0]
    assert first["water_area_m2"] == "110000.0"
    assert first["water_px"] == "1100"
    assert first["valid_fraction"] == "0.95"
    assert first["usable"] == "True"
    assert first["solar_day"] == "2024-03-01"
    assert first["model"] == "mndwi-v1"
    assert first["pixel_size_m"] == "10.0"
    assert rows[3]["usable"] == "False"
    assert rows[3]["water_area_m2"] == "6300.0"
    assert sorted(p.name for p in workdir.iterdir()) == []


def test_export_filters(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    rows = list(csv.DictReader(io.StringIO(_export(capsys, "--database-url", db_url, "--aoi", "lake-b"))))
    assert [(r["aoi_id"], r["water_px"]) for r in rows] == [("lake-b", "7")]
    out = _export(capsys, "--database-url", db_url, "--aoi", "lake-a", "--aoi", "lake-b")
    assert len(list(csv.DictReader(io.StringIO(out)))) == 4
    out = _export(capsys, "--database-url", db_url, "--constellation", "landsat-8")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["aoi_id"], r["constellation"]) for r in rows] == [
        ("lake-a", "landsat-8"),
        ("lake-b", "landsat-8"),
    ]
    out = _export(capsys, "--database-url", db_url, "--aoi", "nobody")
    assert out.splitlines() == [",".join(EXPORT_COLUMNS)]


def test_export_json_matches_csv(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    csv_rows = list(csv.DictReader(io.StringIO(_export(capsys, "--database-url", db_url))))
    data: list[dict[str, Any]] = json.loads(_export(capsys, "--database-url", db_url, "--format", "json"))
    assert isinstance(data, list)
    assert len(data) == len(csv_rows) == 4
    for obj, row in zip(data, csv_rows, strict=True):
        assert set(obj) == set(EXPORT_COLUMNS)
        assert {k: str(v) for k, v in obj.items()} == row
    assert data[2]["datetime"] == "2024-03-10T10:00:12.345678Z"
    assert data[0]["usable"] is True
    assert data[0]["water_px"] == 1100
    assert data[0]["water_area_m2"] == 110000.0
    filtered = json.loads(_export(capsys, "--database-url", db_url, "--format", "json", "--aoi", "lake-b"))
    assert [(o["aoi_id"], o["datetime"]) for o in filtered] == [("lake-b", "2024-03-02T09:50:00Z")]


def test_export_to_file(capsys: pytest.CaptureFixture[str], db_url: str, tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    assert _export(capsys, "--database-url", db_url, "-o", str(target)) == ""
    rows = list(csv.DictReader(io.StringIO(target.read_text())))
    assert len(rows) == 4
    assert rows[0]["datetime"] == "2024-03-01T10:00:00Z"


def test_export_bad_database_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "timeseries", "--database-url", "not a url"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [err.strip()]
    assert err.startswith("error: database_url: ")
