"""Crash safety of the archive: SIGKILL the extracting (and predicting) process mid-write, then prove that
no reader takes an incomplete slice (or mask) as complete and that rerunning the same request repairs the
archive bit-identically, reading only the missing days.

A driver script (no Prefect) runs the pipeline steps in a subprocess: plan every constellation, then
`pipeline.extract_unit` per work unit (mode `extract`) or `pipeline.predict_archive` per tile (mode
`predict`), printing one line per unit / tile. Two kinds of kill points:

- timed: the test SIGKILLs the driver after its k-th printed line plus a seeded random delay of 0-300 ms,
  so kills land between and inside slice writes (wherever the writer thread happens to be);
- injected: the driver SIGKILLs itself just before the n-th call of one zarr operation (store creation,
  the resize that appends a slot, the `time` commit marker, a mask's `_done` flag), which pins the
  narrow windows a timed kill rarely hits.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import zarr

from oxeo_flows.archive import NAT, Archive, open_archive, stores_under
from oxeo_flows.constellations import CONSTELLATIONS
from oxeo_flows.tiling import Tile
from tests.test_flow_e2e import _archive_digest

pytestmark = pytest.mark.slow

# Two months of the sample data: 4 tiles x 2 months = 8 work units, 20 slices (the whole half year
# takes ~4x as long, and every scenario below re-extracts the full request once).
START, END = "2024-03-01", "2024-04-30"
CONSTELLATION = "sentinel-2"
MODEL = "mndwi"
RUN_TIMEOUT_S = 180

DRIVER = r'''
import os, signal, sys

from oxeo_flows import pipeline
from oxeo_flows.settings import load_settings


def kill_self_at(spec):
    """SIGKILL this process just before the n-th call of one zarr operation (spec "op:n")."""
    import zarr

    op, n = spec.split(":")
    n = int(n)
    calls = [0]

    def hit(what):
        calls[0] += 1
        if calls[0] == n:
            print("SELFKILL", op, what, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    if op == "create":  # zarr.Group.create_array (a new store's arrays, a new mask's arrays)
        orig_create = zarr.Group.create_array

        def create_array(self, name, *a, **k):
            hit(name)
            return orig_create(self, name, *a, **k)

        zarr.Group.create_array = create_array
    elif op == "resize":  # growing the time-indexed arrays by one slot
        orig_resize = zarr.Array.resize

        def resize(self, *a, **k):
            hit(self.basename)
            return orig_resize(self, *a, **k)

        zarr.Array.resize = resize
    elif op in ("commit", "done"):  # the commit marker time[i], or a mask's done flag
        orig_set = zarr.Array.__setitem__

        def setitem(self, key, value):
            name = self.basename
            if (op == "commit" and name == "time") or (op == "done" and name.endswith("_done")):
                hit(name)
            return orig_set(self, key, value)

        zarr.Array.__setitem__ = setitem
    else:
        raise SystemExit(f"unknown kill op {op!r}")


def main():
    sample, storage, mode, start, end, consts, model = sys.argv[1:8]
    if len(sys.argv) > 8:
        kill_self_at(sys.argv[8])
    settings = load_settings(
        catalog=f"{sample}/catalog.json", storage=storage, database_url=f"sqlite:///{storage}.db"
    )
    req = pipeline.build_request(f"{sample}/aoi.geojson", start, end, consts, model, settings)
    print("MODEL", req.model.key, flush=True)
    for const in req.constellations:
        if mode == "extract":
            scenes = pipeline.search_scenes(req, const, settings)
            plan = pipeline.plan(req, const, scenes, settings)
            days = sum(len(u.days) for u in plan.units)
            print("PLAN", const.name, plan.days_offered, plan.days_present, days, flush=True)
            for unit in plan.units:
                s = pipeline.extract_unit(unit, storage)
                print("UNIT", unit.name, s.slices_written, s.slices_skipped, s.scenes_read, flush=True)
        else:
            for tile in req.tiles:
                n = pipeline.predict_archive(tile.id, const.name, req.model, storage)
                print("TILE", tile.id, const.name, n, flush=True)
    print("DONE", flush=True)


main()
'''


# ------------------------------------------------------------------------------------------ the driver
@dataclass
class Run:
    lines: list[str]
    returncode: int

    def rows(self, tag: str) -> list[list[str]]:
        return [ln.split() for ln in self.lines if ln.split()[:1] == [tag]]

    @property
    def written(self) -> int:
        """Slices (extract) or masks (predict) written by this run."""
        return sum(int(r[2]) for r in self.rows("UNIT")) + sum(int(r[3]) for r in self.rows("TILE"))


class Driver:
    """Starts the driver script; every process it starts is killed and reaped by `close`."""

    def __init__(self, folder: Path, sample: Path) -> None:
        self.script = folder / "driver.py"
        self.script.write_text(DRIVER)
        self.folder, self.sample = folder, sample
        self.procs: list[subprocess.Popen[str]] = []
        # no OXEO_* variables or ./oxeo.toml may leak into the driver's settings
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OXEO_")}

    def start(self, storage: Path, mode: str, kill_at: str | None = None) -> subprocess.Popen[str]:
        args = [sys.executable, str(self.script), str(self.sample), str(storage), mode, START, END]
        args += [CONSTELLATION, MODEL, *([kill_at] if kill_at else [])]
        err = open(self.folder / f"driver-{len(self.procs)}.stderr", "w")
        try:
            proc = subprocess.Popen(
                args,
                cwd=self.folder,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
            )
        finally:
            err.close()
        self.procs.append(proc)
        return proc

    def _stderr(self, proc: subprocess.Popen[str]) -> str:
        return (self.folder / f"driver-{self.procs.index(proc)}.stderr").read_text()[-3000:]

    def _finish(self, proc: subprocess.Popen[str], lines: list[str]) -> Run:
        assert proc.stdout is not None
        lines += proc.stdout.read().splitlines()
        proc.wait(timeout=RUN_TIMEOUT_S)
        return Run(lines, proc.returncode)

    def run(self, storage: Path, mode: str, kill_at: str | None = None) -> Run:
        """Run to the end (or to its own injected kill)."""
        proc = self.start(storage, mode, kill_at)
        with _watchdog(proc):
            run = self._finish(proc, [])
        if kill_at is None:
            assert run.returncode == 0 and run.lines[-1:] == ["DONE"], self._stderr(proc)
        else:
            assert run.returncode == -signal.SIGKILL, (run.lines, self._stderr(proc))
            assert any(ln.startswith("SELFKILL") for ln in run.lines)
        return run

    def kill_after(self, storage: Path, mode: str, k: int, delay_s: float) -> Run:
        """SIGKILL the driver `delay_s` after its k-th UNIT/TILE line."""
        proc = self.start(storage, mode)
        lines: list[str] = []
        assert proc.stdout is not None
        with _watchdog(proc):
            seen = 0
            while seen < k:
                line = proc.stdout.readline()
                assert line, (lines, self._stderr(proc))  # the driver ended before its k-th line
                lines.append(line.rstrip("\n"))
                seen += line.startswith(("UNIT", "TILE"))
            time.sleep(delay_s)
            os.kill(proc.pid, signal.SIGKILL)
            run = self._finish(proc, lines)
        assert run.returncode == -signal.SIGKILL and "DONE" not in run.lines
        return run

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=30)
            finally:
                if proc.stdout is not None:
                    proc.stdout.close()


class _watchdog:
    """Kill a hung driver so that a blocking read cannot hang the test session."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.timer = threading.Timer(RUN_TIMEOUT_S, proc.kill)

    def __enter__(self) -> None:
        self.timer.start()

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()


