"""Flaky sources: COGs served over local HTTP with injected 5xx, timeouts and truncated bodies.

Fast tests check the read layer (`read_asset` / `load_day`): a truncated body never yields wrong pixels,
retries recover exact pixels, a source that stays down raises a `SourceError` naming scene, band, tile
and a redacted href, and a recovered source reads again in the same process. Slow tests run the `water`
flow over a copy of the sample catalog whose hrefs point at the server and compare with a clean run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from affine import Affine

from oxeo_flows import extract, integrity, pipeline, store
from oxeo_flows.archive import Archive, open_archive, stores_under
from oxeo_flows.catalog import AssetRef
from oxeo_flows.constellations import CONSTELLATIONS
from oxeo_flows.errors import SourceError
from oxeo_flows.extract import SOURCE_RETRIES, ReadPolicy, load_day, read_asset, redact
from oxeo_flows.tiling import Tile
from tests.faulty_http import FAULT_KINDS, NO_FAULTS, FaultRates, FaultyServer
from tests.helpers import S2, make_s2_scene, write_cog

TOKEN = "s3cr3t-t0ken"
TILE = Tile(33, False, 10_000, 49, 499)  # 490000..500000 x 4990000..5000000 (EPSG:32633)
T0 = datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
FAST = ReadPolicy(retries=0, http_retries=0, retry_delay_s=0.01, timeout_s=1.0)


@pytest.fixture
def no_leaked_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    assert set(threading.enumerate()) <= before


def _asset(href: str, band: str = "green") -> AssetRef:
    return AssetRef(band, href, 1.0, 0.0, 0, "EPSG:32633", (1, 1), (10.0, 0.0, 0.0, 0.0, -10.0, 0.0))


def _big_cogs(root: Path) -> dict[str, Path]:
    """Multi-block COGs (16 blocks of 256 px, several range requests per read), raw and compressed."""
    rng = np.random.default_rng(7)
    arr = rng.integers(1, 60_000, (1000, 1000), dtype=np.uint16)
    out = {}
    for name, compress in (("raw", "NONE"), ("deflate", "DEFLATE")):
        path = root / f"{name}.tif"
        write_cog(
            path,
            arr,
            Affine(10, 0, 490_000, 0, -10, 5_000_000),
            "EPSG:32633",
            compress=compress,
            blocksize=256,
            overviews="NONE",
        )
        out[name] = path
    return out


def test_truncated_bodies_never_yield_wrong_pixels(tmp_path: Path, no_leaked_threads: None) -> None:
    """Without retries every read under truncation either raises SourceError or is exact; with retries all
    are exact. Covers raw and DEFLATE tiles, the aligned (windowed) and the warped read path."""
    cogs = _big_cogs(tmp_path)
    aligned, warped = TILE.geobox(10), Tile(33, False, 7_000, 70, 713).geobox(10)
    outcomes = {"error": 0, "exact": 0}
    with FaultyServer(tmp_path, FaultRates(0.0, 0.0, 0.3), max_faults_per_request=3) as srv:
        for name, path in cogs.items():
            for geobox, resampling in ((aligned, "nearest"), (warped, "bilinear")):
                ref = read_asset(_asset(str(path)), geobox, resampling)
                assert (ref > 0).sum() > 100_000
                for i in range(6):
                    href = f"{srv.url}/{name}.tif?read={i}"  # fresh fault sequence per read
                    try:
                        got = read_asset(_asset(href), geobox, resampling, policy=FAST)
                    except SourceError:
                        outcomes["error"] += 1
                        continue
                    np.testing.assert_array_equal(got, ref)
                    outcomes["exact"] += 1
                retrying = ReadPolicy(retries=20, http_retries=0, retry_delay_s=0.001)
                for i in range(3):
                    href = f"{srv.url}/{name}.tif?retried={i}"
                    got = read_asset(_asset(href), geobox, resampling, policy=retrying)
                    np.testing.assert_array_equal(got, ref)
        faults = srv.faults()
    assert faults["truncated"] > 20 and faults["5xx"] == faults["timeout"] == 0
    assert outcomes["error"] > 0 and outcomes["exact"] > 0


@pytest.fixture(params=["clear-cache", "non-cached-fallback"])
def cache_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run with VSICurlPartialClearCache, and with the CPL_VSIL_CURL_NON_CACHED fallback used where
    the GDAL function cannot be reached through ctypes."""
    if request.param != "clear-cache":
        monkeypatch.setattr(extract, "_CLEAR_CACHE", None)
    else:
        assert extract._CLEAR_CACHE is not None  # found on this platform
    return str(request.param)


