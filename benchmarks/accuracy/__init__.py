"""Accuracy report of the registered water models and of the products' cloud masks on labelled synthetic
scenes (`benchmarks.accuracy.scenes`). Run from the repository root::

    python -m benchmarks.accuracy [--seed N] [--scenes N] [--json PATH]

Per model, condition group and constellation: water IoU / precision / recall / F1 on clear pixels (truth
not cloud/shadow and mask not 254/255, pooled counts), and the water-area error after `clean_water` on
observations whose valid share is >= 0.9. Per constellation: precision / recall of mask == 254 against the
truth cloud/shadow, with the product masks as they are and dilated by `CLOUD_DILATIONS_M` metres. See
`benchmarks/accuracy/README.md`.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.accuracy.scenes import Observation, generate
from oxeo_flows.archive import MASK_CLOUD, MASK_NODATA, MASK_WATER
from oxeo_flows.models import MODELS, WaterModel, get_model, predict_slice
from oxeo_flows.models.registry import pipeline_model, with_cloud_dilation
from oxeo_flows.timeseries import clean_water

MIN_VALID_SHARE = 0.9  # area statistic only on observations at least this valid (DEA: <= 10 % invalid)
TARGET_IOU = 0.95  # water IoU on clear pixels, for mndwi and pekel
TARGET_IOU_FAMILIES = ("mndwi", "pekel")  # every registered model whose name starts with one of these
TARGET_AREA_PCT = 3.0  # mean absolute area error (%) on observations with valid share >= 0.9
TARGET_CLOUD_RECALL = 0.95  # mask == 254 against truth cloud/shadow, per constellation
CLOUD_DILATIONS_M = (0.0, 40.0)  # product masks as they are, and dilated (the `cloud_dilation_m` setting)
ALL = "all"
ALL_BUT_SNOW = "all but snow"
ALL_BUT_TERRAIN = "all but terrain_shadow"  # terrain shadow needs a DEM, which no model here has
CLEAR_SKY = (
    "clear sky"  # the groups without cloud (clear, turbid, dark, shallow, mixed, urban, terrain, snow)
)


# ---------------------------------------------------------------------------------------------------------
# Metric helpers
# ---------------------------------------------------------------------------------------------------------


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


@dataclass
class Counts:
    """Binary confusion counts (pooled over pixels and observations)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def iou(self) -> float:
        return _ratio(self.tp, self.tp + self.fp + self.fn)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def f1(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "iou": self.iou,
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
        }


