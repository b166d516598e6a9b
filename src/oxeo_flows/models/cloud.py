"""Cloud, shadow and no-data masks: the products' own classification bands, and s2cloudless for L1C.

- Sentinel-2 L2A SCL classes: 0 no data, 1 saturated/defective, 2 dark area, 3 cloud shadow,
  4 vegetation, 5 bare soil, 6 water, 7 unclassified, 8/9 cloud medium/high probability, 10 thin
  cirrus, 11 snow. Invalid by default: {1, 3, 8, 9, 10} as cloud/shadow/defective; 0 is no data.
  Class 2 is NOT masked (dark water often lands there); 11 (snow) is optional (`SCL_SNOW`).
- Landsat Collection 2 QA_PIXEL bits: 0 fill (no data), 1 dilated cloud, 2 cirrus (OLI), 3 cloud,
  4 cloud shadow, 5 snow. Invalid by default: bits 1, 2, 3, 4; bit 5 (snow) optional (`QA_SNOW_BIT`).
- s2cloudless (Sentinel Hub, Zupanc 2017; CC BY-SA 4.0): a LightGBM pixel classifier on ten Sentinel-2
  L1C TOA bands including B10 (cirrus, 1.375 um), which L2A products lack. Its model file ships in
  the pip package `s2cloudless`; `s2cloudless_probability` loads that file with `lightgbm` directly,
  without importing `s2cloudless` (which pulls in sentinelhub and OpenCV). Install with
  `pip install lightgbm==4.7.0 && pip install --no-deps s2cloudless==1.7.3` (the `cloud` extra).

Each mask is a `CloudModel` in `CLOUD_MODELS` with a name and version; `default_cloud_model` gives
the one `predict_slice` uses per constellation (`scl-v1` for Sentinel-2 L2A, `qa-pixel-v1` for Landsat).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

SCL_NODATA = 0
SCL_SNOW = 11
SCL_INVALID_DEFAULT = frozenset({1, 3, 8, 9, 10})
QA_FILL_BIT = 0
QA_SNOW_BIT = 5
QA_INVALID_BITS_DEFAULT = (1, 2, 3, 4)


def scl_masks(
    scl: np.ndarray, invalid: frozenset[int] = SCL_INVALID_DEFAULT
) -> tuple[np.ndarray, np.ndarray]:
    """(nodata, cloud) boolean masks from an SCL array."""
    nodata = scl == SCL_NODATA
    cloud = np.isin(scl, np.fromiter(invalid, dtype=scl.dtype)) & ~nodata
    return nodata, cloud


def qa_pixel_masks(
    qa: np.ndarray, invalid_bits: tuple[int, ...] = QA_INVALID_BITS_DEFAULT
) -> tuple[np.ndarray, np.ndarray]:
    """(nodata, cloud) boolean masks from a Landsat C2 QA_PIXEL array (0 also counts as no data)."""
    q = qa.astype(np.uint16)
    nodata = ((q >> QA_FILL_BIT) & 1).astype(bool) | (q == 0)
    bits = np.uint16(sum(1 << b for b in invalid_bits))
    cloud = ((q & bits) != 0) & ~nodata
    return nodata, cloud


@dataclass(frozen=True)
class SclCloudModel:
    """Invalid pixels from Sentinel-2 L2A SCL classes (`classes`); snow (11) only when listed."""

    name: str = "scl"
    version: str = "1"
    classes: frozenset[int] = SCL_INVALID_DEFAULT

    @property
    def key(self) -> str:
        base = f"{self.name}-v{self.version}"
        if self.classes == SCL_INVALID_DEFAULT:
            return base
        return f"{base}-c{'.'.join(str(c) for c in sorted(self.classes))}"

    def masks(self, qa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(nodata, cloud) from the SCL band."""
        return scl_masks(qa, self.classes)


