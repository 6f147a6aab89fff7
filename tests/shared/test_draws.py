"""Parsing draws in the three shapes a source may answer, and aggregating counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.draws import (
    aggregate_counts,
    expand_counts,
    json_depth,
    max_answer_bytes,
    parse_draw_answer,
    parse_draw_payload,
    parse_flip_list,
    parse_flip_string,
    parse_flip_strings,
)
from shared.errors import InvalidDrawError

flip_strings = st.text(alphabet="HTht", min_size=1, max_size=200)
flip_lists = st.lists(st.sampled_from([0, 1]), min_size=1, max_size=200)


@given(flip_strings)
def test_flip_string_counts_heads_in_any_case(flips):
    assert parse_flip_string(flips) == (flips.upper().count("H"), len(flips))


@given(flip_lists)
def test_all_three_shapes_agree(flips):
    as_string = "".join("H" if f else "T" for f in flips)
    expected = (sum(flips), len(flips))
    assert parse_draw_payload({"flips": as_string}) == expected
    assert parse_draw_payload({"flips": flips}) == expected
    assert parse_draw_payload({"statusCode": 200, "body": json.dumps(flips)}) == expected


@given(flip_strings, st.integers(min_value=0, max_value=199), st.characters())
def test_any_other_character_is_named(flips, position, char):
    if char in "HTht":
        return
    position = min(position, len(flips))
    bad = flips[:position] + char + flips[position:]
    with pytest.raises(InvalidDrawError) as info:
        parse_flip_string(bad, index=4)
    assert f"draw 4 has {char!r} at position {position}" in str(info.value)
    assert info.value.index == 4


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"flips": ""}, "draw 2 is empty"),
        ({"flips": []}, "draw 2 is empty"),
        ({"flips": [1, 2]}, "draw 2 has 2 at position 1"),
        ({"flips": [1, True]}, "draw 2 has True at position 1"),
        ({"flips": 7}, "draw 2 is not a list of 0/1 flips"),
        ({"statusCode": 500, "body": "[]"}, "draw 2 has statusCode 500"),
        ({"statusCode": 200, "body": "not json"}, "draw 2 has a body that is not JSON"),
        ({"statusCode": 200, "body": "[0, 1, 5]"}, "draw 2 has 5 at position 2"),
        ({"heads": 3}, "draw 2 has neither 'flips' nor 'body'"),
        ([1, 0], "draw 2 is not a JSON object"),
    ],
)
def test_garbage_is_refused_with_the_draw_named(payload, message):
    with pytest.raises(InvalidDrawError, match=message):
        parse_draw_payload(payload, index=2)


def test_flip_list_rejects_non_lists():
    with pytest.raises(InvalidDrawError, match="not a list"):
        parse_flip_list("HT")


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(5, 8)), max_size=60))
def test_aggregate_then_expand_is_a_permutation(pairs):
    rows = aggregate_counts(pairs)
    assert sum(row[2] for row in rows) == len(pairs)
    assert rows == sorted(rows)
    heads, trials = expand_counts(rows)
    assert sorted(zip(heads.tolist(), trials.tolist(), strict=True)) == sorted(pairs)


def test_parse_flip_strings_arrays():
    heads, trials = parse_flip_strings(["HHT", "t", "HhHh"])
    np.testing.assert_array_equal(heads, [2, 0, 4])
    np.testing.assert_array_equal(trials, [3, 1, 4])


def test_an_answer_nested_deeper_than_the_limit_is_invalid_not_a_recursion_error():
    for text in ("[" * 100_000, '{"flips": ' + "[" * 100_000, '{"a": ' * 50_000):
        with pytest.raises(InvalidDrawError, match="draw 6 is JSON nested more than 32 deep"):
            parse_draw_answer(text.encode(), index=6)
    inner = json.dumps({"statusCode": 200, "body": "[" * 100_000})
    with pytest.raises(InvalidDrawError, match="draw 6 has a body that is JSON nested more"):
        parse_draw_answer(inner, index=6)


def test_depth_counts_brackets_outside_strings_only():
    assert json_depth('{"flips": "[[[[{{{{"}', 1) == 1
    assert json_depth('{"a": [[1], {"b": "\\"]]]]"}]}', 10) == 3
    assert json_depth("[" * 40 + "]" * 40, 32) == 33  # counted no further than the limit + 1
    # A body string is a JSON text of its own, held to the same depth.
    answer = json.dumps({"statusCode": 200, "body": json.dumps({"flips": [1, 0]})})
    assert parse_draw_answer(answer, max_depth=2) == (1, 2)
    with pytest.raises(InvalidDrawError, match="draw has a body that is JSON nested more than 1"):
        parse_draw_answer(answer, max_depth=1)


@pytest.mark.parametrize(
    "payload",
    [
        {"flips": "HT" * 50 + "H"},
        {"flips": [1, 0] * 50 + [1]},
        {"statusCode": 200, "body": json.dumps([0] * 101)},
        {"statusCode": 200, "body": json.dumps({"flips": "T" * 101})},
    ],
)
def test_a_draw_over_max_flips_is_refused_in_every_shape(payload):
    with pytest.raises(InvalidDrawError, match="draw 9 has 101 flips; at most 100 flips per draw"):
        parse_draw_answer(json.dumps(payload), index=9, max_flips=100)
    assert parse_draw_payload(payload, index=9)[1] == 101  # no limit unless one is given


def test_a_draw_of_exactly_max_flips_is_accepted():
    assert parse_draw_answer(json.dumps({"flips": [1] * 100}), max_flips=100) == (100, 100)


def test_the_answer_cap_holds_a_max_flips_draw_in_the_most_verbose_shape():
    n = 10_000
    verbose = json.dumps({"statusCode": 200, "headers": {"a": "b"}, "body": json.dumps([1] * n)})
    assert len(verbose) <= max_answer_bytes(n) < len(verbose) + 70_000
    assert parse_draw_answer(verbose, max_flips=n) == (n, n)


@pytest.mark.parametrize(("flips", "bad"), [([1, 1.0], "1.0"), ([0, False], "False"), ([2], "2")])
def test_only_int_zeros_and_ones_are_list_flips(flips, bad):
    with pytest.raises(InvalidDrawError, match=f"has {bad} at position {len(flips) - 1}"):
        parse_flip_list(flips)


def test_answers_that_are_not_json_or_not_text_are_invalid():
    for body in (b"\xff\xfe\xfd", b"{", b""):
        with pytest.raises(InvalidDrawError, match="draw 1 is not JSON"):
            parse_draw_answer(body, index=1)
