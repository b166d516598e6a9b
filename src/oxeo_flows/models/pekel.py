"""Pekel-style rule-based optical water classifier (an exact, vectorised port of the original rules).

Credit: the rule table (`data/pekel_rules.json`) is transcribed from oxfordeo/oxeo-water, MIT licence,
Copyright (c) 2022 Oxford Earth Observation (the full licence text ships inside the JSON file), after
Pekel, Cottam, Gorelick & Belward 2016, Nature 540:418-422 (the JRC Global Surface Water expert system).

Every test is data: a union of triangles, each an intersection of half-planes `y op slope * x + intercept`
in a 2-D feature space, plus optional `all_of` conditions. No coefficient is typed in this module; the
table is loaded with `importlib.resources` and its `rules` are checked against `integrity.sha256`
(canonical JSON, see `load_rules`) before use. The combination expression is parsed from the table too.

Arithmetic is float64 throughout. A constraint is `y op (x * slope) + intercept` with the product and the
sum rounded separately (two numpy ufunc calls, never fused); `<` and `>` are strict and any comparison
with NaN is false. Features: NDVI = (nir - red) / (nir + red) with no NaN replacement; HSV of composite 1
(R = swir2, G = nir, B = red -> hue, sat, val) and composite 2 (R = nir, G = green, B = blue -> hue2,
sat2, val2) exactly as the scikit-image algorithm the original used (unclipped, blue > green > red on a
tied maximum, floored modulo, NaN -> 0, hue in degrees). Arrays of any (broadcastable) shape are
processed in flat chunks.

How each quirk of the original (rules README, "Quirks to decide on deliberately") is handled:

1. XOR grouping: `pekel_classify` computes `((water1 OR water2) XOR water3) AND ...` exactly as the
   source's Python precedence does, so a negative SWIR1/SWIR2 pixel flips the water tests.
   `PekelModel` (the pipeline) clamps reflectance to [0, 1] first, as the original Sentinel-2 path did,
   so water3 never fires there: surface reflectance with the L2 offsets (-0.1 Sentinel-2, -0.2 Landsat)
   is often slightly negative over dark water and would otherwise turn water into dry.
2. Confusion tests are keep-regions (required), reproduced as in the source.
3. Thermal is optional: without it confusion6 (and the unused confusion5b) is constant true, as the
   table's `if_thermal_absent` says. The pipeline has no thermal role, so confusion6 is always true there.
4. No data: `pekel_classify` writes -1 only where blue == -1 (and -2 where an optional cloud layer == 1),
   nothing else. In the pipeline, `predict_slice` marks a pixel 255 (no data) where the QA band says
   fill or any band the model reads has DN 0, and 254 where SCL/QA_PIXEL flags cloud, shadow or
   defective pixels, overriding whatever the classifier said. So a NaN-as-dry answer never reaches the
   water-area statistic: those pixels are excluded and counted as invalid instead.
5. NaN: NaN NIR or red gives NaN NDVI and every NDVI test is false (reproduced). A NaN composite channel
   leaves the original's hue uninitialised; here that hue is deterministically 0 (as are its sat and
   val, per nan_to_zero), which agrees with every fixture whose original value is defined. Pipeline
   reflectance comes from integer DNs and cannot be NaN.
6. Edges: strict inequalities; shared edges whose intercepts differ by 1-2 ulp keep both values, as
   stored in the table (nothing is deduplicated across different numbers).
7. Negative channels give negative or infinite sat and hue can be exactly 360: reproduced (the pipeline
   clamps, so neither happens there).
8. Sentinel-2 DN scaling of the original is `s2_dn_to_reflectance` (0.0001 * DN, clamped), not DN / 10000.
   The pipeline itself uses the archive's scale/offset in float32 and then clamps in `PekelModel`.
9. confusion5a/5b/5c are evaluated only by `pekel_tests` (diagnostics); the classifier skips them.
   The cloud code -2 is available through the optional `cloud` argument; the pipeline masks clouds itself.
10. The rules were tuned on Landsat TOA reflectance and brightness temperature; the pipeline feeds
    Collection-2 Level-2 surface reflectance (and no thermal), which is an approximation. `PekelSRModel`
    (`pekel-sr`, end of this module) adds a standard Rayleigh path term back before the same rules.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from oxeo_flows.errors import OxeoError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

RULES_RESOURCE = "data/pekel_rules.json"
INPUTS = ("blue", "green", "red", "nir", "swir1", "swir2")
CODE_WATER, CODE_DRY, CODE_INVALID, CODE_CLOUD = 1, 0, -1, -2
CHUNK = 32768  # pixels per evaluation chunk: bounds memory and keeps per-chunk arrays cache-friendly
COMPACT_BELOW = 0.5  # AND chains continue on the remaining candidate pixels only below this fraction

_COMPARE: dict[str, Callable[..., Any]] = {
    "<": np.less,
    ">": np.greater,
    "<=": np.less_equal,
    ">=": np.greater_equal,
    "==": np.equal,
}


class PekelRulesError(OxeoError, ValueError):
    """The rule table is corrupt (checksum mismatch) or does not have the expected structure."""


# --------------------------------------------------------------------------------------------------
# the rule table


def rules_digest(rules: Any) -> str:
    """sha256 of the canonical JSON of `rules`, as defined by the table's `integrity.canonicalization`."""
    canonical = json.dumps(rules, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Constraint:
    """`y op (sum of coef * feature) + const`, with a half-plane `y op x * slope + intercept` as the
    one-term case. `key` identifies the right-hand side, so shared edges are computed once per chunk."""

    y: str
    op: str
    terms: tuple[tuple[str, float], ...]
    const: float

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.terms, self.const)

    def rhs(self, features: Mapping[str, FloatArray]) -> FloatArray | float:
        """Product first, then the sum, each rounded (separate ufunc calls; no FMA, no reassociation)."""
        if not self.terms:
            return self.const
        total: FloatArray | None = None
        for name, coef in self.terms:
            product = features[name] * coef
            total = product if total is None else total + product
        assert total is not None
        return total + self.const