def test_all_fault_kinds_are_retried_to_exact_pixels(
    tmp_path: Path, no_leaked_threads: None, cache_mode: str
) -> None:
    scene, arrays = make_s2_scene(tmp_path / "s", "a", T0)
    gb = TILE.geobox(10)
    ref = {b: read_asset(scene.assets[b], gb) for b in S2.bands}
    policy = ReadPolicy(retries=4, http_retries=2, retry_delay_s=0.01, timeout_s=0.5)
    retries = SOURCE_RETRIES.value
    with FaultyServer(tmp_path, FaultRates(0.3, 0.1, 0.2), hang_s=2.0, seed=3) as srv:
        for rnd in range(3):
            for b in S2.bands:
                href = f"{srv.url}/s/a_{b}.tif?token={TOKEN}&round={rnd}"
                np.testing.assert_array_equal(read_asset(_asset(href, b), gb, policy=policy), ref[b])
        faults = srv.faults()
    assert all(faults[k] > 0 for k in FAULT_KINDS), faults
    assert SOURCE_RETRIES.value > retries  # truncations are retried by us, not by GDAL


def test_clean_remote_read_makes_no_extra_requests(tmp_path: Path) -> None:
    """The retry machinery costs nothing on the clean path: no retries, no more requests than plain GDAL."""
    import rasterio

    scene, _ = make_s2_scene(tmp_path / "s", "a", T0)
    with FaultyServer(tmp_path, NO_FAULTS) as srv:
        href = f"{srv.url}/s/a_green.tif"
        with rasterio.open(href) as src:  # GDAL defaults
            src.read(1)
        plain = srv.counts["requests"]
        retries = SOURCE_RETRIES.value
        read_asset(_asset(f"{srv.url}/s/a_red.tif", "red"), TILE.geobox(10), policy=ReadPolicy())
        ours = srv.counts["requests"] - plain
    assert SOURCE_RETRIES.value == retries
    assert 0 < ours <= plain


def test_source_down_names_scene_band_tile_and_recovers_in_process(
    tmp_path: Path, no_leaked_threads: None, caplog: pytest.LogCaptureFixture, cache_mode: str
) -> None:
    caplog.set_level(logging.DEBUG)
    s1, _ = make_s2_scene(tmp_path / "1", "scene-one", T0)
    s2, _ = make_s2_scene(tmp_path / "2", "scene-two", T0.replace(second=5), seed=1)
    gb = TILE.geobox(10)
    ref = load_day([s1, s2], S2, gb)
    policy = ReadPolicy(retries=1, http_retries=1, retry_delay_s=0.01, timeout_s=1.0)
    with FaultyServer(tmp_path) as srv:
        remote = [_served(s, tmp_path, srv.url) for s in (s1, s2)]
        srv.set_down("2/")
        with pytest.raises(SourceError) as err:
            load_day(remote, S2, gb, policy=policy, tile_id=TILE.id)
        msg = str(err.value)
        assert msg.startswith(f"scene scene-two tile {TILE.id} band ")
        band = msg.split(" band ", 1)[1].split(":", 1)[0]
        assert band in S2.bands
        assert f"{srv.url}/2/scene-two_{band}.tif?token=***" in msg
        assert "after 2 attempt(s): HTTP response code: 503" in msg
        assert TOKEN not in msg and err.value.__cause__ is None and err.value.__suppress_context__
        srv.set_down()  # GDAL cached the 503 as "does not exist": the failed read must have dropped it
        got = load_day(remote, S2, gb, policy=policy, tile_id=TILE.id)
        url = srv.url
    np.testing.assert_array_equal(got.data, ref.data)
    assert got.meta == ref.meta
    assert TOKEN not in caplog.text and "token=***" in caplog.text  # GDAL's own retry warnings too
    stopped = [_served(s, tmp_path, url, "&after=stop") for s in (s1, s2)]  # not in GDAL's cache
    with pytest.raises(SourceError, match=r"^scene scene-one tile \S+ band \w+: cannot read .*connect"):
        load_day(stopped, S2, gb, policy=policy, tile_id=TILE.id)


