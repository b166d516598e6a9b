"""Bearer-token authentication of the results API; tokens are never stored, logged or echoed.

The server knows only `sha256:<64 hex digits>` hashes of the tokens it accepts (the `api_token_hashes`
setting). Tokens must be long random strings (at least 32 characters of the RFC 6750 token alphabet,
e.g. `python -c "import secrets; print(secrets.token_urlsafe(32))"`), so an unsalted fast hash is as safe
as a slow salted one against guessing and keeps each request cheap. A presented token is hashed and
compared with every configured hash in constant time (`hmac.compare_digest`, no early exit).

Policy (`auth_required`): with hashes configured, every data route needs `Authorization: Bearer <token>`;
without any, the server may only bind to a loopback address unless the operator explicitly passes
`--insecure-no-auth`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Sequence

from oxeo_flows.errors import InputError

SETTING = "api_token_hashes"
SECRET_PREFIX = "secret:"
MIN_TOKEN_LENGTH = 32
_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")  # RFC 6750 b64token


def hash_token(token: str) -> str:
    """The `sha256:<hex>` line for `token`; InputError (without the value) when it is not a usable token."""
    if len(token) < MIN_TOKEN_LENGTH or not _TOKEN_RE.fullmatch(token):
        raise InputError(
            "token",
            f"expected at least {MIN_TOKEN_LENGTH} characters of letters, digits and -._~+/ "
            '(value not shown); make one: python -c "import secrets; print(secrets.token_urlsafe(32))"',
        )
    return "sha256:" + hashlib.sha256(token.encode("ascii")).hexdigest()


def parse_token_hashes(
    values: str | Sequence[str], resolve_secret: Callable[[str], str] | None = None
) -> tuple[str, ...]:
    """Validated, deduplicated hash lines from the `api_token_hashes` setting.

    An entry `secret:NAME` is replaced by the lines (whitespace/comma separated) of that secret, read with
    `resolve_secret(entry)`. A malformed entry raises InputError naming the setting and the entry's
    position, never its value (it could be a token pasted by mistake).
    """
    entries = [x for x in re.split(r"[\s,]+", values) if x] if isinstance(values, str) else list(values)
    out: list[str] = []
    for i, entry in enumerate(entries, 1):
        lines = [entry]
        if entry.startswith(SECRET_PREFIX):
            if resolve_secret is None:
                raise InputError(SETTING, f"entry {i} is a secret reference, which this context cannot read")
            lines = [x for x in re.split(r"[\s,]+", resolve_secret(entry)) if x]
        for line in lines:
            if not _HASH_RE.fullmatch(line):
                raise InputError(
                    SETTING,
                    f"entry {i} is not 'sha256:<64 lowercase hex digits>' (value not shown); store token "
                    "hashes, not tokens: `oxeo-flows serve --hash-token < token.txt` prints the line",
                )
            if line not in out:
                out.append(line)
    return tuple(out)


def token_matches(token: str, hashes: Sequence[str]) -> bool:
    """Whether `token` hashes to one of `hashes`, compared in constant time."""
    presented = ("sha256:" + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()).encode()
    ok = False
    for h in hashes:
        ok |= hmac.compare_digest(presented, h.encode())
    return ok


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server local (`localhost`, 127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another host name: assume it is reachable from elsewhere


def auth_required(host: str, hashes: Sequence[str], insecure_no_auth: bool) -> bool:
    """Whether the server must check tokens; InputError when a public bind has no tokens to check."""
    if hashes:
        return True
    if is_loopback(host) or insecure_no_auth:
        return False
    raise InputError(
        SETTING,
        f"binding to {host} (not a loopback address) needs at least one token hash: set {SETTING} "
        f"(OXEO_{SETTING.upper()} or {SETTING} in oxeo.toml) to lines printed by `oxeo-flows serve "
        "--hash-token`, or pass --insecure-no-auth to serve without authentication",
    )
