"""Tests for oxeo_flows.tiling (fixed UTM grid tiles)."""

from __future__ import annotations

import math

import pytest
import shapely
from affine import Affine
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from shapely.geometry import LineString, MultiPolygon, Polygon, box

from oxeo_flows.errors import InputError
from oxeo_flows.tiling import (
    BANDS,
    Tile,
    tile_geometry_utm,
    tiles_for_geometry,
    zone_of,
    zone_parts,
)

SIZES = (10000, 9600, 15360, 5000)


def _to_utm(zone: int, south: bool, lon: float, lat: float) -> tuple[float, float]:
    epsg = (32700 if south else 32600) + zone
    return Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)


def _to_lonlat(tile: Tile, x: float, y: float) -> tuple[float, float]:
    return Transformer.from_crs(tile.epsg, 4326, always_xy=True).transform(x, y)


@st.composite
def tiles(draw: st.DrawFn) -> Tile:
    zone = draw(st.integers(1, 60))
    south = draw(st.booleans())
    size = draw(st.sampled_from(SIZES))
    west = -180.0 + 6.0 * (zone - 1)
    lon = draw(st.floats(west, west + 6.0, exclude_max=True))
    lat = draw(st.floats(-80.0, 0.0, exclude_max=True) if south else st.floats(0.0, 84.0))
    x, y = _to_utm(zone, south, lon, lat)
    assume(y < 10_000_000)  # latitudes a hair below 0 round to the southern false northing
    tile = Tile(zone, south, size, math.floor(x / size), math.floor(y / size))
    min_x, min_y, max_x, max_y = tile.bounds
    _, centre_lat = _to_lonlat(tile, (min_x + max_x) / 2, (min_y + max_y) / 2)
    assume(-80.0 <= centre_lat <= 84.0)
    return tile


@settings(max_examples=300, deadline=None)
@given(tiles(), tiles())
def test_id_round_trip_and_uniqueness(a: Tile, b: Tile) -> None:
    assert Tile.from_id(a.id) == a
    assert Tile.from_id(b.id) == b
    assert (a == b) == (a.id == b.id)
    # Neighbours, the other hemisphere's grid and other sizes never share an id.
    family = {
        Tile(a.zone, south, size, a.ix + dx, a.iy + dy)
        for south in (False, True)
        for size in (a.size_m, a.size_m * 2)
        for dx in (-1, 0, 1)
        for dy in (-1, 0, 1)
        if 0 <= (a.iy + dy) * size < 10_000_000 and 0 <= (a.ix + dx) * size < 1_000_000
    }
    ids = {t.id for t in family}
    assert len(ids) == len(family)
    assert all(Tile.from_id(t.id) == t for t in family)


def test_worked_example() -> None:
    tile = Tile.from_id("36_M_10000_35_931")
    assert tile == Tile(36, True, 10000, 35, 931)
    assert tile.zone == 36 and tile.south is True
    assert tile.bounds == (350000, 9310000, 360000, 9320000)
    assert tile.epsg == 32736
    assert tile.crs == "EPSG:32736"
    assert tile.band == "M"
    assert tile.id == "36_M_10000_35_931"
    assert tile_geometry_utm(tile).equals(box(350000, 9310000, 360000, 9320000))


def test_northern_example() -> None:
    tile = Tile(32, False, 10000, 50, 497)
    assert tile.epsg == 32632 and tile.crs == "EPSG:32632"
    assert tile.id == "32_T_10000_50_497"


@pytest.mark.parametrize(
    ("resolution", "anchor", "shape", "left_edge", "top_edge"),
    [
        (10, 0.0, (1000, 1000), 350000, 9320000),
        (10.0, 0.0, (1000, 1000), 350000, 9320000),
        (20, 0.0, (500, 500), 350000, 9320000),
        # 30 m: lattice of multiples of 30 covering the tile -> 334 px, 20 m overhang on the left/top
        (30, 0.0, (334, 334), 349980, 9320010),
        # Landsat lattice (edges at 15 mod 30): rows 9309975..9320025 = 335, cols 349995..360015 = 334
        (30, 15.0, (335, 334), 349995, 9320025),
    ],
)
def test_geobox(
    resolution: float, anchor: float, shape: tuple[int, int], left_edge: int, top_edge: int
) -> None:
    tile = Tile.from_id("36_M_10000_35_931")
    gb = tile.geobox(resolution, anchor)
    assert gb.shape == shape
    ny, nx = shape
    assert gb.affine == Affine(resolution, 0, left_edge, 0, -resolution, top_edge)
    assert gb.crs is not None and gb.crs.epsg == 32736
    min_x, min_y, max_x, max_y = tile.bounds
    # covers the whole tile, pixel edges on the lattice
    assert gb.affine.c <= min_x and gb.affine.c + nx * resolution >= max_x
    assert gb.affine.f >= max_y and gb.affine.f - ny * resolution <= min_y
    assert (gb.affine.c - anchor) % resolution == 0 and (gb.affine.f - anchor) % resolution == 0
    if resolution == 10:
        assert gb.affine @ (0.5, 0.5) == (min_x + 5, max_y - 5)


