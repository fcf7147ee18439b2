"""The live room's rules, without a network: every refusal changes nothing."""

from datetime import UTC, datetime
from typing import Any

import pytest

from rooms import events as ev
from rooms.errors import RoomError
from rooms.lobby import LobbyEntry
from rooms.meeting import Meeting, MeetingSettings
from rooms.participant import Participant, Visitor
from rooms.ratelimit import TokenBucket
from rooms.roles import Role
from rooms.room import LiveRoom, RoomLimits


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make_room(*, lobby: bool = True, clock: Clock | None = None, **limits: Any) -> LiveRoom:
    meeting = Meeting(
        id="m1",
        title="Meeting",
        starts_at=datetime(2026, 11, 28, tzinfo=UTC),
        settings=MeetingSettings(lobby=lobby),
    )
    return LiveRoom(meeting, RoomLimits(**limits), clock=clock or Clock())


def visitor(name: str, role: Role, roster: bool = True) -> Visitor:
    roster_id = f"r-{name}" if roster else None
    identity = f"r:{name}" if roster else None
    return Visitor(name=name, role=role, roster_id=roster_id, identity=identity)


def seat(room: LiveRoom, name: str, role: Role = Role.PARTICIPANT, **kw: Any) -> Participant:
    place, _ = room.arrive(visitor(name, role, **kw))
    if isinstance(place, LobbyEntry):
        room.admit(host_of(room), place.id)
        return next(p for p in room.participants() if p.name == name)
    return place


def host_of(room: LiveRoom) -> str:
    return next(p.id for p in room.participants() if p.role is Role.HOST)


def state(room: LiveRoom) -> Any:
    """Everything a participant could observe, to compare before and after a refusal."""
    return (room.summary(), room.hands(), room.locked, room.snapshot(host_of(room))["chat"])


def refused(room: LiveRoom, code: str, call: Any, *args: Any) -> None:
    before = state(room)
    with pytest.raises(RoomError) as caught:
        call(*args)
    assert caught.value.code == code
    assert state(room) == before


def test_host_and_moderator_skip_the_lobby_participants_wait() -> None:
    room = make_room()
    host, _ = room.arrive(visitor("host", Role.HOST))
    moderator, _ = room.arrive(visitor("mod", Role.MODERATOR))
    anna, events = room.arrive(visitor("anna", Role.PARTICIPANT))
    speaker, _ = room.arrive(visitor("sp", Role.SPEAKER))
    assert isinstance(host, Participant) and isinstance(moderator, Participant)
    assert isinstance(anna, LobbyEntry) and isinstance(speaker, LobbyEntry)
    assert events == [ev.LobbyChanged()]


def test_viewers_never_wait_and_nobody_waits_without_lobby() -> None:
    room = make_room()
    place, _ = room.arrive(visitor("v", Role.VIEWER, roster=False))
    assert isinstance(place, Participant)
    open_room = make_room(lobby=False)
    place, events = open_room.arrive(visitor("anna", Role.PARTICIPANT))
    assert isinstance(place, Participant)
    assert events == [ev.ParticipantJoined(open_room.describe(place))]


def test_lobby_keeps_order_admit_deny_admit_all() -> None:
    room = make_room()
    host = seat(room, "host", Role.HOST)
    entries = [room.arrive(visitor(n, Role.PARTICIPANT))[0] for n in "abcd"]
    ids = [e.id for e in entries]
    assert [room.position(i) for i in ids] == [1, 2, 3, 4]
    events = room.admit(host.id, ids[1])
    admitted = next(e for e in events if isinstance(e, ev.Admitted))
    assert admitted.entry_id == ids[1]
    assert room.participant(admitted.participant_id).name == "b"
    assert [room.position(i) for i in (ids[0], ids[2], ids[3])] == [1, 2, 3]
    events = room.deny(host.id, ids[0])
    assert events[0] == ev.Denied(ids[0], events[0].message)  # type: ignore[union-attr]
    events = room.admit_all(host.id)
    assert [e.entry_id for e in events if isinstance(e, ev.Admitted)] == [ids[2], ids[3]]
    assert [p.name for p in room.participants()] == ["host", "b", "c", "d"]
    assert room.lobby_entries() == []
    refused(room, "not_found", room.admit, host.id, ids[0])