def confusion(
    pred: NDArray[np.bool_], truth: NDArray[np.bool_], valid: NDArray[np.bool_] | None = None
) -> Counts:
    """Counts of `pred` against `truth` over the pixels where `valid` (all pixels when None)."""
    p = np.asarray(pred, dtype=bool)
    t = np.asarray(truth, dtype=bool)
    v = np.ones(p.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    return Counts(
        tp=int(np.count_nonzero(p & t & v)),
        fp=int(np.count_nonzero(p & ~t & v)),
        fn=int(np.count_nonzero(~p & t & v)),
        tn=int(np.count_nonzero(~p & ~t & v)),
    )


def iou(pred: NDArray[np.bool_], truth: NDArray[np.bool_], valid: NDArray[np.bool_] | None = None) -> float:
    """Intersection over union |P & T| / |P | T| (NaN when both are empty)."""
    return confusion(pred, truth, valid).iou


def f1(pred: NDArray[np.bool_], truth: NDArray[np.bool_], valid: NDArray[np.bool_] | None = None) -> float:
    """F1 = 2 TP / (2 TP + FP + FN) (NaN when both are empty)."""
    return confusion(pred, truth, valid).f1


def area_error_pct(predicted_m2: float, true_m2: float) -> float:
    """Signed relative area error in per cent (NaN when the true area is 0)."""
    return 100.0 * (predicted_m2 - true_m2) / true_m2 if true_m2 > 0 else math.nan


# ---------------------------------------------------------------------------------------------------------
# Evaluation of one observation
# ---------------------------------------------------------------------------------------------------------


@dataclass
class ModelResult:
    """One model on one observation."""

    scene_id: str
    group: str
    constellation: str
    model: str
    water: Counts
    valid_share: float
    area_eligible: bool
    predicted_area_m2: float
    true_area_valid_m2: float  # exact water area inside the mask's valid pixels (the reference)
    true_area_scene_m2: float  # exact water area of the whole scene
    area_error_pct: float  # vs true_area_valid_m2; NaN when not eligible

    def as_dict(self) -> dict[str, Any]:
        return {
            "scene_id": self.scene_id,
            "group": self.group,
            "constellation": self.constellation,
            "model": self.model,
            "water": self.water.as_dict(),
            "valid_share": self.valid_share,
            "area_eligible": self.area_eligible,
            "predicted_area_m2": self.predicted_area_m2,
            "true_area_valid_m2": self.true_area_valid_m2,
            "true_area_scene_m2": self.true_area_scene_m2,
            "area_error_pct": self.area_error_pct,
        }


@dataclass
class CloudResult:
    """The product cloud mask (mask == 254; the same for every model) on one observation."""

    scene_id: str
    group: str
    constellation: str
    counts: Counts  # vs truth cloud or shadow
    cloud_only: Counts  # recall part over truth cloud pixels
    shadow_only: Counts  # recall part over truth shadow pixels
    dilation_m: float = 0.0
    valid_share: float = math.nan


def evaluate_cloud(obs: Observation, dilation_m: float) -> CloudResult:
    """The product cloud mask of `obs`, dilated by `dilation_m` metres, against the truth."""
    model = with_cloud_dilation(get_model("mndwi"), dilation_m)  # any model: the cloud mask is shared
    mask = predict_slice(obs.data, obs.bands, obs.scale, obs.offset, obs.constellation, model)
    flagged = mask == MASK_CLOUD
    shadow_truth = obs.cloud & ~obs.cloud_only
    return CloudResult(
        obs.scene_id,
        obs.group,
        obs.constellation.name,
        confusion(flagged, obs.cloud),
        confusion(flagged, obs.cloud_only, obs.cloud_only),
        confusion(flagged, shadow_truth, shadow_truth),
        dilation_m,
        float(((mask != MASK_CLOUD) & (mask != MASK_NODATA)).mean()),
    )


def evaluate(obs: Observation, models: Mapping[str, WaterModel]) -> tuple[list[ModelResult], CloudResult]:
    """Run every model through `predict_slice` on one observation and score it."""
    res = obs.pixel_size_m
    aoi = np.ones(obs.water.shape, dtype=bool)
    out: list[ModelResult] = []
    cloud_mask: NDArray[np.bool_] | None = None
    for name, model in models.items():
        mask = predict_slice(obs.data, obs.bands, obs.scale, obs.offset, obs.constellation, model)
        flagged = mask == MASK_CLOUD
        if cloud_mask is None:
            cloud_mask = flagged
        elif not np.array_equal(cloud_mask, flagged):
            raise AssertionError(f"cloud mask differs between models on {obs.scene_id}")
        valid = (mask != MASK_CLOUD) & (mask != MASK_NODATA)
        clear = valid & ~obs.cloud
        counts = confusion(mask == MASK_WATER, obs.water, clear)
        valid_share = float(valid.mean())
        eligible = valid_share >= MIN_VALID_SHARE
        true_valid = float(obs.water_fraction[valid].sum()) * res * res
        true_scene = float(obs.water_fraction.sum()) * res * res
        predicted = math.nan
        err = math.nan
        if eligible:
            predicted = float(np.count_nonzero(clean_water(mask, aoi, res * res))) * res * res
            err = area_error_pct(predicted, true_valid)
        out.append(
            ModelResult(
                obs.scene_id,
                obs.group,
                obs.constellation.name,
                name,
                counts,
                valid_share,
                eligible,
                predicted,
                true_valid,
                true_scene,
                err,
            )
        )
    assert cloud_mask is not None
    cloud = evaluate_cloud(obs, 0.0)
    return out, cloud


# ---------------------------------------------------------------------------------------------------------
# Aggregation
# ---------------------------------------------------------------------------------------------------------


def _nan_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _area_stats(errors: Sequence[float]) -> dict[str, Any]:
    if not errors:
        return {
            "n": 0,
            "mean_abs": math.nan,
            "median_abs": math.nan,
            "max_abs": math.nan,
            "bias": math.nan,
            "within_target": math.nan,
        }
    absolute = [abs(e) for e in errors]
    return {
        "n": len(errors),
        "mean_abs": statistics.fmean(absolute),
        "median_abs": statistics.median(absolute),
        "max_abs": max(absolute),
        "bias": statistics.fmean(errors),
        "within_target": sum(a <= TARGET_AREA_PCT for a in absolute) / len(absolute),
    }


@dataclass
class Summary:
    """Pooled water metrics per (model, subset), cloud metrics per (constellation, subset)."""

    water: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    cloud: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)


