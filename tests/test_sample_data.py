"""Tests of the synthetic sample catalog (oxeo_flows.sample_data)."""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import shapely
import shapely.affinity
from numpy.typing import NDArray
from pyproj import Transformer
from shapely.geometry import Point, shape

from oxeo_flows.errors import InputError
from oxeo_flows.sample_data import SampleData, write_sample_data

LAKE_X, LAKE_Y = 500_120.0, 4_989_920.0  # lake centre, EPSG:32633 (m)
INNER_A, INNER_B = 700.0, 525.0  # well inside the smallest lake (a = 900 m, b = 675 m)
MAX_A, MAX_B = 1250.0, 937.5
S2 = "sentinel-2-l2a"
LS = "landsat-c2-l2"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleData:
    return write_sample_data(tmp_path_factory.mktemp("sample") / "data", seed=0)


@pytest.fixture(scope="module")
def items(sample: SampleData) -> dict[str, list[pystac.Item]]:
    out: dict[str, list[pystac.Item]] = {}
    for item in pystac.Catalog.from_file(str(sample.catalog)).get_items(recursive=True):
        assert item.collection_id is not None
        out.setdefault(item.collection_id, []).append(item)
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read(item: pystac.Item, key: str) -> tuple[NDArray[np.float64], rasterio.Affine]:
    with rasterio.open(item.assets[key].get_absolute_href()) as src:
        return src.read(1).astype(np.float64), src.transform


def _centres(shape_: tuple[int, int], transform: rasterio.Affine) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.indices(shape_)
    x, y = rasterio.transform.xy(transform, rows.ravel(), cols.ravel())
    return np.asarray(x).reshape(shape_), np.asarray(y).reshape(shape_)


def _inside(x: np.ndarray, y: np.ndarray, a: float, b: float) -> np.ndarray:
    return ((x - LAKE_X) / a) ** 2 + ((y - LAKE_Y) / b) ** 2 < 1.0


def _s2_reflectance(item: pystac.Item, dn: NDArray[np.float64]) -> NDArray[np.float64]:
    """DN -> reflectance with the Earth Search rule (offset flag, then processing baseline)."""
    props = item.properties
    if props["earthsearch:boa_offset_applied"]:
        refl = dn / 10000.0
    elif props["s2:processing_baseline"] >= "04.00":
        refl = (dn - 1000.0) / 10000.0
    else:
        refl = dn / 10000.0
    return np.where(dn == 0, np.nan, refl)


def _s2_20m(item: pystac.Item) -> dict[str, NDArray[np.float64]]:
    """SCL, 20 m bands and 2x2 means of the 10 m bands as reflectance, plus 20 m pixel centres."""
    scl, t20 = _read(item, "scl")
    out = {"scl": scl}
    for key in ("blue", "green", "red", "nir"):
        dn, _ = _read(item, key)
        refl = _s2_reflectance(item, dn)
        h, w = refl.shape
        out[key] = refl.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    for key in ("nir08", "swir16", "swir22"):
        out[key] = _s2_reflectance(item, _read(item, key)[0])
    out["x"], out["y"] = _centres(scl.shape, t20)
    return out