def test_only_moderators_admit() -> None:
    room = make_room(lobby=False)
    seat(room, "host", Role.HOST)
    anna = seat(room, "anna")
    room.meeting = make_room().meeting  # lobby on again
    entry, _ = room.arrive(visitor("boris", Role.PARTICIPANT))
    refused(room, "forbidden", room.admit, anna.id, entry.id)
    refused(room, "forbidden", room.deny, anna.id, entry.id)
    refused(room, "forbidden", room.admit_all, anna.id)
    refused(room, "not_joined", room.admit, "p_nobody", entry.id)


def test_hand_queue_first_raised_first() -> None:
    room = make_room(lobby=False)
    host = seat(room, "host", Role.HOST)
    a, b, c = (seat(room, n) for n in "abc")
    v = seat(room, "v", Role.VIEWER, roster=False)
    for p in (b, v, a, c):
        room.hand(p.id, True)
    assert room.hands() == [b.id, v.id, a.id, c.id]
    assert room.hand(b.id, True) == []  # raising again keeps the place
    room.hand(a.id, False)
    assert room.hands() == [b.id, v.id, c.id]
    room.hand(host.id, False, v.id)  # a moderator lowers another's hand
    assert room.hands() == [b.id, c.id]
    refused(room, "forbidden", room.hand, a.id, False, b.id)
    refused(room, "invalid", room.hand, host.id, True, a.id)
    room.leave(b.id)
    assert room.hands() == [c.id]
    assert room.describe(room.participant(c.id))["hand"] is True


def test_chat_rate_limit_and_length() -> None:
    clock = Clock()
    room = make_room(
        lobby=False, clock=clock, chat_burst=3, chat_per_second=0.5, chat_max_length=10
    )
    host = seat(room, "host", Role.HOST)
    for i in range(3):
        room.chat(host.id, f"hi {i}")
    refused(room, "rate_limited", room.chat, host.id, "again")
    clock.t += 1.9
    refused(room, "rate_limited", room.chat, host.id, "again")
    clock.t += 0.2
    room.chat(host.id, "again")
    clock.t += 100
    refused(room, "invalid", room.chat, host.id, "x" * 11)
    refused(room, "invalid", room.chat, host.id, "   ")
    refused(room, "invalid", room.chat, host.id, 42)
    [posted] = room.chat(host.id, "  x" * 3)
    assert isinstance(posted, ev.ChatPosted)
    assert posted.message["text"] == "x  x  x"


def test_chat_keeps_the_last_fifty() -> None:
    room = make_room(lobby=False, chat_burst=100)
    host = seat(room, "host", Role.HOST)
    for i in range(60):
        room.chat(host.id, str(i))
    chat = room.snapshot(host.id)["chat"]
    assert [m["text"] for m in chat] == [str(i) for i in range(10, 60)]


def test_viewer_cannot_chat_or_moderate() -> None:
    room = make_room(lobby=False)
    seat(room, "host", Role.HOST)
    anna = seat(room, "anna")
    v = seat(room, "v", Role.VIEWER, roster=False)
    refused(room, "forbidden", room.chat, v.id, "hello")
    refused(room, "forbidden", room.remove, v.id, anna.id)
    refused(room, "forbidden", room.lock, v.id, True)
    refused(room, "forbidden", room.ask_mute, v.id, anna.id)
    refused(room, "forbidden", room.end, v.id)
    refused(room, "forbidden", room.set_state, v.id, {"mic": True})
    assert room.set_state(v.id, {"mic": False}) == []


def test_lock_and_remove() -> None:
    room = make_room(lobby=False)
    host = seat(room, "host", Role.HOST)
    anna = seat(room, "anna")
    seat(room, "boris")
    assert room.lock(host.id, True) == [ev.LockChanged(True)]
    events = room.remove(host.id, anna.id)
    assert isinstance(events[0], ev.Removed) and events[0].id == anna.id
    assert ev.ParticipantLeft(anna.id, "removed") in events
    refused(room, "locked", room.arrive, visitor("anna", Role.PARTICIPANT))
    refused(room, "locked", room.arrive, visitor("guest", Role.PARTICIPANT, roster=False))
    # A roster member who was not removed still gets in while locked.
    place, _ = room.arrive(visitor("clara", Role.PARTICIPANT))
    assert isinstance(place, Participant)
    room.lock(host.id, False)
    # After the unlock the removed one comes back through the lobby, even with the lobby off.
    place, _ = room.arrive(visitor("anna", Role.PARTICIPANT))
    assert isinstance(place, LobbyEntry)
    room.admit(host.id, place.id)
    # Admitted again: the removal is forgiven.
    room.leave(next(p.id for p in room.participants() if p.name == "anna"))
    place, _ = room.arrive(visitor("anna", Role.PARTICIPANT))
    assert isinstance(place, Participant)


