"""The `oxeo-flows` command line.

    oxeo-flows flows                                  list flows and their parameters
    oxeo-flows run FLOW --param key=value ...         run a flow (values parsed as JSON when they parse)
    oxeo-flows sample-data DIR                        write the offline sample catalog and AOI
    oxeo-flows export timeseries [--aoi ID] [--format csv|json]

Bad input exits with status 2 and one line `error: <parameter>: <what was expected>`.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import os
import sys
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from oxeo_flows.errors import InputError, OxeoError

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


def _offline_prefect_defaults() -> None:
    """No telemetry, generous ephemeral start-up: set before Prefect is imported, unless the user did."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "oxeo_flows")


def parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    """`key=value` pairs; a value is JSON when it parses as JSON, else the raw string."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InputError("--param", f"expected key=value, got {pair!r}")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if key in out:
            raise InputError("--param", f"parameter {key!r} given twice")
        out[key] = value
    return out


def _flow_params(fn: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(fn.fn).parameters)


def cmd_flows(_: argparse.Namespace) -> int:
    from oxeo_flows.flows import FLOWS

    for name, fl in FLOWS.items():
        print(f"{name}: {(getattr(fl, 'description', None) or '').splitlines()[0]}")
        for p in _flow_params(fl).values():
            default = "required" if p.default is inspect.Parameter.empty else f"default {p.default!r}"
            print(f"    {p.name}: {p.annotation} ({default})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from prefect.exceptions import ParameterTypeError

    from oxeo_flows import pipeline, store
    from oxeo_flows.flows import FLOWS
    from oxeo_flows.settings import load_settings

    if args.flow not in FLOWS:
        raise InputError("FLOW", f"unknown flow {args.flow!r}; expected one of {', '.join(FLOWS)}")
    fl = FLOWS[args.flow]
    params = parse_params(args.param or [])
    valid = _flow_params(fl)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise InputError("--param", f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    missing = [n for n, p in valid.items() if p.default is inspect.Parameter.empty and n not in params]
    if missing:
        raise InputError("--param", f"missing required parameter(s): {', '.join(missing)}")
    # Validate everything up front so bad input fails fast and writes nothing.
    settings = load_settings(
        catalog=params.get("catalog"),
        storage=params.get("storage"),
        database_url=params.get("database_url"),
        window=params.get("window"),
        tile_size_m=params.get("tile_size_m"),
    )
    request = pipeline.build_request(
        params["aoi"],
        params["start_date"],
        params["end_date"],
        params.get("constellations", "sentinel-2"),
        params.get("model", "mndwi"),
        settings,
        store.aoi_lookup(settings.database_url),
    )
    # Hand the flow the dates as validated here: pydantic would read `start_date=20240101` (JSON
    # number) as a Unix time and fail only after starting Prefect.
    params["start_date"], params["end_date"] = request.start, request.end
    try:
        result = fl(**params)
    except ParameterTypeError as exc:
        raise InputError("--param", " ".join(str(exc).split())) from None
    print(json.dumps(result, default=str, indent=2))
    return 0


def cmd_sample_data(args: argparse.Namespace) -> int:
    from oxeo_flows.sample_data import write_sample_data

    sample = write_sample_data(args.dir, seed=args.seed)
    print(f"catalog: {sample.catalog}\naoi: {sample.aoi}\ntruth: {sample.truth}")
    return 0


def _json_default(v: Any) -> Any:
    if isinstance(v, datetime):  # stored as naive UTC
        return v.isoformat(timespec="microseconds" if v.microsecond else "seconds") + "Z"
    if isinstance(v, date):
        return v.isoformat()
    return str(v)


def cmd_export(args: argparse.Namespace) -> int:
    from oxeo_flows import store
    from oxeo_flows.settings import load_settings

    settings = load_settings(database_url=args.database_url)
    engine = store.connect(settings.database_url)
    rows = store.query_observations(engine, args.aoi, args.constellation)
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        if args.format == "json":
            data = [
                {"datetime": r["acquired_at"], **{k: r[k] for k in EXPORT_COLUMNS if k in r}} for r in rows
            ]
            json.dump(data, out, default=_json_default, indent=2)
            out.write("\n")
        else:
            w = csv.writer(out)
            w.writerow(EXPORT_COLUMNS)
            for r in rows:
                rec = {
                    **r,
                    "datetime": _json_default(r["acquired_at"]),
                    "solar_day": r["solar_day"].isoformat(),
                }
                w.writerow([rec[c] for c in EXPORT_COLUMNS])
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oxeo-flows", description="Water monitoring pipelines on Prefect 3")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("flows", help="list flows and their parameters").set_defaults(func=cmd_flows)
    r = sub.add_parser("run", help="run a flow")
    r.add_argument("flow")
    r.add_argument("--param", "-p", action="append", metavar="KEY=VALUE")
    r.set_defaults(func=cmd_run)
    s = sub.add_parser("sample-data", help="write the built-in synthetic sample catalog")
    s.add_argument("dir")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_sample_data)
    e = sub.add_parser("export", help="export results")
    e.add_argument("what", choices=["timeseries"])
    e.add_argument("--aoi", action="append", help="AOI id (repeatable)")
    e.add_argument("--constellation")
    e.add_argument("--format", choices=["csv", "json"], default="csv")
    e.add_argument("--output", "-o", help="file to write (default: standard output)")
    e.add_argument("--database-url")
    e.set_defaults(func=cmd_export)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    _offline_prefect_defaults()
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except OxeoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `oxeo-flows export timeseries | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
