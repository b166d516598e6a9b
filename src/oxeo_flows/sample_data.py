"""Small, deterministic, physically plausible synthetic STAC catalog for offline runs and tests.

`write_sample_data` writes a static, self-contained STAC catalog (pystac) with Sentinel-2 L2A
items (Earth Search v1 conventions) and, optionally, Landsat Collection 2 Level-2 items over a
synthetic lake in UTM zone 33N (EPSG:32633), plus the lake's AOI (GeoJSON, lon/lat) and a
ground-truth table (truth.csv).

Scene model (distances in metres, reflectance 0-1, times UTC):

* Scene: a `size_m` square centred on (500000, 4990000), the corner of four 10 km grid tiles.
* Lake: ellipse centred on (500120, 4989920), semi-axes a(t) (x) and 0.75 a(t) (y); a(t) is a
  seasonal bump from 900 m (winter, summer) to 1250 m on 2024-04-14 (spring). A pixel is water
  when its centre lies inside the ellipse; the ring between the current and the maximum shore
  is exposed lake bed (bare soil).
* Land: smooth seeded vegetation / bare-soil mix; a sinuous 60 m wide river runs along the
  north of the scene, outside the AOI (>= 450 m from the maximum shore): AOI clipping matters.
* Clouds: seeded smooth fields (Gaussian blobs + cosine modes) thresholded per date; opaque
  clouds cast a shadow 300 m to the north-north-west (sun in the south-south-east at ~10:00
  UTC). A ~300 m patch at the lake centre stays clear on every date, so every item has a
  clear-water reference.
* Noise: seeded Gaussian reflectance noise, sigma 0.0025 clipped to +-0.005, drawn per 40 m cell
  for Sentinel-2 (per 30 m pixel for Landsat): white 10 m noise of that size would not fit the
  size budget (~4 MB in all) with DEFLATE.

Sentinel-2 SCL at 20 m is the MAJORITY of the four 10 m classes of each block; ties go to the
more conservative class: cloud high (9) > cloud medium (8) > cirrus (10) > cloud shadow (3) >
water (6) > vegetation (4) > bare soil (5).

MGRS tiles follow the real grid: the scene straddles 33TVK (west of 500000 E) and 33TWK.

truth.csv has one row per (constellation, solar day): water area = lake pixels (centre inside the
ellipse of that date) x pixel area on that sensor's grid (10 m for Sentinel-2, 30 m for Landsat);
the AOI fractions count pixels whose centre lies inside the AOI polygon (EPSG:32633, before its
reprojection to lon/lat).
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pystac
import rasterio
import shapely
import shapely.affinity
from numpy.typing import NDArray
from pyproj import Transformer
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.crs import CRS
from rasterio.transform import Affine
from shapely.geometry import Point, Polygon, box, mapping

from oxeo_flows.errors import InputError

__all__ = ["SampleData", "write_sample_data"]

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]

EPSG = 32633
PROJ_CODE = "EPSG:32633"
CATALOG_ID = "oxeo-sample"
S2_COLLECTION = "sentinel-2-l2a"
LANDSAT_COLLECTION = "landsat-c2-l2"

CENTRE_X = 500_000.0  # scene centre, UTM 33N easting (m)
CENTRE_Y = 4_990_000.0  # scene centre, UTM 33N northing (m)
LAKE_DX, LAKE_DY = 120.0, -80.0  # lake centre relative to the scene centre (m)
A_MIN_M, A_MAX_M = 900.0, 1250.0  # lake x semi-axis range (m)
B_RATIO = 0.75  # y semi-axis / x semi-axis
PEAK_DOY = 105.0  # day of year of the largest lake (2024-04-14)
PEAK_WIDTH_DAYS = 45.0  # e-folding half width of the seasonal bump (days)
AOI_BUFFER_M = 150.0
SCENE_MARGIN_M = 150.0
DEFAULT_SIZE_M = 3200
MAX_SIZE_M = 10_000
RIVER_Y_M = 1380.0  # river centre line, relative to the scene centre (m)
RIVER_HALF_WIDTH_M = 30.0
RIVER_MEANDER_M = 40.0
SHADOW_OFFSET_M = (-100.0, 280.0)  # shadow position minus cloud position (m, ~300 m to NNW)
CLEAR_CORE_SIGMA_M = 150.0
NOISE_SIGMA = 0.0025  # reflectance noise standard deviation
NOISE_CLIP = 0.005  # reflectance noise is clipped to +-NOISE_CLIP
NOISE_CELL_M = 40.0  # Sentinel-2 noise is drawn per 40 m cell (Landsat: per 30 m pixel)

# SCL classes (Sentinel-2 L2A scene classification).
SCL_NODATA, SCL_SHADOW, SCL_VEG, SCL_SOIL, SCL_WATER = 0, 3, 4, 5, 6
SCL_CLOUD_MED, SCL_CLOUD_HIGH, SCL_CIRRUS = 8, 9, 10
SCL_PRIORITY = (9, 8, 10, 3, 6, 4, 5, 0)  # tie-break order of the 2x2 majority

# Landsat C2 QA_PIXEL values as found in real USGS Collection 2 L2 products (bit 0 fill, 1 dilated
# cloud, 2 cirrus, 3 cloud, 4 cloud shadow, 6 clear, 7 water, 8-9 cloud confidence, 10-11 shadow
# confidence, 12-13 snow/ice confidence, 14-15 cirrus confidence):
QA_FILL = 1  # bit 0
QA_CLEAR_LAND = 21824  # bits 6 clear + low confidences (8, 10, 12, 14)
QA_CLEAR_WATER = 21952  # 21824 + bit 7 water
QA_CLOUD = 22280  # bit 3 cloud + bits 8-9 high cloud confidence + 10, 12, 14 (clear unset)
QA_DILATED = 21762  # bit 1 dilated cloud + low confidences (clear unset)
QA_DILATED_WATER = 21890  # 21762 + bit 7 water
QA_SHADOW_LAND = 23888  # bit 4 shadow + bits 10-11 high shadow confidence + clear bit 6 (C2 rule)
QA_SHADOW_WATER = 24016  # 23888 + bit 7 water
QA_CIRRUS = 54596  # bit 2 cirrus + bits 14-15 high cirrus confidence + clear bit 6

# Surface reflectance (0-1) in the order blue, green, red, nir (B08), nir08 (B8A), swir16, swir22.
# Clear water: typical Sentinel-2 L2A values over clear inland water (e.g. Pahlevan et al. 2017,
# Remote Sens. Environ. 201; water absorbs strongly beyond 700 nm so NIR/SWIR stay near zero).
WATER = np.array([0.060, 0.055, 0.035, 0.015, 0.012, 0.006, 0.004])
# Green vegetation: USGS Spectral Library v7 (Kokaly et al. 2017) grass / leaf spectra resampled
# to the MSI bands.
VEGETATION = np.array([0.030, 0.070, 0.040, 0.350, 0.360, 0.200, 0.100])
# Bare soil: USGS Spectral Library v7 brown loam / sandy soil spectra resampled to MSI.
SOIL = np.array([0.100, 0.140, 0.180, 0.250, 0.270, 0.320, 0.280])
# Clouds: typical optically thick cloud reflectance, flat in VNIR and lower in the SWIR (ice/water
# droplet absorption), e.g. Sentinel-2 L2A values over cumulus.
CLOUD_MEDIUM = np.array([0.45, 0.45, 0.46, 0.48, 0.48, 0.33, 0.23])
CLOUD_HIGH = np.array([0.62, 0.62, 0.63, 0.65, 0.65, 0.37, 0.27])
CIRRUS_ADD = 0.08  # thin cirrus adds ~0.08 reflectance to every band
SHADOW_FACTOR = 0.3  # cloud shadow: underlying surface x 0.3

S2_SCALE, S2_OFFSET, S2_BOA_ADD_DN = 0.0001, -0.1, 1000
LS_SCALE, LS_OFFSET = 0.0000275, -0.2

# (asset key, band name, resolution m, centre wavelength um, index in the reflectance stack)
S2_BANDS: tuple[tuple[str, str, int, float, int], ...] = (
    ("blue", "B02", 10, 0.490, 0),
    ("green", "B03", 10, 0.560, 1),
    ("red", "B04", 10, 0.665, 2),
    ("nir", "B08", 10, 0.842, 3),
    ("nir08", "B8A", 20, 0.865, 4),
    ("swir16", "B11", 20, 1.610, 5),
    ("swir22", "B12", 20, 2.190, 6),
)
LS_BANDS: tuple[tuple[str, str, int, float, int], ...] = (
    ("blue", "SR_B2", 30, 0.48, 0),
    ("green", "SR_B3", 30, 0.56, 1),
    ("red", "SR_B4", 30, 0.655, 2),
    ("nir08", "SR_B5", 30, 0.865, 4),
    ("swir16", "SR_B6", 30, 1.61, 5),
    ("swir22", "SR_B7", 30, 2.2, 6),
)

TRUTH_COLUMNS = (
    "item_ids",
    "datetime",
    "solar_day",
    "constellation",
    "pixel_size_m",
    "true_water_area_m2",
    "aoi_cloud_fraction",
    "aoi_nodata_fraction",
)

_TO_LONLAT = Transformer.from_crs(EPSG, 4326, always_xy=True)
_CRS = CRS.from_epsg(EPSG)


@dataclass(frozen=True)
class SampleData:
    """Paths of a written sample catalog."""

    root: Path
    catalog: Path  # root/catalog.json
    aoi: Path  # root/aoi.geojson
    truth: Path  # root/truth.csv


# --------------------------------------------------------------------------------------------------
# Smooth fields, grids and the scene model (coordinates u, v: metres relative to the scene centre)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Field:
    """Smooth scalar field: constant + Gaussian blobs (u, v, sigma m, amp) + cosine modes."""

    const: float = 0.0
    blobs: tuple[tuple[float, float, float, float], ...] = ()
    modes: tuple[tuple[float, float, float, float], ...] = ()  # (ku, kv rad/m, phase, amplitude)

    def __call__(self, u: FloatArray, v: FloatArray) -> FloatArray:
        out = np.full(np.broadcast_shapes(u.shape, v.shape), self.const, dtype=np.float64)
        for cu, cv, sigma, amp in self.blobs:
            out += amp * np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2.0 * sigma * sigma))
        for ku, kv, phase, amp in self.modes:
            out += amp * np.cos(ku * u + kv * v + phase)
        return out


def _modes(
    rng: np.random.Generator, n: int, wavelength_m: tuple[float, float], std: float
) -> tuple[tuple[float, float, float, float], ...]:
    """`n` random cosine modes, log-uniform wavelengths (m), total standard deviation `std`."""
    amp = std * math.sqrt(2.0 / n)
    lam = np.exp(rng.uniform(math.log(wavelength_m[0]), math.log(wavelength_m[1]), n))
    theta = rng.uniform(0.0, math.pi, n)
    phase = rng.uniform(0.0, 2.0 * math.pi, n)
    k = 2.0 * math.pi / lam
    return tuple(
        (float(k[i] * math.cos(theta[i])), float(k[i] * math.sin(theta[i])), float(phase[i]), amp)
        for i in range(n)
    )


@dataclass(frozen=True)
class _Grid:
    """North-up pixel grid in EPSG:32633: top-left corner (m), pixel size (m), shape."""

    x0: float
    y0: float
    res: float
    width: int
    height: int

    @property
    def transform(self) -> Affine:
        return Affine(self.res, 0.0, self.x0, 0.0, -self.res, self.y0)

    def centres(self) -> tuple[FloatArray, FloatArray]:
        """Pixel-centre coordinates relative to the scene centre (u east, v north; m), 2-D."""
        u = self.x0 - CENTRE_X + self.res * (np.arange(self.width) + 0.5)
        v = self.y0 - CENTRE_Y - self.res * (np.arange(self.height) + 0.5)
        uu, vv = np.meshgrid(u, v)
        return uu, vv


def _lake_a(when: datetime) -> float:
    """Lake x semi-axis (m) on a date: seasonal bump, 900 m in winter, 1250 m on 2024-04-14."""
    doy = when.timetuple().tm_yday
    d = (doy - PEAK_DOY + 182.625) % 365.25 - 182.625
    return A_MIN_M + (A_MAX_M - A_MIN_M) * math.exp(-((d / PEAK_WIDTH_DAYS) ** 2))


def _in_lake(u: FloatArray, v: FloatArray, a: float) -> BoolArray:
    """True where (u, v) lies inside the lake ellipse with x semi-axis `a` (m)."""
    b = B_RATIO * a
    inside: BoolArray = ((u - LAKE_DX) / a) ** 2 + ((v - LAKE_DY) / b) ** 2 < 1.0
    return inside


def _in_river(u: FloatArray, v: FloatArray) -> BoolArray:
    """True inside the sinuous river strip along the north of the scene."""
    centre = RIVER_Y_M + RIVER_MEANDER_M * np.sin(2.0 * math.pi * u / 900.0)
    inside: BoolArray = np.abs(v - centre) < RIVER_HALF_WIDTH_M
    return inside


def _aoi_polygon_utm() -> Polygon:
    """AOI in EPSG:32633: the maximum lake ellipse buffered by 150 m (>= 128 vertices)."""
    circle = Point(0.0, 0.0).buffer(1.0, quad_segs=64)
    ellipse = shapely.affinity.scale(circle, A_MAX_M, B_RATIO * A_MAX_M, origin=(0.0, 0.0))
    ellipse = shapely.affinity.translate(ellipse, CENTRE_X + LAKE_DX, CENTRE_Y + LAKE_DY)
    aoi = ellipse.buffer(AOI_BUFFER_M, quad_segs=32)
    assert isinstance(aoi, Polygon)
    return aoi


def _to_lonlat(geom: Polygon) -> Polygon:
    """Reproject a UTM 33N polygon to lon/lat (degrees, rounded to 1e-8)."""

    def fn(coords: FloatArray) -> FloatArray:
        lon, lat = _TO_LONLAT.transform(coords[:, 0], coords[:, 1])
        return np.round(np.column_stack([lon, lat]), 8)

    out = shapely.transform(geom, fn)
    assert isinstance(out, Polygon)
    return out


@dataclass(frozen=True, eq=False)
class _Surface:
    """Static land cover at the pixel centres (u, v: m from the scene centre) of one grid."""

    grid: _Grid
    u: FloatArray
    v: FloatArray
    veg_frac: FloatArray  # vegetation fraction 0-1 (rest: bare soil)
    river: BoolArray
    bed: BoolArray  # inside the maximum lake ellipse

    @classmethod
    def sample(cls, veg: _Field, grid: _Grid) -> _Surface:
        u, v = grid.centres()
        frac = np.clip(0.5 + 3.0 * veg(u, v), 0.0, 1.0)
        return cls(grid, u, v, frac, _in_river(u, v), _in_lake(u, v, A_MAX_M))

    def at(self, a: float) -> tuple[NDArray[np.uint8], FloatArray, BoolArray]:
        """Surface class (SCL codes), reflectance (7, H, W) and water mask for semi-axis a (m)."""
        lake = _in_lake(self.u, self.v, a)
        water = lake | self.river
        frac = np.where(self.bed & ~lake, 0.0, self.veg_frac)  # exposed lake bed: bare soil
        refl = frac[None] * VEGETATION[:, None, None] + (1.0 - frac[None]) * SOIL[:, None, None]
        refl[:, water] = WATER[:, None]
        cls = np.where(frac >= 0.5, SCL_VEG, SCL_SOIL).astype(np.uint8)
        cls[water] = SCL_WATER
        return cls, refl, water


CloudKind = Literal["opaque", "cirrus"]


@dataclass(frozen=True)
class _Clouds:
    """One date's clouds: field > threshold is cloud; field > high is high-probability cloud."""

    kind: CloudKind
    field: _Field
    threshold: float
    high: float = math.inf
    shadow: bool = True

    def classify(self, u: FloatArray, v: FloatArray) -> tuple[NDArray[np.uint8], BoolArray]:
        """Cloud class (0 none, 8, 9 or 10) and cloud-shadow mask at pixel centres (u, v)."""
        f = self.field(u, v)
        cloud = f > self.threshold
        if self.kind == "cirrus":
            cls = np.where(cloud, SCL_CIRRUS, 0).astype(np.uint8)
            return cls, np.zeros_like(cloud)
        cls = np.where(cloud, np.where(f > self.high, SCL_CLOUD_HIGH, SCL_CLOUD_MED), 0)
        if self.shadow:
            su, sv = SHADOW_OFFSET_M
            shadow = (self.field(u - su, v - sv) > self.threshold) & ~cloud
        else:
            shadow = np.zeros_like(cloud)
        return cls.astype(np.uint8), shadow


