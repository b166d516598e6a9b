"""Shared helpers of the benchmark sections: timing, the result table, machine description, memory."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

TABLE_HEADER = ("metric", "ours", "reference", "ratio", "target", "met?")
_T0 = time.perf_counter()


@dataclass(frozen=True)
class Row:
    """One line of the result table. `met` is None where the metric has no target."""

    metric: str
    ours: str
    reference: str = "-"
    ratio: str = "-"
    target: str = "-"
    met: bool | None = None

    def cells(self) -> tuple[str, ...]:
        met = "-" if self.met is None else ("yes" if self.met else "NO")
        return (self.metric, self.ours, self.reference, self.ratio, self.target, met)


@dataclass
class Section:
    """What a section hands back: table rows, its JSON record, failed correctness checks, footnotes."""

    name: str
    rows: list[Row] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def format_table(rows: Sequence[Row]) -> str:
    cells = [r.cells() for r in rows]
    widths = [max(len(c[i]) for c in (TABLE_HEADER, *cells)) for i in range(len(TABLE_HEADER))]

    def line(c: Sequence[str]) -> str:
        first = [c[0].ljust(widths[0])]
        rest = [v.rjust(w) for v, w in zip(c[1:], widths[1:], strict=True)]
        return " | ".join(first + rest).rstrip()

    sep = "-+-".join("-" * w for w in widths)
    return "\n".join([line(TABLE_HEADER), sep, *(line(c) for c in cells)])


def log(msg: str) -> None:
    """A progress line on stderr, prefixed with the seconds since the harness was imported."""
    print(f"{time.perf_counter() - _T0:6.1f} s  {msg}", file=sys.stderr, flush=True)


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, warmup: bool = True
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """One untimed warm-up call each (its result is returned), then `repeats` rounds, methods interleaved."""
    results = {name: fn() for name, fn in fns.items()} if warmup else {}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t)
            if not warmup:
                results[name] = out
    return times, results


def maxrss_mib(raw: int) -> float:
    """`ru_maxrss` in MiB (kilobytes on Linux, bytes on macOS)."""
    return raw / (1024.0 * 1024.0) if sys.platform == "darwin" else raw / 1024.0


def peak_rss_mib() -> float:
    return maxrss_mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def status_mib(field: str) -> float | None:
    """`VmRSS` (current) or `VmHWM` (peak) of this process's own address space from /proc, in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


@dataclass(frozen=True)
class CpuSnapshot:
    """Wall clock and CPU seconds (user + system) of this process, the Prefect API server and other
    child processes (e.g. Dask workers). Children that exit between two snapshots are not counted."""

    wall: float
    main: float
    server: float
    children: float

    def since(self, before: CpuSnapshot) -> dict[str, float]:
        return {
            "wall_s": self.wall - before.wall,
            "cpu_main_s": self.main - before.main,
            "cpu_server_s": self.server - before.server,
            "cpu_children_s": self.children - before.children,
        }


def cpu_snapshot() -> CpuSnapshot:
    import psutil  # a dependency of distributed

    me = psutil.Process()
    t = me.cpu_times()
    server = children = 0.0
    for child in me.children(recursive=True):
        try:
            ct = child.cpu_times()
            is_server = any("prefect.server" in part for part in child.cmdline())
        except psutil.Error:
            continue
        if is_server:
            server += ct.user + ct.system
        else:
            children += ct.user + ct.system
    return CpuSnapshot(time.perf_counter(), t.user + t.system, server, children)


def _ver(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "n/a"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "memory_gib": mem_gib,
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        **{
            dist: _ver(dist)
            for dist in (
                "rasterio",
                "odc-stac",
                "odc-geo",
                "zarr",
                "pystac",
                "prefect",
                "prefect-dask",
                "distributed",
                "scipy",
                "psutil",
            )
        },
    }


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.2f}"
