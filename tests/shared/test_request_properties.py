"""Properties of the request parsers and validators, and every limit at its boundary.

A request is valid when its JSON decodes within the body limits (:mod:`api.body`), it has
no key the schema does not declare, the schema loads it and
:func:`shared.limits.limit_errors` finds nothing; the API answers 400 or 422 with the same
details otherwise. The strategies here build requests independently of the code under test
(Teicher's 2K-1 rule and the largest double are written out).
"""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from api.body import field_errors, parse_json
from api.errors import APIError
from shared.config import Settings
from shared.draws import parse_draw_payload
from shared.errors import InvalidDrawError
from shared.limits import limit_errors
from shared.methods import METHODS
from shared.schemas import JobRequestSchema, SourceSchema

SETTINGS = Settings(source_allowlist=("http://127.0.0.1:*", "https://draws.example"))


def request_errors(body: Any, limits: Settings = SETTINGS) -> dict[str, Any]:
    """The ``details`` of the 400 or 422 the API would answer; empty when the request is valid.

    ``body`` is the JSON text of the request, or a value to send as JSON.
    """
    text = body if isinstance(body, str) else json.dumps(body)
    try:
        parsed = parse_json(
            text, max_depth=limits.max_json_depth, max_int_digits=limits.max_int_digits
        )
    except APIError as exc:
        return exc.details
    errors = field_errors(JobRequestSchema, parsed)
    return errors or limit_errors(JobRequestSchema().load(parsed), limits)


# --- valid requests ---------------------------------------------------------------------

flip_strings = st.text(alphabet="HTht", min_size=1, max_size=40)
count_pairs = st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))
source_urls = st.one_of(
    st.integers(1, 65535).map(lambda port: f"http://127.0.0.1:{port}/draw"),
    st.from_regex(r"/[a-z0-9/]{0,12}", fullmatch=True).map(lambda p: f"https://draws.example{p}"),
)


