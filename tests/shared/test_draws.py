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
