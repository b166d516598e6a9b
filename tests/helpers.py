"""Small synthetic scenes for extraction / archive tests (COGs written with rasterio)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import Transformer
from shapely.geometry import box, mapping
from shapely.geometry.base import BaseGeometry

from oxeo_flows.catalog import AssetRef, Scene
from oxeo_flows.constellations import CONSTELLATIONS

S2 = CONSTELLATIONS["sentinel-2"]


def utm_to_lonlat(geom: BaseGeometry, epsg: int) -> BaseGeometry:
    t = Transformer.from_crs(epsg, 4326, always_xy=True)

    def fn(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(t.transform(xy[:, 0], xy[:, 1]))

    return shapely.transform(shapely.segmentize(geom, 50.0), fn)


def write_cog(
    path: Path, arr: np.ndarray, transform: Affine, crs: str, nodata: float | None = 0, **profile: Any
) -> None:
    """A one-band COG; `profile` adds or overrides creation options (default compress=DEFLATE)."""
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=arr.shape[1],
        height=arr.shape[0],
        count=1,
        dtype=arr.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
        **{"compress": "DEFLATE", **profile},
    ) as ds:
        ds.write(arr, 1)


def make_s2_scene(
    folder: Path,
    scene_id: str,
    when: datetime,
    *,
    epsg: int = 32633,
    origin: tuple[float, float] = (498_500.0, 4_991_500.0),
    size_10m: int = 120,
    seed: int = 0,
    dn_offset: int = -1000,
    fill: dict[str, np.ndarray] | None = None,
) -> tuple[Scene, dict[str, np.ndarray]]:
    """An S2-like scene: 10 m bands blue/green/red/nir, 20 m nir08/swir16/swir22/scl; random DN."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    x0, y0 = origin
    arrays: dict[str, np.ndarray] = {}
    assets: dict[str, AssetRef] = {}
    for band in S2.bands:
        res = 10 if band in ("blue", "green", "red", "nir") else 20
        n = size_10m * 10 // res
        if fill and band in fill:
            arr = fill[band]
        elif band == "scl":
            arr = rng.integers(1, 12, (n, n), dtype=np.uint8)
        else:
            arr = rng.integers(1, 12000, (n, n), dtype=np.uint16)
        tr = Affine(res, 0, x0, 0, -res, y0)
        path = folder / f"{scene_id}_{band}.tif"
        write_cog(path, arr, tr, f"EPSG:{epsg}")
        arrays[band] = arr
        qa = band == "scl"
        assets[band] = AssetRef(
            band=band,
            href=str(path),
            scale=1.0 if qa else 1e-4,
            offset=0.0 if qa else dn_offset * 1e-4,
            nodata=0,
            crs=f"EPSG:{epsg}",
            shape=arr.shape,
            transform=tuple(tr)[:6],  # type: ignore[arg-type]
        )
    fp = utm_to_lonlat(box(x0, y0 - size_10m * 10, x0 + size_10m * 10, y0), epsg)
    scene = Scene(
        id=scene_id,
        datetime=when,
        constellation="sentinel-2",
        collection="sentinel-2-l2a",
        geometry=mapping(fp),
        processing_baseline="05.10",
        assets=assets,
    )
    return scene, arrays
