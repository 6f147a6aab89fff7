"""Request bodies within bounds: size while streaming, JSON depth, integer length, known keys.

Flask's ``request.get_json`` (through the app's JSON provider) and the webargs parser of
:class:`Blueprint` both decode with :func:`parse_json`, so every JSON body a route reads is
held to EMCOINS_MAX_BODY_BYTES, EMCOINS_MAX_JSON_DEPTH and EMCOINS_MAX_INT_DIGITS, and
refused with a JSON error rather than a 500:

- larger than the limit, with or without Content-Length: 413;
- not JSON (syntax, not UTF-8) or nested deeper than the limit: 400, since no field can be
  named before the body is parsed, and the depth must be known before a parser recurses;
- an integer of more digits than the limit, or a number that is not finite (``1e400``,
  ``NaN``): 422 at the value's path, like any other invalid field;
- a key the schema does not declare: 422 at its own path, also when it is ``_schema``
  (which marshmallow reserves for errors of a whole object).
"""

from __future__ import annotations

import io
import itertools
import json
import math
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any

import flask_smorest
from flask import Flask, Request, current_app
from flask.json.provider import DefaultJSONProvider
from marshmallow import RAISE, Schema, ValidationError, fields
from webargs.core import missing
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property

from api.errors import APIError, flatten

UNKNOWN_FIELD = "Unknown field."  # marshmallow's own words for it
INVALID_FIELDS = "Some fields are invalid; see details."
NOT_FINITE = "Not a finite number: NaN, Infinity and numbers beyond 1.8e308 are refused."

# A JSON string, or what is left of the text after an unterminated one. The match cannot
# fail, so the scan stays linear on a body of stray quotes.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _outside_strings(text: str) -> str:
    """JSON ``text`` without its strings: the brackets, numbers and literals."""
    return _STRING.sub("", text)


def _depth(structure: str) -> int:
    """How deeply arrays and objects nest, counted on :func:`_outside_strings`."""
    brackets = _NOT_BRACKET.sub("", structure)
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


class _Refused:
    """Stands in for a number the limits refuse until the parse ends and its path is known."""

    __slots__ = ("message",)

    def __init__(self, message: str):
        self.message = message


def parse_json(raw: bytes | str, *, max_depth: int, max_int_digits: int, **kwargs: Any) -> Any:
    """Decode a JSON body within the limits; ``kwargs`` go to :func:`json.loads`.

    Raises :class:`json.JSONDecodeError` or :class:`UnicodeDecodeError` when ``raw`` is not
    JSON, and :class:`APIError` when it nests deeper than ``max_depth`` (400) or holds an
    integer longer than ``max_int_digits`` or a number that is not finite (422, by path).
    """
    text = raw.decode("utf-8") if isinstance(raw, bytes | bytearray) else raw
    structure = _outside_strings(text)
    depth = _depth(structure)
    if depth > max_depth:
        raise _too_deep(depth, max_depth)
    # Python refuses to convert longer integers (sys.set_int_max_str_digits) with a bare
    # ValueError; count them as too long instead.
    digits_limit = min(max_int_digits, sys.get_int_max_str_digits() or max_int_digits)
    refused: list[_Refused] = []

    def refuse(message: str) -> _Refused:
        refused.append(_Refused(message))
        return refused[-1]

    def parse_int(literal: str) -> int | _Refused:
        digits = len(literal) - literal.startswith("-")
        if digits > digits_limit:
            return refuse(
                f"At most {digits_limit} digits in an integer (EMCOINS_MAX_INT_DIGITS); "
                f"this one has {digits}."
            )
        return int(literal)

    def parse_float(literal: str) -> float | _Refused:
        value = float(literal)
        return value if math.isfinite(value) else refuse(NOT_FINITE)

    hooks: dict[str, Any] = {
        "parse_float": parse_float,
        # NaN, Infinity, -Infinity: Python reads them, JSON has no such numbers.
        "parse_constant": lambda name: refuse(NOT_FINITE),
    }
    # A call back for every integer would triple the time to decode a body of counts:
    # only when some run of digits is too long.
    if re.search(f"[0-9]{{{digits_limit + 1}}}", structure):
        hooks["parse_int"] = parse_int
    try:
        value = json.loads(text, **hooks, **kwargs)
    except RecursionError:
        # Only when EMCOINS_MAX_JSON_DEPTH is set beyond what the decoder can recurse.
        raise _too_deep(depth, max_depth) from None
    if refused:
        raise APIError(422, INVALID_FIELDS, details=dict(_refused_paths(value)))
    return value


