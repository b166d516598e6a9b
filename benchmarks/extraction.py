"""Extraction sections: `load_day` vs `odc.stac.load` vs raw rasterio decoding (aligned grid and a
neighbouring UTM zone), and the whole extract step with its archive write (`pipeline.extract_unit`) vs raw
decoding of the same windows, plus the archive rerun cost. Synthetic local data, no network.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import odc.stac
import pystac
import rasterio
import shapely
from affine import Affine
from numpy.typing import NDArray
from odc.geo.geobox import GeoBox
from pyproj import Transformer
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.windows import Window, from_bounds
from scipy.ndimage import gaussian_filter
from shapely.geometry import box, mapping

from benchmarks.common import Row, Section, fmt_s, interleaved, log, median, peak_rss_mib
from oxeo_flows import pipeline
from oxeo_flows.catalog import Scene, scene_from_item
from oxeo_flows.constellations import CONSTELLATIONS
from oxeo_flows.extract import SOURCE_READS, load_day
from oxeo_flows.planning import plan_extraction
from oxeo_flows.tiling import Tile

U16 = NDArray[np.uint16]
F32 = NDArray[np.float32]

# ---------------------------------------------------------------------------------------------------------
# Scenario
# ---------------------------------------------------------------------------------------------------------

SRC_EPSG = 32633  # scenes: WGS 84 / UTM 33N
DST_EPSG = 32634  # cross-zone target: the neighbouring zone 34N
#: Archive tile (700..710 km E, 5090..5100 km N; ~46.0 N 17.6 E, ~30 km west of the 18 E zone boundary).
#: The scenes' top-left corner is the tile's top-left corner, so a scene of >= 1000 px covers it fully.
TILE = Tile(33, False, 10_000, 70, 509)
BANDS = ("green", "swir16", "scl")
BAND_RES_M = {"green": 10, "swir16": 20, "scl": 20}
ALIASES = {"blue": "green", "red": "green", "nir": "green", "nir08": "swir16", "swir22": "swir16"}
CONST3 = dataclasses.replace(CONSTELLATIONS["sentinel-2"], bands=BANDS)
CONST_FULL = CONSTELLATIONS["sentinel-2"]
T0 = datetime(2024, 6, 1, 9, 50, 31, tzinfo=UTC)
REVISIT = timedelta(days=5)

# COG layout: DEFLATE + horizontal predictor, 512 px tiles, overviews (GDAL AUTO).
COG_OPTIONS: dict[str, Any] = {
    "driver": "COG",
    "compress": "DEFLATE",
    "predictor": 2,
    "blocksize": 512,
    "overviews": "AUTO",
}
COARSE_M = 80  # resolution of the smooth fields, bilinearly upsampled to 10 / 20 m
CHUNK = 512  # dask chunk side of the (untimed) chunked odc-stac variant
STRIP_ROWS = 1024  # rows generated and written per step (bounds memory for --size 10980)
BOA_ADD_DN = 1000  # processing baseline >= 04.00: DN = reflectance * 10000 + 1000

# Reflectance of the surface classes per band (vegetation, soil, water, cloud); noise sigma in reflectance.
REFL = {
    "green": {"veg": 0.07, "soil": 0.14, "water": 0.055, "cloud": 0.48, "noise": 0.003},
    "swir16": {"veg": 0.20, "soil": 0.32, "water": 0.006, "cloud": 0.33, "noise": 0.002},
}
SCL_SHADOW, SCL_VEG, SCL_SOIL, SCL_WATER, SCL_CLOUD_MED, SCL_CLOUD_HIGH = 3, 4, 5, 6, 8, 9


# ---------------------------------------------------------------------------------------------------------
# Synthetic data
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyntheticData:
    items: list[pystac.Item]  # 3-band items (green, swir16, scl): odc-stac input
    scenes: list[Scene]  # the same items parsed for the 3-band constellation
    scenes_full: list[Scene]  # 8-band view (aliased assets) for the registry constellation (pipeline)
    transform10: Affine  # the scenes' 10 m grid
    size: int  # 10 m pixels per side
    bytes_on_disk: int
    seconds: float


def _smooth(rng: np.random.Generator, shape: tuple[int, int], sigmas: Sequence[float]) -> F32:
    """Unit-variance smooth random field: sum of Gaussian-filtered white noise at several scales (cells)."""
    out = np.zeros(shape, dtype=np.float32)
    for s in sigmas:
        f = gaussian_filter(rng.standard_normal(shape, dtype=np.float32), s, mode="reflect")
        out += f / max(float(f.std()), 1e-6)
    return (out / max(float(out.std()), 1e-6)).astype(np.float32)


def _upsample(coarse: F32, factor: int, r0: int, r1: int, ncols: int) -> F32:
    """Rows r0..r1 (all ncols columns) of `coarse` bilinearly upsampled by `factor` (pixel-centre aligned)."""

    def axis(n: int, start: int, stop: int) -> tuple[NDArray[np.intp], F32]:
        u = np.clip((np.arange(start, stop) + 0.5) / factor - 0.5, 0.0, n - 1.0)
        i0 = np.minimum(np.floor(u).astype(np.intp), n - 2)
        return i0, (u - i0).astype(np.float32)

    ri, rw = axis(coarse.shape[0], r0, r1)
    ci, cw = axis(coarse.shape[1], 0, ncols)
    rows = coarse[ri] * (1.0 - rw[:, None]) + coarse[ri + 1] * rw[:, None]
    out: F32 = rows[:, ci] * (1.0 - cw) + rows[:, ci + 1] * cw
    return out


@dataclass(frozen=True)
class _DateFields:
    land: F32  # coarse fields (COARSE_M cells)
    cloud: F32
    shadow: F32
    water_thr: float
    cloud_thr: float
    thick_thr: float


def _render(
    band: str, fields: _DateFields, r0: int, r1: int, width: int, rng: np.random.Generator
) -> NDArray[np.generic]:
    """Rows r0..r1 of one band: uint16 DN for reflectance bands, uint8 SCL classes for scl."""
    factor = COARSE_M // BAND_RES_M[band]
    land = _upsample(fields.land, factor, r0, r1, width)
    cloud = _upsample(fields.cloud, factor, r0, r1, width)
    shadow = _upsample(fields.shadow, factor, r0, r1, width)
    water = land < fields.water_thr
    cloudy = cloud > fields.cloud_thr
    shade = (shadow > fields.cloud_thr) & ~cloudy
    if band == "scl":
        scl = np.where(land > 0.0, SCL_VEG, SCL_SOIL).astype(np.uint8)
        scl[water] = SCL_WATER
        scl[shade] = SCL_SHADOW
        scl[cloudy] = SCL_CLOUD_MED
        scl[cloud > fields.thick_thr] = SCL_CLOUD_HIGH
        return scl
    p = REFL[band]
    veg = 1.0 / (1.0 + np.exp(-3.0 * land))  # vegetation fraction
    refl = veg * p["veg"] + (1.0 - veg) * p["soil"]
    refl[water] = p["water"]
    refl[shade] *= 0.3
    refl = np.where(cloudy, p["cloud"] + 0.05 * (cloud - fields.cloud_thr), refl)
    refl += p["noise"] * rng.standard_normal(refl.shape, dtype=np.float32)
    return np.clip(np.rint(refl * 10_000.0) + BOA_ADD_DN, 1, 65_535).astype(np.uint16)


def _write_band(
    path: Path, band: str, fields: _DateFields, size10: int, x0: float, y0: float, seed: int
) -> None:
    res = BAND_RES_M[band]
    n = size10 * 10 // res
    rng = np.random.default_rng(seed)
    dtype = "uint8" if band == "scl" else "uint16"
    transform = Affine(res, 0.0, x0, 0.0, -res, y0)
    profile = {"width": n, "height": n, "count": 1, "dtype": dtype, "crs": f"EPSG:{SRC_EPSG}", "nodata": 0}
    with rasterio.open(path, "w", transform=transform, **profile, **COG_OPTIONS) as dst:
        for r0 in range(0, n, STRIP_ROWS):
            r1 = min(r0 + STRIP_ROWS, n)
            dst.write(_render(band, fields, r0, r1, n, rng), 1, window=Window(0, r0, n, r1 - r0))


def _footprint_lonlat(x0: float, y0: float, extent_m: float) -> dict[str, Any]:
    to_ll = Transformer.from_crs(SRC_EPSG, 4326, always_xy=True)
    rect = shapely.segmentize(box(x0, y0 - extent_m, x0 + extent_m, y0), extent_m / 16)

    def fn(xy: NDArray[np.float64]) -> NDArray[np.float64]:
        lon, lat = to_ll.transform(xy[:, 0], xy[:, 1])
        return np.round(np.column_stack([lon, lat]), 8)

    return dict(mapping(shapely.transform(rect, fn)))


def _asset(href: Path, band: str, size10: int, x0: float, y0: float) -> pystac.Asset:
    res = BAND_RES_M[band]
    n = size10 * 10 // res
    asset = pystac.Asset(str(href), media_type=pystac.MediaType.COG, roles=["data"])
    proj = ProjectionExtension.ext(asset)
    proj.shape = [n, n]
    proj.transform = [float(res), 0.0, x0, 0.0, -float(res), y0]
    if band == "scl":
        rb = RasterBand.create(nodata=0, data_type=DataType.UINT8, spatial_resolution=res)
    else:
        rb = RasterBand.create(
            nodata=0, data_type=DataType.UINT16, scale=1e-4, offset=-0.1, spatial_resolution=res
        )
    RasterExtension.ext(asset).bands = [rb]
    return asset


def generate(root: Path, size: int, dates: int, seed: int = 20240601) -> SyntheticData:
    """Write `dates` Sentinel-2-like scenes (green 10 m, swir16 + scl 20 m COGs) and their STAC items."""
    t_start = time.perf_counter()
    x0, y0 = float(TILE.bounds[0]), float(TILE.bounds[3])  # scene top-left = tile top-left
    extent = size * 10.0
    nc = int(np.ceil(extent / COARSE_M)) + 2
    rng = np.random.default_rng(seed)
    land = _smooth(rng, (nc, nc), (1.5, 5.0, 20.0))  # 120 m .. 1.6 km structure
    water_thr = float(np.quantile(land, 0.08))
    geometry = _footprint_lonlat(x0, y0, extent)
    bbox = [float(v) for v in shapely.geometry.shape(geometry).bounds]
    items: list[pystac.Item] = []
    full_items: list[pystac.Item] = []
    nbytes = 0
    for i in range(dates):
        when = T0 + i * REVISIT
        cloud = _smooth(rng, (nc, nc), (4.0, 10.0))
        cover = float(rng.uniform(0.0, 0.35))
        fields = _DateFields(
            land=land,
            cloud=cloud,
            shadow=np.roll(cloud, (-4, -2), axis=(0, 1)),  # shadow ~360 m NNW of its cloud
            water_thr=water_thr,
            cloud_thr=float(np.quantile(cloud, 1.0 - cover)),
            thick_thr=float(np.quantile(cloud, 1.0 - cover / 2.0)),
        )
        item_id = f"S2A_33TXL_{when:%Y%m%d}_0_L2A"
        item_dir = root / item_id
        item_dir.mkdir(parents=True)
        item = pystac.Item(
            item_id,
            geometry,
            bbox,
            when,
            {
                "platform": "sentinel-2a",
                "constellation": "sentinel-2",
                "s2:processing_baseline": "05.10",
                "earthsearch:boa_offset_applied": False,
                "eo:cloud_cover": round(100.0 * cover, 2),
            },
            collection="sentinel-2-l2a",
        )
        ProjectionExtension.add_to(item)
        RasterExtension.add_to(item)
        ProjectionExtension.ext(item).code = f"EPSG:{SRC_EPSG}"
        for b, band in enumerate(BANDS):
            path = item_dir / f"{band}.tif"
            _write_band(path, band, fields, size, x0, y0, seed * 1000 + i * 10 + b)
            nbytes += path.stat().st_size
            item.add_asset(band, _asset(path, band, size, x0, y0))
        items.append(item)
        full = item.clone()
        for alias, band in ALIASES.items():
            full.add_asset(alias, item.assets[band].clone())
        full_items.append(full)
    return SyntheticData(
        items=items,
        scenes=[scene_from_item(it, CONST3) for it in items],
        scenes_full=[scene_from_item(it, CONST_FULL) for it in full_items],
        transform10=Affine(10.0, 0.0, x0, 0.0, -10.0, y0),
        size=size,
        bytes_on_disk=nbytes,
        seconds=time.perf_counter() - t_start,
    )


# ---------------------------------------------------------------------------------------------------------
# Target grids
# ---------------------------------------------------------------------------------------------------------


def aligned_geobox(data: SyntheticData) -> tuple[GeoBox, str]:
    if data.size * 10 >= TILE.size_m:
        return TILE.geobox(10), f"tile {TILE.id} at 10 m (EPSG:{SRC_EPSG}), fully covered by the scenes"
    gb = GeoBox((data.size, data.size), data.transform10, f"EPSG:{SRC_EPSG}")
    return gb, f"the scenes' own 10 m grid (EPSG:{SRC_EPSG}; scene smaller than tile {TILE.id})"


def cross_zone_geobox(data: SyntheticData, shape: tuple[int, int], edge: bool = False) -> tuple[GeoBox, str]:
    """`shape` 10 m pixels in EPSG:32634 on the zone's 10 m lattice (like a Tile grid), centred on the scene
    centre (fully covered when the scene is >= ~1.1x the grid) or, with `edge`, on the midpoint of the
    scene's west edge (the scene covers about half of it: a source region smaller than the grid)."""
    half = data.size * 5.0
    px = data.transform10.c + (0.0 if edge else half)
    cx, cy = Transformer.from_crs(SRC_EPSG, DST_EPSG, always_xy=True).transform(px, data.transform10.f - half)
    ny, nx = shape
    left = round((cx - nx * 5.0) / 10.0) * 10.0
    top = round((cy + ny * 5.0) / 10.0) * 10.0
    gb = GeoBox(shape, Affine(10.0, 0.0, left, 0.0, -10.0, top), f"EPSG:{DST_EPSG}")
    where = "the midpoint of the scenes' west edge" if edge else "the scene centre"
    return gb, f"{ny}x{nx} px at 10 m in EPSG:{DST_EPSG}, 10 m lattice, centred on {where}"


