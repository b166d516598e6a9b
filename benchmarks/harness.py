"""python -m benchmarks: extraction throughput (ours vs odc-stac vs raw rasterio decoding), the extract step
with its archive write, Prefect overhead and rerun cost of the `water` flow, water-model throughput, Dask
scaling and the peak memory of a long extraction.

Everything runs in one process on synthetic local data (no network), except the memory section's child
process and the Dask workers: see benchmarks/README.md for what each number means. Exit status 1 when a
correctness check fails (results are still printed and saved).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common import Section, format_table, log, machine, peak_rss_mib
from benchmarks.flows import configure_prefect_env

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
SECTIONS = ("extract", "models", "memory", "prefect", "rerun", "scaling")
ALIASES = {"extract-write": "extract"}


def _positive(v: str) -> int:
    n = int(v)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {v}")
    return n


def _size(v: str) -> int:
    n = int(v)
    if n < 64 or n % 2:
        raise argparse.ArgumentTypeError(f"expected an even number of 10 m pixels >= 64, got {v}")
    return n


def _sections(v: str) -> tuple[str, ...]:
    names = [ALIASES.get(s.strip(), s.strip()) for s in v.split(",") if s.strip()]
    bad = sorted(set(names) - set(SECTIONS))
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(bad) or '(none)'}; expected a comma-separated subset of "
            f"{', '.join(SECTIONS)} (extract-write = extract)"
        )
    return tuple(s for s in SECTIONS if s in names)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument(
        "--only",
        type=_sections,
        default=SECTIONS,
        help=f"comma-separated sections to run (default: all): {','.join(SECTIONS)}; prefect and rerun "
        "share their flow runs",
    )
    p.add_argument("--repeats", type=_positive, default=5, help="timed repeats of extract/models (median)")
    p.add_argument("--size", type=_size, default=2048, help="scene side in 10 m pixels (real S2: 10980)")
    p.add_argument("--dates", type=_positive, default=6, help="number of scenes / solar days (extract)")
    p.add_argument("--flow-repeats", type=_positive, default=3, help="rounds of the prefect/rerun section")
    p.add_argument("--flow-start", default="2024-01-01", help="first day of the sample-data flow requests")
    p.add_argument("--flow-end", default="2024-03-31", help="last day of the sample-data flow requests")
    p.add_argument(
        "--flow-pool",
        action="store_true",
        help="also time the water flow with the default thread-pool task runner in each round",
    )
    p.add_argument("--scaling-repeats", type=_positive, default=2, help="timed extractions per cluster size")
    p.add_argument(
        "--scaling-end",
        default="2024-02-29",
        help="last day of the scaling section's request (from --flow-start)",
    )
    p.add_argument("--workers", type=_positive, default=2, help="Dask workers compared with 1 (scaling)")
    p.add_argument("--dates-memory", type=_positive, default=100, help="dates extracted by the memory child")
    p.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_prefect_env()  # before anything imports Prefect
    started = datetime.now(UTC)
    t_start = time.perf_counter()
    mach = machine()
    sections: list[Section] = []

    def timed(fn: Any, *a: Any) -> Any:
        t = time.perf_counter()
        out = fn(*a)
        for s in out if isinstance(out, tuple) else (out,):
            s.seconds = time.perf_counter() - t
            sections.append(s)
        return out

    with tempfile.TemporaryDirectory(prefix="oxeo-bench-") as tmp:
        root = Path(tmp)
        if "extract" in args.only:
            from benchmarks import extraction

            timed(extraction.run, root / "extract", args.size, args.dates, args.repeats)
        if "models" in args.only:
            from benchmarks import models

            timed(models.run, args.repeats)
        flow_sections = {"prefect", "rerun", "scaling"} & set(args.only)
        memory_child = None
        if "memory" in args.only:
            from benchmarks import memory

            t = time.perf_counter()
            memory_child = memory.start(root / "memory", args.dates_memory)
            if not flow_sections:
                timed(lambda: memory.finish(memory_child))
        if flow_sections:
            from benchmarks import flows
            from oxeo_flows.sample_data import write_sample_data

            log("[prefect] writing the sample data ...")
            sample = write_sample_data(root / "sample")
            # The API server's start-up (~30 s here: database migrations) runs beside the memory child:
            # it does not change the child's peak RSS, only its throughput (noted in its footnote).
            log("[prefect] starting the ephemeral Prefect API (temporary database) ...")
            with flows.prefect_api() as startup:
                log(
                    f"  API server started in {startup['server_start_s']:.1f} s, first trivial flow "
                    f"{startup['first_flow_s']:.1f} s"
                )
                flows.quiet_prefect_console()
                if memory_child is not None:
                    memory_child.overlapped = "alongside the Prefect API server start-up"
                    log("[memory] waiting for the child process ...")
                    section = memory.finish(memory_child)
                    section.seconds = time.perf_counter() - t
                    sections.append(section)
                if {"prefect", "rerun"} & flow_sections:
                    prefect, rerun = timed(
                        flows.run_prefect,
                        sample,
                        root / "flows",
                        args.flow_repeats,
                        args.flow_start,
                        args.flow_end,
                        flows.warmup_end(args.flow_start, args.flow_end),
                        args.flow_pool,
                    )
                    prefect.result["startup_s"] = startup
                if "scaling" in flow_sections:
                    timed(
                        flows.run_scaling,
                        sample,
                        root / "scaling",
                        args.scaling_repeats,
                        args.flow_start,
                        args.scaling_end,
                        args.workers,
                    )
            log("[prefect] Prefect API stopped")
    log("temporary data removed")

    total = time.perf_counter() - t_start
    rows = [r for s in sections for r in s.rows]
    text = format_table(rows)
    notes = [n for s in sections for n in s.notes]
    failures = [f for s in sections for f in s.failures]
    print(text)
    print()
    for n in notes:
        print(f"- {n}")
    print(
        f"\nmachine: {mach['cpu']}, {mach['cpus_usable']} usable CPUs, {mach['memory_gib']} GiB; "
        f"Python {mach['python']}, numpy {mach['numpy']}, rasterio {mach['rasterio']}, zarr {mach['zarr']}, "
        f"prefect {mach['prefect']}, distributed {mach['distributed']}; load average at start "
        f"{', '.join(f'{v:.2f}' for v in mach['load_average_at_start'] or [])}"
    )
    print(
        "sections (s): "
        + ", ".join(f"{s.name} {s.seconds:.0f}" for s in sections if s.name != "rerun")
        + f"; total {total:.0f} s; peak RSS of this process {peak_rss_mib():.0f} MiB"
    )
    result = {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks", *(argv or sys.argv[1:])]),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": mach,
        "total_s": total,
        "peak_rss_mib": peak_rss_mib(),
        "sections": {s.name: {"seconds": s.seconds, **s.result} for s in sections},
        "table": text,
        "notes": notes,
        "failures": failures,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"results: {args.json}")
    for f in failures:
        print(f"CHECK FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0
