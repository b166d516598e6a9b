"""`models` section: throughput of every registered water model through `predict_slice`, on one core, as
the flows run it (shoreline refinement on) and, where that differs, alone (`NAME (per-pixel)`).

The input is one 1000 x 1000 archive slice of the 8 Sentinel-2 archive bands (uint16 DN, baseline 05.10:
DN = reflectance x 10000 + 1000), built from the sample data's reference spectra (vegetation / bare soil
mix, about 10 % water, about 15 % cloud with shadows, a 3 % no-data swath edge, per-pixel noise). The 20 m
bands and SCL are 2 x 2 replicated, as `load_day` writes them into the 10 m archive.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.accuracy import report_models
from benchmarks.common import Row, Section, log, median
from benchmarks.extraction import _smooth, _upsample
from oxeo_flows.archive import MASK_CLOUD, MASK_DRY, MASK_NODATA, MASK_WATER
from oxeo_flows.constellations import CONSTELLATIONS
from oxeo_flows.models import predict_slice
from oxeo_flows.sample_data import CLOUD_HIGH, CLOUD_MEDIUM, SOIL, VEGETATION, WATER

SIDE = 1000
CONST = CONSTELLATIONS["sentinel-2"]
# Band order of the sample-data spectra (blue, green, red, nir, nir08, swir16, swir22).
SPECTRA_BANDS = ("blue", "green", "red", "nir", "nir08", "swir16", "swir22")
TWENTY_M = ("nir08", "swir16", "swir22", "scl")
SCALE, OFFSET, BOA_ADD_DN = 1e-4, -0.1, 1000


def _replicate_20m(a: NDArray[Any]) -> NDArray[Any]:
    """Keep the top-left pixel of each 2 x 2 block and replicate it: what a 20 m band looks like at 10 m."""
    return np.repeat(np.repeat(a[::2, ::2], 2, axis=0), 2, axis=1)


def make_slice(seed: int = 7) -> tuple[NDArray[np.uint16], tuple[float, ...], tuple[float, ...]]:
    """(band, y, x) uint16 slice of the archive bands, with per-band scale and offset."""
    rng = np.random.default_rng(seed)
    coarse = SIDE // 4  # 40 m cells, bilinearly upsampled
    land = _upsample(_smooth(rng, (coarse, coarse), (1.5, 5.0, 15.0)), 4, 0, SIDE, SIDE)
    cloud = _upsample(_smooth(rng, (coarse, coarse), (4.0, 10.0)), 4, 0, SIDE, SIDE)
    shadow = np.roll(cloud, (-30, -10), axis=(0, 1))  # ~300 m NNW of the cloud
    water = land < np.quantile(land, 0.10)
    c_thr, c_high = np.quantile(cloud, 0.85), np.quantile(cloud, 0.93)
    cloudy = cloud > c_thr
    shade = (shadow > c_thr) & ~cloudy
    veg = (1.0 / (1.0 + np.exp(-3.0 * land))).astype(np.float32)
    nodata = np.zeros((SIDE, SIDE), dtype=bool)
    nodata[:, : SIDE * 3 // 100] = True  # swath edge

    data = np.zeros((len(CONST.bands), SIDE, SIDE), dtype=np.uint16)
    for i, band in enumerate(SPECTRA_BANDS):
        refl = veg * np.float32(VEGETATION[i]) + (1.0 - veg) * np.float32(SOIL[i])
        refl[water] = WATER[i]
        refl[shade] *= 0.3
        refl[cloudy] = CLOUD_MEDIUM[i]
        refl[cloud > c_high] = CLOUD_HIGH[i]
        refl += 0.003 * rng.standard_normal(refl.shape, dtype=np.float32)
        dn = np.clip(np.rint(refl * 10_000.0) + BOA_ADD_DN, 1, 65_535).astype(np.uint16)
        data[CONST.bands.index(band)] = _replicate_20m(dn) if band in TWENTY_M else dn
    scl = np.where(veg > 0.5, 4, 5).astype(np.uint16)
    scl[water] = 6
    scl[shade] = 3
    scl[cloudy] = 8
    scl[cloud > c_high] = 9
    data[CONST.bands.index(CONST.qa_band)] = _replicate_20m(scl)
    data[:, nodata] = 0
    scale = tuple(1.0 if b == CONST.qa_band else SCALE for b in CONST.bands)
    offset = tuple(0.0 if b == CONST.qa_band else OFFSET for b in CONST.bands)
    return data, scale, offset


def run(repeats: int) -> Section:
    """`predict_slice` of every model in `report_models()` on the same slice; single-threaded, `repeats`
    timings."""
    section = Section("models")
    data, scale, offset = make_slice()
    px = SIDE * SIDE
    results: dict[str, Any] = {}
    models = report_models()
    log(f"[models] predict_slice on a {SIDE}x{SIDE} Sentinel-2 slice, {list(models)}; x{repeats} ...")
    for name, model in models.items():
        mask = predict_slice(data, CONST.bands, scale, offset, CONST, model)  # warm-up
        wall: list[float] = []
        cpu: list[float] = []
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            predict_slice(data, CONST.bands, scale, offset, CONST, model)
            wall.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        med = median(wall)
        counts = {
            code: int(np.count_nonzero(mask == v))
            for code, v in (
                ("dry", MASK_DRY),
                ("water", MASK_WATER),
                ("cloud", MASK_CLOUD),
                ("nodata", MASK_NODATA),
            )
        }
        results[name] = {
            "key": model.key,
            "roles": list(model.roles),
            "seconds": wall,
            "cpu_seconds": cpu,
            "median_s": med,
            "mpx_per_s": px / med / 1e6,
            "cpu_over_wall": median(cpu) / med,
            "mask_px": counts,
        }
        section.rows.append(Row(f"model {name}: predict_slice, Mpx/s/core", f"{px / med / 1e6:.1f}"))
    shares = ", ".join(
        f"{k} {100.0 * v / px:.1f} %" for k, v in results[next(iter(models))]["mask_px"].items()
    )
    section.notes = [
        f"models: one {SIDE}x{SIDE} px slice of {len(CONST.bands)} bands, median of {repeats}; "
        + ", ".join(f"{k} {v['median_s'] * 1e3:.0f} ms" for k, v in results.items())
        + f"; mask of {next(iter(models))}: {shares}"
    ]
    section.result = {"side_px": SIDE, "bands": list(CONST.bands), "repeats": repeats, "models": results}
    return section
