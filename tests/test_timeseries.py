"""Mask cleaning and per-AOI measurement across tiles and UTM zones, with exact pixel counts."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from rasterio.features import geometry_mask
from shapely.geometry import box

from oxeo_flows.aoi import AOI
from oxeo_flows.archive import MASK_CLOUD, MASK_DRY, MASK_NODATA, MASK_WATER, Archive, SliceMeta
from oxeo_flows.constellations import CONSTELLATIONS
from oxeo_flows.tiling import Tile, project_lonlat, tiles_for_geometry, zone_parts
from oxeo_flows.timeseries import aoi_observations, clean_water
from tests.helpers import utm_to_lonlat

S2 = CONSTELLATIONS["sentinel-2"]
KEY = "mndwi-v1"


def test_small_objects_removed_by_area_not_pixels() -> None:
    m = np.zeros((20, 20), np.uint8)
    m[2:4, 2:4] = MASK_WATER  # 4 px
    m[10:16, 10:16] = MASK_WATER  # 36 px
    aoi = np.ones_like(m, dtype=bool)
    at10 = clean_water(m, aoi, pixel_area_m2=100.0, min_object_m2=500.0, min_hole_m2=0.0)
    assert at10.sum() == 36 and not at10[2:4, 2:4].any()
    at30 = clean_water(m, aoi, pixel_area_m2=900.0, min_object_m2=500.0, min_hole_m2=0.0)
    assert at30.sum() == 40  # 4 px at 30 m = 3600 m² >= 500 m²: kept


def test_enclosed_dry_holes_filled_but_not_next_to_clouds() -> None:
    m = np.full((20, 20), MASK_DRY, np.uint8)
    m[2:18, 2:18] = MASK_WATER
    m[5, 5] = MASK_DRY  # 1 px hole enclosed by water -> filled
    m[10:12, 10:12] = MASK_DRY  # 4 px hole, above threshold -> kept dry
    m[14, 14] = MASK_DRY  # hole touching a cloud pixel -> not filled
    m[14, 15] = MASK_CLOUD
    aoi = np.ones_like(m, dtype=bool)
    w = clean_water(m, aoi, pixel_area_m2=100.0, min_object_m2=0.0, min_hole_m2=300.0)
    assert w[5, 5] and not w[10:12, 10:12].any() and not w[14, 14] and not w[14, 15]
    assert w.sum() == 16 * 16 - 4 - 2


def test_only_water_connected_to_the_aoi_is_kept() -> None:
    m = np.zeros((20, 30), np.uint8)
    m[5:15, 2:12] = MASK_WATER  # lake, partly inside the AOI
    m[5:15, 20:28] = MASK_WATER  # another water body outside
    aoi = np.zeros(m.shape, dtype=bool)
    aoi[:, 8:16] = True
    w = clean_water(m, aoi, 100.0, 0.0, 0.0)
    assert w[5:15, 2:12].all() and not w[:, 20:].any()


def test_cloud_and_nodata_never_count_as_water() -> None:
    m = np.array([[MASK_WATER, MASK_CLOUD, MASK_NODATA, MASK_DRY]] * 4, np.uint8)
    w = clean_water(m, np.ones(m.shape, bool), 100.0, 0.0, 0.0)
    assert w[:, 0].all() and not w[:, 1:].any()


def _write_tile(storage: str, tile: Tile, masks: dict[date, np.ndarray]) -> None:
    arc = Archive(storage, tile, S2)
    data = np.ones((len(S2.bands), *arc.geobox.shape), np.uint16)
    for d, mask in masks.items():
        when = datetime(d.year, d.month, d.day, 10, tzinfo=UTC)
        slot = arc.write_slice(data, SliceMeta(when, d, ("i",), None, (1.0,) * 8, (0.0,) * 8, 1.0))
        assert slot is not None
        arc.write_mask(KEY, slot, mask)


def _aoi_pixels(aoi_geom_lonlat, tile: Tile, epsg: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    gb = tile.geobox(10)
    return ~geometry_mask([project_lonlat(aoi_geom_lonlat, epsg)], out_shape=gb.shape, transform=gb.affine)


def test_aoi_across_two_tiles_with_a_missing_date(tmp_path: Path) -> None:
    a, b = Tile(33, False, 10_000, 49, 499), Tile(33, False, 10_000, 50, 499)
    geom = utm_to_lonlat(box(499_000, 4_995_000, 501_000, 4_996_000), 32633)
    assert [t.id for t in tiles_for_geometry(geom)] == [a.id, b.id]
    wa = np.full((1000, 1000), MASK_WATER, np.uint8)
    wb = np.full((1000, 1000), MASK_DRY, np.uint8)
    wb[:, :50] = MASK_WATER  # 500 m of water east of the tile boundary, connected to a's water
    _write_tile(str(tmp_path), a, {date(2024, 1, 1): wa, date(2024, 1, 2): wa})
    _write_tile(str(tmp_path), b, {date(2024, 1, 1): wb})
    aoi = AOI("x", "x", geom)
    rows = aoi_observations(aoi, S2, KEY, str(tmp_path), min_object_m2=0, min_hole_m2=0)
    in_a = int(_aoi_pixels(geom, a, 32633).sum())
    in_b_mask = _aoi_pixels(geom, b, 32633)
    in_b = int(in_b_mask.sum())
    water_b = int((in_b_mask & (wb == MASK_WATER)).sum())
    assert [r.solar_day for r in rows] == [date(2024, 1, 1), date(2024, 1, 2)]
    r1, r2 = rows
    assert r1.total_px == in_a + in_b == 200 * 100
    assert r1.water_px == in_a + water_b and r1.water_area_m2 == (in_a + water_b) * 100.0
    assert r1.valid_fraction == 1.0 and r1.usable and r1.tiles == [a.id, b.id]
    # day 2: tile b has no slice -> its AOI pixels are no data, the observation is not usable
    assert r2.water_px == in_a and r2.nodata_px == in_b and r2.valid_px == in_a
    assert r2.valid_fraction == pytest.approx(0.5) and not r2.usable
    assert r1.acquired_at == datetime(2024, 1, 1, 10, tzinfo=UTC)


def test_cloudy_observation_is_recorded_but_not_usable(tmp_path: Path) -> None:
    a = Tile(33, False, 10_000, 49, 499)
    geom = utm_to_lonlat(box(495_000, 4_995_000, 496_000, 4_996_000), 32633)
    m = np.full((1000, 1000), MASK_WATER, np.uint8)
    m[400:, :] = MASK_CLOUD
    _write_tile(str(tmp_path), a, {date(2024, 1, 1): m})
    (r,) = aoi_observations(AOI("x", "x", geom), S2, KEY, str(tmp_path), max_invalid_fraction=0.1)
    aoi_px = _aoi_pixels(geom, a, 32633)
    assert r.cloud_px == int((aoi_px & (m == MASK_CLOUD)).sum()) > 0
    assert r.cloud_fraction == pytest.approx(r.cloud_px / r.total_px)
    assert not r.usable


def test_zone_crossing_aoi_is_measured_per_zone_and_summed(tmp_path: Path) -> None:
    # A 2 km x 1 km box straddling 12E at 45N: parts in zones 32 and 33, each on its own grid.
    from shapely.geometry import box as lbox

    geom = lbox(11.99, 45.0, 12.01, 45.01)
    parts = zone_parts(geom)
    assert [(z, s) for z, s, _ in parts] == [(32, False), (33, False)]
    expected_total = 0
    for zone, _, part in parts:
        epsg = 32600 + zone
        tiles = [t for t in tiles_for_geometry(part) if t.zone == zone]
        masks = {}
        for t in tiles:
            masks[t] = np.full(t.geobox(10).shape, MASK_WATER, np.uint8)
            expected_total += int(_aoi_pixels(part, t, epsg).sum())
            _write_tile(str(tmp_path), t, {date(2024, 1, 1): masks[t]})
    (r,) = aoi_observations(AOI("x", "x", geom), S2, KEY, str(tmp_path), min_object_m2=0, min_hole_m2=0)
    assert r.total_px == expected_total and r.water_px == expected_total
    # the area matches the polygon's true area to within the pixelisation of its outline
    from pyproj import Geod

    true_area = abs(Geod(ellps="WGS84").geometry_area_perimeter(geom)[0])
    assert r.water_area_m2 == pytest.approx(true_area, rel=0.02)


def test_no_masks_no_rows(tmp_path: Path) -> None:
    geom = utm_to_lonlat(box(495_000, 4_995_000, 496_000, 4_996_000), 32633)
    assert aoi_observations(AOI("x", "x", geom), S2, KEY, str(tmp_path)) == []
