"""`prefect`, `rerun` and `scaling` sections: the sample-data flows under an ephemeral Prefect API.

- prefect: the `water` flow with one task thread (tasks run one after another, in the library's order:
  the like-for-like overhead) vs the same `oxeo_flows.pipeline` calls without Prefect, each on a fresh
  storage + SQLite database; optionally (`pool`) also the flow with the default thread-pool runner.
- rerun: the identical `water` flow again on the first flow run's storage and database.
- scaling: the `extract` flow's body on a local Dask cluster of 1 vs 2 worker processes (one thread each),
  made by `make_task_runner(load_settings(task_runner="dask", dask_workers=n))`; cluster start-up is timed
  apart, and each worker's peak RSS is read with `client.run`. The same extraction as library calls in
  this process is the reference for Prefect + Dask's per-task cost.

Prefect must not be imported before `configure_prefect_env()` (it reads its settings at import).
"""

from __future__ import annotations

import logging
import os
import resource
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import Row, Section, cpu_snapshot, fmt_s, log, maxrss_mib, median, status_mib

ProgressFn = Callable[[str], None]

# Environment for an offline, quiet Prefect (setdefault: the caller's values win). The console handler
# only shows warnings; the API log handler still ships INFO records, as in a deployment.
PREFECT_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "oxeo_flows",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    # the library-only runs log through `oxeo_flows` loggers outside any flow run
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}


def configure_prefect_env() -> None:
    for key, value in PREFECT_ENV.items():
        os.environ.setdefault(key, value)


@dataclass(frozen=True)
class FlowParams:
    """One request on the sample data, with its own archive and database under `work`."""

    aoi: str
    catalog: str
    work: Path
    start: str
    end: str
    constellations: str = "sentinel-2"
    model: str = "mndwi"

    @property
    def storage(self) -> str:
        return str(self.work / "archive")

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.work / 'oxeo.db'}"

    def kwargs(self) -> dict[str, Any]:
        return {
            "aoi": self.aoi,
            "start_date": self.start,
            "end_date": self.end,
            "constellations": self.constellations,
            "model": self.model,
            "catalog": self.catalog,
            "storage": self.storage,
            "database_url": self.database_url,
        }


# ---------------------------------------------------------------------------------------------------------
# The water flow's work without Prefect
# ---------------------------------------------------------------------------------------------------------


WATER_STEPS = ("extract", "predict", "timeseries")


def library_water(p: FlowParams, steps: tuple[str, ...] = WATER_STEPS) -> dict[str, Any]:
    """What `water_flow` does (or, with `steps=("extract",)`, the `extract` flow), as plain `pipeline`
    calls in the flow's order, in this thread."""
    from oxeo_flows import pipeline, store
    from oxeo_flows.settings import load_settings

    started = datetime.now(UTC)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    settings = load_settings(catalog=p.catalog, storage=p.storage, database_url=p.database_url)
    request = pipeline.build_request(
        p.aoi,
        p.start,
        p.end,
        p.constellations,
        p.model,
        settings,
        store.aoi_lookup(settings.database_url),
    )
    engine = store.connect(settings.database_url)
    setup = time.perf_counter() - t  # the flow does this before its timed steps
    t = time.perf_counter()
    store.upsert_aois(engine, request.aois)
    units: list[Any] = []
    for const in request.constellations:
        scenes = pipeline.search_scenes(request, const, settings)
        units.extend(pipeline.plan(request, const, scenes, settings).units)
    summaries = [pipeline.extract_unit(u, settings.storage, settings.resampling) for u in units]
    timings["extract"] = time.perf_counter() - t
    masks = 0
    if "predict" in steps:
        t = time.perf_counter()
        masks = sum(
            pipeline.predict_archive(tile.id, const.name, request.model, settings.storage)
            for tile in request.tiles
            for const in request.constellations
        )
        timings["predict"] = time.perf_counter() - t
    rows = []
    if "timeseries" in steps:
        t = time.perf_counter()
        for aoi in request.aois:
            ts_engine = store.connect(settings.database_url)  # the task opens its own engine
            rows.extend(pipeline.aoi_timeseries(aoi, request, settings, ts_engine, None))
            ts_engine.dispose()
        timings["timeseries"] = time.perf_counter() - t
    counts = {
        "tasks": len(units)
        + ("predict" in steps) * len(request.tiles) * len(request.constellations)
        + ("timeseries" in steps) * len(request.aois),
        "work_units": len(units),
        "slices_written": sum(s.slices_written for s in summaries),
        "scenes_read": sum(s.scenes_read for s in summaries),
        "masks_written": masks,
        "rows_written": len(rows),
        "timings_s": timings,
        "setup_s": setup,
    }
    store.record_flow_run(
        engine,
        flow="water" if "timeseries" in steps else "extract",
        flow_run_id=None,
        parameters=p.kwargs(),
        started_at=started,
        state="COMPLETED",
        counts=counts,
    )
    engine.dispose()
    return counts