def _core_holes(amp: float) -> tuple[tuple[float, float, float, float], ...]:
    """Negative blobs keeping the lake centre clear of cloud and of cloud shadow."""
    su, sv = SHADOW_OFFSET_M
    return (
        (LAKE_DX, LAKE_DY, CLEAR_CORE_SIGMA_M, -amp),
        (LAKE_DX - su, LAKE_DY - sv, CLEAR_CORE_SIGMA_M, -amp),
    )


def _calibrated(
    kind: CloudKind,
    fld: _Field,
    aoi_uv: tuple[FloatArray, FloatArray],
    fraction: float,
    high_share: float = 0.6,
    shadow: bool = True,
) -> _Clouds:
    """Clouds whose threshold makes `fraction` of the AOI pixels (centres `aoi_uv`) cloudy."""
    values = fld(*aoi_uv)
    thr = float(np.quantile(values, 1.0 - fraction))
    cloudy = values[values > thr]
    high = float(np.quantile(cloudy, 1.0 - high_share)) if cloudy.size else math.inf
    return _Clouds(kind, fld, thr, high, shadow)


def _aoi_blobs(rng: np.random.Generator, n: int) -> tuple[tuple[float, float, float, float], ...]:
    """`n` random cumulus-like Gaussian blobs over the lake's maximum extent."""
    cu = rng.uniform(LAKE_DX - A_MAX_M, LAKE_DX + A_MAX_M, n)
    cv = rng.uniform(LAKE_DY - B_RATIO * A_MAX_M, LAKE_DY + B_RATIO * A_MAX_M, n)
    sigma = rng.uniform(250.0, 450.0, n)
    return tuple((float(cu[i]), float(cv[i]), float(sigma[i]), 1.0) for i in range(n))