@st.composite
def valid_requests(draw, limits: Settings = SETTINGS) -> dict[str, Any]:
    """Any request the API must accept under ``limits``."""
    kind = draw(st.sampled_from(["source", "draws", "counts"]))
    body: dict[str, Any] = {}
    if kind == "source":
        body["source"] = {"url": draw(source_urls)}
        if draw(st.booleans()):
            body["source"]["draws"] = draw(st.integers(1, limits.max_source_draws))
        pairs = None
    elif kind == "draws":
        body["draws"] = draw(st.lists(flip_strings, min_size=1, max_size=30))
        pairs = {(d.upper().count("H"), len(d)) for d in body["draws"]}
    else:
        body["counts"] = [list(p) for p in draw(st.lists(count_pairs, min_size=1, max_size=30))]
        pairs = {tuple(p) for p in body["counts"]}
    top = limits.max_components
    if pairs is not None:
        # Teicher (1963): K binomials need at least 2K - 1 flips per draw; and K coins
        # cannot be fitted to fewer than K distinct (heads, flips) pairs.
        top = min(top, (max(f for _, f in pairs) + 1) // 2, len(pairs))
    options = {
        "n_components": st.one_of(st.just("auto"), st.integers(1, top)),
        "max_components": st.integers(1, limits.max_components),
        "weights": st.sampled_from(["learn", "equal"]),
        "restarts": st.integers(1, limits.max_restarts),
        "methods": st.permutations(METHODS).flatmap(
            lambda ms: st.integers(1, len(ms)).map(lambda k: list(ms[:k]))
        ),
        "seed": st.one_of(st.none(), st.integers(0, 2**32 - 1)),
    }
    for name, strategy in options.items():
        # The default n_components (2) needs draws of 3 flips or more, two distinct.
        required = name == "n_components" and top < 2
        if required or draw(st.booleans()):
            body[name] = draw(strategy)
    return body


@given(valid_requests())
def test_any_valid_request_loads_and_round_trips(body):
    assert request_errors(body) == {}
    schema = JobRequestSchema()
    data = schema.load(body)
    # Compared in their JSON form, whatever type the schema loads into; absent data
    # fields may dump as null.
    dumped = {
        k: v for k, v in json.loads(json.dumps(schema.dump(data))).items()
        if v is not None or k in body
    }
    for name, value in body.items():
        assert dumped[name] == ({"draws": 30, **value} if name == "source" else value)
    assert dumped["methods"] and dumped["restarts"] >= 1  # defaults filled in
    assert schema.load(dumped) == data


# --- one invalid field ------------------------------------------------------------------

not_int = st.one_of(
    st.floats(allow_nan=False), st.text(max_size=5), st.booleans(), st.none(),
    # Short integers: a long one inside the list would be named at its own, deeper path.
    st.lists(st.integers(-(10**9), 10**9), max_size=2),
)
INVALID = {
    "n_components": st.one_of(
        st.integers(max_value=0),
        st.integers(SETTINGS.max_components + 1, 10**9),
        st.text(max_size=8).filter(lambda s: s != "auto"),
        st.floats(allow_nan=False), st.booleans(), st.none(), st.lists(st.integers(), max_size=2),
    ),
    "max_components": st.one_of(
        st.integers(max_value=0), st.integers(SETTINGS.max_components + 1, 10**9), not_int
    ),
    "restarts": st.one_of(
        st.integers(max_value=0), st.integers(SETTINGS.max_restarts + 1, 10**9), not_int
    ),
    "weights": st.one_of(st.text(max_size=8).filter(lambda s: s not in ("learn", "equal")),
                         st.integers(), st.none()),
    "seed": st.one_of(st.integers(max_value=-1), st.integers(min_value=2**32),
                      st.floats(allow_nan=False), st.text(max_size=5), st.booleans()),
}


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(valid_requests(), st.data())
def test_an_invalid_option_is_named_by_its_path(body, data):
    name = data.draw(st.sampled_from(sorted(INVALID)))
    body = {**body, name: data.draw(INVALID[name])}
    errors = request_errors(body)
    assert name in errors, (body[name], errors)


@given(valid_requests(), st.data())
def test_an_invalid_method_is_named_by_its_path(body, data):
    bad = data.draw(st.text(max_size=6).filter(lambda s: s not in METHODS))
    methods = data.draw(st.permutations([*METHODS, bad]))
    errors = request_errors({**body, "methods": methods})
    assert f"methods.{methods.index(bad)}" in errors
    assert "methods" in request_errors({**body, "methods": []})
    assert "methods" in request_errors({**body, "methods": ["em", "em"]})


@given(st.lists(count_pairs.map(list), min_size=1, max_size=10), st.data())
def test_an_invalid_count_pair_is_named_by_its_path(pairs, data):
    index = data.draw(st.integers(0, len(pairs) - 1))
    bad, path = data.draw(
        st.one_of(
            # heads above flips, negative heads, no flips: the pair as a whole (integers
            # of more than 30 digits would be named at their own path)
            st.integers(1, 10**6).map(lambda n: ([n + 1, n], f"counts.{index}")),
            st.integers(-(10**30) + 1, -1).map(lambda h: ([h, 5], f"counts.{index}")),
            st.integers(-(10**30) + 1, 0).map(lambda n: ([0, n], f"counts.{index}")),
            # a value that is not an integer: that element
            not_int.map(lambda v: ([v, 5], f"counts.{index}.0")),
            not_int.map(lambda v: ([0, v], f"counts.{index}.1")),
            # neither [heads, flips] nor [heads, flips, count]
            st.lists(st.integers(0, 3), max_size=5).filter(lambda p: len(p) not in (2, 3)).map(
                lambda p: (p, f"counts.{index}")
            ),
        )
    )
    pairs = [*pairs[:index], bad, *pairs[index + 1:]]
    errors = request_errors({"counts": pairs, "n_components": 1})
    assert path in errors, (bad, errors)


@given(st.lists(flip_strings, min_size=1, max_size=10), st.data())
def test_an_invalid_flip_string_is_named_by_its_path(draws, data):
    index = data.draw(st.integers(0, len(draws) - 1))
    bad = data.draw(
        st.one_of(
            st.just(""),
            st.text(min_size=1, max_size=10).filter(lambda s: set(s) - set("HTht")),
            st.integers(), st.none(), st.lists(st.sampled_from("HT"), max_size=3),
        )
    )
    draws = [*draws[:index], bad, *draws[index + 1:]]
    errors = request_errors({"draws": draws, "n_components": 1})
    assert f"draws.{index}" in errors, (bad, errors)


@given(
    url=st.one_of(
        st.sampled_from(["ftp://127.0.0.1:21/x", "file:///etc/passwd", "gopher://h/_",
                         "http://169.254.169.254/", "http://localhost:8001/draw",
                         "https://127.0.0.1:8001/draw", "http://draws.example/draw"]),
        st.text(alphabet=string.printable, max_size=30),
        st.integers(), st.none(),
    ),
)
def test_a_refused_source_url_is_named(url):
    assert "source.url" in request_errors({"source": {"url": url}})


@given(st.one_of(st.integers(max_value=0), st.integers(SETTINGS.max_source_draws + 1), not_int))
def test_invalid_source_draws_are_named(draws):
    errors = request_errors({"source": {"url": "http://127.0.0.1:8001/draw", "draws": draws}})
    assert "source.draws" in errors


@given(st.dictionaries(st.sampled_from(["source", "draws", "counts"]),
                       st.just(None), max_size=3).filter(lambda d: len(d) != 1))
def test_exactly_one_data_field_is_required(fields):
    body = {name: {"source": {"url": "http://127.0.0.1:8001/d"}, "draws": ["HT"],
                   "counts": [[1, 2]]}[name] for name in fields}
    assert "exactly one of source, draws or counts" in request_errors(body).get("_request", "")


def unknown_keys(schema) -> st.SearchStrategy[dict[str, int]]:
    """A few keys that ``schema`` does not declare, read from the schema itself."""
    declared = set(schema().fields)
    keys = st.one_of(st.sampled_from(["_schema", "_request", "source.url", "0"]),
                     st.text(min_size=1, max_size=10))
    return st.dictionaries(keys.filter(lambda k: k not in declared), st.integers(-99, 99),
                           min_size=1, max_size=3)


# marshmallow reports errors of a whole object under "_schema": a key a user named so
# must still be reported as itself, at every level.
@given(unknown_keys(JobRequestSchema))
@example({"_schema": 1})
@example({"_schema": 1, "_request": 2})
def test_unknown_fields_are_named(extra):
    errors = request_errors({"counts": [[1, 3]], **extra})
    assert errors == {key: "Unknown field." for key in extra}
    # Alongside the other problems of the request.
    errors = request_errors({"counts": [[3, 1]], **extra})
    assert errors == {"counts.0": "heads (3) cannot exceed flips (1).",
                      **{key: "Unknown field." for key in extra}}


@given(unknown_keys(SourceSchema))
@example({"_schema": 1})
def test_unknown_fields_in_source_are_named(extra):
    errors = request_errors({"source": {"url": "http://127.0.0.1:8001/d", **extra}})
    assert errors == {f"source.{key}": "Unknown field." for key in extra}


# --- bodies beyond the JSON limits ------------------------------------------------------

OPTIONS = [*JobRequestSchema().fields, "colour"]


@given(
    depth=st.integers(1, 3000),
    kind=st.sampled_from(["[", '{"a": ']),
    field=st.sampled_from(OPTIONS),
)
@example(depth=1000, kind="[", field="counts")
@example(depth=1000, kind='{"a": ', field="source")
@example(depth=31, kind="[", field="colour")  # 32 levels with the body's own: the limit
@example(depth=32, kind="[", field="colour")
def test_nesting_beyond_the_limit_is_refused_before_parsing(depth, kind, field):
    close = "]" if kind == "[" else "}"
    text = f'{{"counts": [[1, 3]], "{field}": {kind * depth}1{close * depth}}}'
    errors = request_errors(text)
    # The body's object, then the field's value; counts' own pairs are 3 deep.
    if max(1 + depth, 3) > SETTINGS.max_json_depth:
        assert errors == {"max_json_depth": SETTINGS.max_json_depth}
    else:
        assert errors and "max_json_depth" not in errors  # some field is invalid, by path


def digit_message(digits: int) -> str:
    return f"At most 30 digits in an integer (EMCOINS_MAX_INT_DIGITS); this one has {digits}."


PLACES = {
    "counts.0.1": '{{"counts": [[1, {}]]}}',
    "counts.0.0": '{{"counts": [[{}, 3]]}}',
    "seed": '{{"counts": [[1, 3]], "seed": {}}}',
    "n_components": '{{"counts": [[1, 3]], "n_components": {}}}',
    "source.draws": '{{"source": {{"url": "http://127.0.0.1:8001/d", "draws": {}}}}}',
    "colour.2": '{{"counts": [[1, 3]], "colour": [0, 1, {}]}}',
}


@given(
    digits=st.integers(1, 6000),
    lead=st.integers(1, 9),
    negative=st.booleans(),
    path=st.sampled_from(sorted(PLACES)),
)
@example(digits=401, lead=1, negative=False, path="counts.0.1")  # 10**400 flips
@example(digits=5000, lead=7, negative=False, path="seed")
@example(digits=30, lead=9, negative=True, path="seed")
@example(digits=31, lead=1, negative=False, path="seed")
def test_integers_longer_than_the_limit_are_named_by_path(digits, lead, negative, path):
    number = "-" * negative + str(lead) + "0" * (digits - 1)
    errors = request_errors(PLACES[path].format(number))
    if digits > SETTINGS.max_int_digits:
        assert errors == {path: digit_message(digits)}
    else:
        assert digit_message(digits) not in errors.values()


# The largest double is 1.7976931348623157e308: m·10^e beyond it reads as inf.
@given(mantissa=st.integers(1, 9), exponent=st.integers(-400, 2000),
       path=st.sampled_from(sorted(PLACES)))
@example(mantissa=1, exponent=400, path="counts.0.1")
@example(mantissa=1, exponent=308, path="seed")
@example(mantissa=2, exponent=308, path="seed")
def test_numbers_beyond_the_largest_double_are_named_by_path(mantissa, exponent, path):
    errors = request_errors(PLACES[path].format(f"{mantissa}e{exponent}"))
    finite = exponent < 308 or (exponent == 308 and mantissa == 1)
    assert errors.get(path, "").startswith("Not a finite number") is not finite


# --- the parser of what draw sources answer ---------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12,
)
payloads = st.one_of(
    json_values,
    st.fixed_dictionaries({"flips": json_values}),
    st.fixed_dictionaries({"statusCode": json_values, "body": json_values}),
    st.fixed_dictionaries({"body": json_values.map(json.dumps)}),
)