def test_nobody_removes_their_rank_or_above() -> None:
    room = make_room(lobby=False)
    host = seat(room, "host", Role.HOST)
    m1 = seat(room, "m1", Role.MODERATOR)
    m2 = seat(room, "m2", Role.MODERATOR)
    refused(room, "forbidden", room.remove, m1.id, m2.id)
    refused(room, "forbidden", room.remove, m1.id, host.id)
    refused(room, "forbidden", room.ask_mute, m1.id, host.id)
    refused(room, "invalid", room.remove, host.id, host.id)
    refused(room, "not_found", room.remove, host.id, "p_none")
    room.remove(host.id, m1.id)


def test_set_role_promote_demote() -> None:
    room = make_room(lobby=False)
    host = seat(room, "host", Role.HOST)
    mod = seat(room, "mod", Role.MODERATOR)
    v = seat(room, "v", Role.VIEWER, roster=False)
    anna = seat(room, "anna")
    room.set_state(anna.id, {"mic": True, "camera": True})
    events = room.set_role(mod.id, v.id, Role.SPEAKER)
    you = next(e for e in events if isinstance(e, ev.SelfChanged))
    assert you.self["role"] == "speaker" and "publish_audio" in you.self["permissions"]
    assert not any(isinstance(e, ev.RoleSaved) for e in events)  # not a roster member
    events = room.set_role(host.id, anna.id, Role.VIEWER)
    assert ev.RoleSaved("r-anna", Role.VIEWER) in events
    assert room.participant(anna.id).mic is False  # viewers do not publish
    refused(room, "forbidden", room.set_role, mod.id, anna.id, Role.HOST)
    refused(room, "forbidden", room.set_role, mod.id, host.id, Role.VIEWER)
    refused(room, "forbidden", room.set_role, anna.id, v.id, Role.PARTICIPANT)
    refused(room, "forbidden", room.set_role, host.id, host.id, Role.VIEWER)
    room.set_role(host.id, mod.id, Role.PARTICIPANT)


def test_giving_a_viewer_the_floor_answers_their_raised_hand() -> None:
    room = make_room(lobby=False)
    host = seat(room, "host", Role.HOST)
    v = seat(room, "v", Role.VIEWER, roster=False)
    w = seat(room, "w", Role.VIEWER, roster=False)
    anna = seat(room, "anna")
    room.hand(v.id, True)
    room.hand(w.id, True)
    room.hand(anna.id, True)
    events = room.set_role(host.id, v.id, Role.SPEAKER)
    assert ev.HandsChanged([w.id, anna.id]) in events
    updated = next(e for e in events if isinstance(e, ev.ParticipantUpdated))
    assert updated.participant["hand"] is False
    # A change that gives no new right to publish leaves the hand where it is.
    events = room.set_role(host.id, anna.id, Role.SPEAKER)
    assert not any(isinstance(e, ev.HandsChanged) for e in events)
    assert room.hands() == [w.id, anna.id]


def test_grace_drop_and_resume() -> None:
    room = make_room(lobby=False)
    host = seat(room, "host", Role.HOST)
    anna = seat(room, "anna")
    [updated] = room.drop(anna.id)
    assert isinstance(updated, ev.ParticipantUpdated)
    assert updated.participant["connected"] is False
    assert room.seat_by_key(anna.key) == room.participant(anna.id)
    assert room.seat_of("r:anna") is not None
    room.resume(anna.id)
    assert room.participant(anna.id).connected
    assert room.leave(anna.id, "timeout")[0] == ev.ParticipantLeft(anna.id, "timeout")
    assert room.seat_by_key(anna.key) is None
    assert len(room) == 1
    assert room.end(host.id) == [ev.Ended("The meeting has ended.")]
    assert len(room) == 0


def test_full() -> None:
    room = make_room(lobby=False, max_participants=2)
    seat(room, "host", Role.HOST)
    seat(room, "a")
    # Only people outside the roster are refused `full`: a roster member always fits.
    refused(room, "full", room.arrive, visitor("b", Role.PARTICIPANT, roster=False))


def test_token_bucket() -> None:
    clock = Clock()
    bucket = TokenBucket(2, 1.0, clock)
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    clock.t = 0.5
    assert not bucket.take()
    clock.t = 1.0
    assert bucket.take()
    clock.t = 100
    assert [bucket.take() for _ in range(3)] == [True, True, False]
