"""Benchmark harness for `oxeo_flows` (not a test suite; CI only lints it).

Run from the repository root::

    python -m benchmarks [--only extract,models,memory,prefect,rerun,scaling] [--repeats N] [--json PATH]

It measures, side by side and on synthetic or built-in sample data: `oxeo_flows.extract.load_day`
against `odc.stac.load` and plain rasterio reads (aligned grid and a neighbouring UTM zone), the whole
extract step with its archive write against raw decoding, water-model throughput, the peak memory of a
100-date extraction, Prefect's overhead and rerun cost on the `water` flow, and Dask scaling. See
`benchmarks/README.md`. `benchmarks.accuracy` is a separate harness (`python -m benchmarks.accuracy`).
"""
