"""Pure coin playing: pick a hidden coin by weight, then flip it; no HTTP here."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from drawsource.config import DrawSourceConfig

# Mixed into the seed of the fault generator so that injected faults never
# consume numbers from the draw stream: the draws served stay the same
# whatever the error and slow rates are.
_FAULT_STREAM = 0xFA17


class CoinPlayer:
    """Plays draws from hidden coins; safe to share between threads.

    With a ``seed`` the sequence of draws is repeatable; concurrent callers each
    get a whole draw from that sequence, in some order.
    """

    def __init__(
        self,
        coins: Sequence[float],
        weights: Sequence[float],
        flips: int,
        seed: int | None = None,
    ) -> None:
        self.coins = np.asarray(coins, dtype=float)
        self.weights = np.asarray(weights, dtype=float)
        self.flips = int(flips)
        self._rng = np.random.default_rng(seed)
        # One draw takes two calls on the generator; the lock keeps them together.
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: DrawSourceConfig) -> CoinPlayer:
        """A player of the config's coins, weights, flips and seed."""
        return cls(config.coins, config.weights, config.flips, config.seed)

    def draw_with_coin(self) -> tuple[int, list[int]]:
        """Return the index of the coin picked and its flips (1 is heads)."""
        with self._lock:
            coin = int(self._rng.choice(len(self.coins), p=self.weights))
            uniforms = self._rng.random(self.flips)
        # U < p has probability p, and is never true for p = 0 nor false for p = 1.
        flips = (uniforms < self.coins[coin]).astype(np.int64).tolist()
        return coin, flips

    def draw(self) -> list[int]:
        """Return one draw: the flips of a randomly picked coin (1 is heads)."""
        return self.draw_with_coin()[1]


class FaultPlan:
    """Decides, per request, whether to fail it or stall it; safe to share between threads."""

    def __init__(self, error_rate: float, slow_rate: float, seed: int | None = None) -> None:
        self.error_rate = float(error_rate)
        self.slow_rate = float(slow_rate)
        self._rng = np.random.default_rng(None if seed is None else [seed, _FAULT_STREAM])
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: DrawSourceConfig) -> FaultPlan:
        """A plan with the config's error and slow rates and seed."""
        return cls(config.error_rate, config.slow_rate, config.seed)

    def roll(self) -> tuple[bool, bool]:
        """Return ``(fail, stall)`` for one request, each with its own rate, independently."""
        with self._lock:
            fail_u, stall_u = self._rng.random(2)
        # Strict < so that a rate of 0 never fires and a rate of 1 always does.
        return bool(fail_u < self.error_rate), bool(stall_u < self.slow_rate)


def to_flip_string(flips: Sequence[int]) -> str:
    """``[1, 0, 1]`` -> ``"HTH"``."""
    return "".join("H" if flip else "T" for flip in flips)
