"""python -m benchmarks.accuracy: water-model and cloud-mask accuracy on labelled synthetic scenes.

Prints Markdown tables and writes the full results as JSON (default `benchmarks/results/accuracy.json`,
git-ignored). Exit status 0, or 1 with `--fail-on-miss` when an issue target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from benchmarks.accuracy import format_report, n_observations, report_json, run
from benchmarks.accuracy.scenes import GROUPS

DEFAULT_JSON = Path(__file__).resolve().parent.parent / "results" / "accuracy.json"


def _version(pkg: str) -> str:
    try:
        return version(pkg)
    except PackageNotFoundError:
        return "?"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    ap.add_argument("--scenes", type=int, default=6, help="scenes per condition group (default 6)")
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"output JSON (default {DEFAULT_JSON})")
    ap.add_argument("--groups", default="", help="comma-separated subset of: " + ", ".join(GROUPS))
    ap.add_argument("--fail-on-miss", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = ap.parse_args(argv)
    if args.scenes < 1:
        ap.error("--scenes must be >= 1")
    groups = [g.strip() for g in args.groups.split(",") if g.strip()] or list(GROUPS)
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        ap.error(f"unknown group(s) {unknown}; expected some of {list(GROUPS)}")

    t0 = time.perf_counter()
    progress = None if args.quiet else (lambda msg: print(f"  {msg}", file=sys.stderr, flush=True))
    report = run(args.seed, args.scenes, groups, progress)
    elapsed = time.perf_counter() - t0
    n_obs = n_observations(report)
    print(
        f"# Accuracy report: seed {args.seed}, {args.scenes} scenes x {len(groups)} groups x "
        f"{len(report.constellations)} constellations = {n_obs} observations, {elapsed:.1f} s\n"
    )
    print("models: " + ", ".join(f"{n} ({k})" for n, k in report.models.items()) + "\n")
    print(format_report(report))

    meta = {
        "command": "python -m benchmarks.accuracy " + " ".join(sys.argv[1:] if argv is None else argv),
        "runtime_s": round(elapsed, 2),
        "observations": n_obs,
        "machine": {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": _version("numpy"),
            "scipy": _version("scipy"),
            "oxeo_flows": _version("oxeo-flows"),
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report_json(report, meta), indent=1) + "\n")
    print(f"results: {args.json}")
    missed = [t for t in report.targets if not t["met"]]
    return 1 if (missed and args.fail_on_miss) else 0


if __name__ == "__main__":
    sys.exit(main())
