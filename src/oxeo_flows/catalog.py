"""STAC catalog search and the parsing of items into `Scene`s.

A catalog is either a STAC API (an http(s) URL that does not end in `.json`; searched with pystac-client)
or a static catalog / collection JSON on any fsspec path (walked with pystac and filtered here, because
pystac-client cannot search static catalogs).

Radiometry (reflectance = DN x scale + offset, after the nodata test):
- Sentinel-2 L2A: scale from `raster:bands` (default 1e-4). The offset is decided per item and the
  catalog's declared offset is NOT trusted: Earth Search declares -0.1 even for COGs whose DN already had
  the BOA_ADD_OFFSET subtracted. Rule: `earthsearch:boa_offset_applied` true -> DN offset 0; else
  `s2:processing_baseline` >= 04.00 -> DN offset -1000; else 0. The reflectance offset recorded is
  DN offset x scale (so -0.1 or 0).
- Landsat Collection 2 Level-2: scale/offset from `raster:bands` (defaults 2.75e-5 and -0.2); the
  surface-temperature band (`lwir11`/`lwir`, kelvin) defaults to 0.00341802 and 149.0 and is optional:
  scenes processed to surface reflectance only (L2SR) lack it.
- Classification bands (SCL, QA_PIXEL): scale 1, offset 0, never resampled other than nearest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urljoin

import fsspec
import pystac
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from oxeo_flows.constellations import Constellation, constellation_of_platform
from oxeo_flows.errors import InputError, SourceError

S2_DEFAULT_SCALE = 1e-4
S2_BOA_DN_OFFSET = -1000
LANDSAT_SR_SCALE = 2.75e-5
LANDSAT_SR_OFFSET = -0.2
LANDSAT_ST_SCALE = 0.00341802  # C2 surface temperature: kelvin = DN x scale + offset
LANDSAT_ST_OFFSET = 149.0


@dataclass(frozen=True)
class AssetRef:
    """One band of one scene: where it is and how DN map to physical values."""

    band: str
    href: str
    scale: float
    offset: float
    nodata: float | None
    crs: str
    shape: tuple[int, int]
    transform: tuple[float, float, float, float, float, float]

    @property
    def resolution_m(self) -> float:
        return abs(self.transform[0])


@dataclass(frozen=True)
class Scene:
    """A STAC item reduced to what extraction needs (plain values, cheap to serialise)."""

    id: str
    datetime: datetime  # UTC acquisition time
    constellation: str
    collection: str
    geometry: dict[str, Any]  # GeoJSON geometry, lon/lat
    processing_baseline: str | None
    assets: dict[str, AssetRef] = field(hash=False)

    @property
    def solar_day(self) -> date:
        """Local solar date: UTC time shifted by the footprint centroid longitude / 15 h."""
        lon = shape(self.geometry).centroid.x
        return (self.datetime + timedelta(hours=lon / 15.0)).date()

    @property
    def footprint(self) -> BaseGeometry:
        return shape(self.geometry)


def _is_api(catalog: str) -> bool:
    return catalog.startswith(("http://", "https://")) and not catalog.split("?")[0].endswith(".json")


class _FsspecStacIO(pystac.StacIO):
    """pystac I/O through fsspec, so static catalogs work on s3://, gs://, memory:// and local paths."""

    def read_text(self, source: Any, *args: Any, **kwargs: Any) -> str:
        with fsspec.open(str(source), "r") as f:
            return str(f.read())

    def write_text(self, dest: Any, txt: str, *args: Any, **kwargs: Any) -> None:
        with fsspec.open(str(dest), "w") as f:
            f.write(txt)


def _day_range(start: date, end: date) -> tuple[datetime, datetime]:
    if end < start:
        raise InputError("end_date", f"expected a date on or after start_date {start}, got {end}")
    return (
        datetime.combine(start, time.min, tzinfo=UTC),
        datetime.combine(end, time.max, tzinfo=UTC),
    )


_SEARCHES: dict[tuple[Any, ...], list[pystac.Item]] | None = None  # active inside `reuse_searches`


@contextmanager
def reuse_searches() -> Iterator[None]:
    """Inside the block an identical `search_items` call returns the first call's items instead of
    searching again: one CLI invocation searches for its pre-flight check and then in the flow, and a
    STAC API should see one search. Nothing is kept after the block."""
    global _SEARCHES
    outer = _SEARCHES
    _SEARCHES = {} if outer is None else outer
    try:
        yield
    finally:
        _SEARCHES = outer