@pytest.fixture
def driver(tmp_path: Path, sample: Path) -> Iterator[Driver]:
    d = Driver(tmp_path, sample)
    try:
        yield d
    finally:
        d.close()


# ------------------------------------------------------------------------------------------ the reference
@dataclass(frozen=True)
class Reference:
    extracted: Path  # uninterrupted extraction, no masks
    predicted: Path  # the same, then uninterrupted prediction
    digest: dict[str, str]  # of `extracted`
    digest_masks: dict[str, str]  # of `predicted`
    model_key: str
    days: dict[str, dict[date, int]]  # store (relative path) -> solar day -> slot
    total: int  # slices in all

    def archive(self, storage: Path, rel: str) -> Archive:
        tile_id, const = rel.split("/")
        return Archive(str(storage), Tile.from_id(tile_id), CONSTELLATIONS[const.removesuffix(".zarr")])


@pytest.fixture(scope="module")
def reference(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    folder = tmp_path_factory.mktemp("crash-reference")
    d = Driver(folder, sample)
    try:
        extracted, predicted = folder / "extracted", folder / "predicted"
        run = d.run(extracted, "extract")
        (plan,) = run.rows("PLAN")
        assert plan[3] == "0" and int(plan[4]) == run.written > 0
        digest = _archive_digest(extracted)
        shutil.copytree(extracted, predicted)
        assert d.run(predicted, "predict").written == run.written
        model_key = run.rows("MODEL")[0][1]
    finally:
        d.close()
    days = {}
    for path in stores_under(str(extracted)):
        rel = Path(path).relative_to(extracted).as_posix()
        tile_id, const = rel.split("/")
        arc = Archive(str(extracted), Tile.from_id(tile_id), CONSTELLATIONS[const.removesuffix(".zarr")])
        days[rel] = arc.committed()
    assert len(days) == 4 and sum(map(len, days.values())) == run.written
    yield Reference(
        extracted,
        predicted,
        digest,
        _archive_digest(predicted),
        model_key,
        days,
        run.written,
    )


# ------------------------------------------------------------------------------------------ checks
def _time_lengths(path: str) -> set[int]:
    g = zarr.open_group(path, mode="r", zarr_format=3)
    return {
        int(arr.shape[0]) for _, arr in g.arrays() if (arr.metadata.dimension_names or ())[:1] == ("time",)
    }


def check_committed(storage: Path, ref: Reference) -> int:
    """Every visible slice is complete and equals the reference slice of its solar day; returns the count."""
    n = 0
    for rel, ref_days in ref.days.items():
        arc, ref_arc = ref.archive(storage, rel), ref.archive(ref.extracted, rel)
        committed = arc.committed()  # must not raise, whatever the crash left
        assert set(committed) <= set(ref_days), rel
        if not committed:
            continue
        g = zarr.open_group(arc.path, mode="r", zarr_format=3)
        times = np.asarray(g["time"][:])
        visible = times[times != NAT]
        # one visible slot per solar day, each with a unique, valid time
        assert len(visible) == len(committed) == len(np.unique(visible)), rel
        for day, slot in committed.items():
            ref_slot = ref_days[day]
            assert np.array_equal(arc.read_slice(slot), ref_arc.read_slice(ref_slot)), (rel, day)
            assert arc.slice_meta(slot) == ref_arc.slice_meta(ref_slot), (rel, day)
        if len(_time_lengths(arc.path)) == 1:  # a crash mid-resize leaves uneven lengths until a writer
            ds = open_archive(arc.path)  # repairs them; xarray cannot open such a store before that
            t = ds["time"].values
            assert not np.isnat(t).any() and len(np.unique(t)) == len(t) == len(committed), rel
            assert sorted(ds["solar_day"].values.astype("datetime64[D]").tolist()) == sorted(committed)
        n += len(committed)
    assert n < ref.total  # killed before the end: the archive must not look complete
    return n


def check_masks(storage: Path, ref: Reference) -> int:
    """Every mask marked done equals the uninterrupted run's mask of that solar day; returns the count."""
    n = 0
    for rel, ref_days in ref.days.items():
        arc, ref_arc = ref.archive(storage, rel), ref.archive(ref.predicted, rel)
        committed = arc.committed()
        assert committed == ref_days, rel  # predicting never touches the slices
        done = arc.mask_done(ref.model_key)
        for day, slot in committed.items():
            if done.get(slot):
                ref_mask = ref_arc.read_mask(ref.model_key, ref_days[day])
                assert np.array_equal(arc.read_mask(ref.model_key, slot), ref_mask), (rel, day)
                n += 1
    return n


def rerun_extract_and_compare(driver: Driver, storage: Path, ref: Reference, before: int) -> None:
    run = driver.run(storage, "extract")
    (plan,) = run.rows("PLAN")
    # planned exactly the missing days, and wrote each of them once
    assert int(plan[2]) == ref.total and int(plan[3]) == before and int(plan[4]) == ref.total - before
    assert before + run.written == ref.total
    assert _archive_digest(storage) == ref.digest


# ------------------------------------------------------------------------------------------ tests
_rng = random.Random(20240301)
TIMED_KILLS = [(k, round(_rng.uniform(0.0, 0.3), 3)) for k in (1, 2, 4, 6)]  # 8 units in all
PREDICT_KILL_DELAY_S = round(_rng.uniform(0.0, 0.3), 3)


@pytest.mark.parametrize(
    ("k", "delay_s"), TIMED_KILLS, ids=[f"unit{k}+{d * 1000:.0f}ms" for k, d in TIMED_KILLS]
)
def test_timed_kill_during_extraction_then_rerun_repairs(
    driver: Driver, reference: Reference, tmp_path: Path, k: int, delay_s: float
) -> None:
    storage = tmp_path / "archive"
    driver.kill_after(storage, "extract", k, delay_s)
    before = check_committed(storage, reference)
    assert before >= 1  # the k-th unit finished, so its slices are committed
    rerun_extract_and_compare(driver, storage, reference, before)


def test_injected_kills_during_extraction_then_rerun_repairs(
    driver: Driver, reference: Reference, tmp_path: Path
) -> None:
    """Repeated crashes on one storage at the narrow windows: each leaves a consistent archive."""
    storage = tmp_path / "archive"
    befores = []
    for kill_at in (
        "create:5",  # creating the first store: group and four of its arrays exist
        "commit:3",  # pixels and metadata of a slice written, its time[i] not
        "resize:4",  # appending a slot: some time-indexed arrays grown, the others not
    ):
        driver.run(storage, "extract", kill_at)
        befores.append(check_committed(storage, reference))
    assert befores == sorted(befores) and befores[-1] > 0
    rerun_extract_and_compare(driver, storage, reference, befores[-1])


def test_kills_during_prediction_then_rerun_completes_masks(
    driver: Driver, reference: Reference, tmp_path: Path
) -> None:
    storage = tmp_path / "archive"
    shutil.copytree(reference.extracted, storage)
    dones = [0]
    driver.run(storage, "predict", "create:2")  # mask array created, its done-flag array not
    dones.append(check_masks(storage, reference))
    driver.run(storage, "predict", "done:3")  # third mask written, its done flag not
    dones.append(check_masks(storage, reference))
    driver.kill_after(storage, "predict", 2, PREDICT_KILL_DELAY_S)
    dones.append(check_masks(storage, reference))
    assert dones == sorted(dones) and 0 < dones[-1] < reference.total
    run = driver.run(storage, "predict")
    assert run.written == reference.total - dones[-1]  # only the masks not marked done
    assert check_masks(storage, reference) == reference.total
    assert _archive_digest(storage) == reference.digest_masks
