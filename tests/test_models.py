"""Tests for oxeo_flows.models: cloud masks, water models, the registry and predict_slice."""

from __future__ import annotations

import numpy as np
import pytest

from oxeo_flows.archive import MASK_CLOUD, MASK_DRY, MASK_NODATA, MASK_WATER
from oxeo_flows.constellations import CONSTELLATIONS
from oxeo_flows.errors import InputError
from oxeo_flows.models import MODELS, get_model, predict_slice
from oxeo_flows.models.cloud import qa_pixel_masks, scl_masks
from oxeo_flows.models.registry import band_for

S2 = CONSTELLATIONS["sentinel-2"]
L8 = CONSTELLATIONS["landsat-8"]
S2_SCALE = [1e-4] * 7 + [1.0]
S2_OFFSET = [-0.1] * 7 + [0.0]
LS_SCALE = [2.75e-5] * 6 + [0.00341802, 1.0]  # SR bands, lwir11 (kelvin), qa_pixel
LS_OFFSET = [-0.2] * 6 + [149.0, 0.0]


def s2_dn(reflectance: float) -> int:
    """Sentinel-2 DN (baseline >= 04.00, offset not pre-subtracted) for a reflectance."""
    return round((reflectance + 0.1) / 1e-4)


def ls_dn(reflectance: float) -> int:
    return round((reflectance + 0.2) / 2.75e-5)


def s2_pixel(scl: int, base: dict[str, float] | None = None, **over: float) -> list[int]:
    """One pixel as DN in S2.bands order.

    `base` and `over` give values per band: a float is a reflectance (converted to DN), an int is
    a raw DN (so `green=0` is the nodata DN and `green=65535` is saturated).
    """
    values: dict[str, float] = {
        "blue": 0.03,
        "green": 0.07,
        "red": 0.04,
        "nir": 0.35,
        "nir08": 0.36,
        "swir16": 0.20,
        "swir22": 0.10,
    }
    values.update(base or {})
    values.update(over)
    dn = {b: v if isinstance(v, int) else s2_dn(v) for b, v in values.items()}
    dn["scl"] = scl
    return [dn[b] for b in S2.bands]


def ls_pixel(green: float, swir16: float, nir08: float, qa: int) -> list[int]:
    values = {
        "blue": ls_dn(0.03),
        "green": ls_dn(green),
        "red": ls_dn(0.04),
        "nir08": ls_dn(nir08),
        "swir16": ls_dn(swir16),
        "swir22": ls_dn(0.10),
        "lwir11": 0,  # no surface temperature (an L2SR scene)
        "qa_pixel": qa,
    }
    return [values[b] for b in L8.bands]


WATER = {"green": 0.055, "swir16": 0.006, "nir": 0.015}
LAND = {"green": 0.07, "swir16": 0.20, "nir": 0.35}


def stack(pixels: list[list[int]]) -> np.ndarray:
    """(band, 1, n) uint16 array from per-pixel band lists."""
    return np.asarray(pixels, dtype=np.uint16).T[:, None, :]


def run_s2(pixels: list[list[int]], model: str = "mndwi", **params: float) -> list[int]:
    mask = predict_slice(stack(pixels), S2.bands, S2_SCALE, S2_OFFSET, S2, get_model(model, **params))
    assert mask.dtype == np.uint8
    assert mask.shape == (1, len(pixels))
    return [int(v) for v in mask[0]]


def run_ls(pixels: list[list[int]], model: str = "mndwi") -> list[int]:
    mask = predict_slice(stack(pixels), L8.bands, LS_SCALE, LS_OFFSET, L8, get_model(model))
    assert mask.dtype == np.uint8
    return [int(v) for v in mask[0]]


# --------------------------------------------------------------------------------------------------
# registry


def test_mask_codes() -> None:
    assert (MASK_DRY, MASK_WATER, MASK_CLOUD, MASK_NODATA) == (0, 1, 254, 255)


