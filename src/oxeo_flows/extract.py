"""Read the pixels of one solar day's scenes onto a tile grid and fuse them into one archive slice.

Two read paths, chosen per asset:
- aligned: the asset is in the tile's CRS and its pixel grid nests in the tile grid (same resolution,
  or an integer multiple such as 20 m -> 10 m, with edges on tile pixel edges). Pixels are a plain
  windowed read, replicated k x k when coarser: bit-identical to `rasterio` windowed reads, no resampling.
- warped: anything else (another UTM zone, an offset grid) goes through one `rasterio.warp.reproject`
  call onto the WHOLE tile grid with the declared resampling (nearest for classification bands always).

Why not `odc.stac.load` for the warp: it reprojects onto the part of the output that each source
footprint covers (and per dask chunk), and GDAL's nearest-neighbour result then depends on that region
(we measured 82 of 90,494 pixels differing between a chunked and an unchunked load of the same scene,
cf. opendatacube/odc-stac#252). Warping onto the full tile makes each slice independent of chunking and
reproducible by a plain `rasterio.warp.reproject`, which the tests check pixel for pixel. Same-day scenes
are fused first-valid in (time, id) order (never `max`, which favours clouds).

Flaky sources (`ReadPolicy`): remote reads run under GDAL's own per-request retry (GDAL_HTTP_MAX_RETRY
with doubling GDAL_HTTP_RETRY_DELAY, on 429/5xx and on timeouts, GDAL_HTTP_TIMEOUT per request). GDAL
does not retry a truncated body (fewer bytes than the Content-Length it was promised): it keeps the
short chunk in its process-wide /vsicurl/ cache and the next read of the same region fails again, in
this process, forever. So a whole asset read (open + read) is retried `retries` times with exponential
backoff and jitter, and every failed attempt first drops what GDAL cached for that href
(`VSICurlPartialClearCache`; a cached "does not exist" after a 503 would otherwise outlive the
outage too). A truncated body never yields pixels: GDAL reports the short read as an error (libtiff
checks every tile's byte count), which `tests/test_flaky_source.py` verifies on compressed and
uncompressed COGs, aligned and warped. The clean path is unchanged apart from one `rasterio.Env` per
remote read; local files are read once, without retries. The final error is a `SourceError` naming
scene, band, tile and href, with URL credentials and query-string values redacted (GDAL's own
messages logged through rasterio's loggers, e.g. its retry warnings, get the same redaction).
"""

from __future__ import annotations

import ctypes
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import numpy as np
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio._err import CPLE_BaseError
from rasterio.enums import Resampling
from rasterio.windows import Window

from oxeo_flows.archive import SliceMeta
from oxeo_flows.catalog import AssetRef, Scene
from oxeo_flows.constellations import Constellation
from oxeo_flows.errors import SourceError
from oxeo_flows.settings import Settings

_EPS = 1e-6
READ_THREADS = max(1, min(4, os.cpu_count() or 1))  # more threads than cores measured slower
RESAMPLING_CHOICES = ("nearest", "bilinear", "cubic", "average")


class _ReadCounter:
    """Counts source asset reads (thread-safe); tests use it to prove reruns read nothing."""

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self._n += 1

    @property
    def value(self) -> int:
        return self._n


SOURCE_READS = _ReadCounter()
SOURCE_RETRIES = _ReadCounter()  # whole-asset re-reads after a failed attempt
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadPolicy:
    """How remote asset reads are retried; defaults equal the `Settings` defaults.

    `retries`: whole-asset re-reads after a failed attempt (settings.source_retries).
    `http_retries`: GDAL's retries of one HTTP request on 429/5xx/timeouts (settings.source_http_retries).
    `retry_delay_s`: first delay of both; doubles per retry, capped at `max_delay_s`, with jitter.
    `timeout_s`: limit of one HTTP request (settings.source_timeout_s).
    """

    retries: int = 3
    http_retries: int = 3
    retry_delay_s: float = 0.5
    timeout_s: float = 30.0
    max_delay_s: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ReadPolicy:
        return cls(
            retries=settings.source_retries,
            http_retries=settings.source_http_retries,
            retry_delay_s=settings.source_retry_delay_s,
            timeout_s=settings.source_timeout_s,
        )

    def gdal_options(self) -> dict[str, Any]:
        """GDAL config options of a remote read (thread-local under `rasterio.Env`)."""
        opts: dict[str, Any] = {
            "GDAL_HTTP_MAX_RETRY": str(self.http_retries),
            "GDAL_HTTP_RETRY_DELAY": f"{self.retry_delay_s:g}",
            "GDAL_HTTP_TIMEOUT": f"{self.timeout_s:g}",
            "GDAL_HTTP_CONNECTTIMEOUT": f"{min(self.timeout_s, 10.0):g}",
        }
        if "GDAL_DISABLE_READDIR_ON_OPEN" not in os.environ:
            opts["GDAL_DISABLE_READDIR_ON_OPEN"] = "EMPTY_DIR"  # no directory listing / sidecar probes
        return opts

    def backoff_s(self, retry: int) -> float:
        """Sleep before whole-asset retry number `retry` (1-based): exponential, jittered to 50-100 %."""
        return min(self.max_delay_s, self.retry_delay_s * 2 ** (retry - 1)) * (0.5 + random.random() / 2)


