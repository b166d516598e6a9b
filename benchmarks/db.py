"""python -m benchmarks.db: the time-series query of one AOI with 10,000 rows, on SQLite and PostgreSQL.

Fills a fresh database per backend with `--aois` AOIs x `--rows` observations each (the queried AOI has
`--rows` of them, the others make the table realistic), then times, `--repeats` times each:
- `store.query_observations(engine, [aoi], columns=TIMESERIES_FIELDS)`: all rows of that AOI, ordered,
  as dicts (what the API, exports and plots call);
- the same SELECT's execution and fetch alone (SQLAlchemy Core, tuples).
Prints medians and 95th percentiles. PostgreSQL: a throw-away server from tests/pgserver.py (Debian's
postgresql-15 + postgresql-15-postgis-3); reported as not run when it cannot start. Target: median < 50 ms.
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
from oxeo_flows.observation import Observation

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


def time_query(url: str, repeats: int, expected: int) -> tuple[list[float], list[float]]:
    """Milliseconds of (the library call returning dict rows, the SQL execution + fetch alone)."""
    engine = store.connect(url)
    cols = store.TIMESERIES_FIELDS
    q = store.observations_query(["aoi-000"]).with_only_columns(*(store.observation_table.c[c] for c in cols))
    store.query_observations(engine, ["aoi-000"], columns=cols)  # warm the pool and the caches
    lib, sql = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        rows = store.query_observations(engine, ["aoi-000"], columns=cols)
        lib.append((time.perf_counter() - t0) * 1000)
        assert len(rows) == expected
        t0 = time.perf_counter()
        with engine.connect() as conn:
            n = len(conn.execute(q).fetchall())
        sql.append((time.perf_counter() - t0) * 1000)
        assert n == expected
    engine.dispose()
    return lib, sql


def server_ms(url: str, repeats: int) -> list[float]:
    """PostgreSQL: the server's own execution time of the SELECT (EXPLAIN ANALYZE), without the transfer
    and the Python objects; SQLite (in-process): the plain sqlite3 module's execute + fetchall."""
    engine = store.connect(url)
    cols = store.TIMESERIES_FIELDS
    q = store.observations_query(["aoi-000"]).with_only_columns(*(store.observation_table.c[c] for c in cols))
    sql = str(q.compile(engine, compile_kwargs={"literal_binds": True}))
    out = []
    with engine.connect() as conn:
        for _ in range(repeats):
            if engine.dialect.name == "postgresql":
                plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).scalar_one()
                out.append(float(plan[0]["Execution Time"]))
            else:
                raw = conn.connection.dbapi_connection
                assert raw is not None
                t0 = time.perf_counter()
                raw.execute(sql).fetchall()
                out.append((time.perf_counter() - t0) * 1000)
    engine.dispose()
    return out


def _p95(ms: list[float]) -> float:
    return sorted(ms)[max(0, int(round(0.95 * len(ms))) - 1)]


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
                print(
                    f"{name}: {args.aois * args.rows} rows in {time.perf_counter() - t0:.1f} s",
                    file=sys.stderr,
                )
                lib, sql = time_query(url, args.repeats, args.rows)
                native = server_ms(url, args.repeats)
                where = "server execution" if name == "postgresql" else "sqlite3 module"
                for what, ms in (("rows as dicts", lib), ("SQL + fetch", sql), (where, native)):
                    med = statistics.median(ms)
                    met = "yes" if med < TARGET_MS else "NO"
                    results.append((f"{name}: {what}", f"{med:.1f}", f"{_p95(ms):.1f}", met))
        finally:
            if server is not None:
                server.stop()
    print(
        f"time series of one AOI with {args.rows} rows ({args.aois * args.rows} rows in the table), "
        f"{args.repeats} repeats; target median < {TARGET_MS:.0f} ms"
    )
    print(f"{'backend: measured':<28} {'median ms':>10} {'p95 ms':>8}  met?")
    for name, med_s, p95_s, met_s in results:
        print(f"{name:<28} {med_s:>10} {p95_s:>8}  {met_s}")
    return 0 if all(r[3] == "yes" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