@dataclass(frozen=True)
class RuleTest:
    """True where every `all_of` condition holds and at least one triangle has all constraints true."""

    name: str
    all_of: tuple[Constraint, ...]
    triangles: tuple[tuple[Constraint, ...], ...]
    requires: str | None = None
    if_absent: bool | None = None


@dataclass(frozen=True)
class Node:
    """A node of the parsed combination expression: a test name (leaf) or AND/OR/XOR of children."""

    op: str  # "TEST", "AND", "OR", "XOR"
    children: tuple[Node, ...] = ()
    name: str = ""

    def __str__(self) -> str:
        if self.op == "TEST":
            return self.name
        return "(" + f" {self.op} ".join(str(c) for c in self.children) + ")"

    def tests(self) -> list[str]:
        if self.op == "TEST":
            return [self.name]
        return [t for c in self.children for t in c.tests()]


@dataclass(frozen=True)
class PekelRules:
    """The verified rule table: tests, composites, combination tree, and provenance."""

    version: str
    sha256: str
    tests: Mapping[str, RuleTest]
    composites: tuple[tuple[tuple[str, str, str], tuple[str, str, str]], ...]  # ((R, G, B), (h, s, v))
    combination: Node
    license_text: str
    raw: Mapping[str, Any] = field(repr=False)


def _parse_constraint(spec: Mapping[str, Any]) -> Constraint:
    op = spec["op"]
    if op not in _COMPARE:
        raise PekelRulesError(f"pekel rules: unknown comparison {op!r}")
    if "y_feature" in spec:
        return Constraint(
            spec["y_feature"], op, ((spec["x_feature"], float(spec["slope"])),), float(spec["intercept"])
        )
    rhs = spec["rhs"]
    terms = tuple((name, float(coef)) for name, coef in rhs["coef"].items())
    return Constraint(spec["lhs"], op, terms, float(rhs["const"]))


def _parse_test(name: str, spec: Mapping[str, Any]) -> RuleTest:
    absent = spec.get("if_thermal_absent")
    return RuleTest(
        name=name,
        all_of=tuple(_parse_constraint(c) for c in spec["all_of"]),
        triangles=tuple(tuple(_parse_constraint(c) for c in tri) for tri in spec["triangles"]),
        requires=spec.get("requires"),
        if_absent=None if absent is None else bool(absent["value"]),
    )


_TOKEN = re.compile(r"\s*(?:(\()|(\))|([A-Za-z_][A-Za-z0-9_]*))")
_OPERATORS = ("AND", "OR", "XOR")


