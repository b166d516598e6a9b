"""Crash safety of the archive: SIGKILL the extracting (and predicting) process mid-write, then prove that
no reader takes an incomplete slice (or mask) as complete and that rerunning the same request repairs the
archive bit-identically, reading only the missing days.

A driver script (no Prefect) plans every constellation, then runs `pipeline.extract_unit` per work unit
(mode `extract`) or `pipeline.predict_archive` per tile (mode `predict`), printing one line per unit /
tile. It runs as a zygote subprocess that imports the pipeline once and forks one child process per run
(saves ~2.5 s of imports per run). Two kinds of kill points:

- timed: the test SIGKILLs the run after its k-th printed line plus a seeded random delay of 0-300 ms,
  so kills land between and inside slice writes (wherever the writer thread happens to be);
- injected: the run SIGKILLs itself just before the n-th call of one zarr operation (store creation, the
  resize that appends a slot, the pixels, the `time` commit marker, a mask, a mask's `_done` flag): the
  narrow windows a timed kill rarely hits.
"""

from __future__ import annotations

import json
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
import json, os, signal, sys, traceback

from oxeo_flows import pipeline
from oxeo_flows.settings import load_settings


def kill_self_at(spec):
    """SIGKILL this process just before the n-th call of one zarr operation (spec "op[:array]:n")."""
    import zarr

    op, *name, n = spec.split(":")
    n = int(n)
    calls = [0]

    def hit(what):
        calls[0] += 1
        if calls[0] == n:
            print("SELFKILL", spec, what, flush=True)
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
    elif op == "write":  # "write:data:n", "write:time:n" (the commit marker), "write:_done:n" (a mask flag)
        (target,) = name
        orig_set = zarr.Array.__setitem__

        def setitem(self, key, value):
            if self.basename == target or (target.startswith("_") and self.basename.endswith(target)):
                hit(self.basename)
            return orig_set(self, key, value)

        zarr.Array.__setitem__ = setitem
    else:
        raise SystemExit(f"unknown kill op {op!r}")


def run(sample, storage, mode, start, end, consts, model, kill_at=None):
    print("PID", os.getpid(), flush=True)
    if kill_at:
        kill_self_at(kill_at)
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


def serve():
    """Import once, then fork one child per JSON argument line on stdin; report each child's exit."""
    print("READY", flush=True)
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                run(**json.loads(line))
            except BaseException:
                traceback.print_exc()
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        print("EXIT", pid, os.waitstatus_to_exitcode(status), flush=True)


if sys.argv[1:] == ["serve"]:
    serve()