def test_unknown_model_parameter_is_an_input_error() -> None:
    with pytest.raises(InputError) as exc:
        get_model("pekel", threshold=0.1)
    assert exc.value.parameter == "model_params"
    assert "'pekel' takes no parameters, got threshold" in str(exc.value)
    with pytest.raises(InputError) as exc:
        get_model("mndwi", thresh=0.1)
    assert exc.value.parameter == "model_params" and "takes threshold, got thresh" in str(exc.value)


def test_registry_keys() -> None:
    assert sorted(MODELS) == ["mndwi", "mndwi-lu", "ndwi", "pekel", "pekel-sr", "pekel-sr-lu", "pekel-toa"]
    assert get_model("pekel").key == "pekel-v2"
    assert get_model("pekel-toa").key == "pekel-toa-v1"
    assert get_model("pekel-sr").key == "pekel-sr-v1"
    assert get_model("mndwi-lu").key == "mndwi-lu-v1"
    assert get_model("mndwi-lu", threshold=-0.1).key == "mndwi-lu-v1-t-0.1"
    assert get_model("pekel-sr-lu").key == "pekel-sr-lu-v1"
    assert get_model("mndwi-lu").roles == ("green", "swir16", "nir")
    assert get_model("pekel-sr-lu").roles == ("blue", "green", "red", "nir", "swir16", "swir22")
    assert get_model("mndwi").key == "mndwi-v1"
    assert get_model("ndwi").key == "ndwi-v1"
    assert get_model("mndwi", threshold=0.2).key == "mndwi-v1-t0.2"
    assert get_model("ndwi", threshold=-0.05).key == "ndwi-v1-t-0.05"
    assert get_model("mndwi").roles == ("green", "swir16")
    assert get_model("ndwi").roles == ("green", "nir")


def test_unknown_model() -> None:
    with pytest.raises(InputError) as exc:
        get_model("cnn")
    assert exc.value.parameter == "model"
    assert "'cnn'" in str(exc.value)
    assert "mndwi, mndwi-lu, ndwi, pekel, pekel-sr, pekel-sr-lu, pekel-toa" in str(exc.value)


def test_band_for_roles() -> None:
    assert band_for("nir", S2) == "nir"
    assert band_for("nir", L8) == "nir08"
    assert band_for("nir", CONSTELLATIONS["landsat-5"]) == "nir08"
    assert band_for("green", L8) == "green"
    assert band_for("swir16", S2) == "swir16"
    assert band_for("thermal", L8) == "lwir11"  # C2 ST_B10 (OLI/TIRS)
    assert band_for("thermal", CONSTELLATIONS["landsat-9"]) == "lwir11"
    assert band_for("thermal", CONSTELLATIONS["landsat-5"]) == "lwir"  # ST_B6 (TM/ETM+)
    assert band_for("thermal", CONSTELLATIONS["landsat-7"]) == "lwir"


# --------------------------------------------------------------------------------------------------
# Sentinel-2


def test_s2_water_land_and_scl_classes() -> None:
    pixels = [
        s2_pixel(6, WATER),  # water
        s2_pixel(4, LAND),  # vegetation
        s2_pixel(8, WATER),  # cloud medium
        s2_pixel(9, WATER),  # cloud high
        s2_pixel(10, WATER),  # cirrus
        s2_pixel(3, LAND),  # cloud shadow
        s2_pixel(1, WATER),  # saturated / defective
        s2_pixel(0, WATER),  # no data
        s2_pixel(2, WATER),  # dark area: NOT masked
        s2_pixel(2, LAND),
        s2_pixel(11, WATER),  # snow: not masked by default
        s2_pixel(7, WATER),  # unclassified
    ]
    assert run_s2(pixels) == [1, 0, 254, 254, 254, 254, 254, 255, 1, 0, 1, 1]


def test_s2_nodata_dn_zero() -> None:
    pixels = [
        s2_pixel(6, WATER, green=0),  # needed band DN 0
        s2_pixel(6, WATER, swir16=0),
        s2_pixel(9, WATER, green=0),  # nodata wins over cloud
        s2_pixel(3, LAND, swir16=0),
        s2_pixel(6, WATER, red=0, nir=0),  # bands MNDWI does not use
        s2_pixel(0, WATER, green=0),
    ]
    assert run_s2(pixels) == [255, 255, 255, 255, 1, 255]