def search_items(
    catalog: str,
    geometry: BaseGeometry,
    start: date,
    end: date,
    collections: Iterable[str],
    *,
    headers: dict[str, str] | None = None,
    max_items: int | None = None,
) -> list[pystac.Item]:
    """Items of `collections` intersecting `geometry` (lon/lat), acquired start..end (UTC days, inclusive)."""
    cols = list(collections)
    memo = _SEARCHES
    key = (catalog, geometry.wkb, start, end, tuple(cols), tuple(sorted((headers or {}).items())), max_items)
    if memo is not None and key in memo:
        return list(memo[key])
    items = _search(catalog, geometry, start, end, cols, headers, max_items)
    if memo is not None:
        memo[key] = list(items)
    return items


def _search(
    catalog: str,
    geometry: BaseGeometry,
    start: date,
    end: date,
    cols: list[str],
    headers: dict[str, str] | None,
    max_items: int | None,
) -> list[pystac.Item]:
    t0, t1 = _day_range(start, end)
    if _is_api(catalog):
        import pystac_client

        try:
            client = pystac_client.Client.open(catalog, headers=headers)
            search = client.search(
                collections=cols,
                intersects=mapping(geometry),
                datetime=(t0, t1),
                max_items=max_items,
            )
            items = list(search.items())
        except Exception as exc:  # network, HTTP, conformance errors
            raise SourceError(f"cannot search STAC API {catalog}: {_one_line(exc)}") from exc
        return sorted(items, key=lambda i: (i.datetime or t0, i.id))
    return _search_static(catalog, geometry, t0, t1, cols, max_items)


def _search_static(
    path: str,
    geometry: BaseGeometry,
    t0: datetime,
    t1: datetime,
    collections: list[str],
    max_items: int | None,
) -> list[pystac.Item]:
    try:
        fs, _ = fsspec.core.url_to_fs(path)
        found = fs.exists(path)
    except Exception as exc:  # unknown protocol, missing driver, unreachable host
        raise InputError("catalog", f"cannot open static catalog {path}: {_one_line(exc)}") from exc
    if not found:
        raise InputError(
            "catalog",
            f"static catalog not found: {path} (expected catalog.json or collection.json)",
        )
    try:
        root = pystac.read_file(path, stac_io=_FsspecStacIO())
    except Exception as exc:
        raise InputError("catalog", f"cannot read STAC catalog {path}: {_one_line(exc)}") from exc
    if not isinstance(root, pystac.Catalog):
        raise InputError(
            "catalog", f"expected a STAC Catalog or Collection at {path}, got {type(root).__name__}"
        )
    try:
        return _filter_static(root, geometry, t0, t1, collections, max_items)
    except InputError:
        raise
    except Exception as exc:  # a broken child link, an item that is not JSON or not STAC
        raise InputError("catalog", f"cannot read STAC catalog {path}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _filter_static(
    root: pystac.Catalog,
    geometry: BaseGeometry,
    t0: datetime,
    t1: datetime,
    collections: list[str],
    max_items: int | None,
) -> list[pystac.Item]:
    out: list[pystac.Item] = []
    for item in root.get_items(recursive=True):
        parent = item.get_parent()
        col = item.collection_id or (parent.id if parent is not None else None)
        if col not in collections:
            continue
        dt = item.datetime or _parse_dt(item.properties.get("start_datetime"))
        if dt is None or not (t0 <= dt.astimezone(UTC) <= t1):
            continue
        if item.geometry is None or not shape(item.geometry).intersects(geometry):
            continue
        out.append(item)
    out.sort(key=lambda i: (i.datetime or t0, i.id))
    return out[:max_items] if max_items else out


def _parse_dt(value: Any) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _proj_crs(d: dict[str, Any]) -> str | None:
    code = d.get("proj:code")
    if code:
        return str(code)
    epsg = d.get("proj:epsg")
    if epsg is not None:
        return f"EPSG:{int(epsg)}"
    return None


def _raster_band(asset: pystac.Asset) -> dict[str, Any]:
    bands = asset.extra_fields.get("raster:bands") or []
    return dict(bands[0]) if bands else {}


def _find_asset(item: pystac.Item, const: Constellation, band: str) -> tuple[str, pystac.Asset] | None:
    for key in const.asset_candidates(band):
        if key in item.assets:
            return key, item.assets[key]
    for key, asset in item.assets.items():  # fall back to eo:bands common names
        for b in asset.extra_fields.get("eo:bands") or []:
            if b.get("common_name") == band or b.get("name") == band:
                return key, asset
    return None


def s2_dn_offset(properties: dict[str, Any]) -> int:
    """DN offset to add before scaling for a Sentinel-2 L2A item (see module docstring)."""
    if properties.get("earthsearch:boa_offset_applied") is True:
        return 0
    baseline = properties.get("s2:processing_baseline")
    if baseline is None:
        return 0
    try:
        value = float(str(baseline))
    except ValueError:
        raise InputError(
            "catalog", f"item s2:processing_baseline {baseline!r} is not a number like '05.10'"
        ) from None
    return S2_BOA_DN_OFFSET if value >= 4.0 else 0


