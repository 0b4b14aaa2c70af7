"""When to try again: exponential back-off with full jitter.

Jitter spreads retries of many invocations that failed together (a database blip) so they do
not hit the same dependency again at the same instant.
"""

from __future__ import annotations

import random


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before try ``attempt + 1`` (``attempt`` >= 1 tries done so far).

    A random value in ``[0.5, 1] * min(cap, base * 2 ** (attempt - 1))``: always at least half
    the exponential step, so retries never come back immediately.
    """
    # The exponent is capped so that a task with very many retries cannot overflow a float.
    step = min(cap, base * 2.0 ** min(max(0, attempt - 1), 512))
    fraction: float = (rng or random).random()
    return step * (0.5 + 0.5 * fraction)