def test_s2_boundary_and_saturation() -> None:
    pixels = [
        s2_pixel(6, green=2000, swir16=2000),  # MNDWI exactly 0: strict '>' -> dry
        s2_pixel(6, green=65535, swir16=65535),  # saturated, equal -> dry
        s2_pixel(6, green=65535, swir16=s2_dn(0.01)),  # saturated green -> water, not nodata
        s2_pixel(6, green=s2_dn(0.01), swir16=65535),
        s2_pixel(6, green=1000, swir16=1000),  # reflectance ~0/0 -> dry, not an error
        s2_pixel(6, green=s2_dn(0.0501), swir16=s2_dn(0.0500)),  # barely positive
    ]
    assert run_s2(pixels) == [0, 0, 1, 0, 0, 1]


def test_s2_offset_matters() -> None:
    # DN green 1300 (0.03), swir16 1200 (0.02): MNDWI = 0.01 / 0.05 = 0.2 with the -0.1
    # offset, 0.13 - 0.12 / 0.25 = 0.04 without; threshold 0.1 tells them apart.
    pixels = [s2_pixel(6, green=1300, swir16=1200)]
    assert run_s2(pixels) == [1]
    model = get_model("mndwi", threshold=0.1)
    data = stack(pixels)
    with_offset = predict_slice(data, S2.bands, S2_SCALE, S2_OFFSET, S2, model)
    without = predict_slice(data, S2.bands, S2_SCALE, [0.0] * 8, S2, model)
    assert with_offset.tolist() == [[1]]
    assert without.tolist() == [[0]]


def test_s2_threshold_changes_result() -> None:
    # MNDWI = (0.11 - 0.09) / 0.20 = 0.1
    pixels = [
        s2_pixel(6, green=s2_dn(0.11), swir16=s2_dn(0.09)),
        s2_pixel(6, green=s2_dn(0.30), swir16=s2_dn(0.10)),  # MNDWI 0.5
        s2_pixel(4, LAND),
    ]
    assert run_s2(pixels) == [1, 1, 0]
    assert run_s2(pixels, threshold=0.2) == [0, 1, 0]


def test_s2_ndwi_uses_nir_not_swir_or_nir08() -> None:
    pixels = [
        # NDWI water (green > nir), MNDWI dry (swir16 > green), nir08 high
        s2_pixel(6, green=0.06, nir=0.02, swir16=0.20, nir08=s2_dn(0.40)),
        # NDWI dry (nir > green), MNDWI water
        s2_pixel(6, green=0.06, nir=0.30, swir16=0.01),
        s2_pixel(6, green=0.06, nir=0.02, swir16=0.20, nir08=0),  # nir08 DN 0 unused
        s2_pixel(6, green=0.06, nir=0.02, swir16=0),  # swir16 DN 0 unused by NDWI
        s2_pixel(6, green=0.06, nir=0),  # nir DN 0 -> nodata
    ]
    assert run_s2(pixels, "ndwi") == [1, 0, 1, 1, 255]
    assert run_s2(pixels, "mndwi") == [0, 1, 0, 255, 0]  # last: swir16 0.20 > green


def test_s2_two_dimensional_slice() -> None:
    rows = [
        [s2_pixel(6, WATER), s2_pixel(5, LAND)],
        [s2_pixel(9, WATER), s2_pixel(0, WATER)],
        [s2_pixel(4, LAND), s2_pixel(2, WATER)],
    ]
    data = np.asarray(rows, dtype=np.uint16).transpose(2, 0, 1)
    assert data.shape == (8, 3, 2)
    mask = predict_slice(data, S2.bands, S2_SCALE, S2_OFFSET, S2, get_model("mndwi"))
    assert mask.tolist() == [[1, 0], [254, 255], [0, 1]]


