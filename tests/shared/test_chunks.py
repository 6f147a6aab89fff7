"""Chunk layouts cover each replicate once, and chunk sizes keep to their bounds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.chunks import ChunkLayout, chunk_size


@given(st.integers(1, 5000).flatmap(
    lambda b: st.tuples(st.just(b), st.integers(1, b), st.integers(1, 700))))
def test_the_chunks_cover_every_replicate_once_in_order(args):
    replicates, first, size = args
    layout = ChunkLayout(replicates, first, size)
    seen = [i for chunk in range(layout.chunks) for i in layout.indices(chunk)]
    assert seen == list(range(replicates))
    assert len(layout.indices(0)) == first
    assert all(1 <= len(layout.indices(c)) <= size for c in range(1, layout.chunks))
    assert ChunkLayout.from_json(layout.to_json()) == layout


def test_a_layout_names_its_chunks():
    layout = ChunkLayout(10, 2, 3)
    assert layout.chunks == 4
    assert [list(layout.indices(c)) for c in range(4)] == [[0, 1], [2, 3, 4], [5, 6, 7], [8, 9]]
    assert ChunkLayout(5, 5, 100).chunks == 1
    with pytest.raises(ValueError):
        layout.indices(4)
    with pytest.raises(ValueError):
        ChunkLayout(5, 0, 1)


def test_chunks_are_sized_to_the_target_within_bounds():
    assert chunk_size(0.01, target_seconds=1.0, largest=1000) == 100
    assert chunk_size(5.0, target_seconds=1.0, largest=1000) == 1
    assert chunk_size(1e-6, target_seconds=1.0, largest=1000) == 1000
    assert chunk_size(0.0, target_seconds=1.0, largest=50) == 50