# ---------------------------------------------------------------------------------------------------------
# The three extraction paths
# ---------------------------------------------------------------------------------------------------------


def _by_day(scenes: Sequence[Scene]) -> list[list[Scene]]:
    days: dict[date, list[Scene]] = defaultdict(list)
    for s in scenes:
        days[s.solar_day].append(s)
    return [days[d] for d in sorted(days)]


def run_ours(days: Sequence[Sequence[Scene]], geobox: GeoBox) -> list[U16]:
    return [load_day(day, CONST3, geobox).data for day in days]


def run_odc(items: Sequence[pystac.Item], geobox: GeoBox, chunk: int | None = None) -> Any:
    """One `odc.stac.load` call; unchunked (eager), or dask-chunked and computed synchronously."""
    ds = odc.stac.load(
        items,
        bands=list(BANDS),
        geobox=geobox,
        resampling="nearest",
        groupby="solar_day",
        dtype="uint16",
        chunks=None if chunk is None else {"x": chunk, "y": chunk},
        pool=None,
    )
    return ds if chunk is None else ds.compute(scheduler="synchronous")


def raw_windows(scene: Scene, geobox: GeoBox, bands: Sequence[str] = BANDS) -> dict[str, Window]:
    """Per band: the source window covering `geobox` (same CRS), clipped to the raster."""
    out = {}
    for band in bands:
        a = scene.assets[band]
        win = from_bounds(*geobox.boundingbox, transform=Affine(*a.transform))
        win = win.round_offsets().round_lengths()
        out[band] = win.intersection(Window(0, 0, a.shape[1], a.shape[0]))
    return out