def _interior(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Pixels of `mask` whose 8 neighbours are also in `mask` (one-pixel erosion)."""
    h, w = mask.shape
    padded = np.pad(mask, 1)
    out = mask.copy()
    for dy in range(3):
        for dx in range(3):
            out &= padded[dy : dy + h, dx : dx + w]
    return out


def _truth(sample: SampleData) -> list[dict[str, str]]:
    with sample.truth.open() as fh:
        return list(csv.DictReader(fh))


def test_determinism_overwrite_and_seed(sample: SampleData, tmp_path: Path) -> None:
    reference = _hashes(sample.root)
    out = tmp_path / "sample.v2"  # a dot in the folder name: pystac would take it for a file name
    other = write_sample_data(out, seed=1, include_landsat=False)
    other_hashes = _hashes(other.root)
    assert not any(p.startswith(LS) for p in other_hashes)
    common = set(reference) & set(other_hashes)
    assert any(reference[p] != other_hashes[p] for p in common if p.endswith(".tif"))
    # Overwriting an existing sample directory (different, then identical content) is byte-exact.
    write_sample_data(out, seed=0)
    assert _hashes(out) == reference
    write_sample_data(out, seed=0)
    assert _hashes(out) == reference
    assert [p.name for p in tmp_path.iterdir()] == ["sample.v2"]  # nothing written beside it


def test_total_size_below_6_mb(sample: SampleData) -> None:
    total = sum(p.stat().st_size for p in sample.root.rglob("*") if p.is_file())
    assert total < 6_000_000


def test_catalog_structure(items: dict[str, list[pystac.Item]]) -> None:
    assert {k: len(v) for k, v in items.items()} == {S2: 15, LS: 4}
    for item in [*items[S2], *items[LS]]:
        assert item.properties["proj:code"] == "EPSG:32633"
        for key, asset in item.assets.items():
            assert len(asset.extra_fields["proj:transform"]) == 6, key
            assert len(asset.extra_fields["proj:shape"]) == 2, key
            assert asset.extra_fields["raster:bands"][0]["nodata"] in (0, 1), key
            assert asset.media_type == pystac.MediaType.COG
            assert Path(str(asset.get_absolute_href())).is_file()
    s2_keys = {"blue", "green", "red", "nir", "nir08", "swir16", "swir22", "scl"}
    assert all(set(it.assets) == s2_keys for it in items[S2])
    ls_keys = {"blue", "green", "red", "nir08", "swir16", "swir22", "qa_pixel"}
    # surface temperature on L2SP scenes; the L2SR scene (surface reflectance only) lacks it
    extra = sorted(
        (it.properties["landsat:correction"], sorted(set(it.assets) - ls_keys)) for it in items[LS]
    )
    assert extra == [("L2SP", ["lwir11"])] * 3 + [("L2SR", [])]
    assert all(ls_keys <= set(it.assets) for it in items[LS])
    st = (
        next(it for it in items[LS] if "lwir11" in it.assets).assets["lwir11"].extra_fields["raster:bands"][0]
    )
    assert (st["scale"], st["offset"], st["unit"]) == (0.00341802, 149.0, "kelvin")
    assert Counter(it.properties["platform"] for it in items[LS]) == {
        "landsat-8": 2,
        "landsat-9": 2,
    }
    for it in items[LS]:
        assert it.assets["blue"].extra_fields["proj:transform"][2] % 30 == 15


def test_sentinel2_metadata(items: dict[str, list[pystac.Item]]) -> None:
    old = [it for it in items[S2] if it.properties["s2:processing_baseline"] == "03.01"]
    assert len(old) == 1 and old[0].datetime is not None and old[0].datetime.year == 2021
    assert old[0].assets["green"].extra_fields["raster:bands"][0]["offset"] == 0.0
    new = [it for it in items[S2] if it.datetime is not None and it.datetime.year == 2024]
    assert len(new) == 14
    assert sum(it.properties["earthsearch:boa_offset_applied"] for it in new) >= 3
    for it in new:
        assert it.properties["s2:processing_baseline"] == "05.10"
        band = it.assets["red"].extra_fields["raster:bands"][0]
        assert (band["scale"], band["offset"]) == (0.0001, -0.1)
        assert "scale" not in it.assets["scl"].extra_fields["raster:bands"][0]
        assert it.assets["scl"].extra_fields["raster:bands"][0]["data_type"] == "uint8"
    days = Counter(it.datetime.date() for it in new if it.datetime is not None)
    assert len(days) == 13
    pair = [it for it in new if it.datetime is not None and days[it.datetime.date()] == 2]
    assert len(pair) == 2 and pair[0].id != pair[1].id
    valid = [_read(it, "green")[0] > 0 for it in pair]
    assert all(0.4 < v.mean() < 0.9 for v in valid)  # each granule covers only part of the scene
    assert (valid[0] | valid[1]).all()  # together they cover it


def test_radiometry_clear_water(items: dict[str, list[pystac.Item]]) -> None:
    for item in items[S2]:
        b = _s2_20m(item)
        water = _interior(b["scl"] == 6) & _inside(b["x"], b["y"], INNER_A, INNER_B)
        assert water.sum() >= 10, item.id
        assert np.allclose(b["green"][water], 0.055, atol=0.01), item.id
    for item in items[LS]:
        qa, transform = _read(item, "qa_pixel")
        x, y = _centres(qa.shape, transform)
        water = _interior(qa == 21952) & _inside(x, y, INNER_A, INNER_B)
        assert water.sum() >= 10, item.id
        green = _read(item, "green")[0] * 0.0000275 - 0.2
        assert np.allclose(green[water], 0.055, atol=0.01), item.id


def test_spectra(items: dict[str, list[pystac.Item]]) -> None:
    by_day = {it.datetime.strftime("%Y-%m-%d"): it for it in items[S2] if it.datetime}
    b = _s2_20m(by_day["2024-01-05"])
    water = _interior(b["scl"] == 6) & _inside(b["x"], b["y"], INNER_A, INNER_B)
    assert (b["nir"][water] < 0.05).all()
    mndwi = (b["green"] - b["swir16"]) / (b["green"] + b["swir16"])
    assert (mndwi[water] > 0).all()
    veg = b["scl"] == 4
    assert veg.sum() > 100 and np.percentile(b["nir08"][veg], 5) > 0.25
    for day in ("2024-02-02", "2024-04-12"):
        c = _s2_20m(by_day[day])
        cloud = np.isin(c["scl"], (8, 9))
        assert cloud.sum() > 100
        assert np.median(c["blue"][cloud]) > 0.4 and np.mean(c["blue"][cloud] > 0.3) > 0.9
    assert (_s2_20m(by_day["2024-05-24"])["scl"] == 10).any()  # cirrus date
    land = _s2_20m(by_day["2024-01-19"])  # small cloud, over land only
    assert np.isin(land["scl"], (8, 9)).any()
    assert not np.isin(land["scl"][_inside(land["x"], land["y"], MAX_A, MAX_B)], (3, 8, 9)).any()


def test_truth_table(sample: SampleData) -> None:
    rows = _truth(sample)
    assert list(rows[0]) == [
        "item_ids",
        "datetime",
        "solar_day",
        "constellation",
        "pixel_size_m",
        "true_water_area_m2",
        "aoi_cloud_fraction",
        "aoi_nodata_fraction",
    ]
    assert Counter(r["constellation"] for r in rows) == {
        "sentinel-2": 14,
        "landsat-8": 2,
        "landsat-9": 2,
    }
    s2 = {r["solar_day"]: r for r in rows if r["constellation"] == "sentinel-2"}
    areas = [float(r["true_water_area_m2"]) for r in s2.values()]
    assert max(areas) / min(areas) > 1.1
    assert len(s2["2024-03-15"]["item_ids"].split(";")) == 2
    assert s2["2024-03-15"]["datetime"] == "2024-03-15T10:00:00Z"
    assert float(s2["2024-04-12"]["aoi_cloud_fraction"]) > 0.9
    assert 0.3 <= float(s2["2024-02-02"]["aoi_cloud_fraction"]) <= 0.6
    for day in ("2024-01-05", "2024-01-19", "2024-03-15", "2024-06-21"):
        assert float(s2[day]["aoi_cloud_fraction"]) < 0.01
    assert all(float(r["aoi_nodata_fraction"]) == 0.0 for r in rows)
    ls = [r for r in rows if r["constellation"].startswith("landsat")]
    assert sum(float(r["aoi_cloud_fraction"]) > 0.05 for r in ls) == 1
    for r in rows:  # areas are whole pixels
        assert float(r["true_water_area_m2"]) % float(r["pixel_size_m"]) ** 2 == 0


def test_truth_matches_analytic_ellipse(sample: SampleData) -> None:
    rows = {(r["constellation"], r["solar_day"]): r for r in _truth(sample)}
    area = float(rows[("landsat-8", "2024-04-14")]["true_water_area_m2"])
    assert area == pytest.approx(np.pi * MAX_A * MAX_B, rel=0.02)  # lake at its maximum


def test_aoi_and_river(sample: SampleData, items: dict[str, list[pystac.Item]]) -> None:
    doc = json.loads(sample.aoi.read_text())
    assert doc["type"] == "FeatureCollection" and len(doc["features"]) == 1
    feature = doc["features"][0]
    assert feature["id"] == "sample-lake"
    assert feature["properties"] == {"id": "sample-lake", "name": "Sample Lake"}
    aoi_ll = shape(feature["geometry"])
    assert len(aoi_ll.exterior.coords) >= 129
    to_utm = Transformer.from_crs(4326, 32633, always_xy=True)
    aoi = shapely.transform(aoi_ll, lambda c: np.column_stack(to_utm.transform(c[:, 0], c[:, 1])))
    lake_max = shapely.affinity.scale(Point(LAKE_X, LAKE_Y).buffer(1.0, 256), MAX_A, MAX_B)
    assert aoi.area == pytest.approx(lake_max.buffer(150.0).area, rel=0.01)
    b = _s2_20m(next(it for it in items[S2] if it.id.startswith("S2A_33TVK_20240105")))
    river = (b["scl"] == 6) & ~_inside(b["x"], b["y"], MAX_A, MAX_B)
    assert river.sum() > 20  # water outside the AOI: clipping matters
    pts = shapely.points(b["x"][river], b["y"][river])
    assert not shapely.contains(aoi, pts).any()
    assert shapely.distance(lake_max, pts).min() >= 300.0 - 20.0


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="size_m"):
        write_sample_data(tmp_path / "a", size_m=3000)  # margin < 150 m
    with pytest.raises(InputError, match="size_m"):
        write_sample_data(tmp_path / "a", size_m=3210)  # not 20 m aligned
    with pytest.raises(InputError, match="seed"):
        write_sample_data(tmp_path / "a", seed=-1)
    other = tmp_path / "b"
    other.mkdir()
    (other / "catalog.json").write_text(json.dumps({"id": "someone-else"}))
    with pytest.raises(InputError, match="out_dir"):
        write_sample_data(other)