def test_neighbouring_tiles_share_the_lattice() -> None:
    a = Tile(33, False, 10000, 49, 498)
    b = Tile(33, False, 10000, 50, 498)
    for res, anchor in [(10, 0.0), (30, 0.0), (30, 15.0)]:
        ga, gb = a.geobox(res, anchor), b.geobox(res, anchor)
        shift = (gb.affine.c - ga.affine.c) / res
        assert shift == int(shift)


@pytest.mark.parametrize("bad", [0, -10, math.nan, math.inf])
def test_geobox_rejects_bad_resolution(bad: float) -> None:
    with pytest.raises(InputError) as exc:
        Tile(36, True, 10000, 35, 931).geobox(bad)
    assert exc.value.parameter == "resolution_m"


def test_footprint_lonlat() -> None:
    tile = Tile.from_id("36_M_10000_35_931")
    fp = tile.footprint_lonlat()
    assert isinstance(fp, Polygon) and fp.is_valid
    assert len(fp.exterior.coords) == 4 * 20 + 1
    min_x, min_y, max_x, max_y = tile.bounds
    centre = _to_lonlat(tile, (min_x + max_x) / 2, (min_y + max_y) / 2)
    assert fp.contains(shapely.Point(centre))
    lon0, lat0 = _to_lonlat(tile, min_x, min_y)
    assert fp.exterior.coords[0] == pytest.approx((lon0, lat0))
    assert 31.5 < fp.centroid.x < 32 and -6.5 < fp.centroid.y < -6


@pytest.mark.parametrize("band_lat", [8.0, 16.0, -24.0])
def test_band_boundary_tile_has_one_id(band_lat: float) -> None:
    south = band_lat < 0
    x, y = _to_utm(32, south, 9.0, band_lat)
    tile = Tile(32, south, 10000, math.floor(x / 10000), math.floor(y / 10000))
    fp = tile.footprint_lonlat()
    assert fp.bounds[1] < band_lat < fp.bounds[3]  # the tile straddles the band boundary
    min_x, min_y, max_x, max_y = tile.bounds
    _, centre_lat = _to_lonlat(tile, (min_x + max_x) / 2, (min_y + max_y) / 2)
    expected = BANDS[math.floor((centre_lat + 80) / 8)]
    assert tile.band == expected
    assert Tile.from_id(tile.id) == tile
    below, above = BANDS[BANDS.index(expected) - 1], BANDS[BANDS.index(expected) + 1]
    other = below if centre_lat > band_lat else above
    assert {below, above} - {other}  # the other letter is the neighbour across the boundary
    with pytest.raises(InputError, match="does not match the tile centre"):
        Tile.from_id(f"32_{other}_10000_{tile.ix}_{tile.iy}")


def test_equator_straddling_southern_tile_keeps_southern_letter() -> None:
    # 10,000,000 is not a multiple of 15360: the top southern row straddles the equator.
    tile = Tile(36, True, 15360, 10, 651)
    assert tile.bounds[1] < 10_000_000 < tile.bounds[3]
    assert tile.band == "M"
    assert Tile.from_id(tile.id) == tile
    with pytest.raises(InputError):
        Tile.from_id("36_N_15360_10_651")  # N means north: a different grid square


def test_zone_of() -> None:
    assert zone_of(-180) == 1
    assert zone_of(-174.000001) == 1
    assert zone_of(-174) == 2
    assert zone_of(0) == 31
    assert zone_of(11.999) == 32
    assert zone_of(12) == 33
    assert zone_of(179.9) == 60
    assert zone_of(180) == 60
    assert zone_of(10.0) == 32  # no Norway exception
    with pytest.raises(InputError):
        zone_of(180.5)


