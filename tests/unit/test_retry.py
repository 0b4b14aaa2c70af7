"""retry.backoff_delay: exponential steps with jitter, within documented bounds."""

from __future__ import annotations

import random

import pytest
from kubenenc.retry import backoff_delay


class Fixed(random.Random):
    """A Random whose random() always returns ``value``."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 12, 40])
def test_delay_stays_within_half_and_full_step(attempt: int) -> None:
    base, cap = 0.5, 60.0
    step = min(cap, base * 2 ** (attempt - 1))
    rng = random.Random(attempt)
    delays = [backoff_delay(attempt, base, cap, rng) for _ in range(200)]
    assert all(step * 0.5 <= d <= step for d in delays)
    assert max(delays) - min(delays) > step * 0.3  # it is jittered


def test_extremes_of_the_jitter() -> None:
    assert backoff_delay(3, 1.0, 100.0, Fixed(0.0)) == 2.0
    assert backoff_delay(3, 1.0, 100.0, Fixed(0.999999)) == pytest.approx(4.0, rel=1e-5)


def test_steps_double_until_the_cap() -> None:
    lows = [backoff_delay(a, 1.0, 10.0, Fixed(0.0)) for a in range(1, 8)]
    assert lows == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_attempt_zero_is_the_first_step() -> None:
    assert backoff_delay(0, 2.0, 100.0, Fixed(0.0)) == 1.0


def test_huge_attempt_is_capped_not_an_overflow() -> None:
    assert backoff_delay(5000, 1.0, 30.0, Fixed(0.0)) == 15.0


def test_zero_base_means_no_wait() -> None:
    assert backoff_delay(4, 0.0, 10.0) == 0.0


def test_default_rng_is_used_when_none_given() -> None:
    assert 0.5 <= backoff_delay(1, 1.0, 10.0) <= 1.0
