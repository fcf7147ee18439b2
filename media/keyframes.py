"""Keyframe requests to a publisher: many wishes, few PLIs per track.

Two kinds of wish, two throttles. A subscriber that lost packets (its PLI or FIR) can wait:
those become at most one PLI a second per track. A subscriber that is starting (a new viewer, a
resumed video) sees nothing until the next keyframe, so join to first frame is that wait plus
about 100 ms of signaling and ICE on loopback: those go out at most every JOIN_INTERVAL, which
keeps a wave of joiners under 500 ms to first frame (issue 4) while the publisher sends at most
a few extra keyframes a second, and only while people are joining.

A request can go unanswered: the PLI may be lost on a weak link, and Chromium's encoder drops
keyframe requests that come within 300 ms of its last keyframe, which a request for the next
joiner of a wave often does. So while a subscriber still waits, the request is repeated
RETRY_AFTER later; without that it would wait for the encoder's next periodic keyframe, which in
Chromium can be minutes away.
"""

import asyncio
from collections.abc import Callable

DEFAULT_INTERVAL = 1.0  # between PLIs for loss recovery
JOIN_INTERVAL = 0.15  # between PLIs for subscribers that are starting
RETRY_AFTER = 0.35  # a PLI not answered by then is sent again while someone still waits


class KeyframeRequests:
    """Throttles keyframe requests; one that comes too soon is sent when its interval ends."""

    def __init__(
        self,
        send_pli: Callable[[], bool],
        interval: float = DEFAULT_INTERVAL,
        join_interval: float = JOIN_INTERVAL,
        waiting: Callable[[], bool] = lambda: False,
        retry_after: float = RETRY_AFTER,
    ) -> None:
        """`waiting`: whether a subscriber still has no picture (then requests are repeated)."""
        self._send_pli = send_pli
        self._waiting = waiting
        self._retry_after = retry_after
        self._retry: asyncio.TimerHandle | None = None
        self._intervals = (interval, min(join_interval, interval))
        self._loop = asyncio.get_running_loop()
        self._last = -interval
        self._pending: asyncio.TimerHandle | None = None
        self._due = 0.0
        self.sent = 0

    def request(self, starting: bool = False) -> None:
        """Ask for a keyframe; `starting`: for a subscriber that has no picture yet."""
        due = self._last + self._intervals[starting]
        if self._pending is not None:
            if due >= self._due:
                return
            self._pending.cancel()  # a starting subscriber moves a loss request forward
            self._pending = None
        if self._loop.time() >= due:
            self._fire()
        else:
            self._due = due
            self._pending = self._loop.call_at(due, self._fire)

    def _fire(self) -> None:
        self._pending = None
        # Nothing to send to yet (no packet from the publisher): ask again shortly.
        if not self._send_pli():
            self._due = self._loop.time() + 0.1
            self._pending = self._loop.call_at(self._due, self._fire)
            return
        self._last = self._loop.time()
        self.sent += 1
        if self._retry is not None:
            self._retry.cancel()
        self._retry = self._loop.call_later(self._retry_after, self._check)

    def _check(self) -> None:
        self._retry = None
        if self._waiting():
            self.request(starting=True)

    def close(self) -> None:
        for handle in (self._pending, self._retry):
            if handle is not None:
                handle.cancel()
        self._pending = self._retry = None