def run_raw(scenes: Sequence[Scene], windows: dict[str, Window]) -> list[NDArray[np.generic]]:
    """`src.read(1, window=...)` of every band of every scene: the pure decode cost (one thread)."""
    out = []
    for scene in scenes:
        for band, window in windows.items():
            with rasterio.open(scene.assets[band].href) as src:
                out.append(src.read(1, window=window))
    return out


def odc_array(ds: Any) -> U16:
    return np.stack([np.asarray(ds[b].values) for b in BANDS], axis=1)


def raw_as_grid(raw: Sequence[NDArray[np.generic]], shape: tuple[int, int], n_dates: int) -> U16:
    """Raw windows replicated to 10 m and stacked (time, band, y, x) for the ours-vs-raw sanity check."""
    out = np.zeros((n_dates, len(BANDS), *shape), dtype=np.uint16)
    for i, arr in enumerate(raw):
        t, b = divmod(i, len(BANDS))
        k = BAND_RES_M[BANDS[b]] // 10
        rep = np.repeat(np.repeat(arr, k, axis=0), k, axis=1)[: shape[0], : shape[1]]
        out[t, b, : rep.shape[0], : rep.shape[1]] = rep
    return out


def _per_band_diff(a: U16, b: U16) -> dict[str, int]:
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    return {band: int(np.count_nonzero(a[:, i] != b[:, i])) for i, band in enumerate(BANDS)}