def _subsets(group: str, constellation: str) -> list[str]:
    from benchmarks.accuracy.scenes import GROUPS

    out = [group, ALL, f"{ALL} / {constellation}"]
    if group != "snow":
        out.append(ALL_BUT_SNOW)
    if group != "terrain_shadow":
        out.append(ALL_BUT_TERRAIN)
    if not GROUPS[group].cloud_kind:
        out.append(CLEAR_SKY)
    return out


def summarise(model_results: Iterable[ModelResult], cloud_results: Iterable[CloudResult]) -> Summary:
    counts: dict[tuple[str, str], Counts] = defaultdict(Counts)
    errors: dict[tuple[str, str], list[float]] = defaultdict(list)
    n_obs: dict[tuple[str, str], int] = defaultdict(int)
    for r in model_results:
        for subset in _subsets(r.group, r.constellation):
            key = (r.model, subset)
            counts[key] += r.water
            n_obs[key] += 1
            if r.area_eligible:
                errors[key].append(r.area_error_pct)
    summary = Summary()
    for key, c in counts.items():
        summary.water[key] = {
            "observations": n_obs[key],
            "clear_px": c.n,
            **c.as_dict(),
            "area": _area_stats(errors[key]),
        }
    ccounts: dict[tuple[str, str], list[Counts]] = defaultdict(lambda: [Counts(), Counts(), Counts()])
    valid: dict[tuple[str, str], list[float]] = defaultdict(list)
    for cr in cloud_results:
        for subset in (cr.group, ALL):
            key = (_cloud_label(cr.constellation, cr.dilation_m), subset)
            acc = ccounts[key]
            acc[0] += cr.counts
            acc[1] += cr.cloud_only
            acc[2] += cr.shadow_only
            valid[key].append(cr.valid_share)
    for key, (c, co, so) in ccounts.items():
        summary.cloud[key] = {
            **c.as_dict(),
            "truth_px": c.tp + c.fn,
            "flagged_px": c.tp + c.fp,
            "cloud_recall": co.recall,
            "shadow_recall": so.recall,
            "mean_valid_share": statistics.fmean(valid[key]),
        }
    return summary


def _cloud_label(constellation: str, dilation_m: float) -> str:
    return constellation if dilation_m == 0 else f"{constellation} +{dilation_m:g} m"


