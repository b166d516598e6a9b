"""Labelled synthetic scenes for the water/cloud accuracy report (numpy only, seeded, in memory).

Every scene is first built on a 5 m "ground" grid (3 km x 3 km, 600 x 600 cells) as a physical mixture of
surface materials, then seen through the atmosphere (terrain illumination, cloud shadow, haze, cirrus,
thick cloud) and finally aggregated to the sensors by block means (linear mixing, so boundary pixels are
mixed pixels):

* Sentinel-2 L2A: 10 m bands (blue, green, red, nir = B02/B03/B04/B08) are 2 x 2 means of the ground;
  20 m bands (nir08 = B8A, swir16 = B11, swir22 = B12) are 2 x 2 means of the 10 m values, with their own
  noise, replicated 2 x 2 onto the 10 m archive grid (as the archive stores them). SCL is made at 20 m
  and replicated too. DN = refl x 10000 + 1000 (baseline >= 04.00), recorded scale 1e-4, offset -0.1.
* Landsat 8 C2 L2: every band is a 6 x 6 mean of the ground (30 m). DN = (refl + 0.2) / 2.75e-5,
  recorded scale 2.75e-5, offset -0.2. QA_PIXEL bits come from the truth with CFMask-like behaviour.

Truth per sensor pixel: water when >= 50 % of its ground cells are water; cloud/shadow when >= 50 % of
its cells are cloud (thick-cloud opacity >= 0.5, or cirrus adding >= `CIRRUS_CLOUD_MIN` reflectance) or
cloud shadow (direct sun >= 50 % blocked). Terrain shadow and haze are NOT cloud: they are conditions
the water models have to cope with on clear observations. The exact water fraction of every pixel is
kept for the area reference.

Spectra: each material has a (low, high) range per band in the order blue, green, red, nir, swir16,
swir22 (surface reflectance 0-1), transcribed by hand from the cited sources (representative band
values, not re-convolved from the library files). Inside a scene every pixel of a material takes
`low + t * (high - low)` with `t` in [0, 1] from a smooth random field, so all pure-material spectra lie
inside the cited range. B8A (865 nm) uses the nir (842 nm) value: the two differ by a few per cent for
these materials and no model here reads B8A.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from oxeo_flows.constellations import CONSTELLATIONS, Constellation

F64 = NDArray[np.float64]
Bool = NDArray[np.bool_]
U16 = NDArray[np.uint16]
U8 = NDArray[np.uint8]

BANDS6 = ("blue", "green", "red", "nir", "swir16", "swir22")
FINE_M = 5.0  # ground cell size (m)
SCENE_M = 3000.0  # scene side (m): a multiple of 60 m, so 10, 20 and 30 m grids nest exactly
N_FINE = int(SCENE_M / FINE_M)  # 600
LANDSAT = "landsat-8"  # the Landsat constellation used (QA_PIXEL logic is the same for Landsat 9)
CONSTELLATION_NAMES = ("sentinel-2", LANDSAT)

# ---------------------------------------------------------------------------------------------------------
# Spectra (blue, green, red, nir, swir16, swir22), surface reflectance 0-1
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpectrumRange:
    """Per-band (low, high) reflectance of one material, with the source it was read from."""

    name: str
    low: tuple[float, float, float, float, float, float]
    high: tuple[float, float, float, float, float, float]
    source: str

    def at(self, t: F64) -> F64:
        """Spectra (6, *t.shape) for mixing parameter(s) t in [0, 1]."""
        lo = np.asarray(self.low, dtype=np.float64).reshape((6,) + (1,) * np.ndim(t))
        hi = np.asarray(self.high, dtype=np.float64).reshape((6,) + (1,) * np.ndim(t))
        return lo + np.asarray(t, dtype=np.float64)[None] * (hi - lo)


SPECTRA: dict[str, SpectrumRange] = {
    # Water: surface reflectance rho = pi * Rrs. Clear to moderately productive inland/coastal water has
    # Rrs ~0.003-0.015 sr^-1 at 490-560 nm falling below ~0.005 sr^-1 beyond 700 nm (in-situ matchups of
    # Pahlevan et al. 2017, RSE 201:47-56); L2A lake products carry a few 0.01 of residual adjacency and
    # aerosol error in the visible (ACIX-Aqua, Pahlevan et al. 2021, RSE 258:112366). Pure water
    # absorbs > 500 m^-1 at 1.6 um (Hale & Querry 1973, Appl. Opt. 12:555), so SWIR is ~0 plus residuals.
    "water_clear": SpectrumRange(
        "water_clear",
        (0.025, 0.025, 0.008, 0.003, 0.000, 0.000),
        (0.065, 0.065, 0.035, 0.015, 0.008, 0.006),
        "Pahlevan et al. 2017 (RSE 201:47-56); Pahlevan et al. 2021 (RSE 258:112366); Hale & Querry 1973",
    ),
    # Turbid (sediment-laden) water: reflectance rises in green-red and the NIR with suspended matter;
    # red 0.08-0.12 and NIR 0.02-0.05 correspond to tens of g/m3 (Nechad et al. 2010, RSE 114:854-866,
    # Doxaran et al. 2002, RSE 81:149-161); even extremely turbid water stays < ~0.01 at 1.6 um
    # (Knaeps et al. 2015, RSE 168:66-79).
    "water_turbid": SpectrumRange(
        "water_turbid",
        (0.050, 0.080, 0.080, 0.020, 0.002, 0.000),
        (0.090, 0.130, 0.120, 0.050, 0.012, 0.008),
        "Doxaran et al. 2002 (RSE 81:149-161); Nechad et al. 2010 (RSE 114:854-866); Knaeps et al. 2015",
    ),
    # Dark water: deep, CDOM-rich (humic/boreal) lakes with Rrs < ~0.005 sr^-1 across the visible
    # (Kutser et al. 2005, RSE 94:535-540), i.e. rho ~0.01-0.03 in blue/green and ~0 beyond 700 nm.
    "water_dark": SpectrumRange(
        "water_dark",
        (0.010, 0.008, 0.002, 0.000, 0.000, 0.000),
        (0.030, 0.022, 0.010, 0.006, 0.004, 0.003),
        "Kutser et al. 2005 (RSE 94:535-540)",
    ),
    # Submerged sand bottom albedo (shallow-water model below): wet carbonate/quartz sand 0.15-0.35 in
    # the visible (Maritorena et al. 1994, Limnol. Oceanogr. 39:1689-1703; Lee et al. 1999, Appl. Opt.
    # 38:3831-3843); the SWIR values never reach the sensor through even centimetres of water.
    "sand_bottom": SpectrumRange(
        "sand_bottom",
        (0.12, 0.16, 0.18, 0.20, 0.20, 0.15),
        (0.22, 0.28, 0.32, 0.36, 0.35, 0.30),
        "Maritorena et al. 1994 (L&O 39:1689-1703); Lee et al. 1999 (Appl. Opt. 38:3831-3843)",
    ),
    # Dry bright sand (beaches, dunes): USGS Spectral Library v7 (Kokaly et al. 2017, USGS Data Series
    # 1035) quartz/beach sand spectra rise from ~0.2 in the blue to ~0.5-0.6 at 1.6 um.
    "sand_dry": SpectrumRange(
        "sand_dry",
        (0.18, 0.24, 0.30, 0.35, 0.42, 0.36),
        (0.30, 0.38, 0.46, 0.52, 0.62, 0.56),
        "USGS Spectral Library v7 (Kokaly et al. 2017) sand samples",
    ),
    # Green vegetation at canopy scale: USGS splib07 (Kokaly et al. 2017) grass/leaf and AVIRIS canopy
    # spectra: chlorophyll trough in blue/red (0.02-0.06), green peak 0.05-0.11, NIR plateau 0.28-0.50
    # (leaf-stack lab spectra such as Lawn_Grass_GDS91 reach ~0.6-0.7), SWIR water absorption.
    "vegetation": SpectrumRange(
        "vegetation",
        (0.015, 0.045, 0.020, 0.28, 0.15, 0.07),
        (0.050, 0.110, 0.060, 0.50, 0.28, 0.15),
        "USGS Spectral Library v7 (Kokaly et al. 2017) green vegetation (grass, leaf, canopy) spectra",
    ),
    # Bare soil (brown loam / agricultural soils): USGS splib07 soil spectra, monotonic rise to the SWIR.
    "soil": SpectrumRange(
        "soil",
        (0.060, 0.090, 0.120, 0.180, 0.250, 0.200),
        (0.120, 0.170, 0.240, 0.320, 0.420, 0.380),
        "USGS Spectral Library v7 (Kokaly et al. 2017) soil samples",
    ),
    # Urban materials from the Santa Barbara urban spectral library (Herold et al. 2004, RSE 91:304-319):
    # bright (white/light) roofs 0.3-0.65 and nearly flat; concrete 0.15-0.38; asphalt 0.04-0.16 rising
    # slowly with wavelength.
    "roof_bright": SpectrumRange(
        "roof_bright",
        (0.30, 0.32, 0.33, 0.35, 0.30, 0.25),
        (0.60, 0.62, 0.63, 0.65, 0.60, 0.50),
        "Herold et al. 2004 (RSE 91:304-319) light roofs",
    ),
    "concrete": SpectrumRange(
        "concrete",
        (0.15, 0.17, 0.19, 0.22, 0.25, 0.22),
        (0.28, 0.30, 0.32, 0.35, 0.38, 0.35),
        "Herold et al. 2004 (RSE 91:304-319) concrete; USGS splib07 Concrete_WTC01-37A",
    ),
    "asphalt": SpectrumRange(
        "asphalt",
        (0.04, 0.05, 0.055, 0.065, 0.08, 0.07),
        (0.08, 0.09, 0.100, 0.120, 0.16, 0.15),
        "Herold et al. 2004 (RSE 91:304-319) asphalt roads and dark roofs",
    ),
    # Snow: very bright in the VNIR, strongly absorbing at 1.6 and 2.2 um (Warren 1982, Rev. Geophys.
    # 20:67-89; basis of the NDSI, Dozier 1989, RSE 28:9-22).
    "snow": SpectrumRange(
        "snow",
        (0.75, 0.73, 0.70, 0.60, 0.02, 0.01),
        (0.95, 0.95, 0.93, 0.85, 0.15, 0.10),
        "Warren 1982 (Rev. Geophys. 20:67-89); Dozier 1989 (RSE 28:9-22)",
    ),
    # Optically thick (water) cloud: bright and white in the visible, which Fmask's spectral tests rely
    # on (Zhu & Woodcock 2012, RSE 118:83-94); droplet absorption lowers 1.6 and 2.2 um (Nakajima & King
    # 1990, J. Atmos. Sci. 47:1878-1893).
    "cloud": SpectrumRange(
        "cloud",
        (0.35, 0.35, 0.35, 0.37, 0.25, 0.15),
        (0.80, 0.80, 0.80, 0.82, 0.55, 0.40),
        "Zhu & Woodcock 2012 (RSE 118:83-94); Nakajima & King 1990 (J. Atmos. Sci. 47:1878-1893)",
    ),
    # Haze (residual aerosol path reflectance after L2 correction): decreases with wavelength following
    # an Angstrom law; it shows mostly in blue/red (HOT, Zhang, Guindon & Cihlar 2002, RSE 82:173-187).
    "haze": SpectrumRange(
        "haze",
        (0.010, 0.007, 0.005, 0.002, 0.000, 0.000),
        (0.040, 0.030, 0.022, 0.012, 0.004, 0.002),
        "Zhang, Guindon & Cihlar 2002 (RSE 82:173-187)",
    ),
    # Diffuse share of the surface irradiance (what remains in a shadow): shadow model of Richter &
    # Muller 2005 (IJRS 26:3137-3148); clear-sky diffuse/global ratios of standard radiative-transfer
    # runs (6S, Vermote et al. 1997, IEEE TGRS 35:675-686; continental aerosol, ~23 km visibility).
    "diffuse": SpectrumRange(
        "diffuse",
        (0.22, 0.16, 0.12, 0.07, 0.03, 0.02),
        (0.35, 0.26, 0.20, 0.13, 0.07, 0.05),
        "Richter & Muller 2005 (IJRS 26:3137-3148); 6S (Vermote et al. 1997)",
    ),
}

# Thin cirrus adds a nearly spectrally flat reflectance in 0.4-1.0 um and less at 1.6 / 2.2 um (ice
# absorption) (Gao et al. 1998, JGR 103(D24):32169-32176); the surface is seen through it with
# transmittance ~ (1 - added reflectance).
CIRRUS_SHAPE = np.array([1.0, 1.0, 1.0, 1.0, 0.55, 0.40])
CIRRUS_MAX_RANGE = (0.05, 0.12)  # peak added VNIR reflectance of a scene's cirrus
CIRRUS_CLOUD_MIN = 0.02  # truth: cirrus counts as cloud where it adds >= 0.02 (comparable to water itself)

# Pure-water absorption (m^-1), band averages: 490/560/665 nm from Pope & Fry 1997 (Appl. Opt.
# 36:8710-8723), B08/B5 NIR from Kou, Labrie & Chylek 1993 (Appl. Opt. 32:3531-3540), SWIR from Hale &
# Querry 1973. Shallow water (Maritorena et al. 1994): rho = rho_deep + (A - rho_deep) exp(-2 K z),
# K = a_w + 0.1 m^-1 (a small particulate term).
WATER_ABSORPTION = np.array([0.015, 0.062, 0.43, 4.0, 600.0, 2000.0])
PARTICULATE_K = 0.1

# Sensor noise (reflectance, 1 sigma per pixel): MSI/OLI SNR of ~100-200 at the reference radiance
# gives ~0.001; doubled for the residuals of L2 processing (S2 10 m / 20 m; Landsat 30 m).
NOISE_10M = 0.002
NOISE_20M = 0.003
NOISE_LANDSAT = np.array([0.002, 0.002, 0.002, 0.002, 0.003, 0.003])

# Product cloud-mask imperfections. ASSUMED values, chosen to be of the order of the omission and
# commission errors reported for Sen2Cor (Baetens, Desjardins & Hagolle 2019, Remote Sens. 11:433;
# Skakun et al. 2022 CMIX, RSE 274:112990) and CFMask (Foga et al. 2017, RSE 194:379-390): shadows are
# the weakest class, over water especially; thin cirrus is partly missed; bright roofs are flagged.
SCL_SHADOW_DETECT = {"land": 0.80, "water": 0.50}  # probability a true shadow pixel is labelled 3
SCL_CIRRUS_MISS = 0.30  # the thinnest 30 % of the cirrus cloud is not labelled 10
SCL_ROOF_COMMISSION = 0.20  # share of bright-roof buildings labelled 8 (cloud medium probability)
SCL_HIGH_OPACITY = 0.9  # interior cloud with mean opacity >= 0.9 is 9 (high), edges and the rest 8
QA_SHADOW_DETECT = {"land": 0.85, "water": 0.60}
QA_CIRRUS_MISS = 0.10  # OLI band 9 (1.37 um) sees cirrus well
QA_ROOF_COMMISSION = 0.10
QA_CLOUD_DILATION_PX = 3  # CFMask / Fmask default cloud dilation (Zhu, Wang & Woodcock 2015, RSE 159)

# Radiometry of the archives.
S2_SCALE, S2_OFFSET, S2_ADD_DN = 1e-4, -0.1, 1000
LS_SCALE, LS_OFFSET = 2.75e-5, -0.2

# SCL classes and QA_PIXEL bits.
SCL_DARK, SCL_SHADOW, SCL_VEG, SCL_SOIL, SCL_WATER = 2, 3, 4, 5, 6
SCL_CLOUD_MED, SCL_CLOUD_HIGH, SCL_CIRRUS, SCL_SNOW = 8, 9, 10, 11
QA_DILATED, QA_CIRRUS, QA_CLOUD, QA_SHADOW, QA_SNOW, QA_CLEAR, QA_WATER = 1, 2, 3, 4, 5, 6, 7

# Ground cell material codes (the dominant material of each 5 m cell).
VEG, SOIL, SAND, ROOF, URBAN, SNOW, WATER = 0, 1, 2, 3, 4, 5, 6

# ---------------------------------------------------------------------------------------------------------
# Condition groups
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    name: str
    description: str
    water: str = "water_clear"  # water spectrum family ("shallow" uses the bottom model)
    cloud_share: tuple[float, float] = (0.0, 0.0)  # range of the truth cloud share of a scene
    cloud_kind: str = ""  # "", "cumulus", "stratus", "cirrus"


GROUPS: dict[str, Group] = {
    g.name: g
    for g in (
        Group("clear_water", "clear lake and river in vegetation/soil, clear sky"),
        Group("turbid_water", "sediment-laden water (red 0.08-0.12), clear sky", water="water_turbid"),
        Group("dark_water", "deep / CDOM-rich dark water, clear sky", water="water_dark"),
        Group("shallow_sand", "shallow water (0-4 m) over bright sand, dry sand beaches", water="shallow"),
        Group("mixed_edges", "fine vegetation/bare-soil mosaic, narrow rivers, small ponds (mixed pixels)"),
        Group("urban", "bright roofs, concrete, asphalt, parks around a lake and canal"),
        Group("terrain_shadow", "hills casting terrain shadows on land and water (sun 20-35 deg)"),
        Group(
            "cloud_shadow",
            "scattered cumulus with shadows over land and water",
            cloud_share=(0.03, 0.10),
            cloud_kind="cumulus",
        ),
        Group(
            "thick_cloud",
            "large opaque cloud decks with shadows",
            cloud_share=(0.30, 0.60),
            cloud_kind="stratus",
        ),
        Group(
            "cirrus_haze",
            "thin cirrus streaks and aerosol haze",
            cloud_share=(0.05, 0.25),
            cloud_kind="cirrus",
        ),
        Group("snow", "snow patches on land around open water"),
    )
}

# ---------------------------------------------------------------------------------------------------------
# Fields and resampling helpers
# ---------------------------------------------------------------------------------------------------------


def smooth_field(
    rng: np.random.Generator,
    shape: tuple[int, int],
    sigma_px: float,
    stretch: float = 1.0,
    angle: float = 0.0,
) -> F64:
    """Periodic Gaussian random field, zero mean, unit std; `stretch` elongates it along `angle` (rad)."""
    noise = rng.standard_normal(shape)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    ka = kx * math.cos(angle) + ky * math.sin(angle)
    kb = -kx * math.sin(angle) + ky * math.cos(angle)
    s2 = (sigma_px * stretch) ** 2 * ka**2 + sigma_px**2 * kb**2
    f = np.fft.irfft2(np.fft.rfft2(noise) * np.exp(-2.0 * math.pi**2 * s2), s=shape)
    std = float(f.std())
    return (f - f.mean()) / (std if std > 0 else 1.0)


def uniform_field(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> F64:
    """Smooth field with exactly uniform marginals on (0, 1) (rank transform)."""
    f = smooth_field(rng, shape, sigma_px)
    u = np.empty(f.size)
    u[np.argsort(f, axis=None, kind="stable")] = (np.arange(f.size) + 0.5) / f.size
    return u.reshape(shape)


def block_mean(a: NDArray[np.generic], k: int) -> F64:
    """Mean over k x k blocks of the last two axes (shape divisible by k)."""
    a = np.asarray(a, dtype=np.float64)
    *lead, h, w = a.shape
    return a.reshape(*lead, h // k, k, w // k, k).mean(axis=(-3, -1))


def upsample(a: NDArray[np.generic], k: int) -> NDArray[np.generic]:
    """Replicate each pixel k x k (the archive's aligned read of a coarser band)."""
    return np.repeat(np.repeat(a, k, axis=-2), k, axis=-1)


def dilate(mask: Bool, r: int) -> Bool:
    """Binary dilation with a (2r+1) square (separable max filter), no wrap-around."""
    out = mask.copy()
    for axis in (0, 1):
        src = out.copy()
        n = src.shape[axis]
        for d in range(1, r + 1):
            lo = [slice(None)] * 2
            hi = [slice(None)] * 2
            lo[axis], hi[axis] = slice(0, n - d), slice(d, n)
            out[tuple(lo)] |= src[tuple(hi)]
            out[tuple(hi)] |= src[tuple(lo)]
    return out


def erode4(mask: Bool) -> Bool:
    """Pixels whose 4 neighbours are all set (outside the array counts as set)."""
    p = np.pad(mask, 1, mode="edge")
    return mask & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _quantile_threshold(f: F64, share: float, among: Bool | None = None) -> float:
    """Threshold such that `f > thr` holds on `share` of the cells (of those in `among`)."""
    values = f[among] if among is not None else f.ravel()
    if share <= 0.0 or values.size == 0:
        return math.inf
    if share >= 1.0:
        return -math.inf
    k = int(round((1.0 - share) * values.size))
    k = min(max(k, 0), values.size - 1)
    return float(np.partition(values, k)[k]) - 1e-12 if k > 0 else float(values.min()) - 1.0


# ---------------------------------------------------------------------------------------------------------
# The ground (5 m) scene
# ---------------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Ground:
    """One 3 km scene on the 5 m ground grid, after the atmosphere, with its truth layers."""

    scene_id: str
    group: str
    seed: int
    index: int
    reflectance: F64  # (6, H, W) in BANDS6 order, what reaches the sensor
    water: Bool  # water cells
    material: U8  # dominant surface material code (VEG, SOIL, ...)
    opacity: F64  # thick-cloud opacity 0-1
    cirrus: F64  # added cirrus reflectance (VNIR)
    shadow: F64  # cloud shadow strength 0-1 (share of direct sun blocked)
    terrain_dark: Bool  # terrain-shadowed (no direct sun) cells
    roof_id: NDArray[np.int32]  # building id of bright-roof cells, -1 elsewhere
    target_water_share: float  # designed share of water cells (lake threshold chosen to hit it)
    target_cloud_share: float  # designed share of truth cloud cells (shadows come on top)
    params: dict[str, float] = field(default_factory=dict)

    @property
    def cloud(self) -> Bool:
        """Truth cloud cells: thick cloud (opacity >= 0.5) or cirrus adding >= CIRRUS_CLOUD_MIN."""
        out: Bool = (self.opacity >= 0.5) | (self.cirrus >= CIRRUS_CLOUD_MIN)
        return out

    @property
    def cloud_shadow(self) -> Bool:
        """Truth cloud-shadow cells (outside the cloud truth)."""
        out: Bool = (self.shadow >= 0.5) & ~self.cloud
        return out


def _t_field(rng: np.random.Generator, shape: tuple[int, int], spread: float = 0.15) -> F64:
    """Within-material variation: a scene-level mixing parameter plus a smooth local perturbation."""
    t0 = rng.uniform(0.15, 0.85)
    return np.clip(t0 + spread * smooth_field(rng, shape, 20.0), 0.0, 1.0)


def _river(rng: np.random.Generator, shape: tuple[int, int], width_m: tuple[float, float]) -> Bool:
    """A sinuous river crossing the scene (random orientation), width in metres."""
    h, w = shape
    x = (np.arange(w) + 0.5) * FINE_M
    y = (np.arange(h) + 0.5) * FINE_M
    width = rng.uniform(*width_m)
    centre = rng.uniform(0.2, 0.8) * SCENE_M
    amp, lam, phase = rng.uniform(50, 250), rng.uniform(600, 1500), rng.uniform(0, 2 * math.pi)
    line = centre + amp * np.sin(2 * math.pi * x / lam + phase)
    river: Bool = np.abs(y[:, None] - line[None, :]) < width / 2.0
    return river.T if rng.random() < 0.5 else river


def _ponds(rng: np.random.Generator, shape: tuple[int, int], n: int, radius_m: tuple[float, float]) -> Bool:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros(shape, dtype=bool)
    for _ in range(n):
        r = rng.uniform(*radius_m) / FINE_M
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        out |= (yy + 0.5 - cy) ** 2 + (xx + 0.5 - cx) ** 2 < r * r
    return out


def _urban(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[F64, U8, NDArray[np.int32]]:
    """Street blocks: buildings 15-50 m with bright/concrete/dark roofs or parks, 10-15 m asphalt streets."""
    h, w = shape

    def cuts(n: int) -> NDArray[np.int64]:
        edges = [0]
        while edges[-1] < n:
            edges.append(edges[-1] + int(rng.integers(3, 11)))  # block 15-50 m
            edges.append(edges[-1] + int(rng.integers(2, 4)))  # street 10-15 m
        return np.asarray(edges)

    ey, ex = cuts(h), cuts(w)
    iy = np.searchsorted(ey, np.arange(h), side="right") - 1
    ix = np.searchsorted(ex, np.arange(w), side="right") - 1
    street = (iy[:, None] % 2 == 1) | (ix[None, :] % 2 == 1)
    block = (iy[:, None] // 2) * (len(ex) // 2 + 1) + ix[None, :] // 2
    n_blocks = int(block.max()) + 1
    kind = rng.choice(4, size=n_blocks, p=[0.25, 0.25, 0.2, 0.3])  # bright, concrete, dark roof, park
    k = kind[block]
    refl = np.zeros((6, h, w))
    t = {name: _t_field(rng, shape) for name in ("roof_bright", "concrete", "asphalt", "vegetation")}
    for code, name in enumerate(("roof_bright", "concrete", "asphalt", "vegetation")):
        sel = (k == code) & ~street
        refl[:, sel] = SPECTRA[name].at(t[name])[:, sel]
    refl[:, street] = SPECTRA["asphalt"].at(t["asphalt"])[:, street]
    material = np.where(k == 3, VEG, URBAN).astype(np.uint8)
    material[(k == 0) & ~street] = ROOF
    material[street] = URBAN
    roof_id = np.where((k == 0) & ~street, block, -1).astype(np.int32)
    return refl, material, roof_id


def _terrain(rng: np.random.Generator, shape: tuple[int, int], water_share: float) -> tuple[F64, Bool, float]:
    """DEM (m) with a flat lake in the lowest ground; returns (dem, lake, sun elevation deg)."""
    relief = rng.uniform(50.0, 130.0)  # hilly terrain: median slope ~10-20 deg, 90th percentile ~20-35 deg
    dem = relief * (0.7 * smooth_field(rng, shape, 60.0) + 0.3 * smooth_field(rng, shape, 20.0))
    level = -_quantile_threshold(-dem, water_share)
    lake = dem < level
    dem = np.where(lake, level, dem)
    return dem, lake, rng.uniform(20.0, 35.0)


def _illumination(dem: F64, sun_elev_deg: float) -> tuple[F64, Bool, F64]:
    """(direct-sun factor cos i / cos z, 0 in self/cast shadow; terrain-dark mask; cos(slope)) for a sun
    due south; north is row 0."""
    el = math.radians(sun_elev_deg)
    d_row = np.gradient(dem, FINE_M, axis=0)  # dz per metre southwards
    d_col = np.gradient(dem, FINE_M, axis=1)  # dz per metre eastwards
    # normal (east, north, up) = (-dz/de, -dz/dn, 1); dz/dn = -d_row; sun vector (0, -cos el, sin el)
    # n_north = -dz/dn = d_row and s_north = -cos(el), so n . s = -d_row cos(el) + sin(el)
    cos_i = (d_row * -math.cos(el) + math.sin(el)) / np.sqrt(1.0 + d_row**2 + d_col**2)
    direct = np.clip(cos_i / math.sin(el), 0.0, None)
    # Cast shadows: march from the south edge northwards keeping the sun-ray horizon.
    drop = FINE_M * math.tan(el)
    horizon = np.full(dem.shape[1], -np.inf)
    cast = np.zeros(dem.shape, dtype=bool)
    for r in range(dem.shape[0] - 2, -1, -1):
        horizon = np.maximum(horizon, dem[r + 1]) - drop
        cast[r] = dem[r] < horizon
    direct[cast] = 0.0
    dark: Bool = direct < 0.05
    cos_slope = 1.0 / np.sqrt(1.0 + d_row**2 + d_col**2)
    return direct, dark, cos_slope


def make_ground(group: str, seed: int, index: int) -> Ground:
    """Build scene `index` of condition `group` (deterministic for (seed, group, index))."""
    spec = GROUPS[group]
    gi = list(GROUPS).index(group)
    rng = np.random.default_rng([seed, gi, index])
    shape = (N_FINE, N_FINE)
    params: dict[str, float] = {}

    # Land: vegetation / bare-soil mosaic with ~10-20 m soft transitions (mixed cells).
    fine_mosaic = group == "mixed_edges"
    veg_field = smooth_field(rng, shape, 8.0 if fine_mosaic else 40.0)
    veg_q = _quantile_threshold(veg_field, rng.uniform(0.45, 0.75))
    veg_frac = np.clip(0.5 + (veg_field - veg_q) / (0.5 if fine_mosaic else 0.1), 0.0, 1.0)
    refl = veg_frac[None] * SPECTRA["vegetation"].at(_t_field(rng, shape)) + (1.0 - veg_frac[None]) * SPECTRA[
        "soil"
    ].at(_t_field(rng, shape))
    material = np.where(veg_frac >= 0.5, VEG, SOIL).astype(np.uint8)
    roof_id = np.full(shape, -1, dtype=np.int32)

    # Water geometry: river + ponds + lake, the lake threshold chosen so the union hits the target share.
    water_share = rng.uniform(0.12, 0.30)
    fixed = _river(rng, shape, (8.0, 30.0) if fine_mosaic else (20.0, 60.0))
    n_ponds = int(rng.integers(8, 16)) if fine_mosaic else int(rng.integers(0, 4))
    fixed |= _ponds(rng, shape, n_ponds, (8.0, 45.0) if fine_mosaic else (20.0, 60.0))
    dem: F64 | None = None
    if group == "terrain_shadow":
        dem, lake0, sun_el = _terrain(rng, shape, water_share)
        params["sun_elevation_deg"] = sun_el
        fixed = np.zeros(shape, dtype=bool)  # the valley lake only: no river or ponds on the hills
        water = lake0
        lake_field = -dem
        lake_thr = -float(dem[lake0].max()) if lake0.any() else math.inf
    else:
        lake_field = smooth_field(rng, shape, rng.uniform(50.0, 90.0))
        need = max(water_share - float(fixed.mean()), 0.0) / max(1.0 - float(fixed.mean()), 1e-9)
        lake_thr = _quantile_threshold(lake_field, need, ~fixed)
        water = (lake_field > lake_thr) | fixed

    if group == "urban":
        urefl, umat, roof_id = _urban(rng, shape)
        urban_area = ~water
        refl[:, urban_area] = urefl[:, urban_area]
        material[urban_area] = umat[urban_area]
        roof_id[water] = -1
    if group == "shallow_sand":
        beach = (lake_field > lake_thr - 0.25) & ~water
        refl[:, beach] = SPECTRA["sand_dry"].at(_t_field(rng, shape))[:, beach]
        material[beach] = SAND
    if group == "snow":
        snow_field = smooth_field(rng, shape, 30.0)
        snow_frac = np.clip(
            0.5 + (snow_field - _quantile_threshold(snow_field, rng.uniform(0.2, 0.45))) / 0.2, 0, 1
        )
        snow_frac[water] = 0.0
        refl = (1.0 - snow_frac[None]) * refl + snow_frac[None] * SPECTRA["snow"].at(_t_field(rng, shape))
        material[snow_frac >= 0.5] = SNOW

    # Water reflectance.
    if spec.water == "shallow":
        params["max_depth_m"] = dmax = rng.uniform(1.5, 4.0)
        inside = lake_field[water & ~fixed]
        top = float(np.quantile(inside, 0.95)) if inside.size else lake_thr + 1.0
        depth = dmax * np.clip((lake_field - lake_thr) / max(top - lake_thr, 1e-9), 0.0, 1.0)
        depth = np.where(fixed, 0.8, depth)
        deep = SPECTRA["water_clear"].at(_t_field(rng, shape))
        bottom = SPECTRA["sand_bottom"].at(_t_field(rng, shape))
        k = (WATER_ABSORPTION + PARTICULATE_K)[:, None, None]
        wrefl = deep + (bottom - deep) * np.exp(-2.0 * k * depth[None])
    else:
        wrefl = SPECTRA[spec.water].at(_t_field(rng, shape, 0.25))
    refl[:, water] = wrefl[:, water]
    material[water] = WATER

    # Terrain illumination (rugged-terrain irradiance model of Sandmeier & Itten 1997, IEEE TGRS 35:708-717):
    # E/E_flat = (1 - d) * cos(i)/cos(z) (0 in self/cast shadow) + d * V_sky + V_terrain * mean reflectance,
    # with sky view V_sky = (1 + cos slope) / 2 and terrain view V_terrain = (1 - cos slope) / 2.
    diffuse = SPECTRA["diffuse"].at(np.full(shape, rng.uniform(0.0, 1.0)))
    terrain_dark = np.zeros(shape, dtype=bool)
    if dem is not None:
        direct, terrain_dark, cos_slope = _illumination(dem, params["sun_elevation_deg"])
        mean_refl = refl.mean(axis=(1, 2))[:, None, None]
        refl = refl * (
            (1.0 - diffuse) * direct[None]
            + diffuse * (1.0 + cos_slope[None]) / 2.0
            + mean_refl * (1.0 - cos_slope[None]) / 2.0
        )

    # Clouds.
    opacity = np.zeros(shape)
    cirrus = np.zeros(shape)
    shadow = np.zeros(shape)
    cloud_share = rng.uniform(*spec.cloud_share) if spec.cloud_kind else 0.0
    if spec.cloud_kind in ("cumulus", "stratus"):
        if spec.cloud_kind == "cumulus":
            f = 0.6 * smooth_field(rng, shape, 12.0) + 0.4 * smooth_field(rng, shape, 35.0)
        else:
            f = 0.8 * smooth_field(rng, shape, 80.0) + 0.2 * smooth_field(rng, shape, 15.0)
        f = (f - f.mean()) / f.std()
        thr = _quantile_threshold(f, cloud_share)
        opacity = np.clip(0.5 + (f - thr) / 0.3, 0.0, 1.0)  # soft rims of a few cells
        dist = rng.uniform(300.0, 700.0) / FINE_M
        theta = math.radians(rng.uniform(115.0, 155.0))  # sun in the SE: shadows fall to the NW
        shift = (int(round(-dist * math.sin(theta))), int(round(dist * math.cos(theta))))
        shadow = np.roll(opacity, shift, axis=(0, 1))
        params["shadow_shift_m"] = dist * FINE_M
        refl = refl * (diffuse + (1.0 - diffuse) * (1.0 - shadow[None]))
        cloud_refl = SPECTRA["cloud"].at(_t_field(rng, shape, 0.2))
        refl = (1.0 - opacity[None]) * refl + opacity[None] * cloud_refl
    elif spec.cloud_kind == "cirrus":
        haze = SPECTRA["haze"].at(np.clip(rng.uniform(0.5, 1.0) * uniform_field(rng, shape, 60.0), 0, 1))
        refl = refl + haze
        f = smooth_field(rng, shape, 10.0, stretch=6.0, angle=rng.uniform(0.0, math.pi))
        thr = _quantile_threshold(f, cloud_share)
        params["cirrus_max"] = cmax = rng.uniform(*CIRRUS_MAX_RANGE)
        fmax = float(f.max())
        above = CIRRUS_CLOUD_MIN + (cmax - CIRRUS_CLOUD_MIN) * np.clip(
            (f - thr) / max(fmax - thr, 1e-9), 0, 1
        )
        below = CIRRUS_CLOUD_MIN * np.clip((f - (thr - 1.0)) / 1.0, 0.0, 1.0) * 0.999
        cirrus = np.where(f > thr, above, below)
        c = cirrus[None]
        refl = refl * (1.0 - c) + c * CIRRUS_SHAPE[:, None, None]

    return Ground(
        scene_id=f"{group}-{index:02d}",
        group=group,
        seed=seed,
        index=index,
        reflectance=refl,
        water=water,
        material=material,
        opacity=opacity,
        cirrus=cirrus,
        shadow=shadow,
        terrain_dark=terrain_dark & ~water,
        roof_id=roof_id,
        target_water_share=water_share,
        target_cloud_share=cloud_share,
        params=params,
    )


# ---------------------------------------------------------------------------------------------------------
# Sensor observations
# ---------------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Observation:
    """One scene seen by one constellation: the archive slice, its radiometry and the truth."""

    scene_id: str
    group: str
    constellation: Constellation
    bands: tuple[str, ...]
    scale: tuple[float, ...]
    offset: tuple[float, ...]
    data: U16  # (band, y, x) DNs in archive band order, classification band included
    reflectance: F64  # (reflectance band, y, x) before quantisation, archive order without the QA band
    water: Bool  # truth water pixels
    water_fraction: F64  # exact water share of each pixel (area reference)
    cloud: Bool  # truth cloud or cloud-shadow pixels
    cloud_only: Bool  # truth cloud pixels (no shadow)
    pixel_size_m: float


def encode_s2(refl: F64) -> U16:
    """Sentinel-2 L2A DN (baseline >= 04.00): round(refl x 10000 + 1000), clamped to 1..65535 (0 = nodata)."""
    return np.clip(np.rint(refl * 10000.0 + S2_ADD_DN), 1, 65535).astype(np.uint16)


def encode_landsat(refl: F64) -> U16:
    """Landsat C2 L2 DN: round((refl + 0.2) / 2.75e-5), clamped to 1..65535 (0 = nodata)."""
    return np.clip(np.rint((refl - LS_OFFSET) / LS_SCALE), 1, 65535).astype(np.uint16)


def decode(dn: NDArray[np.generic], scale: float, offset: float) -> F64:
    """Reflectance from DN with a recorded scale/offset (float64)."""
    return np.asarray(dn, dtype=np.float64) * scale + offset


def _shadow_detected(
    rng: np.random.Generator, shadow_px: Bool, water_px: Bool, rates: dict[str, float]
) -> Bool:
    u = uniform_field(rng, shadow_px.shape, 4.0)  # patchy (not salt-and-pepper) omissions
    p = np.where(water_px, rates["water"], rates["land"])
    out: Bool = shadow_px & (u < p)
    return out


def _cirrus_detected(cirrus_px: Bool, strength: F64, miss: float) -> Bool:
    if not cirrus_px.any():
        return cirrus_px
    thr = float(np.quantile(strength[cirrus_px], miss))
    out: Bool = cirrus_px & (strength > thr)
    return out


def _commission(rng: np.random.Generator, roof_id: NDArray[np.int32], k: int, share: float) -> Bool:
    ids = np.unique(roof_id[roof_id >= 0])
    flagged = ids[rng.random(ids.size) < share]
    return block_mean(np.isin(roof_id, flagged), k) >= 0.5


def make_scl(g: Ground, rng: np.random.Generator) -> U8:
    """SCL at 20 m from the truth, with Sen2Cor-like imperfections; returned on the 10 m grid."""
    k = 4
    thick = block_mean(g.opacity >= 0.5, k)
    opacity = block_mean(g.opacity, k)
    cirrus_share = block_mean((g.cirrus >= CIRRUS_CLOUD_MIN) & (g.opacity < 0.5), k)
    shadow = block_mean(g.cloud_shadow, k)
    water = block_mean(g.water, k) >= 0.5
    scl = np.full(thick.shape, SCL_SOIL, dtype=np.uint8)
    scl[block_mean(g.material == VEG, k) >= 0.5] = SCL_VEG
    scl[block_mean(g.terrain_dark, k) >= 0.5] = SCL_DARK
    scl[block_mean(g.material == SNOW, k) >= 0.5] = SCL_SNOW
    scl[water] = SCL_WATER
    scl[_shadow_detected(rng, shadow >= 0.5, water, SCL_SHADOW_DETECT)] = SCL_SHADOW
    scl[_cirrus_detected(cirrus_share >= 0.5, block_mean(g.cirrus, k), SCL_CIRRUS_MISS)] = SCL_CIRRUS
    scl[_commission(rng, g.roof_id, k, SCL_ROOF_COMMISSION)] = SCL_CLOUD_MED
    cloud = thick >= 0.5
    core = erode4(cloud) & (opacity >= SCL_HIGH_OPACITY)
    scl[cloud] = SCL_CLOUD_MED  # edges and thinner parts: medium probability
    scl[core] = SCL_CLOUD_HIGH
    return upsample(scl, 2).astype(np.uint8)


def make_qa_pixel(g: Ground, rng: np.random.Generator) -> U16:
    """Landsat C2 QA_PIXEL at 30 m from the truth, with CFMask-like behaviour (dilated cloud bit)."""
    k = 6
    cloud = (block_mean(g.opacity >= 0.5, k) >= 0.5) | _commission(rng, g.roof_id, k, QA_ROOF_COMMISSION)
    dilated = dilate(cloud, QA_CLOUD_DILATION_PX) & ~cloud
    cirrus_px = block_mean((g.cirrus >= CIRRUS_CLOUD_MIN) & (g.opacity < 0.5), k) >= 0.5
    cirrus = _cirrus_detected(cirrus_px, block_mean(g.cirrus, k), QA_CIRRUS_MISS)
    water = block_mean(g.water, k) >= 0.5
    shadow = _shadow_detected(rng, block_mean(g.cloud_shadow, k) >= 0.5, water, QA_SHADOW_DETECT) & ~cloud
    snow = block_mean(g.material == SNOW, k) >= 0.5
    qa = np.zeros(cloud.shape, dtype=np.uint16)

    def bit(mask: Bool, b: int) -> None:
        qa[mask] |= np.uint16(1 << b)

    bit(dilated, QA_DILATED)
    bit(cirrus, QA_CIRRUS)
    bit(cloud, QA_CLOUD)
    bit(shadow, QA_SHADOW)
    bit(snow, QA_SNOW)
    bit(~(cloud | dilated | shadow), QA_CLEAR)
    bit(water & ~cloud, QA_WATER)
    # confidences (2 bits each): cloud 8-9, shadow 10-11, snow 12-13, cirrus 14-15; 1 = low, 3 = high
    qa |= np.where(cloud, 3 << 8, 1 << 8).astype(np.uint16)
    qa |= np.where(shadow, 3 << 10, 1 << 10).astype(np.uint16)
    qa |= np.where(snow, 3 << 12, 1 << 12).astype(np.uint16)
    qa |= np.where(cirrus, 3 << 14, 1 << 14).astype(np.uint16)
    return qa


def observe(g: Ground, constellation: str, seed: int) -> Observation:
    """The archive slice and truth of ground scene `g` seen by `constellation` (deterministic)."""
    const = CONSTELLATIONS[constellation]
    ci = CONSTELLATION_NAMES.index(constellation)
    rng = np.random.default_rng([seed, list(GROUPS).index(g.group), g.index, 100 + ci])
    truth_cells = g.cloud | g.cloud_shadow
    role = {b: b for b in BANDS6} | {"nir08": "nir"}
    if const.name == "sentinel-2":
        k, res = 2, 10.0
        clean10 = block_mean(g.reflectance, k)  # 10 m: 2 x 2 means of the 5 m ground
        layers: list[F64] = []
        for b in const.reflectance_bands:
            i = BANDS6.index(role[b])
            if b in ("nir08", "swir16", "swir22"):  # 20 m: 2 x 2 means of the 10 m values, own noise
                layer20 = block_mean(clean10[i], 2)
                layer20 = layer20 + NOISE_20M * rng.standard_normal(layer20.shape)
                layers.append(upsample(layer20, 2).astype(np.float64))
            else:
                layers.append(clean10[i] + NOISE_10M * rng.standard_normal(clean10[i].shape))
        refl = np.stack(layers)
        dn = encode_s2(refl)
        qa = make_scl(g, rng).astype(np.uint16)
        scale = tuple([S2_SCALE] * len(layers) + [1.0])
        offset = tuple([S2_OFFSET] * len(layers) + [0.0])
    else:
        k, res = 6, 30.0
        r30 = block_mean(g.reflectance, k)
        r30 = r30 + NOISE_LANDSAT[:, None, None] * rng.standard_normal(r30.shape)
        refl = np.stack([r30[BANDS6.index(role[b])] for b in const.reflectance_bands])
        dn = encode_landsat(refl)
        qa = make_qa_pixel(g, rng)
        scale = tuple([LS_SCALE] * len(refl) + [1.0])
        offset = tuple([LS_OFFSET] * len(refl) + [0.0])
    assert const.bands[-1] == const.qa_band
    data = np.concatenate([dn, qa[None]]).astype(np.uint16)
    if const.thermal_band is not None:  # surface temperature is not simulated: absent (DN 0), as on L2SR
        i = const.bands.index(const.thermal_band)
        data = np.insert(data, i, 0, axis=0)
        scale, offset = (*scale[:i], math.nan, *scale[i:]), (*offset[:i], math.nan, *offset[i:])
    frac = block_mean(g.water, k)
    return Observation(
        scene_id=g.scene_id,
        group=g.group,
        constellation=const,
        bands=const.bands,
        scale=scale,
        offset=offset,
        data=data,
        reflectance=refl,
        water=frac >= 0.5,
        water_fraction=frac,
        cloud=block_mean(truth_cells, k) >= 0.5,
        cloud_only=block_mean(g.cloud, k) >= 0.5,
        pixel_size_m=res,
    )


def generate(
    seed: int = 0,
    scenes_per_group: int = 6,
    groups: Sequence[str] | None = None,
    constellations: Sequence[str] = CONSTELLATION_NAMES,
) -> Iterator[Observation]:
    """Observations of every scene of every group, one constellation after the other (lazy)."""
    for group in groups or list(GROUPS):
        for index in range(scenes_per_group):
            g = make_ground(group, seed, index)
            for c in constellations:
                yield observe(g, c, seed)
