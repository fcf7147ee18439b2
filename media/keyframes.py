"""Keyframe requests to a publisher: many wishes, at most one PLI per interval per track."""

import asyncio
from collections.abc import Callable

# Half a second, not the full second often quoted: with a stream of viewers joining, a joiner
# waits on average half an interval for the next keyframe, and join to first frame must stay
# under 500 ms (issue 4). A lone late joiner gets its keyframe request at once either way.
DEFAULT_INTERVAL = 0.5


class KeyframeRequests:
    """Throttles keyframe requests; one that comes too soon is sent when the interval ends."""

    def __init__(self, send_pli: Callable[[], bool], interval: float = DEFAULT_INTERVAL) -> None:
        self._send_pli = send_pli
        self._interval = interval
        self._loop = asyncio.get_running_loop()
        self._last = -interval
        self._pending: asyncio.TimerHandle | None = None
        self.sent = 0

    def request(self) -> None:
        if self._pending is not None:
            return
        due = self._last + self._interval
        if self._loop.time() >= due:
            self._fire()
        else:
            self._pending = self._loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._pending = None
        # Nothing to send to yet (no packet from the publisher): ask again shortly.
        if not self._send_pli():
            self._pending = self._loop.call_later(0.1, self._fire)
            return
        self._last = self._loop.time()
        self.sent += 1

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