@given(payloads)
def test_any_source_answer_is_a_draw_or_an_invalid_draw_error(payload):
    try:
        heads, flips = parse_draw_payload(payload, index=7)
    except InvalidDrawError as exc:
        assert exc.index == 7 and str(exc).startswith("draw 7")
    else:
        assert 0 <= heads <= flips and flips >= 1


# --- each limit at its boundary ---------------------------------------------------------

SMALL = Settings(
    max_draws=5, max_flips=8, max_source_draws=4, max_components=3, max_restarts=4,
    source_allowlist=("http://127.0.0.1:*",),
)


@pytest.mark.parametrize(
    ("name", "at_limit", "over", "path", "setting"),
    [
        ("draws per job (draws)", {"draws": ["HT"] * 5}, {"draws": ["HT"] * 6},
         "draws", "EMCOINS_MAX_DRAWS"),
        ("draws per job (counts)", {"counts": [[1, 2]] * 5}, {"counts": [[1, 2]] * 6},
         "counts", "EMCOINS_MAX_DRAWS"),
        ("flips per draw (draws)", {"draws": ["HT", "H" * 8]}, {"draws": ["HT", "H" * 9]},
         "draws.1", "EMCOINS_MAX_FLIPS"),
        ("flips per draw (counts)", {"counts": [[1, 2], [3, 8]]}, {"counts": [[1, 2], [3, 9]]},
         "counts.1.1", "EMCOINS_MAX_FLIPS"),
        ("draws per job (counts with a multiplicity)", {"counts": [[1, 2, 5]]},
         {"counts": [[1, 2, 6]]}, "counts", "EMCOINS_MAX_DRAWS"),
        ("source draws", {"source": {"url": "http://127.0.0.1:8001/d", "draws": 4}},
         {"source": {"url": "http://127.0.0.1:8001/d", "draws": 5}},
         "source.draws", "EMCOINS_MAX_SOURCE_DRAWS"),
        ("n_components", {"counts": [[1, 8]], "n_components": 3},
         {"counts": [[1, 8]], "n_components": 4}, "n_components", "EMCOINS_MAX_COMPONENTS"),
        ("max_components", {"counts": [[1, 8]], "max_components": 3},
         {"counts": [[1, 8]], "max_components": 4}, "max_components", "EMCOINS_MAX_COMPONENTS"),
        ("restarts", {"counts": [[1, 8]], "restarts": 4},
         {"counts": [[1, 8]], "restarts": 5}, "restarts", "EMCOINS_MAX_RESTARTS"),
    ],
)
def test_each_limit_accepts_its_value_and_refuses_one_more(name, at_limit, over, path, setting):
    base = {"n_components": 1, "max_components": 1, "restarts": 1}
    assert request_errors({**base, **at_limit}, SMALL) == {}
    errors = request_errors({**base, **over}, SMALL)
    assert list(errors) == [path], errors
    assert setting in errors[path]


