"""Constellations, their STAC collections, archive bands and radiometric conventions.

Band names are STAC `eo:bands` common names as used by Earth Search v1 asset keys. Each constellation's
archive holds a fixed band list on a grid of `resolution_m`; classification bands (SCL, QA_PIXEL) are
always resampled with nearest neighbour and carry no scale/offset.

Optional bands may be missing from a scene and are then all 0 (no data) in its slice: Landsat's surface
temperature (C2 ST: `lwir11` = ST_B10 on OLI/TIRS, `lwir` = ST_B6 on TM/ETM+; kelvin = DN x 0.00341802
+ 149.0), which USGS leaves out of scenes processed to surface reflectance only (L2SR). An archive
created before a band was added keeps its own band list (`Archive.bands`).
"""

from __future__ import annotations

from dataclasses import dataclass

from oxeo_flows.errors import InputError


@dataclass(frozen=True)
class Constellation:
    """Static description of one constellation's archive."""

    name: str
    collections: tuple[str, ...]
    platforms: tuple[str, ...]
    resolution_m: int
    bands: tuple[str, ...]
    qa_band: str
    grid_anchor_m: float = 0.0  # pixel edges at anchor + k * resolution (Landsat: 15 m)
    thermal_band: str | None = None  # surface temperature (kelvin); optional: absent from some scenes
    # Aliases: archive band -> other asset keys / common names seen in catalogs (Earth Search v0, MPC, ...).
    aliases: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def reflectance_bands(self) -> tuple[str, ...]:
        """The surface-reflectance bands (not the QA or thermal band)."""
        return tuple(b for b in self.bands if b not in (self.qa_band, self.thermal_band))

    @property
    def optional_bands(self) -> tuple[str, ...]:
        """Bands a scene may lack (then all 0, no data, in its slice): the thermal band."""
        return (self.thermal_band,) if self.thermal_band else ()

    @property
    def required_bands(self) -> tuple[str, ...]:
        """The bands every scene must have (a pixel is valid when all of them are non-zero)."""
        return tuple(b for b in self.bands if b not in self.optional_bands)

    def asset_candidates(self, band: str) -> tuple[str, ...]:
        """Asset keys to try, in order, for archive band `band`."""
        return (band, *dict(self.aliases).get(band, ()))


_S2_ALIASES = (
    ("blue", ("B02", "B2")),
    ("green", ("B03", "B3")),
    ("red", ("B04", "B4")),
    ("nir", ("B08", "B8")),
    ("nir08", ("B8A",)),
    ("swir16", ("B11",)),
    ("swir22", ("B12",)),
    ("scl", ("SCL",)),
)
_LANDSAT_ALIASES = (
    ("blue", ("SR_B2", "B2")),
    ("green", ("SR_B3", "B3")),
    ("red", ("SR_B4", "B4")),
    ("nir08", ("SR_B5", "nir", "B5")),
    ("swir16", ("SR_B6", "B6")),
    ("swir22", ("SR_B7", "B7")),
    ("lwir11", ("ST_B10",)),
    ("lwir", ("ST_B6",)),
    ("qa_pixel", ("QA_PIXEL", "qa")),
)
_LANDSAT_SR = ("blue", "green", "red", "nir08", "swir16", "swir22")
_LANDSAT_THERMAL = {5: "lwir", 7: "lwir", 8: "lwir11", 9: "lwir11"}  # C2 ST band per platform

CONSTELLATIONS: dict[str, Constellation] = {
    "sentinel-2": Constellation(
        name="sentinel-2",
        collections=("sentinel-2-l2a",),
        platforms=("sentinel-2a", "sentinel-2b", "sentinel-2c", "sentinel-2d"),
        resolution_m=10,
        bands=("blue", "green", "red", "nir", "nir08", "swir16", "swir22", "scl"),
        qa_band="scl",
        aliases=_S2_ALIASES,
    ),
    **{
        f"landsat-{n}": Constellation(
            name=f"landsat-{n}",
            collections=("landsat-c2-l2",),
            platforms=(f"landsat-{n}",),
            resolution_m=30,
            bands=(*_LANDSAT_SR, _LANDSAT_THERMAL[n], "qa_pixel"),
            qa_band="qa_pixel",
            grid_anchor_m=15.0,
            thermal_band=_LANDSAT_THERMAL[n],
            aliases=_LANDSAT_ALIASES,
        )
        for n in (5, 7, 8, 9)
    },
}


def get_constellation(name: str) -> Constellation:
    """Look up a constellation by name, raising `InputError('constellations', ...)` when unknown."""
    try:
        return CONSTELLATIONS[name]
    except KeyError:
        raise InputError(
            "constellations",
            f"unknown constellation {name!r}; expected one of {', '.join(CONSTELLATIONS)}",
        ) from None


def parse_constellations(value: str | list[str] | tuple[str, ...]) -> list[Constellation]:
    """Accept 'sentinel-2,landsat-8' or a list; return constellations in the given order, deduplicated."""
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
    names = [n for n in names if n]
    if not names:
        raise InputError("constellations", "expected at least one constellation name")
    out: list[Constellation] = []
    for n in names:
        c = get_constellation(n)
        if c not in out:
            out.append(c)
    return out


def constellation_of_platform(platform: str) -> str | None:
    """Map a STAC `platform` value (e.g. 'sentinel-2b', 'LANDSAT_8') to a constellation name."""
    p = platform.strip().lower().replace("_", "-")
    for c in CONSTELLATIONS.values():
        if p in c.platforms:
            return c.name
    return None