def test_zone_crossing() -> None:
    poly = box(11.95, 44.95, 12.05, 45.05)
    parts = zone_parts(poly)
    assert [(z, s) for z, s, _ in parts] == [(32, False), (33, False)]
    assert math.isclose(sum(p.area for _, _, p in parts), poly.area, rel_tol=1e-9)
    result = tiles_for_geometry(poly)
    zones = {t.zone for t in result}
    assert zones == {32, 33}
    assert all(not t.south and t.epsg in (32632, 32633) for t in result)
    assert [t.id for t in result] == sorted({t.id for t in result})
    # Every tile really covers part of the AOI in its own zone.
    for tile in result:
        assert tile.footprint_lonlat().intersects(poly)


def test_zone_parts_multipolygon_and_slivers() -> None:
    mp = MultiPolygon([box(0.5, 10, 1, 11), box(6.5, -1, 7.5, 1)])
    parts = zone_parts(mp)
    assert [(z, s) for z, s, _ in parts] == [(31, False), (32, False), (32, True)]
    assert math.isclose(sum(p.area for _, _, p in parts), mp.area, rel_tol=1e-9)
    # Touching a zone boundary only along an edge gives no zero-area part in the next zone.
    assert [(z, s) for z, s, _ in zone_parts(box(11, 1, 12, 2))] == [(32, False)]
    assert zone_parts(Polygon()) == []


def test_equator_crossing() -> None:
    result = tiles_for_geometry(box(30.0, -0.1, 30.1, 0.1))
    epsgs = {t.epsg for t in result}
    assert epsgs == {32636, 32736}
    north = [t for t in result if not t.south]
    south = [t for t in result if t.south]
    assert min(t.iy for t in north) == 0
    assert all(t.bounds[1] < 10_000_000 for t in south)
    assert all(t.id.split("_")[1] == "M" for t in south)
    assert all(t.id.split("_")[1] == "N" for t in north)


def test_thin_diagonal_gets_fewer_tiles_than_bbox() -> None:
    thin = LineString([(30.0, -5.0), (30.5, -4.5)]).buffer(0.001)
    diagonal = tiles_for_geometry(thin)
    bbox = tiles_for_geometry(box(*thin.bounds))
    assert len(diagonal) < len(bbox) / 2
    assert set(diagonal) <= set(bbox)
    for tile in diagonal:
        assert tile.footprint_lonlat().intersects(thin)


def test_small_polygon_single_tile_and_sizes() -> None:
    tile = Tile.from_id("36_M_10000_35_931")
    min_x, min_y, _, _ = tile.bounds
    lon, lat = _to_lonlat(tile, min_x + 5000, min_y + 5000)
    tiny = box(lon - 0.001, lat - 0.001, lon + 0.001, lat + 0.001)
    assert tiles_for_geometry(tiny) == [tile]
    assert all(t.size_m == 5000 for t in tiles_for_geometry(tiny, 5000))
    with pytest.raises(InputError):
        tiles_for_geometry(tiny, 0)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "36_M_10000_35",
        "36_M_10000_35_931_1",
        "36_M_10000_-1_931",
        "36_M_10000_+35_931",
        "36_M_10000_35_-931",
        "61_M_10000_35_931",
        "0_M_10000_35_931",
        "36_I_10000_35_931",
        "36_O_10000_35_931",
        "36_m_10000_35_931",
        "36_L_10000_35_931",  # wrong letter (valid letter, not the canonical one)
        "36_N_10000_35_931",  # wrong hemisphere
        "36_M_0_35_931",
        "36_M_10000_035_931",
        "036_M_10000_35_931",
        "36_M_010000_35_931",
        "../36_M",
        "36_M_10000_35_931 ",
        " 36_M_10000_35_931",
        "36_M_10000_35_931\n",
        "36-M-10000-35-931",
        "36_M_10000_35_9" + "1" * 60,
        "36_M_10000_3500_931",  # outside the zone
        "36_M_10000_35_٩٣١",  # non-ASCII digits
    ],
)
def test_from_id_rejects(bad: str) -> None:
    with pytest.raises(InputError) as exc:
        Tile.from_id(bad)
    assert exc.value.parameter == "tile_id"
    assert "expected '{zone}_{band}_{size}_{ix}_{iy}'" in str(exc.value)


def test_tile_validates_fields() -> None:
    for args in [
        (0, False, 10000, 1, 1),
        (61, False, 10000, 1, 1),
        (1, False, 0, 1, 1),
        (1, False, 10000, -1, 1),
        (1, False, 10000, 1, -1),
    ]:
        with pytest.raises(InputError):
            Tile(*args)
