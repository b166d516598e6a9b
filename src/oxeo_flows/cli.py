"""The `oxeo-flows` command line.

    oxeo-flows flows                                  list flows and their parameters
    oxeo-flows run FLOW --param key=value ...         run a flow (values parsed as JSON when they parse)
    oxeo-flows sample-data DIR                        write the offline sample catalog and AOI
    oxeo-flows aoi add|list|show|remove|set ...                the AOI registry (see cli_results.py)
    oxeo-flows db upgrade|current / oxeo-flows runs            schema migrations, model runs
    oxeo-flows export timeseries [--aoi ID|set:NAME] [--format csv|json|parquet|geojson] [-o FILE]
    oxeo-flows plot ID [-o FILE.png]                           water area over time
    oxeo-flows up [--port N] [--detach] / oxeo-flows down      local Prefect server + worker + deployments
    oxeo-flows secrets set NAME [--from-env VAR]               store a Prefect Secret block
    oxeo-flows alert-on-failure --block NAME                   Prefect automation: notify on failed runs
    oxeo-flows graph FLOW [--format mermaid|dot] [--output F] [--param k=v ...]

Bad input exits with status 2 and one line `error: <parameter>: <what was expected>`.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from oxeo_flows import cli_results
from oxeo_flows.api.cli import add_serve_parser
from oxeo_flows.errors import InputError, OxeoError
from oxeo_flows.exports import EXPORT_COLUMNS  # noqa: F401  (re-exported for callers)


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


def _usage_error(prog: str, message: str) -> InputError:
    """An argparse complaint as a one-line `InputError` naming the argument (no usage block)."""
    import re

    hint = f"(see `{prog} --help`)"
    if m := re.fullmatch(r"argument (\S+?): (.*)", message, re.S):
        return InputError(m[1], f"{m[2]} {hint}")
    if m := re.fullmatch(r"the following arguments are required: (.*)", message, re.S):
        return InputError(m[1], f"required, not given {hint}")
    if m := re.fullmatch(r"unrecognized arguments: (.*)", message, re.S):
        return InputError(m[1], f"unrecognized argument(s) {hint}")
    return InputError(prog, f"{message} {hint}")


def _raise_usage_errors(parser: argparse.ArgumentParser) -> None:
    """Make `parser` and its subcommand parsers raise `InputError` instead of printing usage and exiting 2."""

    def error(message: str) -> NoReturn:
        raise _usage_error(parser.prog, message)

    parser.error = error  # type: ignore[method-assign]
    for action in parser._actions:
        choices = action.choices if isinstance(action.choices, dict) else {}
        for sub in choices.values():
            if isinstance(sub, argparse.ArgumentParser) and sub is not parser:
                _raise_usage_errors(sub)


def _check_catalog_token(value: Any) -> None:
    from oxeo_flows.flows.secrets import PREFIX

    if value is not None and not (isinstance(value, str) and value.startswith(PREFIX)):
        raise InputError(
            "catalog_token",
            f"expected a reference '{PREFIX}<block name>' (parameters are shown in the UI; store the token "
            "with `oxeo-flows secrets set NAME`), got a plain value (not shown)",
        )


def _nearest_existing(path: Any) -> Any:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _check_local_dir(parameter: str, path: Any, what: str) -> None:
    """`path` is, or can be created as, a writable directory (for the archive root)."""
    import os

    if path.exists() and not path.is_dir():
        raise InputError(parameter, f"expected a directory for {what}, got the file {path}")
    base = _nearest_existing(path)
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        raise InputError(
            parameter, f"expected a writable place for {what} {path}; {base} is not a writable directory"
        )


def _preflight_storage(storage: str) -> None:
    """A local archive root must be usable; remote ones are not probed (credentials live on the workers)."""
    from pathlib import Path

    import fsspec

    protocol, path = fsspec.core.split_protocol(storage)
    if protocol in (None, "file", "local"):
        _check_local_dir("storage", Path(path).expanduser(), "the archive root")


def _preflight_database(database_url: str) -> None:
    """The (resolved) database URL names a supported backend whose driver is installed and, for a
    server, answers; a SQLite file's folder must be writable. Creates nothing."""
    import os
    from pathlib import Path

    import sqlalchemy as sa

    from oxeo_flows.settings import DATABASE_BACKENDS

    try:
        url = sa.engine.make_url(database_url)
    except sa.exc.ArgumentError:
        raise InputError("database_url", "expected a SQLAlchemy URL (value not shown)") from None
    backend = url.get_backend_name()
    if backend not in DATABASE_BACKENDS:
        raise InputError("database_url", f"expected a {' or '.join(DATABASE_BACKENDS)} URL, got {backend!r}")
    shown = url.render_as_string(hide_password=True)
    if backend == "sqlite":
        if url.database in (None, "", ":memory:"):
            return
        db = Path(url.database).expanduser()
        if db.exists():
            if not db.is_file() or not os.access(db, os.R_OK | os.W_OK):
                raise InputError("database_url", f"expected a readable, writable SQLite file, got {db}")
            return
        _check_local_dir("database_url", db.parent, "the SQLite database")
        return
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 10})
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise InputError("database_url", f"no driver for {shown}: {exc}") from None
    try:
        with engine.connect():
            pass
    except sa.exc.SQLAlchemyError as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise InputError("database_url", f"expected a reachable database, got {shown}: {reason}") from None
    finally:
        engine.dispose()


