"""Who asks to enter a room (a Visitor) and who sits in it (a Participant, one per seat)."""

import secrets
from dataclasses import dataclass, field
from typing import Any

from rooms.roles import PERMISSIONS, Permission, Role

# A hall projector's seat id starts so (+ a random part): hidden from all but moderators.
PROJECTOR_SEAT = "prj-"


@dataclass(frozen=True)
class Visitor:
    """A person at the door, as their token (or the public page) describes them."""

    name: str
    role: Role
    roster_id: str | None = None
    school: str = ""
    region: str = ""
    # Recognises the same person on a later visit (the roster entry, or a guest link);
    # None for anonymous viewers, who cannot be told apart.
    identity: str | None = None
    # A hall's projector (docs/hall.md): the identity of the roster entry whose hall it
    # shows; a removal of that person keeps their projectors out too. None for a person.
    projector_of: str | None = None


@dataclass(frozen=True)
class Participant:
    """A seat in the live room; its id stays the same across reconnects in the grace period."""

    id: str
    visitor: Visitor
    role: Role
    key: str = field(default_factory=lambda: secrets.token_urlsafe(18), repr=False)
    mic: bool = False
    camera: bool = False
    screen: bool = False
    connected: bool = True

    @property
    def name(self) -> str:
        return self.visitor.name

    def can(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]

    def as_dict(self, hand: bool) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": "person" if self.visitor.projector_of is None else "projector",
            "roster_id": self.visitor.roster_id,
            "name": self.visitor.name,
            "role": self.role.value,
            "school": self.visitor.school,
            "region": self.visitor.region,
            "mic": self.mic,
            "camera": self.camera,
            "screen": self.screen,
            "hand": hand,
            "connected": self.connected,
        }

    def self_dict(self, hand: bool) -> dict[str, Any]:
        """The participant as they see themselves: with their permissions."""
        allowed = [p.value for p in Permission if p in PERMISSIONS[self.role]]
        return {**self.as_dict(hand), "permissions": allowed}


def new_seat_id(visitor: Visitor | None = None) -> str:
    if visitor is not None and visitor.projector_of is not None:
        return PROJECTOR_SEAT + secrets.token_urlsafe(6)
    return "p_" + secrets.token_urlsafe(6)
