"""How the replicates of one stage of an analysis are split into chunks for the workers.

The step that starts a stage runs the first replicates itself, to time them, and keeps
them as chunk 0; the others go out in chunks sized to a target time. The layout is stored
with the stage, so that every worker, and a redelivered step, sees the same chunks.
Results never depend on it: each replicate's random stream comes from its index alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def chunk_size(seconds_per_replicate: float, *, target_seconds: float, largest: int) -> int:
    """Replicates per chunk for chunks of about ``target_seconds``: at least 1, at most
    ``largest``."""
    if seconds_per_replicate <= 0:
        return largest
    return max(1, min(largest, int(target_seconds / seconds_per_replicate)))


@dataclass(frozen=True)
class ChunkLayout:
    """``replicates`` indices 0..B-1: chunk 0 holds the first ``first``, each later chunk
    ``size`` (the last one what is left)."""

    replicates: int
    first: int
    size: int

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.replicates or self.size < 1:
            raise ValueError(f"no such layout: {self}")

    @property
    def chunks(self) -> int:
        """How many chunks cover the replicates."""
        return 1 + math.ceil((self.replicates - self.first) / self.size)

    def indices(self, chunk: int) -> range:
        """The replicate indices of one chunk."""
        if not 0 <= chunk < self.chunks:
            raise ValueError(f"chunk {chunk} is not one of the {self.chunks} chunks")
        if chunk == 0:
            return range(self.first)
        start = self.first + (chunk - 1) * self.size
        return range(start, min(self.replicates, start + self.size))

    def to_json(self) -> dict[str, int]:
        """The JSON form, stored with the stage."""
        return {"replicates": self.replicates, "first": self.first, "size": self.size}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChunkLayout:
        """Read back :meth:`to_json`."""
        return cls(int(data["replicates"]), int(data["first"]), int(data["size"]))
