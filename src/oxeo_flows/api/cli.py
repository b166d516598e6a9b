"""`oxeo-flows serve`: run the read-only results API with uvicorn (docs at /docs).

oxeo-flows serve [--host H] [--port N] [--database-url URL] [--insecure-no-auth]
oxeo-flows serve --hash-token < token.txt        print the `sha256:<hex>` line for api_token_hashes
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from oxeo_flows.errors import InputError

SECRET_PREFIX = "secret:"


def add_serve_parser(sub: Any) -> None:
    """Add the `serve` subcommand to the `oxeo-flows` subparsers `sub`."""
    s = sub.add_parser(
        "serve",
        help="serve the results read-only over HTTP (OpenAPI docs at /docs)",
        description="Serve AOIs and time series read-only over HTTP. Binding to a non-loopback address needs "
        "token hashes in the api_token_hashes setting (or --insecure-no-auth).",
    )
    s.add_argument("--host", help="address to bind (default: setting api_host, 127.0.0.1)")
    s.add_argument("--port", type=int, help="TCP port (default: setting api_port, 8000)")
    s.add_argument("--database-url", help="results database (default: setting database_url)")
    s.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="allow serving without tokens on a non-loopback address (anyone who can reach it reads all)",
    )
    s.add_argument(
        "--hash-token",
        action="store_true",
        help="read a token from stdin, print its hash line for api_token_hashes, and exit",
    )
    s.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"], default="info")
    s.set_defaults(func=cmd_serve)


def _read_token() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("token: ")
    return sys.stdin.read().strip()


def _resolve_secret(field: str) -> Any:
    def resolve(reference: str) -> str:
        from oxeo_flows.flows.secrets import resolve_reference

        return resolve_reference(field, reference)

    return resolve


def cmd_serve(args: argparse.Namespace) -> int:
    """Hash a token (`--hash-token`), or check the auth policy, open the database and serve until stopped."""
    from oxeo_flows.api import auth

    if args.hash_token:
        print(auth.hash_token(_read_token()))
        return 0

    import sqlalchemy as sa
    import uvicorn

    from oxeo_flows.api.app import create_app
    from oxeo_flows.settings import load_settings

    settings = load_settings(database_url=args.database_url, api_host=args.host, api_port=args.port)
    hashes = auth.parse_token_hashes(settings.api_token_hashes, _resolve_secret(auth.SETTING))
    with_auth = auth.auth_required(settings.api_host, hashes, args.insecure_no_auth)
    database_url = settings.database_url
    if database_url.startswith(SECRET_PREFIX):
        database_url = _resolve_secret("database_url")(database_url)
    try:
        shown = sa.engine.make_url(database_url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        raise InputError("database_url", "expected a SQLAlchemy URL (value not shown)") from None
    app = create_app(database_url, hashes if with_auth else (), settings.api_cors_origins)
    host = settings.api_host
    url_host = f"[{host}]" if ":" in host else host
    mode = f"token auth on ({len(hashes)} token hash(es))" if with_auth else "NO authentication"
    if not with_auth and not auth.is_loopback(host):
        mode += " - anyone who can reach this address can read all results"
    print(
        f"serving {shown} read-only on http://{url_host}:{settings.api_port} (docs: /docs); {mode}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=host, port=settings.api_port, log_level=args.log_level, server_header=False)
    return 0