def _served(scene: Any, root: Path, base: str, extra: str = "") -> Any:
    from dataclasses import replace

    assets = {
        b: replace(a, href=f"{base}/{Path(a.href).relative_to(root).as_posix()}?token={TOKEN}{extra}")
        for b, a in scene.assets.items()
    }
    return replace(scene, assets=assets)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "https://h/x.tif?X-Amz-Signature=abc&X-Amz-Date=1",
            "https://h/x.tif?X-Amz-Signature=***&X-Amz-Date=***",
        ),
        ("'/vsicurl/https://u:pw@h/a/b.tif' failed", "'/vsicurl/https://***@h/a/b.tif' failed"),
        ("s3://bucket/key.tif?token=t&x", "s3://bucket/key.tif?token=***&x=***"),
        (
            "msg='green.tif?sig=abc, band 1: IReadBlock failed'",
            "msg='green.tif?sig=***, band 1: IReadBlock failed'",
        ),
        ("no url here? code 503", "no url here? code 503"),
        ("http://h/plain.tif: HTTP 500", "http://h/plain.tif: HTTP 500"),
    ],
)
def test_redact_hides_credentials_and_query_values(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_hides_the_hrefs_credentials_in_bare_gdal_messages() -> None:
    href = f"https://u:pw@h/dir/blue.tif?sig={TOKEN}&exp=9"
    msg = f"blue.tif?sig={TOKEN}&exp=9: TIFFReadDirectory failed; u:pw@h unreachable"
    assert redact(msg, href) == "blue.tif?sig=***&exp=***: TIFFReadDirectory failed; ***@h unreachable"


def test_fault_injection_is_deterministic(tmp_path: Path) -> None:
    scene, _ = make_s2_scene(tmp_path / "s", "a", T0)
    gb = TILE.geobox(10)
    policy = ReadPolicy(retries=6, http_retries=2, retry_delay_s=0.001, timeout_s=0.5)
    counts = []
    for _ in range(2):
        with FaultyServer(tmp_path, FaultRates(0.3, 0.0, 0.2), seed=11) as srv:
            for b in S2.bands:
                read_asset(_asset(f"{srv.url}/s/a_{b}.tif", b), gb, policy=policy)
            counts.append(dict(srv.counts))
    assert counts[0] == counts[1] and counts[0]["5xx"] > 0 and counts[0]["truncated"] > 0


# --------------------------------------------------------------------------------------------------
# The water flow over a flaky source (slow)
# --------------------------------------------------------------------------------------------------

# Scenes S2 2024-02-16 and 2024-03-01 (aligned reads), L9 2024-02-18 (warped reads), over the sample
# AOI's 4 tiles; window "quarter" puts both S2 days in one work unit per tile.
START, END, WINDOW = "2024-02-14", "2024-03-10", "quarter"
CONSTS = "sentinel-2,landsat-9"
DOWN_SCENE = "S2A_33TVK_20240301_0_L2A"  # the unit's second day: 2024-02-16 is committed before it


def serve_catalog(sample: Path, dest: Path, base_url: str) -> Path:
    """A copy of the sample catalog whose asset hrefs are `base_url`/<path>?token=TOKEN."""
    root = sample.resolve()
    for src in root.rglob("*.json"):
        doc = json.loads(src.read_text())
        for asset in doc.get("assets", {}).values():
            target = (src.parent / asset["href"]).resolve()
            asset["href"] = f"{base_url}/{target.relative_to(root).as_posix()}?token={TOKEN}"
        out = dest / src.relative_to(root)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc))
    return dest / "catalog.json"