DEFAULT_POLICY = ReadPolicy()

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_QUERY = re.compile(r"\?([\w.~%+-]+=[^&\s'\"<>,;:]*(?:&[\w.~%+-]+=?[^&\s'\"<>,;:]*)*)")


def _redact_query(query: str) -> str:
    return "&".join(f"{k}=***" for k, _ in parse_qsl(query, keep_blank_values=True)) or "***"


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            netloc = "***@" + netloc.rsplit("@", 1)[1]
        query = _redact_query(parts.query) if parts.query else ""
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        head, sep, _ = url.partition("?")
        return head.split("@")[-1] if "@" in head else head + ("?***" if sep else "")


def redact(text: str, href: str | None = None) -> str:
    """`text` with URL user info and query-string values (signatures, tokens) replaced by ***.

    Covers full URLs and bare names with a query ("blue.tif?X-Amz-Signature=...", as GDAL quotes
    files); with `href`, its user info is also replaced wherever it appears.
    """
    if href and "://" in href:
        netloc = urlsplit(href).netloc
        if "@" in netloc:
            text = text.replace(netloc.rsplit("@", 1)[0] + "@", "***@")
    text = _URL.sub(lambda m: _redact_url(m.group(0)), text)
    return _QUERY.sub(lambda m: "?" + _redact_query(m.group(1)), text)


class _RedactingFilter(logging.Filter):
    """Redacts URLs in rasterio's GDAL log records (GDAL's retry warnings quote the full signed URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
            if "://" in msg or "?" in msg or "@" in msg:
                record.msg, record.args = redact(msg), None
        except Exception:  # never break the caller's logging
            pass
        return True


for _name in ("rasterio._env", "rasterio._err", "rasterio._base", "rasterio._io", "rasterio.env"):
    logging.getLogger(_name).addFilter(_RedactingFilter())


def _is_remote(href: str) -> bool:
    if href.startswith("/vsi"):
        return not href.startswith("/vsimem/")
    return "://" in href and not href.startswith("file://")


def _vsi_path(href: str) -> str:
    try:
        from rasterio._path import _parse_path

        return str(_parse_path(href).as_vsi())
    except Exception:  # private rasterio API: fall back to the /vsicurl/ form
        return href if href.startswith("/vsi") else f"/vsicurl/{href}"


def _gdal_cache_clearer() -> Callable[[bytes], None] | None:
    """`VSICurlPartialClearCache` of the GDAL that rasterio loaded, or None where it cannot be found."""
    try:
        import rasterio._base

        fn = ctypes.CDLL(rasterio._base.__file__).VSICurlPartialClearCache  # resolved via its libgdal
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_char_p]
    fn.restype = None
    return fn


_CLEAR_CACHE = _gdal_cache_clearer()


def forget_cached(href: str) -> None:
    """Drop what GDAL's /vsicurl/ caches (file properties, downloaded chunks) hold for `href`."""
    if _CLEAR_CACHE is not None:
        _CLEAR_CACHE(_vsi_path(href).encode())


@dataclass(frozen=True)
class LoadedSlice:
    data: np.ndarray  # uint16 (band, y, x)
    meta: SliceMeta


def _integral(v: float) -> bool:
    return abs(v - round(v)) < _EPS


def _aligned_factor(src_tr: Affine, dst_tr: Affine) -> int | None:
    """k when the source grid nests in the destination grid (k x k destination pixels per source pixel)."""
    if src_tr.b != 0 or src_tr.d != 0 or dst_tr.b != 0 or dst_tr.d != 0:
        return None
    if src_tr.a <= 0 or src_tr.e >= 0 or not np.isclose(src_tr.a, -src_tr.e):
        return None
    k = src_tr.a / dst_tr.a
    if not _integral(k) or round(k) < 1:
        return None
    if not (_integral((dst_tr.c - src_tr.c) / dst_tr.a) and _integral((src_tr.f - dst_tr.f) / dst_tr.a)):
        return None
    return int(round(k))


