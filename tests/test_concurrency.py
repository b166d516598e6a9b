"""Two `water` runs at the same time, over overlapping AOIs and dates, into one archive and one database.

Each run is a separate `oxeo-flows run water` process (own ephemeral Prefect). The result must equal the
same two runs made one after the other: no lost or duplicated archive slice, no duplicated time-series
row, on SQLite and on PostgreSQL. The test also proves the runs really overlapped in time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from shapely.geometry import box, mapping, shape

from oxeo_flows import store
from oxeo_flows.integrity import check_all, problems
from tests.test_flow_e2e import _archive_digest

pytestmark = pytest.mark.slow

RUN_A = ("2024-01-01", "2024-04-30")
RUN_B = ("2024-02-01", "2024-06-30")


def _aoi_b(sample: Path, tmp: Path) -> Path:
    """The sample lake again plus an AOI over its western half: overlaps run A's AOI and tiles."""
    fc = json.loads((sample / "aoi.geojson").read_text())
    lake = fc["features"][0]
    x0, y0, x1, y1 = shape(lake["geometry"]).bounds
    west = {
        "type": "Feature",
        "id": "west-half",
        "properties": {"name": "West half"},
        "geometry": mapping(box(x0, y0, (x0 + x1) / 2, y1)),
    }
    path = tmp / "aoi_b.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [lake, west]}))
    return path


def _cmd(sample: Path, aoi: Path, dates: tuple[str, str], storage: Path, db: str) -> list[str]:
    params = {
        "aoi": str(aoi),
        "catalog": str(sample / "catalog.json"),
        "storage": str(storage),
        "database_url": db,
        "start_date": dates[0],
        "end_date": dates[1],
        "constellations": "sentinel-2,landsat-8",
    }
    return [sys.executable, "-m", "oxeo_flows.cli", "run", "water"] + [
        a for k, v in params.items() for a in ("--param", f"{k}={v}")
    ]


def _env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "OXEO_"))}
    env.update(PREFECT_HOME=str(home), DO_NOT_TRACK="1", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
    return env


def _run_together(cmds: list[list[str]], tmp: Path) -> None:
    procs = [
        subprocess.Popen(
            c, env=_env(tmp / f"prefect-{i}"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for i, c in enumerate(cmds)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]


def _rows(db: str) -> list[tuple[Any, ...]]:
    """Observation rows without the columns that differ between runs (ids, run, time computed)."""
    engine = store.connect(db)
    rows = store.query_observations(engine)
    engine.dispose()
    drop = {"id", "model_run_id", "computed_at"}
    return [
        tuple((k, json.dumps(v, default=str)) for k, v in sorted(r.items()) if k not in drop) for r in rows
    ]


@pytest.fixture(scope="module")
def reference(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], list[Any]]:
    """The two runs one after the other (SQLite)."""
    tmp = tmp_path_factory.mktemp("sequential")
    db = f"sqlite:///{tmp / 'oxeo.db'}"
    aoi_b = _aoi_b(sample, tmp)
    _run_together([_cmd(sample, sample / "aoi.geojson", RUN_A, tmp / "archive", db)], tmp)
    _run_together([_cmd(sample, aoi_b, RUN_B, tmp / "archive", db)], tmp)
    return _archive_digest(tmp / "archive"), _rows(db)


def test_concurrent_overlapping_runs_equal_sequential_runs(
    sample: Path, tmp_path: Path, db_url: str, reference: tuple[dict[str, str], list[Any]]
) -> None:
    storage = tmp_path / "archive"
    aoi_b = _aoi_b(sample, tmp_path)
    _run_together(
        [
            _cmd(sample, sample / "aoi.geojson", RUN_A, storage, db_url),
            _cmd(sample, aoi_b, RUN_B, storage, db_url),
        ],
        tmp_path,
    )
    digest, rows = reference
    assert _archive_digest(storage) == digest  # no slice lost or duplicated, bit-identical
    got = _rows(db_url)
    assert len(got) == len(set(got))  # no duplicated row
    assert got == rows
    engine = store.connect(db_url)
    assert problems(check_all(str(storage), engine)) == []
    with engine.connect() as conn:
        runs = conn.execute(
            sa.select(
                store.model_run_table.c.started_at,
                store.model_run_table.c.finished_at,
                store.model_run_table.c.state,
            )
        ).all()
    engine.dispose()
    assert [r.state for r in runs] == ["COMPLETED", "COMPLETED"]
    (s1, f1, _), (s2, f2, _) = runs
    assert s1 < f2 and s2 < f1, "the two runs did not overlap in time"