def _water(sample: Path, work: Path, catalog: Path) -> dict[str, Any]:
    from oxeo_flows.flows.water import water_flow

    return water_flow(
        aoi=str(sample / "aoi.geojson"),
        start_date=START,
        end_date=END,
        constellations=CONSTS,
        catalog=str(catalog),
        storage=str(work / "archive"),
        database_url=f"sqlite:///{work / 'oxeo.db'}",
        window=WINDOW,
    )


def _archive(work: Path) -> dict[str, dict[str, str]]:
    """Per store and array: sha256 of the committed slices' bytes (time-sorted)."""
    out = {}
    for path in stores_under(str(work / "archive")):
        ds = open_archive(path)
        out[Path(path).relative_to(work).as_posix()] = {
            n: hashlib.sha256(np.ascontiguousarray(ds[n].values).tobytes()).hexdigest()
            for n in sorted(str(v) for v in ds.variables)
        }
    return out


def _rows(work: Path) -> list[dict[str, Any]]:
    """Observation rows without run bookkeeping (ids, run ids, computation times)."""
    t = store.observation_table
    keep = [c for c in t.columns if c.name not in ("id", "computed_at") and not c.name.endswith("run_id")]
    engine = store.connect(f"sqlite:///{work / 'oxeo.db'}")
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(sa.select(*keep).order_by(*keep[:4])).mappings()]
    engine.dispose()
    return rows


