"""The `extract`, `predict`, `timeseries` and `water` flows.

Every flow takes the same request parameters; `water` runs the three steps in sequence in one run.
Parameters override settings (`catalog`, `storage`, `database_url`, `window`, `tile_size_m`).
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import PrefectFuture, as_completed, wait
from prefect.runtime import flow_run

from oxeo_flows import pipeline, store
from oxeo_flows.errors import InputError
from oxeo_flows.flows import secrets
from oxeo_flows.flows.runners import default_task_runner
from oxeo_flows.flows.tasks import aoi_timeseries_task, extract_unit_task, predict_archive_task
from oxeo_flows.planning import WorkUnit
from oxeo_flows.plot import timeseries_png
from oxeo_flows.settings import Settings, flow_overrides, load_settings

AoiParam = str | dict[str, Any] | list[str]


def _run_name() -> str:
    p = flow_run.parameters or {}
    aoi = p.get("aoi")
    if isinstance(aoi, str) and not aoi.lstrip().startswith("{"):
        label = aoi.rsplit("/", 1)[-1].removesuffix(".geojson").removesuffix(".json")
    elif isinstance(aoi, list):
        label = "+".join(str(a) for a in aoi[:3]) + ("+more" if len(aoi) > 3 else "")
    else:
        label = "geojson"
    label = re.sub(r"[^A-Za-z0-9._+-]", "_", label)[:60]
    return f"{flow_run.flow_name}-{label}-{p.get('start_date')}-{p.get('end_date')}"


class _Context:
    def __init__(self, **params: Any) -> None:
        self.started = datetime.now(UTC)
        self.params = params
        token = params.get("catalog_token")
        if token is not None and not str(token).startswith(secrets.PREFIX):
            raise InputError(
                "catalog_token",
                "expected a reference 'secret:<block name>' (parameters are shown in the UI; "
                "store the token with `oxeo-flows secrets set NAME`)",
            )
        self.settings: Settings = secrets.resolve_settings(
            load_settings(**{**flow_overrides(params), "catalog_token": token})
        )
        self.request = pipeline.build_request(
            params["aoi"],
            params["start_date"],
            params["end_date"],
            params["constellations"],
            params["model"],
            self.settings,
            store.aoi_lookup(self.settings.database_url),
            model_params=params.get("model_params"),
        )
        # Validation done: only now touch the database, starting with the run's own record.
        self.engine = store.connect(self.settings.database_url)
        self.report: dict[str, Any] = {"timings_s": {}}
        self.aois_recorded = False
        self.flow_run_id = str(flow_run.id) if flow_run.id else None
        req = self.request
        self.run_id = store.start_model_run(
            self.engine,
            flow=flow_run.flow_name or "oxeo-flows",
            prefect_flow_run_id=self.flow_run_id,
            parameters=params,
            model=req.model.key,
            model_version=req.model.version,
            constellations=[c.name for c in req.constellations],
            aoi_ids=[a.id for a in req.aois],
            tiles=[t.id for t in req.tiles],
            start_date=req.start,
            end_date=req.end,
            started_at=self.started,
        )

    def timed(self, step: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        self.report["timings_s"][step] = round(time.perf_counter() - t0, 3)
        return out


def _extract(ctx: _Context) -> dict[str, Any]:
    log = get_run_logger()
    s, req = ctx.settings, ctx.request
    searched: dict[str, int] = {}
    units: list[WorkUnit] = []
    offered = present = 0
    for const in req.constellations:
        scenes = pipeline.search_scenes(req, const, s)
        searched[const.name] = len(scenes)
        p = pipeline.plan(req, const, scenes, s)
        offered += p.days_offered
        present += p.days_present
        units.extend(p.units)
        log.info(
            "%s: %d scenes found; %d tile-days offered, %d already archived, %d work units planned",
            const.name,
            len(scenes),
            p.days_offered,
            p.days_present,
            len(p.units),
        )
    # Catalog searched and planned without errors: only now record the AOIs.
    _record_aois(ctx)
    # One writer per archive: units of the same tile x constellation run one after another.
    last: dict[tuple[str, str], PrefectFuture[Any]] = {}
    futures = []
    extract = extract_unit_task.with_options(retries=s.task_retries)
    for unit in units:
        key = (unit.tile_id, unit.constellation)
        prev = last.get(key)
        fut = extract.submit(
            unit,
            s.storage,
            s.resampling,
            wait_for=[prev] if prev else None,  # type: ignore[call-overload]
        )
        last[key] = fut
        futures.append(fut)
    summaries = []
    progress_id: UUID = create_progress_artifact(  # type: ignore[assignment]
        progress=0.0 if futures else 100.0, description=f"extraction: {len(futures)} work units"
    )
    by_name = {u.name: u for u in units}
    for i, fut in enumerate(as_completed(futures), start=1):
        summary = fut.result()
        summaries.append(summary)
        unit = by_name[summary["unit"]]
        store.log_extraction(
            ctx.engine,
            ctx.run_id,
            tile_id=unit.tile_id,
            constellation=unit.constellation,
            window=unit.window,
            days_requested=[d.solar_day for d in unit.days],
            days_written=summary["days_written"],
            slices_written=summary["slices_written"],
            slices_skipped=summary["slices_skipped"],
            scenes_read=summary["scenes_read"],
            duration_s=summary["duration_s"],
        )
        update_progress_artifact(progress_id, progress=100.0 * i / len(futures))
    return {
        "scenes_found": searched,
        "tile_days_offered": offered,
        "tile_days_already_archived": present,
        "work_units": len(units),
        "slices_written": sum(x["slices_written"] for x in summaries),
        "slices_skipped": sum(x["slices_skipped"] for x in summaries),
        "scenes_read": sum(x["scenes_read"] for x in summaries),
    }


def _predict(ctx: _Context) -> dict[str, Any]:
    req = ctx.request
    futures = [
        predict_archive_task.submit(t.id, c.name, req.model, ctx.settings.storage)
        for t in req.tiles
        for c in req.constellations
    ]
    wait(futures)
    return {"model": req.model.key, "masks_written": sum(f.result() for f in futures)}


def _record_aois(ctx: _Context) -> None:
    """Upsert the request's AOIs once per run; report AOIs whose new geometry made old rows stale."""
    if ctx.aois_recorded:
        return  # `water` reaches this from extract and from timeseries
    ctx.aois_recorded = True
    stale = {k: v for k, v in store.upsert_aois(ctx.engine, ctx.request.aois).items() if v}
    if stale:
        ctx.report.setdefault("stale_rows_deleted", {}).update(stale)
        get_run_logger().warning("new AOI geometries, time-series rows of the old ones deleted: %s", stale)


