"""The time-series row type, in a module of its own so that the database layer, the CLI and the API can
import it without the array stack (xarray, zarr, scipy) that computes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime


@dataclass
class Observation:
    """One row of the water time series (areas in m², fractions of the AOI's pixels)."""

    aoi_id: str
    acquired_at: datetime  # UTC, earliest contributing slice of the solar day
    solar_day: date
    constellation: str
    model: str
    water_area_m2: float
    water_px: int
    valid_px: int
    cloud_px: int
    nodata_px: int
    total_px: int
    valid_fraction: float
    cloud_fraction: float
    usable: bool
    pixel_size_m: float
    tiles: list[str] = field(default_factory=list)