def _check(work: Path) -> list[integrity.Finding]:
    engine = store.connect(f"sqlite:///{work / 'oxeo.db'}")
    try:
        return integrity.problems(integrity.check_all(str(work / "archive"), engine))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def clean_run(
    sample: Path, prefect_harness: None, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    """The same request over the local-file catalog (no HTTP at all): work folder and flow summary."""
    work = tmp_path_factory.mktemp("clean")
    summary = _water(sample, work, sample / "catalog.json")
    assert summary["work_units"] == 8 and summary["slices_written"] > 8 and summary["rows_written"] == 3
    return work, summary


def _quick_sources(monkeypatch: pytest.MonkeyPatch, retries: int, http_retries: int) -> None:
    monkeypatch.setenv("OXEO_SOURCE_RETRIES", str(retries))
    monkeypatch.setenv("OXEO_SOURCE_HTTP_RETRIES", str(http_retries))
    monkeypatch.setenv("OXEO_SOURCE_RETRY_DELAY_S", "0.02")
    monkeypatch.setenv("OXEO_SOURCE_TIMEOUT_S", "1")


def _count_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real: Callable[..., pipeline.ExtractSummary] = pipeline.extract_unit

    def counted(unit: Any, *args: Any, **kwargs: Any) -> pipeline.ExtractSummary:
        calls.append(unit.name)
        return real(unit, *args, **kwargs)

    monkeypatch.setattr(pipeline, "extract_unit", counted)
    return calls


@pytest.mark.slow
def test_water_flow_over_flaky_source_is_bit_identical_to_clean_run(
    sample: Path, clean_run: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean, clean_summary = clean_run
    _quick_sources(monkeypatch, retries=6, http_retries=3)
    calls = _count_calls(monkeypatch)
    retries = SOURCE_RETRIES.value
    with FaultyServer(sample, FaultRates(0.30, 0.05, 0.10), hang_s=3.0, seed=5) as srv:
        summary = _water(sample, tmp_path, serve_catalog(sample, tmp_path / "catalog", srv.url))
        faults, requests = srv.faults(), srv.counts["requests"]
    print(f"faults injected {faults} in {requests} requests; {SOURCE_RETRIES.value - retries} asset re-reads")
    assert all(faults[k] > 0 for k in FAULT_KINDS), faults
    assert faults["5xx"] >= 10 and SOURCE_RETRIES.value > retries
    assert len(calls) == summary["work_units"] == 8  # library retries sufficed: no Prefect task retry
    for key in ("slices_written", "rows_written", "scenes_read"):
        assert summary[key] == clean_summary[key]
    assert _archive(tmp_path) == _archive(clean)
    assert _rows(tmp_path) == _rows(clean)
    assert _check(tmp_path) == []


@pytest.mark.slow
def test_source_down_fails_naming_scene_and_tile_and_rerun_recovers(
    sample: Path, clean_run: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean, clean_summary = clean_run
    _quick_sources(monkeypatch, retries=1, http_retries=1)
    monkeypatch.setenv("OXEO_TASK_RETRIES", "2")
    calls = _count_calls(monkeypatch)
    s2 = CONSTELLATIONS["sentinel-2"]
    with FaultyServer(sample) as srv:
        catalog = serve_catalog(sample, tmp_path / "catalog", srv.url)
        srv.set_down(f"sentinel-2-l2a/{DOWN_SCENE}/")
        with pytest.raises(SourceError) as err:
            _water(sample, tmp_path, catalog)
        msg = str(err.value)
        tile_id = msg.split(" tile ", 1)[1].split(" ", 1)[0]
        assert msg.startswith(f"scene {DOWN_SCENE} tile {tile_id} band ")
        assert f"{srv.url}/sentinel-2-l2a/{DOWN_SCENE}/" in msg and "token=***" in msg and TOKEN not in msg
        assert "after 2 attempt(s): HTTP response code: 503" in msg
        # source_retries (1) inside each attempt, then task_retries (2) Prefect retries of that unit only
        # (every tile the down scene covers fails; the flow may stop before a second failing unit has
        # used all its retries, so only the unit whose error was raised is sure to show all three)
        attempts = Counter(calls)
        assert max(attempts.values()) == 3  # 1 + task_retries, never more
        assert any(tile_id in u for u, n in attempts.items() if n == 3)
        assert all("sentinel-2" in u for u, n in attempts.items() if n > 1)

        # What was written before the failure is valid, readable and equal to the clean run's slices;
        # the failing tile's unit committed its first day, not the day of the down scene.
        assert _check(tmp_path) == []
        written = 0
        for path in stores_under(str(tmp_path / "archive")):
            tile, const = Tile.from_id(Path(path).parent.name), CONSTELLATIONS[Path(path).stem]
            arc, ref = (Archive(str(w / "archive"), tile, const) for w in (tmp_path, clean))
            done, ref_done = arc.committed(), ref.committed()
            assert set(done) <= set(ref_done)
            for day, slot in done.items():
                np.testing.assert_array_equal(arc.read_slice(slot), ref.read_slice(ref_done[day]))
                assert arc.slice_meta(slot) == ref.slice_meta(ref_done[day])
            written += len(done)
            if tile.id == tile_id and const == s2:
                assert sorted(str(d) for d in done) == ["2024-02-16"]
        assert 0 < written < clean_summary["slices_written"]

        srv.set_down()  # healthy again: the rerun completes what is missing
        summary = _water(sample, tmp_path, catalog)
    assert summary["slices_written"] == clean_summary["slices_written"] - written
    assert _archive(tmp_path) == _archive(clean)
    assert _rows(tmp_path) == _rows(clean)
    assert _check(tmp_path) == []
