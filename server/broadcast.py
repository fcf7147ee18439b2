"""What a live room's events become on the wire: emits to rooms and to single connections.

The base of the /meeting namespace (server/namespace.py): it keeps the live meetings of this
process, binds seats and lobby entries to connections, and turns rooms/ events into emits.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import socketio

from media.sfu import Sfu
from rooms import events as ev
from rooms.errors import NotFound, RoomError
from rooms.events import Event
from rooms.meeting import now
from rooms.participant import PROJECTOR_SEAT, Participant
from rooms.roles import Permission, Role
from rooms.store import Store
from server.config import Settings
from server.context import RecordingControl
from server.live import Connection, LiveMeeting
from server.rtc import client_ice_servers
from server.stage import Stage


class RoomBroadcast(socketio.AsyncNamespace):  # type: ignore[misc]
    """Live meetings of this process and the emits that tell of their changes."""

    def __init__(
        self,
        namespace: str,
        settings: Settings,
        store: Callable[[], Store],
        sfu: Callable[[], Sfu],
    ) -> None:
        super().__init__(namespace)
        self._settings = settings
        self._store = store  # read late: the store opens in a cleanup context after setup
        self._sfu = sfu  # likewise
        self._meetings: dict[str, LiveMeeting] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Set by server/recordings.py's setup: starts and stops recordings, tells their state.
        self.recordings: RecordingControl | None = None

    def _stage(self, live: LiveMeeting) -> Stage:
        """The meeting's media side, made on first use."""
        if live.stage is None:

            async def tell(seat_id: str, event: str, data: dict[str, Any]) -> None:
                sid = live.sids.get(seat_id)
                if sid is not None:
                    await self._tell(sid, event, data)

            async def announce(event: str, data: dict[str, Any]) -> None:
                await self.emit(event, data, room=live.room_name)

            def seat(seat_id: str) -> Participant | None:
                try:
                    return live.room.participant(seat_id)
                except NotFound:
                    return None

            live.stage = Stage(self._sfu(), tell, announce, self._spawn, seat)
        return live.stage

    def _snapshot(self, live: LiveMeeting, seat_id: str) -> dict[str, Any]:
        """The `joined` event: the room, the published tracks, ICE servers for this client."""
        stage = self._stage(live)
        return {
            **live.room.snapshot(seat_id),
            "tracks": stage.tracks(),
            "ice_servers": client_ice_servers(self._settings, seat_id),
            "speaking": stage.speakers.as_dict(),
            "recording": self._recording_state(live.room.meeting.id),
            "stage": stage.stage(),
            # HLS players get a programme of the stage while the meeting is live
            # (server/programmes.py); without it, only while the meeting is recorded.
            "hls": self._settings.hls_idle > 0,
        }

    def _recording_state(self, meeting_id: str) -> dict[str, Any]:
        if self.recordings is None:
            return {"on": False, "id": None, "notice": "", "error": None}
        return self.recordings.state(meeting_id)

    def _recording_over(self, meeting_id: str) -> None:
        """The live meeting ended or emptied: its recording stops (in the background)."""
        if self.recordings is not None:
            self._spawn(self.recordings.meeting_over(meeting_id))

    async def _connection(self, sid: str) -> Connection:
        session = await self.get_session(sid)
        conn = session.get("conn")
        if not isinstance(conn, Connection):
            raise RoomError("not_joined", "connect again")
        return conn

    async def _tell(self, sid: str, event: str, data: dict[str, Any]) -> None:
        # Our own connections live in this process: skip the message queue so that what one
        # client is told keeps its order with acks and disconnects.
        await self.emit(event, data, to=sid, ignore_queue=True)

    async def _detach(self, sid: str) -> None:
        with contextlib.suppress(Exception):
            (await self._connection(sid)).detach()

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _forget_if_empty(self, live: LiveMeeting) -> None:
        meeting_id = live.room.meeting.id
        if len(live.room) == 0 and self._meetings.get(meeting_id) is live:
            del self._meetings[meeting_id]
            self._recording_over(meeting_id)
            # Seats outside the roster (a recorder, the programme, a projector) would be left
            # alone in a room that is no more: it has ended for them, and they are let go (a
            # projector comes back for the next meeting on its link).
            alone, live.sids = list(live.sids.values()), {}
            for sid in alone:
                self._spawn(self._end_alone(sid))
            if live.stage is not None:
                self._spawn(live.stage.close())

    async def _leave_rooms(self, sid: str, live: LiveMeeting) -> None:
        await self.leave_room(sid, live.room_name)
        await self.leave_room(sid, live.crew_name)
        await self.leave_room(sid, live.moderators_name)

    async def _enter_rooms(self, sid: str, live: LiveMeeting, seat_id: str) -> None:
        await self.enter_room(sid, live.room_name)
        seat = live.room.participant(seat_id)
        if seat.role is Role.VIEWER:
            await self.leave_room(sid, live.crew_name)
        else:
            await self.enter_room(sid, live.crew_name)
        if seat.can(Permission.MODERATE):
            await self.enter_room(sid, live.moderators_name)
        else:
            await self.leave_room(sid, live.moderators_name)

    async def _about(self, live: LiveMeeting, event: str, data: dict[str, Any]) -> None:
        """Tell the room of a participant: everyone of a participant, the crew (and the person
        themselves) of a viewer."""
        seat_id = data["id"]
        own = live.sids.get(seat_id)
        if seat_id not in live.audience:
            skip = own if event == "participant_joined" else None
            await self.emit(event, data, room=live.room_name, skip_sid=skip)
            return
        await self.emit(event, data, room=live.crew_name, skip_sid=own)
        if own is not None and event == "participant_updated":
            await self._tell(own, event, data)

    async def _audience_changed(self, live: LiveMeeting, data: dict[str, Any]) -> None:
        """Keep `live.audience` in step with a participant's role. Someone who joins the
        audience is forgotten by the other viewers and forgets them; someone who leaves it
        (given the floor) is told of the audience."""
        seat_id = data["id"]
        viewer = data.get("role") == Role.VIEWER.value
        if viewer == (seat_id in live.audience):
            return
        sid = live.sids.get(seat_id)
        if viewer:
            live.audience.add(seat_id)
            # Everyone forgets them; the crew hears of them again at once (`_about`).
            gone = {"id": seat_id, "reason": "audience"}
            await self.emit("participant_left", gone, room=live.room_name, skip_sid=sid)
        else:
            live.audience.discard(seat_id)
        if sid is None:
            return
        for other in list(live.audience):
            if other == seat_id:
                continue
            if viewer:
                await self._tell(sid, "participant_left", {"id": other, "reason": "audience"})
            else:
                person = live.room.describe(live.room.participant(other))
                await self._tell(sid, "participant_joined", person)

    def _start_grace(self, live: LiveMeeting, seat_id: str) -> None:
        old = live.timers.pop(seat_id, None)
        if old is not None:
            old.cancel()
        task = self._spawn(self._expire(live, seat_id))
        live.timers[seat_id] = task

    async def _expire(self, live: LiveMeeting, seat_id: str) -> None:
        await asyncio.sleep(self._settings.reconnect_grace)
        async with live.lock:
            if live.timers.get(seat_id) is not asyncio.current_task():
                return
            del live.timers[seat_id]
            if seat_id in live.sids:
                return
            try:
                events = live.room.leave(seat_id, "timeout")
            except NotFound:
                return
            await self._apply(live, events, [])
            self._forget_if_empty(live)

    async def _seat(self, sid: str, conn: Connection, live: LiveMeeting, seat_id: str) -> None:
        """Bind a new seat to its connection and open its attendance record."""
        conn.seat_id = seat_id
        conn.entry_id = None
        live.sids[seat_id] = sid
        await self._open_stay(live, seat_id)

    async def _open_stay(self, live: LiveMeeting, seat_id: str) -> None:
        seat = live.room.participant(seat_id)
        v = seat.visitor
        live.stays[seat_id] = await self._store().record_join(
            live.room.meeting.id,
            v.roster_id or seat.id,
            v.name,
            seat.role.value,
            v.school,
            v.region,
            now(),
        )

    async def _apply(self, live: LiveMeeting, events: list[Event], closing: list[str]) -> None:
        """Emit what `events` say happened; connections to close go to `closing`."""
        room = live.room_name
        for event in events:
            match event:
                case ev.ParticipantJoined(participant=data) if data["id"].startswith(
                    PROJECTOR_SEAT
                ):
                    # A projector is shown to the moderators only, who may remove it.
                    await self.emit("participant_joined", data, room=live.moderators_name)
                case ev.ParticipantJoined(participant=data):
                    if data.get("role") == Role.VIEWER.value:
                        live.audience.add(data["id"])
                    await self._about(live, "participant_joined", data)
                case ev.ParticipantUpdated(participant=data):
                    await self._audience_changed(live, data)
                    await self._about(live, "participant_updated", data)
                case ev.ParticipantLeft(id=seat_id, reason=reason):
                    live.outside.discard(seat_id)
                    await self._unbind(live, seat_id)
                    if live.stage is not None:
                        self._spawn(live.stage.leave(seat_id))
                    left = {"id": seat_id, "reason": reason}
                    if seat_id.startswith(PROJECTOR_SEAT):
                        await self.emit("participant_left", left, room=live.moderators_name)
                    elif seat_id in live.audience:
                        live.audience.discard(seat_id)
                        await self.emit("participant_left", left, room=live.crew_name)
                    else:
                        await self.emit("participant_left", left, room=room)
                case ev.SelfChanged(id=seat_id, self=data):
                    if live.stage is not None:
                        seat = live.room.participant(seat_id)
                        self._spawn(live.stage.permissions_changed(seat))
                    sid = live.sids.get(seat_id)
                    if sid is not None:
                        await self._enter_rooms(sid, live, seat_id)
                        await self._tell(sid, "you", data)
                        if Permission.MODERATE.value in data["permissions"]:
                            await self._tell(sid, "lobby_updated", self._lobby_list(live))
                case ev.LobbyChanged():
                    await self.emit(
                        "lobby_updated", self._lobby_list(live), room=live.moderators_name
                    )
                    for entry_id, sid in live.waiting.items():
                        if live.room.in_lobby(entry_id):
                            place = {"position": live.room.position(entry_id)}
                            await self._tell(sid, "lobby", place)
                case ev.Admitted(entry_id=entry_id, participant_id=seat_id):
                    await self._admitted(live, entry_id, seat_id)
                case ev.Denied(entry_id=entry_id, message=message):
                    sid = live.waiting.pop(entry_id, None)
                    if sid is not None:
                        await self._detach(sid)
                        await self._tell(sid, "denied", {"message": message})
                        closing.append(sid)
                case ev.HandsChanged(hands=hands):
                    await self._hands(live, hands)
                case ev.ChatPosted(message=message):
                    await self.emit("chat", message, room=room)
                case ev.LockChanged(locked=locked):
                    await self.emit("locked", {"locked": locked}, room=room)
                case ev.MuteAsked(id=seat_id, by=by):
                    sid = live.sids.get(seat_id)
                    if sid is not None:
                        await self._tell(sid, "mute_request", {"by": by})
                case ev.Muted(id=seat_id, by=by):
                    await self._stage(live).mute(seat_id)
                    sid = live.sids.get(seat_id)
                    if sid is not None:
                        await self._tell(sid, "muted", {"by": by})
                case ev.Removed(id=seat_id, message=message):
                    sid = live.sids.get(seat_id)
                    if sid is not None:
                        await self._tell(sid, "removed", {"message": message})
                        closing.append(sid)
                case ev.Ended(message=message):
                    await self._ended(live, message, closing)
                case ev.RoleSaved(roster_id=roster_id, role=role):
                    await self._save_role(live.room.meeting.id, roster_id, role)

    async def _hands(self, live: LiveMeeting, hands: list[str]) -> None:
        """Tell of the hand queue. A change of viewers' hands only goes to the crew and to
        those viewers: the rest of the audience has no use for it, and a hundred viewers
        toggling would otherwise send each other a message per toggle per viewer."""
        changed = set(hands).symmetric_difference(live.hands)
        live.hands = list(hands)
        # A seat that left is forgotten by everyone already (`participant_left`).
        crew = {seat.id for seat in live.room.participants()} - live.audience
        if not changed or changed & crew:
            await self.emit("hands", {"hands": hands}, room=live.room_name)
            return
        await self.emit("hands", {"hands": hands}, room=live.crew_name)
        for seat_id in changed:
            sid = live.sids.get(seat_id)
            if sid is not None:
                await self._tell(sid, "hands", {"hands": hands})

    def _lobby_list(self, live: LiveMeeting) -> dict[str, Any]:
        return {"lobby": [e.as_dict() for e in live.room.lobby_entries()]}

    async def _unbind(self, live: LiveMeeting, seat_id: str) -> None:
        """A seat is gone: close its stay, free its connection, stop its timer."""
        timer = live.timers.pop(seat_id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        stay = live.stays.pop(seat_id, None)
        if stay is not None:
            await self._store().record_leave(stay, now())
        sid = live.sids.pop(seat_id, None)
        if sid is not None:
            await self._leave_rooms(sid, live)
            await self._detach(sid)

    async def _admitted(self, live: LiveMeeting, entry_id: str, seat_id: str) -> None:
        sid = live.waiting.pop(entry_id, None)
        if sid is None:  # gone meanwhile; the seat waits out the grace period like a drop
            live.room.drop(seat_id)
            self._start_grace(live, seat_id)
            return
        conn = await self._connection(sid)
        await self._seat(sid, conn, live, seat_id)
        await self._tell(sid, "admitted", {})
        await self._stage(live).enter(seat_id)
        await self._enter_rooms(sid, live, seat_id)
        await self._tell(sid, "joined", self._snapshot(live, seat_id))
        self._stage(live).offer_soon(seat_id)

    async def _ended(self, live: LiveMeeting, message: str, closing: list[str]) -> None:
        at = now()
        for stay in live.stays.values():
            await self._store().record_leave(stay, at)
        live.stays.clear()
        for timer in live.timers.values():
            timer.cancel()
        live.timers.clear()
        if live.stage is not None:
            self._spawn(live.stage.close())
        if self._meetings.get(live.room.meeting.id) is live:
            del self._meetings[live.room.meeting.id]
        self._recording_over(live.room.meeting.id)
        everyone = [*live.sids.values(), *live.waiting.values()]
        live.sids.clear()
        live.waiting.clear()
        for sid in everyone:
            await self._detach(sid)
            await self._leave_rooms(sid, live)
            await self._tell(sid, "ended", {"message": message})
            closing.append(sid)

    async def _save_role(self, meeting_id: str, roster_id: str, role: Role) -> None:
        store = self._store()
        entry = await store.get_entry(meeting_id, roster_id)
        if entry is not None:
            await store.update_entry(replace(entry, role=role))

    async def _end_alone(self, sid: str) -> None:
        await self._tell(sid, "ended", {"message": "everyone has left"})
        await self._detach(sid)
        await self._close([sid])

    async def _close(self, sids: list[str]) -> None:
        """Disconnect connections after telling them why, outside any room lock.

        Deferred by one loop turn so that a sender closing itself (`end`) still gets its ack.
        """
        if sids:
            self._spawn(self._disconnect_soon(list(sids)))

    async def _disconnect_soon(self, sids: list[str]) -> None:
        await asyncio.sleep(0)
        for sid in sids:
            with contextlib.suppress(Exception):
                await self.disconnect(sid)