def _read_aligned(src: rasterio.DatasetReader, geobox: GeoBox, k: int) -> np.ndarray:
    dst_tr = geobox.affine
    ny, nx = geobox.shape
    ox = int(round((dst_tr.c - src.transform.c) / dst_tr.a))  # tile origin in source sub-pixels
    oy = int(round((src.transform.f - dst_tr.f) / dst_tr.a))
    c0, r0 = ox // k, oy // k
    c1, r1 = (ox + nx - 1) // k + 1, (oy + ny - 1) // k + 1
    block = np.zeros((r1 - r0, c1 - c0), dtype=src.dtypes[0])
    rc0, rr0 = max(c0, 0), max(r0, 0)
    rc1, rr1 = min(c1, src.width), min(r1, src.height)
    if rc1 > rc0 and rr1 > rr0:
        win = Window(rc0, rr0, rc1 - rc0, rr1 - rr0)
        block[rr0 - r0 : rr1 - r0, rc0 - c0 : rc1 - c0] = src.read(1, window=win)
        if src.nodata is not None and src.nodata != 0:
            block[block == src.nodata] = 0
    if k > 1:
        block = np.repeat(np.repeat(block, k, axis=0), k, axis=1)
    y0, x0 = oy - r0 * k, ox - c0 * k
    return block[y0 : y0 + ny, x0 : x0 + nx]


def _read_warped(src: rasterio.DatasetReader, geobox: GeoBox, resampling: str) -> np.ndarray:
    from rasterio.warp import reproject

    out = np.zeros(geobox.shape, dtype=src.dtypes[0])
    reproject(
        rasterio.band(src, 1),
        out,
        src_nodata=0 if src.nodata is None else src.nodata,
        dst_transform=geobox.affine,
        dst_crs=str(geobox.crs),
        dst_nodata=0,
        resampling=Resampling[resampling],
    )
    return out


def _remote_options(policy: ReadPolicy, href: str) -> dict[str, Any]:
    opts = policy.gdal_options()
    if _CLEAR_CACHE is None:  # cannot clear after a failure: have GDAL drop this href's cache at close
        opts["CPL_VSIL_CURL_NON_CACHED"] = _vsi_path(href)
    return opts


def _describe(exc: BaseException) -> str:
    """rasterio's message, or GDAL's (the cause) where rasterio only says "see previous exception"."""
    cause = exc.__cause__
    if cause is None:
        return str(exc)
    return str(cause) if "previous exception" in str(exc) else f"{exc}: {cause}"


def _read_once(asset: AssetRef, geobox: GeoBox, resampling: str) -> np.ndarray:
    with rasterio.open(asset.href) as src:
        same_crs = src.crs is not None and src.crs == rasterio.crs.CRS.from_user_input(str(geobox.crs))
        k = _aligned_factor(src.transform, geobox.affine) if same_crs else None
        return _read_aligned(src, geobox, k) if k is not None else _read_warped(src, geobox, resampling)


def read_asset(
    asset: AssetRef,
    geobox: GeoBox,
    resampling: str = "nearest",
    *,
    policy: ReadPolicy = DEFAULT_POLICY,
    context: str = "",
) -> np.ndarray:
    """One asset on `geobox` as uint16 with 0 = no data (source nodata remapped to 0).

    Remote hrefs are read under `policy` (see the module doc); a local file is read once. Raises
    `SourceError` "<context> band <band>: cannot read <href> after N attempt(s): <GDAL error>", with
    secrets redacted and no chained exception (its text would carry the unredacted URL).
    """
    if resampling not in RESAMPLING_CHOICES:
        raise ValueError(f"resampling must be one of {RESAMPLING_CHOICES}, got {resampling!r}")
    SOURCE_READS.add()
    remote = _is_remote(asset.href)
    attempts = 1 + policy.retries if remote else 1
    where = f"{context} band {asset.band}".strip()
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            if remote:
                with rasterio.Env(**_remote_options(policy, asset.href)):
                    arr = _read_once(asset, geobox, resampling)
            else:
                arr = _read_once(asset, geobox, resampling)
        except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
            error = redact(_describe(exc), asset.href)
            if remote:
                forget_cached(asset.href)  # never re-read a short chunk or a cached "does not exist"
            if attempt == attempts:
                break
            delay = policy.backoff_s(attempt)
            log.warning(
                "%s: read failed (attempt %d of %d), retrying in %.2f s: %s",
                where,
                attempt,
                attempts,
                delay,
                error,
            )
            SOURCE_RETRIES.add()
            time.sleep(delay)
            continue
        return arr if arr.dtype == np.uint16 else arr.astype(np.uint16)
    raise SourceError(
        f"{where}: cannot read {redact(asset.href)} after {attempts} attempt(s): {error}"
    ) from None


