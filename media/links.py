"""Weak links: which video tracks a subscriber's link cannot carry.

Congestion is read from loss first: a receiver's bandwidth estimate (REMB) follows what reaches
it and ramps up slowly from a low start (Chromium's sits at or below the incoming rate for many
seconds on a perfectly good link), so an estimate below the need is no sign of trouble by itself.
A link is congested when the subscriber reports heavy loss, or some loss together with an
estimate well below what the running video needs. Then the most expensive running track pauses,
one per interval. With the video paused the estimate only tells what audio carries, so a paused
track is tried again after a while, and each time it has to be paused again soon after, the wait
doubles (up to a minute); an estimate with room to spare and no loss resumes it at once. A new
track counts only after a few intervals (`WARMUP`), while the receiver settles.
"""

LOSS_HIGH = 0.10  # this much loss alone is congestion
LOSS_SOME = 0.02  # this much loss with a low estimate is congestion
PAUSE_BELOW = 0.7  # "low estimate": below this share of the running video's need
PAUSE_AFTER = 3  # intervals in a row of congestion before a track pauses
HEADROOM = 1.3  # an estimate this much above running + paused need (and no loss) resumes
RESUME_AFTER = 3  # intervals in a row with that headroom
RETRY_FIRST = 10  # intervals paused before the cheapest track is tried again anyway
RETRY_MAX = 60
RELAPSE_WITHIN = 10  # a pause this soon after a retry counts as a failed retry
WARMUP = 3  # intervals with reports before a new track counts


class LinkGuard:
    """The video tracks one subscriber's link cannot carry now (`paused`)."""

    def __init__(self) -> None:
        self.paused: set[str] = set()
        self._needs: dict[str, int] = {}  # last known bits/s of each track
        self._age: dict[str, int] = {}  # intervals with an estimate since the track came
        self._short = 0
        self._spare = 0
        self._waited = 0
        self._retry_after = RETRY_FIRST
        self._since_retry: int | None = None  # intervals since the last retry, while watched

    def update(
        self, estimate: int | None, needs: dict[str, int], loss: float | None = None
    ) -> None:
        """`needs`: bits/s of every video track the subscriber wants, paused or not; `loss`:
        the worst fraction lost the subscriber reported in the interval (None: no report)."""
        for track, need in needs.items():
            if need > 0:
                self._needs[track] = need
        self.paused &= needs.keys()
        self._age = {t: self._age.get(t, 0) for t in needs}
        if estimate is None and loss is None:
            return
        for track in self._age:
            self._age[track] += 1
        if self._since_retry is not None:
            self._since_retry += 1
            if self._since_retry > RELAPSE_WITHIN:  # the retry held: back to the short wait
                self._since_retry = None
                self._retry_after = RETRY_FIRST
        running = {t: self._needs.get(t, 0) for t in needs if t not in self.paused}
        settled = {t: need for t, need in running.items() if self._age[t] > WARMUP}
        low = estimate is not None and estimate < PAUSE_BELOW * sum(running.values())
        lossy = loss is not None and (loss >= LOSS_HIGH or (low and loss >= LOSS_SOME))
        if settled and lossy:
            self._short += 1
            self._spare = 0
            if self._short >= PAUSE_AFTER:
                self._pause(max(settled, key=lambda t: settled[t]))
            return
        self._short = 0
        if self.paused:
            clean = loss is None or loss < LOSS_SOME
            self._maybe_resume(estimate if clean else None, sum(running.values()))
        else:
            self._spare = self._waited = 0

    def _pause(self, track: str) -> None:
        self._short = 0
        self._waited = 0
        self.paused.add(track)
        if self._since_retry is not None:  # the last retry failed: wait longer next time
            self._retry_after = min(self._retry_after * 2, RETRY_MAX)
            self._since_retry = None

    def _maybe_resume(self, estimate: int | None, running: int) -> None:
        cheapest = min(self.paused, key=lambda t: self._needs.get(t, 0))
        self._waited += 1
        need = (running + self._needs.get(cheapest, 0)) * HEADROOM
        fits = estimate is not None and estimate >= need
        self._spare = self._spare + 1 if fits else 0
        if self._spare >= RESUME_AFTER:
            self._resume(cheapest)
        elif self._waited >= self._retry_after:
            self._resume(cheapest)
            self._since_retry = 0

    def _resume(self, track: str) -> None:
        self._spare = self._waited = 0
        self.paused.discard(track)

    def forget(self, track: str) -> None:
        self.paused.discard(track)
        self._needs.pop(track, None)
        self._age.pop(track, None)
