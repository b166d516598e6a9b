"""Tests for oxeo_flows.aoi (AOI parsing, validation and ids)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import MultiPolygon, Polygon, box, shape

from oxeo_flows.aoi import AOI, AOI_ID_PATTERN, geometry_hash, parse_aoi, validate_aoi_id
from oxeo_flows.errors import InputError

SQUARE = [[30.0, -1.0], [30.1, -1.0], [30.1, -0.9], [30.0, -0.9], [30.0, -1.0]]
OTHER = [[31.0, -1.0], [31.2, -1.0], [31.2, -0.8], [31.0, -0.8], [31.0, -1.0]]
BOWTIE = [[30.0, 0.0], [30.1, 0.1], [30.1, 0.0], [30.0, 0.1], [30.0, 0.0]]


def polygon(ring: list[list[Any]] = SQUARE) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [ring]}


def feature(geometry: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry or polygon(), "properties": {}, **extra}


def collection(*features: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "FeatureCollection", "features": list(features), **extra}


TWO = collection(
    feature(polygon(SQUARE), id="lake-a", properties={"name": "Lake A", "kind": "lake"}),
    feature(polygon(OTHER), properties={"id": "lake-b"}),
)


class FakeDb:
    def __init__(self, *ids: str) -> None:
        self.aois = {i: AOI(i, f"name {i}", MultiPolygon([box(30, -1, 30.1, -0.9)])) for i in ids}
        self.calls: list[list[str]] = []

    def __call__(self, ids: list[str]) -> list[AOI]:
        self.calls.append(ids)
        return [self.aois[i] for i in ids if i in self.aois]


# -- accepted forms --------------------------------------------------------------------------------


def _check_two(aois: list[AOI]) -> None:
    assert [a.id for a in aois] == ["lake-a", "lake-b"]
    assert [a.name for a in aois] == ["Lake A", "lake-b"]
    assert aois[0].properties == {"name": "Lake A", "kind": "lake"}
    for aoi in aois:
        assert isinstance(aoi.geometry, MultiPolygon) and aoi.geometry.is_valid
    assert aois[0].geometry.equals(box(30.0, -1.0, 30.1, -0.9))


def test_dict_feature_collection() -> None:
    _check_two(parse_aoi(TWO))


def test_geojson_string() -> None:
    _check_two(parse_aoi("  \n" + json.dumps(TWO)))


def test_file_path_str_and_path(tmp_path: Path) -> None:
    path = tmp_path / "aois.geojson"
    path.write_text(json.dumps(TWO))
    _check_two(parse_aoi(str(path)))
    _check_two(parse_aoi(path))
    _check_two(parse_aoi(path.as_uri()))  # fsspec URL (file://)
    plain = tmp_path / "aois"  # any existing file, whatever its extension
    plain.write_text(json.dumps(TWO))
    _check_two(parse_aoi(str(plain)))


def test_feature() -> None:
    [aoi] = parse_aoi(feature(id="f1", properties={"name": "Name 1"}))
    assert (aoi.id, aoi.name) == ("f1", "Name 1")


def test_bare_polygon() -> None:
    [aoi] = parse_aoi(polygon())
    assert re.fullmatch(r"aoi-[0-9a-f]{16}", aoi.id)
    assert aoi.id == "aoi-" + geometry_hash(box(30.0, -1.0, 30.1, -0.9))[:16]
    assert aoi.name == aoi.id and aoi.properties == {}
    assert isinstance(aoi.geometry, MultiPolygon)


def test_multipolygon_and_hole() -> None:
    hole = [[30.02, -0.98], [30.02, -0.92], [30.08, -0.92], [30.08, -0.98], [30.02, -0.98]]
    [aoi] = parse_aoi({"type": "MultiPolygon", "coordinates": [[SQUARE, hole], [OTHER]]})
    assert len(aoi.geometry.geoms) == 2
    assert aoi.geometry.area == pytest.approx(0.01 - 0.06 * 0.06 + 0.04)
    for poly in aoi.geometry.geoms:  # normalised orientation: exterior CCW, holes CW
        assert poly.exterior.is_ccw
        assert all(not ring.is_ccw for ring in poly.interiors)


def test_altitude_and_wgs84_crs_member_accepted() -> None:
    ring3d = [[x, y, 1200.0] for x, y in SQUARE]
    crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}
    [aoi] = parse_aoi(collection(feature(polygon(ring3d), id="z"), crs=crs))
    assert not aoi.geometry.has_z


def test_ids_via_lookup() -> None:
    db = FakeDb("a", "b", "7")
    assert [a.id for a in parse_aoi("a,b", lookup=db)] == ["a", "b"]
    assert [a.id for a in parse_aoi(" b , a ", lookup=db)] == ["b", "a"]
    assert [a.id for a in parse_aoi("a", lookup=db)] == ["a"]
    assert [a.id for a in parse_aoi(["a", "b"], lookup=db)] == ["a", "b"]
    assert [a.id for a in parse_aoi(("b",), lookup=db)] == ["b"]
    assert [a.id for a in parse_aoi(7, lookup=db)] == ["7"]
    assert [a.id for a in parse_aoi(["a", 7], lookup=db)] == ["a", "7"]
    assert db.calls[0] == ["a", "b"] and db.calls[5] == ["7"]


# -- ids and hashing -------------------------------------------------------------------------------


def test_id_precedence() -> None:
    aois = parse_aoi(
        collection(
            feature(polygon(SQUARE), id="feat", properties={"id": "prop"}),
            feature(polygon(OTHER), id=42),
        )
    )
    assert [a.id for a in aois] == ["feat", "42"]
    [by_prop] = parse_aoi(feature(properties={"id": 5}))
    assert by_prop.id == "5"


def test_hash_id_is_deterministic() -> None:
    assert parse_aoi(polygon())[0].id == parse_aoi(polygon())[0].id
    assert parse_aoi(feature())[0].id == parse_aoi(polygon())[0].id


def test_hash_stable_under_rotation_orientation_and_type() -> None:
    ring = SQUARE[:-1]
    rotated = ring[2:] + ring[:2]
    variants = [
        Polygon(ring),
        Polygon(rotated),
        Polygon(ring[::-1]),
        Polygon(rotated[::-1]),
        MultiPolygon([Polygon(rotated[::-1])]),
        Polygon([(x + 1e-9, y - 1e-9) for x, y in ring]),  # below the 1e-7 degree grid
    ]
    hashes = {geometry_hash(v) for v in variants}
    assert len(hashes) == 1
    assert re.fullmatch(r"[0-9a-f]{64}", hashes.pop())
    ids = {parse_aoi(polygon([*r, r[0]]))[0].id for r in (ring, rotated, ring[::-1])}
    assert len(ids) == 1


def test_hash_stable_under_polygon_order() -> None:
    a, b = Polygon(SQUARE), Polygon(OTHER)
    assert geometry_hash(MultiPolygon([a, b])) == geometry_hash(MultiPolygon([b, a]))


def test_different_polygons_differ() -> None:
    assert geometry_hash(Polygon(SQUARE)) != geometry_hash(Polygon(OTHER))
    assert geometry_hash(box(30, -1, 30.1, -0.9)) != geometry_hash(box(30, -1, 30.1, -0.8999))
    assert parse_aoi(polygon(SQUARE))[0].id != parse_aoi(polygon(OTHER))[0].id


def test_aoi_dataclass() -> None:
    aoi = AOI("x", "X", Polygon(SQUARE[::-1]), {"a": 1})  # a Polygon is wrapped
    assert isinstance(aoi.geometry, MultiPolygon)
    assert aoi.geometry.geoms[0].exterior.is_ccw
    assert aoi.geometry_hash == geometry_hash(Polygon(SQUARE))
    assert aoi == AOI("x", "X", MultiPolygon([Polygon(SQUARE)]), {"other": 2})
    with pytest.raises(InputError):
        AOI("../x", "X", MultiPolygon([Polygon(SQUARE)]))


@pytest.mark.parametrize("good", ["a", "A1", "lake_victoria-2024.v1", "0", "x" * 128, "aoi-0123456789abcdef"])
def test_valid_ids(good: str) -> None:
    assert validate_aoi_id(good) == good
    assert re.fullmatch(AOI_ID_PATTERN, good)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../etc",
        "a/b",
        "a\\b",
        "a..b",
        ".hidden",
        "-x",
        "a b",
        "a;DROP TABLE",
        "a'b",
        'a"b',
        "x" * 129,
        "a\n",
        "é",
        "a%2Fb",
        "a*",
    ],
)
def test_invalid_ids(bad: str) -> None:
    with pytest.raises(InputError) as exc:
        validate_aoi_id(bad)
    assert exc.value.parameter == "aoi"
    assert "invalid AOI id" in str(exc.value)


def test_repair_bowtie() -> None:
    [aoi] = parse_aoi(polygon(BOWTIE), repair=True)
    assert aoi.geometry.is_valid
    assert aoi.geometry.area > 0
    assert isinstance(aoi.geometry, MultiPolygon) and len(aoi.geometry.geoms) == 2


def test_names() -> None:
    [aoi] = parse_aoi(feature(id="x", properties={"name": "Lac Léman / Genève"}))
    assert aoi.name == "Lac Léman / Genève"
    for bad in ["a\nb", "x" * 201, "tab\there"]:
        with pytest.raises(InputError) as exc:
            parse_aoi(feature(id="x", properties={"name": bad}))
        assert exc.value.parameter == "aoi"
    with pytest.raises(InputError, match="name must be a string"):
        parse_aoi(feature(id="x", properties={"name": 3}))


# -- rejections ------------------------------------------------------------------------------------

BIG: list[list[Any]] = [
    [500000, 4990000],
    [510000, 4990000],
    [510000, 5000000],
    [500000, 5000000],
    [500000, 4990000],
]
ANTIMERIDIAN = [[170.0, 0.0], [-170.0, 0.0], [-170.0, 10.0], [170.0, 10.0], [170.0, 0.0]]
FLAT = [[30.0, 0.0], [30.1, 0.1], [30.2, 0.2], [30.0, 0.0]]
LINE_RING = [[30.0, 0.0], [30.1, 0.1], [30.2, 0.2], [30.1, 0.1], [30.0, 0.0]]
OPEN = [[30.0, -1.0], [30.1, -1.0], [30.1, -0.9], [30.0, -0.9], [30.0, -0.95]]
EPSG_32636 = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32636"}}


def _shifted(ring: list[list[float]], dx: float = 0.0, dy: float = 0.0) -> list[list[float]]:
    return [[x + dx, y + dy] for x, y in ring]


REJECTIONS: list[tuple[str, Any, dict[str, Any], str]] = [
    ("malformed json", '{"type": "Feature", ', {}, "malformed GeoJSON"),
    (
        "point",
        {"type": "Point", "coordinates": [30, 0]},
        {},
        "expected Polygon or MultiPolygon, got Point",
    ),
    (
        "linestring feature",
        feature({"type": "LineString", "coordinates": [[30, 0], [31, 1]]}),
        {},
        "expected Polygon or MultiPolygon, got LineString",
    ),
    (
        "geometry collection",
        feature({"type": "GeometryCollection", "geometries": [polygon()]}),
        {},
        "expected Polygon or MultiPolygon, got GeometryCollection",
    ),
    (
        "null geometry",
        {"type": "Feature", "geometry": None, "properties": {}},
        {},
        "geometry is null",
    ),
    ("empty coordinates", {"type": "Polygon", "coordinates": []}, {}, "empty geometry"),
    ("empty multipolygon", {"type": "MultiPolygon", "coordinates": []}, {}, "empty geometry"),
    ("lon 200", polygon(_shifted(SQUARE, dx=170)), {}, "longitude 200"),
    ("lat -85", polygon(_shifted(SQUARE, dy=-84.05)), {}, "out of range [-80, 84]"),
    ("lat 85", polygon(_shifted(SQUARE, dy=85.5)), {}, "latitude 84.5"),
    ("projected", polygon(BIG), {}, "projected coordinates?"),
    ("string coordinates", polygon([[str(x), y] for x, y in SQUARE]), {}, "finite numbers"),
    (
        "nan coordinates",
        '{"type":"Polygon","coordinates":[[[NaN,0],[1,0],[1,1],[NaN,0]]]}',
        {},
        "finite numbers",
    ),
    ("bowtie", polygon(BOWTIE), {}, "pass repair=True to fix it with make_valid"),
    ("bowtie explained", polygon(BOWTIE), {}, "Self-intersection"),
    (
        "overlapping multipolygon",
        {"type": "MultiPolygon", "coordinates": [[SQUARE], [_shifted(SQUARE, dx=0.05)]]},
        {},
        "invalid geometry",
    ),
    ("antimeridian", polygon(ANTIMERIDIAN), {}, "antimeridian"),
    ("antimeridian split hint", polygon(ANTIMERIDIAN), {}, "split it"),
    ("crs member", collection(feature(id="a"), crs=EPSG_32636), {}, "is not WGS84"),
    ("crs member on geometry", {**polygon(), "crs": EPSG_32636}, {}, "is not WGS84"),
    ("dotdot id", "../etc", {"lookup": FakeDb()}, "invalid AOI id '../etc'"),
    ("dotdot id in list", ["../etc"], {"lookup": FakeDb()}, "invalid AOI id"),
    ("dotdot feature id", feature(id="../etc"), {}, "invalid AOI id"),
    ("sql id", "a;DROP TABLE", {"lookup": FakeDb()}, "invalid AOI id 'a;DROP TABLE'"),
    ("id with space", ["lake victoria"], {"lookup": FakeDb()}, "invalid AOI id"),
    ("empty comma segment", "a,,b", {"lookup": FakeDb("a", "b")}, "invalid AOI id ''"),
    ("empty feature collection", collection(), {}, "empty FeatureCollection"),
    ("empty string", "   ", {}, "empty AOI input"),
    ("empty list", [], {"lookup": FakeDb()}, "empty AOI input"),
    ("missing file", "nope.geojson", {}, "file not found: nope.geojson"),
    ("missing url", "file:///nonexistent/dir/aoi", {}, "file not found"),
    (
        "duplicate feature ids",
        collection(feature(id="a"), feature(polygon(OTHER), id="a")),
        {},
        "duplicate AOI id(s): a",
    ),
    ("duplicate hashed ids", collection(feature(), feature()), {}, "duplicate AOI id"),
    ("duplicate lookup ids", "a,a", {"lookup": FakeDb("a")}, "duplicate AOI id(s): a"),
    ("lookup returns fewer", "a,x,y", {"lookup": FakeDb("a")}, "unknown AOI id(s): x, y"),
    ("ids without lookup", "a,b", {}, "AOI ids need a database"),
    ("int without lookup", 3, {}, "AOI ids need a database"),
    ("ring of 3 points", polygon(SQUARE[:2] + SQUARE[-1:]), {}, "at least 4 positions"),
    (
        "hole of 3 points",
        {"type": "Polygon", "coordinates": [SQUARE, SQUARE[:3]]},
        {},
        "hole 0: a linear ring needs at least 4 positions",
    ),
    ("unclosed ring", polygon(OPEN), {}, "not closed"),
    ("zero area", polygon(FLAT), {}, "zero area"),
    ("zero area line ring", polygon(LINE_RING), {}, "zero area"),
    ("zero area with repair", polygon(LINE_RING), {"repair": True}, "zero area"),
    ("unknown type", {"type": "Topology"}, {}, "expected a GeoJSON FeatureCollection"),
    ("not geojson", 3.5, {}, "got float"),
    ("bool", True, {}, "got bool"),
    ("bool id", [True], {"lookup": FakeDb()}, "strings or integers"),
    ("float feature id", feature(id=1.5), {}, "string or integer"),
]


@pytest.mark.parametrize(
    ("value", "kwargs", "message"),
    [pytest.param(v, k, m, id=name) for name, v, k, m in REJECTIONS],
)
def test_rejections(value: Any, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as exc:
        parse_aoi(value, **kwargs)
    assert exc.value.parameter == "aoi"
    assert message in str(exc.value)


def test_rejection_names_the_feature() -> None:
    bad = collection(feature(id="ok"), feature(polygon(BOWTIE), id="bad-one"))
    with pytest.raises(InputError, match=r"feature 1 \(id 'bad-one'\)"):
        parse_aoi(bad)
    with pytest.raises(InputError, match=r"feature 1 polygon 0"):
        parse_aoi(
            collection(
                feature(id="ok"),
                feature({"type": "MultiPolygon", "coordinates": [[BIG]]}),
            )
        )


def test_malformed_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.geojson"
    path.write_text("{not json")
    with pytest.raises(InputError, match="malformed GeoJSON in .*bad.geojson"):
        parse_aoi(path)
    with pytest.raises(InputError, match="file not found"):
        parse_aoi(tmp_path / "missing.geojson")


def test_lookup_raising_input_error_passes_through() -> None:
    def lookup(ids: list[str]) -> list[AOI]:
        raise InputError("aoi", "database says no")

    with pytest.raises(InputError, match="database says no"):
        parse_aoi("a", lookup=lookup)


def test_properties_are_copied() -> None:
    props: dict[str, Any] = {"name": "n", "nested": {"k": 1}}
    [aoi] = parse_aoi(feature(id="a", properties=props))
    props["nested"]["k"] = 2
    assert aoi.properties["nested"] == {"k": 1}


def test_geometry_matches_input() -> None:
    [aoi] = parse_aoi(TWO["features"][1])
    assert aoi.geometry.equals(shape(polygon(OTHER)))
