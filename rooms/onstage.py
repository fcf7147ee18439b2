"""The broadcast's stage: which participants (and so which tracks) the audience sees.

Viewers (WebRTC and WHEP) receive only the stage. It holds, always, the seats whose role is
shown on the broadcast by default (`on_stage`: host, moderator, speaker — the hall's roster
entry is a speaker) and every screen share; and then either, in **auto** mode, the active
speaker, or, in **manual** mode (a moderator set a spotlight or gave the floor), the spotlit
participant and those who have the floor. So that the broadcast is never blank while someone
publishes, an auto stage with nothing on it shows the first publisher.

Pure Python: the server (server/stage.py) feeds it the published tracks and who is who.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rooms.errors import Invalid

MAX_FLOOR = 16  # people holding the floor at once: a panel, not the whole room


@dataclass(frozen=True)
class Published:
    """A published track as the stage needs to know it."""

    id: str
    participant: str
    source: str


class OnStage:
    """The moderators' choice (spotlight, floor) and the rule that makes the stage of it."""

    def __init__(self) -> None:
        self.spotlight: str | None = None
        self.floor: list[str] = []  # in the order it was given

    @property
    def mode(self) -> str:
        return "manual" if self.spotlight is not None or self.floor else "auto"

    def set_spotlight(self, participant: str | None) -> bool:
        """Spotlight one participant (None: nobody); whether anything changed."""
        if participant == self.spotlight:
            return False
        self.spotlight = participant
        return True

    def set_floor(self, participant: str, on: bool) -> bool:
        """Give (on) or take the floor; whether anything changed."""
        if on and participant not in self.floor:
            if len(self.floor) >= MAX_FLOOR:
                raise Invalid(f"at most {MAX_FLOOR} people may have the floor at once")
            self.floor.append(participant)
            return True
        if not on and participant in self.floor:
            self.floor.remove(participant)
            return True
        return False

    def forget(self, participant: str) -> bool:
        """The participant left: off the spotlight and the floor."""
        changed = False
        if self.spotlight == participant:
            self.spotlight = None
            changed = True
        if participant in self.floor:
            self.floor.remove(participant)
            changed = True
        return changed

    def people(self, featured: Iterable[str], active: str | None) -> list[str]:
        """Who is on stage besides screen shares: the featured seats (role `on_stage`), then
        the spotlight and the floor (manual) or the active speaker (auto)."""
        chosen = [self.spotlight, *self.floor] if self.mode == "manual" else [active]
        people: list[str] = []
        for who in [*featured, *chosen]:
            if who is not None and who not in people:
                people.append(who)
        return people

    def tracks(
        self, published: list[Published], featured: Iterable[str], active: str | None
    ) -> list[str]:
        """The ids of the tracks on stage, in the order they were published."""
        people = set(self.people(featured, active))
        chosen = [t.id for t in published if t.participant in people or t.source == "screen"]
        if not chosen and self.mode == "auto" and published:
            first = published[0].participant
            chosen = [t.id for t in published if t.participant == first]
        return chosen

    def as_dict(self, tracks: list[str]) -> dict[str, Any]:
        """The `stage` event (docs/protocol.md)."""
        return {
            "mode": self.mode,
            "spotlight": self.spotlight,
            "floor": list(self.floor),
            "tracks": list(tracks),
        }