def check_targets(
    summary: Summary, models: Sequence[str], constellations: Sequence[str]
) -> list[dict[str, Any]]:
    """Each issue target with its value and whether it is met (NaN counts as missed)."""
    out: list[dict[str, Any]] = []
    iou_models = [m for m in models if m.split(" ")[0].split("-")[0] in TARGET_IOU_FAMILIES]
    for m in iou_models:
        for subset, label in (
            (ALL, "all scenes"),
            (CLEAR_SKY, "clear-sky scenes"),
            ("clear_water", "clear_water scenes only"),
        ):
            if (m, subset) not in summary.water:
                continue
            v = summary.water[(m, subset)]["iou"]
            out.append(
                {
                    "target": f"water IoU >= {TARGET_IOU} (clear pixels, {label})",
                    "model": m,
                    "value": v,
                    "met": bool(v >= TARGET_IOU),
                }
            )
    for m in models:
        v = summary.water[(m, ALL)]["area"]["mean_abs"]
        out.append(
            {
                "target": f"mean abs area error <= {TARGET_AREA_PCT} % (valid share >= {MIN_VALID_SHARE})",
                "model": m,
                "value": v,
                "met": bool(v <= TARGET_AREA_PCT),
            }
        )
    for c in constellations:
        for d in CLOUD_DILATIONS_M:
            label = _cloud_label(c, d)
            if (label, ALL) not in summary.cloud:
                continue
            v = summary.cloud[(label, ALL)]["recall"]
            out.append(
                {
                    "target": f"cloud/shadow recall >= {TARGET_CLOUD_RECALL}",
                    "constellation": label,
                    "value": v,
                    "met": bool(v >= TARGET_CLOUD_RECALL),
                }
            )
    return out


# ---------------------------------------------------------------------------------------------------------
# Running and formatting
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Report:
    seed: int
    scenes_per_group: int
    groups: list[str]
    models: dict[str, str]  # name -> key (with version)
    constellations: list[str]
    model_results: list[ModelResult]
    cloud_results: list[CloudResult]
    summary: Summary
    targets: list[dict[str, Any]]


PER_PIXEL = " (per-pixel)"


def report_models() -> dict[str, WaterModel]:
    """Every registered model as a flow runs it by default (`pipeline_model`: shoreline refinement on,
    no cloud dilation), and, where that differs, the model alone as `NAME (per-pixel)`."""
    out: dict[str, WaterModel] = {}
    for name in MODELS:
        out[name] = pipeline_model(name)
        if get_model(name).key != out[name].key:
            out[name + PER_PIXEL] = get_model(name)
    return out


