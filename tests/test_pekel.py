"""Tests for the Pekel-style rule classifier: table integrity, the regression oracle, edge cases, registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import oxeo_flows.models.pekel as pekel_module
from oxeo_flows.archive import MASK_CLOUD, MASK_DRY, MASK_NODATA, MASK_WATER
from oxeo_flows.constellations import CONSTELLATIONS
from oxeo_flows.models import MODELS, get_model, predict_slice
from oxeo_flows.models.pekel import (
    INPUTS,
    Node,
    PekelModel,
    PekelRulesError,
    evaluate_test,
    load_rules,
    parse_combination,
    pekel_classify,
    pekel_features,
    pekel_tests,
    rules_digest,
    s2_dn_to_reflectance,
)

FIXTURES = Path(__file__).parent / "data" / "pekel_fixtures.npz"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "pekel"
PACKAGED = Path(pekel_module.__file__).parent / "data" / "pekel_rules.json"
S2 = CONSTELLATIONS["sentinel-2"]

# Hand-built pixels (blue, green, red, nir, swir1, swir2).
WATER = (0.06, 0.05, 0.03, 0.02, 0.01, 0.005)  # water1 and inside the clouds region
WATER_NOT_CLOUDS = (0.03, 0.02, 0.08, 0.05, 0.02, 0.01)  # water, outside clouds: depends on confusion6
LAND = (0.03, 0.07, 0.04, 0.35, 0.20, 0.10)  # vegetation: passes every group but the water tests


@pytest.fixture(scope="module")
def fx() -> dict[str, np.ndarray]:
    with np.load(FIXTURES, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def bands(fx: dict[str, np.ndarray], prefix: str = "") -> list[np.ndarray]:
    return [fx[prefix + b] for b in INPUTS]


def px(values: tuple[float, ...], **over: float) -> list[np.ndarray]:
    d = dict(zip(INPUTS, values, strict=True))
    d.update(over)
    return [np.array([d[b]], dtype=np.float64) for b in INPUTS]


def same_bits(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a.view(np.uint64) == b.view(np.uint64)) | (np.isnan(a) & np.isnan(b))


# --------------------------------------------------------------------------------------------------
# the table


def test_packaged_checksum_verified(fx: dict[str, np.ndarray]) -> None:
    rules = load_rules()
    doc = json.loads(PACKAGED.read_text(encoding="utf-8"))
    assert rules.sha256 == doc["integrity"]["sha256"] == str(fx["rules_sha256"])
    assert rules_digest(doc["rules"]) == rules.sha256
    assert rules.version == "1"
    assert "MIT License" in rules.license_text
    assert "Copyright (c) 2022 Oxford Earth Observation" in rules.license_text
    assert "Oxford Earth Observation" in (pekel_module.__doc__ or "")


def test_packaged_copies_identical_to_shared() -> None:
    if not SHARED.is_dir():
        pytest.skip("shared data folder not present")
    assert PACKAGED.read_bytes() == (SHARED / "rules.json").read_bytes()
    assert FIXTURES.read_bytes() == (SHARED / "fixtures.npz").read_bytes()


def test_copy_loads_and_tampered_copy_raises(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    shutil.copyfile(PACKAGED, good)
    assert load_rules(good).sha256 == load_rules().sha256

    # Outside `rules` (licence, whitespace) is not covered by the checksum.
    reformatted = tmp_path / "reformatted.json"
    doc = json.loads(PACKAGED.read_text(encoding="utf-8"))
    doc["license"]["note"] = "added"
    reformatted.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    assert load_rules(reformatted).sha256 == load_rules().sha256

    text = PACKAGED.read_text(encoding="utf-8")
    # Canonical JSON compares values: another spelling of the same float is not a change ...
    respelled = tmp_path / "respelled.json"
    respelled.write_text(text.replace("238.26034242940045", "238.26034242940046", 1), encoding="utf-8")
    assert load_rules(respelled).sha256 == load_rules().sha256
    # ... but a coefficient one ulp away is.
    coefficient = tmp_path / "coefficient.json"
    coefficient.write_text(text.replace("238.26034242940045", "238.26034242940048", 1), encoding="utf-8")
    with pytest.raises(PekelRulesError, match="checksum mismatch"):
        load_rules(coefficient)

    op = tmp_path / "op.json"
    doc = json.loads(text)
    doc["rules"]["tests"]["water1"]["all_of"][0]["op"] = ">"
    op.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(PekelRulesError, match="checksum mismatch"):
        load_rules(op)

    garbage = tmp_path / "garbage.json"
    garbage.write_text("{}", encoding="utf-8")
    with pytest.raises(PekelRulesError, match="not a rule table"):
        load_rules(garbage)


def test_combination_grouping_is_the_sources() -> None:
    tree = load_rules().combination
    assert tree.op == "AND"
    first = tree.children[0]
    w1, w2, w3 = (Node("TEST", name=n) for n in ("water1", "water2", "water3"))
    assert first == Node("XOR", (Node("OR", (w1, w2)), w3))
    assert str(tree) == (
        "(((water1 OR water2) XOR water3) AND (confusion1a OR confusion1b) AND "
        "(confusion2a OR confusion2b OR confusion2c OR confusion2d) AND "
        "(confusion3a OR confusion3b OR confusion4a OR confusion4b) AND (confusion6 OR clouds))"
    )
    assert not {"confusion5a", "confusion5b", "confusion5c"} & set(tree.tests())


def test_first_factor_truth_table() -> None:
    tree = load_rules().combination.children[0]
    combination = json.loads(PACKAGED.read_text(encoding="utf-8"))["rules"]["combination"]
    table = combination["first_factor_truth_table"]
    assert len(table) == 4
    for row, expected in table.items():
        w12 = "water1 OR water2 = true" in row
        w3 = "water3 = true" in row
        for w1, w2 in [(True, False), (False, True), (True, True)] if w12 else [(False, False)]:
            values = {"water1": w1, "water2": w2, "water3": w3}
            assert evaluate_node(tree, values) == expected, row


def evaluate_node(node: Node, values: dict[str, bool]) -> bool:
    if node.op == "TEST":
        return values[node.name]
    results = [evaluate_node(c, values) for c in node.children]
    if node.op == "AND":
        return all(results)
    if node.op == "OR":
        return any(results)
    assert node.op == "XOR"
    return results[0] != results[1]


def test_parser_refuses_ambiguous_mix() -> None:
    with pytest.raises(PekelRulesError, match="mixed without parentheses"):
        parse_combination("water1 OR water2 XOR water3")
    with pytest.raises(PekelRulesError, match="unknown test"):
        parse_combination("(water1 OR nope)", ["water1"])
    with pytest.raises(PekelRulesError, match="unbalanced"):
        parse_combination("(water1 OR water2")


# --------------------------------------------------------------------------------------------------
# the regression oracle


@pytest.mark.parametrize("name", ["ndvi", "hue", "sat", "val", "hue2", "sat2", "val2"])
def test_features_bit_for_bit(fx: dict[str, np.ndarray], name: str) -> None:
    got = pekel_features(*bands(fx))[name]
    expected = fx[f"feature_{name}"]
    assert got.dtype == np.float64
    bad = np.flatnonzero(~same_bits(got, expected))
    assert bad.size == 0, f"{name}: {bad.size} pixels differ, first {bad[:5]}"


TEST_NAMES = [n for n in load_rules().tests]


@pytest.mark.parametrize("thermal", [True, False], ids=["with_thermal", "without_thermal"])
@pytest.mark.parametrize("name", TEST_NAMES)
def test_each_rule_test_reproduced(fx: dict[str, np.ndarray], name: str, thermal: bool) -> None:
    got = pekel_tests(*bands(fx), thermal=fx["thermal"] if thermal else None)[name]
    key = f"test_{name}"
    if key not in fx:
        key += "_with_thermal" if thermal else "_without_thermal"
    bad = np.flatnonzero(got != fx[key])
    assert bad.size == 0, f"{name}: {bad.size} pixels differ, first {bad[:5]}"


@pytest.mark.parametrize("thermal", [True, False], ids=["with_thermal", "without_thermal"])
def test_classification_reproduced(fx: dict[str, np.ndarray], thermal: bool) -> None:
    suffix = "_with_thermal" if thermal else "_without_thermal"
    got = pekel_classify(*bands(fx), thermal=fx["thermal"] if thermal else None)
    expected = fx["expected" + suffix]
    assert got.dtype == np.int8
    assert got.shape == expected.shape
    names = fx["category_names"]
    for ci, cname in enumerate(names):
        sel = fx["category"] == ci
        assert sel.any()
        bad = np.flatnonzero(sel & (got != expected))
        assert bad.size == 0, f"category {cname}: {bad.size} pixels differ, first {bad[:5]}"
    assert np.array_equal(got, expected)
    assert set(np.unique(got)) == {-1, 0, 1}
    # `combination` of pekel_tests is the classification before the -1 override
    combo = pekel_tests(*bands(fx), thermal=fx["thermal"] if thermal else None)["combination"]
    valid = fx["blue"] != -1
    assert np.array_equal(combo[valid], expected[valid] == 1)


def test_boundary_pairs_cover_constraints(fx: dict[str, np.ndarray]) -> None:
    """Pairs one ulp apart across a constraint: each member matches, and the pairs are symmetric."""
    partner = fx["boundary_partner"]
    paired = np.flatnonzero(partner >= 0)
    assert paired.size > 0
    assert np.array_equal(partner[partner[paired]], paired)
    got = pekel_classify(*[b[paired] for b in bands(fx)], thermal=fx["thermal"][paired])
    assert np.array_equal(got, fx["expected_with_thermal"][paired])
    constraints = np.unique(fx["boundary_constraint"][paired])
    assert constraints.size > 100  # most of the table's constraints are probed


@pytest.mark.parametrize("thermal", [True, False], ids=["with_thermal", "without_thermal"])
def test_nan_probes_where_defined(fx: dict[str, np.ndarray], thermal: bool) -> None:
    suffix = "_with_thermal" if thermal else "_without_thermal"
    expected = fx["nan_probe_expected" + suffix]
    got = pekel_classify(*bands(fx, "nan_probe_"), thermal=fx["nan_probe_thermal"] if thermal else None)
    defined = expected != 127
    assert defined.sum() > 500
    assert np.array_equal(got[defined], expected[defined])
    assert set(np.unique(got)) <= {-1, 0, 1}  # the undefined ones get a deterministic answer


def test_sentinel2_dn_group(fx: dict[str, np.ndarray]) -> None:
    refl = [s2_dn_to_reflectance(fx["s2_dn_" + b]) for b in INPUTS]
    assert all(((r >= 0) & (r <= 1)).all() for r in refl)
    got = pekel_classify(*refl)
    assert np.array_equal(got, fx["s2_expected"])
    assert not pekel_tests(*refl)["water3"].any()


def test_s2_scaling_is_not_division() -> None:
    dn = np.arange(0, 10001, dtype=np.float64)
    scaled = s2_dn_to_reflectance(dn)
    assert np.array_equal(scaled, np.interp(dn, (0, 10000), (0, 1)))
    assert (scaled != dn / 10000).any()
    assert s2_dn_to_reflectance(np.array([-5.0, 12000.0])).tolist() == [0.0, 1.0]


def test_any_shape_and_chunking(fx: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    expected = fx["expected_with_thermal"]
    shape = (4, 4, expected.size // 16)
    cube = [b.reshape(shape) for b in bands(fx)]
    got = pekel_classify(*cube, thermal=fx["thermal"].reshape(shape))
    assert got.shape == shape
    assert np.array_equal(got.reshape(-1), expected)
    for chunk, compact in [(997, 0.0), (997, 1.0), (50_000, 0.5)]:
        monkeypatch.setattr(pekel_module, "CHUNK", chunk)
        monkeypatch.setattr(pekel_module, "COMPACT_BELOW", compact)
        assert np.array_equal(pekel_classify(*bands(fx), thermal=fx["thermal"]), expected)
    # float32 inputs and broadcasting of a scalar thermal
    f32 = [b.astype(np.float32) for b in bands(fx)]
    ref = pekel_classify(*[b.astype(np.float64) for b in f32], thermal=np.full(expected.size, 290.0))
    assert np.array_equal(pekel_classify(*f32, thermal=290.0), ref)


# --------------------------------------------------------------------------------------------------
# hand-built edge cases


def test_strict_inequality_on_a_shared_edge() -> None:
    """A point exactly on the edge two water1 triangles share belongs to neither; one ulp off, to one."""
    tri0, tri1 = load_rules().tests["water1"].triangles[:2]
    edge = tri0[2]
    assert edge.op == ">" and tri1[1].op == "<" and tri1[1].key == edge.key
    ((_, slope),) = edge.terms
    ends = []
    for other in tri0[:2]:
        ((_, a),) = other.terms
        ends.append((other.const - edge.const) / (slope - a))
    x = np.float64(sum(ends) / 2)
    on = x * slope + edge.const
    feats = {"ndvi": x, "val": 0.1}
    assert not evaluate_test("water1", {**feats, "hue": on})
    assert evaluate_test("water1", {**feats, "hue": np.nextafter(on, np.inf)})
    assert evaluate_test("water1", {**feats, "hue": np.nextafter(on, -np.inf)})


def test_strict_thresholds_from_the_table() -> None:
    (val_cond,) = load_rules().tests["water1"].all_of
    limit = val_cond.const
    assert (val_cond.op, limit) == ("<", 0.62)
    # end to end: WATER scaled so that red, the maximum of composite 1, is exactly the limit
    scale = limit / WATER[2]
    bright = tuple(v * scale for v in WATER)
    at_limit = px(bright, red=limit)
    assert pekel_features(*at_limit)["val"][0] == limit
    assert not pekel_tests(*at_limit)["water1"][0]
    assert pekel_tests(*px(bright, red=np.nextafter(limit, 0)))["water1"][0]
    at = {"ndvi": -0.2, "hue": 204.0}
    assert evaluate_test("water1", {**at, "val": np.nextafter(limit, 0)})
    assert not evaluate_test("water1", {**at, "val": limit})
    # hue2 > 238 (confusion2d), thermal 264 < t < 310 (confusion6)
    assert not evaluate_test("confusion2d", {"hue2": 238.0})
    assert evaluate_test("confusion2d", {"hue2": np.nextafter(238.0, np.inf)})
    for t, inside in [(264.0, False), (310.0, False), (np.nextafter(264.0, 400), True), (309.99, True)]:
        assert bool(evaluate_test("confusion6", {"thermal": t})) is inside
    # water3 is swir < 0, strict: 0 and -0 are not negative
    w3 = pekel_tests(*px(LAND, swir1=0.0, swir2=-0.0))["water3"]
    assert not w3[0]
    assert pekel_tests(*px(LAND, swir1=-1e-300))["water3"][0]


def test_zero_and_nan_inputs() -> None:
    zeros = px((0.0,) * 6)
    f = pekel_features(*zeros)
    assert np.isnan(f["ndvi"][0])  # 0/0, no replacement
    assert (f["hue"][0], f["sat"][0], f["val"][0]) == (0.0, 0.0, 0.0)
    t = pekel_tests(*zeros)
    for name in ("water1", "water2", "confusion1a", "confusion2a", "confusion4b", "confusion5a"):
        assert not t[name][0], name  # every NDVI test is false on NaN NDVI
    assert pekel_classify(*zeros).tolist() == [0]  # zeros are "dry", not invalid (quirk 4)

    nan_nir = pekel_tests(*px(WATER, nir=np.nan))
    assert not nan_nir["water1"][0] and not nan_nir["water2"][0]
    assert pekel_classify(*px(WATER, nir=np.nan)).tolist() == [0]
    assert pekel_classify(*px(WATER)).tolist() == [1]
    # NaN swir1 only feeds water3, whose comparison is then false
    assert pekel_classify(*px(WATER, swir1=np.nan)).tolist() == [1]
    # NaN in a composite channel: deterministic (hue, sat, val all 0), never an error
    f = pekel_features(*px(WATER, swir2=np.nan))
    assert (f["hue"][0], f["sat"][0], f["val"][0]) == (0.0, 0.0, 0.0)
    assert pekel_classify(*px(WATER, swir2=np.nan)).tolist() == [0]


def test_invalid_blue_and_cloud_override() -> None:
    assert pekel_classify(*px(WATER, blue=-1.0)).tolist() == [-1]
    assert pekel_classify(*px(LAND, blue=-1.0), thermal=np.array([250.0])).tolist() == [-1]
    assert pekel_classify(*px(WATER, blue=-1.0 + 1e-12)).tolist() != [-1]
    # only blue is checked (quirk 4)
    assert pekel_classify(*px(WATER, green=-1.0)).tolist() != [-1]
    three = zip(px(WATER), px(LAND), px(WATER, blue=-1.0), strict=True)
    stacked = [np.concatenate(parts) for parts in three]
    assert pekel_classify(*stacked).tolist() == [1, 0, -1]
    assert pekel_classify(*stacked, cloud=np.array([1.0, 0.0, 1.0])).tolist() == [-2, 0, -2]
    assert pekel_classify(*stacked, cloud=np.zeros(3)).tolist() == [1, 0, -1]


def test_thermal_changes_confusion6() -> None:
    pixel = px(WATER_NOT_CLOUDS)
    t = pekel_tests(*pixel)
    assert t["combination"][0] and not t["clouds"][0]
    assert t["confusion6"][0] and t["confusion5b"][0]  # constant true without thermal
    assert pekel_classify(*pixel).tolist() == [1]
    assert pekel_classify(*pixel, thermal=np.array([290.0])).tolist() == [1]
    assert pekel_classify(*pixel, thermal=np.array([250.0])).tolist() == [0]
    assert pekel_classify(*pixel, thermal=np.array([264.0])).tolist() == [0]
    assert not pekel_tests(*pixel, thermal=np.array([250.0]))["confusion6"][0]
    # inside the clouds region the thermal range does not matter
    assert pekel_tests(*px(WATER))["clouds"][0]
    assert pekel_classify(*px(WATER), thermal=np.array([250.0])).tolist() == [1]


def test_xor_quirk_reproduced() -> None:
    """Negative SWIR flips the water tests (quirk 1), exactly like the original."""
    assert pekel_classify(*px(LAND)).tolist() == [0]
    assert pekel_classify(*px(LAND, swir1=-0.01)).tolist() == [1]
    assert pekel_classify(*px(WATER, swir1=-0.01)).tolist() == [0]


# --------------------------------------------------------------------------------------------------
# the registry model


def reflectance(values: tuple[float, ...], **over: float) -> dict[str, np.ndarray]:
    roles = ("blue", "green", "red", "nir", "swir16", "swir22")
    d = dict(zip(roles, values, strict=True))
    d.update(over)
    return {r: np.array([[d[r]]], dtype=np.float32) for r in roles}


def test_registry_model() -> None:
    assert "pekel-toa" in MODELS
    model = get_model("pekel-toa")
    assert isinstance(model, PekelModel)
    assert (model.name, model.version, model.key) == ("pekel-toa", "1", "pekel-toa-v1")
    assert model.roles == ("blue", "green", "red", "nir", "swir16", "swir22")
    assert PekelModel(clip_reflectance=False).key == "pekel-v1-noclip"

    out = model.classify(reflectance(WATER))
    assert out.dtype == bool and out.shape == (1, 1) and out[0, 0]
    assert not model.classify(reflectance(LAND))[0, 0]
    # clamped: negative SWIR cannot flip the result; unclamped reproduces the original's XOR
    assert not model.classify(reflectance(LAND, swir16=-0.01))[0, 0]
    assert PekelModel(clip_reflectance=False).classify(reflectance(LAND, swir16=-0.01))[0, 0]
    assert model.classify(reflectance(WATER, swir16=-0.01))[0, 0]


def test_model_matches_pekel_classify(fx: dict[str, np.ndarray]) -> None:
    roles = ("blue", "green", "red", "nir", "swir16", "swir22")
    refl = dict(zip(roles, bands(fx), strict=True))
    raw = PekelModel(clip_reflectance=False).classify(refl)
    assert np.array_equal(raw, fx["expected_without_thermal"] == 1)
    clipped = [np.clip(b, 0.0, 1.0) for b in bands(fx)]
    assert np.array_equal(PekelModel().classify(refl), pekel_classify(*clipped) == 1)


def test_registered_pekel_is_the_rule_table_on_toa_like_reflectance(fx: dict[str, np.ndarray]) -> None:
    """`pekel` v2 = the exact rule table applied to `toa_like` of the clamped surface reflectance."""
    from oxeo_flows.models.pekel import PekelSRModel, toa_like

    roles = ("blue", "green", "red", "nir", "swir16", "swir22")
    model = get_model("pekel")
    assert isinstance(model, PekelSRModel) and model.key == "pekel-v2"
    refl = dict(zip(roles, bands(fx), strict=True))
    toa = toa_like({r: np.clip(v, 0.0, 1.0) for r, v in refl.items()})
    expected = pekel_classify(*(toa[r] for r in roles)) == 1
    got = model.classify(refl)
    assert np.array_equal(got, expected)
    assert 0 < got.sum() < got.size  # both classes occur: the comparison is not vacuous


def s2_dn(refl: float) -> int:
    return round((refl + 0.1) / 1e-4)  # processing baseline >= 04.00: offset -0.1


def s2_pixel(values: tuple[float, ...], scl: int, **dn_over: int) -> list[int]:
    refl = dict(zip(("blue", "green", "red", "nir", "swir16", "swir22"), values, strict=True))
    refl["nir08"] = refl["nir"]
    dn = {b: s2_dn(v) for b, v in refl.items()}
    dn.update(dn_over)
    dn["scl"] = scl
    return [dn[b] for b in S2.bands]


def test_predict_slice_sentinel2() -> None:
    pixels = [
        s2_pixel(WATER, 6),
        s2_pixel(LAND, 4),
        s2_pixel(WATER, 9),  # cloud high probability
        s2_pixel(WATER, 3),  # cloud shadow
        s2_pixel(WATER, 6, blue=0),  # DN 0 in a band the model reads
        s2_pixel(WATER, 0),  # SCL no data
        s2_pixel(WATER, 6, swir16=s2_dn(-0.02)),  # negative BOA SWIR: clamped, stays water
        s2_pixel(WATER_NOT_CLOUDS, 2),  # dark area class is not masked
    ]
    data = np.asarray(pixels, dtype=np.uint16).T[:, None, :]
    scale = [1e-4] * 7 + [1.0]
    offset = [-0.1] * 7 + [0.0]
    mask = predict_slice(data, S2.bands, scale, offset, S2, get_model("pekel"))
    assert mask.dtype == np.uint8 and mask.shape == (1, len(pixels))
    assert mask[0].tolist() == [
        MASK_WATER,
        MASK_DRY,
        MASK_CLOUD,
        MASK_CLOUD,
        MASK_NODATA,
        MASK_NODATA,
        MASK_WATER,
        MASK_WATER,
    ]
    assert (MASK_CLOUD, MASK_NODATA) == (254, 255)