# --------------------------------------------------------------------------------------------------
# Acquisition plan
# --------------------------------------------------------------------------------------------------

CloudSpec = Literal["clear", "partial", "overcast", "land", "cirrus"]


@dataclass(frozen=True)
class _S2Plan:
    item_id: str
    when: datetime
    platform: str
    tile: str  # MGRS tile, e.g. "33TVK"
    baseline: str
    boa_offset_applied: bool
    clouds: CloudSpec
    cols: tuple[float, float]  # share of the scene width covered (0-1, west to east)


@dataclass(frozen=True)
class _LandsatPlan:
    item_id: str
    when: datetime
    platform: str
    clouds: CloudSpec


S2_FIRST = datetime(2024, 1, 5, 10, 0, 0, tzinfo=UTC)
S2_DATES = 13  # every 14 days: 2024-01-05 ... 2024-06-21
S2_PAIR_INDEX = 5  # 2024-03-15: two granules (33TVK west, 33TWK east)
S2_BOA_APPLIED = frozenset({3, 8, 11})  # 2024-02-16, 2024-04-26, 2024-06-07
S2_CLOUDS: dict[int, CloudSpec] = {1: "land", 2: "partial", 7: "overcast", 10: "cirrus"}
LANDSAT: tuple[tuple[datetime, str, CloudSpec], ...] = (
    (datetime(2024, 2, 18, 9, 50, 0, tzinfo=UTC), "landsat-9", "clear"),
    (datetime(2024, 4, 14, 9, 50, 0, tzinfo=UTC), "landsat-8", "clear"),
    (datetime(2024, 5, 8, 9, 50, 0, tzinfo=UTC), "landsat-9", "partial"),
    (datetime(2024, 6, 17, 9, 50, 0, tzinfo=UTC), "landsat-8", "clear"),
)


