"""Task runners by configuration: the same flows on threads, a local Dask cluster, an existing Dask
scheduler (`dask_address`) or a Dask cluster class such as dask-kubernetes' `KubeCluster`.

Scale-out is a settings choice (`OXEO_TASK_RUNNER=dask`, `OXEO_DASK_ADDRESS=tcp://...`), read when the flows
are imported (so deployments pick it up from the worker's environment) or per run with
`oxeo-flows run --runner ...`. Prefect tasks stay coarse (tile x constellation x window), which matters
on Dask where each task costs about 160 ms of Prefect overhead.
"""

from __future__ import annotations

from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from oxeo_flows.errors import InputError
from oxeo_flows.settings import Settings, load_settings


def make_task_runner(settings: Settings) -> Any:
    """A Prefect task runner for `settings.task_runner`."""
    if settings.task_runner == "threads":
        return ThreadPoolTaskRunner(max_workers=settings.max_workers)
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    if settings.dask_cluster_class:
        return DaskTaskRunner(
            cluster_class=settings.dask_cluster_class,
            cluster_kwargs=dict(settings.dask_cluster_kwargs),
            adapt_kwargs=dict(settings.dask_adapt_kwargs) or None,
        )
    kwargs = {
        "n_workers": settings.dask_workers,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": ":0",
        **settings.dask_cluster_kwargs,
    }
    return DaskTaskRunner(cluster_kwargs=kwargs, adapt_kwargs=dict(settings.dask_adapt_kwargs) or None)


def default_task_runner() -> Any:
    """The runner from the environment's settings; threads when the environment's settings are invalid
    (the error then surfaces, with the parameter named, when a run loads them)."""
    try:
        return make_task_runner(load_settings())
    except InputError:
        return ThreadPoolTaskRunner()
