"""Seats outside the roster: the recording process (server/recorder.py), a hidden subscriber of
the whole room; the broadcast's programme process (server/programmes.py), a hidden subscriber of
the stage; a hall's projector (web/static/projector.js), receiving everyone but its hall. None is
in the attendance, none has a grace period.

A projector obeys the rules its roster entry obeys (rooms/room.py): it needs an entry whose role
may run the hall (`run_hall`, docs/roles.md), waits in the lobby when that entry would, is kept
out when the entry (or a projector of it) was removed, and is listed for moderators
("Projector — Hall 1"), who may remove it.
"""

import asyncio
from typing import Any

from rooms.errors import Forbidden, RoomError
from rooms.events import Event
from rooms.participant import PROJECTOR_SEAT, Visitor
from rooms.recordings import RecordingStatus
from rooms.roles import Permission, can
from server.auth import BadToken, Grant, Tokens
from server.broadcast import RoomBroadcast
from server.live import Connection, LiveMeeting
from server.rtc import client_ice_servers

RECORDER_SEAT = "rec-"  # + recording id: the recording process's hidden seat
# PROJECTOR_SEAT (rooms/participant.py) + a random part: a hall projector's receive-only seat
PROGRAMME_SEAT = "prg-"  # + session id: the broadcast programme's hidden seat (stage only)
HIDDEN_SEATS = (RECORDER_SEAT, PROJECTOR_SEAT, PROGRAMME_SEAT)


