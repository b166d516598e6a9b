"""Fixed UTM grid tiles.

A tile is one square of a regular grid laid over a WGS84 / UTM zone CRS (EPSG:326zz north,
EPSG:327zz south): cell ``(ix, iy)`` of size ``size_m`` metres covers
``[ix*size_m, (ix+1)*size_m) x [iy*size_m, (iy+1)*size_m)`` in that CRS's eastings/northings
(southern northings include the 10,000,000 m false northing, as in the CRS).

Tile ids look like ``"36_M_10000_35_931"``: ``{zone}_{band}_{size_m}_{ix}_{iy}`` where ``band`` is
the MGRS latitude band letter of the tile centre. The letter is derived from the tile, so every grid
square has exactly one id, and it encodes the hemisphere (``band < "N"`` means south).

Zones are the standard 6-degree strips (zone 1 starts at 180 W); the Norway/Svalbard exceptions of
MGRS are deliberately not applied. Geometry inputs are lon/lat degrees (EPSG:4326, x = lon).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry

from oxeo_flows.errors import InputError

__all__ = [
    "BANDS",
    "Tile",
    "tile_geometry_utm",
    "tiles_for_geometry",
    "zone_of",
    "zone_parts",
]

#: MGRS latitude band letters, 8 degrees each from 80 S; "X" spans 72..84 N.
BANDS = "CDEFGHJKLMNPQRSTUVWX"

#: UTM false northing of the southern hemisphere CRSs (metres).
FALSE_NORTHING_SOUTH = 10_000_000
#: Upper bound (exclusive) of a tile's min_x / min_y in metres; keeps tiles inside the projection.
_MAX_EASTING = 1_000_000
_MAX_NORTHING = 10_000_000
_MAX_ID_LENGTH = 64
_ID_FORMAT = "expected '{zone}_{band}_{size}_{ix}_{iy}', e.g. '36_M_10000_35_931'"
_ID_RE = re.compile(
    r"(?P<zone>[1-9][0-9]?)_(?P<band>[A-Z])_(?P<size>[1-9][0-9]*)_"
    r"(?P<ix>0|[1-9][0-9]*)_(?P<iy>0|[1-9][0-9]*)",
    re.ASCII,
)
_EDGE_POINTS = 20
#: Max segment length (degrees) used to densify lon/lat edges before projecting them to UTM.
_DENSIFY_DEG = 0.02


def _utm_epsg(zone: int, south: bool) -> int:
    return (32700 if south else 32600) + zone


@lru_cache(maxsize=256)
def _transformer(src_epsg: int, dst_epsg: int) -> Transformer:
    return Transformer.from_crs(src_epsg, dst_epsg, always_xy=True)


def _band_of_lat(lat: float) -> str:
    """MGRS band letter of a latitude in degrees, clamped to C (< 80 S) and X (>= 72 N)."""
    index = math.floor((lat + 80.0) / 8.0)
    return BANDS[min(max(index, 0), len(BANDS) - 1)]


@dataclass(frozen=True)
class Tile:
    """One cell of the ``size_m`` metre grid of UTM zone ``zone`` (north or ``south``).

    ``ix`` / ``iy`` are the cell's column / row: its lower-left corner is at
    ``(ix*size_m, iy*size_m)`` metres in :attr:`crs`. Invalid fields raise ``InputError("tile")``.
    """

    zone: int
    south: bool
    size_m: int
    ix: int
    iy: int

    def __post_init__(self) -> None:
        for name in ("zone", "size_m", "ix", "iy"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise InputError("tile", f"{name} must be an int, got {type(value).__name__}")
        if not isinstance(self.south, bool):
            raise InputError("tile", f"south must be a bool, got {type(self.south).__name__}")
        if not 1 <= self.zone <= 60:
            raise InputError("tile", f"zone must be in 1..60, got {self.zone}")
        if self.size_m <= 0:
            raise InputError("tile", f"size_m must be > 0 metres, got {self.size_m}")
        if self.ix < 0 or self.iy < 0:
            raise InputError("tile", f"ix and iy must be >= 0, got ({self.ix}, {self.iy})")
        if self.ix * self.size_m >= _MAX_EASTING or self.iy * self.size_m >= _MAX_NORTHING:
            raise InputError(
                "tile",
                f"tile origin ({self.ix * self.size_m}, {self.iy * self.size_m}) m is outside "
                f"the UTM zone (min_x must be < {_MAX_EASTING}, min_y < {_MAX_NORTHING})",
            )

    @property
    def epsg(self) -> int:
        """EPSG code of the tile's CRS: 32600 + zone (north) or 32700 + zone (south)."""
        return _utm_epsg(self.zone, self.south)

    @property
    def crs(self) -> str:
        """The tile's CRS as an ``"EPSG:32xzz"`` string."""
        return f"EPSG:{self.epsg}"

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """``(min_x, min_y, max_x, max_y)`` in metres in :attr:`crs`."""
        s = self.size_m
        return (self.ix * s, self.iy * s, (self.ix + 1) * s, (self.iy + 1) * s)

    @property
    def band(self) -> str:
        """MGRS latitude band letter of the tile centre.

        Clamped to the tile's hemisphere: the topmost southern-grid row can straddle the equator
        (when 10,000,000 is not a multiple of ``size_m``); its tiles get "M" even when their centre
        lies just north of it, so the letter always encodes ``south``. Centres below 80 S get "C",
        above 84 N get "X".
        """
        min_x, min_y, max_x, max_y = self.bounds
        lon, lat = _transformer(self.epsg, 4326).transform((min_x + max_x) / 2, (min_y + max_y) / 2)
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise InputError("tile", f"tile centre of {self.bounds} is outside the projection")
        if self.south and lat >= 0:
            return "M"
        if not self.south and lat < 0:
            return "N"
        return _band_of_lat(lat)

    @property
    def id(self) -> str:
        """Canonical id ``f"{zone}_{band}_{size_m}_{ix}_{iy}"``, e.g. ``"36_M_10000_35_931"``."""
        return f"{self.zone}_{self.band}_{self.size_m}_{self.ix}_{self.iy}"

    @classmethod
    def from_id(cls, tile_id: str) -> Tile:
        """Parse a canonical tile id; the exact inverse of :attr:`id`.

        Raises ``InputError("tile_id", ...)`` unless ``tile_id`` is exactly the id of a valid tile
        (no signs, whitespace or leading zeros; zone 1..60; size > 0; the band letter must be the
        canonical one of the tile centre).
        """

        def fail(reason: str) -> InputError:
            shown = tile_id[:_MAX_ID_LENGTH] if isinstance(tile_id, str) else tile_id
            return InputError("tile_id", f"invalid tile id {shown!r}: {reason}; {_ID_FORMAT}")

        if not isinstance(tile_id, str):
            raise fail(f"must be a string, got {type(tile_id).__name__}")
        if len(tile_id) > _MAX_ID_LENGTH:
            raise fail(f"longer than {_MAX_ID_LENGTH} characters")
        match = _ID_RE.fullmatch(tile_id)
        if match is None:
            raise fail("malformed (5 underscore-separated fields, unsigned integers without leading zeros)")
        zone = int(match["zone"])
        band = match["band"]
        if not 1 <= zone <= 60:
            raise fail(f"zone {zone} not in 1..60")
        if band not in BANDS:
            raise fail(f"band letter {band!r} not one of {BANDS}")
        try:
            tile = cls(zone, band < "N", int(match["size"]), int(match["ix"]), int(match["iy"]))
            canonical = tile.id
        except InputError as exc:
            raise fail(exc.detail) from None
        if canonical != tile_id:
            raise fail(f"band letter {band!r} does not match the tile centre (canonical id {canonical!r})")
        return tile

    def geobox(self, resolution_m: float, anchor_m: float = 0.0) -> GeoBox:
        """The tile's north-up pixel grid in :attr:`crs`, square pixels of ``resolution_m`` metres.

        Pixel edges lie on ONE lattice per zone: ``anchor_m + k * resolution_m`` in x and y (anchor 0
        for Sentinel-2; 15 m for Landsat, whose native 30 m pixel edges sit at 15 m mod 30). The grid
        is the smallest lattice-aligned box covering the tile, so neighbouring tiles share pixels
        exactly and mosaic by pasting. When the resolution divides the tile size and the anchor is 0
        the grid is exactly the tile (10 km at 10 m: 1000 px with top-left ``(min_x, max_y)``);
        otherwise it overhangs (10 km at 30 m: 334 px = 10,020 m; the real extent is the geobox's).
        """
        res = float(resolution_m)
        if not (math.isfinite(res) and res > 0):
            raise InputError("resolution_m", f"must be a finite number of metres > 0, got {resolution_m!r}")
        min_x, min_y, max_x, max_y = self.bounds

        def snap(v: float, up: bool) -> float:
            k = (v - anchor_m) / res
            kr = round(k)
            if abs(k - kr) < 1e-9 * max(1.0, abs(k)):
                return anchor_m + kr * res
            return anchor_m + (math.ceil(k) if up else math.floor(k)) * res

        x0, x1 = snap(min_x, False), snap(max_x, True)
        y0, y1 = snap(min_y, False), snap(max_y, True)
        nx, ny = round((x1 - x0) / res), round((y1 - y0) / res)
        return GeoBox((ny, nx), Affine(res, 0.0, x0, 0.0, -res, y1), self.crs)

    def footprint_lonlat(self) -> Polygon:
        """The tile square in lon/lat degrees (EPSG:4326), each edge densified to 20 points."""
        min_x, min_y, max_x, max_y = self.bounds
        t = np.linspace(0.0, 1.0, _EDGE_POINTS, endpoint=False)
        xs = np.concatenate(
            [
                min_x + t * (max_x - min_x),
                np.full_like(t, max_x),
                max_x - t * (max_x - min_x),
                np.full_like(t, min_x),
            ]
        )
        ys = np.concatenate(
            [
                np.full_like(t, min_y),
                min_y + t * (max_y - min_y),
                np.full_like(t, max_y),
                max_y - t * (max_y - min_y),
            ]
        )
        lon, lat = _transformer(self.epsg, 4326).transform(xs, ys)
        return Polygon(np.column_stack([lon, lat]))


