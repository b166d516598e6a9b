"""Water models and the registry the flows use; adding a model never touches the flows.

A water model declares the reflectance bands it needs (by role: blue, green, red, nir, swir16, swir22)
and maps reflectance arrays (float32, 0-1) to a boolean water array. `predict_slice` turns one archive
slice into a uint8 mask: 0 dry, 1 water, 254 cloud/shadow/defective, 255 no data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import ndimage

from oxeo_flows.archive import MASK_CLOUD, MASK_DRY, MASK_NODATA, MASK_WATER
from oxeo_flows.constellations import Constellation
from oxeo_flows.errors import InputError
from oxeo_flows.models.cloud import qa_pixel_masks, scl_masks
from oxeo_flows.models.pekel import PekelModel

# Role -> archive band per family (Landsat's NIR is the 'nir08' asset).
_ROLE_BANDS = {
    "sentinel-2": {"nir": "nir"},
    "landsat": {"nir": "nir08"},
}


def band_for(role: str, constellation: Constellation) -> str:
    family = "sentinel-2" if constellation.name == "sentinel-2" else "landsat"
    return _ROLE_BANDS[family].get(role, role)


class WaterModel(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def roles(self) -> tuple[str, ...]: ...

    @property
    def key(self) -> str: ...

    def classify(self, reflectance: Mapping[str, np.ndarray]) -> np.ndarray: ...


def _normalised_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a - b) / (a + b)


@dataclass(frozen=True)
class IndexThresholdModel:
    """water = (a - b) / (a + b) > threshold; NaN (0/0) is dry.

    `mndwi`: a = green, b = swir16 (Xu 2006). `ndwi`: a = green, b = nir (McFeeters 1996).
    Threshold 0 is the textbook value; it is part of the model key when changed.
    """

    name: str
    version: str
    roles: tuple[str, str]
    threshold: float = 0.0

    @property
    def key(self) -> str:
        base = f"{self.name}-v{self.version}"
        return base if self.threshold == 0.0 else f"{base}-t{self.threshold:g}"

    def classify(self, reflectance: Mapping[str, np.ndarray]) -> np.ndarray:
        idx = _normalised_difference(reflectance[self.roles[0]], reflectance[self.roles[1]])
        return np.asarray(idx > self.threshold)


MODELS: dict[str, Callable[..., WaterModel]] = {
    "mndwi": lambda threshold=0.0: IndexThresholdModel("mndwi", "1", ("green", "swir16"), float(threshold)),
    "ndwi": lambda threshold=0.0: IndexThresholdModel("ndwi", "1", ("green", "nir"), float(threshold)),
    "pekel": lambda: PekelModel(),
}


@dataclass(frozen=True)
class CloudDilated:
    """`inner` with the product's cloud/shadow mask dilated by `cloud_dilation_m` metres (a disk).

    The dilation is part of the key (`mndwi-v1-cd60`), so masks with and without it coexist.
    """

    inner: WaterModel
    cloud_dilation_m: float

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def version(self) -> str:
        return self.inner.version

    @property
    def roles(self) -> tuple[str, ...]:
        return self.inner.roles

    @property
    def key(self) -> str:
        return f"{self.inner.key}-cd{self.cloud_dilation_m:g}"

    def classify(self, reflectance: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.inner.classify(reflectance)


def with_cloud_dilation(model: WaterModel, metres: float) -> WaterModel:
    """`model` unchanged for 0 m, else wrapped so its masks dilate clouds by `metres`."""
    if metres < 0:
        raise InputError("cloud_dilation_m", f"expected metres >= 0, got {metres}")
    return CloudDilated(model, float(metres)) if metres > 0 else model


def _disk(radius_px: int) -> np.ndarray:
    y, x = np.ogrid[-radius_px : radius_px + 1, -radius_px : radius_px + 1]
    return np.asarray(x * x + y * y <= radius_px * radius_px)


def get_model(name: str, **params: float) -> WaterModel:
    """Instantiate a registered model, raising `InputError('model', ...)` when unknown."""
    if name not in MODELS:
        raise InputError("model", f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](**params)
    except TypeError as exc:
        raise InputError("model", f"bad parameters {sorted(params)} for model {name!r}: {exc}") from None


def predict_slice(
    data: np.ndarray,
    bands: Sequence[str],
    scale: Sequence[float],
    offset: Sequence[float],
    constellation: Constellation,
    model: WaterModel,
) -> np.ndarray:
    """uint8 mask (y, x) for one uint16 (band, y, x) slice; reflectance = DN x scale + offset per band."""
    index = {b: i for i, b in enumerate(bands)}
    qa = data[index[constellation.qa_band]]
    if constellation.name == "sentinel-2":
        nodata, cloud = scl_masks(qa)
    else:
        nodata, cloud = qa_pixel_masks(qa)
    reflectance: dict[str, np.ndarray] = {}
    for role in model.roles:
        i = index[band_for(role, constellation)]
        dn = data[i]
        nodata |= dn == 0
        reflectance[role] = dn.astype(np.float32) * np.float32(scale[i]) + np.float32(offset[i])
    dilation_px = round(getattr(model, "cloud_dilation_m", 0.0) / constellation.resolution_m)
    if dilation_px > 0:
        cloud = ndimage.binary_dilation(cloud, structure=_disk(dilation_px))
    water = model.classify(reflectance)
    mask = np.where(water, MASK_WATER, MASK_DRY).astype(np.uint8)
    mask[cloud] = MASK_CLOUD
    mask[nodata] = MASK_NODATA
    return mask