def _s2_id(platform: str, tile: str, when: datetime) -> str:
    return f"S2{platform[-1].upper()}_{tile}_{when:%Y%m%d}_0_L2A"


def _s2_plan() -> list[_S2Plan]:
    """Sentinel-2 items: 13 dates in 2024 (one with two granules) plus one baseline-03.01 item."""
    old = datetime(2021, 12, 20, 10, 0, 0, tzinfo=UTC)
    plans = [_S2Plan(_s2_id("sentinel-2a", "33TVK", old), old, "sentinel-2a", "33TVK", "03.01",
                     False, "clear", (0.0, 1.0))]  # fmt: skip
    for i in range(S2_DATES):
        when = S2_FIRST + timedelta(days=14 * i)
        platform = "sentinel-2a" if i % 2 == 0 else "sentinel-2b"
        granules = [("33TVK", (0.0, 1.0), 0)]
        if i == S2_PAIR_INDEX:  # west 60 % and east 60 % of the scene, 2 s apart
            granules = [("33TVK", (0.0, 0.6), 0), ("33TWK", (0.4, 1.0), 2)]
        for tile, cols, dt in granules:
            w = when + timedelta(seconds=dt)
            plans.append(
                _S2Plan(_s2_id(platform, tile, w), w, platform, tile, "05.10",
                        i in S2_BOA_APPLIED, S2_CLOUDS.get(i, "clear"), cols)
            )  # fmt: skip
    return plans


LANDSAT_SR_ONLY = datetime(2024, 6, 17, 9, 50, 0, tzinfo=UTC)  # an L2SR scene: no surface temperature
# Surface temperature (kelvin) per class: open water ~288 K and land ~298 K in a mid-latitude spring
# (Landsat C2 ST values over lakes and fields); cloud tops ~255 K (a few km up, -6.5 K/km lapse rate).
ST_WATER_K, ST_LAND_K, ST_CLOUD_K = 288.0, 298.0, 255.0
LS_ST_SCALE, LS_ST_OFFSET = 0.00341802, 149.0


def _landsat_plan() -> list[_LandsatPlan]:
    """Landsat items: 4 dates in 2024, two Landsat 8, two Landsat 9 (WRS-2 190/029 illustrative); the
    last is processed to surface reflectance only (L2SR: no thermal asset)."""
    out = []
    for when, platform, clouds in LANDSAT:
        sensor = "LC08" if platform == "landsat-8" else "LC09"
        level = "L2SR" if when == LANDSAT_SR_ONLY else "L2SP"
        out.append(_LandsatPlan(f"{sensor}_{level}_190029_{when:%Y%m%d}_02_T1", when, platform, clouds))
    return out


