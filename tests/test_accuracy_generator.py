"""Tests of the accuracy benchmark's synthetic scene generator and metric helpers (benchmarks.accuracy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from benchmarks.accuracy import Counts, area_error_pct, confusion, evaluate, f1, iou
from benchmarks.accuracy import scenes as S

from oxeo_flows.constellations import CONSTELLATIONS
from oxeo_flows.models import MODELS


@pytest.fixture(scope="module")
def grounds() -> dict[str, S.Ground]:
    return {g: S.make_ground(g, 7, 0) for g in ("clear_water", "turbid_water", "thick_cloud", "cirrus_haze")}


# --------------------------------------------------------------------------------------------------
# determinism


def test_same_seed_same_scene_other_seed_other_scene() -> None:
    a = S.observe(S.make_ground("cloud_shadow", 3, 1), "sentinel-2", 3)
    b = S.observe(S.make_ground("cloud_shadow", 3, 1), "sentinel-2", 3)
    c = S.observe(S.make_ground("cloud_shadow", 4, 1), "sentinel-2", 4)
    assert np.array_equal(a.data, b.data)
    assert np.array_equal(a.water, b.water) and np.array_equal(a.cloud, b.cloud)
    assert not np.array_equal(a.data, c.data)


def test_generate_yields_every_group_and_constellation_in_order() -> None:
    obs = list(S.generate(seed=1, scenes_per_group=1, groups=["dark_water", "urban"]))
    assert [(o.group, o.constellation.name) for o in obs] == [
        ("dark_water", "sentinel-2"),
        ("dark_water", "landsat-8"),
        ("urban", "sentinel-2"),
        ("urban", "landsat-8"),
    ]


# --------------------------------------------------------------------------------------------------
# spectra


def test_spectrum_ranges_are_ordered_and_cited() -> None:
    for name, s in S.SPECTRA.items():
        lo, hi = np.array(s.low), np.array(s.high)
        assert lo.shape == hi.shape == (6,), name
        assert np.all(lo <= hi) and np.all(lo >= 0) and np.all(hi <= 1), name
        assert s.source and any(ch.isdigit() for ch in s.source), f"{name}: no citation"
        np.testing.assert_array_equal(s.at(np.array(0.0)), lo)
        np.testing.assert_array_equal(s.at(np.array(1.0)), hi)


def test_class_spectra_have_the_cited_signatures() -> None:
    b = {band: i for i, band in enumerate(S.BANDS6)}
    for water in ("water_clear", "water_turbid", "water_dark"):
        assert S.SPECTRA[water].high[b["nir"]] <= 0.05  # water absorbs in the NIR
        assert S.SPECTRA[water].high[b["swir16"]] <= 0.015  # and even more in the SWIR (Knaeps 2015)
    turbid = S.SPECTRA["water_turbid"]
    assert (turbid.low[b["red"]], turbid.high[b["red"]]) == (0.08, 0.12)
    assert turbid.low[b["green"]] > S.SPECTRA["water_clear"].high[b["green"]] - 0.01
    assert S.SPECTRA["vegetation"].low[b["nir"]] > 0.25
    assert S.SPECTRA["vegetation"].high[b["red"]] < S.SPECTRA["vegetation"].low[b["nir"]] / 4
    assert S.SPECTRA["cloud"].low[b["blue"]] > 0.3
    assert S.SPECTRA["cloud"].low[b["swir22"]] > 0.03  # Fmask basic test: SWIR2 > 0.03
    snow = S.SPECTRA["snow"]
    assert snow.low[b["green"]] > 0.7 and snow.high[b["swir16"]] < 0.2  # NDSI > 0.6 for all snow
    assert S.SPECTRA["soil"].low[b["swir16"]] > S.SPECTRA["soil"].high[b["green"]]


def test_generated_pure_pixels_stay_inside_the_cited_ranges(grounds: dict[str, S.Ground]) -> None:
    for group, water in (("clear_water", "water_clear"), ("turbid_water", "water_turbid")):
        g = grounds[group]
        cells = g.reflectance[:, g.water]
        lo, hi = np.array(S.SPECTRA[water].low)[:, None], np.array(S.SPECTRA[water].high)[:, None]
        assert np.all(cells >= lo - 1e-12) and np.all(cells <= hi + 1e-12)
    g = grounds["thick_cloud"]
    core = g.reflectance[:, g.opacity >= 1.0]
    assert core.shape[1] > 1000
    lo, hi = np.array(S.SPECTRA["cloud"].low)[:, None], np.array(S.SPECTRA["cloud"].high)[:, None]
    assert np.all(core >= lo - 1e-12) and np.all(core <= hi + 1e-12)


# --------------------------------------------------------------------------------------------------
# radiometry


def test_dn_encoding_round_trips_with_the_recorded_scale_and_offset(grounds: dict[str, S.Ground]) -> None:
    for const in S.CONSTELLATION_NAMES:
        obs = S.observe(grounds["clear_water"], const, 7)
        assert obs.bands == CONSTELLATIONS[const].bands and obs.data.dtype == np.uint16
        c = CONSTELLATIONS[const]
        n = len(obs.bands) - 1
        assert (obs.scale[n], obs.offset[n]) == (1.0, 0.0)
        for k, band in enumerate(c.reflectance_bands):
            i = obs.bands.index(band)
            refl = S.decode(obs.data[i], obs.scale[i], obs.offset[i])
            assert np.max(np.abs(refl - obs.reflectance[k])) <= obs.scale[i] / 2 + 1e-9
        if c.thermal_band is not None:  # not simulated: absent, as on an L2SR scene
            i = obs.bands.index(c.thermal_band)
            assert not obs.data[i].any() and np.isnan(obs.scale[i])
    assert obs.scale[0] == S.LS_SCALE and obs.offset[0] == S.LS_OFFSET
    # every DN decodes and re-encodes to itself, exactly
    dn = np.arange(1, 65536, dtype=np.uint16)
    np.testing.assert_array_equal(S.encode_s2(S.decode(dn, S.S2_SCALE, S.S2_OFFSET)), dn)
    np.testing.assert_array_equal(S.encode_landsat(S.decode(dn, S.LS_SCALE, S.LS_OFFSET)), dn)
    # the product conventions: S2 DN = refl * 10000 + 1000; Landsat DN = (refl + 0.2) / 2.75e-5
    assert S.encode_s2(np.array([0.05]))[0] == 1500
    assert S.encode_landsat(np.array([0.0]))[0] == round(0.2 / 2.75e-5)


def test_sentinel2_20m_bands_are_2x2_block_means(grounds: dict[str, S.Ground]) -> None:
    obs = S.observe(grounds["clear_water"], "sentinel-2", 7)
    for band in ("nir08", "swir16", "swir22"):
        a = obs.reflectance[obs.bands.index(band)]
        np.testing.assert_array_equal(a[0::2, 0::2], a[1::2, 1::2])
        np.testing.assert_array_equal(a[0::2, 0::2], a[0::2, 1::2])
    scl = obs.data[obs.bands.index("scl")]
    np.testing.assert_array_equal(scl[0::2, 0::2], scl[1::2, 1::2])
    blue = obs.reflectance[obs.bands.index("blue")]
    assert not np.array_equal(blue[0::2, 0::2], blue[1::2, 1::2])  # 10 m band: own pixels


# --------------------------------------------------------------------------------------------------
# truth and classification bands


@pytest.mark.parametrize("group", ["clear_water", "turbid_water", "thick_cloud", "cirrus_haze"])
def test_truth_masks_have_the_designed_class_shares(grounds: dict[str, S.Ground], group: str) -> None:
    g = grounds[group]
    assert 0.12 <= g.target_water_share <= 0.30
    assert abs(float(g.water.mean()) - g.target_water_share) < 2e-3
    assert abs(float(g.cloud.mean()) - g.target_cloud_share) < 2e-3
    lo, hi = S.GROUPS[group].cloud_share
    assert lo <= g.target_cloud_share <= hi
    for const in S.CONSTELLATION_NAMES:
        obs = S.observe(g, const, 7)
        assert abs(float(obs.water.mean()) - g.target_water_share) < 0.02
        assert abs(float(obs.cloud_only.mean()) - g.target_cloud_share) < 0.02
        assert np.all(obs.cloud_only <= obs.cloud)
        if not S.GROUPS[group].cloud_kind:
            assert not obs.cloud.any()


def test_scl_labels_cloud_edges_medium_and_misses_thin_cirrus(grounds: dict[str, S.Ground]) -> None:
    obs = S.observe(grounds["thick_cloud"], "sentinel-2", 7)
    scl = obs.data[obs.bands.index("scl")]
    assert set(np.unique(scl)) <= {2, 3, 4, 5, 6, 8, 9, 10, 11}
    high, med = scl == S.SCL_CLOUD_HIGH, scl == S.SCL_CLOUD_MED
    assert high.sum() > med.sum() > 0
    assert not (S.erode4(high) & med).any()  # medium only at edges / thinner parts, never inside a core
    cir = S.observe(grounds["cirrus_haze"], "sentinel-2", 7)
    flagged = cir.data[cir.bands.index("scl")] == S.SCL_CIRRUS
    missed = 1.0 - (flagged & cir.cloud).sum() / cir.cloud.sum()
    assert abs(missed - S.SCL_CIRRUS_MISS) < 0.08


def test_qa_pixel_sets_dilated_cloud_bits_around_clouds(grounds: dict[str, S.Ground]) -> None:
    obs = S.observe(grounds["thick_cloud"], S.LANDSAT, 7)
    qa = obs.data[-1]
    cloud = (qa >> S.QA_CLOUD & 1).astype(bool)
    dilated = (qa >> S.QA_DILATED & 1).astype(bool)
    assert cloud.any() and dilated.any() and not (cloud & dilated).any()
    np.testing.assert_array_equal(dilated, S.dilate(cloud, S.QA_CLOUD_DILATION_PX) & ~cloud)
    assert not (qa & 1).any()  # no fill
    assert np.all(((qa >> S.QA_CLEAR & 1) == 1) == ~(cloud | dilated | (qa >> S.QA_SHADOW & 1).astype(bool)))


def test_evaluate_runs_every_registered_model(grounds: dict[str, S.Ground]) -> None:
    models = {name: factory() for name, factory in MODELS.items()}
    results, cloud = evaluate(S.observe(grounds["thick_cloud"], S.LANDSAT, 7), models)
    assert [r.model for r in results] == list(MODELS)
    assert all(r.water.n > 0 for r in results)
    assert cloud.counts.recall > 0.5


# --------------------------------------------------------------------------------------------------
# metric helpers


def test_iou_f1_precision_recall_exact_on_tiny_arrays() -> None:
    pred = np.array([[1, 1, 0], [0, 1, 0]], dtype=bool)
    truth = np.array([[1, 0, 0], [1, 1, 0]], dtype=bool)
    c = confusion(pred, truth)
    assert (c.tp, c.fp, c.fn, c.tn) == (2, 1, 1, 2)
    assert c.iou == 0.5 and iou(pred, truth) == 0.5
    assert c.f1 == 2 / 3 and f1(pred, truth) == 2 / 3
    assert c.precision == 2 / 3 and c.recall == 2 / 3
    valid = np.array([[1, 1, 1], [0, 1, 1]], dtype=bool)  # drop the false negative
    assert iou(pred, truth, valid) == 2 / 3 and f1(pred, truth, valid) == 0.8
    assert confusion(pred, truth, valid).recall == 1.0
    assert iou(pred, pred) == 1.0 and f1(pred, pred) == 1.0
    empty = np.zeros((2, 2), dtype=bool)
    assert math.isnan(iou(empty, empty)) and math.isnan(f1(empty, empty))
    assert Counts(1, 2, 3, 4) + Counts(1, 1, 1, 1) == Counts(2, 3, 4, 5)


def test_area_error_pct() -> None:
    assert area_error_pct(103.0, 100.0) == pytest.approx(3.0)
    assert area_error_pct(90.0, 100.0) == pytest.approx(-10.0)
    assert math.isnan(area_error_pct(5.0, 0.0))


def test_evaluate_cloud_dilation_raises_recall_and_lowers_valid_share(grounds: dict[str, S.Ground]) -> None:
    from benchmarks.accuracy import evaluate_cloud

    obs = S.observe(grounds["cirrus_haze"], "sentinel-2", 7)
    plain, dilated = evaluate_cloud(obs, 0.0), evaluate_cloud(obs, 40.0)
    assert (plain.dilation_m, dilated.dilation_m) == (0.0, 40.0)
    assert dilated.counts.recall >= plain.counts.recall
    assert dilated.valid_share <= plain.valid_share
    assert plain.counts.n == dilated.counts.n == obs.water.size