def _too_deep(depth: int, max_depth: int) -> APIError:
    return APIError(
        400,
        f"The body nests arrays and objects {depth} deep; "
        f"at most {max_depth} (EMCOINS_MAX_JSON_DEPTH).",
        details={"max_json_depth": max_depth},
    )


def _refused_paths(value: Any) -> Iterator[tuple[str, str]]:
    """``(path, message)`` of each refused number, in document order."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, _Refused):
            yield path or "_request", item.message
        elif isinstance(item, dict | list):
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend(reversed([(f"{path}.{k}" if path else str(k), v) for k, v in pairs]))


def describe_not_json(error: ValueError) -> str:
    """Where and why a body is not JSON, for the ``details`` of a 400."""
    if isinstance(error, UnicodeDecodeError):
        return f"Not UTF-8: {error.reason} at byte {error.start}."
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at line {error.lineno}, column {error.colno}."
    return str(error)


def not_json(error: ValueError) -> APIError:
    """The 400 for a body that does not decode."""
    details = {"_request": describe_not_json(error)}
    return APIError(400, "The body is not valid JSON.", details=details)


# --- keys the schema does not declare -----------------------------------------------------


def split_unknown(schema: Schema | type[Schema], body: Any) -> tuple[Any, dict[str, str]]:
    """``body`` without the keys that ``schema`` (and its nested schemas) do not declare,
    and those keys by path, e.g. ``{"source._schema": "Unknown field."}``.

    Only where the schema refuses unknown keys (``unknown=RAISE``, marshmallow's default);
    values the schema would refuse for their type are left for it to report. ``body`` is
    not changed: the objects checked are copied, the other values shared.
    """
    schema = schema() if isinstance(schema, type) else schema
    found: dict[str, str] = {}
    known = _check_schema(schema, body, "", None, found)
    return known, found


def unknown_fields(schema: Schema | type[Schema], body: Any) -> dict[str, str]:
    """Each key of ``body`` that ``schema`` does not declare, by its path."""
    return split_unknown(schema, body)[1]


def field_errors(schema: Schema | type[Schema], body: Any) -> dict[str, str]:
    """Every problem ``schema`` finds in ``body`` by path, unknown keys named at their own."""
    schema = schema() if isinstance(schema, type) else schema
    known, unknown = split_unknown(schema, body)
    try:
        schema.load(known)
    except ValidationError as exc:
        return {**flatten(exc.messages), **unknown}
    return unknown


def _check_schema(schema: Schema, body: Any, prefix: str, unknown: str | None, found) -> Any:
    if schema.many:
        if not isinstance(body, list):
            return body
        return [
            _check_object(schema, item, f"{prefix}{i}.", unknown, found)
            for i, item in enumerate(body)
        ]
    return _check_object(schema, body, prefix, unknown, found)


def _check_object(schema: Schema, body: Any, prefix: str, unknown: str | None, found) -> Any:
    if not isinstance(body, Mapping):
        return body
    # The keys marshmallow itself accepts when it loads.
    declared = {
        field.data_key if field.data_key is not None else name: field
        for name, field in schema.load_fields.items()
    }
    refuses = (unknown or schema.unknown) == RAISE
    kept = {}
    for key, value in body.items():
        field = declared.get(key)
        if field is not None:
            kept[key] = _check_field(field, value, f"{prefix}{key}.", found)
        elif refuses:
            found[f"{prefix}{key}"] = UNKNOWN_FIELD
        else:
            kept[key] = value
    return kept


def _check_field(field: fields.Field, value: Any, prefix: str, found) -> Any:
    if isinstance(field, fields.Nested):
        return _check_schema(field.schema, value, prefix, field.unknown, found)
    if not _holds_schema(field):
        return value  # e.g. the rows of counts: nothing in them can have keys to check
    if isinstance(field, fields.List) and isinstance(value, list):
        return [_check_field(field.inner, v, f"{prefix}{i}.", found) for i, v in enumerate(value)]
    if isinstance(field, fields.Tuple) and isinstance(value, list):
        checked = [
            _check_field(inner, v, f"{prefix}{i}.", found)
            for i, (inner, v) in enumerate(zip(field.tuple_fields, value, strict=False))
        ]
        return checked + value[len(checked):]
    if isinstance(field, fields.Dict) and isinstance(value, Mapping):
        return {k: _check_field(field.value_field, v, f"{prefix}{k}.", found)
                for k, v in value.items()}
    return value


def _holds_schema(field: fields.Field | None) -> bool:
    """Whether values of ``field`` can contain objects loaded by a schema."""
    if isinstance(field, fields.Nested):
        return True
    if isinstance(field, fields.List):
        return _holds_schema(field.inner)
    if isinstance(field, fields.Tuple):
        return any(_holds_schema(inner) for inner in field.tuple_fields)
    if isinstance(field, fields.Dict):
        return _holds_schema(field.value_field)
    return False


# --- the hooks into Flask and flask-smorest ------------------------------------------------


def _limits(settings: Any) -> dict[str, int]:
    return {"max_depth": settings.max_json_depth, "max_int_digits": settings.max_int_digits}


class BodyParser(FlaskParser):
    """webargs' Flask parser, decoding with :func:`parse_json` and naming unknown keys first."""

    def _raw_load_json(self, req: Request) -> Any:
        if not is_json_request(req):
            return missing
        return parse_json(req.get_data(cache=True), **_limits(current_app.config["SETTINGS"]))

    def _handle_invalid_json_error(self, error, req, *args, **kwargs):
        raise not_json(error) from error

    def load_json(self, req: Request, schema: Schema) -> Any:
        """The parsed body; a 422 that names each unknown key (and every other problem)."""
        body = super().load_json(req, schema)
        if body is not missing and unknown_fields(schema, body):
            raise APIError(422, INVALID_FIELDS, details=field_errors(schema, body))
        return body


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint; its ``arguments`` parse bodies with :class:`BodyParser`."""

    ARGUMENTS_PARSER = BodyParser()


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON provider, decoding (``request.get_json``) within the body limits."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Decode with :func:`parse_json` and the app's settings."""
        return parse_json(s, **_limits(self._app.config["SETTINGS"]), **kwargs)


class _CappedStream(io.RawIOBase):
    """A body of unknown length (chunked), read up to ``limit`` bytes; a byte more is a 413."""

    def __init__(self, stream: Any, limit: int):
        self._stream = stream
        self._limit = limit
        self._read = 0

    def readable(self) -> bool:
        """Always: it is a request body."""
        return True

    def readinto(self, buffer) -> int:
        """Read into ``buffer``; raise 413 past the limit."""
        # Ask for one byte past the limit, so that a body of exactly the limit passes.
        data = self._stream.read(min(len(buffer), self._limit + 1 - self._read))
        self._read += len(data)
        if self._read > self._limit:
            raise RequestEntityTooLarge()
        buffer[: len(data)] = data
        return len(data)


class BodyRequest(Request):
    """Flask's request; a streamed body is held to MAX_CONTENT_LENGTH as it is read."""

    @cached_property
    def stream(self) -> Any:
        """The body stream, capped at MAX_CONTENT_LENGTH also without Content-Length."""
        limit = self.max_content_length
        # Werkzeug caps such a body by stopping at the limit, so that a larger one arrives
        # cut short (and fails as "not JSON"); count a byte past it as the 413 it is.
        if (
            self.content_length is None
            and limit is not None
            and self.environ.get("wsgi.input_terminated")
        ):
            return _CappedStream(self.environ["wsgi.input"], limit)
        return super().stream

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        """A JSON 400 for a body that does not decode (415 stays Flask's)."""
        if e is None:
            return super().on_json_loading_failed(e)
        raise not_json(e) from e


def init_app(app: Flask) -> None:
    """Hold the bodies of ``app``'s requests to the limits (call before the app serves)."""
    app.request_class = BodyRequest
    provider = JSONProvider(app)
    for name in ("ensure_ascii", "sort_keys", "compact", "mimetype"):
        setattr(provider, name, getattr(app.json, name))
    app.json = provider