# --------------------------------------------------------------------------------------------------
# Rasters
# --------------------------------------------------------------------------------------------------


def _write_cog(path: Path, data: NDArray[np.generic], grid: _Grid, nodata: int) -> None:
    """Write one band as a DEFLATE/predictor-2 COG (512 px blocks, no overviews)."""
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=grid.width,
        height=grid.height,
        count=1,
        dtype=data.dtype.name,
        crs=_CRS,
        transform=grid.transform,
        nodata=nodata,
        compress="DEFLATE",
        predictor=2,
        blocksize=512,
        overviews="NONE",
    ) as dst:
        dst.write(data, 1)


def _render(
    surface: _Surface, clouds: _Clouds | None, a: float, rng: np.random.Generator
) -> tuple[NDArray[np.uint8], FloatArray, BoolArray]:
    """Class map, noisy reflectance (7, H, W) and cloud-free water mask on `surface`'s grid."""
    cls, refl, water = surface.at(a)
    if clouds is not None:
        ccls, shadow = clouds.classify(surface.u, surface.v)
        refl[:, shadow] *= SHADOW_FACTOR
        cls[shadow] = SCL_SHADOW
        cirrus = ccls == SCL_CIRRUS
        refl[:, cirrus] += CIRRUS_ADD
        for c, spectrum in ((SCL_CLOUD_MED, CLOUD_MEDIUM), (SCL_CLOUD_HIGH, CLOUD_HIGH)):
            m = ccls == c
            refl[:, m] = spectrum[:, None]
        cls = np.where(ccls > 0, ccls, cls).astype(np.uint8)
    # Noise per cell of `cell` pixels: white noise at 10 m would not fit the size budget (DEFLATE).
    cell = max(1, int(round(NOISE_CELL_M / surface.grid.res)))
    _, h, w = refl.shape
    noise = rng.normal(0.0, NOISE_SIGMA, (refl.shape[0], -(-h // cell), -(-w // cell)))
    noise = np.repeat(np.repeat(noise, cell, axis=1), cell, axis=2)[:, :h, :w]
    refl = np.clip(refl + np.clip(noise, -NOISE_CLIP, NOISE_CLIP), 0.0, 1.5)
    return cls, refl, water


def _block_mean(a: FloatArray, f: int) -> FloatArray:
    h, w = a.shape
    out: FloatArray = a.reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    return out


def _block_majority(cls: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """2x2 majority of a class map; ties broken by `SCL_PRIORITY` order."""
    h, w = cls.shape
    blocks = cls.reshape(h // 2, 2, w // 2, 2)
    counts = np.stack([(blocks == c).sum(axis=(1, 3)) for c in SCL_PRIORITY])
    out: NDArray[np.uint8] = np.asarray(SCL_PRIORITY, dtype=np.uint8)[counts.argmax(axis=0)]
    return out


def _dilate(mask: BoolArray) -> BoolArray:
    """Binary dilation by one pixel (8-connected)."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(3):
        for dx in range(3):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def _s2_dn(refl: FloatArray, valid: BoolArray, add: int) -> NDArray[np.uint16]:
    """Reflectance -> L2A DN (round(r * 10000) + add), clipped to 1..65535, 0 outside `valid`."""
    dn = np.clip(np.rint(refl / S2_SCALE) + add, 1, 65535)
    dn[..., ~valid] = 0
    return dn.astype(np.uint16)


def _ls_dn(refl: FloatArray) -> NDArray[np.uint16]:
    """Reflectance -> Landsat C2 L2 DN: round((r + 0.2) / 0.0000275), clipped to 1..65535."""
    return np.clip(np.rint((refl - LS_OFFSET) / LS_SCALE), 1, 65535).astype(np.uint16)


# --------------------------------------------------------------------------------------------------
# STAC helpers
# --------------------------------------------------------------------------------------------------


def _footprint(grid: _Grid, x0: float, x1: float) -> Polygon:
    """Lon/lat footprint of the data columns between eastings x0 and x1 (m)."""
    rect = box(x0, grid.y0 - grid.res * grid.height, x1, grid.y0)
    return _to_lonlat(shapely.segmentize(rect, 200.0))


def _bbox(geom: Polygon) -> list[float]:
    return [round(c, 8) for c in geom.bounds]


def _asset(
    href: str,
    grid: _Grid,
    band: tuple[str, str, int, float, int] | None,
    raster: RasterBand,
    title: str,
) -> pystac.Asset:
    asset = pystac.Asset(href, title=title, media_type=pystac.MediaType.COG, roles=["data"])
    proj = ProjectionExtension.ext(asset)
    proj.shape = [grid.height, grid.width]
    proj.transform = list(grid.transform)[:6]
    RasterExtension.ext(asset).bands = [raster]
    if band is not None:
        key, name, _, wavelength, _ = band
        EOExtension.ext(asset).bands = [Band.create(name=name, common_name=key, center_wavelength=wavelength)]
    return asset


def _new_item(item_id: str, when: datetime, geom: Polygon, props: dict[str, object]) -> pystac.Item:
    item = pystac.Item(item_id, mapping(geom), _bbox(geom), when, dict(props))
    EOExtension.add_to(item)
    RasterExtension.add_to(item)
    ProjectionExtension.add_to(item)
    ProjectionExtension.ext(item).code = PROJ_CODE
    return item


def _collection(cid: str, title: str, items: Sequence[pystac.Item]) -> pystac.Collection:
    boxes = np.array([it.bbox for it in items if it.bbox is not None])
    bbox = [
        float(boxes[:, 0].min()),
        float(boxes[:, 1].min()),
        float(boxes[:, 2].max()),
        float(boxes[:, 3].max()),
    ]
    times = sorted(it.datetime for it in items if it.datetime is not None)
    extent = pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[times[0], times[-1]]]))
    col = pystac.Collection(
        cid,
        f"Synthetic {title} items over a seasonal lake (oxeo-flows sample data).",
        extent,
        title=title,
        license="CC0-1.0",
    )
    for it in items:
        col.add_item(it)
    return col


# --------------------------------------------------------------------------------------------------
# Truth
# --------------------------------------------------------------------------------------------------


@dataclass
class _TruthRow:
    item_ids: list[str]
    when: datetime
    constellation: str
    pixel_size_m: int
    water_area_m2: float
    cloud: BoolArray  # cloud, cirrus or shadow, on AOI pixels
    valid: BoolArray  # data present, on AOI pixels

    def as_csv(self) -> list[str]:
        n = max(self.cloud.size, 1)
        return [
            ";".join(sorted(self.item_ids)),
            self.when.strftime("%Y-%m-%dT%H:%M:%SZ"),
            _solar_day(self.when),
            self.constellation,
            str(self.pixel_size_m),
            f"{self.water_area_m2:.0f}",
            f"{np.count_nonzero(self.cloud & self.valid) / n:.6f}",
            f"{np.count_nonzero(~self.valid) / n:.6f}",
        ]


def _solar_day(when: datetime) -> str:
    """Local solar date at the scene centre (longitude 15 E: UTC + 1 h)."""
    return (when + timedelta(hours=1)).strftime("%Y-%m-%d")


# --------------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------------


def _check_args(out_dir: str | Path, seed: int, size_m: int) -> Path:
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InputError("seed", f"expected a non-negative integer, got {seed!r}")
    min_size = 2.0 * (abs(LAKE_DX) + A_MAX_M + SCENE_MARGIN_M)
    if (
        not isinstance(size_m, int)
        or isinstance(size_m, bool)
        or size_m % 40 != 0
        or not min_size <= size_m <= MAX_SIZE_M
    ):
        raise InputError(
            "size_m",
            f"expected a multiple of 40 m between {min_size:.0f} and {MAX_SIZE_M}, got {size_m!r}",
        )
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise InputError("out_dir", f"{root} exists and is not a directory")
    existing = root / "catalog.json"
    if existing.exists():
        try:
            cid = json.loads(existing.read_text()).get("id")
        except (ValueError, AttributeError):
            cid = None
        if cid != CATALOG_ID:
            raise InputError("out_dir", f"{root} already holds a catalog other than {CATALOG_ID!r}")
    return root


def write_sample_data(
    out_dir: str | Path,
    *,
    seed: int = 0,
    size_m: int = DEFAULT_SIZE_M,
    include_landsat: bool = True,
) -> SampleData:
    """Write the synthetic sample catalog under `out_dir` and return its paths.

    `seed` drives every random field (numpy `default_rng`); the output is byte-identical for a
    given (seed, size_m, include_landsat). `size_m` is the scene side in metres: a multiple of 40
    (20 m pixel alignment), >= 3040 so that the lake keeps a 150 m margin, <= 10000. A previous
    sample catalog in `out_dir` is replaced; a directory holding another catalog is refused.
    Total size for the defaults: about 4 MB.
    """
    root = _check_args(out_dir, seed, size_m)
    root.mkdir(parents=True, exist_ok=True)
    for stale in (S2_COLLECTION, LANDSAT_COLLECTION):
        if (root / stale).is_dir():
            shutil.rmtree(root / stale)

    half = size_m / 2.0
    g10 = _Grid(CENTRE_X - half, CENTRE_Y + half, 10.0, size_m // 10, size_m // 10)
    g20 = _Grid(g10.x0, g10.y0, 20.0, size_m // 20, size_m // 20)
    lx0 = math.floor((g10.x0 - 15.0) / 30.0) * 30.0 + 15.0
    ly0 = math.ceil((g10.y0 - 15.0) / 30.0) * 30.0 + 15.0
    lw = math.ceil((CENTRE_X + half - lx0) / 30.0)
    lh = math.ceil((ly0 - (CENTRE_Y - half)) / 30.0)
    g30 = _Grid(lx0, ly0, 30.0, lw, lh)

    aoi_utm = _aoi_polygon_utm()
    u10, v10 = g10.centres()
    aoi10 = shapely.contains_xy(aoi_utm, u10 + CENTRE_X, v10 + CENTRE_Y)
    u30, v30 = g30.centres()
    aoi30 = shapely.contains_xy(aoi_utm, u30 + CENTRE_X, v30 + CENTRE_Y)

    scene_rng = np.random.default_rng([seed, 0])
    veg = _Field(modes=_modes(scene_rng, 24, (300.0, 2000.0), 1.0))
    surf10 = _Surface.sample(veg, g10)
    aoi_uv10 = (u10[aoi10], v10[aoi10])
    events: dict[CloudSpec, _Clouds] = {
        "partial": _calibrated(
            "opaque",
            _Field(
                blobs=_aoi_blobs(scene_rng, 4) + _core_holes(10.0),
                modes=_modes(scene_rng, 12, (200.0, 800.0), 0.25),
            ),
            aoi_uv10,
            0.35,
        ),
        "overcast": _calibrated(
            "opaque",
            _Field(
                const=1.0,
                blobs=_core_holes(10.0)[:1],
                modes=_modes(scene_rng, 12, (300.0, 1500.0), 0.3),
            ),
            aoi_uv10,
            0.95,
            high_share=0.7,
            shadow=False,
        ),
        "land": _Clouds(
            "opaque",
            _Field(
                blobs=((-1250.0, -1250.0, 110.0, 1.0),),
                modes=_modes(scene_rng, 8, (100.0, 400.0), 0.08),
            ),
            0.5,
            0.8,
        ),
        "cirrus": _calibrated(
            "cirrus",
            _Field(blobs=_core_holes(10.0), modes=_modes(scene_rng, 6, (1500.0, 4000.0), 1.0)),
            aoi_uv10,
            0.5,
        ),
    }
    ls_events: dict[CloudSpec, _Clouds] = {
        "partial": _calibrated(
            "opaque",
            _Field(
                blobs=_aoi_blobs(scene_rng, 3) + _core_holes(10.0),
                modes=_modes(scene_rng, 12, (200.0, 800.0), 0.25),
            ),
            (u30[aoi30], v30[aoi30]),
            0.2,
        ),
    }

    truth: list[_TruthRow] = []
    s2_items: list[pystac.Item] = []
    for k, plan in enumerate(_s2_plan()):
        rng = np.random.default_rng([seed, 1, k])
        item, row = _write_s2_item(root, plan, surf10, events.get(plan.clouds), g20, aoi10, rng)
        s2_items.append(item)
        day = [r for r in truth if r.when.date() == plan.when.date()]
        if day:
            day[0].item_ids.extend(row.item_ids)
            day[0].valid = day[0].valid | row.valid
            day[0].cloud = day[0].cloud | row.cloud
        else:
            truth.append(row)

    catalog = pystac.Catalog(
        CATALOG_ID,
        "Synthetic Sentinel-2 L2A / Landsat C2 L2 catalog over a seasonal lake "
        "(EPSG:32633) for offline oxeo-flows runs and tests.",
        title="oxeo-flows sample data",
    )
    catalog.add_child(_collection(S2_COLLECTION, "Sentinel-2 L2A", s2_items))

    if include_landsat:
        surf30 = _Surface.sample(veg, g30)
        ls_items: list[pystac.Item] = []
        for k, lplan in enumerate(_landsat_plan()):
            rng = np.random.default_rng([seed, 2, k])
            item, row = _write_landsat_item(root, lplan, surf30, ls_events.get(lplan.clouds), aoi30, rng)
            ls_items.append(item)
            truth.append(row)
        catalog.add_child(_collection(LANDSAT_COLLECTION, "Landsat Collection 2 Level-2", ls_items))

    # a trailing separator: pystac takes a last component with a dot ("data.v2") for a file name
    catalog.normalize_hrefs(str(root) + os.sep)
    catalog.save(pystac.CatalogType.SELF_CONTAINED)

    aoi_ll = _to_lonlat(aoi_utm)
    aoi_doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": "sample-lake",
                "properties": {"id": "sample-lake", "name": "Sample Lake"},
                "geometry": mapping(aoi_ll),
            }
        ],
    }
    (root / "aoi.geojson").write_text(json.dumps(aoi_doc, indent=2) + "\n")

    truth.sort(key=lambda r: (r.when, r.constellation))
    with (root / "truth.csv").open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(TRUTH_COLUMNS)
        writer.writerows(r.as_csv() for r in truth)

    return SampleData(root, root / "catalog.json", root / "aoi.geojson", root / "truth.csv")


def _write_s2_item(
    root: Path,
    plan: _S2Plan,
    surf10: _Surface,
    clouds: _Clouds | None,
    g20: _Grid,
    aoi10: BoolArray,
    rng: np.random.Generator,
) -> tuple[pystac.Item, _TruthRow]:
    """Render and write one Sentinel-2 L2A item (COGs beside its JSON); return it and its truth."""
    g10 = surf10.grid
    a = _lake_a(plan.when)
    cls10, refl10, _ = _render(surf10, clouds, a, rng)

    # Data columns: multiples of 20 m so that 20 m blocks are never partial.
    c0 = int(round(plan.cols[0] * g20.width)) * 2
    c1 = int(round(plan.cols[1] * g20.width)) * 2
    valid10 = np.zeros(cls10.shape, dtype=bool)
    valid10[:, c0:c1] = True
    valid20 = valid10[::2, ::2]
    cls10 = np.where(valid10, cls10, SCL_NODATA).astype(np.uint8)

    old = plan.baseline < "04.00"
    add = 0 if (old or plan.boa_offset_applied) else S2_BOA_ADD_DN
    offset = 0.0 if old else S2_OFFSET

    item_dir = root / S2_COLLECTION / plan.item_id
    item_dir.mkdir(parents=True, exist_ok=True)
    x0 = g10.x0 + 10.0 * c0
    x1 = g10.x0 + 10.0 * c1
    geom = _footprint(g10, x0, x1)
    n_cloud = int(np.count_nonzero(np.isin(cls10, (SCL_CLOUD_MED, SCL_CLOUD_HIGH, SCL_CIRRUS))))
    cloud_pct = 100.0 * n_cloud / max(int(np.count_nonzero(valid10)), 1)
    props: dict[str, object] = {
        "platform": plan.platform,
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "eo:cloud_cover": round(cloud_pct, 4),
        "s2:processing_baseline": plan.baseline,
        "s2:product_type": "S2MSI2A",
        "earthsearch:boa_offset_applied": plan.boa_offset_applied,
        "mgrs:utm_zone": 33,
        "mgrs:latitude_band": plan.tile[2],
        "mgrs:grid_square": plan.tile[3:],
        "grid:code": f"MGRS-{plan.tile}",
    }
    item = _new_item(plan.item_id, plan.when, geom, props)
    item.stac_extensions.extend(
        [
            "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
            "https://stac-extensions.github.io/grid/v1.0.0/schema.json",
        ]
    )

    for band in S2_BANDS:
        key, name, res, _, idx = band
        if res == 10:
            grid, data, valid = g10, refl10[idx], valid10
        else:
            grid, data, valid = g20, _block_mean(refl10[idx], 2), valid20
        _write_cog(item_dir / f"{key}.tif", _s2_dn(data, valid, add), grid, 0)
        raster = RasterBand.create(
            nodata=0,
            data_type=DataType.UINT16,
            scale=S2_SCALE,
            offset=offset,
            spatial_resolution=res,
        )
        item.add_asset(key, _asset(f"./{key}.tif", grid, band, raster, f"{name} - {key}"))

    scl20 = _block_majority(cls10)
    _write_cog(item_dir / "scl.tif", scl20, g20, 0)
    raster = RasterBand.create(nodata=0, data_type=DataType.UINT8, spatial_resolution=20)
    scl = _asset("./scl.tif", g20, None, raster, "Scene classification map (SCL)")
    EOExtension.ext(scl).bands = [Band.create(name="SCL")]
    item.add_asset("scl", scl)

    cloudy = np.isin(cls10, (SCL_CLOUD_MED, SCL_CLOUD_HIGH, SCL_CIRRUS, SCL_SHADOW))
    lake_px = np.count_nonzero(_in_lake(surf10.u, surf10.v, a))
    row = _TruthRow(
        [plan.item_id], plan.when, "sentinel-2", 10, lake_px * 100.0, cloudy[aoi10], valid10[aoi10]
    )
    return item, row


def _write_landsat_item(
    root: Path,
    plan: _LandsatPlan,
    surf30: _Surface,
    clouds: _Clouds | None,
    aoi30: BoolArray,
    rng: np.random.Generator,
) -> tuple[pystac.Item, _TruthRow]:
    """Render and write one Landsat C2 L2 item (scene computed at 30 m pixel centres)."""
    g30 = surf30.grid
    a = _lake_a(plan.when)
    cls, refl, water = _render(surf30, clouds, a, rng)

    qa = np.where(water, QA_CLEAR_WATER, QA_CLEAR_LAND).astype(np.uint16)
    cloud = np.isin(cls, (SCL_CLOUD_MED, SCL_CLOUD_HIGH))
    if cloud.any():
        dilated = _dilate(cloud) & ~cloud
        qa[dilated] = np.where(water[dilated], QA_DILATED_WATER, QA_DILATED)
    shadow = cls == SCL_SHADOW
    qa[shadow] = np.where(water[shadow], QA_SHADOW_WATER, QA_SHADOW_LAND)
    qa[cls == SCL_CIRRUS] = QA_CIRRUS
    qa[cloud] = QA_CLOUD

    item_dir = root / LANDSAT_COLLECTION / plan.item_id
    item_dir.mkdir(parents=True, exist_ok=True)
    geom = _footprint(g30, g30.x0, g30.x0 + g30.res * g30.width)
    props: dict[str, object] = {
        "platform": plan.platform,
        "instruments": ["oli", "tirs"],
        "eo:cloud_cover": round(100.0 * float(np.count_nonzero(cloud)) / cloud.size, 4),
        "landsat:collection_category": "T1",
        "landsat:collection_number": "02",
        "landsat:correction": "L2SR" if plan.when == LANDSAT_SR_ONLY else "L2SP",
        "landsat:wrs_type": "2",
        "landsat:wrs_path": "190",
        "landsat:wrs_row": "029",
        "landsat:scene_id": plan.item_id,
    }
    item = _new_item(plan.item_id, plan.when, geom, props)
    valid = np.ones(cls.shape, dtype=bool)
    for band in LS_BANDS:
        key, name, res, _, idx = band
        _write_cog(item_dir / f"{key}.tif", _ls_dn(refl[idx]), g30, 0)
        raster = RasterBand.create(
            nodata=0,
            data_type=DataType.UINT16,
            scale=LS_SCALE,
            offset=LS_OFFSET,
            spatial_resolution=res,
        )
        item.add_asset(key, _asset(f"./{key}.tif", g30, band, raster, f"{name} - {key}"))
    if plan.when != LANDSAT_SR_ONLY:
        kelvin = np.where(water, ST_WATER_K, ST_LAND_K)
        kelvin = np.where(cloud, ST_CLOUD_K, kelvin)
        st = np.clip(np.rint((kelvin - LS_ST_OFFSET) / LS_ST_SCALE), 1, 65535).astype(np.uint16)
        _write_cog(item_dir / "lwir11.tif", st, g30, 0)
        raster = RasterBand.create(
            nodata=0,
            data_type=DataType.UINT16,
            scale=LS_ST_SCALE,
            offset=LS_ST_OFFSET,
            spatial_resolution=100,
            unit="kelvin",
        )
        st_band = ("lwir11", "ST_B10", 100, 10.9, -1)
        item.add_asset("lwir11", _asset("./lwir11.tif", g30, st_band, raster, "ST_B10 - lwir11"))
    _write_cog(item_dir / "qa_pixel.tif", qa, g30, QA_FILL)
    raster = RasterBand.create(
        nodata=QA_FILL, data_type=DataType.UINT16, spatial_resolution=30, unit="bit index"
    )
    qa_asset = _asset("./qa_pixel.tif", g30, None, raster, "Pixel quality assessment band")
    EOExtension.ext(qa_asset).bands = [Band.create(name="QA_PIXEL")]
    item.add_asset("qa_pixel", qa_asset)

    cloudy = np.isin(cls, (SCL_CLOUD_MED, SCL_CLOUD_HIGH, SCL_CIRRUS, SCL_SHADOW))
    lake_px = np.count_nonzero(_in_lake(surf30.u, surf30.v, a))
    row = _TruthRow(
        [plan.item_id], plan.when, plan.platform, 30, lake_px * 900.0, cloudy[aoi30], valid[aoi30]
    )
    return item, row
