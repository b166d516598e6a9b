"""oxeo-flows: water monitoring from STAC catalogs into per-tile zarr archives and AOI time series."""

__version__ = "0.2.0"
