"""Prefect tasks: one per work unit (tile x constellation x window), per archive, or per AOI."""

from __future__ import annotations

import time
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from oxeo_flows import pipeline, store
from oxeo_flows.aoi import AOI
from oxeo_flows.errors import SourceError
from oxeo_flows.models import WaterModel
from oxeo_flows.planning import WorkUnit
from oxeo_flows.settings import Settings


def _retry_on_source_error(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except SourceError:
        return True
    except Exception:
        return False
    return False


@task(
    name="extract-unit",
    task_run_name="extract-{unit.tile_id}-{unit.constellation}-{unit.window}",
    retries=1,  # the flows set `task_retries`
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_on_source_error,
    cache_policy=NO_CACHE,
)
def extract_unit_task(unit: WorkUnit, storage: str, resampling: str) -> dict[str, Any]:
    log = get_run_logger()
    t0 = time.perf_counter()
    summary = pipeline.extract_unit(unit, storage, resampling)
    duration = time.perf_counter() - t0
    log.info(
        "tile %s %s %s: %d slices written, %d skipped, %d scenes read",
        unit.tile_id,
        unit.constellation,
        unit.window,
        summary.slices_written,
        summary.slices_skipped,
        summary.scenes_read,
    )
    return {**summary.__dict__, "duration_s": round(duration, 3)}


@task(name="predict-archive", task_run_name="predict-{tile_id}-{constellation}", cache_policy=NO_CACHE)
def predict_archive_task(tile_id: str, constellation: str, model: WaterModel, storage: str) -> int:
    n = pipeline.predict_archive(tile_id, constellation, model, storage)
    get_run_logger().info("tile %s %s: %d masks (%s) written", tile_id, constellation, n, model.key)
    return n


@task(name="aoi-timeseries", task_run_name="timeseries-{aoi.id}", cache_policy=NO_CACHE)
def aoi_timeseries_task(
    aoi: AOI, request: pipeline.Request, settings: Settings, model_run_id: str | None
) -> list[dict[str, Any]]:
    engine = store.connect(settings.database_url)
    rows = pipeline.aoi_timeseries(aoi, request, settings, engine, model_run_id)
    engine.dispose()
    get_run_logger().info("AOI %s: %d observations written", aoi.id, len(rows))
    return [r.__dict__ for r in rows]