# Rows can only run out before draws when rows are fewer than draws allowed.
FEW_ROWS = Settings(max_rows=3, max_draws=100, max_source_draws=100,
                    source_allowlist=("http://127.0.0.1:*",))


@pytest.mark.parametrize(
    ("at_limit", "over", "path", "setting"),
    [
        ({"counts": [[1, 2, 9], [0, 2], [2, 2]]}, {"counts": [[1, 2, 9], [0, 2], [2, 2], [1, 3]]},
         "counts", "EMCOINS_MAX_ROWS"),
        ({"draws": ["HT", "TT", "HH"]}, {"draws": ["HT", "TT", "HH", "HHT"]},
         "draws", "EMCOINS_MAX_ROWS"),
        # Each fetched draw is a row at most: a source job is held to the same limits.
        ({"source": {"url": "http://127.0.0.1:8001/d", "draws": 3}},
         {"source": {"url": "http://127.0.0.1:8001/d", "draws": 4}},
         "source.draws", "EMCOINS_MAX_ROWS"),
    ],
)
def test_rows_are_limited_apart_from_draws(at_limit, over, path, setting):
    base = {"n_components": 1, "max_components": 1, "restarts": 1}
    assert request_errors({**base, **at_limit}, FEW_ROWS) == {}
    errors = request_errors({**base, **over}, FEW_ROWS)
    assert list(errors) == [path], errors
    assert setting in errors[path]
