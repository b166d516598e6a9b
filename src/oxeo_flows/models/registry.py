"""Water models and the registry the flows use; adding a model never touches the flows.

A water model declares the reflectance bands it needs (by role: blue, green, red, nir, swir16, swir22)
and maps reflectance arrays (float32, 0-1) to a boolean water array. `predict_slice` turns one archive
slice into a uint8 mask: 0 dry, 1 water, 254 cloud/shadow/defective, 255 no data.

Registered models (the key, `name-vVERSION[-params]`, is part of the archive's mask names, so a key
never changes meaning; a change of output gets a new version or name):

- `mndwi` v1: MNDWI (green, swir16) > threshold (default 0; Xu 2006). Textbook, per pixel.
- `ndwi` v1: NDWI (green, nir) > threshold (McFeeters 1996).
- `pekel` v2: the rule table of Pekel et al. 2016 (exact: the regression fixtures, `pekel.PekelModel`)
  fed TOA-like reflectance: the archive holds surface reflectance, the rules were tuned on TOA, so a
  fixed Rayleigh path is added back first (`pekel.PekelSRModel`); uses a thermal band (kelvin) when the
  archive has one. v1 fed surface reflectance to the rules as it is (IoU 0.48 on the accuracy report:
  most clear and dark water rejected); `pekel-toa` keeps that for TOA-reflectance inputs.
- `pekel-sr` v1: the same computation as `pekel` v2, under its earlier name.
- `mndwi-lu` v1: MNDWI > 0 and NIR < 0.15 (the NIR bound of DSWE's partial-surface-water test, Jones
  2019), then shoreline unmixing (`ShorelineUnmixing`).
- `pekel-sr-lu` v1: `pekel-sr`, then shoreline unmixing.

Shoreline refinement (`with_shoreline_refinement`, setting `shoreline_refinement`, on by default) is a
pipeline stage, not a model: it applies `unmix_shoreline` to any model's output and appends `-lu` to the
key (`mndwi-v1-lu`); the `-lu` models above already include it. Per-pixel thresholds call a mixed
shoreline pixel water only when it is mostly water, which biases areas low (-5.6 % for `mndwi` on the
accuracy report's clear-water scenes, -0.5 % refined).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy import ndimage

from oxeo_flows.archive import MASK_CLOUD, MASK_DRY, MASK_NODATA, MASK_WATER
from oxeo_flows.constellations import Constellation
from oxeo_flows.errors import InputError
from oxeo_flows.models.cloud import default_cloud_model
from oxeo_flows.models.pekel import PekelModel, PekelSRModel

# Role -> archive band per family (Landsat's NIR is the 'nir08' asset; thermal is the C2 ST band:
# 'lwir11' on OLI/TIRS, 'lwir' on TM/ETM+). No archive carries a thermal band yet.
_ROLE_BANDS = {
    "sentinel-2": {"nir": "nir"},
    "landsat": {"nir": "nir08", "thermal": "lwir11"},
    "landsat-tm": {"nir": "nir08", "thermal": "lwir"},
}


def band_for(role: str, constellation: Constellation) -> str:
    if constellation.name == "sentinel-2":
        family = "sentinel-2"
    else:
        family = "landsat-tm" if constellation.name in ("landsat-5", "landsat-7") else "landsat"
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
    index_roles: tuple[str, str]
    threshold: float = 0.0
    max_nir: float | None = None  # optional bright-surface bound: water also needs nir < max_nir

    @property
    def roles(self) -> tuple[str, ...]:
        return self.index_roles if self.max_nir is None else tuple(dict.fromkeys((*self.index_roles, "nir")))

    @property
    def key(self) -> str:
        base = f"{self.name}-v{self.version}"
        if self.threshold != 0.0:
            base = f"{base}-t{self.threshold:g}"
        return base if self.max_nir is None else f"{base}-n{self.max_nir:g}"

    def classify(self, reflectance: Mapping[str, np.ndarray]) -> np.ndarray:
        idx = _normalised_difference(reflectance[self.index_roles[0]], reflectance[self.index_roles[1]])
        water = idx > self.threshold
        if self.max_nir is not None:
            water &= np.asarray(reflectance["nir"]) < self.max_nir
        return np.asarray(water)


_EIGHT = np.ones((3, 3), dtype=bool)


def _local_mean(values: np.ndarray, where: np.ndarray, radius_px: int) -> np.ndarray:
    """Mean of `values` over the `where` pixels of a (2r+1)^2 window; NaN where the window has none."""
    size = 2 * radius_px + 1
    num = ndimage.uniform_filter(np.where(where, values, 0.0), size, mode="constant")
    den = ndimage.uniform_filter(where.astype(np.float64), size, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0.5 / size**2, num / den, np.nan)


def unmix_shoreline(
    water: np.ndarray,
    x: np.ndarray,
    valid: np.ndarray | None = None,
    radius_px: int = 4,
    min_contrast: float = 0.05,
) -> np.ndarray:
    """Re-decide the pixels on both sides of a (y, x) water mask's boundary by their water fraction.

    Locally adaptive linear unmixing (after Ma et al. 2014, Int. J. Appl. Earth Obs. 33:109-118): in a
    (2 r + 1)^2 window the water end-member is the mean of `x` over interior water pixels (water whose 8
    neighbours are water), the land end-member the mean over pixels at least 3 pixels from water; the
    fraction is f = (land - x) / (land - water) and a boundary pixel is water iff f >= 0.5, i.e.
    x <= (land + water) / 2. This is the same >= 50 % rule a majority label uses. Pixels are left as
    they are where either end-member is missing (land also from a 3x wider window, water from the
    frame's interior median) or the contrast land - water is below `min_contrast` (reflectance).
    `x` should be a band where water is dark and land bright at the pixel's own resolution (NIR).
    """
    w = np.asarray(water, dtype=bool)
    ok_px = np.ones(w.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    w = w & ok_px
    if not w.any() or w.all():
        return w
    xv = np.asarray(x, dtype=np.float64)
    inner = ndimage.binary_erosion(w, _EIGHT, border_value=1) & w
    land = ~ndimage.binary_dilation(w, _EIGHT, iterations=2) & ok_px
    ring = ndimage.binary_dilation(w, _EIGHT) & ~inner & ok_px
    wv = _local_mean(xv, inner, radius_px)
    if inner.any():
        wv = np.where(np.isnan(wv), float(np.median(xv[inner])), wv)
    lv = _local_mean(xv, land, radius_px)
    lv = np.where(np.isnan(lv), _local_mean(xv, land, 3 * radius_px), lv)
    with np.errstate(invalid="ignore"):
        decide = ring & np.isfinite(wv) & np.isfinite(lv) & (lv - wv >= min_contrast) & np.isfinite(xv)
    out = w.copy()
    out[decide] = xv[decide] <= (wv[decide] + lv[decide]) / 2.0
    return out


@dataclass(frozen=True)
class ShorelineUnmixing:
    """`inner`'s water, with the pixels along its boundary re-decided by `unmix_shoreline` on `band`.

    Per-pixel indices at their textbook thresholds only call a water/land mixed pixel water when it is
    ~60-95 % water (threshold 0 sits far from the 50 % mixture), so shorelines, rivers and small ponds
    are eroded and areas biased low. Vectorised over leading axes; cloud and no-data pixels (`valid`
    False) are never used as end-members.
    """

    inner: WaterModel
    name: str
    version: str
    band: str = "nir"
    radius_px: int = 4
    accepts_valid: bool = True
    stage: bool = False  # added by `with_shoreline_refinement`: the key is the inner key + "-lu"

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.inner.roles, self.band)))

    @property
    def optional_roles(self) -> tuple[str, ...]:
        return tuple(getattr(self.inner, "optional_roles", ()))

    @property
    def key(self) -> str:
        if self.stage:
            return f"{self.inner.key}-lu"
        threshold = float(getattr(self.inner, "threshold", 0.0))
        base = f"{self.name}-v{self.version}"
        return base if threshold == 0.0 else f"{base}-t{threshold:g}"

    def classify(self, reflectance: Mapping[str, np.ndarray], valid: np.ndarray | None = None) -> np.ndarray:
        water = np.asarray(self.inner.classify(reflectance), dtype=bool)
        x = np.broadcast_to(np.asarray(reflectance[self.band]), water.shape)
        ok = np.ones(water.shape, dtype=bool) if valid is None else np.broadcast_to(valid, water.shape)
        if water.ndim < 2:
            return water
        out = np.empty_like(water)
        for i in np.ndindex(*water.shape[:-2]):
            out[i] = unmix_shoreline(water[i], x[i], ok[i], self.radius_px)
        return out


DSWE_MAX_NIR = 0.15  # DSWE partial-surface-water test 1: NIR < 1500 (x 1e-4) (Jones 2019, RSE 231:111225)

MODELS: dict[str, Callable[..., WaterModel]] = {
    "mndwi": lambda threshold=0.0: IndexThresholdModel("mndwi", "1", ("green", "swir16"), float(threshold)),
    "ndwi": lambda threshold=0.0: IndexThresholdModel("ndwi", "1", ("green", "nir"), float(threshold)),
    "pekel": lambda: PekelSRModel(name="pekel", version="2"),
    "pekel-toa": lambda: PekelModel(name="pekel-toa"),
    "pekel-sr": lambda: PekelSRModel(),
    "mndwi-lu": lambda threshold=0.0: ShorelineUnmixing(
        IndexThresholdModel("mndwi", "1", ("green", "swir16"), float(threshold), DSWE_MAX_NIR),
        "mndwi-lu",
        "1",
    ),
    "pekel-sr-lu": lambda: ShorelineUnmixing(PekelSRModel(), "pekel-sr-lu", "1"),
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
    def optional_roles(self) -> tuple[str, ...]:
        return tuple(getattr(self.inner, "optional_roles", ()))

    @property
    def accepts_valid(self) -> bool:
        return bool(getattr(self.inner, "accepts_valid", False))

    @property
    def key(self) -> str:
        return f"{self.inner.key}-cd{self.cloud_dilation_m:g}"

    def classify(self, reflectance: Mapping[str, np.ndarray], valid: np.ndarray | None = None) -> np.ndarray:
        if self.accepts_valid:
            return self.inner.classify(reflectance, valid=valid)  # type: ignore[call-arg]
        return self.inner.classify(reflectance)


def with_cloud_dilation(model: WaterModel, metres: float) -> WaterModel:
    """`model` unchanged for 0 m, else wrapped so its masks dilate clouds by `metres`."""
    if metres < 0:
        raise InputError("cloud_dilation_m", f"expected metres >= 0, got {metres}")
    return CloudDilated(model, float(metres)) if metres > 0 else model


def with_shoreline_refinement(model: WaterModel, enabled: bool = True) -> WaterModel:
    """`model` with `unmix_shoreline` applied to its output (key + "-lu"); unchanged when not `enabled`
    or when it already refines its shoreline (the `-lu` models)."""
    if not enabled or isinstance(model, ShorelineUnmixing):
        return model
    if isinstance(model, CloudDilated):
        return CloudDilated(with_shoreline_refinement(model.inner), model.cloud_dilation_m)
    return ShorelineUnmixing(model, model.name, model.version, stage=True)


def pipeline_model(
    name: str, shoreline_refinement: bool = True, cloud_dilation_m: float = 0.0, **params: float
) -> WaterModel:
    """The model a flow runs: registered `name` with `params`, shoreline-refined unless disabled, clouds
    dilated by `cloud_dilation_m` metres."""
    refined = with_shoreline_refinement(get_model(name, **params), shoreline_refinement)
    return with_cloud_dilation(refined, cloud_dilation_m)


def _disk(radius_px: int) -> np.ndarray:
    y, x = np.ogrid[-radius_px : radius_px + 1, -radius_px : radius_px + 1]
    return np.asarray(x * x + y * y <= radius_px * radius_px)


def get_model(name: str, **params: float) -> WaterModel:
    """Instantiate a registered model, raising `InputError('model', ...)` when unknown."""
    if name not in MODELS:
        raise InputError("model", f"unknown model {name!r}; expected one of {', '.join(sorted(MODELS))}")
    try:
        return MODELS[name](**params)
    except TypeError:
        accepted = sorted(inspect.signature(MODELS[name]).parameters)
        raise InputError(
            "model_params",
            f"model {name!r} takes {', '.join(accepted) or 'no parameters'}, got {', '.join(sorted(params))}",
        ) from None


def predict_slice(
    data: np.ndarray,
    bands: Sequence[str],
    scale: Sequence[float],
    offset: Sequence[float],
    constellation: Constellation,
    model: WaterModel,
) -> np.ndarray:
    """uint8 mask (y, x) for one uint16 (band, y, x) slice; reflectance = DN x scale + offset per band.

    Cloud/shadow and no data come from the constellation's default cloud model (`cloud.py`), dilated by
    the model's `cloud_dilation_m`. Required roles with DN 0 are no data; optional roles (e.g. thermal,
    read only when the archive has the band) are NaN where their DN is 0. Models with `accepts_valid`
    also get the valid-pixel mask (not cloud, not no data).
    """
    index = {b: i for i, b in enumerate(bands)}
    qa = data[index[constellation.qa_band]]
    nodata, cloud = default_cloud_model(constellation.name).masks(qa)
    reflectance: dict[str, np.ndarray] = {}
    for role in model.roles:
        i = index[band_for(role, constellation)]
        dn = data[i]
        nodata |= dn == 0
        reflectance[role] = dn.astype(np.float32) * np.float32(scale[i]) + np.float32(offset[i])
    for role in getattr(model, "optional_roles", ()):
        band = band_for(role, constellation)
        if band in index:
            i = index[band]
            dn = data[i]
            value = dn.astype(np.float32) * np.float32(scale[i]) + np.float32(offset[i])
            reflectance[role] = np.where(dn == 0, np.float32(np.nan), value)
    dilation_px = round(getattr(model, "cloud_dilation_m", 0.0) / constellation.resolution_m)
    if dilation_px > 0:
        cloud = ndimage.binary_dilation(cloud, structure=_disk(dilation_px))
    if getattr(model, "accepts_valid", False):
        water = model.classify(reflectance, valid=~(cloud | nodata))  # type: ignore[call-arg]
    else:
        water = model.classify(reflectance)
    mask = np.where(water, MASK_WATER, MASK_DRY).astype(np.uint8)
    mask[cloud] = MASK_CLOUD
    mask[nodata] = MASK_NODATA
    return mask
