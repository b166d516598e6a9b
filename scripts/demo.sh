#!/usr/bin/env bash
# Install oxeo-flows into ./.venv and run the main job offline on the built-in sample data:
# sample catalog -> water flow (extract, predict, time series) -> CSV time series on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/oxeo-flows sample-data demo
.venv/bin/oxeo-flows run water \
    --param aoi=demo/aoi.geojson --param catalog=demo/catalog.json \
    --param start_date=2024-01-01 --param end_date=2024-06-30
.venv/bin/oxeo-flows export timeseries --format csv