def run(
    seed: int = 0,
    scenes_per_group: int = 6,
    groups: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Generate the scenes, evaluate every registered model, summarise."""
    from benchmarks.accuracy.scenes import CONSTELLATION_NAMES, GROUPS

    models = report_models()
    group_list = list(groups or GROUPS)
    model_results: list[ModelResult] = []
    cloud_results: list[CloudResult] = []
    for obs in generate(seed, scenes_per_group, group_list):
        mr, cr = evaluate(obs, models)
        model_results.extend(mr)
        cloud_results.append(cr)
        cloud_results.extend(evaluate_cloud(obs, d) for d in CLOUD_DILATIONS_M if d != 0)
        if progress is not None:
            progress(f"{obs.scene_id} {obs.constellation.name}")
    summary = summarise(model_results, cloud_results)
    constellations = list(CONSTELLATION_NAMES)
    return Report(
        seed=seed,
        scenes_per_group=scenes_per_group,
        groups=group_list,
        models={n: m.key for n, m in models.items()},
        constellations=constellations,
        model_results=model_results,
        cloud_results=cloud_results,
        summary=summary,
        targets=check_targets(summary, list(models), constellations),
    )


def n_observations(report: Report) -> int:
    """Observations (scene x constellation) in a report."""
    return sum(1 for cr in report.cloud_results if cr.dilation_m == 0)


def _f(x: float, digits: int = 3) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    return "\n".join([line, sep, *body])


def format_report(report: Report) -> str:
    """Markdown tables: water metrics per model x subset, cloud mask per constellation, targets."""
    s = report.summary
    subsets = [
        *report.groups,
        CLEAR_SKY,
        ALL_BUT_SNOW,
        ALL_BUT_TERRAIN,
        *(f"{ALL} / {c}" for c in report.constellations),
        ALL,
    ]
    rows = []
    for m in report.models:
        for sub in subsets:
            w = s.water.get((m, sub))
            if w is None:
                continue
            a = w["area"]
            rows.append(
                [
                    m,
                    sub,
                    str(w["observations"]),
                    _f(w["iou"]),
                    _f(w["precision"]),
                    _f(w["recall"]),
                    _f(w["f1"]),
                    str(a["n"]),
                    _f(a["mean_abs"], 2),
                    _f(a["bias"], 2),
                    _f(a["max_abs"], 2),
                    _f(a["within_target"], 2),
                ]
            )
    water = _table(
        [
            "model",
            "condition",
            "obs",
            "IoU",
            "prec",
            "recall",
            "F1",
            "area obs",
            "mean abs area err %",
            "bias %",
            "max % ",
            f"<= {TARGET_AREA_PCT:g} %",
        ],
        rows,
    )
    crow = []
    for c in report.constellations:
        for d in CLOUD_DILATIONS_M:
            label = _cloud_label(c, d)
            for sub in [*report.groups, ALL]:
                v = s.cloud.get((label, sub))
                if v is None or (sub != ALL and v["truth_px"] == 0 and v["flagged_px"] == 0):
                    continue
                crow.append(
                    [
                        label,
                        sub,
                        str(v["truth_px"]),
                        str(v["flagged_px"]),
                        _f(v["precision"]),
                        _f(v["recall"]),
                        _f(v["cloud_recall"]),
                        _f(v["shadow_recall"]),
                        _f(v["mean_valid_share"]),
                    ]
                )
    cloud = _table(
        [
            "mask (dilation)",
            "condition",
            "truth px",
            "flagged px",
            "precision",
            "recall",
            "cloud recall",
            "shadow recall",
            "mean valid share",
        ],
        crow,
    )
    trow = [
        [
            t["target"],
            t.get("model", t.get("constellation", "")),
            _f(t["value"], 3),
            "met" if t["met"] else "MISSED",
        ]
        for t in report.targets
    ]
    targets = _table(["target", "model / constellation", "value", "status"], trow)
    return (
        "Water (clear pixels: truth not cloud/shadow, mask not 254/255; pooled counts). Area: after "
        f"clean_water, observations with valid share >= {MIN_VALID_SHARE}, error vs the exact water area "
        "of the valid pixels.\n\n"
        f"{water}\n\nCloud mask (mask == 254 vs truth cloud or cloud shadow):\n\n{cloud}\n\nTargets:\n\n"
        f"{targets}\n"
    )


def report_json(report: Report, meta: Mapping[str, Any]) -> dict[str, Any]:
    """Everything as plain JSON types (NaN -> null)."""
    from benchmarks.accuracy import scenes

    def clean(x: Any) -> Any:
        if isinstance(x, float):
            return _nan_none(x)
        if isinstance(x, dict):
            return {str(k): clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    doc = {
        "meta": dict(meta),
        "seed": report.seed,
        "scenes_per_group": report.scenes_per_group,
        "groups": {g: scenes.GROUPS[g].description for g in report.groups},
        "models": report.models,
        "constellations": report.constellations,
        "targets": report.targets,
        "water": [{"model": m, "subset": sub, **v} for (m, sub), v in report.summary.water.items()],
        "cloud": [{"mask": c, "subset": sub, **v} for (c, sub), v in report.summary.cloud.items()],
        "cloud_dilations_m": list(CLOUD_DILATIONS_M),
        "observations": [r.as_dict() for r in report.model_results],
        "generator": {
            "spectra": {
                k: {"low": v.low, "high": v.high, "source": v.source} for k, v in scenes.SPECTRA.items()
            },
            "cirrus_cloud_min": scenes.CIRRUS_CLOUD_MIN,
            "scl_shadow_detect": scenes.SCL_SHADOW_DETECT,
            "scl_cirrus_miss": scenes.SCL_CIRRUS_MISS,
            "scl_roof_commission": scenes.SCL_ROOF_COMMISSION,
            "qa_shadow_detect": scenes.QA_SHADOW_DETECT,
            "qa_cirrus_miss": scenes.QA_CIRRUS_MISS,
            "qa_roof_commission": scenes.QA_ROOF_COMMISSION,
            "qa_cloud_dilation_px": scenes.QA_CLOUD_DILATION_PX,
        },
    }
    cleaned: dict[str, Any] = clean(doc)
    return cleaned