def _preflight_catalog(request: Any, settings: Any) -> None:
    """Search the catalog for every constellation and open the first scene's assets' headers, as the
    flow would, so an unreachable catalog, unusable items or a non-raster asset fail before anything
    is written. Later scenes' pixels are only read (and checked) during extraction."""
    import logging

    from oxeo_flows import catalog, pipeline
    from oxeo_flows.errors import SourceError

    logging.disable(logging.ERROR)  # search logs, HTTP retry warnings: here only the verdict may print
    try:
        for const in request.constellations:
            try:
                scenes = pipeline.search_scenes(request, const, settings)
            except SourceError as exc:
                raise InputError("catalog", str(exc)) from None
            if scenes:
                catalog.probe_scene(scenes[0])
    finally:
        logging.disable(logging.NOTSET)


def cmd_run(args: argparse.Namespace) -> int:
    """Validate every input (parameters, settings, AOIs, database, storage, catalog), then run the flow."""
    from prefect.exceptions import ParameterTypeError

    from oxeo_flows import catalog, graph, pipeline, store
    from oxeo_flows.flows import FLOWS, secrets
    from oxeo_flows.settings import flow_overrides, load_settings

    if args.flow not in FLOWS:
        raise InputError("FLOW", f"unknown flow {args.flow!r}; expected one of {', '.join(FLOWS)}")
    fl: Any = FLOWS[args.flow]
    params = parse_params(args.param or [])
    valid = _flow_params(fl)
    unknown = sorted(set(params) - set(valid))
    if unknown:
        raise InputError("--param", f"unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(valid)}")
    missing = [n for n, p in valid.items() if p.default is inspect.Parameter.empty and n not in params]
    if missing:
        raise InputError("--param", f"missing required parameter(s): {', '.join(missing)}")
    # Validate everything up front so bad input fails fast and writes nothing.
    _check_catalog_token(params.get("catalog_token"))
    settings = secrets.resolve_settings(load_settings(**flow_overrides(params)))
    _preflight_database(settings.database_url)
    request = pipeline.build_request(
        params["aoi"],
        params["start_date"],
        params["end_date"],
        params.get("constellations", "sentinel-2"),
        params.get("model", "mndwi"),
        settings,
        store.aoi_lookup(settings.database_url),
        model_params=params.get("model_params"),
    )
    # Hand the flow the dates as validated here: pydantic would read `start_date=20240101` (JSON
    # number) as a Unix time and fail only after starting Prefect.
    params["start_date"], params["end_date"] = request.start, request.end
    validate = getattr(fl, "validate_parameters", None)  # Prefect's own check, without starting a run
    if validate is not None:
        try:
            validate(params)
        except ParameterTypeError as exc:
            raise InputError("--param", " ".join(str(exc).split())) from None
    if args.runner or args.dask_address or args.dask_workers is not None:
        from oxeo_flows.flows.runners import make_task_runner

        runner_settings = load_settings(
            task_runner=args.runner or ("dask" if args.dask_address or args.dask_workers else None),
            dask_address=args.dask_address,
            dask_workers=args.dask_workers,
        )
        fl = fl.with_options(task_runner=make_task_runner(runner_settings))
    _preflight_storage(settings.storage)
    with catalog.reuse_searches():  # the flow reuses the pre-flight's search results
        if "extract" in graph.STEPS.get(args.flow, ("extract",)):
            _preflight_catalog(request, settings)
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