def parse_combination(expression: str, known: Sequence[str] = ()) -> Node:
    """Parse `a OR b`, `(x) XOR y`, ... into a tree. Mixing different operators without parentheses is
    rejected instead of guessing a precedence (the table parenthesises the XOR explicitly)."""
    tokens: list[str] = []
    pos = 0
    while pos < len(expression.rstrip()):
        m = _TOKEN.match(expression, pos)
        if not m:
            raise PekelRulesError(f"pekel rules: cannot parse combination at {expression[pos:]!r}")
        tokens.append(m.group(m.lastindex or 0))
        pos = m.end()
    at = 0

    def operand() -> Node:
        nonlocal at
        if at >= len(tokens):
            raise PekelRulesError("pekel rules: combination ends early")
        tok = tokens[at]
        at += 1
        if tok == "(":
            node = expr()
            if at >= len(tokens) or tokens[at] != ")":
                raise PekelRulesError("pekel rules: unbalanced parentheses in combination")
            at += 1
            return node
        if tok == ")" or tok in _OPERATORS:
            raise PekelRulesError(f"pekel rules: unexpected {tok!r} in combination")
        if known and tok not in known:
            raise PekelRulesError(f"pekel rules: combination names unknown test {tok!r}")
        return Node("TEST", name=tok)

    def expr() -> Node:
        nonlocal at
        items = [operand()]
        op: str | None = None
        while at < len(tokens) and tokens[at] in _OPERATORS:
            if op is not None and tokens[at] != op:
                raise PekelRulesError(f"pekel rules: {op} and {tokens[at]} mixed without parentheses")
            op = tokens[at]
            at += 1
            items.append(operand())
        if op is None:
            return items[0]
        if op == "XOR":  # left fold: (a XOR b) XOR c
            node = items[0]
            for item in items[1:]:
                node = Node("XOR", (node, item))
            return node
        return Node(op, tuple(items))

    tree = expr()
    if at != len(tokens):
        raise PekelRulesError(f"pekel rules: trailing tokens in combination: {tokens[at:]}")
    return tree


def _read_default() -> bytes:
    return resources.files("oxeo_flows.models").joinpath(RULES_RESOURCE).read_bytes()


def load_rules(path: str | Path | None = None) -> PekelRules:
    """Load and verify a rule table (default: the packaged copy, cached).

    Raises `PekelRulesError` when sha256(canonical JSON of `rules`) differs from `integrity.sha256`,
    where canonical is `json.dumps(rules, sort_keys=True, separators=(",", ":"), ensure_ascii=True)`.
    """
    if path is None:
        return _default_rules()
    return _build_rules(Path(path).read_bytes(), str(path))


@lru_cache(maxsize=1)
def _default_rules() -> PekelRules:
    return _build_rules(_read_default(), f"oxeo_flows.models/{RULES_RESOURCE}")


def _build_rules(data: bytes, origin: str) -> PekelRules:
    try:
        doc = json.loads(data)
        rules = doc["rules"]
        expected = str(doc["integrity"]["sha256"]).lower()
    except (ValueError, KeyError, TypeError) as exc:
        raise PekelRulesError(f"pekel rules {origin}: not a rule table ({exc})") from None
    actual = rules_digest(rules)
    if actual != expected:
        raise PekelRulesError(
            f"pekel rules {origin}: checksum mismatch: sha256 of canonical 'rules' is {actual}, "
            f"integrity.sha256 says {expected}; the table was modified or corrupted"
        )
    try:
        tests = {name: _parse_test(name, spec) for name, spec in rules["tests"].items()}
        feats = rules["features"]
        composites = tuple(
            (
                (feats[c]["R"], feats[c]["G"], feats[c]["B"]),
                (feats[c]["outputs"]["hue"], feats[c]["outputs"]["sat"], feats[c]["outputs"]["val"]),
            )
            for c in ("composite_1", "composite_2")
        )
        combination = parse_combination(rules["combination"]["expression"], list(tests))
        for override in ("invalid", "iscloud"):
            if override not in tests:
                raise PekelRulesError(f"pekel rules {origin}: missing output override test {override!r}")
        version = str(doc.get("format_version", 1))
        license_text = str(doc.get("license", {}).get("text", ""))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PekelRulesError):
            raise
        raise PekelRulesError(f"pekel rules {origin}: unexpected structure ({exc!r})") from None
    return PekelRules(version, actual, tests, composites, combination, license_text, rules)