# ---------------------------------------------------------------------------------------------------------
# Prefect helpers
# ---------------------------------------------------------------------------------------------------------


@contextmanager
def prefect_api() -> Iterator[dict[str, float]]:
    """An ephemeral Prefect API on a temporary database; yields its start-up times (s).

    `prefect_test_harness` starts the API server (on a fresh database it runs every migration); a first
    trivial flow run then registers the client side, so later timings exclude both.
    """
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    @flow(name="bench-trivial")
    def trivial() -> int:
        return 1

    t = time.perf_counter()
    with prefect_test_harness(server_startup_timeout=120):
        server = time.perf_counter() - t
        t = time.perf_counter()
        trivial()
        yield {"server_start_s": server, "first_flow_s": time.perf_counter() - t}


def worker_peak_rss_mib() -> float:
    """Peak RSS of the calling process (run on each Dask worker with `client.run`).

    `VmHWM`, not `ru_maxrss`: a spawned worker's `ru_maxrss` also holds the high-water mark of the process
    it was forked from (Linux keeps the larger across `execve`), i.e. at least this benchmark's own peak.
    """
    hwm = status_mib("VmHWM")
    return maxrss_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) if hwm is None else hwm


def _warm_worker() -> bool:
    """Import what the extract task needs, so the timed work excludes worker imports."""
    import oxeo_flows.flows.tasks
    import oxeo_flows.pipeline  # noqa: F401

    return True


def _scaling_flow() -> Any:
    """A flow that starts its task runner's Dask cluster (timed), runs the `extract` flow's body once
    untimed and then once per timed request on it, and finally reads each worker's peak RSS. It gets its
    task runner with `.with_options(task_runner=...)`, so each cluster size is one flow run."""
    from prefect import flow
    from prefect.context import FlowRunContext

    from oxeo_flows.flows import extract_flow

    extract_body: Callable[..., dict[str, Any]] = extract_flow.fn  # type: ignore[attr-defined]

    @flow(name="bench-extract-scaling", validate_parameters=False)
    def bench_extract_scaling(
        n_workers: int, warmup: dict[str, Any], requests: list[dict[str, Any]]
    ) -> dict[str, Any]:
        ctx = FlowRunContext.get()
        assert ctx is not None and ctx.task_runner is not None
        t = time.perf_counter()
        client = ctx.task_runner.client  # type: ignore[attr-defined]  # DaskTaskRunner: starts the cluster
        client.wait_for_workers(n_workers)
        client.run(_warm_worker)
        startup = time.perf_counter() - t
        workers = len(client.scheduler_info()["workers"])
        t = time.perf_counter()
        extract_body(**warmup)
        warm = time.perf_counter() - t
        seconds, counts, cpu = [], [], []
        for params in requests:
            before = cpu_snapshot()
            t = time.perf_counter()
            counts.append(extract_body(**params))
            seconds.append(time.perf_counter() - t)
            cpu.append(cpu_snapshot().since(before))
            shutil.rmtree(Path(params["storage"]).parent, ignore_errors=True)
        rss = client.run(worker_peak_rss_mib)
        return {
            "startup_s": startup,
            "warmup_s": warm,
            "extract_s": seconds,
            "cpu": cpu,
            "workers": workers,
            "worker_peak_rss_mib": sorted(float(v) for v in rss.values()),
            "counts": counts,
        }

    return bench_extract_scaling