def scene_from_item(item: pystac.Item, const: Constellation) -> Scene:
    """Parse one STAC item into a `Scene` for `const`; raise `InputError('catalog', ...)` when unusable."""
    if item.datetime is None:
        raise InputError("catalog", f"item {item.id}: expected a 'datetime', got null")
    if item.geometry is None:
        raise InputError("catalog", f"item {item.id}: expected a footprint geometry, got null")
    dn_offset = s2_dn_offset(item.properties) if const.name == "sentinel-2" else 0
    item_crs = _proj_crs(item.properties)
    assets: dict[str, AssetRef] = {}
    for band in const.bands:
        found = _find_asset(item, const, band)
        if found is None and band in const.optional_bands:
            continue
        if found is None:
            raise InputError(
                "catalog",
                f"item {item.id}: missing asset for band {band!r} "
                f"(tried keys {', '.join(const.asset_candidates(band))} and eo:bands common names)",
            )
        key, asset = found
        crs = _proj_crs(asset.extra_fields) or item_crs
        shp = asset.extra_fields.get("proj:shape") or item.properties.get("proj:shape")
        tr = asset.extra_fields.get("proj:transform") or item.properties.get("proj:transform")
        if crs is None or shp is None or tr is None:
            raise InputError(
                "catalog",
                f"item {item.id} asset {key!r}: expected projection metadata "
                "(proj:code or proj:epsg, proj:shape, proj:transform)",
            )
        rb = _raster_band(asset)
        if band == const.qa_band:
            scale, offset = 1.0, 0.0
        elif const.name == "sentinel-2":
            scale = float(rb.get("scale", S2_DEFAULT_SCALE))
            offset = dn_offset * scale
        elif band == const.thermal_band:
            scale = float(rb.get("scale", LANDSAT_ST_SCALE))
            offset = float(rb.get("offset", LANDSAT_ST_OFFSET))
        else:
            scale = float(rb.get("scale", LANDSAT_SR_SCALE))
            offset = float(rb.get("offset", LANDSAT_SR_OFFSET))
        nodata = rb.get("nodata", 0)
        href = asset.get_absolute_href() or asset.href
        if item.get_self_href() and not _has_scheme(href) and not href.startswith("/"):
            href = urljoin(item.get_self_href() or "", href)
        assets[band] = AssetRef(
            band=band,
            href=href,
            scale=scale,
            offset=offset,
            nodata=None if nodata is None else float(nodata),
            crs=crs,
            shape=(int(shp[0]), int(shp[1])),
            transform=tuple(float(v) for v in tr[:6]),  # type: ignore[arg-type]
        )
    baseline = item.properties.get("s2:processing_baseline")
    return Scene(
        id=item.id,
        datetime=item.datetime.astimezone(UTC),
        constellation=const.name,
        collection=item.collection_id or "",
        geometry=json.loads(json.dumps(item.geometry)),
        processing_baseline=None if baseline is None else str(baseline),
        assets=assets,
    )


def _has_scheme(href: str) -> bool:
    return "://" in href


def probe_scene(scene: Scene) -> None:
    """Open the header of each of `scene`'s assets (in threads); `InputError('catalog')` for one that
    cannot be opened as a raster (missing, not a GeoTIFF/COG, unreachable). Reads no pixels."""
    from concurrent.futures import ThreadPoolExecutor

    import rasterio

    def probe(asset: AssetRef) -> None:
        try:
            with rasterio.open(asset.href) as src:
                if src.count < 1:
                    raise rasterio.errors.RasterioIOError("no raster bands")
        except rasterio.errors.RasterioError as exc:
            raise InputError(
                "catalog",
                f"item {scene.id} asset for band {asset.band!r}: expected a readable GeoTIFF/COG at "
                f"{asset.href}, got: {_one_line(exc)}",
            ) from None

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(scene.assets)))) as pool:
        list(pool.map(probe, scene.assets.values()))


def scenes_for(items: Iterable[pystac.Item], const: Constellation) -> list[Scene]:
    """Scenes of `const` among `items` (matched by collection and `platform`), sorted by (time, id)."""
    out = []
    for item in items:
        if item.collection_id and item.collection_id not in const.collections:
            continue
        platform = item.properties.get("platform")
        if platform is not None and constellation_of_platform(str(platform)) != const.name:
            continue
        if platform is None and const.name != "sentinel-2":
            continue  # Landsat items must say which satellite they come from
        out.append(scene_from_item(item, const))
    out.sort(key=lambda s: (s.datetime, s.id))
    return out
