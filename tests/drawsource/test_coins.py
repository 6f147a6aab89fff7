"""CoinPlayer and FaultPlan without HTTP: shapes, repeatability and frequencies.

Frequency checks allow 5 binomial standard deviations, so with the fixed seeds
used they are deterministic, and a wrong probability of even a few percent fails.
"""

from __future__ import annotations

import math
import threading
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drawsource.coins import CoinPlayer, FaultPlan, to_flip_string
from drawsource.config import DrawSourceConfig

SIGMAS = 5


def within_binomial(successes: int, trials: int, p: float) -> bool:
    """Whether ``successes`` is within SIGMAS binomial standard deviations of ``trials * p``."""
    sd = math.sqrt(trials * p * (1 - p))
    return abs(successes - trials * p) <= SIGMAS * sd


def test_draw_has_the_configured_number_of_zero_one_ints() -> None:
    player = CoinPlayer((0.3, 0.7), (0.5, 0.5), flips=13, seed=1)
    for _ in range(50):
        flips = player.draw()
        assert len(flips) == 13
        assert all(type(f) is int and f in (0, 1) for f in flips)


def test_same_seed_gives_the_same_stream() -> None:
    a = CoinPlayer((0.3, 0.7), (0.5, 0.5), flips=10, seed=123)
    b = CoinPlayer((0.3, 0.7), (0.5, 0.5), flips=10, seed=123)
    assert [a.draw_with_coin() for _ in range(100)] == [b.draw_with_coin() for _ in range(100)]


def test_different_or_no_seed_gives_a_different_stream() -> None:
    first = CoinPlayer((0.5,), (1.0,), flips=10, seed=1)
    other = CoinPlayer((0.5,), (1.0,), flips=10, seed=2)
    unseeded = CoinPlayer((0.5,), (1.0,), flips=10)
    stream = [first.draw() for _ in range(30)]
    # 300 fair flips agreeing by chance has probability 2**-300.
    assert stream != [other.draw() for _ in range(30)]
    assert stream != [unseeded.draw() for _ in range(30)]


def test_from_config_uses_coins_weights_flips_and_seed() -> None:
    config = DrawSourceConfig(coins=(0.0, 1.0), weights=(0.0, 1.0), flips=4, seed=9)
    player = CoinPlayer.from_config(config)
    # Only the always-heads coin has weight, so every draw is known in advance.
    assert [player.draw_with_coin() for _ in range(5)] == [(1, [1, 1, 1, 1])] * 5


def test_certain_coins_give_certain_flips() -> None:
    player = CoinPlayer((0.0, 1.0), (0.5, 0.5), flips=8, seed=5)
    for _ in range(200):
        coin, flips = player.draw_with_coin()
        assert flips == [coin] * 8


def test_coins_are_picked_with_their_weights() -> None:
    weights = (0.2, 0.5, 0.3)
    player = CoinPlayer((0.3, 0.5, 0.7), weights, flips=1, seed=2024)
    n = 20_000
    picks = Counter(player.draw_with_coin()[0] for _ in range(n))
    assert set(picks) == {0, 1, 2}
    for coin, weight in enumerate(weights):
        assert within_binomial(picks[coin], n, weight), (coin, picks[coin], n * weight)


def test_each_coin_lands_heads_with_its_probability() -> None:
    coins = (0.3, 0.7)
    flips_per_draw = 10
    player = CoinPlayer(coins, (0.5, 0.5), flips=flips_per_draw, seed=77)
    heads = [0, 0]
    trials = [0, 0]
    for _ in range(10_000):
        coin, flips = player.draw_with_coin()
        heads[coin] += sum(flips)
        trials[coin] += len(flips)
    for coin, p in enumerate(coins):
        assert within_binomial(heads[coin], trials[coin], p), (coin, heads[coin] / trials[coin])


