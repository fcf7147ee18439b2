"""Typed application keys shared by the server's modules."""

from typing import Any, Protocol

from aiohttp import web

from rooms.meeting import Meeting
from rooms.recordings import Recording
from rooms.store import Store
from server.auth import Tokens
from server.config import Settings
from server.metrics import Metrics


class LiveRooms(Protocol):
    """What REST and pages may ask of the live rooms (implemented by the signaling module)."""

    def live(self, meeting_id: str) -> dict[str, Any] | None:
        """{participants, lobby, locked} for a meeting with a live room, else None."""
        ...

    async def end(self, meeting_id: str, message: str) -> None:
        """End a live meeting for everyone (a no-op when nobody is in it)."""
        ...


class RecordingControl(Protocol):
    """What signaling asks of the recordings service (implemented by server/recordings.py)."""

    def state(self, meeting_id: str) -> dict[str, Any]:
        """The `recording` event's object for a meeting: {on, id, notice, error}."""
        ...

    def as_json(self, recording: Recording) -> dict[str, Any]:
        """A recording's REST JSON."""
        ...

    async def start(self, meeting: Meeting) -> Recording: ...
    async def stop(self, meeting_id: str) -> Recording: ...

    async def meeting_over(self, meeting_id: str) -> None:
        """The live meeting ended or emptied: stop its recording, if any."""
        ...


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
TOKENS = web.AppKey("tokens", Tokens)
METRICS = web.AppKey("metrics", Metrics)
LIVE = web.AppKey("live", LiveRooms)
RECORDINGS = web.AppKey("recordings", RecordingControl)
