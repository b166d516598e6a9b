"""Time-series exports: CSV, JSON, Parquet and GeoJSON, from `store.query_observations` rows.

Every format carries the same columns (`EXPORT_COLUMNS`) with the same meaning: `datetime` is the
acquisition time in UTC (ISO 8601 with `Z` in text formats, a UTC timestamp in Parquet), `solar_day` a
date, areas in m², fractions 0-1. GeoJSON writes one Feature per observation with its AOI's geometry
(lon/lat), the flat layout GIS tools animate by time (e.g. QGIS' temporal controller).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any

from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from oxeo_flows.errors import InputError

FORMATS = ("csv", "json", "parquet", "geojson")
EXPORT_COLUMNS = [
    "aoi_id",
    "datetime",
    "constellation",
    "water_area_m2",
    "valid_fraction",
    "cloud_fraction",
    "usable",
    "water_px",
    "valid_px",
    "cloud_px",
    "nodata_px",
    "total_px",
    "pixel_size_m",
    "solar_day",
    "model",
]
# `model_run_id` is left out on purpose: the same observations export byte-identically whichever run
# wrote them (reruns, incremental runs); the run is in the database and the API.


def iso_utc(v: datetime) -> str:
    """A naive-UTC datetime as ISO 8601 with `Z` (microseconds only when present)."""
    return v.isoformat(timespec="microseconds" if v.microsecond else "seconds") + "Z"


def _json_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return iso_utc(v)
    if isinstance(v, date):
        return v.isoformat()
    return v


def records(
    rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = EXPORT_COLUMNS
) -> list[dict[str, Any]]:
    """Rows as plain JSON-ready records with `columns` (default: the export columns), in order."""
    out = []
    for r in rows:
        rec = {**r, "datetime": r["acquired_at"]}
        out.append({c: _json_value(rec.get(c)) for c in columns})
    return out


def write_csv(
    rows: Sequence[Mapping[str, Any]],
    out: IO[str],
    columns: Sequence[str] = EXPORT_COLUMNS,
    lineterminator: str = "\r\n",
) -> None:
    """CSV with a header of `columns`; None as an empty field."""
    w = csv.writer(out, lineterminator=lineterminator)
    w.writerow(columns)
    for rec in records(rows, columns):
        w.writerow(["" if rec[c] is None else rec[c] for c in columns])


def write_json(rows: Sequence[Mapping[str, Any]], out: IO[str]) -> None:
    json.dump(records(rows), out, indent=2)
    out.write("\n")


def write_geojson(
    rows: Sequence[Mapping[str, Any]], geometries: Mapping[str, BaseGeometry], out: IO[str]
) -> None:
    """One Feature per observation; `geometries` maps AOI id -> lon/lat geometry (missing: null)."""
    features = []
    for rec in records(rows):
        geom = geometries.get(rec["aoi_id"])
        features.append(
            {
                "type": "Feature",
                "id": f"{rec['aoi_id']}/{rec['datetime']}/{rec['constellation']}/{rec['model']}",
                "geometry": mapping(geom) if geom is not None else None,
                "properties": rec,
            }
        )
    json.dump({"type": "FeatureCollection", "features": features}, out)
    out.write("\n")


def parquet_table(rows: Sequence[Mapping[str, Any]]) -> Any:
    """A typed pyarrow Table: timestamp[us, UTC], date32, float64, int64, bool, string."""
    import pyarrow as pa

    schema = pa.schema(
        [
            ("aoi_id", pa.string()),
            ("datetime", pa.timestamp("us", tz="UTC")),
            ("constellation", pa.string()),
            ("water_area_m2", pa.float64()),
            ("valid_fraction", pa.float64()),
            ("cloud_fraction", pa.float64()),
            ("usable", pa.bool_()),
            ("water_px", pa.int64()),
            ("valid_px", pa.int64()),
            ("cloud_px", pa.int64()),
            ("nodata_px", pa.int64()),
            ("total_px", pa.int64()),
            ("pixel_size_m", pa.float64()),
            ("solar_day", pa.date32()),
            ("model", pa.string()),
        ]
    )
    assert schema.names == EXPORT_COLUMNS
    cols: dict[str, list[Any]] = {c: [] for c in EXPORT_COLUMNS}
    for r in rows:
        rec = {**r, "datetime": r["acquired_at"]}
        for c in EXPORT_COLUMNS:
            cols[c].append(rec.get(c))
    return pa.table(cols, schema=schema)


def check_output_path(output: str | Path) -> None:
    """InputError('--output') unless `output` can be written: an existing, writable folder, not a folder."""
    path = Path(output)
    if path.is_dir():
        raise InputError("--output", f"expected a file name, got the directory {path}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(
            "--output", f"expected a file in an existing directory, got {path} ({parent} missing)"
        )


def export(
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    output: str | Path | None,
    geometries: Mapping[str, BaseGeometry] | None = None,
    stdout: IO[str] | None = None,
) -> None:
    """Write `rows` as `fmt` to the file `output` (atomically: temp file then rename) or to `stdout`."""
    if fmt not in FORMATS:
        raise InputError("--format", f"expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "parquet" and output is None:
        raise InputError("--output", "Parquet is binary: give a file with --output")
    if output is not None:
        check_output_path(output)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        path = Path(output)  # type: ignore[arg-type]
        tmp = path.with_name(path.name + ".tmp")
        pq.write_table(parquet_table(rows), tmp)
        tmp.replace(path)
        return
    buf = io.StringIO()
    if fmt == "csv":
        write_csv(rows, buf)
    elif fmt == "json":
        write_json(rows, buf)
    else:
        write_geojson(rows, geometries or {}, buf)
    if output is None:
        assert stdout is not None
        stdout.write(buf.getvalue())
        return
    path = Path(output)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(buf.getvalue(), newline="" if fmt == "csv" else None)
    tmp.replace(path)
