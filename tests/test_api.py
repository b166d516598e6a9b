"""Tests for the read-only results API (oxeo_flows.api) on SQLite and PostgreSQL/PostGIS (`db_url`)."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from shapely.geometry import MultiPolygon, box

from oxeo_flows import aoi_registry, store
from oxeo_flows.aoi import AOI
from oxeo_flows.api import auth
from oxeo_flows.api.app import ROW_COLUMNS, create_app
from oxeo_flows.cli import main
from oxeo_flows.errors import InputError
from oxeo_flows.schema import aoi_set_table
from oxeo_flows.stack import free_port
from oxeo_flows.timeseries import Observation

TOKEN = "t0k3n-" + "x" * 40
OTHER_TOKEN = "other-" + "y" * 40
LAKE_A = AOI("lake-a", "Lake A", box(30.0, -1.0, 30.1, -0.9), {"labels": ["lake", "kenya"], "basin": 12})
LAKE_B = AOI(  # two parts with a gap between lon 31.2 and 31.3
    "lake-b",
    "Lake B",
    MultiPolygon([box(31.0, -1.0, 31.2, -0.8), box(31.3, -1.0, 31.4, -0.9)]),
    {"labels": ["reservoir"]},
)
PONDS = [
    AOI(f"pond-{i:02d}", f"Pond {i}", box(10 + i, 50, 10.05 + i, 50.05), {"labels": ["pond"]})
    for i in range(7)
]
ALL_IDS = sorted(["lake-a", "lake-b", *(p.id for p in PONDS)])
DAY0 = datetime(2024, 3, 1, 8, 15, 30)


def obs(aoi_id: str, acquired_at: datetime, constellation: str = "sentinel-2", model: str = "mndwi-v1",
        usable: bool = True) -> Observation:  # fmt: skip
    return Observation(
        aoi_id=aoi_id,
        acquired_at=acquired_at,
        solar_day=acquired_at.date(),
        constellation=constellation,
        model=model,
        water_area_m2=12_300.0,
        water_px=123,
        valid_px=900 if usable else 100,
        cloud_px=60,
        nodata_px=40,
        total_px=1000,
        valid_fraction=0.9 if usable else 0.1,
        cloud_fraction=0.06,
        usable=usable,
        pixel_size_m=10.0,
        tiles=["36M_0123_9876"],
    )


def fill(db_url: str) -> str:
    """Nine AOIs, one set, 17 time-series rows for lake-a and 2 for lake-b; returns the model run id."""
    engine = store.connect(db_url)
    try:
        aoi_registry.add_aois(engine, [LAKE_A, LAKE_B, *PONDS])
        aoi_registry.add_to_set(engine, "east-africa", ["lake-a", "lake-b"])
        run = store.start_model_run(
            engine, flow="water", prefect_flow_run_id=None, parameters={}, model="mndwi-v1",
            model_version="1", constellations=["sentinel-2"], aoi_ids=["lake-a"], tiles=[],
            start_date=None, end_date=None, started_at=datetime.now(UTC),
        )  # fmt: skip
        rows = [obs("lake-a", DAY0 + timedelta(days=d), usable=d % 3 != 2) for d in range(10)]  # 3 unusable
        rows += [obs("lake-a", DAY0 + timedelta(days=d, minutes=5), "landsat-8") for d in (2, 3, 4)]
        rows += [obs("lake-a", DAY0 + timedelta(days=d), model="mndwi-v2") for d in (0, 1)]
        rows += [obs("lake-a", DAY0 + timedelta(days=d), model="ndwi-v1") for d in (0, 9)]
        rows += [obs("lake-b", DAY0 + timedelta(days=d)) for d in (0, 1)]
        store.upsert_observations(engine, rows, run)
        return run
    finally:
        engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def filled(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One filled database per backend for the whole module (like conftest's `db_url`, but shared:
    the API cannot write, so tests cannot disturb each other)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'oxeo.db'}"
    else:
        url = str(request.getfixturevalue("pg_server").create_database(f"api_{uuid.uuid4().hex[:12]}"))
    fill(url)
    return url


def _client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:  # runs the lifespan: the engine is disposed at the end
        yield client


@pytest.fixture(scope="module")
def client(filled: str) -> Iterator[TestClient]:
    """The API without authentication (what a loopback bind without token hashes gets)."""
    yield from _client(create_app(filled))


@pytest.fixture(scope="module")
def auth_client(filled: str) -> Iterator[TestClient]:
    yield from _client(create_app(filled, [auth.hash_token(TOKEN), auth.hash_token(OTHER_TOKEN)]))


def ids(resp: httpx.Response) -> list[str]:
    assert resp.status_code == 200, resp.text
    return [f["id"] for f in resp.json()["features"]]


# --- AOIs -----------------------------------------------------------------------------------------


def test_list_aois_filters_and_total(client: TestClient) -> None:
    r = client.get("/aois")
    assert r.headers["content-type"] == "application/geo+json"
    body = r.json()
    assert (body["type"], body["total"], body["limit"], body["offset"]) == ("FeatureCollection", 9, 100, 0)
    assert ids(r) == ALL_IDS
    assert ids(client.get("/aois", params={"label": "pond"})) == [p.id for p in PONDS]
    assert ids(client.get("/aois", params={"label": "kenya"})) == ["lake-a"]
    assert ids(client.get("/aois", params={"label": "ken"})) == []  # labels match whole
    assert ids(client.get("/aois", params={"name": "LAKE"})) == ["lake-a", "lake-b"]
    assert ids(client.get("/aois", params={"name": "%"})) == []  # LIKE wildcards are literal
    assert ids(client.get("/aois", params={"set": "east-africa"})) == ["lake-a", "lake-b"]
    assert ids(client.get("/aois", params={"set": "nope"})) == []
    assert ids(client.get("/aois", params={"bbox": "29,-2,32,0"})) == ["lake-a", "lake-b"]
    assert ids(client.get("/aois", params={"bbox": "31.05,-0.95,31.1,-0.9"})) == ["lake-b"]
    # inside lake-b's bounding box but in the gap between its parts: the exact geometry test decides
    assert ids(client.get("/aois", params={"bbox": "31.22,-0.95,31.28,-0.9"})) == []
    r = client.get("/aois", params={"bbox": "9,49,13.5,51", "label": "pond", "name": "POND"})
    assert ids(r) == ["pond-00", "pond-01", "pond-02", "pond-03"] and r.json()["total"] == 4


@pytest.mark.parametrize("limit", [1, 2, 4, 9, 1000])
def test_aoi_pages_tile_the_result(client: TestClient, limit: int) -> None:
    seen: list[str] = []
    for offset in range(0, 12, limit):
        r = client.get("/aois", params={"limit": limit, "offset": offset})
        assert r.json()["total"] == 9 and r.json()["limit"] == limit
        page = ids(r)
        assert len(page) == max(0, min(limit, 9 - offset))
        seen += page
    assert seen == ALL_IDS
    # bbox pages on SQLite are cut after the exact geometry test: they must tile as well
    pages = [
        ids(client.get("/aois", params={"bbox": "0,-5,40,55", "limit": 2, "offset": o}))
        for o in range(0, 10, 2)
    ]
    assert sum(pages, []) == ALL_IDS


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"offset": -1}, "offset"),
        ({"bbox": "1,2,3"}, "bbox"),
        ({"bbox": "10,0,5,1"}, "bbox"),  # west > east
        ({"bbox": "0,0,nan,1"}, "bbox"),
        ({"set": "../etc"}, "set"),
        ({"label": "a\x00b"}, "label"),
    ],
)
def test_list_aois_bad_parameters_are_422_naming_them(
    client: TestClient, params: dict[str, Any], name: str
) -> None:
    r = client.get("/aois", params=params)
    assert r.status_code == 422, r.text
    assert [e["loc"] for e in r.json()["detail"]] == [["query", name]]


def test_get_aoi_feature_404_and_invalid_ids(client: TestClient) -> None:
    r = client.get("/aois/lake-b")
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    f = r.json()
    assert (f["type"], f["id"], f["geometry"]["type"]) == ("Feature", "lake-b", "MultiPolygon")
    assert f["bbox"] == [31.0, -1.0, 31.4, -0.8]
    assert len(f["geometry"]["coordinates"]) == 2
    props = f["properties"]
    assert (props["name"], props["labels"], props["sets"]) == ("Lake B", ["reservoir"], ["east-africa"])
    assert props["area_m2"] > 2e8 and props["created_at"].endswith("Z")
    assert client.get("/aois/lake-a").json()["properties"]["basin"] == 12
    r = client.get("/aois/no-such-lake")
    assert r.status_code == 404 and r.json() == {"detail": "no AOI with id 'no-such-lake'"}
    for bad in ("a..b", "-lead", "x" * 129, "sp%20ace", "semi;colon"):
        r = client.get(f"/aois/{bad}")
        assert r.status_code == 422, bad
        assert r.json()["detail"][0]["loc"] == ["path", "aoi_id"]


# --- time series ----------------------------------------------------------------------------------


def series(client: TestClient, aoi_id: str = "lake-a", **params: Any) -> dict[str, Any]:
    r = client.get(f"/aois/{aoi_id}/timeseries", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert r.headers["x-total-count"] == str(body["total"])
    return body


def test_timeseries_rows_and_filters(client: TestClient) -> None:
    body = series(client)
    assert (body["aoi_id"], body["total"], body["limit"], body["offset"]) == ("lake-a", 17, 1000, 0)
    first = body["rows"][0]
    assert list(first) == ROW_COLUMNS and "id" not in first
    assert first["datetime"] == "2024-03-01T08:15:30Z" and first["solar_day"] == "2024-03-01"
    assert first["model_run_id"] and first["usable"] is True and first["water_area_m2"] == 12_300.0
    keys = [(r["datetime"], r["constellation"], r["model"]) for r in body["rows"]]
    assert keys == sorted(keys) and len(set(keys)) == 17  # stable order, no duplicates
    days = {r["solar_day"] for r in series(client, start="2024-03-03", end="2024-03-05")["rows"]}
    assert days == {"2024-03-03", "2024-03-04", "2024-03-05"}  # both ends inclusive
    assert series(client, start="2024-03-03", end="2024-03-05")["total"] == 3 + 3  # + landsat-8
    assert series(client, start="2024-03-10")["total"] == 2 and series(client, end="2024-03-01")["total"] == 3
    assert series(client, start="2024-03-11")["rows"] == []
    assert series(client, constellation="landsat-8")["total"] == 3
    assert series(client, model="mndwi")["total"] == 15  # every version
    assert series(client, model="mndwi-v2")["total"] == 2
    assert series(client, model="ndwi")["total"] == 2
    usable = series(client, usable_only="true", constellation="sentinel-2", model="mndwi-v1")
    assert usable["total"] == 7 and all(r["usable"] for r in usable["rows"])
    assert series(client, "lake-b")["total"] == 2
    assert series(client, "pond-00") == {
        "aoi_id": "pond-00",
        "total": 0,
        "limit": 1000,
        "offset": 0,
        "rows": [],
    }


@pytest.mark.parametrize("limit", [1, 4, 17])
def test_timeseries_pages_tile_the_result(client: TestClient, limit: int) -> None:
    full = series(client)["rows"]
    pages = [series(client, limit=limit, offset=o)["rows"] for o in range(0, 20, limit)]
    assert sum(pages, []) == full
    assert all(len(p) <= limit for p in pages)


def test_timeseries_csv(client: TestClient) -> None:
    r = client.get("/aois/lake-a/timeseries", params={"format": "csv", "model": "mndwi-v2"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["x-total-count"] == "2"
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == ROW_COLUMNS and len(rows) == 2
    assert rows[0]["datetime"] == "2024-03-01T08:15:30Z" and rows[1]["solar_day"] == "2024-03-02"
    assert rows[0]["usable"] == "True" and rows[0]["model"] == "mndwi-v2"


def test_timeseries_errors(client: TestClient) -> None:
    r = client.get("/aois/nope/timeseries")
    assert r.status_code == 404 and r.json() == {"detail": "no AOI with id 'nope'"}
    for params, name in [
        ({"start": "2024-03-05", "end": "2024-03-04"}, "end"),
        ({"start": "March"}, "start"),
        ({"constellation": "modis"}, "constellation"),
        ({"model": "mndwi v1"}, "model"),
        ({"limit": 10_001}, "limit"),
        ({"format": "xml"}, "format"),
        ({"usable_only": "perhaps"}, "usable_only"),
    ]:
        r = client.get("/aois/lake-a/timeseries", params=params)
        assert r.status_code == 422, params
        assert r.json()["detail"][0]["loc"] == ["query", name]


# --- auth -----------------------------------------------------------------------------------------


def test_token_auth(auth_client: TestClient) -> None:
    health = auth_client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert auth_client.get("/openapi.json").status_code == 200 and auth_client.get("/docs").status_code == 200
    # the docs page loads Swagger UI from the app itself (offline machines), not from a CDN
    import re

    page = auth_client.get("/docs").text
    assets = re.findall(r"""(?:src|href)=["']([^"']+\.(?:js|css))["']""", page)
    assert assets and all(a.startswith("/") for a in assets), assets
    for a in assets:
        got = auth_client.get(a)
        assert got.status_code == 200 and len(got.content) > 1000, a
    for path in ("/aois", "/aois/lake-a", "/aois/lake-a/timeseries", "/aois/nope"):
        r = auth_client.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", path
        assert "missing bearer token" in r.json()["detail"]
        r = auth_client.get(path, headers={"Authorization": "Bearer " + TOKEN[:-1] + "z"})
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
        assert auth_client.get(path, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    for token in (TOKEN, OTHER_TOKEN):
        ok = auth_client.get("/aois/lake-a", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200 and ok.json()["id"] == "lake-a"
    assert auth_client.get("/aois/nope", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 404
    spec = auth_client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "security" not in spec["paths"]["/health"]["get"]
    assert "401" in spec["paths"]["/aois"]["get"]["responses"]


def test_token_hashes_and_policy(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    h = auth.hash_token(TOKEN)
    assert h.startswith("sha256:") and len(h) == 71 and TOKEN not in h
    assert auth.token_matches(TOKEN, [auth.hash_token(OTHER_TOKEN), h])
    assert not auth.token_matches(TOKEN, [auth.hash_token(OTHER_TOKEN)]) and not auth.token_matches(TOKEN, [])
    with pytest.raises(InputError, match="at least 32"):
        auth.hash_token("short")
    assert auth.parse_token_hashes(f"{h}, {h}\n") == (h,)
    with pytest.raises(InputError, match="entry 2 is not") as err:
        auth.parse_token_hashes([h, TOKEN])  # a token pasted instead of its hash
    assert TOKEN not in str(err.value)
    assert auth.parse_token_hashes(["secret:api-tokens"], lambda ref: f"{h}\n") == (h,)
    hosts = ("127.0.0.1", "::1", "localhost", "0.0.0.0", "10.1.2.3", "example.org")
    assert [auth.is_loopback(x) for x in hosts] == [True, True, True, False, False, False]
    assert auth.auth_required("127.0.0.1", (), False) is False
    assert (
        auth.auth_required("0.0.0.0", (h,), False) is True and auth.auth_required("::1", (h,), True) is True
    )
    assert auth.auth_required("0.0.0.0", (), True) is False
    with pytest.raises(InputError, match="api_token_hashes.*--insecure-no-auth"):
        auth.auth_required("0.0.0.0", (), False)
    # the command line: hash a token from stdin; refuse a public bind without hashes (exit 2, one line)
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))
    assert main(["serve", "--hash-token"]) == 0
    assert capsys.readouterr().out == h + "\n"
    monkeypatch.delenv("OXEO_API_TOKEN_HASHES", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--database-url", "sqlite:////nonexistent/x.db"]) == 2
    assert "error: api_token_hashes: binding to 0.0.0.0" in capsys.readouterr().err
    monkeypatch.setenv("OXEO_API_TOKEN_HASHES", f"{h},not-a-hash")
    assert main(["serve"]) == 2
    assert "entry 2 is not" in capsys.readouterr().err


# --- read-only ------------------------------------------------------------------------------------


def test_read_only(db_url: str) -> None:
    fill(db_url)
    with TestClient(create_app(db_url)) as client:
        app: Any = client.app
        methods = {m for route in app.routes for m in getattr(route, "methods", ())}
        assert methods <= {"GET", "HEAD"}
        assert client.post("/aois", json={}).status_code == 405
        assert client.delete("/aois/lake-a").status_code == 405
        engine: sa.Engine = app.state.engine
        with pytest.raises(sa.exc.DBAPIError, match="(?i)read-only|readonly"):
            with engine.begin() as conn:
                conn.execute(
                    aoi_set_table.insert().values(name="x", description="", created_at=datetime.now())
                )
        with pytest.raises(sa.exc.DBAPIError, match="(?i)read-only|readonly"):
            with engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM water_observation"))
        assert series(client)["total"] == 17  # nothing was written, the engine still reads


def test_missing_database_is_refused_and_a_lost_one_is_503(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no SQLite database"):
        create_app(f"sqlite:///{tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()
    fill(f"sqlite:///{tmp_path / 'oxeo.db'}")
    with TestClient(create_app(f"sqlite:///{tmp_path / 'oxeo.db'}")) as client:
        assert client.get("/health").json()["database"] == "ok"
        client.app.state.engine.dispose()  # type: ignore[attr-defined]
        (tmp_path / "oxeo.db").unlink()
        r = client.get("/health")
        assert r.status_code == 503 and r.json()["database"] == "unreachable"
        r = client.get("/aois/lake-a")
        assert r.status_code == 503 and r.json() == {"detail": "database unavailable"}


# --- contract: the app against its own OpenAPI document --------------------------------------------


def test_openapi_contract(filled: str) -> None:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import positive_data_acceptance

    app = create_app(filled, [auth.hash_token(TOKEN)])
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    paths = ["/aois", "/aois/{aoi_id}", "/aois/{aoi_id}/timeseries", "/health"]
    assert sorted(schema.keys()) == paths
    for path in paths:
        assert list(schema[path]) == ["get"]  # read-only: GET routes only
        op = schema[path]["GET"]

        @given(case=op.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: Any) -> None:
            # no 5xx; status, content type, headers and body match the spec. Schema-valid values that the
            # API refuses on purpose (west > east, end < start, "a..b") are 422: skip that one check.
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        check()
    try:
        op = schema["/aois/{aoi_id}"]["GET"]
        op.validate_response(TestClient(app).get("/aois/lake-a", headers=headers))
    finally:
        app.state.engine.dispose()


# --- the real command -------------------------------------------------------------------------------


def test_serve_command(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'oxeo.db'}"
    fill(db)
    port = free_port()
    exe = Path(sys.executable).with_name("oxeo-flows")
    env = {**os.environ, "OXEO_API_TOKEN_HASHES": auth.hash_token(TOKEN)}
    cmd = [str(exe), "serve", "--port", str(port), "--database-url", db, "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not answer /health"
            time.sleep(0.2)
        assert httpx.get(f"{base}/aois/lake-a", timeout=5).status_code == 401
        r = httpx.get(f"{base}/aois/lake-a", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert r.status_code == 200 and r.json()["properties"]["name"] == "Lake A"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode in (0, -signal.SIGTERM), err  # uvicorn re-raises the signal after a clean stop
    assert f"read-only on http://127.0.0.1:{port}" in err and "token auth on (1 token hash(es))" in err
    assert TOKEN not in out + err


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from oxeo_flows.settings import load_settings

    monkeypatch.setenv("OXEO_API_TOKEN_HASHES", "sha256:aa, sha256:bb")
    monkeypatch.setenv("OXEO_API_PORT", "9001")
    s = load_settings()
    assert (s.api_token_hashes, s.api_port, s.api_host) == (["sha256:aa", "sha256:bb"], 9001, "127.0.0.1")
    monkeypatch.setenv("OXEO_API_TOKEN_HASHES", '["sha256:cc"]')
    assert load_settings().api_token_hashes == ["sha256:cc"]
    with pytest.raises(InputError, match="api_port"):
        load_settings(api_port=0)


def test_cors_only_for_configured_origins(filled: str, client: TestClient) -> None:
    """Browsers may read the API cross-site only from `api_cors_origins`, GET only; none by default."""
    dash, other = "https://dash.example.org", "https://evil.example.com"
    assert "access-control-allow-origin" not in client.get("/health", headers={"Origin": dash}).headers
    app = create_app(filled, [auth.hash_token(TOKEN)], cors_origins=[dash])
    with TestClient(app) as c:
        pre = c.options(
            "/aois",
            headers={
                "Origin": dash,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "Authorization",
            },
        )
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == dash
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in pre.headers
        got = c.get("/aois", headers={"Origin": dash, "Authorization": f"Bearer {TOKEN}"})
        assert got.status_code == 200 and got.headers["access-control-allow-origin"] == dash
        assert c.get("/aois", headers={"Origin": dash}).status_code == 401  # CORS is no way around auth
        denied = c.options("/aois", headers={"Origin": other, "Access-Control-Request-Method": "GET"})
        assert denied.status_code == 400 and "access-control-allow-origin" not in denied.headers
        assert "access-control-allow-origin" not in c.get("/health", headers={"Origin": other}).headers
        post = c.options("/aois", headers={"Origin": dash, "Access-Control-Request-Method": "DELETE"})
        assert post.status_code == 400  # GET only


def test_cors_origins_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    from oxeo_flows.settings import load_settings

    monkeypatch.setenv("OXEO_API_CORS_ORIGINS", "https://a.example.org, http://localhost:3000")
    assert load_settings().api_cors_origins == ["https://a.example.org", "http://localhost:3000"]
    monkeypatch.setenv("OXEO_API_CORS_ORIGINS", "https://a.example.org/app")
    with pytest.raises(InputError) as exc:
        load_settings()
    assert exc.value.parameter == "api_cors_origins" and "no path" in str(exc.value)