def test_overall_heads_match_the_mixture() -> None:
    coins = (0.2, 0.9)
    weights = (0.75, 0.25)
    n_flips = 10
    n_draws = 10_000
    player = CoinPlayer(coins, weights, flips=n_flips, seed=31)
    total = sum(sum(player.draw()) for _ in range(n_draws))
    # Heads in one draw: mean n*E[p]; variance n*E[p(1-p)] + n^2*Var(p) (law of total variance).
    mean_p = sum(w * p for w, p in zip(weights, coins, strict=True))
    var_p = sum(w * p * p for w, p in zip(weights, coins, strict=True)) - mean_p**2
    within = sum(w * p * (1 - p) for w, p in zip(weights, coins, strict=True))
    var_draw = n_flips * within + n_flips**2 * var_p
    expected = n_draws * n_flips * mean_p
    assert abs(total - expected) <= SIGMAS * math.sqrt(n_draws * var_draw)


def test_concurrent_callers_share_one_stream_of_whole_draws() -> None:
    seed, threads, per_thread = 99, 8, 250
    player = CoinPlayer((0.3, 0.7), (0.5, 0.5), flips=10, seed=seed)
    results: list[tuple[int, list[int]]] = []
    results_lock = threading.Lock()

    def work() -> None:
        mine = [player.draw_with_coin() for _ in range(per_thread)]
        with results_lock:
            results.extend(mine)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    reference = CoinPlayer((0.3, 0.7), (0.5, 0.5), flips=10, seed=seed)
    expected = [reference.draw_with_coin() for _ in range(threads * per_thread)]

    def key(item: tuple[int, list[int]]) -> tuple[int, ...]:
        return (item[0], *item[1])

    assert sorted(map(key, results)) == sorted(map(key, expected))


@settings(max_examples=50, deadline=None)
@given(
    data=st.data(),
    n_coins=st.integers(min_value=1, max_value=5),
    flips=st.integers(min_value=1, max_value=50),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_any_valid_setting_gives_draws_of_the_right_shape(
    data: st.DataObject, n_coins: int, flips: int, seed: int
) -> None:
    unit = st.floats(min_value=0.0, max_value=1.0)
    coins = tuple(data.draw(st.lists(unit, min_size=n_coins, max_size=n_coins)))
    weights = data.draw(st.lists(unit, min_size=n_coins, max_size=n_coins))
    if sum(weights) == 0:
        weights[0] = 1.0
    config = DrawSourceConfig(coins=coins, weights=tuple(weights), flips=flips, seed=seed)
    player = CoinPlayer.from_config(config)
    for _ in range(5):
        coin, drawn = player.draw_with_coin()
        assert config.weights[coin] > 0
        assert len(drawn) == flips
        assert set(drawn) <= {0, 1}


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_fault_rates_of_zero_and_one_are_exact(rate: float) -> None:
    plan = FaultPlan(error_rate=rate, slow_rate=rate, seed=4)
    rolls = [plan.roll() for _ in range(2000)]
    assert rolls == [(rate == 1.0, rate == 1.0)] * 2000


def test_fault_rates_are_applied_independently() -> None:
    error_rate, slow_rate, n = 0.25, 0.1, 20_000
    plan = FaultPlan(error_rate=error_rate, slow_rate=slow_rate, seed=8)
    rolls = [plan.roll() for _ in range(n)]
    fails = sum(f for f, _ in rolls)
    stalls = sum(s for _, s in rolls)
    both = sum(f and s for f, s in rolls)
    assert within_binomial(fails, n, error_rate)
    assert within_binomial(stalls, n, slow_rate)
    assert within_binomial(both, n, error_rate * slow_rate)


def test_seeded_fault_plans_repeat() -> None:
    a = FaultPlan(0.5, 0.5, seed=3)
    b = FaultPlan(0.5, 0.5, seed=3)
    assert [a.roll() for _ in range(200)] == [b.roll() for _ in range(200)]


def test_flip_string_maps_one_to_heads() -> None:
    assert to_flip_string([1, 0, 0, 1, 1]) == "HTTHH"
    assert to_flip_string([]) == ""
