"""Who is at a meeting's door: the visitor a join's token (or a public meeting) describes."""

import hashlib
import time
from collections.abc import Callable
from typing import Any

from rooms.errors import NotFound, RoomError
from rooms.meeting import Meeting, clean_text
from rooms.participant import Visitor
from rooms.ratelimit import TokenBucket
from rooms.roles import Role
from rooms.roster import NAME_MAX
from rooms.store import Store
from server.auth import BadToken, Tokens
from server.payloads import ident


async def at_the_door(
    p: dict[str, Any], store: Store, tokens: Tokens
) -> tuple[Meeting, Visitor, bool]:
    """The meeting and who is at its door; `personal` for a roster member's own link."""
    token = p.get("token")
    if token is None:
        meeting_id = ident(p, "meeting")
        meeting = await store.get_meeting(meeting_id or "")
        if meeting is None:
            raise NotFound("meeting")
        if not meeting.public:
            raise BadToken("this meeting needs an invitation link")
        if not meeting.settings.viewers_allowed:
            raise RoomError("viewers_not_allowed", "this meeting does not admit viewers")
        name = clean_text(p.get("name"), "name", limit=NAME_MAX)
        return meeting, Visitor(name=name, role=Role.VIEWER), False
    grant = tokens.check(token)
    if grant.kind not in ("invite", "guest"):
        raise BadToken("this link is not valid")
    meeting = await store.get_meeting(grant.meeting_id)
    if meeting is None:
        raise NotFound("meeting")
    if grant.kind == "invite":
        entry = await store.get_entry(meeting.id, grant.entry_id)
        if entry is None:
            raise BadToken("this invitation was withdrawn")
        visitor = Visitor(
            name=entry.name,
            role=entry.role,
            roster_id=entry.id,
            school=entry.school,
            region=entry.region,
            identity="r:" + entry.id,
        )
        return meeting, visitor, True
    assert grant.role is not None
    name = clean_text(p.get("name"), "name", limit=NAME_MAX)
    # A guest link is shared by many: it names the link, not one person.
    link = hashlib.sha256(str(token).encode()).hexdigest()[:16]
    return meeting, Visitor(name=name, role=grant.role, identity="g:" + link), False


class AddressBuckets:
    """A token bucket per client address for anonymous joins. Kept bounded: past
    `MAX_ADDRESSES`, the buckets of addresses that have been quiet long enough to be full again
    are dropped (they would let their next join in anyway)."""

    MAX_ADDRESSES = 10_000

    def __init__(
        self, burst: int, per_second: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._burst, self._rate, self._clock = burst, per_second, clock
        self._buckets: dict[str, tuple[TokenBucket, float]] = {}  # address -> bucket, last use

    def take(self, address: str) -> bool:
        now = self._clock()
        found = self._buckets.get(address)
        bucket = found[0] if found else TokenBucket(self._burst, self._rate, self._clock)
        self._buckets[address] = (bucket, now)
        if len(self._buckets) > self.MAX_ADDRESSES:
            refill = self._burst / self._rate
            self._buckets = {a: b for a, b in self._buckets.items() if now - b[1] < refill}
        return bucket.take()