def cmd_up(args: argparse.Namespace) -> int:
    from oxeo_flows import stack

    state = stack.up(port=args.port, work_pool=args.pool, worker=not args.no_worker)
    print(f"Prefect UI: {state.ui_url}   (API {state.api_url})")
    print(f"work pool {state.work_pool}; deployments: {', '.join(f'{k}/{k}' for k in state.deployments)}")
    print(f"logs: {state.log_dir}; state: {stack.state_file()}")
    if args.detach:
        print("running in the background; stop it with `oxeo-flows down`")
        return 0
    print("press Ctrl-C to stop")
    stack.wait_forever(state)
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    from oxeo_flows import stack

    state = stack.down()
    print("nothing recorded by `oxeo-flows up`" if state is None else f"stopped the stack on {state.ui_url}")
    return 0


def cmd_secrets(args: argparse.Namespace) -> int:
    import getpass

    from oxeo_flows.flows import secrets

    if args.from_env:
        value = os.environ.get(args.from_env, "")
        if not value:
            raise InputError("--from-env", f"environment variable {args.from_env} is empty or unset")
    elif sys.stdin.isatty():
        value = getpass.getpass(f"value of secret {args.name}: ")
    else:
        value = sys.stdin.read().rstrip("\n")
    secrets.set_secret(args.name, value)
    print(f"stored Prefect Secret block {args.name!r}; reference it as 'secret:{args.name}'")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from oxeo_flows import integrity, store
    from oxeo_flows.settings import load_settings

    settings = load_settings(storage=args.storage, database_url=args.database_url)
    lookup_db = store.aoi_lookup(settings.database_url)  # read-only probe: do not create a database
    engine = (
        store.connect(settings.database_url)
        if lookup_db(["-"]) is not None and _db_exists(settings)
        else None
    )
    findings = integrity.check_all(settings.storage, engine, repair=args.repair)
    for f in findings:
        print(f)
    bad = integrity.problems(findings)
    print(
        f"{len(bad)} problem(s), {sum(f.repaired for f in findings)} repaired, "
        f"{sum(f.severity == 'note' for f in findings)} note(s)"
    )
    return 1 if bad else 0


def _db_exists(settings: Any) -> bool:
    url = settings.database_url
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        return os.path.exists(url.removeprefix("sqlite:///"))
    return True


def cmd_alert(args: argparse.Namespace) -> int:
    from oxeo_flows.flows.automations import create_failure_automation

    automation_id = create_failure_automation(args.block, args.name)
    print(f"automation {args.name} ({automation_id}) notifies block {args.block!r} on failed/crashed runs")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    import shutil
    import subprocess

    from oxeo_flows import graph

    if args.flow not in graph.STEPS:
        raise InputError("FLOW", f"unknown flow {args.flow!r}; expected one of {', '.join(graph.STEPS)}")
    g = _request_graph(args.flow, parse_params(args.param)) if args.param else graph.static_graph(args.flow)
    text = graph.to_mermaid(g) if args.format == "mermaid" else graph.to_dot(g)
    if not args.output:
        print(text, end="")
        return 0
    out = args.output
    if args.format == "dot" and out.endswith((".png", ".svg", ".pdf")):
        dot = shutil.which("dot")
        src = out.rsplit(".", 1)[0] + ".dot"
        with open(src, "w") as f:
            f.write(text)
        if dot is None:
            print(f"Graphviz `dot` not found: wrote {src} instead of {out} (render it with `dot -T...`)")
            return 0
        subprocess.run([dot, f"-T{out.rsplit('.', 1)[1]}", src, "-o", out], check=True)
    else:
        with open(out, "w") as f:
            f.write(text)
    print(f"wrote {out}")
    return 0


