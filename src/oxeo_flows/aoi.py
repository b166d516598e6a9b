"""Areas of interest (AOIs): parsing, validation and stable identity.

An AOI is a named lon/lat (WGS84, EPSG:4326, degrees, x = lon) MultiPolygon. AOI ids end up in
storage paths and database queries, so they are validated against :data:`AOI_ID_PATTERN` (a
security boundary: no path separators, "..", whitespace, quotes or SQL metacharacters).

Every bad input raises ``InputError("aoi", ...)`` with a one-line message naming the feature and
what was expected.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import fsspec
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient
from shapely.validation import explain_validity

from oxeo_flows.errors import InputError

__all__ = [
    "AOI",
    "AOI_ID_PATTERN",
    "AOIInput",
    "AOILookup",
    "geometry_hash",
    "min_tile_count",
    "parse_aoi",
    "validate_aoi_id",
]

#: Allowed AOI ids (ids containing ".." are rejected as well).
AOI_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_ID_RE = re.compile(AOI_ID_PATTERN, re.ASCII)
#: Longest accepted AOI name, in characters.
MAX_NAME_LENGTH = 200
#: Latitude range covered by UTM, degrees.
MIN_LAT, MAX_LAT = -80.0, 84.0
#: Coordinates larger than this (in absolute value) are reported as probably projected.
_PROJECTED_HINT = 1000.0
#: Grid (degrees) the geometry is snapped to before hashing (1e-7 deg is about 1 cm).
HASH_GRID_DEG = 1e-7
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_WGS84_CRS_RE = re.compile(
    r"^(?:URN:OGC:DEF:CRS:OGC:(?:1\.3)?:CRS84|URN:OGC:DEF:CRS:EPSG:[0-9.]*:4326"
    r"|HTTPS?://WWW\.OPENGIS\.NET/DEF/CRS/(?:OGC/1\.3/CRS84|EPSG/0/4326)"
    r"|(?:OGC:)?CRS84|EPSG:{1,2}4326|WGS ?84)$"
)
_POLYGONAL = ("Polygon", "MultiPolygon")

AOILookup: TypeAlias = Callable[[list[str]], "list[AOI]"]
SET_PREFIX = "set:"  # `set:NAME` in the AOI ids names a set of AOIs in the database (all its members)
AOIInput: TypeAlias = Mapping[str, Any] | str | os.PathLike[str] | int | Sequence[str | int]


def validate_aoi_id(aoi_id: str) -> str:
    """Return ``aoi_id`` if it matches :data:`AOI_ID_PATTERN` and has no "..", else InputError."""
    if not isinstance(aoi_id, str) or not _ID_RE.fullmatch(aoi_id) or ".." in aoi_id:
        shown = aoi_id[:140] if isinstance(aoi_id, str) else aoi_id
        raise InputError(
            "aoi",
            f"invalid AOI id {shown!r}: expected 1-128 characters of letters, digits, '.', '_', "
            "'-', starting with a letter or digit, without '..'",
        )
    return aoi_id


def _validate_name(name: str) -> str:
    if not isinstance(name, str):
        raise InputError("aoi", f"AOI name must be a string, got {type(name).__name__}")
    if len(name) > MAX_NAME_LENGTH:
        raise InputError("aoi", f"AOI name longer than {MAX_NAME_LENGTH} characters: {name[:40]!r}...")
    if any(unicodedata.category(c) == "Cc" for c in name):
        raise InputError("aoi", f"AOI name contains control characters: {name!r}")
    return name


def _as_multipolygon(geom: BaseGeometry) -> MultiPolygon:
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon([geom]) if not geom.is_empty else MultiPolygon()
    polys = [g for g in shapely.get_parts(geom) if isinstance(g, Polygon) and not g.is_empty]
    return MultiPolygon(polys)


def _oriented(geom: BaseGeometry) -> MultiPolygon:
    """MultiPolygon with exterior rings counter-clockwise and holes clockwise (RFC 7946)."""
    return MultiPolygon([orient(p, sign=1.0) for p in _as_multipolygon(geom).geoms])


def geometry_hash(geom: BaseGeometry) -> str:
    """sha256 hex digest of the geometry's canonical WKB.

    Canonical form: snapped to a 1e-7 degree grid, as a MultiPolygon, oriented, then
    ``shapely.normalize``-d, so ring start point, ring orientation, polygon order and Polygon vs
    single-member MultiPolygon do not change the hash.
    """
    snapped = shapely.set_precision(geom, grid_size=HASH_GRID_DEG)
    canonical = shapely.normalize(_oriented(snapped))
    wkb = shapely.to_wkb(canonical, output_dimension=2, byte_order=1, include_srid=False)
    return hashlib.sha256(wkb).hexdigest()


@dataclass(frozen=True)
class AOI:
    """A named area of interest.

    ``geometry`` is a lon/lat (EPSG:4326 degrees) MultiPolygon with exterior rings counter-clockwise
    (a Polygon passed in is wrapped and re-oriented). ``id`` must match :data:`AOI_ID_PATTERN`;
    ``name`` is at most 200 characters without control characters. ``properties`` (free-form
    metadata) does not take part in equality or hashing.
    """

    id: str
    name: str
    geometry: MultiPolygon
    properties: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        validate_aoi_id(self.id)
        _validate_name(self.name)
        if not isinstance(self.geometry, Polygon | MultiPolygon):
            got = getattr(self.geometry, "geom_type", type(self.geometry).__name__)
            raise InputError("aoi", f"AOI {self.id!r}: expected Polygon or MultiPolygon, got {got}")
        object.__setattr__(self, "geometry", _oriented(self.geometry))

    @property
    def geometry_hash(self) -> str:
        """:func:`geometry_hash` of the geometry."""
        return geometry_hash(self.geometry)


#: Upper bound of the UTM scale factor inside a zone (about 1.001), with margin: a tile of side s metres
#: covers at most (s * _UTM_SCALE_MARGIN)^2 m^2 of ground.
_UTM_SCALE_MARGIN = 1.01


def min_tile_count(aois: Sequence[AOI], size_m: int) -> int:
    """A cheap lower bound on the number of ``size_m`` UTM tiles the AOIs need.

    The larger of: the biggest AOI's geodesic area over the most ground one tile can cover, and, for
    each polygon (connected), the geodesic distance between its extreme vertices over a tile's
    diagonal. Lets huge requests (a continent) be refused before the tiles are enumerated.
    """
    from pyproj import Geod

    geod = Geod(ellps="WGS84")
    side = size_m * _UTM_SCALE_MARGIN
    bound = 0.0
    for a in aois:
        # Densified: the tiles follow straight lon/lat edges, geodesic area would follow great circles.
        area, _ = geod.geometry_area_perimeter(shapely.segmentize(a.geometry, 0.05))
        bound = max(bound, abs(area) / side**2)
        for poly in a.geometry.geoms:
            xy = list(poly.exterior.coords)
            pairs = (
                (min(xy, key=lambda c: c[0]), max(xy, key=lambda c: c[0])),
                (min(xy, key=lambda c: c[1]), max(xy, key=lambda c: c[1])),
            )
            for p, q in pairs:
                _, _, dist = geod.inv(p[0], p[1], q[0], q[1])
                bound = max(bound, dist / (side * math.sqrt(2)))
    return math.floor(bound)


# --------------------------------------------------------------------------------------------------
# GeoJSON validation


def _check_crs(obj: Mapping[str, Any], where: str) -> None:
    crs = obj.get("crs")
    if crs is None:
        return
    name = crs.get("properties", {}).get("name") if isinstance(crs, Mapping) else None
    if not isinstance(name, str) or not _WGS84_CRS_RE.fullmatch(name.strip().upper()):
        raise InputError(
            "aoi",
            f"{where}: crs member {json.dumps(crs)[:120]} is not WGS84; coordinates must be WGS84 "
            "lon/lat degrees (RFC 7946): reproject to EPSG:4326",
        )


def _position(pos: Any, where: str) -> tuple[float, float]:
    if not isinstance(pos, list | tuple) or len(pos) < 2:
        raise InputError("aoi", f"{where}: expected a position [lon, lat], got {str(pos)[:60]}")
    for v in pos:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise InputError("aoi", f"{where}: coordinates must be finite numbers, got {str(pos)[:60]}")
    lon, lat = float(pos[0]), float(pos[1])
    if abs(lon) > _PROJECTED_HINT or abs(lat) > _PROJECTED_HINT:
        raise InputError(
            "aoi",
            f"{where}: position ({pos[0]}, {pos[1]}) is not lon/lat; coordinates must be WGS84 "
            "lon/lat degrees (RFC 7946); projected coordinates?",
        )
    if not -180.0 <= lon <= 180.0:
        raise InputError("aoi", f"{where}: longitude {pos[0]} out of range [-180, 180]")
    if not MIN_LAT <= lat <= MAX_LAT:
        raise InputError(
            "aoi",
            f"{where}: latitude {pos[1]} out of range [{MIN_LAT:g}, {MAX_LAT:g}] (UTM coverage)",
        )
    return lon, lat


def _ring(ring: Any, where: str) -> list[tuple[float, float]]:
    if not isinstance(ring, list | tuple):
        raise InputError("aoi", f"{where}: expected a linear ring (list of positions)")
    if len(ring) < 4:
        raise InputError(
            "aoi", f"{where}: a linear ring needs at least 4 positions (closed), got {len(ring)}"
        )
    coords = [_position(p, where) for p in ring]
    if coords[0] != coords[-1]:
        raise InputError("aoi", f"{where}: linear ring is not closed (first position != last)")
    return coords


def _polygon(rings: Any, where: str) -> Polygon:
    if not isinstance(rings, list | tuple) or not rings:
        raise InputError("aoi", f"{where}: empty polygon; expected at least an exterior ring")
    shell = _ring(rings[0], f"{where} exterior ring")
    holes = [_ring(r, f"{where} hole {i}") for i, r in enumerate(rings[1:])]
    span = max(x for x, _ in shell) - min(x for x, _ in shell)
    if span > 180.0:
        raise InputError(
            "aoi",
            f"{where}: polygon spans {span:g} degrees of longitude, so it crosses the "
            "antimeridian; split it into parts on either side of 180 (RFC 7946 3.1.9)",
        )
    return Polygon(shell, holes)


def _zero_area(poly: Polygon) -> bool:
    """True if the polygon has no area once snapped to the hash grid (collinear, sliver)."""
    snapped = shapely.set_precision(poly, grid_size=HASH_GRID_DEG)
    return bool(poly.area <= 0 or snapped.is_empty or snapped.area <= 0)


def _geometry(geom: Any, where: str, repair: bool) -> MultiPolygon:
    if geom is None:
        raise InputError("aoi", f"{where}: geometry is null; expected Polygon or MultiPolygon")
    if not isinstance(geom, Mapping):
        raise InputError("aoi", f"{where}: geometry must be an object, got {type(geom).__name__}")
    gtype = geom.get("type")
    if gtype not in _POLYGONAL:
        raise InputError("aoi", f"{where}: expected Polygon or MultiPolygon, got {gtype}")
    _check_crs(geom, where)
    coords = geom.get("coordinates")
    if not isinstance(coords, list | tuple) or not coords:
        raise InputError("aoi", f"{where}: empty geometry; expected non-empty {gtype} coordinates")
    if gtype == "Polygon":
        polys = [_polygon(coords, where)]
    else:
        polys = [_polygon(p, f"{where} polygon {i}") for i, p in enumerate(coords)]
    shape = MultiPolygon(polys)
    if shape.is_valid:
        if any(_zero_area(p) for p in polys):
            raise InputError("aoi", f"{where}: polygon has zero area (at a {HASH_GRID_DEG:g} degree grid)")
        return _oriented(shape)
    pieces = [p for p in _as_multipolygon(shapely.make_valid(shape)).geoms if not _zero_area(p)]
    repaired = _as_multipolygon(shapely.union_all(pieces))
    if repaired.is_empty:
        raise InputError("aoi", f"{where}: polygon has zero area ({explain_validity(shape)})")
    if not repair:
        raise InputError(
            "aoi",
            f"{where}: invalid geometry: {explain_validity(shape)}; "
            "pass repair=True to fix it with make_valid",
        )
    return _oriented(repaired)


def _feature_id(raw: Any, where: str) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise InputError("aoi", f"{where}: AOI id must be a string or integer, got {raw!r}")
    return validate_aoi_id(str(raw))


def _feature(feature: Any, index: int, repair: bool) -> AOI:
    where = f"feature {index}"
    if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
        got = feature.get("type") if isinstance(feature, Mapping) else type(feature).__name__
        raise InputError("aoi", f"{where}: expected a GeoJSON Feature, got {got}")
    props = feature.get("properties")
    if props is None:
        props = {}
    if not isinstance(props, Mapping):
        raise InputError("aoi", f"{where}: properties must be an object or null")
    aoi_id = _feature_id(feature.get("id"), where)
    if aoi_id is None:
        aoi_id = _feature_id(props.get("id"), where)
    if aoi_id is not None:
        where = f"{where} (id {aoi_id!r})"
    _check_crs(feature, where)
    geometry = _geometry(feature.get("geometry"), where, repair)
    if aoi_id is None:
        aoi_id = "aoi-" + geometry_hash(geometry)[:16]
    name = props.get("name")
    if name is None or name == "":
        name = aoi_id
    if not isinstance(name, str):
        raise InputError("aoi", f"{where}: name must be a string, got {type(name).__name__}")
    try:
        _validate_name(name)
    except InputError as exc:
        raise InputError("aoi", f"{where}: {exc.detail}") from None
    return AOI(aoi_id, name, geometry, copy.deepcopy(dict(props)))


def _from_geojson(obj: Any, repair: bool) -> list[AOI]:
    if not isinstance(obj, Mapping):
        raise InputError("aoi", f"expected a GeoJSON object, got {type(obj).__name__}")
    gtype = obj.get("type")
    _check_crs(obj, "GeoJSON")
    if gtype == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise InputError("aoi", "FeatureCollection 'features' must be a list")
        if not features:
            raise InputError("aoi", "empty FeatureCollection: expected at least one Feature")
        aois = [_feature(f, i, repair) for i, f in enumerate(features)]
    elif gtype == "Feature":
        aois = [_feature(obj, 0, repair)]
    elif gtype in _POLYGONAL:
        geometry = _geometry(obj, "geometry", repair)
        aoi_id = "aoi-" + geometry_hash(geometry)[:16]
        aois = [AOI(aoi_id, aoi_id, geometry)]
    elif gtype in ("Point", "MultiPoint", "LineString", "MultiLineString", "GeometryCollection"):
        raise InputError("aoi", f"geometry: expected Polygon or MultiPolygon, got {gtype}")
    else:
        raise InputError(
            "aoi",
            f"expected a GeoJSON FeatureCollection, Feature, Polygon or MultiPolygon, got type {gtype!r}",
        )
    _check_unique([a.id for a in aois])
    return aois


def _check_unique(ids: list[str]) -> None:
    seen: set[str] = set()
    dupes: dict[str, None] = {}
    for i in ids:
        if i in seen:
            dupes[i] = None
        seen.add(i)
    if dupes:
        raise InputError("aoi", f"duplicate AOI id(s): {', '.join(dupes)}")


def _parse_json_text(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError("aoi", f"malformed GeoJSON{source}: {exc}") from None


def _read_file(path: str | os.PathLike[str], repair: bool) -> list[AOI]:
    try:
        if isinstance(path, str) and _URL_RE.match(path):
            with fsspec.open(path, "rt", encoding="utf-8") as fh:
                text = fh.read()
        else:
            text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("aoi", f"file not found: {os.fspath(path)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError("aoi", f"cannot read {os.fspath(path)}: {exc}") from None
    return _from_geojson(_parse_json_text(text, f" in {os.fspath(path)}"), repair)


def _file_exists(value: str) -> bool:
    try:
        if _URL_RE.match(value):
            fs, fs_path = fsspec.core.url_to_fs(value)
            return bool(fs.isfile(fs_path))
        return Path(value).is_file()
    except (OSError, ValueError, ImportError):
        return False


def _lookup(ids: list[str], lookup: AOILookup | None) -> list[AOI]:
    if not ids:
        raise InputError("aoi", "empty AOI input: expected GeoJSON, a file path or AOI ids")
    sets = [i for i in ids if i.startswith(SET_PREFIX)]
    ids = [i for i in ids if not i.startswith(SET_PREFIX)]
    for i in ids:
        validate_aoi_id(i)
    for s in sets:
        validate_aoi_id(s.removeprefix(SET_PREFIX))
    _check_unique(ids + sets)
    if lookup is None:
        raise InputError(
            "aoi",
            f"AOI ids need a database to look them up (got {', '.join(sets + ids)}); "
            "pass GeoJSON or a file instead",
        )
    out: dict[str, AOI] = {}
    for s in sets:  # a named set: the lookup returns its members
        members = lookup([s])
        if not members:
            raise InputError("aoi", f"unknown or empty AOI set {s.removeprefix(SET_PREFIX)!r}")
        out.update((a.id, a) for a in members)
    if ids:
        found = {a.id: a for a in lookup(list(ids))}
        missing = [i for i in ids if i not in found]
        if missing:
            raise InputError("aoi", f"unknown AOI id(s): {', '.join(missing)}")
        out.update((i, found[i]) for i in ids if i not in out)
    return list(out.values())


def parse_aoi(value: AOIInput, *, lookup: AOILookup | None = None, repair: bool = False) -> list[AOI]:
    """Parse AOI input into a non-empty list of validated AOIs (one per Feature, in input order).

    ``value`` is one of: a GeoJSON dict (FeatureCollection, Feature, bare Polygon/MultiPolygon);
    GeoJSON text (starts with "{"); a path (str or ``pathlib.Path``) or fsspec URL of a GeoJSON
    file; comma-separated AOI ids, a list/tuple of str/int ids, or an int id (resolved with
    ``lookup``, which receives the validated ids and returns the matching AOIs). An id
    ``set:NAME`` stands for every member of the named AOI set (``lookup(["set:NAME"])`` returns them).

    AOI id: Feature ``id``, else ``properties["id"]``, else ``"aoi-" + geometry_hash[:16]``.
    Geometries must be Polygon/MultiPolygon in WGS84 lon/lat degrees with lon in [-180, 180],
    lat in [-80, 84], not crossing the antimeridian and valid; with ``repair=True`` invalid ones
    are fixed with ``shapely.make_valid`` (polygonal parts kept). Raises ``InputError("aoi")``.
    """
    if isinstance(value, Mapping):
        return _from_geojson(value, repair)
    if isinstance(value, bool):
        raise InputError("aoi", "expected GeoJSON, a file path or AOI ids, got bool")
    if isinstance(value, int):
        return _lookup([str(value)], lookup)
    if isinstance(value, os.PathLike):
        return _read_file(value, repair)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise InputError("aoi", "empty AOI input: expected GeoJSON, a file path or AOI ids")
        if text.startswith("{"):
            return _from_geojson(_parse_json_text(text, ""), repair)
        if _file_exists(text):
            return _read_file(text, repair)
        if _URL_RE.match(text) or text.lower().endswith((".geojson", ".json")):
            raise InputError("aoi", f"file not found: {text}")
        return _lookup([part.strip() for part in text.split(",")], lookup)
    if isinstance(value, list | tuple):
        ids: list[str] = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise InputError("aoi", f"AOI ids must be strings or integers, got {item!r}")
            ids.append(str(item))
        return _lookup(ids, lookup)
    raise InputError(
        "aoi",
        f"expected GeoJSON (dict or text), a file path or AOI ids, got {type(value).__name__}",
    )
