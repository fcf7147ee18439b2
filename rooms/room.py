"""The live state of one meeting: seats, lobby, hands, chat, lock, and the rules for each change.

Every method either raises RoomError and changes nothing, or makes the change and returns the
events that tell everyone about it.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from rooms import events as ev
from rooms.chat import ChatLog, chat_text
from rooms.errors import Forbidden, Invalid, NotFound, RoomError
from rooms.events import Event
from rooms.hands import HandQueue
from rooms.lobby import Lobby, LobbyEntry
from rooms.meeting import Meeting, now
from rooms.participant import Participant, Visitor, new_seat_id
from rooms.ratelimit import TokenBucket
from rooms.roles import RANK, Permission, Role, can, may_assign

REMOVED_MESSAGE = "A moderator removed you from the meeting."
DENIED_MESSAGE = "A moderator did not let you in."
ENDED_MESSAGE = "The meeting has ended."

_P = Permission
_STATE_NEEDS = {"mic": _P.PUBLISH_AUDIO, "camera": _P.PUBLISH_VIDEO, "screen": _P.PUBLISH_SCREEN}


@dataclass(frozen=True)
class RoomLimits:
    chat_max_length: int = 1000
    chat_burst: int = 5
    chat_per_second: float = 0.5
    # Caps for people outside the roster only: a roster member always fits (its size is the
    # roster's). `max_participants` counts everyone seated or waiting; `max_viewers` the
    # viewers outside the roster, connected or waiting (a dropped one is not held against
    # anyone; 0: no cap).
    max_participants: int = 500
    max_viewers: int = 1000


class LiveRoom:
    """One meeting while someone is in it. Not thread-safe: one event loop drives it."""

    def __init__(
        self,
        meeting: Meeting,
        limits: RoomLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = now,
    ) -> None:
        self.meeting = meeting
        self.limits = limits or RoomLimits()
        self.locked = False
        self._clock = clock
        self._wall = wall
        self._seats: dict[str, Participant] = {}
        self._lobby = Lobby()
        self._hands = HandQueue()
        self._chat = ChatLog()
        self._buckets: dict[str, TokenBucket] = {}
        # Identities of people removed: kept out while locked, sent through the lobby after.
        self._removed: set[str] = set()
        # Hall projectors (docs/hall.md): seated like their roster entry but apart from the
        # seats (they neither speak nor count); only moderators see them.
        self._projectors: dict[str, Participant] = {}

    # reading

    def __len__(self) -> int:
        """Seats plus people waiting: a room with none is over."""
        return len(self._seats) + len(self._lobby)

    def participants(self) -> list[Participant]:
        return list(self._seats.values())

    def participant(self, seat_id: str) -> Participant:
        seat = self._seats.get(seat_id)
        if seat is None:
            raise NotFound("participant")
        return seat

    def lobby_entries(self) -> list[LobbyEntry]:
        return self._lobby.entries()

    def position(self, entry_id: str) -> int:
        return self._lobby.position(entry_id)

    def in_lobby(self, entry_id: str) -> bool:
        return entry_id in self._lobby

    def projectors(self) -> list[Participant]:
        return list(self._projectors.values())

    def hands(self) -> list[str]:
        return self._hands.ids()

    def describe(self, seat: Participant) -> dict[str, Any]:
        return seat.as_dict(seat.id in self._hands)

    def describe_self(self, seat: Participant) -> dict[str, Any]:
        return seat.self_dict(seat.id in self._hands)

    def seat_by_key(self, key: object) -> Participant | None:
        if not isinstance(key, str) or not key:
            return None
        return next((s for s in self._seats.values() if s.key == key), None)

    def seat_of(self, identity: str) -> Participant | None:
        return next((s for s in self._seats.values() if s.visitor.identity == identity), None)

    def waiting_of(self, identity: str) -> LobbyEntry | None:
        return next((e for e in self._lobby.entries() if e.visitor.identity == identity), None)

    def snapshot(self, seat_id: str) -> dict[str, Any]:
        """What a participant sees on entering: the `joined` event."""
        seat = self.participant(seat_id)
        moderator = seat.can(_P.MODERATE)
        return {
            "self": self.describe_self(seat),
            "seat": seat.key,
            "meeting": {
                "id": self.meeting.id,
                "title": self.meeting.title,
                "visibility": self.meeting.visibility.value,
                "settings": self.meeting.settings.as_dict(),
                "locked": self.locked,
            },
            # A viewer is shown the meeting's participants, not the rest of the audience.
            "participants": [
                self.describe(s)
                for s in self._seats.values()
                if seat.role is not Role.VIEWER or s.role is not Role.VIEWER or s is seat
            ]
            # Projectors are listed for moderators, who may remove them (`kind`: projector).
            + ([self.describe(p) for p in self._projectors.values()] if moderator else []),
            "hands": self._hands.ids(),
            "lobby": [e.as_dict() for e in self._lobby.entries()] if moderator else [],
            "chat": [m.as_dict() for m in self._chat.recent()],
        }

    def summary(self) -> dict[str, Any]:
        """For the REST API and the admin page."""
        return {
            "participants": [self.describe(s) for s in self._seats.values()],
            "lobby": [e.as_dict() for e in self._lobby.entries()],
            "locked": self.locked,
            "projectors": [self.describe(p) for p in self._projectors.values()],
        }

    # arriving and leaving

    def arrive(self, visitor: Visitor) -> tuple[Participant | LobbyEntry, list[Event]]:
        """Seat a visitor, or put them in the lobby, or refuse (locked, full). A projector
        is let in as its roster entry would be, and kept out when either was removed."""
        removed = any(
            who is not None and who in self._removed
            for who in (visitor.identity, visitor.projector_of)
        )
        if self.locked and (visitor.roster_id is None or removed):
            raise RoomError("locked", "the room is locked")
        if visitor.roster_id is None:
            self._make_room_for(visitor)
        if removed or self._must_wait(visitor.role):
            entry = self._lobby.knock(visitor, self._wall())
            return entry, [ev.LobbyChanged()]
        seat = self._seat(visitor)
        return seat, [ev.ParticipantJoined(self.describe(seat))]

    def seat_directly(self, visitor: Visitor) -> tuple[Participant, list[Event]]:
        """Seat someone who publishes from outside the room's signaling (WHIP, with their
        own invite): no lobby, as a roster member skips a lock; refused if they were removed
        or the room is full."""
        if visitor.identity is not None and visitor.identity in self._removed:
            raise Forbidden("a moderator removed you from this meeting")
        if visitor.roster_id is None:
            self._make_room_for(visitor)
        seat = self._seat(visitor)
        return seat, [ev.ParticipantJoined(self.describe(seat))]

    def _make_room_for(self, visitor: Visitor) -> None:
        """Refuse `full` someone outside the roster when their cap is reached."""
        if visitor.role is Role.VIEWER:
            viewers = sum(
                1
                for s in self._seats.values()
                if s.visitor.roster_id is None and s.role is Role.VIEWER and s.connected
            )
            viewers += sum(
                1
                for e in self._lobby.entries()
                if e.visitor.roster_id is None and e.visitor.role is Role.VIEWER
            )
            if self.limits.max_viewers and viewers >= self.limits.max_viewers:
                raise RoomError("full", "the meeting has as many viewers as it takes")
        elif len(self) >= self.limits.max_participants:
            raise RoomError("full", "the room is full")

    def _must_wait(self, role: Role) -> bool:
        if not self.meeting.settings.lobby or role is Role.VIEWER:
            return False
        return not can(role, _P.SKIP_LOBBY)

    def _seat(self, visitor: Visitor) -> Participant:
        seat = Participant(id=new_seat_id(visitor), visitor=visitor, role=visitor.role)
        if visitor.projector_of is not None:
            self._projectors[seat.id] = seat
        else:
            self._seats[seat.id] = seat
        return seat

    def projector_gone(self, seat_id: str) -> list[Event]:
        """A projector left or its connection dropped: no grace period."""
        if self._projectors.pop(seat_id, None) is None:
            return []
        return [ev.ParticipantLeft(seat_id, "left")]

    def withdraw(self, entry_id: str) -> list[Event]:
        """Someone waiting in the lobby went away."""
        self._lobby.take(entry_id)
        return [ev.LobbyChanged()]

    def drop(self, seat_id: str) -> list[Event]:
        """The connection was lost: the seat is kept, shown as not connected."""
        return self._set_connected(seat_id, False)

    def resume(self, seat_id: str) -> list[Event]:
        """The participant is back on their seat."""
        return self._set_connected(seat_id, True)

    def _set_connected(self, seat_id: str, connected: bool) -> list[Event]:
        seat = self.participant(seat_id)
        if seat.connected == connected:
            return []
        seat = self._seats[seat_id] = replace(seat, connected=connected)
        return [ev.ParticipantUpdated(self.describe(seat))]

    def leave(self, seat_id: str, reason: str = "left") -> list[Event]:
        self.participant(seat_id)
        return self._unseat(seat_id, reason)

    def _unseat(self, seat_id: str, reason: str) -> list[Event]:
        del self._seats[seat_id]
        self._buckets.pop(seat_id, None)
        events: list[Event] = [ev.ParticipantLeft(seat_id, reason)]
        if self._hands.lower(seat_id):
            events.append(ev.HandsChanged(self._hands.ids()))
        return events

    # moderation of the lobby

    def _actor(self, actor_id: str, permission: Permission | None = None) -> Participant:
        actor = self._seats.get(actor_id)
        if actor is None:
            raise RoomError("not_joined", "join the meeting first")
        if permission is not None and not actor.can(permission):
            raise Forbidden()
        return actor

    def admit(self, actor_id: str, entry_id: str) -> list[Event]:
        self._actor(actor_id, _P.MODERATE)
        entry = self._lobby.take(entry_id)
        return [*self._admit(entry), ev.LobbyChanged()]

    def _admit(self, entry: LobbyEntry) -> list[Event]:
        if entry.visitor.identity is not None:
            self._removed.discard(entry.visitor.identity)
        seat = self._seat(entry.visitor)
        return [ev.Admitted(entry.id, seat.id), ev.ParticipantJoined(self.describe(seat))]

    def admit_all(self, actor_id: str) -> list[Event]:
        self._actor(actor_id, _P.MODERATE)
        events: list[Event] = []
        for entry in self._lobby.entries():
            events += self._admit(self._lobby.take(entry.id))
        if events:
            events.append(ev.LobbyChanged())
        return events

    def deny(self, actor_id: str, entry_id: str) -> list[Event]:
        self._actor(actor_id, _P.MODERATE)
        entry = self._lobby.take(entry_id)
        return [ev.Denied(entry.id, DENIED_MESSAGE), ev.LobbyChanged()]

    # what participants do

    def chat(self, actor_id: str, text: object) -> list[Event]:
        actor = self._actor(actor_id, _P.CHAT)
        clean = chat_text(text, self.limits.chat_max_length)
        bucket = self._buckets.get(actor_id)
        if bucket is None:
            bucket = TokenBucket(self.limits.chat_burst, self.limits.chat_per_second, self._clock)
            self._buckets[actor_id] = bucket
        if not bucket.take():
            raise RoomError("rate_limited", "too many messages; wait a moment")
        message = self._chat.post(actor.id, actor.name, clean, self._wall())
        return [ev.ChatPosted(message.as_dict())]

    def hand(self, actor_id: str, raised: bool, target_id: str | None = None) -> list[Event]:
        actor = self._actor(actor_id)
        if target_id is None or target_id == actor_id:
            if not actor.can(_P.RAISE_HAND):
                raise Forbidden()
            target = actor
        else:
            if not actor.can(_P.MODERATE):
                raise Forbidden()
            if raised:
                raise Invalid("only the participant may raise their own hand")
            target = self.participant(target_id)
        changed = self._hands.raise_hand(target.id) if raised else self._hands.lower(target.id)
        if not changed:
            return []
        return [
            ev.HandsChanged(self._hands.ids()),
            ev.ParticipantUpdated(self.describe(target)),
        ]

    def set_state(self, actor_id: str, changes: dict[str, bool]) -> list[Event]:
        """What a participant publishes: mic, camera, screen (turning on needs the permission)."""
        actor = self._actor(actor_id)
        for name, on in changes.items():
            if name not in _STATE_NEEDS:
                raise Invalid(f"unknown state {name}")
            if on and not actor.can(_STATE_NEEDS[name]):
                raise Forbidden(f"your role may not publish {name}")
        updated = _with_state(actor, changes)
        if updated == actor:
            return []
        self._seats[actor_id] = updated
        return [ev.ParticipantUpdated(self.describe(updated))]

    # moderation of participants

    def _target(self, actor: Participant, target_id: str) -> Participant:
        """A participant the actor may act on: not themselves, and not of their rank or above."""
        target = self.participant(target_id)
        if target.id == actor.id:
            raise Invalid("you cannot do this to yourself")
        if actor.role is not Role.HOST and RANK[target.role] >= RANK[actor.role]:
            raise Forbidden("the participant's role is not below yours")
        return target

    def remove(self, actor_id: str, target_id: str) -> list[Event]:
        actor = self._actor(actor_id, _P.MODERATE)
        projector = self._projectors.get(target_id)
        if projector is not None:
            if actor.role is not Role.HOST and RANK[projector.role] >= RANK[actor.role]:
                raise Forbidden("the projector's roster entry is not below yours")
            del self._projectors[target_id]
            if projector.visitor.identity is not None:
                self._removed.add(projector.visitor.identity)
            return [
                ev.Removed(target_id, REMOVED_MESSAGE),
                ev.ParticipantLeft(target_id, "removed"),
            ]
        target = self._target(actor, target_id)
        if target.visitor.identity is not None:
            self._removed.add(target.visitor.identity)
        return [ev.Removed(target.id, REMOVED_MESSAGE), *self._unseat(target.id, "removed")]

    def lock(self, actor_id: str, locked: bool) -> list[Event]:
        self._actor(actor_id, _P.MODERATE)
        if self.locked == locked:
            return []
        self.locked = locked
        return [ev.LockChanged(locked)]

    def ask_mute(self, actor_id: str, target_id: str) -> list[Event]:
        actor = self._actor(actor_id, _P.MODERATE)
        target = self.participant(target_id)
        if target.id == actor.id:
            raise Invalid("you cannot do this to yourself")
        if actor.role is not Role.HOST and RANK[target.role] > RANK[actor.role]:
            raise Forbidden("the participant's role is above yours")
        return [ev.MuteAsked(target.id, actor.name)]

    def mute(self, actor_id: str, target_id: str) -> list[Event]:
        """A moderator stops a participant's microphone: it is off until they turn it on."""
        actor = self._actor(actor_id, _P.MODERATE)
        target = self.participant(target_id)
        if target.id == actor.id:
            raise Invalid("you cannot do this to yourself")
        if actor.role is not Role.HOST and RANK[target.role] > RANK[actor.role]:
            raise Forbidden("the participant's role is above yours")
        events: list[Event] = [ev.Muted(target.id, actor.name)]
        if target.mic:
            updated = self._seats[target.id] = _with_state(target, {"mic": False})
            events.append(ev.ParticipantUpdated(self.describe(updated)))
        return events

    def set_role(self, actor_id: str, target_id: str, role: Role) -> list[Event]:
        actor = self._actor(actor_id, _P.ASSIGN_ROLES)
        target = self.participant(target_id)
        if target.id == actor.id:
            raise Forbidden("you cannot change your own role")
        if not may_assign(actor.role, target.role, role):
            raise Forbidden("you may not give this role to this participant")
        if target.role is role:
            return []
        updated = replace(target, role=role)
        # Whatever the new role may not publish is switched off.
        off = {name: False for name, need in _STATE_NEEDS.items() if not updated.can(need)}
        updated = _with_state(updated, off)
        self._seats[target.id] = updated
        # Given the floor (a viewer or listener who may now publish): the raised hand is answered.
        publishing = _STATE_NEEDS.values()
        answered = not any(target.can(p) for p in publishing) and any(
            updated.can(p) for p in publishing
        )
        lowered = answered and self._hands.lower(target.id)
        events: list[Event] = [
            ev.ParticipantUpdated(self.describe(updated)),
            ev.SelfChanged(target.id, self.describe_self(updated)),
        ]
        if lowered:
            events.append(ev.HandsChanged(self._hands.ids()))
        if target.visitor.roster_id is not None:
            events.append(ev.RoleSaved(target.visitor.roster_id, role))
        return events

    def end(self, actor_id: str) -> list[Event]:
        self._actor(actor_id, _P.MODERATE)
        return self.close(ENDED_MESSAGE)

    def close(self, message: str) -> list[Event]:
        """End the meeting for everyone, without asking whose right it is (the server's call)."""
        self._seats.clear()
        self._projectors.clear()
        self._buckets.clear()
        self._lobby = Lobby()
        self._hands = HandQueue()
        return [ev.Ended(message)]


def _with_state(seat: Participant, changes: dict[str, bool]) -> Participant:
    return replace(
        seat,
        mic=changes.get("mic", seat.mic),
        camera=changes.get("camera", seat.camera),
        screen=changes.get("screen", seat.screen),
    )