def load_day(
    scenes: Sequence[Scene],
    constellation: Constellation,
    geobox: GeoBox,
    resampling: str = "nearest",
    threads: int = READ_THREADS,
    *,
    policy: ReadPolicy = DEFAULT_POLICY,
    tile_id: str | None = None,
    bands: Sequence[str] | None = None,
) -> LoadedSlice:
    """Fuse the scenes of one solar day into one (band, y, x) uint16 slice on `geobox`.

    Scenes are fused first-valid in (time, id) order. When scenes of the day use different DN offsets
    (e.g. one granule with the BOA offset pre-subtracted), later scenes are shifted into the first
    scene's convention so the slice has one exact (scale, offset) per band. Assets are read by
    `threads` threads (GDAL releases the GIL while decoding); the fusion order does not depend on it.
    Reads follow `policy`; when one asset cannot be read, reads not yet started are cancelled and its
    `SourceError` (naming the scene, band, href and `tile_id`) is raised. `bands` (default: the
    constellation's) is the archive's band list; optional bands no scene has are 0 with NaN
    scale/offset, and the valid fraction counts the required bands only.
    """
    if not scenes:
        raise ValueError("load_day needs at least one scene")
    ordered = sorted(scenes, key=lambda s: (s.datetime, s.id))
    first = ordered[0]
    bands = constellation.bands if bands is None else tuple(bands)
    out = np.zeros((len(bands), *geobox.shape), dtype=np.uint16)
    # per band, the first scene that has it sets the slice's (scale, offset); optional bands
    # (`Constellation.optional_bands`) a scene lacks stay 0 (no data) there
    refs = {b: next((s.assets[b] for s in ordered if b in s.assets), None) for b in bands}

    def read(job: tuple[Scene, int]) -> np.ndarray:
        scene, b = job
        band = bands[b]
        asset, ref = scene.assets[band], refs[band]
        assert ref is not None
        arr = read_asset(
            asset,
            geobox,
            "nearest" if band == constellation.qa_band else resampling,
            policy=policy,
            context=f"scene {scene.id}" + (f" tile {tile_id}" if tile_id else ""),
        )
        if (asset.scale, asset.offset) != (ref.scale, ref.offset):
            arr = _shift_dn(arr, asset, ref, scene.id)
        return arr

    missing = [b for b in bands if refs[b] is None and b not in constellation.optional_bands]
    if missing:
        raise ValueError(f"scenes {[s.id for s in ordered]} lack required band(s) {missing}")
    jobs = [(scene, b) for scene in ordered for b in range(len(bands)) if bands[b] in scene.assets]
    pool = ThreadPoolExecutor(max_workers=max(1, min(threads, len(jobs))))
    try:
        for (_, b), arr in zip(jobs, pool.map(read, jobs), strict=True):  # map keeps the fusion order
            np.copyto(out[b], arr, where=out[b] == 0)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # a failed day reads nothing more
        raise
    pool.shutdown(wait=True)
    required = [i for i, b in enumerate(bands) if b not in constellation.optional_bands]
    valid = np.all(out[required] != 0, axis=0)
    meta = SliceMeta(
        time=first.datetime,
        solar_day=first.solar_day,
        item_ids=tuple(s.id for s in ordered),
        processing_baseline=first.processing_baseline,
        scale=tuple(float("nan") if (r := refs[b]) is None else r.scale for b in bands),
        offset=tuple(float("nan") if (r := refs[b]) is None else r.offset for b in bands),
        valid_fraction=float(valid.mean()),
    )
    return LoadedSlice(out, meta)


def _shift_dn(arr: np.ndarray, asset: AssetRef, ref: AssetRef, scene_id: str) -> np.ndarray:
    if asset.scale != ref.scale:
        raise SourceError(
            f"scene {scene_id} band {asset.band}: scale {asset.scale} differs from {ref.scale} of the "
            "same day's first scene; cannot fuse losslessly"
        )
    shift = round((asset.offset - ref.offset) / ref.scale)
    out = arr.astype(np.int32) + shift
    out = np.clip(out, 1, 65535)
    out[arr == 0] = 0
    return out.astype(np.uint16)