# ---------------------------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------------------------


def warmup_end(start: str, end: str) -> str:
    """The last day of a short warm-up request: one week from `start` (one sample date), at most `end`."""
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    return min(first + timedelta(days=6), last).isoformat()


def _steps(d: dict[str, float]) -> str:
    return " / ".join(f"{v:.2f}" for v in d.values())


def run_prefect(
    sample: Any, root: Path, repeats: int, start: str, end: str, warm_end: str, pool: bool = False
) -> tuple[Section, Section]:
    """Prefect overhead and rerun cost of the `water` flow (must run inside `prefect_api()`).

    Each round: the library calls, the flow with one task thread, the same flow again (rerun) and, with
    `pool`, the flow with the default thread-pool runner; every first run on a fresh storage + database.
    """
    from prefect.task_runners import ThreadPoolTaskRunner

    from oxeo_flows.extract import SOURCE_READS
    from oxeo_flows.flows import water_flow
    from oxeo_flows.flows.runners import make_task_runner
    from oxeo_flows.settings import load_settings

    water: Any = water_flow  # a Prefect Flow (typed as a plain callable by the decorator factory)
    serial = water.with_options(task_runner=ThreadPoolTaskRunner(max_workers=1))
    pooled = water.with_options(task_runner=make_task_runner(load_settings(task_runner="threads")))
    n = 0

    def params(s: str = start, e: str = end) -> FlowParams:
        nonlocal n
        n += 1
        return FlowParams(str(sample.aoi), str(sample.catalog), root / f"flow-{n:03d}", s, e)

    log(f"[prefect] warm-up: water flow and library calls on {start}..{warm_end} ...")
    library_water(params(start, warm_end))
    serial(**params(start, warm_end).kwargs())
    if pool:
        pooled(**params(start, warm_end).kwargs())

    rounds: list[dict[str, Any]] = []
    log(
        f"[prefect] water flow {start}..{end}: library / flow (1 task thread) + rerun"
        + (" / flow (thread pool)" if pool else "")
        + f", x{repeats} ..."
    )

    def timed(rec: dict[str, Any], key: str, fn: Callable[..., dict[str, Any]], *a: Any, **kw: Any) -> None:
        reads = SOURCE_READS.value
        before = cpu_snapshot()
        rec[f"{key}_counts"] = fn(*a, **kw)
        cpu = cpu_snapshot().since(before)
        rec[f"{key}_s"] = cpu.pop("wall_s")
        rec[f"{key}_cpu"] = cpu
        rec[f"{key}_source_reads"] = SOURCE_READS.value - reads

    for i in range(repeats):
        rec: dict[str, Any] = {}
        timed(rec, "library", library_water, params())
        p = params()
        timed(rec, "flow", serial, **p.kwargs())
        timed(rec, "rerun", serial, **p.kwargs())
        msg = (
            f"  round {i + 1}: library {rec['library_s']:.2f} s, flow {rec['flow_s']:.2f} s, "
            f"rerun {rec['rerun_s']:.2f} s"
        )
        if pool:
            timed(rec, "pool", pooled, **params().kwargs())
            msg += f", flow (thread pool) {rec['pool_s']:.2f} s"
        rounds.append(rec)
        log(msg)
        for w in root.glob("flow-*"):
            shutil.rmtree(w, ignore_errors=True)

    lib = median([r["library_s"] for r in rounds])
    flo = median([r["flow_s"] for r in rounds])
    rer = median([r["rerun_s"] for r in rounds])
    overhead = 100.0 * (flo - lib) / flo
    ratio = rer / flo
    rerun_reads = max(r["rerun_source_reads"] for r in rounds)
    first_reads = rounds[-1]["flow_source_reads"]
    c = rounds[-1]["flow_counts"]
    steps = WATER_STEPS

    def step_medians(key: str) -> dict[str, float]:
        return {s: median([float(r[key]["timings_s"][s]) for r in rounds]) for s in steps}

    lib_steps, flow_steps, rerun_steps = (
        step_medians(k) for k in ("library_counts", "flow_counts", "rerun_counts")
    )

    def cpu_median(key: str, part: str) -> float:
        return median([r[f"{key}_cpu"][part] for r in rounds])

    cpu = {k: {p: cpu_median(k, p) for p in ("cpu_main_s", "cpu_server_s")} for k in ("library", "flow")}
    n_tasks = int(rounds[-1]["library_counts"]["tasks"])
    paired = [100.0 * (r["flow_s"] - r["library_s"]) / r["flow_s"] for r in rounds]
    # Wall time outside the three timed steps: settings, request validation and database connection for
    # both; for the flow also flow-run set-up and teardown (API calls, heartbeat thread, report artifact).
    outside = {
        k: median([r[f"{k}_s"] - sum(r[f"{k}_counts"]["timings_s"].values()) for r in rounds])
        for k in ("library", "flow", "rerun")
    }

    def mean_delta(part: str | None) -> float:
        """Mean over rounds of flow minus library for one step (None: outside the steps); these add up."""

        def part_s(r: dict[str, Any], k: str) -> float:
            t = r[f"{k}_counts"]["timings_s"]
            return float(t[part]) if part else r[f"{k}_s"] - sum(t.values())

        return sum(part_s(r, "flow") - part_s(r, "library") for r in rounds) / len(rounds)

    decomposition = {part or "outside": mean_delta(part) for part in (None, *steps)}
    prefect = Section("prefect")
    prefect.rows = [
        Row("water flow vs library calls, s", fmt_s(flo), fmt_s(lib), f"{flo / lib:.3f}"),
        Row(
            "  Prefect overhead, % of flow wall time",
            f"{overhead:.1f} %",
            "-",
            "-",
            "<= 5 %",
            overhead <= 5.0,
        ),
        Row(
            "  CPU s, this process (flow vs library)",
            f"{cpu['flow']['cpu_main_s']:.2f}",
            f"{cpu['library']['cpu_main_s']:.2f}",
            f"{cpu['flow']['cpu_main_s'] / cpu['library']['cpu_main_s']:.3f}",
        ),
        Row(
            "  CPU s, Prefect API server (flow vs library)",
            f"{cpu['flow']['cpu_server_s']:.2f}",
            f"{cpu['library']['cpu_server_s']:.2f}",
        ),
        Row("  wall time outside the 3 steps, s", fmt_s(outside["flow"]), fmt_s(outside["library"])),
    ]
    prefect.notes = [
        f"prefect: sample data {start}..{end}, flow with 1 task thread (tasks in the library's order): "
        f"{n_tasks} tasks, {c.get('work_units')} work units, {c.get('slices_written')} slices, "
        f"{c.get('masks_written')} masks, {c.get('rows_written')} rows; per step (extract / predict / "
        f"timeseries, s): library {_steps(lib_steps)}, flow {_steps(flow_steps)}; overhead per round "
        f"{', '.join(f'{p:.1f}' for p in paired)} %; mean overhead "
        f"{sum(decomposition.values()):.2f} s = {decomposition['outside']:.2f} s outside the steps "
        f"{' '.join(f'{v:+.2f} s in {k}' for k, v in decomposition.items() if k != 'outside')}",
    ]
    prefect.result = {
        "range": [start, end],
        "repeats": repeats,
        "rounds": rounds,
        "median_library_s": lib,
        "median_flow_s": flo,
        "overhead_pct": overhead,
        "overhead_pct_per_round": paired,
        "step_medians_s": {"library": lib_steps, "flow": flow_steps},
        "cpu_medians_s": cpu,
        "tasks": n_tasks,
        "outside_steps_s": outside,
        "mean_overhead_decomposition_s": decomposition,
    }
    if pool:
        poo = median([r["pool_s"] for r in rounds])
        prefect.rows.append(
            Row("water flow (thread-pool runner) vs library, s", fmt_s(poo), fmt_s(lib), f"{poo / lib:.3f}")
        )
        prefect.result["median_flow_pool_s"] = poo
    rerun = Section("rerun")
    rerun.rows = [
        Row(
            "water flow rerun vs 1st run, s", fmt_s(rer), fmt_s(flo), f"{ratio:.3f}", "<= 0.10", ratio <= 0.10
        ),
        Row(
            "  rerun source reads (1st run: reference)",
            f"{rerun_reads}",
            f"{first_reads}",
            "-",
            "0",
            rerun_reads == 0,
        ),
    ]
    rerun.notes = [
        f"rerun: per step (extract / predict / timeseries, s) {_steps(rerun_steps)}, "
        f"{outside['rerun']:.2f} s outside the steps"
    ]
    rerun.result = {
        "median_first_s": flo,
        "median_rerun_s": rer,
        "ratio": ratio,
        "rerun_source_reads": [r["rerun_source_reads"] for r in rounds],
        "first_source_reads": [r["flow_source_reads"] for r in rounds],
        "step_medians_s": rerun_steps,
    }
    if rerun_reads:
        rerun.failures.append(f"water flow rerun read {rerun_reads} source assets")
    for r in rounds:
        if r["rerun_counts"].get("work_units") or r["rerun_counts"].get("slices_written"):
            rerun.failures.append(f"water flow rerun planned/wrote work: {r['rerun_counts']}")
        if r["flow_counts"].get("rows_written") != r["library_counts"]["rows_written"]:
            prefect.failures.append("flow and library wrote different numbers of time-series rows")
        if r["flow_counts"].get("slices_written") != r["library_counts"]["slices_written"]:
            prefect.failures.append("flow and library wrote different numbers of slices")
    return prefect, rerun


