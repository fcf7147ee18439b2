"""Typed application keys shared by the server's modules."""

from typing import Any, Protocol

from aiohttp import web

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


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
TOKENS = web.AppKey("tokens", Tokens)
METRICS = web.AppKey("metrics", Metrics)
LIVE = web.AppKey("live", LiveRooms)
