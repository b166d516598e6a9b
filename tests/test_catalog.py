"""Tests for oxeo_flows.catalog: radiometric offsets, item parsing, filtering and static search."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pystac
import pytest
from shapely.geometry import box, mapping

from oxeo_flows.catalog import (
    AssetRef,
    Scene,
    s2_dn_offset,
    scene_from_item,
    scenes_for,
    search_items,
)
from oxeo_flows.constellations import CONSTELLATIONS
from oxeo_flows.errors import InputError

S2 = CONSTELLATIONS["sentinel-2"]
L8 = CONSTELLATIONS["landsat-8"]
L9 = CONSTELLATIONS["landsat-9"]

S2_V1_KEYS = ("blue", "green", "red", "nir", "nir08", "swir16", "swir22", "scl")
S2_V0_KEYS = {
    "blue": "B02",
    "green": "B03",
    "red": "B04",
    "nir": "B08",
    "nir08": "B8A",
    "swir16": "B11",
    "swir22": "B12",
    "scl": "SCL",
}
LS_KEYS = ("blue", "green", "red", "nir08", "swir16", "swir22", "qa_pixel")

SHAPE_10M = [10980, 10980]
TRANSFORM_10M = [10.0, 0.0, 499980.0, 0.0, -10.0, 5000040.0]
SHAPE_20M = [5490, 5490]
TRANSFORM_20M = [20.0, 0.0, 499980.0, 0.0, -20.0, 5000040.0]
ITEM_SHAPE = [1, 1]
ITEM_TRANSFORM = [60.0, 0.0, 1.0, 0.0, -60.0, 2.0]
BASE = "https://example.com/data"

S2_RASTER = [{"scale": 0.0001, "offset": -0.1, "nodata": 0, "data_type": "uint16"}]
LS_RASTER = [{"scale": 0.0000275, "offset": -0.2, "nodata": 0, "data_type": "uint16"}]
QA_RASTER = [{"nodata": 1, "data_type": "uint16"}]


def _geometry(lon: float = 15.0, lat: float = 45.0, half: float = 0.05) -> dict[str, Any]:
    return mapping(box(lon - half, lat - half, lon + half, lat + half))


def _asset(key: str, raster: list[dict[str, Any]], *, proj: bool = True, **extra: Any) -> pystac.Asset:
    fields: dict[str, Any] = {"raster:bands": [dict(b) for b in raster], **extra}
    if proj:
        coarse = key in ("nir08", "swir16", "swir22", "scl", "B8A", "B11", "B12", "SCL")
        fields["proj:shape"] = SHAPE_20M if coarse else SHAPE_10M
        fields["proj:transform"] = TRANSFORM_20M if coarse else TRANSFORM_10M
    return pystac.Asset(href=f"{BASE}/{key}.tif", media_type=pystac.MediaType.COG, extra_fields=fields)


def s2_item(
    item_id: str = "S2B_33TWK_20240310_0_L2A",
    dt: datetime = datetime(2024, 3, 10, 10, 0, tzinfo=UTC),
    *,
    baseline: str | None = "05.10",
    boa_applied: bool | None = False,
    keys: dict[str, str] | None = None,
    proj_props: dict[str, Any] | None = None,
    platform: str | None = "sentinel-2b",
    collection: str | None = "sentinel-2-l2a",
    geometry: dict[str, Any] | None = None,
) -> pystac.Item:
    props: dict[str, Any] = {"proj:epsg": 32633} if proj_props is None else dict(proj_props)
    if baseline is not None:
        props["s2:processing_baseline"] = baseline
    if boa_applied is not None:
        props["earthsearch:boa_offset_applied"] = boa_applied
    if platform is not None:
        props["platform"] = platform
    geom = geometry or _geometry()
    item = pystac.Item(
        id=item_id,
        geometry=geom,
        bbox=list(box(*_bounds(geom)).bounds),
        datetime=dt,
        properties=props,
        collection=collection,
    )
    mapping_ = keys or {b: b for b in S2_V1_KEYS}
    for key in mapping_.values():
        item.add_asset(key, _asset(key, S2_RASTER))  # Earth Search declares it on SCL too
    return item


def ls_item(
    item_id: str = "LC08_L2SP_190028_20240310_20240320_02_T1",
    dt: datetime = datetime(2024, 3, 10, 9, 50, tzinfo=UTC),
    *,
    platform: str | None = "landsat-8",
    collection: str = "landsat-c2-l2",
) -> pystac.Item:
    props: dict[str, Any] = {"proj:epsg": 32633}
    if platform is not None:
        props["platform"] = platform
    geom = _geometry()
    item = pystac.Item(
        id=item_id,
        geometry=geom,
        bbox=list(_bounds(geom)),
        datetime=dt,
        properties=props,
        collection=collection,
    )
    for key in LS_KEYS:
        item.add_asset(
            key,
            pystac.Asset(
                href=f"{BASE}/{key}.tif",
                extra_fields={
                    "raster:bands": QA_RASTER if key == "qa_pixel" else LS_RASTER,
                    "proj:shape": [7801, 7681],
                    "proj:transform": [30.0, 0.0, 399885.0, 0.0, -30.0, 5100015.0],
                },
            ),
        )
    return item


def _bounds(geom: dict[str, Any]) -> tuple[float, float, float, float]:
    ring = geom["coordinates"][0]
    xs = [p[0] for p in ring]
    ys = [p[1] for p in ring]
    return min(xs), min(ys), max(xs), max(ys)


# --------------------------------------------------------------------------------------------------
# s2_dn_offset


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({"earthsearch:boa_offset_applied": True, "s2:processing_baseline": "05.10"}, 0),
        ({"earthsearch:boa_offset_applied": True, "s2:processing_baseline": "04.00"}, 0),
        ({"earthsearch:boa_offset_applied": False, "s2:processing_baseline": "04.00"}, -1000),
        ({"earthsearch:boa_offset_applied": False, "s2:processing_baseline": "05.10"}, -1000),
        ({"s2:processing_baseline": "04.00"}, -1000),
        ({"s2:processing_baseline": "05.10"}, -1000),
        ({"earthsearch:boa_offset_applied": False, "s2:processing_baseline": "03.01"}, 0),
        ({"s2:processing_baseline": "03.01"}, 0),
        ({"s2:processing_baseline": "02.14"}, 0),
        ({}, 0),
        ({"earthsearch:boa_offset_applied": False}, 0),
    ],
)
def test_s2_dn_offset(props: dict[str, Any], expected: int) -> None:
    assert s2_dn_offset(props) == expected


def test_s2_dn_offset_non_numeric_baseline() -> None:
    with pytest.raises(InputError) as exc:
        s2_dn_offset({"s2:processing_baseline": "N0510"})
    assert exc.value.parameter == "catalog"
    assert "'N0510'" in str(exc.value)


# --------------------------------------------------------------------------------------------------
# scene_from_item: Sentinel-2


@pytest.mark.parametrize(
    ("baseline", "flag", "offset"),
    [("05.10", False, -0.1), ("05.10", True, 0.0), ("03.01", False, 0.0), ("04.00", None, -0.1)],
)
def test_scene_offset_decided_per_item(baseline: str, flag: bool | None, offset: float) -> None:
    scene = scene_from_item(s2_item(baseline=baseline, boa_applied=flag), S2)
    assert scene.processing_baseline == baseline
    for band in S2.reflectance_bands:
        ref = scene.assets[band]
        assert ref.scale == 0.0001
        assert ref.offset == offset
        assert ref.nodata == 0.0
    assert scene.assets["scl"].scale == 1.0
    assert scene.assets["scl"].offset == 0.0


def test_scene_fields_from_v1_item() -> None:
    item = s2_item()
    scene = scene_from_item(item, S2)
    assert isinstance(scene, Scene)
    assert scene.id == "S2B_33TWK_20240310_0_L2A"
    assert scene.datetime == datetime(2024, 3, 10, 10, 0, tzinfo=UTC)
    assert scene.constellation == "sentinel-2"
    assert scene.collection == "sentinel-2-l2a"
    assert scene.geometry == json.loads(json.dumps(item.geometry))
    assert list(scene.assets) == list(S2.bands)
    blue = scene.assets["blue"]
    assert blue == AssetRef(
        band="blue",
        href=f"{BASE}/blue.tif",
        scale=0.0001,
        offset=-0.1,
        nodata=0.0,
        crs="EPSG:32633",
        shape=(10980, 10980),
        transform=(10.0, 0.0, 499980.0, 0.0, -10.0, 5000040.0),
    )
    assert blue.resolution_m == 10.0
    assert scene.assets["swir16"].shape == (5490, 5490)
    assert scene.assets["swir16"].resolution_m == 20.0


def test_scene_datetime_converted_to_utc() -> None:
    local = datetime(2024, 3, 10, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    scene = scene_from_item(s2_item(dt=local), S2)
    assert scene.datetime == datetime(2024, 3, 10, 10, 0, tzinfo=UTC)
    assert scene.datetime.utcoffset() == timedelta(0)


@pytest.mark.parametrize("proj", [{"proj:code": "EPSG:32633"}, {"proj:epsg": 32633}])
def test_scene_accepts_proj_code_and_proj_epsg(proj: dict[str, Any]) -> None:
    scene = scene_from_item(s2_item(proj_props=proj), S2)
    assert {ref.crs for ref in scene.assets.values()} == {"EPSG:32633"}


def test_scene_asset_level_projection_preferred() -> None:
    props = {"proj:epsg": 32633, "proj:shape": ITEM_SHAPE, "proj:transform": ITEM_TRANSFORM}
    item = s2_item(proj_props=props)
    item.assets["red"].extra_fields["proj:code"] = "EPSG:32634"
    scene = scene_from_item(item, S2)
    assert scene.assets["blue"].shape == (10980, 10980)
    assert scene.assets["blue"].transform == tuple(TRANSFORM_10M)
    assert scene.assets["swir22"].shape == (5490, 5490)
    assert scene.assets["red"].crs == "EPSG:32634"
    assert scene.assets["blue"].crs == "EPSG:32633"


def test_scene_item_level_projection_used_when_asset_has_none() -> None:
    props = {"proj:code": "EPSG:32633", "proj:shape": ITEM_SHAPE, "proj:transform": ITEM_TRANSFORM}
    item = s2_item(proj_props=props)
    for key in ("green", "scl"):
        del item.assets[key].extra_fields["proj:shape"]
        del item.assets[key].extra_fields["proj:transform"]
    scene = scene_from_item(item, S2)
    assert scene.assets["green"].shape == (1, 1)
    assert scene.assets["green"].transform == tuple(ITEM_TRANSFORM)
    assert scene.assets["scl"].shape == (1, 1)
    assert scene.assets["blue"].shape == (10980, 10980)


def test_scene_v0_keys_resolve_through_aliases() -> None:
    scene = scene_from_item(s2_item(keys=S2_V0_KEYS), S2)
    assert list(scene.assets) == list(S2.bands)
    for band, key in S2_V0_KEYS.items():
        assert scene.assets[band].href == f"{BASE}/{key}.tif"
        assert scene.assets[band].band == band
    assert scene.assets["scl"].scale == 1.0
    assert scene.assets["scl"].offset == 0.0
    assert scene.assets["green"].offset == -0.1


def test_scene_asset_found_by_eo_bands_common_name() -> None:
    item = s2_item()
    asset = item.assets.pop("swir16")
    asset.extra_fields["eo:bands"] = [{"name": "B11", "common_name": "swir16"}]
    item.add_asset("band_eleven", asset)
    scene = scene_from_item(item, S2)
    assert scene.assets["swir16"].href == f"{BASE}/swir16.tif"
    assert scene.assets["swir16"].shape == (5490, 5490)


def test_scene_missing_asset_names_item_and_band() -> None:
    item = s2_item(item_id="S2A_NO_SWIR")
    del item.assets["swir22"]
    with pytest.raises(InputError) as exc:
        scene_from_item(item, S2)
    assert exc.value.parameter == "catalog"
    assert "S2A_NO_SWIR" in str(exc.value)
    assert "'swir22'" in str(exc.value)


def test_scene_missing_projection_metadata() -> None:
    item = s2_item(proj_props={})
    with pytest.raises(InputError) as exc:
        scene_from_item(item, S2)
    assert exc.value.parameter == "catalog"
    assert "proj:code" in str(exc.value)
    assert item.id in str(exc.value)


def test_scene_missing_shape_is_an_error() -> None:
    item = s2_item()
    del item.assets["nir"].extra_fields["proj:shape"]
    with pytest.raises(InputError, match=r"asset 'nir'.*proj:shape") as exc:
        scene_from_item(item, S2)
    assert exc.value.parameter == "catalog"


def test_scene_relative_hrefs_resolve_against_self_href() -> None:
    item = s2_item()
    for key, asset in item.assets.items():
        asset.href = f"./{key}.tif"
    item.assets["scl"].href = "../shared/scl.tif"
    item.set_self_href("https://example.com/stac/items/item-1/item.json")
    scene = scene_from_item(item, S2)
    assert scene.assets["blue"].href == "https://example.com/stac/items/item-1/blue.tif"
    assert scene.assets["swir22"].href == "https://example.com/stac/items/item-1/swir22.tif"
    assert scene.assets["scl"].href == "https://example.com/stac/items/shared/scl.tif"


def test_scene_relative_hrefs_resolve_against_local_self_href(tmp_path: Path) -> None:
    item = s2_item()
    for key, asset in item.assets.items():
        asset.href = f"{key}.tif"
    item.set_self_href(str(tmp_path / "cat" / "item.json"))
    scene = scene_from_item(item, S2)
    assert scene.assets["nir"].href == str(tmp_path / "cat" / "nir.tif")


# --------------------------------------------------------------------------------------------------
# scene_from_item: Landsat


def test_landsat_scale_offset_from_raster_bands() -> None:
    scene = scene_from_item(ls_item(), L8)
    assert scene.constellation == "landsat-8"
    assert list(scene.assets) == list(LS_KEYS)
    for band in L8.reflectance_bands:
        assert scene.assets[band].scale == 0.0000275
        assert scene.assets[band].offset == -0.2
        assert scene.assets[band].nodata == 0.0
        assert scene.assets[band].resolution_m == 30.0
    qa = scene.assets["qa_pixel"]
    assert (qa.scale, qa.offset, qa.nodata) == (1.0, 0.0, 1.0)
    assert scene.processing_baseline is None


def test_landsat_ignores_sentinel2_offset_rule() -> None:
    item = ls_item()
    item.properties["s2:processing_baseline"] = "05.10"  # nonsense on Landsat; must not apply
    scene = scene_from_item(item, L8)
    assert scene.assets["green"].offset == -0.2


# --------------------------------------------------------------------------------------------------
# scenes_for


def test_scenes_for_filters_collection_and_platform() -> None:
    t = datetime(2024, 3, 10, 10, 0, tzinfo=UTC)
    items = [
        s2_item("s2b-late", t + timedelta(minutes=5), platform="sentinel-2b"),
        s2_item("s2a-early", t, platform="sentinel-2a"),
        s2_item("s2c-same-time-b", t, platform="Sentinel-2C"),
        s2_item("s2-no-platform", t + timedelta(days=1), platform=None),
        s2_item("s2-wrong-collection", t, collection="sentinel-2-l1c"),
        ls_item("l8-a", t, platform="landsat-8"),
        ls_item("l9-a", t, platform="landsat-9"),
        ls_item("l8-upper", t - timedelta(days=1), platform="LANDSAT_8"),
        ls_item("l-no-platform", t, platform=None),
    ]
    s2 = scenes_for(items, S2)
    assert [s.id for s in s2] == ["s2a-early", "s2c-same-time-b", "s2b-late", "s2-no-platform"]
    assert [s.id for s in scenes_for(items, L8)] == ["l8-upper", "l8-a"]
    assert [s.id for s in scenes_for(items, L9)] == ["l9-a"]
    assert scenes_for(items, CONSTELLATIONS["landsat-7"]) == []


def test_scenes_for_sorts_by_datetime_then_id() -> None:
    t = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
    items = [
        s2_item("b", t),
        s2_item("c", t - timedelta(seconds=1)),
        s2_item("a", t),
        s2_item("d", t + timedelta(microseconds=1)),
    ]
    assert [s.id for s in scenes_for(items, S2)] == ["c", "a", "b", "d"]


# --------------------------------------------------------------------------------------------------
# solar day


def test_solar_day_east_goes_to_next_day() -> None:
    item = s2_item(dt=datetime(2024, 3, 10, 23, 30, tzinfo=UTC), geometry=_geometry(lon=15.0))
    assert scene_from_item(item, S2).solar_day == date(2024, 3, 11)


def test_solar_day_west_goes_to_previous_day() -> None:
    item = s2_item(dt=datetime(2024, 3, 11, 0, 30, tzinfo=UTC), geometry=_geometry(lon=-15.0))
    assert scene_from_item(item, S2).solar_day == date(2024, 3, 10)


def test_solar_day_same_day_near_noon() -> None:
    item = s2_item(dt=datetime(2024, 3, 10, 10, 0, tzinfo=UTC), geometry=_geometry(lon=15.0))
    scene = scene_from_item(item, S2)
    assert scene.solar_day == date(2024, 3, 10)
    assert scene.footprint.bounds == pytest.approx((14.95, 44.95, 15.05, 45.05))


# --------------------------------------------------------------------------------------------------
# search_items on a static catalog


AOI = box(15.0, 45.0, 15.2, 45.2)
START, END = date(2024, 3, 1), date(2024, 3, 31)


def _write_catalog(root: Path) -> Path:
    cat = pystac.Catalog(id="test-cat", description="static test catalog")
    s2 = pystac.Collection(
        id="sentinel-2-l2a",
        description="s2",
        extent=pystac.Extent(
            pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
            pystac.TemporalExtent([[datetime(2015, 1, 1, tzinfo=UTC), None]]),
        ),
    )
    other = pystac.Collection(
        id="landsat-c2-l2",
        description="landsat",
        extent=pystac.Extent(
            pystac.SpatialExtent([[-180.0, -90.0, 180.0, 90.0]]),
            pystac.TemporalExtent([[datetime(2013, 1, 1, tzinfo=UTC), None]]),
        ),
    )
    inside = _geometry(lon=15.1, lat=45.1)
    outside = _geometry(lon=20.0, lat=45.1)
    specs = [
        (s2, "in-range", datetime(2024, 3, 10, 10, 0, tzinfo=UTC), inside),
        (s2, "at-start", datetime(2024, 3, 1, 0, 0, tzinfo=UTC), inside),
        (s2, "last-microsecond", datetime(2024, 3, 31, 23, 59, 59, 999999, tzinfo=UTC), inside),
        (s2, "before-start", datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC), inside),
        (s2, "after-end", datetime(2024, 4, 1, 0, 0, tzinfo=UTC), inside),
        (s2, "outside-aoi", datetime(2024, 3, 10, 10, 0, tzinfo=UTC), outside),
        (other, "other-collection", datetime(2024, 3, 10, 10, 0, tzinfo=UTC), inside),
    ]
    for col, item_id, dt, geom in specs:
        col.add_item(
            pystac.Item(
                id=item_id,
                geometry=geom,
                bbox=list(_bounds(geom)),
                datetime=dt,
                properties={"platform": "sentinel-2a"},
            )
        )
    cat.add_child(s2)
    cat.add_child(other)
    cat.normalize_hrefs(str(root))
    cat.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    return root / "catalog.json"


@pytest.fixture()
def static_catalog(tmp_path: Path) -> Path:
    return _write_catalog(tmp_path / "stac")


def test_search_static_returns_expected_ids(static_catalog: Path) -> None:
    items = search_items(str(static_catalog), AOI, START, END, ["sentinel-2-l2a"])
    assert [i.id for i in items] == ["at-start", "in-range", "last-microsecond"]


def test_search_static_other_collection(static_catalog: Path) -> None:
    items = search_items(str(static_catalog), AOI, START, END, ["landsat-c2-l2"])
    assert [i.id for i in items] == ["other-collection"]
    both = search_items(str(static_catalog), AOI, START, END, ["sentinel-2-l2a", "landsat-c2-l2"])
    assert [i.id for i in both] == ["at-start", "in-range", "other-collection", "last-microsecond"]


def test_search_static_end_date_inclusive_single_day(static_catalog: Path) -> None:
    items = search_items(str(static_catalog), AOI, END, END, ["sentinel-2-l2a"])
    assert [i.id for i in items] == ["last-microsecond"]
    items = search_items(str(static_catalog), AOI, date(2024, 2, 29), date(2024, 2, 29), ["sentinel-2-l2a"])
    assert [i.id for i in items] == ["before-start"]


def test_search_static_max_items(static_catalog: Path) -> None:
    items = search_items(str(static_catalog), AOI, START, END, ["sentinel-2-l2a"], max_items=2)
    assert [i.id for i in items] == ["at-start", "in-range"]


def test_search_static_collection_json_root(static_catalog: Path) -> None:
    path = static_catalog.parent / "sentinel-2-l2a" / "collection.json"
    items = search_items(str(path), AOI, START, END, ["sentinel-2-l2a"])
    assert [i.id for i in items] == ["at-start", "in-range", "last-microsecond"]


def test_search_reversed_dates(static_catalog: Path) -> None:
    with pytest.raises(InputError) as exc:
        search_items(str(static_catalog), AOI, END, START, ["sentinel-2-l2a"])
    assert exc.value.parameter == "end_date"


def test_search_missing_catalog(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        search_items(str(tmp_path / "nope" / "catalog.json"), AOI, START, END, ["sentinel-2-l2a"])
    assert exc.value.parameter == "catalog"
    assert "not found" in str(exc.value)


def test_search_non_stac_json(tmp_path: Path) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"hello": "world"}))
    with pytest.raises(InputError) as exc:
        search_items(str(path), AOI, START, END, ["sentinel-2-l2a"])
    assert exc.value.parameter == "catalog"
    assert str(path) in str(exc.value)


def test_search_item_json_is_not_a_catalog(tmp_path: Path) -> None:
    item = s2_item()
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item.to_dict(include_self_link=False)))
    with pytest.raises(InputError) as exc:
        search_items(str(path), AOI, START, END, ["sentinel-2-l2a"])
    assert exc.value.parameter == "catalog"
    assert "Item" in str(exc.value)


def test_landsat_surface_temperature_band_is_optional_with_its_own_scaling() -> None:
    """C2 ST: `lwir11` (ST_B10) on Landsat 8/9, `lwir` (ST_B6) on 5/7; kelvin = DN x 0.00341802 + 149;
    scale/offset from raster:bands when declared; absent on L2SR scenes (no error, no asset)."""
    L5 = CONSTELLATIONS["landsat-5"]
    assert L8.thermal_band == "lwir11" and L5.thermal_band == "lwir"
    assert L8.bands[-2:] == ("lwir11", "qa_pixel")
    assert L8.required_bands == (*L8.reflectance_bands, "qa_pixel")
    assert "lwir11" not in L8.reflectance_bands and CONSTELLATIONS["sentinel-2"].optional_bands == ()

    def with_st(item: pystac.Item, key: str, raster: list[dict[str, Any]] | None) -> pystac.Item:
        extra: dict[str, Any] = {
            "proj:shape": [7801, 7681],
            "proj:transform": [30.0, 0.0, 399885.0, 0.0, -30.0, 5100015.0],
        }
        if raster is not None:
            extra["raster:bands"] = raster
        item.add_asset(key, pystac.Asset(href=f"{BASE}/{key}.tif", extra_fields=extra))
        return item

    declared = [{"nodata": 0, "scale": 0.004, "offset": 150.0, "unit": "kelvin"}]
    a = scene_from_item(with_st(ls_item(), "lwir11", declared), L8).assets["lwir11"]
    assert (a.scale, a.offset, a.nodata) == (0.004, 150.0, 0.0)
    b = scene_from_item(with_st(ls_item(), "ST_B10", None), L8).assets["lwir11"]  # USGS key, defaults
    assert (b.scale, b.offset) == (0.00341802, 149.0)
    tm = ls_item("LT05_L2SP_190028_20000310_20200901_02_T1", platform="landsat-5")
    c = scene_from_item(with_st(tm, "lwir", None), L5).assets["lwir"]
    assert (c.scale, c.offset) == (0.00341802, 149.0)
    assert "lwir11" not in scene_from_item(ls_item(), L8).assets  # L2SR: no surface temperature


def test_reuse_searches_serves_identical_searches_once(
    static_catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oxeo_flows import catalog as cat

    calls: list[tuple[date, date]] = []
    real = cat._search

    def counted(catalog: str, geometry: Any, start: date, end: date, *rest: Any) -> list[pystac.Item]:
        calls.append((start, end))
        return real(catalog, geometry, start, end, *rest)

    monkeypatch.setattr(cat, "_search", counted)
    args = (str(static_catalog), AOI, START, END, ["sentinel-2-l2a"])
    plain = [i.id for i in search_items(*args)]
    with cat.reuse_searches():
        first = search_items(*args)
        first.clear()  # callers get their own list
        assert [i.id for i in search_items(*args)] == plain
        with cat.reuse_searches():  # nested: the same memo
            assert [i.id for i in search_items(*args)] == plain
        search_items(str(static_catalog), AOI, START, START, ["sentinel-2-l2a"])  # other dates: searched
        search_items(str(static_catalog), AOI, START, END, ["landsat-c2-l2"])  # other collection: searched
    assert len(calls) == 4  # plain, first, the one-day search, the other collection
    assert [i.id for i in search_items(*args)] == plain and len(calls) == 5  # nothing kept after the block