def tile_geometry_utm(tile: Tile) -> Polygon:
    """The tile square as a shapely box in the tile's CRS (metres)."""
    return box(*tile.bounds)


def zone_of(lon: float) -> int:
    """UTM zone (1..60) of a longitude in degrees: standard 6-degree strips, lon 180 -> zone 60.

    The Norway (32V) and Svalbard (31X..37X) exceptions are not applied.
    """
    if not (isinstance(lon, int | float) and -180.0 <= lon <= 180.0):
        raise InputError("lon", f"longitude must be in [-180, 180] degrees, got {lon!r}")
    return min(int(math.floor((lon + 180.0) / 6.0)) + 1, 60)


def _polygonal(geom: BaseGeometry) -> MultiPolygon | Polygon | None:
    """The non-empty, non-zero-area polygonal pieces of ``geom`` (or None)."""
    polys = [
        g
        for g in shapely.get_parts(shapely.get_parts(geom))
        if isinstance(g, Polygon) and not g.is_empty and g.area > 0
    ]
    if not polys:
        return None
    return polys[0] if len(polys) == 1 else MultiPolygon(polys)


def zone_parts(geometry_lonlat: BaseGeometry) -> list[tuple[int, bool, BaseGeometry]]:
    """Split a lon/lat (Multi)Polygon by 6-degree UTM zone strips and by the equator.

    Returns ``(zone, south, part)`` for every non-empty polygonal part (zero-area slivers dropped),
    sorted by ``(zone, south)``. Points on the equator belong to the north.
    """
    if geometry_lonlat.is_empty:
        return []
    min_lon, min_lat, max_lon, max_lat = geometry_lonlat.bounds
    parts: list[tuple[int, bool, BaseGeometry]] = []
    for zone in range(zone_of(max(min_lon, -180.0)), zone_of(min(max_lon, 180.0)) + 1):
        west = -180.0 + 6.0 * (zone - 1)
        for south, (lat0, lat1) in ((False, (0.0, 90.0)), (True, (-90.0, 0.0))):
            if max_lat < lat0 or min_lat > lat1:
                continue
            part = _polygonal(geometry_lonlat.intersection(box(west, lat0, west + 6.0, lat1)))
            if part is not None:
                parts.append((zone, south, part))
    return sorted(parts, key=lambda p: (p[0], p[1]))