def test_predict_slice_does_not_modify_input() -> None:
    data = stack([s2_pixel(9, WATER, green=0), s2_pixel(6, LAND)])
    before = data.copy()
    predict_slice(data, S2.bands, S2_SCALE, S2_OFFSET, S2, get_model("mndwi"))
    np.testing.assert_array_equal(data, before)


# --------------------------------------------------------------------------------------------------
# Landsat 8


QA_CLEAR_LAND = 21824
QA_CLEAR_WATER = 21952
QA_CLOUD = 22280
QA_SHADOW = 23888
QA_FILL = 1
QA_DILATED = 21762
QA_CIRRUS = 54596


def test_qa_example_values_have_the_documented_bits() -> None:
    def bits(v: int) -> set[int]:
        return {b for b in range(16) if v >> b & 1}

    assert bits(QA_CLEAR_LAND) == {6, 8, 10, 12, 14}
    assert bits(QA_CLEAR_WATER) == {6, 7, 8, 10, 12, 14}
    assert {3, 8, 9} <= bits(QA_CLOUD) and 6 not in bits(QA_CLOUD)
    assert {4, 10, 11} <= bits(QA_SHADOW) and 3 not in bits(QA_SHADOW)
    assert {1} <= bits(QA_DILATED) and not {0, 2, 3, 4} & bits(QA_DILATED)
    assert {2, 14, 15} <= bits(QA_CIRRUS) and not {0, 1, 3, 4} & bits(QA_CIRRUS)


def test_landsat_qa_pixel() -> None:
    water = {"green": 0.055, "swir16": 0.006, "nir08": 0.012}
    land = {"green": 0.07, "swir16": 0.20, "nir08": 0.35}
    pixels = [
        ls_pixel(**land, qa=QA_CLEAR_LAND),
        ls_pixel(**water, qa=QA_CLEAR_WATER),
        ls_pixel(**water, qa=QA_CLEAR_LAND),  # bit 7 is not the water product: MNDWI decides
        ls_pixel(**land, qa=QA_CLEAR_WATER),
        ls_pixel(**water, qa=QA_CLOUD),
        ls_pixel(**land, qa=QA_SHADOW),
        ls_pixel(**water, qa=QA_FILL),
        ls_pixel(**water, qa=QA_DILATED),
        ls_pixel(**water, qa=QA_CIRRUS),
        ls_pixel(**water, qa=0),
        ls_pixel(**water, qa=QA_FILL | (1 << 3)),  # fill wins over cloud
    ]
    assert run_ls(pixels) == [0, 1, 1, 0, 254, 254, 255, 254, 254, 255, 255]


def test_landsat_nodata_dn_zero_and_scaling() -> None:
    pixels = [
        ls_pixel(0.055, 0.006, 0.012, QA_CLEAR_WATER),
        ls_pixel(0.055, 0.006, 0.012, QA_CLEAR_WATER),
        ls_pixel(0.055, 0.006, 0.012, QA_CLOUD),
    ]
    pixels[1][L8.bands.index("green")] = 0
    pixels[2][L8.bands.index("swir16")] = 0
    assert run_ls(pixels) == [1, 255, 255]


def test_landsat_scale_and_offset_applied() -> None:
    # green DN 8000 -> 0.02, swir16 DN 7600 -> 0.009: MNDWI = 0.011 / 0.029 = 0.38 with the
    # -0.2 offset; threshold 0.3 separates it from the no-offset value (400 / 15600 = 0.026).
    data = stack([ls_pixel(0.02, 0.009, 0.3, QA_CLEAR_WATER)])
    model = get_model("mndwi", threshold=0.3)
    assert predict_slice(data, L8.bands, LS_SCALE, LS_OFFSET, L8, model).tolist() == [[1]]
    no_offset = [0.0] * 7
    assert predict_slice(data, L8.bands, LS_SCALE, no_offset, L8, model).tolist() == [[0]]


def test_landsat_ndwi_uses_nir08() -> None:
    pixels = [
        ls_pixel(green=0.06, swir16=0.20, nir08=0.02, qa=QA_CLEAR_WATER),  # NDWI water
        ls_pixel(green=0.06, swir16=0.01, nir08=0.30, qa=QA_CLEAR_LAND),  # NDWI dry
    ]
    assert run_ls(pixels, "ndwi") == [1, 0]
    assert run_ls(pixels, "mndwi") == [0, 1]


