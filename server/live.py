"""What the signaling server keeps beside each live room: connections, stays and timers."""

import asyncio
from dataclasses import dataclass, field

from rooms.ratelimit import TokenBucket
from rooms.room import LiveRoom
from server.stage import Stage

EVENT_BURST = 30
EVENT_RATE = 10.0


@dataclass
class Connection:
    """One socket.io connection's state, kept in its session."""

    bucket: TokenBucket = field(default_factory=lambda: TokenBucket(EVENT_BURST, EVENT_RATE))
    meeting_id: str | None = None
    seat_id: str | None = None  # seated in the room
    entry_id: str | None = None  # waiting in the lobby
    # Media events of one connection run one at a time, in the order they came: a trickled
    # candidate never overtakes the offer that creates its connection.
    media: asyncio.Lock = field(default_factory=asyncio.Lock)

    def detach(self) -> None:
        self.meeting_id = self.seat_id = self.entry_id = None


@dataclass
class LiveMeeting:
    """A live room and the connections, attendance rows and grace timers that go with it."""

    room: LiveRoom
    # Every change to the room and the emits that tell of it happen under this lock, so that
    # everyone sees the changes in the order they were made.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    sids: dict[str, str] = field(default_factory=dict)  # seat id -> live connection
    waiting: dict[str, str] = field(default_factory=dict)  # lobby entry id -> connection
    stays: dict[str, int] = field(default_factory=dict)  # seat id -> attendance row
    timers: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # seat id -> grace
    stage: Stage | None = None  # the media side, from the first seat on
    # Seats with no socket.io connection: WHIP publishers (server/whip.py).
    outside: set[str] = field(default_factory=set)
    # Seats last announced as viewers: the broadcast's audience, which is told of the
    # meeting's participants but not of itself (hundreds of viewers would otherwise send each
    # other a message per join).
    audience: set[str] = field(default_factory=set)
    # The hand queue as last announced: whose hand changed decides who is told
    # (server/broadcast.py, `_hands`).
    hands: list[str] = field(default_factory=list)

    @property
    def room_name(self) -> str:
        return f"m:{self.room.meeting.id}"

    @property
    def crew_name(self) -> str:
        """The socket.io room of everyone but the audience: they are told of viewers too."""
        return f"m:{self.room.meeting.id}:crew"

    @property
    def moderators_name(self) -> str:
        return f"m:{self.room.meeting.id}:mod"
