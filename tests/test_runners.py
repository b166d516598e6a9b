"""The same `water` flow on three task runners gives bit-identical archives and time series:
Prefect's thread pool, a local Dask cluster, and separately started `dask scheduler` + `dask worker`
processes reached by address (slow; every process is stopped by the test)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from oxeo_flows.stack import free_port
from tests.test_flow_e2e import _archive_digest, _cli, _export, _run

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture
def dask_address(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    bindir = Path(sys.executable).parent
    scheduler = subprocess.Popen(
        [
            str(bindir / "dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dashboard-address",
            ":0",
        ],
        stdout=(tmp_path / "scheduler.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    worker = subprocess.Popen(
        [
            str(bindir / "dask"),
            "worker",
            address,
            "--nworkers",
            "2",
            "--nthreads",
            "1",
            "--dashboard-address",
            ":0",
        ],
        stdout=(tmp_path / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
    )
    try:
        from distributed import Client

        deadline = time.monotonic() + 90
        while True:
            try:
                with Client(address, timeout=5) as client:
                    client.wait_for_workers(2, timeout=60)
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "scheduler.log").read_text()
                time.sleep(1)
        yield address
    finally:
        for proc in (worker, scheduler):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def test_threads_local_dask_and_remote_dask_are_bit_identical(
    sample: Path, tmp_path: Path, dask_address: str
) -> None:
    runs = {
        "threads": ["--runner", "threads"],
        "dask-local": ["--runner", "dask", "--dask-workers", "2"],
        "dask-address": ["--dask-address", dask_address],
    }
    digests, series = {}, {}
    for name, runner in runs.items():
        work = tmp_path / name
        args = _run(
            sample, work, "2024-01-01", "2024-03-31", "--param", "constellations=sentinel-2,landsat-9"
        )
        _cli([*args, *runner])
        digests[name] = _archive_digest(work / "archive")
        series[name] = _export(work)
    assert len(digests["threads"]) == 8 and len(series["threads"]) > 5  # 4 tiles x 2 constellations
    assert digests["dask-local"] == digests["threads"]
    assert digests["dask-address"] == digests["threads"]
    assert series["dask-local"] == series["threads"]
    assert series["dask-address"] == series["threads"]
