"""Specific exceptions raised by the domain code, each naming what is wrong and where."""

from __future__ import annotations


class EMCoinsError(Exception):
    """Base class for the project's own errors."""


class ConfigError(EMCoinsError, ValueError):
    """A setting read from the environment is missing or malformed."""


class InvalidDrawError(EMCoinsError, ValueError):
    """A draw (a run of flips) is not a non-empty H/T string or 0/1 list.

    ``index`` is the draw's position in its job (or in the list given), so a
    message can name the first bad draw.
    """

    def __init__(self, message: str, *, index: int | None = None):
        super().__init__(message)
        self.index = index