class HiddenSeats(RoomBroadcast):
    """Joining and leaving of the seats outside the roster (the base of the /meeting namespace)."""

    _tokens: Tokens

    # the recording process (server/recorder.py), a hidden subscriber of the whole room, and the
    # broadcast's programme process (server/programmes.py), a hidden subscriber of the stage

    def _process_grant(self, token: object) -> Grant | None:
        """The grant of a recorder or programme token; None for anything else (checked as
        usual later)."""
        try:
            grant = self._tokens.check(token)
        except BadToken:
            return None
        return grant if grant.kind in ("recorder", "programme") else None

    async def _join_process(self, sid: str, conn: Connection, grant: Grant) -> dict[str, Any]:
        """Seat a recorder or a programme process: not in the room's roster, lists or
        attendance; in the socket.io room for its events, and offered every published track
        (a recorder) or the stage (the programme) like any subscriber."""
        if grant.kind == "recorder":
            recording = await self._store().get_recording(grant.entry_id)
            if (
                recording is None
                or recording.meeting_id != grant.meeting_id
                or recording.status is not RecordingStatus.RECORDING
            ):
                raise BadToken("this recorder token is not for a recording of this meeting")
        stage_only = grant.kind == "programme"
        seat_id = (PROGRAMME_SEAT if stage_only else RECORDER_SEAT) + grant.entry_id
        kind = "programme" if stage_only else "recorder"
        live = await self._seat_hidden(sid, conn, grant.meeting_id, seat_id, "is not live")
        self._spawn(self._welcome_hidden(sid, live, seat_id, {"kind": kind}, stage_only=stage_only))
        return {"ok": True, "status": "joined"}

    async def _seat_hidden(
        self, sid: str, conn: Connection, meeting_id: str, seat_id: str, not_live: str
    ) -> LiveMeeting:
        """Bind a hidden seat to this connection (a process that reconnected before its old
        socket closed takes its seat over); `not_live` ends "the meeting ..." when it is not."""
        live = self._meetings.get(meeting_id)
        if live is None:
            raise RoomError("not_live", f"the meeting {not_live}")
        async with live.lock:
            if self._meetings.get(meeting_id) is not live:
                raise RoomError("not_live", f"the meeting {not_live}")
            if conn.meeting_id is not None:
                raise RoomError("already_joined", "this connection has already joined")
            old_sid = live.sids.get(seat_id)
            if old_sid is not None:
                await self._detach(old_sid)
                await self._leave_rooms(old_sid, live)
                await self._close([old_sid])
            conn.meeting_id, conn.seat_id = meeting_id, seat_id
            live.sids[seat_id] = sid
        return live

    async def _welcome_hidden(
        self,
        sid: str,
        live: LiveMeeting,
        seat_id: str,
        me: dict[str, Any],
        apart: str | None = None,
        stage_only: bool = False,
    ) -> None:
        """Its receiving connection, the room's events, and the `joined` snapshot; `me` is
        what the snapshot's `self` says besides the seat id."""
        await asyncio.sleep(0)
        async with live.lock:
            if live.sids.get(seat_id) != sid:
                return
            stage = self._stage(live)
            whole = seat_id.startswith(RECORDER_SEAT)  # the recorder: every track, never paused
            await stage.enter(seat_id, apart=apart, stage_only=stage_only, whole=whole)
            await self.enter_room(sid, live.room_name)
            snapshot = {
                "self": {"id": seat_id, **me},
                "meeting": {"id": live.room.meeting.id, "title": live.room.meeting.title},
                "participants": live.room.summary()["participants"],
                "tracks": stage.tracks(),
                "speaking": stage.speakers.as_dict(),
                "stage": stage.stage(),
                "ice_servers": client_ice_servers(self._settings, seat_id),
            }
            await self._tell(sid, "joined", snapshot)
            stage.offer_soon(seat_id)

    async def _hidden_gone(self, sid: str, live: LiveMeeting, seat_id: str) -> list[Event]:
        """A hidden seat left or its connection dropped (under the lock): no grace period.
        The events to apply (a projector's leaving, told to the moderators)."""
        if live.sids.get(seat_id) != sid:
            return []
        if seat_id.startswith(PROJECTOR_SEAT):
            return live.room.projector_gone(seat_id)  # `_apply` unbinds it
        del live.sids[seat_id]
        await self._leave_rooms(sid, live)
        if live.stage is not None:
            self._spawn(live.stage.leave(seat_id))
        return []

    # a hall's projector (web/static/projector.js): hidden, receives everyone but its hall

    async def _join_projector(self, sid: str, conn: Connection, token: object) -> dict[str, Any]:
        """Seat a projector with the personal link of a roster entry that may run the hall,
        or queue it in the lobby as that entry would be; it receives every track but that
        entry's own."""
        grant = self._tokens.check(token)
        if grant.kind != "invite":
            raise BadToken("a projector opens with a roster member's personal link")
        entry = await self._store().get_entry(grant.meeting_id, grant.entry_id)
        if entry is None:
            raise BadToken("this invitation was withdrawn")
        if not can(entry.role, Permission.RUN_HALL):
            raise Forbidden(f"a {entry.role.value}'s link cannot open a projector")
        visitor = Visitor(
            name=f"Projector — {entry.name}",
            role=entry.role,
            roster_id=entry.id,
            school=entry.school,
            region=entry.region,
            identity="prj:" + entry.id,
            projector_of="r:" + entry.id,
        )
        live = self._meetings.get(grant.meeting_id)
        if live is None:
            raise RoomError("not_live", "the meeting has not started yet")
        closing: list[str] = []
        try:
            async with live.lock:
                if self._meetings.get(grant.meeting_id) is not live:
                    raise RoomError("not_live", "the meeting has not started yet")
                if conn.meeting_id is not None:
                    raise RoomError("already_joined", "this connection has already joined")
                place, events = live.room.arrive(visitor)
                conn.meeting_id = grant.meeting_id
                if place.id.startswith(PROJECTOR_SEAT):
                    conn.seat_id = place.id
                    live.sids[place.id] = sid
                    await self._apply(live, events, closing)
                    self._welcome_projector(sid, live, place.id, entry.id)
                    return {"ok": True, "status": "joined"}
                conn.entry_id = place.id
                live.waiting[place.id] = sid
                await self._apply(live, events, closing)
                return {"ok": True, "status": "lobby", "position": live.room.position(place.id)}
        finally:
            await self._close(closing)

    def _welcome_projector(self, sid: str, live: LiveMeeting, seat_id: str, hall: str) -> None:
        me = {"kind": "projector", "hall": hall}
        self._spawn(self._welcome_hidden(sid, live, seat_id, me, apart=hall))

    async def _admitted(self, live: LiveMeeting, entry_id: str, seat_id: str) -> None:
        """A moderator let a projector in from the lobby (people: RoomBroadcast's)."""
        if not seat_id.startswith(PROJECTOR_SEAT):
            await super()._admitted(live, entry_id, seat_id)
            return
        sid = live.waiting.pop(entry_id, None)
        projector = next((p for p in live.room.projectors() if p.id == seat_id), None)
        if sid is None or projector is None or projector.visitor.roster_id is None:
            await self._apply(live, live.room.projector_gone(seat_id), [])
            return
        conn = await self._connection(sid)
        conn.seat_id, conn.entry_id = seat_id, None
        live.sids[seat_id] = sid
        await self._tell(sid, "admitted", {})
        self._welcome_projector(sid, live, seat_id, projector.visitor.roster_id)
