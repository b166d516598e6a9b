"""Secrets from Prefect Secret blocks: `secret:NAME` references in settings and parameters.

A setting listed in `settings.SECRET_FIELDS` (the database URL, the catalog token) may hold
`secret:NAME` instead of a value - in a flow parameter, an `OXEO_*` environment variable or the TOML file.
The flow resolves it with `Secret.load(NAME)` at run time, so the value never appears in parameters
(which the UI shows), deployments, images or logs. `oxeo-flows secrets set NAME` stores one.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import SecretStr

from oxeo_flows.errors import InputError
from oxeo_flows.settings import SECRET_FIELDS, Settings

PREFIX = "secret:"
_BLOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def check_block_name(name: str) -> str:
    if not _BLOCK_NAME.match(name):
        raise InputError(
            "secret", f"block names are lowercase letters, digits and dashes (max 63), got {name!r}"
        )
    return name


def _plain(value: Any) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return None if value is None else str(value)


def resolve_reference(field: str, value: str) -> str:
    """The secret value for `secret:NAME`; other values are returned unchanged."""
    if not value.startswith(PREFIX):
        return value
    from prefect.blocks.system import Secret

    name = check_block_name(value[len(PREFIX) :])
    try:
        secret: Any = Secret.load(name)
    except ValueError:
        raise InputError(
            field, f"no Prefect Secret block named {name!r} (create it with `oxeo-flows secrets set {name}`)"
        ) from None
    return str(secret.get())


def resolve_settings(settings: Settings) -> Settings:
    """A copy of `settings` with every `secret:NAME` reference in a secret field resolved."""
    update: dict[str, Any] = {}
    for field in SECRET_FIELDS:
        raw = _plain(getattr(settings, field))
        if raw is not None and raw.startswith(PREFIX):
            value = resolve_reference(field, raw)
            update[field] = SecretStr(value) if field == "catalog_token" else value
    return settings.model_copy(update=update) if update else settings


def set_secret(name: str, value: str) -> None:
    """Store (or replace) a Prefect Secret block."""
    from prefect.blocks.system import Secret

    if not value:
        raise InputError("value", "expected a non-empty secret value")
    Secret(value=SecretStr(value)).save(check_block_name(name), overwrite=True)