def _request_graph(flow: str, params: dict[str, Any]) -> Any:
    from oxeo_flows import graph, pipeline, store
    from oxeo_flows.settings import flow_overrides, load_settings
    from oxeo_flows.tiling import tiles_for_geometry

    settings = load_settings(**{**flow_overrides(params), "catalog_token": None})
    req = pipeline.build_request(
        params.get("aoi"),
        params.get("start_date"),
        params.get("end_date"),
        params.get("constellations", "sentinel-2"),
        params.get("model", "mndwi"),
        settings,
        store.aoi_lookup(settings.database_url),
        model_params=params.get("model_params"),
    )
    units: list[Any] = []
    if "extract" in graph.STEPS[flow]:
        for const in req.constellations:
            units += pipeline.plan(req, const, pipeline.search_scenes(req, const, settings), settings).units
    archives = [(t.id, c.name) for t in req.tiles for c in req.constellations]
    aoi_tiles = {a.id: [t.id for t in tiles_for_geometry(a.geometry, settings.tile_size_m)] for a in req.aois}
    return graph.request_graph(flow, units, archives, aoi_tiles)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oxeo-flows", description="Water monitoring pipelines on Prefect 3")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("flows", help="list flows and their parameters").set_defaults(func=cmd_flows)
    r = sub.add_parser("run", help="run a flow")
    r.add_argument("flow")
    r.add_argument("--param", "-p", action="append", metavar="KEY=VALUE")
    r.add_argument("--runner", choices=["threads", "dask"], help="task runner (default: settings)")
    r.add_argument("--dask-address", help="run tasks on an existing Dask scheduler (tcp://host:8786)")
    r.add_argument("--dask-workers", type=int, help="workers of a local Dask cluster")
    r.set_defaults(func=cmd_run)
    s = sub.add_parser("sample-data", help="write the built-in synthetic sample catalog")
    s.add_argument("dir")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_sample_data)
    cli_results.add_parsers(sub)
    u = sub.add_parser("up", help="start a local Prefect server, work pool, deployments and worker")
    u.add_argument("--port", type=int, default=4200)
    u.add_argument("--pool", default="oxeo-process")
    u.add_argument("--no-worker", action="store_true", help="do not start a process worker")
    u.add_argument("--detach", action="store_true", help="return at once; stop later with `down`")
    u.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop what `up` started").set_defaults(func=cmd_down)
    sec = sub.add_parser("secrets", help="manage Prefect Secret blocks")
    sec_sub = sec.add_subparsers(dest="action", required=True)
    ss = sec_sub.add_parser("set", help="store a secret (value from stdin, a prompt, or --from-env)")
    ss.add_argument("name")
    ss.add_argument("--from-env", metavar="VAR", help="read the value from this environment variable")
    ss.set_defaults(func=cmd_secrets)
    ck = sub.add_parser("check", help="verify the archive stores and the database")
    ck.add_argument("--repair", action="store_true", help="fix what can be fixed without guessing")
    ck.add_argument("--storage")
    ck.add_argument("--database-url")
    ck.set_defaults(func=cmd_check)
    al = sub.add_parser("alert-on-failure", help="create the failure-notification automation")
    al.add_argument("--block", required=True, help="name of a saved Prefect notification block")
    al.add_argument("--name", default="oxeo-flows-failure-alert")
    al.set_defaults(func=cmd_alert)
    gr = sub.add_parser("graph", help="write a flow's task graph (Mermaid or Graphviz DOT)")
    gr.add_argument("flow")
    gr.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    gr.add_argument("--output", "-o", help="file (.mmd, .dot; .png/.svg with --format dot renders via `dot`)")
    gr.add_argument("--param", "-p", action="append", metavar="KEY=VALUE", help="draw a concrete request")
    gr.set_defaults(func=cmd_graph)
    add_serve_parser(sub)  # results API
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; bad input prints one line `error: <parameter>: <message>` and returns 2."""
    _offline_prefect_defaults()
    parser = build_parser()
    _raise_usage_errors(parser)
    try:
        args = parser.parse_args(argv)
        return int(args.func(args))
    except OxeoError as exc:
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(exc))  # one line, no NUL
        print(f"error: {text}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `oxeo-flows export timeseries | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
