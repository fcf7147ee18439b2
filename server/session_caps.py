"""Caps on WHIP and WHEP sessions: per meeting, per client address and in total.

A session is counted from the moment its POST is let in (before the offer is answered, so that
a burst of POSTs cannot slip past the cap while answers are being made) until it ends. A POST
over a cap gets 503 with Retry-After: the client may try again later, nothing was made.
"""

from collections import Counter
from dataclasses import dataclass

from rooms.errors import RoomError

# What a refused client is told to wait: about the time a connection that never completes ICE
# holds its place (server/whip.py closes it after VECHE_ICE_CONNECT_TIMEOUT).
RETRY_AFTER = 10


class Busy(RoomError):
    """A cap is reached: 503 with Retry-After."""

    def __init__(self, message: str) -> None:
        super().__init__("busy", message)
        self.retry_after = RETRY_AFTER


@dataclass(frozen=True)
class Place:
    """One session's place under the caps; given back with `SessionCaps.release`."""

    meeting_id: str
    address: str


class SessionCaps:
    """The counts behind the caps (0 turns a cap off)."""

    def __init__(self, total: int, per_meeting: int, per_address: int) -> None:
        self._caps = (total, per_meeting, per_address)
        self._total = 0
        self._meetings: Counter[str] = Counter()
        self._addresses: Counter[str] = Counter()

    def take(self, meeting_id: str, address: str) -> Place:
        """A place for a new session, or Busy."""
        total, per_meeting, per_address = self._caps
        if total and self._total >= total:
            raise Busy("this server has as many WHIP/WHEP sessions as it takes; try again later")
        if per_meeting and self._meetings[meeting_id] >= per_meeting:
            raise Busy("this meeting has as many WHIP/WHEP sessions as it takes; try later")
        if per_address and self._addresses[address] >= per_address:
            raise Busy("too many WHIP/WHEP sessions from your address; end some first")
        self._total += 1
        self._meetings[meeting_id] += 1
        self._addresses[address] += 1
        return Place(meeting_id, address)

    def release(self, place: Place) -> None:
        self._total -= 1
        for counter, key in ((self._meetings, place.meeting_id), (self._addresses, place.address)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]

    def counts(self) -> dict[str, int]:
        return {"sessions": self._total, "addresses": len(self._addresses)}