def _timeseries(ctx: _Context) -> dict[str, Any]:
    req = ctx.request
    _record_aois(ctx)  # the `timeseries` flow alone may meet AOIs the database does not know yet
    futures = [aoi_timeseries_task.submit(a, req, ctx.settings, ctx.run_id) for a in req.aois]
    wait(futures)
    rows = [r for f in futures for r in f.result()]
    ctx.report["rows"] = rows
    create_table_artifact(
        key=f"{flow_run.flow_name or 'timeseries'}-rows",
        table=[
            {
                "aoi_id": r["aoi_id"],
                "datetime": r["acquired_at"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                "constellation": r["constellation"],
                "water_area_m2": round(r["water_area_m2"], 1),
                "valid_fraction": round(r["valid_fraction"], 4),
                "cloud_fraction": round(r["cloud_fraction"], 4),
                "usable": r["usable"],
                "model": r["model"],
            }
            for r in rows
        ],
        description="Water time series rows written by this run",
    )
    _plot_artifacts(ctx)
    out: dict[str, Any] = {"rows_written": len(rows), "usable_rows": sum(1 for r in rows if r["usable"])}
    if ctx.report.get("stale_rows_deleted"):
        out["stale_rows_deleted"] = ctx.report["stale_rows_deleted"]
    return out


MAX_PLOTS = 20  # image artifacts per run; more AOIs: use `oxeo-flows plot ID`


def _plot_artifacts(ctx: _Context) -> None:
    """One image artifact per AOI (the first MAX_PLOTS): its whole stored series for this model."""
    req = ctx.request
    for a in req.aois[:MAX_PLOTS]:
        history = store.query_observations(
            ctx.engine,
            [a.id],
            [c.name for c in req.constellations],
            model=req.model.key,
            columns=store.TIMESERIES_FIELDS,
        )
        png = timeseries_png(history, f"{a.name} ({a.id}), {req.model.key}")
        create_image_artifact(
            image_url="data:image/png;base64," + base64.b64encode(png).decode("ascii"),
            key=_artifact_key(f"water-area-{a.id}"),
            description=f"Water area over time of AOI {a.id} ({len(history)} observations; hollow grey "
            "markers: not usable)",
        )


def _artifact_key(text: str) -> str:
    """Prefect artifact keys: lowercase letters, digits and dashes only."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")[:100]


def _finish(
    ctx: _Context, flow_name: str, counts: dict[str, Any], state: str = "COMPLETED"
) -> dict[str, Any]:
    """Record the run in the database and attach the report (also for failed runs: what got done)."""
    counts = {**counts, "timings_s": ctx.report["timings_s"]}
    store.finish_model_run(ctx.engine, ctx.run_id, state=state, counts=counts, error=counts.get("error"))
    create_markdown_artifact(
        key=f"{flow_name}-report",
        markdown=_markdown(ctx, flow_name, counts),
        description=f"What the {flow_name} run searched, extracted, skipped and wrote",
    )
    ctx.engine.dispose()
    return counts


def _markdown(ctx: _Context, flow_name: str, counts: dict[str, Any]) -> str:
    req, s = ctx.request, ctx.settings
    lines = [
        f"# oxeo-flows `{flow_name}` run",
        "",
        f"- AOIs: {', '.join(a.id for a in req.aois)}",
        f"- Dates: {req.start} .. {req.end} (UTC)",
        f"- Constellations: {', '.join(c.name for c in req.constellations)}",
        f"- Model: `{req.model.key}`",
        f"- Model run: `{ctx.run_id}` (table `model_run`; per work unit: `extraction_log`)",
        f"- Catalog: `{s.catalog}`",
        f"- Tiles ({len(req.tiles)}): {', '.join(t.id for t in req.tiles)}",
        "",
        "| step | count |",
        "|---|---|",
    ]
    for k, v in counts.items():
        if k != "timings_s":
            lines.append(f"| {k} | {v} |")
    lines += ["", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in counts["timings_s"].items()]
    rows = ctx.report.get("rows")
    if rows:
        lines += [
            "",
            "| aoi | datetime (UTC) | constellation | water area m² | valid fraction | usable |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['aoi_id']} | {r['acquired_at']:%Y-%m-%dT%H:%M:%SZ} | {r['constellation']} | "
            f"{r['water_area_m2']:.0f} | {r['valid_fraction']:.3f} | {r['usable']} |"
            for r in rows
        ]
    return "\n".join(lines)


_COMMON_DOC = """
    Args:
        aoi: GeoJSON (path, string or dict; each Feature is one AOI) or AOI ids in the database.
        start_date: first acquisition day (UTC), inclusive.
        end_date: last acquisition day (UTC), inclusive.
        constellations: 'sentinel-2', 'landsat-5/7/8/9', a list or a comma-separated string.
        model: water model from the registry (mndwi, ndwi, pekel, pekel-toa, pekel-sr, mndwi-lu,
            pekel-sr-lu).
        model_params: the model's parameters, e.g. {"threshold": -0.1} for mndwi/ndwi (part of the key).
        catalog: STAC API URL or static catalog path (default: settings).
        storage: archive root, any fsspec URL (default: settings).
        database_url: SQLAlchemy URL of the results database (default: settings).
        window: extraction window per task: month, quarter or year (default: settings).
        tile_size_m: UTM tile side in metres (default: settings).
        cloud_dilation_m: dilate cloud/shadow masks by this many metres (default: settings, 0).
        shoreline_refinement: re-decide shoreline pixels by water fraction (default: settings, on).
        catalog_token: 'secret:<block name>' of a bearer token for STAC APIs that need one.
        (`database_url` may also be a 'secret:<block name>' reference.)
"""


def _flow(name: str, steps: tuple[str, ...]) -> Callable[..., dict[str, Any]]:
    def run(
        aoi: AoiParam,
        start_date: date,
        end_date: date,
        constellations: list[str] | str = "sentinel-2",
        model: str = "mndwi",
        model_params: dict[str, float] | None = None,
        catalog: str | None = None,
        storage: str | None = None,
        database_url: str | None = None,
        window: str | None = None,
        tile_size_m: int | None = None,
        cloud_dilation_m: float | None = None,
        shoreline_refinement: bool | None = None,
        catalog_token: str | None = None,
    ) -> dict[str, Any]:
        ctx = _Context(
            aoi=aoi,
            start_date=start_date,
            end_date=end_date,
            constellations=constellations,
            model=model,
            model_params=model_params,
            catalog=catalog,
            storage=storage,
            database_url=database_url,
            window=window,
            tile_size_m=tile_size_m,
            cloud_dilation_m=cloud_dilation_m,
            shoreline_refinement=shoreline_refinement,
            catalog_token=catalog_token,
        )
        counts: dict[str, Any] = {}
        try:
            if "extract" in steps:
                counts.update(ctx.timed("extract", lambda: _extract(ctx)))
            if "predict" in steps:
                counts.update(ctx.timed("predict", lambda: _predict(ctx)))
            if "timeseries" in steps:
                counts.update(ctx.timed("timeseries", lambda: _timeseries(ctx)))
        except Exception as exc:
            counts["error"] = f"{type(exc).__name__}: {exc}"
            _finish(ctx, name, counts, state="FAILED")
            raise
        return _finish(ctx, name, counts)

    run.__name__ = f"{name}_flow"
    run.__doc__ = f"oxeo-flows `{name}`: {', then '.join(steps)}.\n{_COMMON_DOC}"
    return flow(
        name=name,
        flow_run_name=_run_name,
        log_prints=True,
        validate_parameters=True,
        task_runner=default_task_runner(),
    )(run)


extract_flow = _flow("extract", ("extract",))
predict_flow = _flow("predict", ("predict",))
timeseries_flow = _flow("timeseries", ("timeseries",))
water_flow = _flow("water", ("extract", "predict", "timeseries"))