def _coverage_diff(a: U16, b: U16) -> int:
    """Pixels that are no-data (0) in exactly one of the two results."""
    return int(np.count_nonzero((a == 0) != (b == 0)))


def _pct(n: int, of: int) -> str:
    return f"{100.0 * n / max(of, 1):.3f} % of {of:,}"


def _bands(d: dict[str, int]) -> str:
    return ", ".join(f"{b} {n}" for b, n in d.items())


# ---------------------------------------------------------------------------------------------------------
# Archive: the whole extract step (plan + extract_unit into a fresh store), then a rerun
# ---------------------------------------------------------------------------------------------------------


def archive_run(data: SyntheticData, storage: str) -> dict[str, Any]:
    """Plan + extract into an empty storage (timed apart), then plan + extract again (must do nothing).

    `window="year"` puts all dates into one work unit, as the `extract-write` section asks for.
    """
    reads0 = SOURCE_READS.value
    t0 = time.perf_counter()
    plan1 = plan_extraction([TILE], data.scenes_full, CONST_FULL, storage, window="year")
    t1 = time.perf_counter()
    summaries = [pipeline.extract_unit(u, storage) for u in plan1.units]
    t2 = time.perf_counter()
    reads1 = SOURCE_READS.value - reads0
    reads0 = SOURCE_READS.value
    t = time.perf_counter()
    plan2 = plan_extraction([TILE], data.scenes_full, CONST_FULL, storage, window="year")
    for u in plan2.units:
        pipeline.extract_unit(u, storage)
    second = time.perf_counter() - t
    return {
        "plan_s": t1 - t0,
        "extract_s": t2 - t1,
        "first_s": t2 - t0,
        "second_s": second,
        "first_units": len(plan1.units),
        "first_days": sum(len(u.days) for u in plan1.units),
        "first_source_reads": reads1,
        "slices_written": sum(s.slices_written for s in summaries),
        "errors": [e for s in summaries for e in s.errors],
        "second_units": len(plan2.units),
        "second_days_present": plan2.days_present,
        "second_source_reads": SOURCE_READS.value - reads0,
        "store_bytes": sum(f.stat().st_size for f in Path(storage).rglob("*") if f.is_file()),
    }


