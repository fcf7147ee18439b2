"""The lobby: people waiting for a moderator to let them in, first come first admitted."""

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rooms.errors import NotFound
from rooms.meeting import iso
from rooms.participant import Visitor


@dataclass(frozen=True)
class LobbyEntry:
    id: str
    visitor: Visitor
    since: datetime

    def as_dict(self) -> dict[str, Any]:
        v = self.visitor
        return {
            "id": self.id,
            "name": v.name,
            "role": v.role.value,
            "school": v.school,
            "region": v.region,
            "roster": v.roster_id is not None,
            "kind": "person" if v.projector_of is None else "projector",
            "since": iso(self.since),
        }


class Lobby:
    def __init__(self) -> None:
        self._entries: dict[str, LobbyEntry] = {}  # insertion order is the queue

    def knock(self, visitor: Visitor, at: datetime) -> LobbyEntry:
        entry = LobbyEntry(id="l_" + secrets.token_urlsafe(6), visitor=visitor, since=at)
        self._entries[entry.id] = entry
        return entry

    def take(self, entry_id: str) -> LobbyEntry:
        """Remove and return one entry, or NotFound."""
        entry = self._entries.pop(entry_id, None)
        if entry is None:
            raise NotFound("lobby entry")
        return entry

    def get(self, entry_id: str) -> LobbyEntry:
        entry = self._entries.get(entry_id)
        if entry is None:
            raise NotFound("lobby entry")
        return entry

    def position(self, entry_id: str) -> int:
        """1 is next in line."""
        return list(self._entries).index(entry_id) + 1

    def entries(self) -> list[LobbyEntry]:
        return list(self._entries.values())

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)
