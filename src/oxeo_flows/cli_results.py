"""Command-line subcommands for the results database: `aoi`, `db`, `runs`, `export`, `plot`.

oxeo-flows aoi add FILE [--id-column C] [--name-column C] [--label L ...] [--label-column C] [--set S]
oxeo-flows aoi list [--id ID] [--name TEXT] [--label L] [--bbox W,S,E,N] [--set S] [--format F]
oxeo-flows aoi show ID
oxeo-flows aoi remove ID [--cascade]
oxeo-flows aoi set add|remove|delete|list ...
oxeo-flows db upgrade | db current
oxeo-flows runs [--limit N] [--id RUN_ID]
oxeo-flows export timeseries [--aoi ID|set:NAME] [--format csv|json|parquet|geojson] [-o FILE]
oxeo-flows plot ID [-o FILE.png]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from oxeo_flows.errors import InputError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def _engine(args: argparse.Namespace) -> Engine:
    from oxeo_flows import store
    from oxeo_flows.settings import load_settings

    return store.connect(load_settings(database_url=args.database_url).database_url)


def _aoi_ids(engine: Engine, values: list[str] | None) -> list[str] | None:
    """Expand `set:NAME` among AOI ids; None = all AOIs."""
    if not values:
        return None
    from oxeo_flows import store
    from oxeo_flows.aoi import SET_PREFIX

    ids: list[str] = []
    for v in values:
        for part in (p.strip() for p in v.split(",")):
            if part.startswith(SET_PREFIX):
                members = [a.id for a in store.get_aois(engine, [part])]
                if not members:
                    raise InputError("--aoi", f"unknown or empty AOI set {part.removeprefix(SET_PREFIX)!r}")
                ids += members
            elif part:
                ids.append(part)
    return list(dict.fromkeys(ids))


def cmd_aoi(args: argparse.Namespace) -> int:
    from oxeo_flows import aoi_registry as reg

    engine = _engine(args)
    try:
        if args.action == "add":
            aois = reg.read_aoi_file(
                args.file,
                id_column=args.id_column,
                name_column=args.name_column,
                label_column=args.label_column,
                labels=args.label or [],
                repair=args.repair,
            )
            reg.add_aois(engine, aois, set_name=args.set)
            where = f" (set {args.set})" if args.set else ""
            print(f"added or updated {len(aois)} AOI(s){where}: {', '.join(a.id for a in aois)}")
        elif args.action == "list":
            bbox = reg.parse_bbox(args.bbox, "--bbox") if args.bbox else None
            recs = reg.list_aois(
                engine, ids=args.id, name=args.name, label=args.label, bbox=bbox, set_name=args.set
            )
            if args.format == "geojson":
                print(json.dumps({"type": "FeatureCollection", "features": [r.to_feature() for r in recs]}))
            elif args.format == "json":
                print(json.dumps([_summary(r) for r in recs], indent=2))
            else:
                print(f"{'id':<32} {'name':<32} {'area km²':>12}  labels")
                for r in recs:
                    print(f"{r.id:<32} {r.name[:32]:<32} {r.area_m2 / 1e6:>12.3f}  {','.join(r.labels)}")
                print(f"{len(recs)} AOI(s)")
        elif args.action == "show":
            rec = reg.get_aoi(engine, args.id)
            if rec is None:
                raise InputError("ID", f"no AOI with id {args.id!r}")
            feature = rec.to_feature()
            feature["properties"]["observations"] = reg.observation_count(engine, rec.id)
            print(json.dumps(feature, indent=2))
        elif args.action == "remove":
            n = reg.remove_aoi(engine, args.id, cascade=args.cascade)
            print(f"removed AOI {args.id}" + (f" and its {n} time-series rows" if n else ""))
        return 0
    finally:
        engine.dispose()


def _summary(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": r.name,
        "labels": r.labels,
        "area_m2": r.area_m2,
        "bbox": list(r.bbox),
    }


def cmd_aoi_set(args: argparse.Namespace) -> int:
    from oxeo_flows import aoi_registry as reg

    engine = _engine(args)
    try:
        if args.set_action == "add":
            reg.add_to_set(engine, args.name, args.ids, description=args.description or "")
            print(f"set {args.name}: added {len(args.ids)} AOI(s)")
        elif args.set_action == "remove":
            print(f"set {args.name}: removed {reg.remove_from_set(engine, args.name, args.ids)} AOI(s)")
        elif args.set_action == "delete":
            reg.delete_set(engine, args.name)
            print(f"deleted set {args.name} (its AOIs stay)")
        else:
            for s in reg.list_sets(engine):
                print(f"{s['name']:<32} {s['members']:>6} AOI(s)  {s['description']}")
        return 0
    finally:
        engine.dispose()


def cmd_db(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from oxeo_flows import migrate
    from oxeo_flows.settings import load_settings

    url = load_settings(database_url=args.database_url).database_url
    if args.db_action == "upgrade":
        engine = _engine(args)  # connect() upgrades
    else:
        engine = sa.create_engine(url)
    try:
        print(f"database revision {migrate.current(engine) or 'none'}; newest {migrate.head()}")
    finally:
        engine.dispose()
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from oxeo_flows import store

    engine = _engine(args)
    try:
        if args.id:
            run = store.get_model_run(engine, args.id)
            if run is None:
                raise InputError("--id", f"no model run {args.id!r}")
            out = {**run, "extraction_log": store.extraction_log(engine, args.id)}
            print(json.dumps(out, indent=2, default=str))
            return 0
        for r in store.model_runs(engine, limit=args.limit):
            took = f"{r['duration_s']:.1f} s" if r["duration_s"] is not None else "-"
            print(
                f"{r['id']}  {r['started_at']:%Y-%m-%d %H:%M:%S}Z  {r['flow']:<10} {r['state']:<9} "
                f"{took:>9}  {r['model'] or '-'}  {','.join(r['aoi_ids'])[:40]}"
            )
        return 0
    finally:
        engine.dispose()


def cmd_export(args: argparse.Namespace) -> int:
    from oxeo_flows import exports, store

    engine = _engine(args)
    try:
        ids = _aoi_ids(engine, args.aoi)
        rows = store.query_observations(
            engine, ids, args.constellation, model=args.model, columns=store.TIMESERIES_FIELDS
        )
        if args.harmonised:
            rows = store.harmonise(rows)
        geoms = {}
        if args.format == "geojson":
            geoms = {a.id: a.geometry for a in store.get_aois(engine, sorted({r["aoi_id"] for r in rows}))}
        exports.export(rows, args.format, args.output, geoms, stdout=sys.stdout)
    finally:
        engine.dispose()
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from oxeo_flows import aoi_registry as reg
    from oxeo_flows import store
    from oxeo_flows.exports import check_output_path
    from oxeo_flows.plot import timeseries_png

    engine = _engine(args)
    try:
        rec = reg.get_aoi(engine, args.id)
        if rec is None:
            raise InputError("ID", f"no AOI with id {args.id!r}")
        rows = store.query_observations(
            engine, [args.id], args.constellation, model=args.model, columns=store.TIMESERIES_FIELDS
        )
    finally:
        engine.dispose()
    out = Path(args.output or f"{args.id}.png")
    check_output_path(out)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(timeseries_png(rows, f"{rec.name} ({rec.id})"))
    tmp.replace(out)
    print(f"wrote {out} ({len(rows)} observations)")
    return 0


def add_parsers(sub: Any) -> None:
    """Register the subcommands on the main parser's subparsers."""
    from oxeo_flows.exports import FORMATS

    def db_option(p: argparse.ArgumentParser) -> None:
        p.add_argument("--database-url", help="SQLAlchemy URL (default: settings)")

    a = sub.add_parser("aoi", help="the AOI registry: add, list, show, remove, sets")
    a_sub = a.add_subparsers(dest="action", required=True)
    add = a_sub.add_parser("add", help="add or update AOIs from a GeoJSON / GeoPackage / Shapefile")
    add.add_argument("file")
    add.add_argument("--id-column", help="column holding the AOI ids")
    add.add_argument("--name-column", help="column holding the AOI names")
    add.add_argument("--label", action="append", help="label for every AOI of the file (repeatable)")
    add.add_argument("--label-column", help="column of comma-separated labels")
    add.add_argument("--set", help="also add the AOIs to this named set (e.g. chosen)")
    add.add_argument("--repair", action="store_true", help="fix invalid polygons with make_valid")
    lst = a_sub.add_parser("list", help="list / search AOIs")
    lst.add_argument("--id", action="append", help="AOI id (repeatable)")
    lst.add_argument("--name", help="case-insensitive substring of the name")
    lst.add_argument("--label")
    lst.add_argument("--bbox", help="west,south,east,north in degrees")
    lst.add_argument("--set", help="members of this set")
    lst.add_argument("--format", choices=["table", "json", "geojson"], default="table")
    show = a_sub.add_parser("show", help="one AOI as GeoJSON")
    show.add_argument("id")
    rm = a_sub.add_parser("remove", help="delete an AOI (refused while it has time series)")
    rm.add_argument("id")
    rm.add_argument("--cascade", action="store_true", help="also delete its time-series rows")
    for p in (add, lst, show, rm):
        db_option(p)
        p.set_defaults(func=cmd_aoi)
    st = a_sub.add_parser("set", help="named sets of AOIs (use as a flow's aoi: set:NAME)")
    st_sub = st.add_subparsers(dest="set_action", required=True)
    s_add = st_sub.add_parser("add", help="add AOIs to a set (created if new)")
    s_add.add_argument("name")
    s_add.add_argument("ids", nargs="+")
    s_add.add_argument("--description")
    s_rm = st_sub.add_parser("remove", help="remove AOIs from a set")
    s_rm.add_argument("name")
    s_rm.add_argument("ids", nargs="+")
    s_del = st_sub.add_parser("delete", help="delete a set (its AOIs stay)")
    s_del.add_argument("name")
    s_ls = st_sub.add_parser("list", help="list sets")
    for p in (s_add, s_rm, s_del, s_ls):
        db_option(p)
        p.set_defaults(func=cmd_aoi_set)

    d = sub.add_parser("db", help="database schema: upgrade to the newest revision, or show the current one")
    d.add_argument("db_action", choices=["upgrade", "current"])
    db_option(d)
    d.set_defaults(func=cmd_db)

    r = sub.add_parser("runs", help="model runs recorded by the flows (newest first)")
    r.add_argument("--limit", type=int, default=20)
    r.add_argument("--id", help="one run, with its extraction log, as JSON")
    db_option(r)
    r.set_defaults(func=cmd_runs)

    e = sub.add_parser("export", help="export results")
    e.add_argument("what", choices=["timeseries"])
    e.add_argument("--aoi", action="append", help="AOI id or set:NAME (repeatable)")
    e.add_argument("--constellation")
    e.add_argument("--model", help="model name (any version) or key, e.g. mndwi or mndwi-v1")
    e.add_argument("--format", choices=FORMATS, default="csv")
    e.add_argument(
        "--harmonised",
        action="store_true",
        help="one row per AOI and day: the best observation of any sensor",
    )
    e.add_argument("--output", "-o", help="file to write (default: standard output; required for parquet)")
    db_option(e)
    e.set_defaults(func=cmd_export)

    pl = sub.add_parser("plot", help="PNG of an AOI's water area over time")
    pl.add_argument("id")
    pl.add_argument("--output", "-o", help="PNG file (default: ID.png)")
    pl.add_argument("--constellation")
    pl.add_argument("--model")
    db_option(pl)
    pl.set_defaults(func=cmd_plot)