def run_scaling(sample: Any, root: Path, repeats: int, start: str, end: str, workers: int = 2) -> Section:
    """`extract` flow body on local Dask clusters of 1 and `workers` workers (inside `prefect_api()`)."""
    from oxeo_flows.flows.runners import make_task_runner
    from oxeo_flows.settings import load_settings

    bench = _scaling_flow()
    counts = (1, workers)
    runs: dict[int, dict[str, Any]] = {}
    log(
        f"[scaling] reference: the same extraction as library calls in this process, warm-up + x{repeats} ..."
    )

    def lib_params(tag: str, e: str = end) -> FlowParams:
        return FlowParams(str(sample.aoi), str(sample.catalog), root / f"lib-{tag}", start, e)

    library_water(lib_params("warm", warmup_end(start, end)), ("extract",))
    lib_s = []
    for i in range(repeats):
        t = time.perf_counter()
        library_water(lib_params(str(i)), ("extract",))
        lib_s.append(time.perf_counter() - t)
    shutil.rmtree(root, ignore_errors=True)
    lib = median(lib_s)
    log(f"[scaling] extract flow {start}..{end}, Dask 1 vs {workers} workers, warm-up + x{repeats} each ...")
    for n in counts:

        def p(tag: str, e: str = end, n: int = n) -> dict[str, Any]:
            return FlowParams(str(sample.aoi), str(sample.catalog), root / f"{n}-{tag}", start, e).kwargs()

        runner = make_task_runner(load_settings(task_runner="dask", dask_workers=n))
        t = time.perf_counter()
        rec = bench.with_options(task_runner=runner)(
            n_workers=n,
            warmup=p("warm", warmup_end(start, end)),
            requests=[p(str(i)) for i in range(repeats)],
        )
        rec["flow_s"] = time.perf_counter() - t
        runs[n] = rec
        log(
            f"  {n} worker(s): extract {', '.join(f'{v:.2f}' for v in rec['extract_s'])} s (cluster start "
            f"{rec['startup_s']:.2f} s, warm-up {rec['warmup_s']:.2f} s, whole flow {rec['flow_s']:.2f} s); "
            f"worker peak RSS {', '.join(f'{v:.0f}' for v in rec['worker_peak_rss_mib'])} MiB"
        )
        shutil.rmtree(root, ignore_errors=True)
    ext = {n: median(runs[n]["extract_s"]) for n in counts}
    rss = {n: max(runs[n]["worker_peak_rss_mib"]) for n in counts}
    speedup = ext[1] / ext[workers]
    c = runs[workers]["counts"][-1]
    section = Section("scaling")

    def busy(n: int) -> dict[str, float]:
        """Median CPU cores kept busy during the timed extractions, per process group."""
        out = {}
        for part in ("cpu_children_s", "cpu_main_s", "cpu_server_s"):
            out[part] = median(
                [c[part] / w for c, w in zip(runs[n]["cpu"], runs[n]["extract_s"], strict=True)]
            )
        out["total"] = sum(out.values())
        return out

    cores = {n: busy(n) for n in counts}
    section.rows = [
        Row(
            f"extract on Dask, {workers} vs 1 worker, s",
            fmt_s(ext[workers]),
            fmt_s(ext[1]),
            f"{speedup:.2f}x",
            ">= 1.6x",
            speedup >= 1.6,
        ),
        Row(
            "  Dask 1 worker vs library calls in-process, s",
            fmt_s(ext[1]),
            fmt_s(lib),
            f"{ext[1] / lib:.2f}",
        ),
        Row(f"  peak RSS per worker, {workers} vs 1, MiB", f"{rss[workers]:.0f}", f"{rss[1]:.0f}"),
        Row(
            f"  CPU cores busy (all processes), {workers} vs 1",
            f"{cores[workers]['total']:.2f}",
            f"{cores[1]['total']:.2f}",
            f"{cores[workers]['total'] / cores[1]['total']:.2f}x",
        ),
    ]
    section.notes = [
        f"scaling: extract flow body on the sample data {start}..{end}: {c.get('work_units')} work units, "
        f"{c.get('slices_written')} slices; Dask workers are processes with 1 thread each; cluster start-up "
        f"{runs[1]['startup_s']:.1f} s (1 worker) / {runs[workers]['startup_s']:.1f} s ({workers}) and one "
        "untimed 1-week extraction per cluster are excluded; CPU cores busy (workers / this process / "
        f"API server): 1 worker {_steps({k: v for k, v in cores[1].items() if k != 'total'})}, {workers} "
        f"workers {_steps({k: v for k, v in cores[workers].items() if k != 'total'})}",
    ]
    section.result = {
        "range": [start, end],
        "repeats": repeats,
        "workers": list(counts),
        "runs": {str(n): v for n, v in runs.items()},
        "median_extract_s": {str(n): v for n, v in ext.items()},
        "speedup": speedup,
        "library_s": lib_s,
        "median_library_s": lib,
        "max_worker_peak_rss_mib": {str(n): v for n, v in rss.items()},
        "cpu_cores_busy": {str(n): v for n, v in cores.items()},
    }
    for n in counts:
        if runs[n]["workers"] != n:
            section.failures.append(f"scaling: asked for {n} Dask workers, got {runs[n]['workers']}")
    return section


def quiet_prefect_console() -> None:
    """Only warnings from Prefect's console handlers (in case the environment set another level)."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for obj in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for h in getattr(obj, "handlers", []):
            if isinstance(h, PrefectConsoleHandler):
                h.setLevel(logging.WARNING)
