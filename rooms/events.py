"""What changed in a live room: the server turns each event into signaling messages."""

from dataclasses import dataclass
from typing import Any

from rooms.roles import Role


@dataclass(frozen=True)
class ParticipantJoined:
    participant: dict[str, Any]


@dataclass(frozen=True)
class ParticipantUpdated:
    participant: dict[str, Any]


@dataclass(frozen=True)
class ParticipantLeft:
    id: str
    reason: str  # left | removed | timeout


@dataclass(frozen=True)
class SelfChanged:
    """A participant's own role or permissions changed (`you`)."""

    id: str
    self: dict[str, Any]


@dataclass(frozen=True)
class LobbyChanged:
    """The lobby's queue changed: moderators get the list, each waiting person a position."""


@dataclass(frozen=True)
class Admitted:
    entry_id: str
    participant_id: str


@dataclass(frozen=True)
class Denied:
    entry_id: str
    message: str


@dataclass(frozen=True)
class HandsChanged:
    hands: list[str]


@dataclass(frozen=True)
class ChatPosted:
    message: dict[str, Any]


@dataclass(frozen=True)
class LockChanged:
    locked: bool


@dataclass(frozen=True)
class MuteAsked:
    id: str
    by: str


@dataclass(frozen=True)
class Muted:
    """A moderator stopped forwarding a participant's microphone."""

    id: str
    by: str


@dataclass(frozen=True)
class Removed:
    id: str
    message: str


@dataclass(frozen=True)
class Ended:
    message: str


@dataclass(frozen=True)
class RoleSaved:
    """A roster member's new role, to be kept for their later visits."""

    roster_id: str
    role: Role


Event = (
    ParticipantJoined
    | ParticipantUpdated
    | ParticipantLeft
    | SelfChanged
    | LobbyChanged
    | Admitted
    | Denied
    | HandsChanged
    | ChatPosted
    | LockChanged
    | MuteAsked
    | Muted
    | Removed
    | Ended
    | RoleSaved
)