# --------------------------------------------------------------------------------------------------
# cloud masks directly


def test_scl_masks_default() -> None:
    scl = np.arange(12, dtype=np.uint8)
    nodata, cloud = scl_masks(scl)
    assert nodata.tolist() == [c == 0 for c in range(12)]
    assert np.flatnonzero(cloud).tolist() == [1, 3, 8, 9, 10]
    assert nodata.dtype == bool and cloud.dtype == bool


def test_scl_masks_custom_invalid_set() -> None:
    scl = np.array([[0, 2, 11], [6, 9, 3]], dtype=np.uint8)
    nodata, cloud = scl_masks(scl, frozenset({0, 9, 11}))
    assert nodata.tolist() == [[True, False, False], [False, False, False]]
    assert cloud.tolist() == [[False, False, True], [False, True, False]]  # 0 never cloud


def test_qa_pixel_masks_default() -> None:
    qa = np.array(
        [
            QA_CLEAR_LAND,
            QA_CLEAR_WATER,
            QA_CLOUD,
            QA_SHADOW,
            QA_FILL,
            QA_DILATED,
            QA_CIRRUS,
            0,
            1 << 5,
            1 << 7,
        ],
        dtype=np.uint16,
    )
    nodata, cloud = qa_pixel_masks(qa)
    assert nodata.tolist() == [False, False, False, False, True, False, False, True, False, False]
    assert cloud.tolist() == [False, False, True, True, False, True, True, False, False, False]


def test_qa_pixel_masks_custom_bits() -> None:
    qa = np.array([QA_CLOUD, QA_DILATED, QA_SHADOW, QA_CIRRUS, 1 << 5], dtype=np.uint16)
    nodata, cloud = qa_pixel_masks(qa, invalid_bits=(3, 5))
    assert not nodata.any()
    assert cloud.tolist() == [True, False, False, False, True]


def test_cloud_dilation_in_metres_is_resolution_independent() -> None:
    from oxeo_flows.models.registry import with_cloud_dilation

    s2 = CONSTELLATIONS["sentinel-2"]
    bands = list(s2.bands)
    data = np.full((len(bands), 21, 21), 1000, np.uint16)
    data[bands.index("green")] = 1600  # water everywhere (MNDWI > 0)
    data[bands.index("scl")] = 6
    data[bands.index("scl"), 10, 10] = 9  # one cloud pixel in the middle
    scale = [1.0 if b == "scl" else 1e-4 for b in bands]
    offset = [0.0 if b == "scl" else -0.1 for b in bands]
    plain = get_model("mndwi")
    dilated = with_cloud_dilation(plain, 20.0)  # 2 px at 10 m
    assert dilated.key == "mndwi-v1-cd20" and with_cloud_dilation(plain, 0) is plain
    m0 = predict_slice(data, bands, scale, offset, s2, plain)
    m1 = predict_slice(data, bands, scale, offset, s2, dilated)
    assert (m0 == 254).sum() == 1
    yy, xx = np.mgrid[:21, :21]
    disk = (yy - 10) ** 2 + (xx - 10) ** 2 <= 4
    np.testing.assert_array_equal(m1 == 254, disk)
    assert (m1[~disk] == 1).all()
    with pytest.raises(InputError):
        with_cloud_dilation(plain, -1)


# --------------------------------------------------------------------------------------------------
# NIR bound, shoreline unmixing and the -lu models


def test_index_model_nir_bound_edges() -> None:
    from oxeo_flows.models.registry import IndexThresholdModel

    m = IndexThresholdModel("mndwi", "1", ("green", "swir16"), 0.0, 0.15)
    assert m.key == "mndwi-v1-n0.15" and m.roles == ("green", "swir16", "nir")
    refl = {
        "green": np.array([0.05, 0.05, 0.05, 0.80, 0.05]),
        "swir16": np.array([0.01, 0.01, 0.01, 0.08, 0.05]),
        "nir": np.array([0.1499, 0.15, 0.20, 0.70, 0.01]),  # strict '<'; snow-like; MNDWI exactly 0
    }
    assert m.classify(refl).tolist() == [True, False, False, False, False]
    assert IndexThresholdModel("mndwi", "1", ("green", "swir16")).key == "mndwi-v1"  # unchanged key