# ---------------------------------------------------------------------------------------------------------
# Section runner
# ---------------------------------------------------------------------------------------------------------


def run(root: Path, size: int, dates: int, repeats: int) -> Section:
    """All extraction measurements on `dates` synthetic scenes of `size` px, in this process."""
    section = Section("extract")
    failures = section.failures
    log(f"[extract] generating {dates} scenes of {size} px (10 m) in {root} ...")
    data = generate(root / "scenes", size, dates)
    log(f"  {data.seconds:.1f} s, {data.bytes_on_disk / 2**20:.1f} MiB of COGs")
    rss_data = peak_rss_mib()
    days = _by_day(data.scenes)
    n_days = len(days)

    # aligned grid -----------------------------------------------------------------------------------------
    gb, gb_desc = aligned_geobox(data)
    shape = (int(gb.shape[0]), int(gb.shape[1]))
    windows = raw_windows(data.scenes[0], gb)
    out_px = n_days * len(BANDS) * gb.shape[0] * gb.shape[1]
    log(f"[extract] aligned grid: {gb_desc}; timing ours / odc-stac / raw x{repeats} ...")
    t_al, r_al = interleaved(
        {
            "ours": lambda: run_ours(days, gb),
            "odc": lambda: run_odc(data.items, gb),
            "raw": lambda: run_raw(data.scenes, windows),
        },
        repeats,
    )
    ours = np.stack(r_al["ours"])
    diff_odc = _per_band_diff(ours, odc_array(r_al["odc"]))
    diff_raw = _per_band_diff(ours, raw_as_grid(r_al["raw"], shape, n_days))
    raw_src_px = sum(int(a.size) for a in r_al["raw"])
    if sum(diff_odc.values()):
        failures.append(f"aligned grid: ours and odc-stac differ in {sum(diff_odc.values())} pixels")
    if sum(diff_raw.values()):
        failures.append(f"aligned grid: ours and raw windowed reads differ in {sum(diff_raw.values())} px")
    del ours, r_al

    # neighbouring zone ------------------------------------------------------------------------------------
    gbx, gbx_desc = cross_zone_geobox(data, shape)
    log(f"[extract] cross-zone grid: {gbx_desc}; timing ours / odc-stac x{repeats} ...")
    t_x, r_x = interleaved(
        {"ours": lambda: run_ours(days, gbx), "odc": lambda: run_odc(data.items, gbx)},
        repeats,
    )
    ours_x = np.stack(r_x["ours"])
    diff_x = _per_band_diff(ours_x, odc_array(r_x["odc"]))
    nodata_x = int(np.count_nonzero(ours_x == 0))
    del r_x
    # Untimed, one run each: the two ways odc-stac's output region differs from the whole grid.
    log(
        f"[extract] cross-zone, untimed: odc-stac with {CHUNK} px dask chunks; grid across the scene edge ..."
    )
    odc_chunked = odc_array(run_odc(data.items, gbx, chunk=CHUNK))
    diff_chunked = _per_band_diff(ours_x, odc_chunked)
    cov_chunked = _coverage_diff(ours_x, odc_chunked)
    del ours_x, odc_chunked
    gbe, gbe_desc = cross_zone_geobox(data, shape, edge=True)
    ours_e = np.stack(run_ours(days, gbe))
    odc_e = odc_array(run_odc(data.items, gbe))
    diff_edge = _per_band_diff(ours_e, odc_e)
    cov_edge = _coverage_diff(ours_e, odc_e)
    covered_edge = int(np.count_nonzero(ours_e != 0))
    del ours_e, odc_e

    # extract step + archive write vs raw decode of the same windows; rerun ------------------------------
    tile_gb = TILE.geobox(10)
    windows_full = raw_windows(data.scenes_full[0], tile_gb, CONST_FULL.bands)
    log(
        f"[extract] extract-write: raw decode of {len(CONST_FULL.bands)} bands vs plan + extract_unit into a "
        f"fresh store, then rerun; warm-up + x{repeats} ..."
    )
    raw_s: list[float] = []
    runs = []
    for i in range(repeats + 1):  # round 0 is the warm-up (imports, zarr codecs)
        t = time.perf_counter()
        raw_full = run_raw(data.scenes_full, windows_full)
        raw_s.append(time.perf_counter() - t)
        storage = str(root / f"archive-{i}")
        runs.append(archive_run(data, storage))
        shutil.rmtree(storage, ignore_errors=True)
    raw_full_px = sum(int(a.size) for a in raw_full)
    del raw_full
    warm, runs, raw_s = runs[0], runs[1:], raw_s[1:]
    ew_px = warm["slices_written"] * len(CONST_FULL.bands) * tile_gb.shape[0] * tile_gb.shape[1]
    ew_s = median([r["extract_s"] for r in runs])
    ew_raw = median(raw_s)
    ew_mpx, ew_raw_mpx = ew_px / ew_s / 1e6, ew_px / ew_raw / 1e6
    a_first = median([r["first_s"] for r in runs])
    a_second = median([r["second_s"] for r in runs])
    for r in (warm, *runs):
        if r["second_units"] or r["second_source_reads"]:
            failures.append(
                f"rerun planned {r['second_units']} units / read {r['second_source_reads']} assets"
            )
        if r["errors"] or r["slices_written"] != n_days:
            failures.append(f"first run wrote {r['slices_written']} of {n_days} slices: {r['errors']}")
        if r["first_units"] != 1:
            failures.append(f"extract-write: expected one planned unit, got {r['first_units']}")
    rss = peak_rss_mib()

    # report ------------------------------------------------------------------------------------------------
    med = {k: median(v) for k, v in t_al.items()}
    medx = {k: median(v) for k, v in t_x.items()}
    mpx = {k: out_px / v / 1e6 for k, v in med.items()}
    mpxx = {k: out_px / v / 1e6 for k, v in medx.items()}
    n_x = out_px
    al_diff = sum(diff_odc.values()) + sum(diff_raw.values())
    last = runs[-1]
    section.rows = [
        Row(
            "aligned load_day vs odc-stac, Mpx/s",
            f"{mpx['ours']:.1f}",
            f"{mpx['odc']:.1f}",
            f"{mpx['ours'] / mpx['odc']:.2f}",
        ),
        Row(
            "aligned load_day vs raw decode, Mpx/s",
            f"{mpx['ours']:.1f}",
            f"{mpx['raw']:.1f}",
            f"{mpx['ours'] / mpx['raw']:.2f}",
        ),
        Row(
            "aligned: px differing (odc / raw)",
            "-",
            f"{sum(diff_odc.values())} / {sum(diff_raw.values())}",
            "-",
            "0",
            al_diff == 0,
        ),
        Row(
            "cross-zone warp vs odc-stac, Mpx/s",
            f"{mpxx['ours']:.1f}",
            f"{mpxx['odc']:.1f}",
            f"{mpxx['ours'] / mpxx['odc']:.2f}",
        ),
        Row("cross-zone: px differing (unchunked)", "-", f"{sum(diff_x.values())}"),
        Row(f"  odc {CHUNK} px chunks (untimed)", "-", f"{sum(diff_chunked.values())}"),
        Row("  grid across scene edge (untimed)", "-", f"{sum(diff_edge.values())}"),
        Row(
            "extract-write: extract_unit vs raw, Mpx/s",
            f"{ew_mpx:.1f}",
            f"{ew_raw_mpx:.1f}",
            f"{ew_mpx / ew_raw_mpx:.2f}",
            ">= 0.60",
            ew_mpx / ew_raw_mpx >= 0.6,
        ),
        Row("archive: plan + extract, 1st run, s", fmt_s(a_first)),
        Row(
            "archive: rerun vs 1st run, s",
            f"{a_second:.4f}",
            fmt_s(a_first),
            f"{a_second / a_first:.4f}",
        ),
        Row(
            "archive rerun: units / source reads",
            f"{last['second_units']} / {last['second_source_reads']}",
            f"{last['first_units']} / {last['first_source_reads']}",
            "-",
            "0 / 0",
            all(r["second_units"] == 0 and r["second_source_reads"] == 0 for r in (warm, *runs)),
        ),
        Row("extract section peak RSS, MiB", f"{rss:.0f}", f"{rss_data:.0f}"),
    ]
    section.notes = [
        f"extract data: {dates} scenes x {size} px (10 m), {data.bytes_on_disk / 2**20:.1f} MiB of COGs, "
        f"generated in {data.seconds:.1f} s; aligned grid: {gb_desc}",
        f"aligned: {out_px / 1e6:.1f} Mpx out ({n_days} dates x {len(BANDS)} bands x "
        f"{gb.shape[0]}x{gb.shape[1]}) in {fmt_s(med['ours'])} s (ours), {fmt_s(med['odc'])} s (odc-stac), "
        f"{fmt_s(med['raw'])} s (raw, {raw_src_px / 1e6:.1f} Mpx of source decoded)",
        f"cross-zone: {gbx_desc} ({nodata_x} no-data px in ours); unchunked "
        f"{_pct(sum(diff_x.values()), n_x)} ({_bands(diff_x)}); {CHUNK} px chunks "
        f"{_pct(sum(diff_chunked.values()), n_x)}, {cov_chunked} in coverage; edge grid "
        f"{_pct(sum(diff_edge.values()), covered_edge)} covered px, {cov_edge} in coverage",
        f"extract-write: {ew_px / 1e6:.0f} Mpx out ({warm['slices_written']} slices x "
        f"{len(CONST_FULL.bands)} bands x 1000x1000) in {fmt_s(ew_s)} s (extract_unit; plan "
        f"{median([r['plan_s'] for r in runs]):.3f} s apart) vs {fmt_s(ew_raw)} s raw decode "
        f"({raw_full_px / 1e6:.1f} Mpx of source, one thread); store {last['store_bytes'] / 2**20:.1f} MiB",
    ]
    section.result = {
        "config": {"repeats": repeats, "size": size, "dates": dates, "bands": list(BANDS)},
        "data": {"seconds": data.seconds, "bytes": data.bytes_on_disk, "cog_options": COG_OPTIONS},
        "aligned": {
            "grid": gb_desc,
            "output_px": out_px,
            "raw_source_px": raw_src_px,
            "seconds": t_al,
            "median_s": med,
            "mpx_per_s": mpx,
            "ratio_ours_odc": mpx["ours"] / mpx["odc"],
            "ratio_ours_raw": mpx["ours"] / mpx["raw"],
            "differing_px_odc": diff_odc,
            "differing_px_raw": diff_raw,
        },
        "cross_zone": {
            "grid": gbx_desc,
            "output_px": n_x,
            "seconds": t_x,
            "median_s": medx,
            "mpx_per_s": mpxx,
            "ratio_ours_odc": mpxx["ours"] / mpxx["odc"],
            "differing_px_odc": diff_x,
            "nodata_px_ours": nodata_x,
            "chunked_untimed": {
                "chunk_px": CHUNK,
                "differing_px_odc": diff_chunked,
                "coverage_differing_px": cov_chunked,
            },
            "edge_untimed": {
                "grid": gbe_desc,
                "covered_px_ours": covered_edge,
                "differing_px_odc": diff_edge,
                "coverage_differing_px": cov_edge,
            },
        },
        "extract_write": {
            "tile": TILE.id,
            "bands": list(CONST_FULL.bands),
            "output_px": ew_px,
            "raw_source_px": raw_full_px,
            "raw_seconds": raw_s,
            "extract_seconds": [r["extract_s"] for r in runs],
            "median_extract_s": ew_s,
            "median_raw_s": ew_raw,
            "mpx_per_s": {"extract_unit": ew_mpx, "raw": ew_raw_mpx},
            "ratio_extract_raw": ew_mpx / ew_raw_mpx,
        },
        "archive": {
            "tile": TILE.id,
            "window": "year",
            "warmup": warm,
            "runs": runs,
            "median_first_s": a_first,
            "median_second_s": a_second,
            "ratio_second_first": a_second / a_first,
        },
        "peak_rss_mib": rss,
        "peak_rss_after_data_mib": rss_data,
    }
    return section
