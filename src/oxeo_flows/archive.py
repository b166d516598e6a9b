"""The pixel archive: one zarr v3 group per (tile, constellation) under the storage root.

Layout of `{storage}/{tile_id}/{constellation}.zarr` (all readable with plain `xarray.open_zarr`):

- `data` uint16 (time, band, y, x), fill 0 = no data, chunks (1, 1, H, W); raw DN as read from the source.
- `band` (band,) str: archive band names (STAC common names, e.g. green, swir16, scl).
- `x`, `y` float64: exact cell-centre coordinates (metres) of the tile grid; `spatial_ref` holds the CRS
  (`crs_wkt`, GDAL `GeoTransform`) so rioxarray and xarray users get the georeferencing.
- `time` int64 (time,): UTC acquisition time (earliest contributing item of the solar day), CF-encoded
  as nanoseconds since 1970-01-01. Fill (NaT) marks a slot that was never committed.
- per slice: `solar_day`, `item_ids` (JSON list), `processing_baseline`, `valid_fraction` (share of the
  tile with data), and per slice x band `scale` / `offset`: reflectance = DN x scale + offset (DN 0 = nodata).
- masks: `mask_<model key>` uint8 (time, y, x) with codes 0 dry, 1 water, 254 cloud/shadow, 255 nodata,
  and `mask_<model key>_done` uint8 (time,) = 1 once that slice's mask is complete.

Write protocol (crash safety): slices are appended in arrival order (incremental in both directions:
readers sort by `time`; slices are one chunk deep so order costs nothing). A writer (1) grows every
time-indexed array to the same length or reuses an uncommitted slot, (2) writes pixels and per-slice
metadata, (3) writes `time[i]` LAST. A slot whose `time` is NaT is invisible to `open_archive` and is
reused by the next writer, so a crash at any point leaves no slice that a reader takes as complete.
Masks follow the same rule with their `_done` flag. One writer per store at a time: an in-process lock
plus a file lock beside local stores.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import fsspec
import numpy as np
import xarray as xr
import zarr
from filelock import FileLock
from pyproj import CRS
from zarr.codecs import BloscCodec

from oxeo_flows.constellations import Constellation
from oxeo_flows.errors import InputError
from oxeo_flows.tiling import Tile

FORMAT_VERSION = 1
NAT = np.iinfo(np.int64).min
TIME_UNITS = "nanoseconds since 1970-01-01"
DAY_UNITS = "days since 1970-01-01"
MASK_DRY, MASK_WATER, MASK_CLOUD, MASK_NODATA = 0, 1, 254, 255
_SLICE_CHUNK = 4096
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class SliceMeta:
    """Metadata of one archive time slice."""

    time: datetime  # UTC
    solar_day: date
    item_ids: tuple[str, ...]
    processing_baseline: str | None
    scale: tuple[float, ...]  # per band
    offset: tuple[float, ...]  # per band
    valid_fraction: float


def archive_path(storage: str, tile_id: str, constellation: str) -> str:
    """Path of a tile x constellation store. Ids are re-validated so no path can leave `storage`."""
    Tile.from_id(tile_id)
    if constellation not in _known_constellations():
        raise InputError("constellation", f"unknown constellation {constellation!r}")
    return f"{storage.rstrip('/')}/{tile_id}/{constellation}.zarr"


def _known_constellations() -> set[str]:
    from oxeo_flows.constellations import CONSTELLATIONS

    return set(CONSTELLATIONS)


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


@contextmanager
def _writer_lock(path: str) -> Iterator[None]:
    with _locks_guard:
        lock = _locks.setdefault(path, threading.Lock())
    with lock:
        if _is_local(path):
            local = Path(path.removeprefix("file://"))
            local.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(local) + ".lock"):
                yield
        else:
            yield


def _to_ns(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("slice times must be timezone-aware (UTC)")
    return int(np.datetime64(t.astimezone(UTC).replace(tzinfo=None), "ns").astype(np.int64))


class Archive:
    """One (tile, constellation) store. Cheap to construct; touches storage only when used."""

    def __init__(self, storage: str, tile: Tile, constellation: Constellation) -> None:
        self.tile = tile
        self.constellation = constellation
        self.path = archive_path(storage, tile.id, constellation.name)
        self.geobox = tile.geobox(constellation.resolution_m, constellation.grid_anchor_m)
        self._bands: tuple[str, ...] | None = None

    @property
    def bands(self) -> tuple[str, ...]:
        """The store's band list (its `bands` attribute), else the constellation's for a new store.

        A store keeps the bands it was created with: one made before a band was added to the
        constellation (e.g. Landsat's thermal band) goes on without it, and readers index by name.
        """
        if self._bands is None:
            if not self.exists():
                return self.constellation.bands
            self._bands = tuple(str(b) for b in self._group().attrs["bands"])  # type: ignore[union-attr]
        return self._bands

    # ---------------------------------------------------------------- reading
    def exists(self) -> bool:
        # `_create` makes valid_fraction last: a store killed mid-creation is absent (and recreated)
        fs, _ = fsspec.core.url_to_fs(self.path)
        return bool(fs.exists(self.path.rstrip("/") + "/valid_fraction/zarr.json"))

    def _group(self, mode: str = "r") -> zarr.Group:
        return zarr.open_group(self.path, mode=mode, zarr_format=3)  # type: ignore[arg-type]

    def committed(self) -> dict[date, int]:
        """Committed slices: solar day -> slot index."""
        return {day: slot for day, (slot, _) in self.committed_times().items()}

    def committed_times(self) -> dict[date, tuple[int, datetime]]:
        """Committed slices: solar day -> (slot index, UTC acquisition time), from two array reads."""
        if not self.exists():
            return {}
        g = self._group()
        times = np.asarray(get_array(g, "time")[:])
        days = np.asarray(get_array(g, "solar_day")[:])
        n = min(len(times), len(days))  # uneven after a crash mid-resize: the extra slots are uncommitted
        times, days = times[:n], days[:n]
        return {
            (np.datetime64(int(d), "D").astype(date)): (i, _EPOCH + timedelta(microseconds=int(t) // 1000))
            for i, (t, d) in enumerate(zip(times, days, strict=True))
            if t != NAT
        }

    def read_slice(self, index: int) -> np.ndarray:
        """uint16 (band, y, x) of slot `index`."""
        return np.asarray(get_array(self._group(), "data")[index])

    def slice_meta(self, index: int) -> SliceMeta:
        g = self._group()

        def at(name: str) -> np.ndarray:
            return np.asarray(get_array(g, name)[index])

        return SliceMeta(
            time=_EPOCH + timedelta(microseconds=int(at("time")) // 1000),
            solar_day=np.datetime64(int(at("solar_day")), "D").astype(date),
            item_ids=tuple(json.loads(str(at("item_ids")))),
            processing_baseline=str(at("processing_baseline")) or None,
            scale=tuple(float(v) for v in at("scale")),
            offset=tuple(float(v) for v in at("offset")),
            valid_fraction=float(at("valid_fraction")),
        )

    def mask_done(self, key: str) -> dict[int, bool]:
        """Slot index -> whether mask `key` is complete, for committed slots."""
        if not self.exists():
            return {}
        g = self._group()
        name = _mask_name(key)
        done = np.asarray(get_array(g, name + "_done")[:]) if name + "_done" in g else None
        return {i: bool(done is not None and done[i] == 1) for i in self.committed().values()}

    def read_mask(self, key: str, index: int) -> np.ndarray:
        return np.asarray(get_array(self._group(), _mask_name(key))[index])

    # ---------------------------------------------------------------- writing
    def _create(self) -> zarr.Group:
        gb = self.geobox
        ny, nx = gb.shape
        a = gb.affine
        crs = CRS.from_user_input(self.tile.crs)
        g = zarr.open_group(
            self.path,
            mode="w",
            zarr_format=3,
            attributes={
                "oxeo_flows_format": FORMAT_VERSION,
                "tile_id": self.tile.id,
                "constellation": self.constellation.name,
                "crs": self.tile.crs,
                "resolution_m": self.constellation.resolution_m,
                "bounds": list(gb.boundingbox),
                "bands": list(self.bands),
            },
        )
        band = g.create_array("band", shape=(len(self.bands),), dtype=str, dimension_names=["band"])
        band[:] = np.array(self.bands)
        xs = g.create_array(
            "x",
            shape=(nx,),
            dtype="float64",
            dimension_names=["x"],
            attributes={"units": "metre", "standard_name": "projection_x_coordinate", "axis": "X"},
        )
        xs[:] = a.c + a.a * (np.arange(nx) + 0.5)
        ys = g.create_array(
            "y",
            shape=(ny,),
            dtype="float64",
            dimension_names=["y"],
            attributes={"units": "metre", "standard_name": "projection_y_coordinate", "axis": "Y"},
        )
        ys[:] = a.f + a.e * (np.arange(ny) + 0.5)
        g.create_array(
            "spatial_ref",
            shape=(),
            dtype="int64",
            fill_value=0,
            attributes={
                "crs_wkt": crs.to_wkt(),
                "spatial_ref": crs.to_wkt(),
                "epsg": self.tile.epsg,
                "GeoTransform": f"{a.c} {a.a} {a.b} {a.f} {a.d} {a.e}",
            },
        )
        g.create_array(
            "data",
            shape=(0, len(self.bands), ny, nx),
            dtype="uint16",
            fill_value=0,
            chunks=(1, 1, ny, nx),
            compressors=[_pixel_codec()],
            dimension_names=["time", "band", "y", "x"],
            attributes={
                "grid_mapping": "spatial_ref",
                "coordinates": "spatial_ref",
                "long_name": "raw digital numbers; reflectance = DN * scale + offset; 0 = no data",
            },
        )
        g.create_array(
            "time",
            shape=(0,),
            dtype="int64",
            fill_value=NAT,
            chunks=(_SLICE_CHUNK,),
            dimension_names=["time"],
            attributes={
                "units": TIME_UNITS,
                "calendar": "proleptic_gregorian",
                "standard_name": "time",
            },
        )
        g.create_array(
            "solar_day",
            shape=(0,),
            dtype="int64",
            fill_value=NAT,
            chunks=(_SLICE_CHUNK,),
            dimension_names=["time"],
            attributes={"units": DAY_UNITS, "calendar": "proleptic_gregorian"},
        )
        for name in ("item_ids", "processing_baseline"):
            g.create_array(name, shape=(0,), dtype=str, chunks=(_SLICE_CHUNK,), dimension_names=["time"])
        for name in ("scale", "offset"):
            g.create_array(
                name,
                shape=(0, len(self.bands)),
                dtype="float64",
                fill_value=np.nan,
                chunks=(_SLICE_CHUNK, len(self.bands)),
                dimension_names=["time", "band"],
            )
        g.create_array(
            "valid_fraction",
            shape=(0,),
            dtype="float32",
            fill_value=np.nan,
            chunks=(_SLICE_CHUNK,),
            dimension_names=["time"],
        )
        return g

    def _open_for_write(self) -> zarr.Group:
        g = self._create() if not self.exists() else self._group("r+")
        # Repair after a crash mid-resize: every time-indexed array gets the longest length.
        n = max(int(arr.shape[0]) for _, arr in time_arrays(g))
        for _, arr in time_arrays(g):
            if arr.shape[0] != n:
                arr.resize((n, *arr.shape[1:]))
        return g

    def write_slice(self, data: np.ndarray, meta: SliceMeta) -> int | None:
        """Write one (band, y, x) uint16 slice; return its slot (None if its solar day is committed)."""
        if data.dtype != np.uint16 or data.shape != (len(self.bands), *self.geobox.shape):
            raise ValueError(
                f"slice must be uint16 {(len(self.bands), *self.geobox.shape)}, got {data.dtype} {data.shape}"
            )
        t_ns = _to_ns(meta.time)
        with _writer_lock(self.path):
            g = self._open_for_write()
            times = np.asarray(get_array(g, "time")[:])
            days = np.asarray(get_array(g, "solar_day")[:])
            day = int(np.datetime64(meta.solar_day, "D").astype(np.int64))
            if np.any((times != NAT) & (days == day)):
                return None
            free = np.flatnonzero(times == NAT)
            if free.size:
                i = int(free[0])
            else:
                i = int(times.shape[0])
                for _, arr in time_arrays(g):
                    arr.resize((i + 1, *arr.shape[1:]))
            get_array(g, "data")[i] = data
            get_array(g, "solar_day")[i] = day
            get_array(g, "item_ids")[i] = json.dumps(list(meta.item_ids))
            get_array(g, "processing_baseline")[i] = meta.processing_baseline or ""
            get_array(g, "scale")[i] = np.asarray(meta.scale, dtype="float64")
            get_array(g, "offset")[i] = np.asarray(meta.offset, dtype="float64")
            get_array(g, "valid_fraction")[i] = meta.valid_fraction
            for name, arr in time_arrays(g):
                if name.startswith("mask_") and name.endswith("_done"):
                    arr[i] = 0
            get_array(g, "time")[i] = t_ns  # commit marker: written last
            return i

    def write_mask(self, key: str, index: int, mask: np.ndarray) -> None:
        """Write the uint8 (y, x) mask of model `key` for slot `index`, then set its done flag."""
        if mask.dtype != np.uint8 or mask.shape != self.geobox.shape:
            raise ValueError(f"mask must be uint8 {self.geobox.shape}, got {mask.dtype} {mask.shape}")
        name = _mask_name(key)
        with _writer_lock(self.path):
            g = self._open_for_write()
            n = int(get_array(g, "time").shape[0])
            ny, nx = self.geobox.shape
            if name not in g:
                g.create_array(
                    name,
                    shape=(n, ny, nx),
                    dtype="uint8",
                    fill_value=MASK_NODATA,
                    chunks=(1, ny, nx),
                    compressors=[_pixel_codec()],
                    dimension_names=["time", "y", "x"],
                    attributes={
                        "grid_mapping": "spatial_ref",
                        "coordinates": "spatial_ref",
                        "model": key,
                        "flag_values": [MASK_DRY, MASK_WATER, MASK_CLOUD, MASK_NODATA],
                        "flag_meanings": "dry water cloud_or_shadow nodata",
                    },
                )
            if name + "_done" not in g:  # a crash may fall between the two creations
                g.create_array(
                    name + "_done",
                    shape=(n,),
                    dtype="uint8",
                    fill_value=0,
                    chunks=(_SLICE_CHUNK,),
                    dimension_names=["time"],
                )
            get_array(g, name)[index] = mask
            get_array(g, name + "_done")[index] = 1


def _pixel_codec() -> BloscCodec:
    """Blosc LZ4 with bit shuffle: ~3x faster writes than zarr's default zstd at the same size (measured)."""
    return BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")


def get_array(g: zarr.Group, name: str) -> zarr.Array:
    arr = g[name]
    if not isinstance(arr, zarr.Array):
        raise TypeError(f"{name} in {g.store} is not an array")
    return arr


def time_arrays(g: zarr.Group) -> list[tuple[str, zarr.Array]]:
    out = []
    for name, arr in g.arrays():
        dims = arr.metadata.dimension_names or ()  # type: ignore[union-attr]
        if dims and dims[0] == "time":
            out.append((name, arr))
    return out


def _mask_name(key: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in key)
    return f"mask_{safe}"


def open_archive(path: str) -> xr.Dataset:
    """Open a store with xarray: committed slices only, sorted by time."""
    ds = xr.open_zarr(path, consolidated=False, zarr_format=3)
    ds = ds.isel(time=np.flatnonzero(~np.isnat(ds["time"].values)))
    return ds.sortby("time")


def stores_under(storage: str) -> Sequence[str]:
    """All archive store paths under `storage`."""
    fs, root = fsspec.core.url_to_fs(storage)
    if not fs.exists(root):
        return []
    return sorted(p for p in fs.glob(f"{root.rstrip('/')}/*/*.zarr"))
