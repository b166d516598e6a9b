"""python -m benchmarks.db: the time-series query of one AOI with 10,000 rows, on SQLite and PostgreSQL.

Fills a fresh database per backend with `--aois` AOIs x `--rows` observations each (the queried AOI has
`--rows` of them, the others make the table realistic), then times `store.query_observations(engine,
[aoi])` (all rows of that AOI, ordered, as dicts) `--repeats` times and prints the median and the 95th
percentile. PostgreSQL: a throw-away server from tests/pgserver.py (Debian's postgresql-15 +
postgresql-15-postgis-3); skipped with a note when it cannot start. Target: median < 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from shapely.geometry import box

from oxeo_flows import store
from oxeo_flows.aoi import AOI
from oxeo_flows.timeseries import Observation

TARGET_MS = 50.0


def fill(url: str, aois: int, rows: int) -> None:
    engine = store.connect(url)
    store.upsert_aois(engine, [AOI(f"aoi-{i:03d}", f"AOI {i}", box(i, 0, i + 0.1, 0.1)) for i in range(aois)])
    t0 = datetime(2015, 7, 1, 10, 0)
    for i in range(aois):
        batch = [
            Observation(
                f"aoi-{i:03d}", t0 + timedelta(hours=6 * k), (t0 + timedelta(hours=6 * k)).date(),
                "sentinel-2" if k % 3 else "landsat-8", "mndwi-v1", 1e6 + k, 10_000 + k, 90_000, 5_000,
                5_000, 100_000, 0.9, 0.05, True, 10.0, ["33_T_10000_49_498"],
            )
            for k in range(rows)
        ]  # fmt: skip
        store.upsert_observations(engine, batch, None)
    engine.dispose()


def time_query(url: str, repeats: int, expected: int) -> list[float]:
    engine = store.connect(url)
    store.query_observations(engine, ["aoi-000"])  # warm the pool and the caches
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = store.query_observations(engine, ["aoi-000"])
        out.append((time.perf_counter() - t0) * 1000)
        assert len(rows) == expected
    engine.dispose()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.db", description=__doc__)
    p.add_argument("--rows", type=int, default=10_000, help="observations of the queried AOI")
    p.add_argument("--aois", type=int, default=5, help="AOIs, each with --rows observations")
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args(argv)
    results: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        backends: list[tuple[str, str]] = [("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}")]
        server = None
        try:
            from tests import pgserver

            server = pgserver.start()
            backends.append(("postgresql", server.url))
        except Exception as exc:  # report, do not hide: the table says why PostgreSQL is missing
            results.append(("postgresql", "-", "-", f"not run: {exc}"))
        try:
            for name, url in backends:
                t0 = time.perf_counter()
                fill(url, args.aois, args.rows)
                fill_s = time.perf_counter() - t0
                ms = time_query(url, args.repeats, args.rows)
                med = statistics.median(ms)
                p95 = sorted(ms)[max(0, int(round(0.95 * len(ms))) - 1)]
                met = "yes" if med < TARGET_MS else "NO"
                results.append(
                    (
                        name,
                        f"{med:.1f}",
                        f"{p95:.1f}",
                        f"{met} (fill {args.aois * args.rows} rows: {fill_s:.1f} s)",
                    )
                )
        finally:
            if server is not None:
                server.stop()
    print(f"time series of one AOI with {args.rows} rows ({args.aois * args.rows} rows in the table), "
          f"{args.repeats} repeats; target median < {TARGET_MS:.0f} ms")  # fmt: skip
    print(f"{'backend':<12} {'median ms':>10} {'p95 ms':>8}  met?")
    for name, med_s, p95_s, met_s in results:
        print(f"{name:<12} {med_s:>10} {p95_s:>8}  {met_s}")
    return 0 if all(r[3].startswith("yes") for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
