"""`memory` section: peak resident memory of one process that extracts one 10 km tile at 10 m for many
dates (`pipeline.extract_unit`, streaming into the zarr archive).

The parent writes one set of Sentinel-2-like COGs covering tile `33_T_10000_70_509` exactly (7 reflectance
bands: 4 x 1000 x 1000 px at 10 m and 3 x 500 x 500 px at 20 m, plus SCL at 20 m) and one STAC item per
date, all pointing at the same files (distinct ids and dates keep generation cheap). A fresh child
process (`python -m benchmarks.memory CHILD ...`) imports what extraction needs, records its peak RSS so
far as the baseline, parses the items, plans one work unit (window `year`) and extracts it. Reported: the
child's peak RSS minus that baseline (`VmHWM`, see `_peak_mib`), plus an RSS trace sampled every 50 ms
to show (no) growth with the number of dates.

Module-level imports are the standard library and `benchmarks.common` (numpy) only, so the child's
baseline is essentially its own extraction imports.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import Row, Section, log, peak_rss_mib, status_mib

TARGET_MIB = 512.0
SAMPLE_S = 0.05
T0 = datetime(2024, 1, 1, 9, 50, 31, tzinfo=UTC)


def _peak_mib() -> float:
    """Peak RSS of this process's own address space.

    `ru_maxrss` of a child also holds the high-water mark of the address space it was exec'ed from: Linux
    keeps the larger of the two across `execve`, and `subprocess` forks (vforks) the parent, so the child
    would report at least the parent's peak. `VmHWM` is reset by exec; `ru_maxrss` is the fallback.
    """
    hwm = status_mib("VmHWM")
    return peak_rss_mib() if hwm is None else hwm


# ---------------------------------------------------------------------------------------------------------
# Parent: data and items
# ---------------------------------------------------------------------------------------------------------


def write_data(root: Path, dates: int) -> tuple[Path, dict[str, Any]]:
    """COGs for one tile and `dates` STAC items (JSON list) that reuse them; returns the items file."""
    import pystac
    import rasterio
    from affine import Affine
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

    from benchmarks.extraction import COG_OPTIONS, SRC_EPSG, TILE, _footprint_lonlat
    from benchmarks.models import TWENTY_M, make_slice
    from oxeo_flows.constellations import CONSTELLATIONS

    t_start = time.perf_counter()
    const = CONSTELLATIONS["sentinel-2"]
    data, _, _ = make_slice(seed=11)
    x0, y0 = float(TILE.bounds[0]), float(TILE.bounds[3])
    cogs = root / "cogs"
    cogs.mkdir(parents=True)
    assets: dict[str, pystac.Asset] = {}
    nbytes = 0
    for i, band in enumerate(const.bands):
        res = 20 if band in TWENTY_M else 10
        arr = data[i, :: res // 10, :: res // 10]
        dtype = "uint8" if band == const.qa_band else "uint16"
        path = cogs / f"{band}.tif"
        profile = {
            "width": arr.shape[1],
            "height": arr.shape[0],
            "count": 1,
            "dtype": dtype,
            "crs": f"EPSG:{SRC_EPSG}",
            "nodata": 0,
            "transform": Affine(res, 0.0, x0, 0.0, -res, y0),
        }
        with rasterio.open(path, "w", **profile, **COG_OPTIONS) as dst:
            dst.write(arr.astype(dtype), 1)
        nbytes += path.stat().st_size
        asset = pystac.Asset(str(path), media_type=pystac.MediaType.COG, roles=["data"])
        proj = ProjectionExtension.ext(asset)
        proj.shape = [int(arr.shape[0]), int(arr.shape[1])]
        proj.transform = [float(res), 0.0, x0, 0.0, -float(res), y0]
        if band == const.qa_band:
            rb = RasterBand.create(nodata=0, data_type=DataType.UINT8, spatial_resolution=res)
        else:
            rb = RasterBand.create(
                nodata=0, data_type=DataType.UINT16, scale=1e-4, offset=-0.1, spatial_resolution=res
            )
        RasterExtension.ext(asset).bands = [rb]
        assets[band] = asset
    geometry = _footprint_lonlat(x0, y0, float(TILE.size_m))
    bbox = [min(c[0] for c in geometry["coordinates"][0]), min(c[1] for c in geometry["coordinates"][0])]
    bbox += [max(c[0] for c in geometry["coordinates"][0]), max(c[1] for c in geometry["coordinates"][0])]
    items = []
    for d in range(dates):
        when = T0 + timedelta(days=d)
        item = pystac.Item(
            f"S2A_33TXL_{when:%Y%m%d}_0_L2A",
            geometry,
            bbox,
            when,
            {
                "platform": "sentinel-2a",
                "constellation": "sentinel-2",
                "s2:processing_baseline": "05.10",
                "earthsearch:boa_offset_applied": False,
            },
            collection="sentinel-2-l2a",
        )
        ProjectionExtension.add_to(item)
        RasterExtension.add_to(item)
        ProjectionExtension.ext(item).code = f"EPSG:{SRC_EPSG}"
        for band, asset in assets.items():
            item.add_asset(band, asset.clone())
        items.append(item.to_dict(include_self_link=False))
    items_file = root / "items.json"
    items_file.write_text(json.dumps(items))
    info = {
        "cog_bytes": nbytes,
        "cogs": sorted(p.name for p in cogs.iterdir()),
        "seconds": time.perf_counter() - t_start,
    }
    return items_file, info


@dataclass
class Running:
    """A started memory child: `finish` waits for it and builds the section."""

    proc: subprocess.Popen[str]
    out_file: Path
    dates: int
    info: dict[str, Any]
    started: float
    overlapped: str | None = None  # what else ran at the same time, if anything


def start(root: Path, dates: int) -> Running:
    """Generate the data and start the child process (returns at once)."""
    log(f"[memory] writing one tile of COGs and {dates} items; child process extracts {dates} dates ...")
    items_file, info = write_data(root, dates)
    out_file = root / "child.json"
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.memory",
        "CHILD",
        str(items_file),
        str(root / "store"),
        str(out_file),
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,  # `-m benchmarks.memory` from the repository root
    )
    return Running(proc, out_file, dates, info, time.perf_counter())


def run(root: Path, dates: int) -> Section:
    return finish(start(root, dates))


def finish(running: Running) -> Section:
    """Wait for the child; report its peak RSS over its post-import baseline."""
    section = Section("memory")
    output, _ = running.proc.communicate()
    wall = time.perf_counter() - running.started
    out_file, dates, info = running.out_file, running.dates, running.info
    if running.proc.returncode != 0 or not out_file.exists():
        section.failures.append(f"memory child failed ({running.proc.returncode}): {output[-2000:]}")
        section.rows = [Row("memory: child failed", "-", target=f"< {TARGET_MIB:.0f}", met=False)]
        return section
    child = json.loads(out_file.read_text())
    delta = child["peak_rss_mib"] - child["baseline_rss_mib"]
    bands = child["bands"]
    px = child["slices_written"] * len(bands) * child["tile_px"]
    section.rows = [
        Row(
            f"memory: peak RSS over baseline, {child['slices_written']} dates, MiB",
            f"{delta:.0f}",
            f"{child['baseline_rss_mib']:.0f}",
            "-",
            f"< {TARGET_MIB:.0f}",
            delta < TARGET_MIB,
        ),
    ]
    trace = child["rss_trace_mib"]
    q = max(1, len(trace) // 10)
    rate = px / child["extract_s"] / 1e6
    also = f", {running.overlapped}" if running.overlapped else ""
    first, last = sum(trace[:q]) / q, sum(trace[-q:]) / q
    section.notes = [
        f"memory: tile {child['tile']} ({child['tile_px'] / 1e6:.1f} Mpx at 10 m), {len(bands)} bands, "
        f"{child['slices_written']} slices in {child['extract_s']:.1f} s ({rate:.1f} Mpx/s{also}); "
        f"child peak RSS {child['peak_rss_mib']:.0f} MiB, baseline after imports "
        f"{child['baseline_rss_mib']:.0f} MiB (reference column); mean RSS in the first / last tenth "
        f"of the run {first:.0f} / {last:.0f} MiB; store {child['store_bytes'] / 2**20:.0f} MiB",
    ]
    section.result = {
        "dates": dates,
        "target_mib": TARGET_MIB,
        "peak_over_baseline_mib": delta,
        "child": child,
        "child_wall_s": wall,
        "overlapped_with": running.overlapped,
        "data": info,
    }
    if child["slices_written"] != dates:
        section.failures.append(f"memory: wrote {child['slices_written']} of {dates} slices")
    return section


# ---------------------------------------------------------------------------------------------------------
# Child
# ---------------------------------------------------------------------------------------------------------


def child(items_file: str, storage: str, out_file: str) -> int:
    import pystac

    from oxeo_flows import pipeline
    from oxeo_flows.catalog import scenes_for
    from oxeo_flows.constellations import CONSTELLATIONS
    from oxeo_flows.planning import plan_extraction
    from oxeo_flows.tiling import Tile

    baseline = _peak_mib()
    baseline_current = status_mib("VmRSS")
    ru_baseline = peak_rss_mib()
    trace: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_S):
            trace.append(status_mib("VmRSS") or peak_rss_mib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    const = CONSTELLATIONS["sentinel-2"]
    tile = Tile(33, False, 10_000, 70, 509)
    items = [pystac.Item.from_dict(d) for d in json.loads(Path(items_file).read_text())]
    scenes = scenes_for(items, const)
    plan = plan_extraction([tile], scenes, const, storage, window="year")
    t = time.perf_counter()
    summaries = [pipeline.extract_unit(u, storage) for u in plan.units]
    extract_s = time.perf_counter() - t
    stop.set()
    sampler.join()
    gb = tile.geobox(const.resolution_m)
    result = {
        "tile": tile.id,
        "tile_px": int(gb.shape[0] * gb.shape[1]),
        "bands": list(const.bands),
        "units": len(plan.units),
        "slices_written": sum(s.slices_written for s in summaries),
        "errors": [e for s in summaries for e in s.errors],
        "extract_s": extract_s,
        "baseline_rss_mib": baseline,
        "baseline_current_rss_mib": baseline_current,
        "peak_rss_mib": _peak_mib(),
        "ru_maxrss_baseline_mib": ru_baseline,
        "ru_maxrss_peak_mib": peak_rss_mib(),
        "rss_trace_mib": trace,
        "store_bytes": sum(f.stat().st_size for f in Path(storage).rglob("*") if f.is_file()),
    }
    Path(out_file).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "CHILD":
        sys.exit(child(sys.argv[2], sys.argv[3], sys.argv[4]))
    sys.exit("usage: python -m benchmarks.memory CHILD ITEMS_JSON STORAGE OUT_JSON (started by the harness)")