def _projector(dst_epsg: int) -> Callable[[np.ndarray], np.ndarray]:
    transformer = _transformer(4326, dst_epsg)

    def project(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return project


def project_lonlat(geometry_lonlat: BaseGeometry, epsg: int) -> BaseGeometry:
    """The lon/lat geometry densified (edges are curves in UTM) and projected to ``epsg``."""
    return shapely.transform(shapely.segmentize(geometry_lonlat, _DENSIFY_DEG), _projector(epsg))


def tiles_for_geometry(geometry_lonlat: BaseGeometry, size_m: int = 10000) -> list[Tile]:
    """All ``size_m`` metre tiles whose square's interior intersects the lon/lat geometry.

    The geometry is split with :func:`zone_parts`; each part is densified, projected to its own
    zone/hemisphere CRS and tiled there (tiles of a part always live in the part's zone, so an AOI
    crossing a zone boundary gets tiles in every zone it touches, and those tiles extend across the
    boundary on the ground). The test is the true geometric intersection (squares that merely touch
    the part are excluded), not the bounding box. Sorted by id, no duplicates.
    """
    if not isinstance(size_m, int) or isinstance(size_m, bool) or size_m <= 0:
        raise InputError("size_m", f"must be an int number of metres > 0, got {size_m!r}")
    tiles: set[Tile] = set()
    for zone, south, part in zone_parts(geometry_lonlat):
        epsg = _utm_epsg(zone, south)
        projected = project_lonlat(part, epsg)
        min_x, min_y, max_x, max_y = projected.bounds
        ix0 = max(math.floor(min_x / size_m), 0)
        iy0 = max(math.floor(min_y / size_m), 0)
        ix1 = min(math.floor(max_x / size_m), math.ceil(_MAX_EASTING / size_m) - 1)
        iy1 = min(math.floor(max_y / size_m), math.ceil(_MAX_NORTHING / size_m) - 1)
        if ix1 < ix0 or iy1 < iy0:
            continue
        grid_x, grid_y = np.meshgrid(np.arange(ix0, ix1 + 1), np.arange(iy0, iy1 + 1))
        ixs, iys = grid_x.ravel(), grid_y.ravel()
        cells = shapely.box(ixs * size_m, iys * size_m, (ixs + 1) * size_m, (iys + 1) * size_m)
        shapely.prepare(projected)
        hit = shapely.intersects(projected, cells)
        hit[hit] = shapely.relate_pattern(projected, cells[hit], "T********")
        for ix, iy in zip(ixs[hit].tolist(), iys[hit].tolist(), strict=True):
            tiles.add(Tile(zone, south, size_m, ix, iy))
    return sorted(tiles, key=lambda t: t.id)