else:  # one run: driver.py SAMPLE STORAGE MODE START END CONSTELLATIONS MODEL [KILL_AT]
    run(*sys.argv[1:])
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
    """The driver script as a zygote: it imports the pipeline once and forks one child per run, which the
    test SIGKILLs (or which kills itself). `close` ends the zygote and every child (one process group)."""

    def __init__(self, folder: Path, sample: Path) -> None:
        script = folder / "driver.py"
        script.write_text(DRIVER)
        self.sample = sample
        self.running: int | None = None  # pid of the run in progress
        self.stderr_path = folder / "driver.stderr"
        # no OXEO_* variables or ./oxeo.toml may leak into the driver's settings
        env = {k: v for k, v in os.environ.items() if not k.startswith("OXEO_")}
        with self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), "serve"],
                cwd=folder,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,
            )
        try:
            assert self._readline() == "READY", self.stderr()
        except BaseException:
            self.close()
            raise

    def stderr(self) -> str:
        return self.stderr_path.read_text()[-4000:]

    def _readline(self) -> str:
        assert self.proc.stdout is not None
        timer = threading.Timer(RUN_TIMEOUT_S, self._kill_group)  # a hung run must not hang the session
        timer.start()
        try:
            line = self.proc.stdout.readline()
        finally:
            timer.cancel()
        assert line, f"driver ended unexpectedly: {self.stderr()}"
        return line.rstrip("\n")

    def _start(self, storage: Path, mode: str, kill_at: str | None) -> tuple[int, list[str]]:
        if self.running is not None:  # left over by a failed test: end it before the next run
            os.kill(self.running, signal.SIGKILL)
            self._finish(self.running, [])
        args = {"sample": str(self.sample), "storage": str(storage), "mode": mode, "start": START}
        args |= {"end": END, "consts": CONSTELLATION, "model": MODEL, "kill_at": kill_at}
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(args) + "\n")
        self.proc.stdin.flush()
        line = self._readline()
        assert line.startswith("PID "), (line, self.stderr())
        self.running = int(line.split()[1])
        return self.running, []

    def _finish(self, pid: int, lines: list[str]) -> Run:
        while not (line := self._readline()).startswith("EXIT "):
            lines.append(line)
        _, child, code = line.split()
        assert int(child) == pid
        self.running = None
        return Run(lines, int(code))

    def run(self, storage: Path, mode: str, kill_at: str | None = None) -> Run:
        """Run to the end (or to its own injected kill)."""
        run = self._finish(*self._start(storage, mode, kill_at))
        if kill_at is None:
            assert run.returncode == 0 and run.lines[-1:] == ["DONE"], (run.lines, self.stderr())
        else:
            assert run.returncode == -signal.SIGKILL, (run.lines, self.stderr())
            assert any(ln.startswith("SELFKILL") for ln in run.lines)
        return run

    def kill_after(self, storage: Path, mode: str, k: int, delay_s: float) -> Run:
        """SIGKILL the run `delay_s` after its k-th UNIT/TILE line."""
        pid, lines = self._start(storage, mode, None)
        while sum(ln.startswith(("UNIT", "TILE")) for ln in lines) < k:
            line = self._readline()
            assert not line.startswith(("EXIT", "DONE")), (lines, self.stderr())  # ended before line k
            lines.append(line)
        time.sleep(delay_s)
        os.kill(pid, signal.SIGKILL)  # not yet reaped: the zygote reports EXIT only after waitpid
        run = self._finish(pid, lines)
        assert run.returncode == -signal.SIGKILL and "DONE" not in run.lines
        return run

    def _kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        """End the zygote (EOF on stdin); kill the whole group if it does not end at once."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        finally:
            self._kill_group()  # also any child left behind
            self.proc.wait(timeout=30)
            if self.proc.stdout is not None:
                self.proc.stdout.close()


@pytest.fixture(scope="module")
def driver(sample: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driver]:
    d = Driver(tmp_path_factory.mktemp("crash-driver"), sample)
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
def reference(driver: Driver, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    folder = tmp_path_factory.mktemp("crash-reference")
    extracted, predicted = folder / "extracted", folder / "predicted"
    run = driver.run(extracted, "extract")
    (plan,) = run.rows("PLAN")
    assert plan[3] == "0" and int(plan[4]) == run.written > 0
    digest = _archive_digest(extracted)
    shutil.copytree(extracted, predicted)
    assert driver.run(predicted, "predict").written == run.written
    model_key = run.rows("MODEL")[0][1]
    days = {}
    for path in stores_under(str(extracted)):
        rel = Path(path).relative_to(extracted).as_posix()
        tile_id, const = rel.split("/")
        arc = Archive(str(extracted), Tile.from_id(tile_id), CONSTELLATIONS[const.removesuffix(".zarr")])
        days[rel] = arc.committed()
    assert len(days) == 4 and sum(map(len, days.values())) == run.written
    return Reference(
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
        "write:data:2",  # a slot appended for the second slice, its pixels not written
        "write:time:3",  # pixels and metadata of a slice written, its commit marker time[i] not
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
    for kill_at in (
        "create:2",  # mask array created, its done-flag array not
        f"write:mask_{reference.model_key}:3",  # two masks done, the third about to be written
        "write:_done:3",  # a mask written, its done flag not
    ):
        driver.run(storage, "predict", kill_at)
        dones.append(check_masks(storage, reference))
    driver.kill_after(storage, "predict", 2, PREDICT_KILL_DELAY_S)
    dones.append(check_masks(storage, reference))
    assert dones == sorted(dones) and 0 < dones[-1] < reference.total
    run = driver.run(storage, "predict")
    assert run.written == reference.total - dones[-1]  # only the masks not marked done
    assert check_masks(storage, reference) == reference.total
    assert _archive_digest(storage) == reference.digest_masks
