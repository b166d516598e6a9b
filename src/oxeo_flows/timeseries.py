"""Per-AOI water observations from the archive's masks: merge tiles, clean, measure.

For each AOI the polygon is split by UTM zone (`tiling.zone_parts`); each part is measured on a canvas
that mosaics its zone's tiles (tiles of one zone share one pixel lattice, so the mosaic is a paste), and
the parts' pixel counts are summed, so nothing is counted twice where tiles of neighbouring zones
overlap on the ground. For every solar day present in ANY of the tiles (a union: a tile without that
day contributes no-data pixels), the mask is cleaned:

1. water objects smaller than `min_object_m2` are removed (8-connectivity);
2. dry holes smaller than `min_hole_m2` that are enclosed by water (touching no cloud/no-data pixel and
   not the canvas edge) are filled;
3. only water components that touch the AOI polygon are kept;

then pixels whose centre lies inside the AOI polygon are counted. Thresholds are areas in m², so the
cleaning means the same at 10 m and 30 m. An observation is `usable` for the area statistic when at
most `max_invalid_fraction` of the AOI is cloud/shadow/no data (DEA Waterbodies uses 10 %); unusable
observations are still recorded with their fractions.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
from affine import Affine
from rasterio.features import geometry_mask
from scipy import ndimage
from shapely.geometry.base import BaseGeometry

from oxeo_flows.aoi import AOI
from oxeo_flows.archive import MASK_CLOUD, MASK_DRY, MASK_NODATA, MASK_WATER, Archive
from oxeo_flows.constellations import Constellation
from oxeo_flows.observation import Observation
from oxeo_flows.tiling import project_lonlat, tiles_for_geometry, zone_parts

DEFAULT_MIN_OBJECT_M2 = 3125.0  # DEA Waterbodies minimum mapping unit (five 25 m pixels)
DEFAULT_MIN_HOLE_M2 = 3125.0
DEFAULT_MAX_INVALID_FRACTION = 0.10
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class _Counts:
    acquired_at: datetime | None = None
    water: int = 0
    valid: int = 0
    cloud: int = 0
    nodata: int = 0
    total: int = 0
    tiles: set[str] = field(default_factory=set)


def clean_water(
    mask: np.ndarray,
    aoi_px: np.ndarray,
    pixel_area_m2: float,
    min_object_m2: float = DEFAULT_MIN_OBJECT_M2,
    min_hole_m2: float = DEFAULT_MIN_HOLE_M2,
) -> np.ndarray:
    """Boolean cleaned water from a uint8 mask (codes 0/1/254/255) and the AOI pixel mask."""
    water = mask == MASK_WATER
    min_obj_px = int(np.ceil(min_object_m2 / pixel_area_m2))
    labels, n = ndimage.label(water, structure=_EIGHT)
    if n:
        sizes = np.bincount(labels.ravel())
        small = sizes < min_obj_px
        small[0] = False
        water &= ~small[labels]
    dry = mask == MASK_DRY
    min_hole_px = int(np.ceil(min_hole_m2 / pixel_area_m2))
    hlabels, hn = ndimage.label(dry)  # 4-connectivity for the background
    if hn:
        sizes = np.bincount(hlabels.ravel())
        blocked = (mask == MASK_CLOUD) | (mask == MASK_NODATA) | (mask == MASK_WATER) & ~water
        border = np.zeros_like(dry)
        border[0, :] = border[-1, :] = border[:, 0] = border[:, -1] = True
        touching = ndimage.binary_dilation(blocked, structure=_EIGHT) | border
        not_hole = np.zeros(hn + 1, dtype=bool)
        not_hole[np.unique(hlabels[touching & dry])] = True
        hole = (sizes < min_hole_px) & ~not_hole
        hole[0] = False
        water |= hole[hlabels]
    labels, n = ndimage.label(water, structure=_EIGHT)
    if n:
        keep = np.zeros(n + 1, dtype=bool)
        keep[np.unique(labels[water & aoi_px])] = True
        keep[0] = False
        water = keep[labels]
    return water


def aoi_observations(
    aoi: AOI,
    constellation: Constellation,
    model_key: str,
    storage: str,
    *,
    tile_size_m: int = 10_000,
    start: date | None = None,
    end: date | None = None,
    min_object_m2: float = DEFAULT_MIN_OBJECT_M2,
    min_hole_m2: float = DEFAULT_MIN_HOLE_M2,
    max_invalid_fraction: float = DEFAULT_MAX_INVALID_FRACTION,
) -> list[Observation]:
    """Observations of `aoi` for every solar day with a completed `model_key` mask in its tiles."""
    res = float(constellation.resolution_m)
    parts = []
    for zone, south, part in zone_parts(aoi.geometry):
        tiles = [t for t in tiles_for_geometry(part, tile_size_m) if t.zone == zone and t.south == south]
        archives = [Archive(storage, t, constellation) for t in tiles]
        parts.append(_measure_part(part, archives, model_key, res, start, end, min_object_m2, min_hole_m2))
    counts: dict[date, _Counts] = defaultdict(_Counts)
    for day in sorted({d for _, per_day in parts for d in per_day}):
        entry = counts[day]
        for part_total, per_day in parts:
            c = per_day.get(day)
            if c is None:  # this part has no slice that day: all its pixels are no data
                entry.nodata += part_total
                entry.total += part_total
                continue
            entry.water += c.water
            entry.valid += c.valid
            entry.cloud += c.cloud
            entry.nodata += c.nodata
            entry.total += c.total
            entry.tiles |= c.tiles
            assert c.acquired_at is not None
            entry.acquired_at = (
                c.acquired_at if entry.acquired_at is None else min(entry.acquired_at, c.acquired_at)
            )
    rows = []
    for day in sorted(counts):
        c = counts[day]
        if c.total == 0 or c.acquired_at is None:
            continue
        valid_fraction = c.valid / c.total
        rows.append(
            Observation(
                aoi_id=aoi.id,
                acquired_at=c.acquired_at,
                solar_day=day,
                constellation=constellation.name,
                model=model_key,
                water_area_m2=c.water * res * res,
                water_px=c.water,
                valid_px=c.valid,
                cloud_px=c.cloud,
                nodata_px=c.nodata,
                total_px=c.total,
                valid_fraction=valid_fraction,
                cloud_fraction=c.cloud / c.total,
                usable=(1.0 - valid_fraction) <= max_invalid_fraction + 1e-12,
                pixel_size_m=res,
                tiles=sorted(c.tiles),
            )
        )
    return rows


def _measure_part(
    part: BaseGeometry,
    archives: list[Archive],
    model_key: str,
    res: float,
    start: date | None,
    end: date | None,
    min_object_m2: float,
    min_hole_m2: float,
) -> tuple[int, dict[date, _Counts]]:
    """(AOI pixels in this part, counts per solar day) for one zone part."""
    counts: dict[date, _Counts] = {}
    if not archives:
        return 0, counts
    # Canvas over all tiles: they share one lattice, so each tile is an integer offset.
    boxes = [a.geobox for a in archives]
    x0 = min(b.affine.c for b in boxes)
    y0 = max(b.affine.f for b in boxes)
    x1 = max(b.affine.c + b.shape[1] * res for b in boxes)
    y1 = min(b.affine.f - b.shape[0] * res for b in boxes)
    shape = (int(round((y0 - y1) / res)), int(round((x1 - x0) / res)))
    canvas_tr = Affine(res, 0, x0, 0, -res, y0)
    offsets = [(int(round((y0 - b.affine.f) / res)), int(round((b.affine.c - x0) / res))) for b in boxes]
    epsg = archives[0].tile.epsg
    aoi_px = ~geometry_mask(
        [project_lonlat(part, epsg)], out_shape=shape, transform=canvas_tr, all_touched=False
    )
    total = int(aoi_px.sum())
    if total == 0:
        return 0, counts
    # Which slots hold each solar day, per tile (only slices whose mask is complete).
    per_day: dict[date, list[tuple[int, int]]] = defaultdict(list)
    times: dict[tuple[int, int], datetime] = {}
    for ai, arc in enumerate(archives):
        done = arc.mask_done(model_key)
        for day, (slot, acquired) in arc.committed_times().items():
            if (start and day < start) or (end and day > end) or not done.get(slot):
                continue
            per_day[day].append((ai, slot))
            times[(ai, slot)] = acquired
    for day in sorted(per_day):
        canvas = np.full(shape, MASK_NODATA, dtype=np.uint8)
        for ai, slot in per_day[day]:
            r, c = offsets[ai]
            h, w = boxes[ai].shape
            view = canvas[r : r + h, c : c + w]
            m = archives[ai].read_mask(model_key, slot)
            np.copyto(view, m, where=view == MASK_NODATA)
        water = clean_water(canvas, aoi_px, res * res, min_object_m2, min_hole_m2)
        inside = canvas[aoi_px]
        counts[day] = _Counts(
            acquired_at=min(times[k] for k in per_day[day]),
            water=int((water & aoi_px).sum()),
            valid=int(((inside == MASK_DRY) | (inside == MASK_WATER)).sum()),
            cloud=int((inside == MASK_CLOUD).sum()),
            nodata=int((inside == MASK_NODATA).sum()),
            total=total,
            tiles={archives[ai].tile.id for ai, _ in per_day[day]},
        )
    return total, counts