WV, LV = 0.0625, 0.3125  # water and land NIR end-members; the 50 % point is 0.1875


def shore(column4: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """9 x 9 NIR frame: columns 0-3 water, 5-8 land, column 4 per row; initial water = columns 0-3."""
    x = np.full((9, 9), LV)
    x[:, :4] = WV
    x[:, 4] = column4
    water = np.zeros((9, 9), dtype=bool)
    water[:, :4] = True
    return x, water


def test_unmix_shoreline_decides_the_boundary_by_the_50_percent_point() -> None:
    from oxeo_flows.models.registry import unmix_shoreline

    col = [0.125, 0.1874, 0.1876, 0.25, 0.0625, 0.30, 0.18, 0.19, 0.1875 - 1e-6]
    x, water = shore(col)
    out = unmix_shoreline(water, x)
    expected = water.copy()
    expected[:, 4] = [v < 0.1875 for v in col]
    np.testing.assert_array_equal(out, expected)
    # a boundary water pixel whose fraction is below 0.5 turns dry
    water2 = water.copy()
    water2[:, 4] = True
    x2 = x.copy()
    x2[:, 4] = 0.25
    x2[:, 5] = LV
    out2 = unmix_shoreline(water2, x2)
    assert not out2[:, 4].any() and out2[:, :4].all()


def test_unmix_shoreline_leaves_low_contrast_and_ignores_invalid_end_members() -> None:
    from oxeo_flows.models.registry import unmix_shoreline

    x, water = shore([0.07] * 9)
    x[:, 5:] = 0.10  # land only 0.0375 brighter than water: below min_contrast, nothing changes
    np.testing.assert_array_equal(unmix_shoreline(water, x), water)
    x, water = shore([0.25] * 9)
    x[:, 8] = 0.9  # a cloud column: with it the land end-member would be 0.508 and 0.25 water
    valid = np.ones((9, 9), dtype=bool)
    valid[:, 8] = False
    assert not unmix_shoreline(water, x, valid)[:, 4].any()
    assert unmix_shoreline(water, x)[:, 4].all()  # the same frame without the valid mask
    # all water, no water: returned as they are
    assert unmix_shoreline(np.ones((3, 3), bool), np.zeros((3, 3))).all()
    assert not unmix_shoreline(np.zeros((3, 3), bool), np.zeros((3, 3))).any()


def test_mndwi_lu_on_a_sentinel2_slice_with_nodata_saturation_and_cloud() -> None:
    # 9 x 9: columns 0-3 water, column 4 a 60 % water / 40 % vegetation mixture (MNDWI < 0, NIR 0.149 is
    # below the 0.1825 midpoint), columns 5-8 vegetation.
    water = {"green": 0.055, "swir16": 0.006, "nir": 0.015}
    veg = {"green": 0.07, "swir16": 0.20, "nir": 0.35}
    mixed = {k: 0.6 * water[k] + 0.4 * veg[k] for k in water}
    rows = []
    for _ in range(9):
        rows.append([s2_pixel(6, water)] * 4 + [s2_pixel(5, mixed)] + [s2_pixel(4, veg)] * 4)
    rows[1][2] = s2_pixel(6, water, green=0)  # no data
    rows[2][1] = s2_pixel(6, water, nir=65535)  # saturated NIR: fails the NIR bound -> dry
    rows[3][6] = s2_pixel(9, veg)  # cloud
    data = np.asarray(rows, dtype=np.uint16).transpose(2, 0, 1)
    assert run_s2_2d(data, "mndwi")[:, 4].tolist() == [0] * 9  # textbook MNDWI erodes the shore
    mask = run_s2_2d(data, "mndwi-lu")
    expected = np.zeros((9, 9), dtype=np.uint8)
    expected[:, :5] = 1
    expected[1, 2] = 255
    expected[2, 1] = 0
    expected[3, 6] = 254
    np.testing.assert_array_equal(mask, expected)


def test_shoreline_refinement_stage_on_any_model() -> None:
    from oxeo_flows.models.registry import (
        CloudDilated,
        ShorelineUnmixing,
        pipeline_model,
        with_cloud_dilation,
        with_shoreline_refinement,
    )

    # keys: "-lu" after the model key, before the cloud dilation; no-op for models that already refine
    assert pipeline_model("mndwi").key == "mndwi-v1-lu"
    assert pipeline_model("mndwi", shoreline_refinement=False).key == "mndwi-v1"
    assert pipeline_model("pekel", cloud_dilation_m=40).key == "pekel-v2-lu-cd40"
    assert pipeline_model("mndwi-lu").key == "mndwi-lu-v1"
    assert pipeline_model("pekel-sr-lu", cloud_dilation_m=20).key == "pekel-sr-lu-v1-cd20"
    dilated = with_cloud_dilation(get_model("ndwi"), 20)
    refined = with_shoreline_refinement(dilated)
    assert isinstance(refined, CloudDilated) and isinstance(refined.inner, ShorelineUnmixing)
    assert refined.key == "ndwi-v1-lu-cd20" and refined.accepts_valid
    assert with_shoreline_refinement(dilated, enabled=False) is dilated
    with pytest.raises(InputError) as exc:
        pipeline_model("cnn")
    assert exc.value.parameter == "model"
    # behaviour: the same mixed-shore slice as above, textbook mndwi refined = mndwi-lu there (no snow)
    water = {"green": 0.055, "swir16": 0.006, "nir": 0.015}
    veg = {"green": 0.07, "swir16": 0.20, "nir": 0.35}
    mixed = {k: 0.6 * water[k] + 0.4 * veg[k] for k in water}
    row = [s2_pixel(6, water)] * 4 + [s2_pixel(5, mixed)] + [s2_pixel(4, veg)] * 4
    data = np.asarray([row] * 9, dtype=np.uint16).transpose(2, 0, 1)
    plain = predict_slice(data, S2.bands, S2_SCALE, S2_OFFSET, S2, get_model("mndwi"))
    staged = predict_slice(data, S2.bands, S2_SCALE, S2_OFFSET, S2, pipeline_model("mndwi"))
    assert plain[:, 4].tolist() == [0] * 9 and staged[:, 4].tolist() == [1] * 9
    np.testing.assert_array_equal(np.delete(staged, 4, axis=1), np.delete(plain, 4, axis=1))


def run_s2_2d(data: np.ndarray, model: str) -> np.ndarray:
    return predict_slice(data, S2.bands, S2_SCALE, S2_OFFSET, S2, get_model(model))


def test_lu_models_are_vectorised_over_leading_axes() -> None:
    x, water = shore([0.125, 0.25, 0.125, 0.25, 0.125, 0.25, 0.125, 0.25, 0.125])
    refl = {"green": np.where(water, 0.05, 0.07), "swir16": np.where(water, 0.005, 0.2), "nir": x}
    model = get_model("mndwi-lu")
    single = model.classify(refl)
    stacked = model.classify({k: np.stack([v, v[::-1]]) for k, v in refl.items()})
    np.testing.assert_array_equal(stacked[0], single)
    np.testing.assert_array_equal(stacked[1], single[::-1])
    assert single[:, 4].tolist() == [True, False] * 4 + [True]


# --------------------------------------------------------------------------------------------------
# pekel-sr


def test_rayleigh_terms_match_published_values() -> None:
    from oxeo_flows.models.pekel import rayleigh_optical_depth, rayleigh_terms

    # Rayleigh optical depth at 550 nm: 0.0973 (Hansen & Travis 1974); Bodhaine et al. 1999 give 0.0976.
    assert rayleigh_optical_depth(0.55) == pytest.approx(0.0973, abs=2e-4)
    path, trans = rayleigh_terms(0.49, 35.0)
    assert path == pytest.approx(0.0597, abs=1e-4) and trans == pytest.approx(0.841, abs=1e-3)
    assert rayleigh_terms(2.19, 35.0)[0] < 2e-4  # SWIR: no path term


PEKEL_ROLES = ("blue", "green", "red", "nir", "swir16", "swir22")
SR_SPECTRA = {  # surface reflectance in PEKEL_ROLES order
    "clear water": (0.035, 0.04, 0.015, 0.006, 0.003, 0.002),
    "dark water": (0.02, 0.015, 0.006, 0.003, 0.002, 0.001),
    "turbid water": (0.07, 0.10, 0.10, 0.035, 0.006, 0.004),
    "vegetation": (0.03, 0.07, 0.04, 0.35, 0.20, 0.10),
    "soil": (0.09, 0.13, 0.18, 0.25, 0.33, 0.29),
    "snow": (0.85, 0.84, 0.80, 0.70, 0.08, 0.05),
    "shadowed vegetation": (0.006, 0.016, 0.007, 0.03, 0.008, 0.003),
    "saturated": (6.4, 6.4, 6.4, 6.4, 6.4, 6.4),
}


def classify_spectra(model: str) -> dict[str, bool]:
    m = get_model(model)
    refl = {r: np.array([v[i] for v in SR_SPECTRA.values()]) for i, r in enumerate(PEKEL_ROLES)}
    return dict(zip(SR_SPECTRA, m.classify(refl).tolist(), strict=True))


def test_pekel_sr_keeps_dark_surface_reflectance_water() -> None:
    water = {"clear water", "dark water", "turbid water"}
    sr = classify_spectra("pekel-sr")
    assert sr == {k: k in water for k in SR_SPECTRA}
    assert classify_spectra("pekel") == sr  # pekel v2 is the same computation
    toa_rules = classify_spectra("pekel-toa")  # the unchanged rules reject clear and dark SR water
    assert toa_rules == {k: k == "turbid water" for k in SR_SPECTRA}


def test_pekel_sr_thermal_optional_role() -> None:

    # a turbid-like pixel that only the thermal keep-region (264-310 K) decides, not the clouds region
    refl = {
        r: np.array([v]) for r, v in zip(PEKEL_ROLES, (0.088, 0.155, 0.10, 0.018, 0.015, 0.029), strict=True)
    }
    m = get_model("pekel-sr")
    assert m.classify(refl).tolist() == [True]
    assert m.classify({**refl, "thermal": np.array([290.0])}).tolist() == [True]
    assert m.classify({**refl, "thermal": np.array([250.0])}).tolist() == [False]
    assert m.classify({**refl, "thermal": np.array([310.0])}).tolist() == [False]  # strict
    assert m.classify({**refl, "thermal": np.array([np.nan])}).tolist() == [True]  # missing: as absent
    # through predict_slice: read only when the archive has the thermal band (C2 ST scaling, DN 0 = missing)
    old = tuple(b for b in L8.bands if b != "lwir11")  # a store made before the thermal band

    def pixel(thermal_dn: int) -> list[int]:
        values = [ls_dn(v) for v in (0.088, 0.155, 0.10, 0.018, 0.015, 0.029)]
        return [*values, thermal_dn, QA_CLEAR_WATER]

    st = [round((t - 149.0) / 0.00341802) for t in (290.0, 250.0)]
    data = stack([pixel(st[0]), pixel(st[1]), pixel(0)])
    mask = predict_slice(data, L8.bands, LS_SCALE, LS_OFFSET, L8, m)
    assert mask.tolist() == [[1, 0, 1]]
    plain = stack([[*pixel(0)[:6], QA_CLEAR_WATER]])  # an archive without the band: no thermal test
    cut = [i for i, b in enumerate(L8.bands) if b != "lwir11"]
    scale, offset = [LS_SCALE[i] for i in cut], [LS_OFFSET[i] for i in cut]
    assert predict_slice(plain, old, scale, offset, L8, m).tolist() == [[1]]
