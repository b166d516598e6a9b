"""Tests for the cloud models of oxeo_flows.models.cloud: named product masks and s2cloudless."""

from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest

from oxeo_flows.models import cloud as C

QA_CLEAR_LAND = 21824
QA_CLOUD = 22280
QA_SNOW = 1 << 5 | 1 << 6  # snow bit + clear bit


def test_cloud_model_keys_and_defaults() -> None:
    assert C.CLOUD_MODELS["scl"].key == "scl-v1"
    assert C.CLOUD_MODELS["scl-snow"].key == "scl-v1-c1.3.8.9.10.11"
    assert C.CLOUD_MODELS["qa-pixel"].key == "qa-pixel-v1"
    assert C.CLOUD_MODELS["qa-pixel-snow"].key == "qa-pixel-v1-b1.2.3.4.5"
    assert C.CLOUD_MODELS["s2cloudless"].key == "s2cloudless-v1.7.3"
    assert C.default_cloud_model("sentinel-2") is C.CLOUD_MODELS["scl"]
    for n in (5, 7, 8, 9):
        assert C.default_cloud_model(f"landsat-{n}") is C.CLOUD_MODELS["qa-pixel"]


def test_scl_snow_variant_masks_class_11_only_when_asked() -> None:
    scl = np.arange(12, dtype=np.uint8)
    nodata, cloud = C.CLOUD_MODELS["scl"].masks(scl)
    assert np.flatnonzero(cloud).tolist() == [1, 3, 8, 9, 10] and np.flatnonzero(nodata).tolist() == [0]
    _, cloud = C.CLOUD_MODELS["scl-snow"].masks(scl)
    assert np.flatnonzero(cloud).tolist() == [1, 3, 8, 9, 10, 11]


def test_qa_pixel_snow_variant() -> None:
    qa = np.array([QA_CLEAR_LAND, QA_CLOUD, QA_SNOW, 1, 0], dtype=np.uint16)
    nodata, cloud = C.CLOUD_MODELS["qa-pixel"].masks(qa)
    assert nodata.tolist() == [False, False, False, True, True]
    assert cloud.tolist() == [False, True, False, False, False]
    _, cloud = C.CLOUD_MODELS["qa-pixel-snow"].masks(qa)
    assert cloud.tolist() == [False, True, True, False, False]


def test_s2cloudless_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(C.metadata, "distribution", missing)
    with pytest.raises(C.S2CloudlessUnavailable, match="pip install --no-deps s2cloudless==1.7.3"):
        C.s2cloudless_model_path()


def test_s2cloudless_needs_its_ten_bands() -> None:
    with pytest.raises(ValueError, match="B10"):
        C.s2cloudless_probability({b: np.zeros(1) for b in C.S2CLOUDLESS_BANDS if b != "B10"})


CLOUD_TOA = dict.fromkeys(C.S2CLOUDLESS_BANDS, 0.5) | {"B10": 0.05}  # bright, white, cirrus band lit
WATER_TOA = dict(
    zip(C.S2CLOUDLESS_BANDS, (0.12, 0.09, 0.05, 0.04, 0.03, 0.025, 0.01, 0.001, 0.01, 0.005), strict=True)
)


def _have_s2cloudless() -> bool:
    try:
        C.s2cloudless_model_path()
        import lightgbm  # noqa: F401
    except (C.S2CloudlessUnavailable, ImportError):
        return False
    return True


needs_s2cloudless = pytest.mark.skipif(not _have_s2cloudless(), reason="lightgbm / s2cloudless not installed")


@needs_s2cloudless
def test_s2cloudless_probability_from_the_packaged_model() -> None:
    p = C.s2cloudless_probability({b: np.array([CLOUD_TOA[b], WATER_TOA[b]]) for b in C.S2CLOUDLESS_BANDS})
    assert p.dtype == np.float32 and p.shape == (2,)
    assert p[0] > 0.9 and p[1] < 0.05


@needs_s2cloudless
def test_s2cloudless_mask_post_processing() -> None:
    # 7 x 7 clear scene with a 3 x 3 cloud: the mean over a 1-px disk keeps the block (>= 3 of 5 cloudy),
    # drops nothing outside it (1 of 5), then a 1-px disk dilation grows it by a cross.
    block = np.zeros((7, 7), dtype=bool)
    block[2:5, 2:5] = True
    toa = {b: np.where(block, CLOUD_TOA[b], WATER_TOA[b]) for b in C.S2CLOUDLESS_BANDS}
    out = C.CLOUD_MODELS["s2cloudless"].cloud(toa)
    yy, xx = np.mgrid[:7, :7]
    cross_grown = (np.abs(yy - 3) <= 1) & (np.abs(xx - 3) <= 2) | (np.abs(yy - 3) <= 2) & (
        np.abs(xx - 3) <= 1
    )
    np.testing.assert_array_equal(out, cross_grown)
    single = np.zeros((7, 7), dtype=bool)
    single[3, 3] = True  # a one-pixel cloud is averaged away (1 of 5 cloudy)
    toa1 = {b: np.where(single, CLOUD_TOA[b], WATER_TOA[b]) for b in C.S2CLOUDLESS_BANDS}
    assert not C.CLOUD_MODELS["s2cloudless"].cloud(toa1).any()
