"""Catalogue of bad inputs to the `oxeo-flows` CLI.

Every row of CASES is one bad input. Each must be answered by exactly one stderr line
`error: <parameter>: <what was expected, and what was given>`, exit status 2, nothing on stdout and
nothing written: no file under the test's directory created or changed (archive root, database, working
directory), no row of the pre-existing results database added or changed, and no flow started.

Most rows call `oxeo_flows.cli.main` in-process with the flows replaced by recorders; rows marked
`sub=True` run `python -m oxeo_flows.cli` in a subprocess with the real flows, to prove the real exit
status and that no library (Prefect, urllib3, GDAL) adds log lines.

Corrupt COGs: `oxeo-flows run` opens the header of every asset of the first scene per constellation
before the flow starts (row `catalog-corrupt-cog-first-scene`). A corrupt asset of a later scene fails
inside extraction instead; `test_corrupt_cog_after_the_probe_fails_extraction_cleanly` shows that this
leaves only complete, correct slices committed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import pytest

from oxeo_flows import store
from oxeo_flows.aoi import parse_aoi
from oxeo_flows.cli import main
from oxeo_flows.errors import SourceError

DATES = ("-p", "start_date=2024-01-01", "-p", "end_date=2024-01-31")
LAKE_A = {
    "type": "Polygon",
    "coordinates": [[[15.0, 45.0], [15.02, 45.0], [15.02, 45.02], [15.0, 45.02], [15.0, 45.0]]],
}
SQL = "x'; DROP TABLE aoi;--"


def _run(*params: str, aoi: str = "${aoi}", dates: bool = True, flow: str = "water") -> tuple[str, ...]:
    """argv of `oxeo-flows run FLOW -p aoi=... -p start_date=... -p end_date=... -p PARAM...`."""
    argv = ["run", flow, "-p", f"aoi={aoi}", *(DATES if dates else ())]
    for p in params:
        argv += ["-p", p]
    return tuple(argv)


def _geojson(obj: Any) -> str:
    return json.dumps(obj)


def _feature(geometry: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "Feature", "properties": {}, "geometry": geometry, **extra}


def _polygon(ring: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [ring]}


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # `${name}` placeholders are filled from the `env` fixture's paths
    parameter: str
    expect: str  # a part of the message after `error: <parameter>: `
    env: dict[str, str] = field(default_factory=dict)
    sub: bool = False


CASES = [
    # -- AOI: malformed JSON / GeoJSON ------------------------------------------------------------------
    Case(
        "aoi-malformed-json-string", _run(aoi='{"type": "Feature", "geometry": '), "aoi", "malformed GeoJSON"
    ),
    Case("aoi-malformed-json-file", _run(aoi="${broken_json}"), "aoi", "malformed GeoJSON in"),
    Case("aoi-json-array-file", _run(aoi="${json_array}"), "aoi", "expected a GeoJSON object, got list"),
    Case("aoi-point", _run(aoi=_geojson({"type": "Point", "coordinates": [15, 45]})), "aoi", "got Point"),
    Case(
        "aoi-linestring",
        _run(aoi=_geojson(_feature({"type": "LineString", "coordinates": [[15, 45], [15.1, 45.1]]}))),
        "aoi",
        "expected Polygon or MultiPolygon, got LineString",
    ),
    Case(
        "aoi-geometrycollection",
        _run(aoi=_geojson(_feature({"type": "GeometryCollection", "geometries": [LAKE_A]}))),
        "aoi",
        "got GeometryCollection",
    ),
    Case("aoi-empty-polygon", _run(aoi='{"type": "Polygon", "coordinates": []}'), "aoi", "empty geometry"),
    Case(
        "aoi-empty-ring", _run(aoi='{"type": "Polygon", "coordinates": [[]]}'), "aoi", "at least 4 positions"
    ),
    Case(
        "aoi-empty-featurecollection",
        _run(aoi='{"type": "FeatureCollection", "features": []}'),
        "aoi",
        "empty FeatureCollection",
    ),
    Case(
        "aoi-bowtie",
        _run(
            aoi=_geojson(_polygon([[15.0, 45.0], [15.02, 45.02], [15.02, 45.0], [15.0, 45.02], [15.0, 45.0]]))
        ),
        "aoi",
        "Self-intersection",
    ),
    Case(
        "aoi-unclosed-ring",
        _run(
            aoi=_geojson(
                _polygon([[15.0, 45.0], [15.02, 45.0], [15.02, 45.02], [15.0, 45.02], [15.0, 45.01]])
            )
        ),
        "aoi",
        "not closed",
    ),
    Case(
        "aoi-lon-200",
        _run(aoi=_geojson(_polygon([[200.0, 45.0], [200.02, 45.0], [200.02, 45.02], [200.0, 45.0]]))),
        "aoi",
        "longitude 200.0 out of range",
    ),
    Case(
        "aoi-lat-95",
        _run(aoi=_geojson(_polygon([[15.0, 95.0], [15.02, 95.0], [15.02, 95.02], [15.0, 95.0]]))),
        "aoi",
        "latitude 95.0 out of range",
    ),
    Case(
        "aoi-utm-metres",
        _run(
            aoi=_geojson(
                _polygon([[498500, 4991500], [499500, 4991500], [499500, 4990500], [498500, 4991500]])
            )
        ),
        "aoi",
        "projected coordinates?",
    ),
    Case(
        "aoi-crs-utm-member",
        _run(
            aoi=_geojson(
                {
                    "type": "FeatureCollection",
                    "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}},
                    "features": [_feature(LAKE_A, id="lake-b")],
                }
            )
        ),
        "aoi",
        "is not WGS84",
    ),
    Case(
        "aoi-crs-web-mercator-on-feature",
        _run(aoi=_geojson(_feature(LAKE_A, crs={"type": "name", "properties": {"name": "EPSG:3857"}}))),
        "aoi",
        "is not WGS84",
    ),
    Case(
        "aoi-continent-over-max-tiles",
        _run(aoi=_geojson(_polygon([[-18, -35], [52, -35], [52, 37], [-18, 37], [-18, -35]]))),
        "aoi",
        "at most 400 per run are allowed (setting max_tiles_per_run",
    ),
    Case(
        "aoi-over-max-tiles-from-env",
        _run(),
        "aoi",
        "the AOIs need 4 tiles of 10000 m; at most 3 per run",
        env={"OXEO_MAX_TILES_PER_RUN": "3"},
    ),
    Case(
        "aoi-whole-world",
        _run(aoi=_geojson(_polygon([[-180, -80], [180, -80], [180, 84], [-180, 84], [-180, -80]]))),
        "aoi",
        "antimeridian",
    ),
    Case(
        "max-tiles-env-zero",
        _run(),
        "max_tiles_per_run",
        "from OXEO_MAX_TILES_PER_RUN",
        env={"OXEO_MAX_TILES_PER_RUN": "0"},
    ),
    # -- AOI ids: unknown, path traversal, SQL -------------------------------------------------------------
    Case("id-unknown", _run(aoi="lake-a,lake-zz"), "aoi", "unknown AOI id(s): lake-zz"),
    Case("id-dotdot-etc", _run(aoi="../etc"), "aoi", "invalid AOI id '../etc'"),
    Case("id-nested-traversal", _run(aoi="a/../../b"), "aoi", "invalid AOI id 'a/../../b'"),
    Case("id-absolute-path", _run(aoi="/nonexistent/lake-a"), "aoi", "invalid AOI id '/nonexistent/lake-a'"),
    Case("id-absolute-directory", _run(aoi="/etc"), "aoi", "invalid AOI id '/etc'"),
    Case("id-nul-byte", _run(aoi="lake-a\x00b"), "aoi", "invalid AOI id 'lake-a\\x00b'"),
    Case("aoi-file-name-nul-byte", _run(aoi="lake\x00.geojson"), "aoi", "file not found: lake\\x00.geojson"),
    Case("id-backslashes", _run(aoi="..\\..\\windows"), "aoi", "invalid AOI id '..\\\\..\\\\windows'"),
    Case("id-list-with-traversal", _run(aoi='["lake-a", "../b"]'), "aoi", "invalid AOI id '../b'"),
    Case("id-sql", _run(aoi=SQL), "aoi", f"invalid AOI id {SQL!r}"),
    Case("id-sql-in-geojson", _run(aoi=_geojson(_feature(LAKE_A, id=SQL))), "aoi", "invalid AOI id"),
    # -- dates --------------------------------------------------------------------------------------------
    Case(
        "dates-reversed",
        ("run", "extract", "-p", "aoi=${aoi}", "-p", "start_date=2024-03-01", "-p", "end_date=2024-01-31"),
        "end_date",
        "on or after start_date 2024-03-01, got 2024-01-31",
    ),
    Case(
        "date-month-13",
        _run("end_date=2024-13-01", dates=False, aoi="${aoi}") + DATES[:2],
        "end_date",
        "'2024-13-01'",
    ),
    Case(
        "date-yesterday",
        _run("start_date=yesterday", "end_date=2024-01-31", dates=False),
        "start_date",
        "'yesterday'",
    ),
    Case(
        "date-number-not-a-date",
        _run("start_date=20241301", "end_date=2024-01-31", dates=False),
        "start_date",
        "20241301",
    ),
    Case(
        "date-unix-time",
        _run("start_date=1704067200", "end_date=2024-01-31", dates=False),
        "start_date",
        "1704067200",
    ),
    Case(
        "date-json-list",
        _run("start_date=[2024, 1, 1]", "end_date=2024-01-31", dates=False),
        "start_date",
        "[2024, 1, 1]",
    ),
    Case(
        "dates-over-100-years",
        _run("start_date=1900-01-01", "end_date=2024-01-31", dates=False),
        "end_date",
        "at most 100 years",
    ),
    # -- constellations and models -----------------------------------------------------------------------
    Case(
        "constellation-unknown",
        _run("constellations=sentinel-3"),
        "constellations",
        "unknown constellation 'sentinel-3'",
    ),
    Case(
        "constellation-empty-list", _run("constellations=[]"), "constellations", "at least one constellation"
    ),
    Case("constellation-number", _run("constellations=42"), "constellations", "got 42"),
    Case("model-unknown", _run("model=unet"), "model", "unknown model 'unet'"),
    Case("model-not-a-string", _run("model=[1]"), "model", "got [1]"),
    Case(
        "model-params-unknown-name",
        _run('model_params={"thresh": 0.1}'),
        "model_params",
        "model 'mndwi' takes threshold, got thresh",
    ),
    Case(
        "model-params-for-a-model-without-parameters",
        _run("model=pekel", 'model_params={"threshold": 0.1}'),
        "model_params",
        "model 'pekel' takes no parameters, got threshold",
    ),
    Case(
        "model-params-not-numbers",
        _run('model_params={"threshold": "low"}'),
        "model_params",
        "expected an object of parameter names to numbers",
    ),
    Case("model-params-not-an-object", _run("model_params=0.1"), "model_params", "got 0.1"),
    Case(
        "cloud-dilation-negative",
        _run("cloud_dilation_m=-10"),
        "cloud_dilation_m",
        "greater than or equal to 0",
    ),
    Case(
        "shoreline-refinement-not-bool", _run("shoreline_refinement=maybe"), "shoreline_refinement", "maybe"
    ),
    # -- flow parameters -------------------------------------------------------------------------------
    Case("param-unknown", _run("start=2024-01-01"), "--param", "unknown parameter(s) start; valid: aoi"),
    Case(
        "param-missing-required",
        ("run", "water", "-p", "aoi=${aoi}", "-p", "start_date=2024-01-01"),
        "--param",
        "missing required parameter(s): end_date",
    ),
    Case("param-without-equals", _run("window:month"), "--param", "expected key=value, got 'window:month'"),
    Case("param-duplicated", _run("start_date=2024-01-02"), "--param", "parameter 'start_date' given twice"),
    # -- settings (flow parameters, environment, config file) ------------------------------------------------
    Case(
        "window-unknown",
        _run("window=fortnight"),
        "window",
        "expected month, quarter or year (got 'fortnight')",
    ),
    Case(
        "window-from-env", _run(), "window", "(got 'weekly' from OXEO_WINDOW)", env={"OXEO_WINDOW": "weekly"}
    ),
    Case("tile-size-negative", _run("tile_size_m=-10000"), "tile_size_m", "greater than 0 (got -10000)"),
    Case(
        "tile-size-not-pixel-multiple",
        _run("tile_size_m=10005"),
        "tile_size_m",
        "multiple of 10 m (the Sentinel-2 pixel) up to 100000 (got 10005)",
    ),
    Case(
        "tile-size-string",
        _run("tile_size_m=ten"),
        "tile_size_m",
        "valid integer, unable to parse string as an integer (got 'ten')",
    ),
    Case("tile-size-fraction", _run("tile_size_m=10000.5"), "tile_size_m", "(got 10000.5)"),
    Case("tile-size-huge", _run("tile_size_m=1000000"), "tile_size_m", "up to 100000 (got 1000000)"),
    Case(
        "database-url-not-a-url", _run("database_url=not a url"), "database_url", "expected a SQLAlchemy URL"
    ),
    Case(
        "database-url-mysql",
        _run("database_url=mysql://u@localhost/oxeo"),
        "database_url",
        "expected a sqlite or postgresql URL, got backend 'mysql'",
    ),
    Case(
        "database-url-closed-port",
        _run("database_url=postgresql://u:pw@127.0.0.1:${closed_port}/oxeo"),
        "database_url",
        "expected a reachable database",
    ),
    Case(
        "database-url-under-a-file",
        _run("database_url=sqlite:///${a_file}/oxeo.db"),
        "database_url",
        "expected a directory for the SQLite database, got the file",
    ),
    Case(
        "storage-unknown-protocol", _run("storage=foo://bucket/archive"), "storage", "unknown protocol 'foo'"
    ),
    Case(
        "storage-is-a-file", _run("storage=${a_file}"), "storage", "expected a directory for the archive root"
    ),
    Case(
        "config-file-missing", _run(), "OXEO_CONFIG", "not found", env={"OXEO_CONFIG": "${tmp}/missing.toml"}
    ),
    Case(
        "config-file-malformed",
        _run(),
        "OXEO_CONFIG",
        "expected a valid TOML file",
        env={"OXEO_CONFIG": "${bad_toml}"},
    ),
    Case(
        "config-unknown-setting",
        _run(),
        "tile_size",
        "Extra inputs are not permitted",
        env={"OXEO_CONFIG": "${typo_toml}"},
    ),
    # -- catalog ------------------------------------------------------------------------------------------
    Case(
        "catalog-unreachable-api",
        _run("catalog=http://127.0.0.1:${closed_port}/"),
        "catalog",
        "cannot search STAC API http://127.0.0.1:",
        sub=True,
    ),
    Case(
        "catalog-missing-static",
        _run("catalog=${tmp}/nowhere/catalog.json"),
        "catalog",
        "static catalog not found",
    ),
    Case("catalog-not-stac", _run("catalog=${json_array}"), "catalog", "cannot read STAC catalog"),
    Case(
        "catalog-unknown-protocol",
        _run("catalog=stac+foo://host/catalog.json"),
        "catalog",
        "unknown protocol 'stac+foo'",
    ),
    Case(
        "catalog-items-lack-assets",
        _run("catalog=${cat_no_assets}"),
        "catalog",
        "missing asset for band 'swir16'",
    ),
    Case(
        "catalog-items-lack-projection",
        _run("catalog=${cat_no_proj}"),
        "catalog",
        "expected projection metadata (proj:code or proj:epsg",
    ),
    Case(
        "catalog-corrupt-cog-first-scene",
        _run("catalog=${cat_corrupt}"),
        "catalog",
        "expected a readable GeoTIFF/COG",
        sub=True,
    ),
    Case(
        "catalog-token-plain-value",
        _run("catalog_token=abc123"),
        "catalog_token",
        "got a plain value (not shown)",
    ),
    # -- command line syntax, other subcommands ---------------------------------------------------------
    Case("cli-no-command", (), "command", "required, not given"),
    Case("cli-unknown-command", ("frobnicate",), "command", "invalid choice: 'frobnicate'", sub=True),
    Case("run-unknown-option", _run() + ("--colour", "blue"), "--colour blue", "unrecognized argument(s)"),
    Case("run-runner-unknown", _run() + ("--runner", "spark"), "--runner", "invalid choice: 'spark'"),
    Case(
        "run-dask-workers-not-int",
        _run() + ("--dask-workers", "x"),
        "--dask-workers",
        "invalid int value: 'x'",
    ),
    Case("run-dask-workers-zero", _run() + ("--dask-workers", "0"), "dask_workers", "greater than 0 (got 0)"),
    Case(
        "export-format-unknown",
        ("export", "timeseries", "--format", "xml"),
        "--format",
        "invalid choice: 'xml'",
        sub=True,
    ),
    Case(
        "export-database-url-mysql",
        ("export", "timeseries", "--database-url", "mysql://u@h/db"),
        "database_url",
        "got backend 'mysql'",
    ),
    Case(
        "check-storage-unknown-protocol",
        ("check", "--storage", "foo://x"),
        "storage",
        "unknown protocol 'foo'",
    ),
    Case(
        "check-database-url-not-a-url",
        ("check", "--database-url", "no url"),
        "database_url",
        "(got <hidden>)",
    ),
]


# --------------------------------------------------------------------------------------------------
# fixtures


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _edit_items(root: Path, edit: Any) -> None:
    for path in sorted(root.glob("sentinel-2-l2a/*/*.json")):
        item = json.loads(path.read_text())
        edit(item)
        path.write_text(json.dumps(item))


def _no_proj(item: dict[str, Any]) -> None:
    item["properties"].pop("proj:code", None)
    item["properties"].pop("proj:epsg", None)
    for asset in item["assets"].values():
        for key in ("proj:code", "proj:epsg", "proj:transform"):
            asset.pop(key, None)


@pytest.fixture(scope="module")
def catalogs(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Broken copies of the sample catalog (the sample itself stays untouched)."""
    root = tmp_path_factory.mktemp("catalogs")
    out = {}
    for name in ("no_assets", "no_proj", "corrupt", "corrupt_later", "clean"):
        shutil.copytree(sample, root / name, ignore=shutil.ignore_patterns("*.csv"))
        out[name] = root / name / "catalog.json"
    _edit_items(root / "no_assets", lambda item: item["assets"].pop("swir16"))
    _edit_items(root / "no_proj", _no_proj)
    garbage = np.random.default_rng(0).bytes(4096)
    (root / "corrupt/sentinel-2-l2a/S2A_33TVK_20240105_0_L2A/blue.tif").write_bytes(garbage)
    (root / "corrupt_later/sentinel-2-l2a/S2B_33TVK_20240119_0_L2A/blue.tif").write_bytes(garbage)
    return out


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results database holding AOI lake-a, copied into each test."""
    path = tmp_path_factory.mktemp("template") / "oxeo.db"
    engine = store.connect(f"sqlite:///{path}")
    store.upsert_aois(engine, parse_aoi(_geojson(_feature(LAKE_A, id="lake-a"))))
    engine.dispose()
    return path


@dataclass
class Env:
    tmp: Path
    work: Path
    db: Path
    paths: dict[str, str]


class Recorder:
    """Stands in for a Prefect flow (same signature via `.fn`); records calls, starts nothing."""

    def __init__(self, real: Any) -> None:
        self.fn = real.fn
        self.description = real.description
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        return {}


@pytest.fixture()
def env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sample: Path,
    catalogs: dict[str, Path],
    template_db: Path,
) -> Env:
    """Settings pointing into tmp_path (archive root absent, database with lake-a), the sample catalog,
    an empty working directory."""
    for key in list(os.environ):
        if key.startswith("OXEO_"):
            monkeypatch.delenv(key)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    db = tmp_path / "db" / "oxeo.db"
    db.parent.mkdir()
    shutil.copy(template_db, db)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "broken.geojson").write_text('{"type": "FeatureCollection", "features": [')
    (inputs / "array.json").write_text("[1, 2, 3]")
    (inputs / "a_file").write_text("not a directory")
    (inputs / "bad.toml").write_text("tile_size_m = = 5\n")
    (inputs / "typo.toml").write_text("tile_size = 5000\n")
    monkeypatch.setenv("OXEO_STORAGE", str(tmp_path / "archive"))
    monkeypatch.setenv("OXEO_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("OXEO_CATALOG", str(sample / "catalog.json"))
    paths = {
        "tmp": str(tmp_path),
        "aoi": str(sample / "aoi.geojson"),
        "broken_json": str(inputs / "broken.geojson"),
        "json_array": str(inputs / "array.json"),
        "a_file": str(inputs / "a_file"),
        "bad_toml": str(inputs / "bad.toml"),
        "typo_toml": str(inputs / "typo.toml"),
        "closed_port": str(_closed_port()),
        **{f"cat_{k}": str(v) for k, v in catalogs.items()},
    }
    return Env(tmp_path, work, db, paths)


@pytest.fixture()
def recorders(monkeypatch: pytest.MonkeyPatch) -> dict[str, Recorder]:
    from oxeo_flows.flows import FLOWS

    fakes = {name: Recorder(fl) for name, fl in FLOWS.items()}
    for name, fake in fakes.items():
        monkeypatch.setitem(FLOWS, name, fake)
    return fakes


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
    }


def _dump(db: Path) -> list[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def _tables(db: Path) -> set[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()


# --------------------------------------------------------------------------------------------------
# the catalogue


def test_catalogue_size() -> None:
    assert len(CASES) >= 45
    assert len({c.id for c in CASES}) == len(CASES)
    assert sum(c.sub for c in CASES) >= 3


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    case: Case,
    env: Env,
    recorders: dict[str, Recorder],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    argv = [Template(a).substitute(env.paths) for a in case.argv]
    for key, value in case.env.items():
        monkeypatch.setenv(key, Template(value).substitute(env.paths))
    before, dump_before = _snapshot(env.tmp), _dump(env.db)

    if case.sub:
        proc = subprocess.run(
            [sys.executable, "-m", "oxeo_flows.cli", *argv],
            cwd=env.work,
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    else:
        code = main(argv)
        out, err = capfd.readouterr()

    assert code == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    prefix = f"error: {case.parameter}: "
    assert lines[0].startswith(prefix), lines[0]
    assert case.expect in lines[0][len(prefix) :], lines[0]
    # Nothing written: no file created or changed, no row added or changed, no flow started.
    assert _snapshot(env.tmp) == before
    assert _dump(env.db) == dump_before
    assert {"aoi"} <= _tables(env.db)
    assert not (env.tmp / "archive").exists()
    assert list(env.work.iterdir()) == []
    assert all(not r.calls for r in recorders.values())


# --------------------------------------------------------------------------------------------------
# accepted inputs that look dangerous, and the corrupt COG the probe cannot see


def test_sql_metacharacters_in_names_are_stored_verbatim(
    env: Env, recorders: dict[str, Recorder], capfd: pytest.CaptureFixture[str]
) -> None:
    """Names are free text: an SQL-looking name passes validation and round-trips through the database."""
    sample_geometry = json.loads(Path(env.paths["aoi"]).read_text())["features"][0]["geometry"]
    aoi = _geojson(
        {"type": "Feature", "id": "lake-sql", "properties": {"name": SQL}, "geometry": sample_geometry}
    )
    assert main(list(_run(aoi=aoi))) == 0, capfd.readouterr().err
    (call,) = recorders["water"].calls
    parsed = parse_aoi(call["aoi"])
    assert [(a.id, a.name) for a in parsed] == [("lake-sql", SQL)]

    engine = store.connect(f"sqlite:///{env.db}")
    try:
        store.upsert_aois(engine, parsed)
        (back,) = store.get_aois(engine, ["lake-sql"])
        assert back.name == SQL
        assert {a.id for a in store.get_aois(engine, ["lake-a", "lake-sql"])} == {"lake-a", "lake-sql"}
    finally:
        engine.dispose()
    assert {"aoi"} <= _tables(env.db)


def test_corrupt_cog_after_the_probe_fails_extraction_cleanly(
    env: Env, recorders: dict[str, Recorder], catalogs: dict[str, Path], capfd: pytest.CaptureFixture[str]
) -> None:
    """A corrupt COG in a later scene passes the pre-flight probe (first scene only) and fails the
    extraction: the day before it is committed complete and correct, the corrupt day is not committed."""
    from oxeo_flows import pipeline
    from oxeo_flows.archive import Archive
    from oxeo_flows.constellations import get_constellation
    from oxeo_flows.settings import load_settings
    from oxeo_flows.tiling import Tile

    argv = list(_run(f"catalog={catalogs['corrupt_later']}", aoi=env.paths["aoi"], flow="extract"))
    assert main(argv) == 0, capfd.readouterr().err
    assert len(recorders["extract"].calls) == 1

    def first_unit(catalog: Path, storage: Path) -> Any:
        settings = load_settings(catalog=str(catalog), storage=str(storage))
        req = pipeline.build_request(
            env.paths["aoi"], "2024-01-01", "2024-01-31", "sentinel-2", "mndwi", settings
        )
        const = req.constellations[0]
        units = pipeline.plan(req, const, pipeline.search_scenes(req, const, settings), settings).units
        unit = units[0]
        assert [d.solar_day for d in unit.days] == [date(2024, 1, 5), date(2024, 1, 19)]
        return unit

    bad_root, good_root = env.tmp / "bad-archive", env.tmp / "good-archive"
    unit = first_unit(catalogs["corrupt_later"], bad_root)
    with pytest.raises(SourceError, match="blue"):
        pipeline.extract_unit(unit, str(bad_root))
    pipeline.extract_unit(first_unit(catalogs["clean"], good_root), str(good_root))

    const, tile = get_constellation("sentinel-2"), Tile.from_id(unit.tile_id)
    bad, good = Archive(str(bad_root), tile, const), Archive(str(good_root), tile, const)
    assert list(bad.committed()) == [date(2024, 1, 5)]
    assert list(good.committed()) == [date(2024, 1, 5), date(2024, 1, 19)]
    slot_bad, slot_good = bad.committed()[date(2024, 1, 5)], good.committed()[date(2024, 1, 5)]
    np.testing.assert_array_equal(bad.read_slice(slot_bad), good.read_slice(slot_good))
