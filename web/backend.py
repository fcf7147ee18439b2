"""What the pages need from the server, as an interface the server fills in (web/ never imports
server/)."""

from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from rooms.attendance import Stay
from rooms.meeting import Meeting
from rooms.roles import Role
from rooms.roster import RosterEntry


@dataclass(frozen=True)
class Claim:
    """What a checked invite or guest token says (the server's Grant, seen from the pages)."""

    kind: str  # "invite" (a roster entry), "guest" (a role without a roster entry), "admin"
    meeting_id: str = ""
    entry_id: str = ""
    role: Role | None = None


class Backend(Protocol):
    """The store, tokens and settings as the pages use them."""

    @property
    def base_url(self) -> str: ...

    def api_key_matches(self, key: str) -> bool: ...
    def new_admin_session(self) -> str: ...
    def is_admin_session(self, value: str) -> bool: ...
    async def end_admin_session(self, value: str) -> None:
        """Sign the session out on the server: its cookie no longer works anywhere."""
        ...

    def check_token(self, token: str) -> Claim:
        """The claim a token carries; raises rooms.errors.RoomError (bad_token) if refused."""
        ...

    def invite_token(self, meeting_id: str, entry_id: str) -> str: ...

    async def meetings(self) -> list[Meeting]: ...
    async def meeting(self, meeting_id: str) -> Meeting | None: ...
    async def roster(self, meeting_id: str) -> list[RosterEntry]: ...
    async def entry(self, meeting_id: str, entry_id: str) -> RosterEntry | None: ...
    async def attendance(self, meeting_id: str) -> list[Stay]: ...

    def live(self, meeting_id: str) -> dict[str, Any] | None:
        """{participants, lobby, locked} of a live room, or None when nobody is in it."""
        ...


BACKEND = web.AppKey("web_backend", Backend)
