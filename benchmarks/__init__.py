"""Benchmark harness for `oxeo_flows` extraction (not a test suite; CI only lints it).

Run from the repository root::

    python -m benchmarks [--repeats N] [--size PX] [--dates N] [--json PATH]

It generates synthetic Sentinel-2-like COGs in a temporary directory and measures, in one process,
`oxeo_flows.extract.load_day` against `odc.stac.load` and plain rasterio windowed reads (aligned grid),
both libraries on a neighbouring-UTM-zone grid, and the archive write / rerun cost of the real pipeline
steps. See `benchmarks/README.md`.
"""
