"""A token bucket: a burst allowed at once, then a steady rate."""

import time
from collections.abc import Callable


class TokenBucket:
    """Allows `burst` takes at once, refilled at `per_second`; the clock is injectable for tests."""

    def __init__(
        self, burst: int, per_second: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst = float(max(burst, 1))
        self._rate = max(per_second, 0.0)
        self._clock = clock
        self._tokens = self._burst
        self._at = clock()

    def take(self) -> bool:
        """Spend one token if there is one; False means slow down."""
        moment = self._clock()
        self._tokens = min(self._burst, self._tokens + (moment - self._at) * self._rate)
        self._at = moment
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