@dataclass(frozen=True)
class QaPixelCloudModel:
    """Invalid pixels from Landsat C2 QA_PIXEL bits (`bits`); snow (bit 5) only when listed."""

    name: str = "qa-pixel"
    version: str = "1"
    bits: tuple[int, ...] = QA_INVALID_BITS_DEFAULT

    @property
    def key(self) -> str:
        base = f"{self.name}-v{self.version}"
        return base if self.bits == QA_INVALID_BITS_DEFAULT else f"{base}-b{'.'.join(map(str, self.bits))}"

    def masks(self, qa: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(nodata, cloud) from the QA_PIXEL band."""
        return qa_pixel_masks(qa, self.bits)


CLOUD_MODELS: dict[str, Any] = {
    "scl": SclCloudModel(),
    "scl-snow": SclCloudModel(name="scl", classes=SCL_INVALID_DEFAULT | {SCL_SNOW}),
    "qa-pixel": QaPixelCloudModel(),
    "qa-pixel-snow": QaPixelCloudModel(name="qa-pixel", bits=(*QA_INVALID_BITS_DEFAULT, QA_SNOW_BIT)),
}


def default_cloud_model(constellation_name: str) -> SclCloudModel | QaPixelCloudModel:
    """The product mask used by `predict_slice`: SCL for Sentinel-2 L2A, QA_PIXEL for Landsat."""
    return CLOUD_MODELS["scl"] if constellation_name == "sentinel-2" else CLOUD_MODELS["qa-pixel"]


# --------------------------------------------------------------------------------------------------
# s2cloudless (Sentinel-2 L1C)

S2CLOUDLESS_VERSION = "1.7.3"
S2CLOUDLESS_MODEL_FILE = "s2cloudless/models/pixel_s2_cloud_detector_lightGBM_v0.1.txt"
# Feature order of the packaged model: L1C bands B01, B02, B04, B05, B08, B8A, B09, B10, B11, B12 as
# TOA reflectance (DN / 10000; from baseline 04.00 remove the +1000 RADIO_ADD_OFFSET first).
S2CLOUDLESS_BANDS = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")
S2CLOUDLESS_THRESHOLD = 0.4  # the package defaults: probability > 0.4, 1-px mean filter, 1-px dilation
S2CLOUDLESS_AVERAGE_PX = 1
S2CLOUDLESS_DILATION_PX = 1


class S2CloudlessUnavailable(RuntimeError):
    """lightgbm or the s2cloudless model file is not installed."""


def s2cloudless_model_path() -> Path:
    """Path of the packaged LightGBM model, found through the distribution's file list (no import)."""
    try:
        dist = metadata.distribution("s2cloudless")
    except metadata.PackageNotFoundError:
        raise S2CloudlessUnavailable(
            f"s2cloudless is not installed: pip install --no-deps s2cloudless=={S2CLOUDLESS_VERSION}"
        ) from None
    path = Path(str(dist.locate_file(S2CLOUDLESS_MODEL_FILE)))
    if not path.is_file():
        raise S2CloudlessUnavailable(f"s2cloudless {dist.version}: model file {path} is missing")
    return path


@lru_cache(maxsize=1)
def _booster() -> Any:
    try:
        import lightgbm
    except ImportError:
        raise S2CloudlessUnavailable("lightgbm is not installed: pip install lightgbm==4.7.0") from None
    return lightgbm.Booster(model_file=str(s2cloudless_model_path()))


def s2cloudless_probability(toa: Mapping[str, np.ndarray]) -> np.ndarray:
    """Cloud probability 0-1 (float32, the inputs' shape) from L1C TOA reflectance per band name."""
    missing = [b for b in S2CLOUDLESS_BANDS if b not in toa]
    if missing:
        raise ValueError(f"s2cloudless needs L1C bands {', '.join(missing)}")
    shape = np.broadcast_shapes(*(np.shape(toa[b]) for b in S2CLOUDLESS_BANDS))
    x = np.stack(
        [np.broadcast_to(np.asarray(toa[b], np.float64), shape).ravel() for b in S2CLOUDLESS_BANDS], 1
    )
    proba = np.asarray(_booster().predict(x), dtype=np.float32)
    return proba.reshape(shape)


def _disk(radius_px: int) -> np.ndarray:
    y, x = np.ogrid[-radius_px : radius_px + 1, -radius_px : radius_px + 1]
    return np.asarray(x * x + y * y <= radius_px * radius_px)


@dataclass(frozen=True)
class S2CloudlessModel:
    """Cloud mask of s2cloudless on one (y, x) L1C scene: the package's post-processing (mean over a
    disk of `average_px`, probability > `threshold`, dilation by a disk of `dilation_px`)."""

    name: str = "s2cloudless"
    version: str = S2CLOUDLESS_VERSION
    threshold: float = S2CLOUDLESS_THRESHOLD
    average_px: int = S2CLOUDLESS_AVERAGE_PX
    dilation_px: int = S2CLOUDLESS_DILATION_PX

    @property
    def key(self) -> str:
        return f"{self.name}-v{self.version}"

    def cloud(self, toa: Mapping[str, np.ndarray]) -> np.ndarray:
        """Boolean cloud mask (y, x)."""
        p = s2cloudless_probability(toa)
        if self.average_px > 0:
            k = _disk(self.average_px).astype(np.float32)
            p = ndimage.convolve(p, k / k.sum(), mode="reflect")
        out = p > self.threshold
        if self.dilation_px > 0:
            out = ndimage.binary_dilation(out, structure=_disk(self.dilation_px))
        return np.asarray(out)


CLOUD_MODELS["s2cloudless"] = S2CloudlessModel()
