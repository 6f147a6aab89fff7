"""Reading Redis replies: the project's clients keep redis-py's default of returning bytes."""

from __future__ import annotations


def text(value: bytes | str) -> str:
    """A reply as a str: bytes decoded as UTF-8, a value already decoded as it is."""
    return value.decode() if isinstance(value, bytes) else value