def rules_version() -> str:
    return load_rules().version


# --------------------------------------------------------------------------------------------------
# features


def _nan_to_zero(x: FloatArray) -> FloatArray:
    return np.where(np.isnan(x), 0.0, x)


def hsv(r: FloatArray, g: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(hue in degrees, sat, val) of unclipped float64 channels, as scikit-image's rgb2hsv then x 360.

    v = max; d = v - min; s = d / v (0 where d == 0); hue from the blue-max formula where b == v, else
    green-max, else red-max (so ties go blue > green > red); floored `% 1`; NaN -> 0. Where a channel
    is NaN the original's hue is uninitialised memory; it is 0 here.
    """
    with np.errstate(all="ignore"):
        v = np.maximum(np.maximum(r, g), b)
        d = v - np.minimum(np.minimum(r, g), b)
        flat = d == 0
        s = np.where(flat, 0.0, d / v)
        h6 = np.where(
            b == v,
            4.0 + (r - g) / d,
            np.where(g == v, 2.0 + (b - r) / d, np.where(r == v, (g - b) / d, np.nan)),
        )
        h = np.where(flat, 0.0, np.mod(h6 / 6.0, 1.0))
        return _nan_to_zero(h) * 360.0, _nan_to_zero(s), _nan_to_zero(v)


def _features(rules: PekelRules, bands: Mapping[str, FloatArray]) -> dict[str, FloatArray]:
    f = dict(bands)
    with np.errstate(all="ignore"):
        f["ndvi"] = (f["nir"] - f["red"]) / (f["nir"] + f["red"])
    for (rn, gn, bn), (hn, sn, vn) in rules.composites:
        f[hn], f[sn], f[vn] = hsv(f[rn], f[gn], f[bn])
    return f


# --------------------------------------------------------------------------------------------------
# evaluation


class _Evaluator:
    """Evaluates tests over one chunk of features, caching right-hand sides and comparisons."""

    def __init__(self, rules: PekelRules, features: Mapping[str, FloatArray], n: int) -> None:
        self.rules = rules
        self.f = features
        self.n = n
        self._rhs: dict[tuple[Any, ...], FloatArray | float] = {}
        self._cmp: dict[tuple[Any, ...], BoolArray] = {}
        self._tests: dict[str, BoolArray] = {}

    def constraint(self, c: Constraint) -> BoolArray:
        ck = (c.y, c.op, c.key)
        hit = self._cmp.get(ck)
        if hit is None:
            rhs = self._rhs.get(c.key)
            with np.errstate(all="ignore"):  # inf * 0, NaN comparisons: IEEE results are intended
                if rhs is None:
                    rhs = self._rhs[c.key] = c.rhs(self.f)
                hit = self._cmp[ck] = np.asarray(_COMPARE[c.op](self.f[c.y], rhs), dtype=bool)
        return hit

    def _all(self, constraints: Sequence[Constraint]) -> BoolArray:
        out = np.ones(self.n, dtype=bool)
        for c in constraints:
            np.logical_and(out, self.constraint(c), out=out)
        return out

    def test(self, name: str) -> BoolArray:
        hit = self._tests.get(name)
        if hit is not None:
            return hit
        t = self.rules.tests[name]
        if t.requires is not None and t.requires not in self.f:
            if t.if_absent is None:
                raise PekelRulesError(f"pekel rules: test {name!r} needs {t.requires!r}")
            out = np.full(self.n, t.if_absent, dtype=bool)
        else:
            out = np.zeros(self.n, dtype=bool)
            for tri in t.triangles:
                np.logical_or(out, self._all(tri), out=out)
            if t.all_of:
                np.logical_and(out, self._all(t.all_of), out=out)
        self._tests[name] = out
        return out

    def node(self, node: Node, lazy: bool) -> BoolArray:
        """Evaluate the combination tree. With `lazy`, an AND chain stops once the chunk is all false and
        evaluates its remaining factors only on the pixels still true (an OR chain stops once all true).
        Every operation is element-wise, so the result is identical; unneeded work is skipped."""
        if node.op == "TEST":
            return self.test(node.name)
        if node.op == "XOR":
            a, b = node.children
            return np.logical_xor(self.node(a, lazy), self.node(b, lazy))
        is_and = node.op == "AND"
        out = np.full(self.n, is_and, dtype=bool)
        combine = np.logical_and if is_and else np.logical_or
        for i, child in enumerate(node.children):
            combine(out, self.node(child, lazy), out=out)
            if not lazy:
                continue
            if not is_and:
                if out.all():
                    break
                continue
            k = int(np.count_nonzero(out))
            if k == 0:
                break
            rest = node.children[i + 1 :]
            if rest and k <= self.n * COMPACT_BELOW:
                idx = np.flatnonzero(out)
                sub = _Evaluator(self.rules, {name: a[idx] for name, a in self.f.items()}, k)
                out[idx] = sub.node(Node("AND", rest), lazy)
                break
        return out


def _prepare(
    bands: Mapping[str, npt.ArrayLike | None],
) -> tuple[tuple[int, ...], dict[str, np.ndarray]]:
    arrays = {k: np.asarray(v) for k, v in bands.items() if v is not None}
    shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
    flat = {k: np.broadcast_to(a, shape).reshape(-1) for k, a in arrays.items()}
    return shape, flat


def _chunk(flat: Mapping[str, np.ndarray], sl: slice) -> dict[str, FloatArray]:
    return {k: np.asarray(a[sl], dtype=np.float64) for k, a in flat.items()}


def evaluate_test(name: str, features: Mapping[str, npt.ArrayLike]) -> BoolArray:
    """One test of the table evaluated on given features (e.g. {"ndvi": ..., "hue": ..., "val": ...})."""
    rules = load_rules()
    if name not in rules.tests:
        raise KeyError(f"unknown pekel test {name!r}")
    shape, flat = _prepare(features)
    ev = _Evaluator(rules, _chunk(flat, slice(None)), int(np.prod(shape)))
    return ev.test(name).reshape(shape)


def pekel_features(
    blue: npt.ArrayLike,
    green: npt.ArrayLike,
    red: npt.ArrayLike,
    nir: npt.ArrayLike,
    swir1: npt.ArrayLike,
    swir2: npt.ArrayLike,
) -> dict[str, FloatArray]:
    """Derived float64 features: ndvi, hue, sat, val (composite 1) and hue2, sat2, val2 (composite 2)."""
    rules = load_rules()
    shape, flat = _prepare(dict(zip(INPUTS, (blue, green, red, nir, swir1, swir2), strict=True)))
    f = _features(rules, _chunk(flat, slice(None)))
    names = ["ndvi"] + [n for _, outs in rules.composites for n in outs]
    return {n: f[n].reshape(shape) for n in names}


def pekel_tests(
    blue: npt.ArrayLike,
    green: npt.ArrayLike,
    red: npt.ArrayLike,
    nir: npt.ArrayLike,
    swir1: npt.ArrayLike,
    swir2: npt.ArrayLike,
    thermal: npt.ArrayLike | None = None,
    cloud: npt.ArrayLike | None = None,
) -> dict[str, BoolArray]:
    """Every test of the table (including the unused ones) as a boolean array, plus `combination`.

    `iscloud` is all false without a cloud layer (the original's all-zero layer).
    """
    rules = load_rules()
    bands = dict(zip(INPUTS, (blue, green, red, nir, swir1, swir2), strict=True))
    shape, flat = _prepare({**bands, "thermal": thermal, "cloud": cloud})
    n = int(np.prod(shape))
    f = _features(rules, _chunk(flat, slice(None)))
    if "cloud" not in f:
        f["cloud"] = np.zeros(n)
    ev = _Evaluator(rules, f, n)
    out = {name: ev.test(name).reshape(shape) for name in rules.tests}
    out["combination"] = ev.node(rules.combination, lazy=False).reshape(shape)
    return out


def pekel_classify(
    blue: npt.ArrayLike,
    green: npt.ArrayLike,
    red: npt.ArrayLike,
    nir: npt.ArrayLike,
    swir1: npt.ArrayLike,
    swir2: npt.ArrayLike,
    thermal: npt.ArrayLike | None = None,
    *,
    cloud: npt.ArrayLike | None = None,
) -> npt.NDArray[np.int8]:
    """Original output codes, int8, in the inputs' broadcast shape (any shape, e.g. (time, y, x)).

    1 water, 0 not water; then -1 where blue == -1 (invalid); then, only when a `cloud` layer is given
    (cloud masking on), -2 where cloud == 1. Inputs are reflectances (cast to float64), thermal is the
    brightness temperature in kelvin; without thermal, confusion6 is always true.
    """
    rules = load_rules()
    bands = dict(zip(INPUTS, (blue, green, red, nir, swir1, swir2), strict=True))
    shape, flat = _prepare({**bands, "thermal": thermal, "cloud": cloud})
    n = int(np.prod(shape))
    out = np.empty(n, dtype=np.int8)
    for start in range(0, n, CHUNK):
        sl = slice(start, min(start + CHUNK, n))
        f = _features(rules, _chunk(flat, sl))
        ev = _Evaluator(rules, f, sl.stop - sl.start)
        code = np.where(ev.node(rules.combination, lazy=True), CODE_WATER, CODE_DRY).astype(np.int8)
        code[ev.test("invalid")] = CODE_INVALID
        if "cloud" in f:
            code[ev.test("iscloud")] = CODE_CLOUD
        out[sl] = code
    return out.reshape(shape)


def s2_dn_to_reflectance(dn: npt.ArrayLike) -> FloatArray:
    """The original's Sentinel-2 scaling: numpy.interp(DN, (0, 10000), (0, 1)), i.e. (1.0 / 10000.0) * DN
    rounded once and clamped to [0, 1] (not always bit-identical to DN / 10000); NaN stays NaN."""
    x = np.asarray(dn, dtype=np.float64)
    return np.where(x < 0, 0.0, np.where(x >= 10000, 1.0, (1.0 / 10000.0) * x))


# --------------------------------------------------------------------------------------------------
# the registry model


@dataclass(frozen=True)
class PekelModel:
    """`WaterModel` for the registry: water where `pekel_classify(...) == 1`, without thermal.

    Roles map to the rules' inputs: swir16 -> swir1, swir22 -> swir2. Reflectance is clamped to [0, 1]
    first (`clip_reflectance`, as the original's Sentinel-2 path), so water3 / the XOR never fire on
    slightly negative surface reflectance. Clouds and no data are masked by `predict_slice`.
    """

    name: str = "pekel"
    version: str = field(default_factory=rules_version)
    roles: tuple[str, ...] = ("blue", "green", "red", "nir", "swir16", "swir22")
    clip_reflectance: bool = True

    @property
    def key(self) -> str:
        base = f"{self.name}-v{self.version}"
        return base if self.clip_reflectance else f"{base}-noclip"

    def classify(self, reflectance: Mapping[str, np.ndarray]) -> np.ndarray:
        def band(role: str) -> np.ndarray:
            a = np.asarray(reflectance[role])
            return np.clip(a, 0.0, 1.0) if self.clip_reflectance else a

        codes = pekel_classify(
            band("blue"), band("green"), band("red"), band("nir"), band("swir16"), band("swir22")
        )
        return np.asarray(codes == CODE_WATER)


# --------------------------------------------------------------------------------------------------
# surface-reflectance adaptation (`pekel-sr`)

# Band centres (um) of the roles, Sentinel-2 MSI (Landsat OLI/TM differ by <= 0.025 um, which changes the
# Rayleigh terms below by < 10 %).
BAND_CENTRE_UM: dict[str, float] = {
    "blue": 0.490,
    "green": 0.560,
    "red": 0.665,
    "nir": 0.842,
    "swir16": 1.610,
    "swir22": 2.190,
}
REFERENCE_SUN_ZENITH_DEG = 35.0  # a mid-latitude morning overpass; sensitivity in the accuracy README
# A temperature inside confusion6's 264-310 K window: where a thermal pixel is missing (NaN), it gives
# exactly the no-thermal result (confusion6 true), instead of NaN (every comparison false).
THERMAL_NEUTRAL_K = 287.0


def rayleigh_optical_depth(wavelength_um: float) -> float:
    """Rayleigh optical depth of a standard sea-level atmosphere (Hansen & Travis 1974, Space Sci.
    Rev. 16:527-610, eq. 2.29): 0.008569 l^-4 (1 + 0.0113 l^-2 + 0.00013 l^-4), l in um."""
    lam = wavelength_um
    return 0.008569 * lam**-4 * (1.0 + 0.0113 * lam**-2 + 0.00013 * lam**-4)


def rayleigh_terms(
    wavelength_um: float, sun_zenith_deg: float = REFERENCE_SUN_ZENITH_DEG
) -> tuple[float, float]:
    """(path reflectance, two-way transmittance) of a pure-Rayleigh atmosphere for a nadir view.

    Single scattering: rho_R = tau P(theta) / (4 mu_s mu_v) with the Rayleigh phase function
    P = 3/4 (1 + cos^2 theta) at scattering angle theta = 180 deg - sun zenith; transmittance with half
    of the scattering going forward, T = exp(-tau / 2 (1/mu_s + 1/mu_v)) (the usual ocean-colour
    approximation, e.g. Gordon & Clark 1981, Appl. Opt. 20:4175-4180). Aerosols are ignored, so the
    path term is a lower bound of what TOA reflectance carries.
    """
    tau = rayleigh_optical_depth(wavelength_um)
    mu_s, mu_v = float(np.cos(np.radians(sun_zenith_deg))), 1.0
    phase = 0.75 * (1.0 + mu_s * mu_s)  # cos(180 deg - sza)^2 = mu_s^2
    return tau * phase / (4.0 * mu_s * mu_v), float(np.exp(-0.5 * tau * (1.0 / mu_s + 1.0 / mu_v)))


def toa_like(
    reflectance: Mapping[str, npt.ArrayLike], sun_zenith_deg: float = REFERENCE_SUN_ZENITH_DEG
) -> dict[str, FloatArray]:
    """Approximate TOA reflectance from surface reflectance: rho_TOA = rho_R + T rho_s per band role
    (see `rayleigh_terms`); float64. Roles without a band centre (e.g. thermal) pass through unchanged."""
    out: dict[str, FloatArray] = {}
    for role, value in reflectance.items():
        a = np.asarray(value, dtype=np.float64)
        if role in BAND_CENTRE_UM:
            path, trans = rayleigh_terms(BAND_CENTRE_UM[role], sun_zenith_deg)
            out[role] = path + trans * a
        else:
            out[role] = a
    return out


@dataclass(frozen=True)
class PekelSRModel:
    """`pekel-sr`: the unchanged rule table applied to surface reflectance made TOA-like.

    The rules were tuned on Landsat TOA reflectance, where Rayleigh path radiance adds ~0.06 in the blue;
    on surface reflectance their shadow/dark-surface keep-regions reject most clear and dark water (blue
    below ~0.05). Here reflectance is clamped to [0, 1], then `toa_like` adds the Rayleigh path term and
    transmittance of a standard atmosphere at `sun_zenith_deg` (fixed, not fitted), and `pekel_classify`
    runs on the result. Optional role `thermal` (kelvin, e.g. Landsat C2 ST_B10) enables confusion6
    (264-310 K keep-region) when the archive carries it; without it confusion6 is constant true. C2 ST is
    surface temperature, not the TOA brightness temperature the rules used: over water they differ by a few
    kelvin, small against the 46 K window. Missing thermal pixels (NaN) behave as without thermal.
    """

    name: str = "pekel-sr"
    version: str = "1"
    roles: tuple[str, ...] = ("blue", "green", "red", "nir", "swir16", "swir22")
    optional_roles: tuple[str, ...] = ("thermal",)
    sun_zenith_deg: float = REFERENCE_SUN_ZENITH_DEG

    @property
    def key(self) -> str:
        base = f"{self.name}-v{self.version}"
        return (
            base if self.sun_zenith_deg == REFERENCE_SUN_ZENITH_DEG else f"{base}-sz{self.sun_zenith_deg:g}"
        )

    def classify(self, reflectance: Mapping[str, np.ndarray]) -> np.ndarray:
        clamped = {r: np.clip(np.asarray(reflectance[r], dtype=np.float64), 0.0, 1.0) for r in self.roles}
        t = toa_like(clamped, self.sun_zenith_deg)
        thermal = reflectance.get("thermal")
        if thermal is not None:
            thermal = np.asarray(thermal, dtype=np.float64)
            thermal = np.where(np.isnan(thermal), THERMAL_NEUTRAL_K, thermal)
        codes = pekel_classify(t["blue"], t["green"], t["red"], t["nir"], t["swir16"], t["swir22"], thermal)
        return np.asarray(codes == CODE_WATER)
