"""Parsing of draws (runs of flips) into heads and trials counts, and their aggregation.

A draw arrives as a flip string (``"HTTH"``, any case), a list of 0/1 flips, or
the original EM-Coins draw API's AWS API Gateway proxy response
(``{"statusCode": 200, "body": "[1, 0, ...]"}``). Everything here is pure.

A source's answer is held to the same limits as a draw sent inline: at most ``max_flips``
flips, JSON nested at most ``max_depth`` deep, and (read by the fetcher) at most
:func:`max_answer_bytes` bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from shared.errors import InvalidDrawError

_HEADS = frozenset("Hh")
_TAILS = frozenset("Tt")
_NOT_A_FLIP = re.compile(r"[^HTht]")
# The most verbose accepted shape spends 3 bytes per flip ("1, " in a JSON list); this
# is room for the envelope around the flips (statusCode, headers, ...).
BYTES_PER_FLIP = 3
ENVELOPE_BYTES = 64 * 1024
DEFAULT_MAX_DEPTH = 32
# A JSON string, escapes included (the unrolled form keeps the regex linear and fast).
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_NESTING = re.compile(r"[\[\]{}]")


def max_answer_bytes(max_flips: int) -> int:
    """Bytes of the longest answer holding a draw of ``max_flips`` flips, in any shape."""
    return BYTES_PER_FLIP * max_flips + ENVELOPE_BYTES


def json_depth(text: str, limit: int) -> int:
    """How deep arrays and objects nest in ``text``, counted up to ``limit + 1`` at most.

    Counted without parsing, so a source cannot make the parser recurse past Python's
    stack (100,000 ``[`` give a RecursionError, not a ValueError).
    """
    depth = deepest = 0
    for bracket in _JSON_NESTING.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


def loads_draw(
    text: str | bytes, *, index: int | None = None, max_depth: int = DEFAULT_MAX_DEPTH
) -> Any:
    """Decode one JSON answer; :class:`InvalidDrawError` if it is not JSON or nests too deep."""
    where = _where(index)
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode(json.detect_encoding(text))
        except (UnicodeDecodeError, LookupError):
            raise InvalidDrawError(f"{where} is not JSON (not UTF-8 text)", index=index) from None
    if json_depth(text, max_depth) > max_depth:
        raise InvalidDrawError(
            f"{where} is JSON nested more than {max_depth} deep (EMCOINS_MAX_JSON_DEPTH)",
            index=index,
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError only if the count above missed a nesting: never let it through.
        raise InvalidDrawError(f"{where} is not JSON", index=index) from None


def parse_draw_answer(
    body: str | bytes,
    *,
    index: int | None = None,
    max_flips: int | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> tuple[int, int]:
    """Return ``(heads, trials)`` for one draw source answer as it came over the wire."""
    payload = loads_draw(body, index=index, max_depth=max_depth)
    return parse_draw_payload(payload, index=index, max_flips=max_flips, max_depth=max_depth)


def parse_flip_string(
    flips: Any, *, index: int | None = None, max_flips: int | None = None
) -> tuple[int, int]:
    """Return ``(heads, trials)`` for one flip string such as ``"HTTH"``."""
    where = _where(index)
    if not isinstance(flips, str):
        raise InvalidDrawError(f"{where} is not a string of H/T flips", index=index)
    _check_length(flips, where, index, max_flips)
    # Scanned by the regex engine: a draw of a million flips takes milliseconds.
    bad = _NOT_A_FLIP.search(flips)
    if bad is not None:
        raise InvalidDrawError(
            f"{where} has {bad.group()!r} at position {bad.start()}; only H and T are flips",
            index=index,
        )
    return flips.count("H") + flips.count("h"), len(flips)


def parse_flip_list(
    flips: Any, *, index: int | None = None, max_flips: int | None = None
) -> tuple[int, int]:
    """Return ``(heads, trials)`` for a list of 0/1 flips (1 is heads)."""
    where = _where(index)
    if not isinstance(flips, list):
        raise InvalidDrawError(f"{where} is not a list of 0/1 flips", index=index)
    _check_length(flips, where, index, max_flips)
    # bool is an int subclass and 1.0 == 1: only exact ints count, so check types first.
    if all(type(value) is int for value in flips):
        heads = flips.count(1)
        if heads + flips.count(0) == len(flips):
            return heads, len(flips)
    for position, value in enumerate(flips):
        if type(value) is not int or value not in (0, 1):
            raise InvalidDrawError(
                f"{where} has {value!r} at position {position}; only 0 and 1 are flips",
                index=index,
            )
    raise AssertionError("unreachable: a flip list with no bad flip was refused")


def parse_draw_payload(
    payload: Any,
    *,
    index: int | None = None,
    max_flips: int | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> tuple[int, int]:
    """Return ``(heads, trials)`` for one decoded JSON answer of a draw source.

    Accepts ``{"flips": "HTTH"}``, ``{"flips": [1, 0, 0, 1]}`` and the API Gateway
    proxy shape ``{"statusCode": 200, "body": "[1, 0, 0, 1]"}``. A draw of more than
    ``max_flips`` flips is refused, as an inline draw is.
    """
    where = _where(index)
    if not isinstance(payload, dict):
        raise InvalidDrawError(f"{where} is not a JSON object", index=index)
    if "flips" in payload:
        flips = payload["flips"]
        if isinstance(flips, str):
            return parse_flip_string(flips, index=index, max_flips=max_flips)
        return parse_flip_list(flips, index=index, max_flips=max_flips)
    if "body" in payload:
        status = payload.get("statusCode", 200)
        if status != 200:
            raise InvalidDrawError(f"{where} has statusCode {status!r}", index=index)
        body = payload["body"]
        if isinstance(body, str):
            try:
                body = loads_draw(body, index=index, max_depth=max_depth)
            except InvalidDrawError as exc:
                raise InvalidDrawError(
                    f"{where} has a body that {str(exc).removeprefix(where + ' ')}", index=index
                ) from exc
        if isinstance(body, dict):
            return parse_draw_payload(body, index=index, max_flips=max_flips, max_depth=max_depth)
        return parse_flip_list(body, index=index, max_flips=max_flips)
    raise InvalidDrawError(f"{where} has neither 'flips' nor 'body'", index=index)


def parse_flip_strings(draws: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Return heads and trials arrays for a sequence of flip strings."""
    pairs = [parse_flip_string(flips, index=i) for i, flips in enumerate(draws)]
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    heads, trials = zip(*pairs, strict=True)
    return np.asarray(heads, dtype=np.int64), np.asarray(trials, dtype=np.int64)


def aggregate_counts(rows: Iterable[Sequence[int]]) -> list[list[int]]:
    """Collapse ``(heads, trials)`` pairs, or ``(heads, trials, count)`` rows standing for
    ``count`` draws each, into sorted ``[heads, trials, count]`` rows."""
    tally: dict[tuple[int, int], int] = {}
    for row in rows:
        key = (int(row[0]), int(row[1]))
        tally[key] = tally.get(key, 0) + (int(row[2]) if len(row) > 2 else 1)
    return [[h, n, c] for (h, n), c in sorted(tally.items())]


def expand_counts(rows: Iterable[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`aggregate_counts`: heads and trials arrays, one entry per draw."""
    rows = [tuple(r) for r in rows]
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    heads, trials, counts = (np.asarray(c, dtype=np.int64) for c in zip(*rows, strict=True))
    return np.repeat(heads, counts), np.repeat(trials, counts)


def _check_length(flips: str | list, where: str, index: int | None, max_flips: int | None) -> None:
    if not flips:
        raise InvalidDrawError(f"{where} is empty", index=index)
    if max_flips is not None and len(flips) > max_flips:
        raise InvalidDrawError(
            f"{where} has {len(flips)} flips; at most {max_flips} flips per draw "
            "(EMCOINS_MAX_FLIPS)",
            index=index,
        )


def _where(index: int | None) -> str:
    return "draw" if index is None else f"draw {index}"
