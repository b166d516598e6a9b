"""Exception types shared by every layer.

`InputError` is raised for anything a user passed in (a flow parameter, a CLI argument, a catalog item
that does not meet the contract). Its message is one line that names the parameter and what was expected;
the CLI prints it and exits with status 2.
"""

from __future__ import annotations


class OxeoError(Exception):
    """Base class of oxeo-flows errors."""


class InputError(OxeoError, ValueError):
    """Bad user input: `parameter` names the offending parameter, the message says what was expected."""

    def __init__(self, parameter: str, message: str) -> None:
        self.parameter = parameter
        self.detail = message
        super().__init__(f"{parameter}: {message}")


class SourceError(OxeoError):
    """A source (catalog, COG) could not be read after retries."""
