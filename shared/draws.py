"""Parsing of draws (runs of flips) into heads and trials counts, and their aggregation.

A draw arrives as a flip string (``"HTTH"``, any case), a list of 0/1 flips, or
the original EM-Coins draw API's AWS API Gateway proxy response
(``{"statusCode": 200, "body": "[1, 0, ...]"}``). Everything here is pure.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from shared.errors import InvalidDrawError

_HEADS = frozenset("Hh")
_TAILS = frozenset("Tt")


def parse_flip_string(flips: Any, *, index: int | None = None) -> tuple[int, int]:
    """Return ``(heads, trials)`` for one flip string such as ``"HTTH"``."""
    where = _where(index)
    if not isinstance(flips, str):
        raise InvalidDrawError(f"{where} is not a string of H/T flips", index=index)
    if not flips:
        raise InvalidDrawError(f"{where} is empty", index=index)
    heads = 0
    for position, char in enumerate(flips):
        if char in _HEADS:
            heads += 1
        elif char not in _TAILS:
            raise InvalidDrawError(
                f"{where} has {char!r} at position {position}; only H and T are flips",
                index=index,
            )
    return heads, len(flips)


def parse_flip_list(flips: Any, *, index: int | None = None) -> tuple[int, int]:
    """Return ``(heads, trials)`` for a list of 0/1 flips (1 is heads)."""
    where = _where(index)
    if not isinstance(flips, list):
        raise InvalidDrawError(f"{where} is not a list of 0/1 flips", index=index)
    if not flips:
        raise InvalidDrawError(f"{where} is empty", index=index)
    heads = 0
    for position, value in enumerate(flips):
        # bool is an int subclass; true/false are not flips in this format.
        if type(value) is not int or value not in (0, 1):
            raise InvalidDrawError(
                f"{where} has {value!r} at position {position}; only 0 and 1 are flips",
                index=index,
            )
        heads += value
    return heads, len(flips)


def parse_draw_payload(payload: Any, *, index: int | None = None) -> tuple[int, int]:
    """Return ``(heads, trials)`` for one decoded JSON answer of a draw source.

    Accepts ``{"flips": "HTTH"}``, ``{"flips": [1, 0, 0, 1]}`` and the API Gateway
    proxy shape ``{"statusCode": 200, "body": "[1, 0, 0, 1]"}``.
    """
    where = _where(index)
    if not isinstance(payload, dict):
        raise InvalidDrawError(f"{where} is not a JSON object", index=index)
    if "flips" in payload:
        flips = payload["flips"]
        if isinstance(flips, str):
            return parse_flip_string(flips, index=index)
        return parse_flip_list(flips, index=index)
    if "body" in payload:
        status = payload.get("statusCode", 200)
        if status != 200:
            raise InvalidDrawError(f"{where} has statusCode {status!r}", index=index)
        body = payload["body"]
        if isinstance(body, str):
            try:
                body = json.loads(body)
            except ValueError as exc:
                raise InvalidDrawError(f"{where} has a body that is not JSON", index=index) from exc
        if isinstance(body, dict):
            return parse_draw_payload(body, index=index)
        return parse_flip_list(body, index=index)
    raise InvalidDrawError(f"{where} has neither 'flips' nor 'body'", index=index)


def parse_flip_strings(draws: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Return heads and trials arrays for a sequence of flip strings."""
    pairs = [parse_flip_string(flips, index=i) for i, flips in enumerate(draws)]
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    heads, trials = zip(*pairs, strict=True)
    return np.asarray(heads, dtype=np.int64), np.asarray(trials, dtype=np.int64)


def aggregate_counts(pairs: Iterable[Sequence[int]]) -> list[list[int]]:
    """Collapse ``(heads, trials)`` pairs into sorted ``[heads, trials, count]`` rows."""
    tally: dict[tuple[int, int], int] = {}
    for heads, trials in pairs:
        key = (int(heads), int(trials))
        tally[key] = tally.get(key, 0) + 1
    return [[h, n, c] for (h, n), c in sorted(tally.items())]


def expand_counts(rows: Iterable[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`aggregate_counts`: heads and trials arrays, one entry per draw."""
    rows = [tuple(r) for r in rows]
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    heads, trials, counts = (np.asarray(c, dtype=np.int64) for c in zip(*rows, strict=True))
    return np.repeat(heads, counts), np.repeat(trials, counts)


def _where(index: int | None) -> str:
    return "draw" if index is None else f"draw {index}"
