"""The /meeting socket.io namespace: joins, the lobby, chat, hands and moderation.

Handlers check the payload, ask the meeting's LiveRoom (rooms/) to make the change, and turn the
events it returns into emits. Bad input gets an error reply and changes nothing.
"""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from media.sfu import Sfu
from rooms.errors import Forbidden, Invalid, RoomError
from rooms.events import Event
from rooms.meeting import Meeting, now
from rooms.participant import Participant, Visitor
from rooms.roles import Permission, parse_role
from rooms.room import LiveRoom, RoomLimits
from rooms.store import Store
from server.auth import Tokens
from server.config import Settings
from server.context import RecordingControl
from server.hidden_seats import HIDDEN_SEATS, HiddenSeats
from server.live import Connection, LiveMeeting
from server.metrics import Metrics
from server.payloads import (
    MAX_PAYLOAD,
    MAX_SDP_PAYLOAD,
    flag,
    ident,
    payload_object,
    required_ident,
)
from server.stage import Stage
from server.visitors import AddressBuckets, at_the_door

log = logging.getLogger(__name__)

NAMESPACE = "/meeting"
STOPPING_MESSAGE = "The server is restarting; reconnect in a moment."
REPLACED_MESSAGE = "You joined from another window or device."

SDP_EVENTS = frozenset({"publish", "subscribe_answer"})

Handler = Callable[[str, Connection, dict[str, Any]], Awaitable[dict[str, Any]]]


class MeetingNamespace(HiddenSeats):
    """Live rooms of this process, driven by socket.io events; also the app's LiveRooms."""

    def __init__(
        self,
        settings: Settings,
        store: Callable[[], Store],
        tokens: Tokens,
        metrics: Metrics,
        sfu: Callable[[], Sfu],
    ) -> None:
        super().__init__(NAMESPACE, settings, store, sfu)
        self._tokens = tokens
        self._metrics = metrics
        self._connected: set[str] = set()
        self._all_gone = asyncio.Event()  # set when the last connection closes
        self._limits = RoomLimits(
            chat_max_length=settings.chat_max_length,
            chat_burst=settings.chat_burst,
            chat_per_second=settings.chat_per_second,
            max_participants=settings.max_participants,
            max_viewers=settings.max_viewers,
        )
        # Anonymous joins per client address (server/visitors.py): a crowd from one place
        # cannot take every viewer's seat in a second.
        self._anonymous = AddressBuckets(
            settings.anonymous_joins_burst, settings.anonymous_joins_per_second
        )
        self._handlers: dict[str, Handler] = {
            "join": self._join,
            "leave": self._leave,
            "admit": self._admit,
            "deny": self._deny,
            "admit_all": self._admit_all,
            "chat": self._chat,
            "hand": self._hand,
            "state": self._state,
            "remove": self._remove,
            "lock": self._lock,
            "set_role": self._set_role,
            "ask_mute": self._ask_mute,
            "end": self._end,
            # media (server/stage.py)
            "publish": self._publish,
            "unpublish": self._unpublish,
            "subscribe_answer": self._subscribe_answer,
            "ice": self._ice,
            "video": self._video,
            "audio_only": self._audio_only,
            "mute": self._mute,
            # recording (server/recordings.py)
            "recording_start": self._recording_start,
            "recording_stop": self._recording_stop,
            # the broadcast's stage (server/stage.py, rooms/onstage.py)
            "spotlight": self._spotlight,
            "floor": self._floor,
        }

    # figures for /metrics and the LiveRooms protocol

    def meetings_live(self) -> int:
        return len(self._meetings)

    def seated(self) -> int:
        return sum(len(m.room.participants()) for m in self._meetings.values())

    def waiting(self) -> int:
        return sum(len(m.room.lobby_entries()) for m in self._meetings.values())

    def live(self, meeting_id: str) -> dict[str, Any] | None:
        live = self._meetings.get(meeting_id)
        return live.room.summary() if live else None

    async def end(self, meeting_id: str, message: str) -> None:
        live = self._meetings.get(meeting_id)
        if live is None:
            return
        closing: list[str] = []
        async with live.lock:
            await self._apply(live, live.room.close(message), closing)
        await self._close(closing)

    # connection lifecycle

    async def trigger_event(self, event: str, *args: Any) -> Any:
        if event == "connect":
            sid = args[0]
            await self.save_session(sid, {"conn": Connection()})
            self._connected.add(sid)
            return True
        if event == "disconnect":
            await self._disconnected(args[0])
            return None
        return await self._dispatch(event, args[0], args[1:])

    async def _dispatch(self, event: object, sid: str, args: tuple[Any, ...]) -> dict[str, Any]:
        name = str(event)[:64]
        try:
            conn = await self._connection(sid)
            if not conn.bucket.take():
                raise RoomError("rate_limited", "too many events; slow down")
            handler = self._handlers.get(name)
            if handler is None:
                raise RoomError("unknown_event", f"no such event: {name}")
            limit = MAX_SDP_PAYLOAD if name in SDP_EVENTS else MAX_PAYLOAD
            return await handler(sid, conn, payload_object(args, limit))
        except RoomError as exc:
            return await self._refuse(sid, name, exc.code, exc.message)
        except Exception:
            log.exception("signaling event %s failed", name)
            return await self._refuse(sid, name, "internal", "internal server error")

    async def _refuse(self, sid: str, event: str, code: str, message: str) -> dict[str, Any]:
        self._metrics.error(code)
        with contextlib.suppress(Exception):  # the sender may be gone already
            await self._tell(sid, "error", {"event": event, "code": code, "message": message})
        return {"error": {"code": code, "message": message}}

    async def _disconnected(self, sid: str) -> None:
        self._connected.discard(sid)
        if not self._connected:
            self._all_gone.set()
        try:
            conn = await self._connection(sid)
        except (RoomError, KeyError):
            return
        live = self._meetings.get(conn.meeting_id or "")
        if live is None:
            return
        async with live.lock:
            events: list[Event] = []
            if conn.entry_id is not None:
                live.waiting.pop(conn.entry_id, None)
                if live.room.in_lobby(conn.entry_id):
                    events = live.room.withdraw(conn.entry_id)
            elif conn.seat_id is not None and conn.seat_id.startswith(HIDDEN_SEATS):
                events = await self._hidden_gone(sid, live, conn.seat_id)
            elif conn.seat_id is not None and live.sids.get(conn.seat_id) == sid:
                # The seat is kept for the grace period, shown as not connected.
                del live.sids[conn.seat_id]
                await self._leave_rooms(sid, live)
                events = live.room.drop(conn.seat_id)
                self._start_grace(live, conn.seat_id)
            conn.detach()
            await self._apply(live, events, [])
            self._forget_if_empty(live)

    # joining

    def _address(self, sid: str) -> str:
        """The client's address as the server's socket saw it (a proxy's own address when
        behind one: docs/security.md)."""
        environ = self.server.get_environ(sid, namespace=self.namespace) or {}
        request = environ.get("aiohttp.request")
        return str(getattr(request, "remote", "") or environ.get("REMOTE_ADDR", ""))

    async def _join(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        if conn.meeting_id is not None:
            raise RoomError("already_joined", "this connection has already joined")
        process = self._process_grant(p.get("token"))
        if process is not None:
            return await self._join_process(sid, conn, process)
        if p.get("projector") is True:
            return await self._join_projector(sid, conn, p.get("token"))
        if p.get("token") is None and not self._anonymous.take(self._address(sid)):
            raise RoomError("rate_limited", "too many joins from your address; try again soon")
        meeting, visitor, personal = await at_the_door(p, self._store(), self._tokens)
        seat_key = p.get("seat")
        if seat_key is not None and (not isinstance(seat_key, str) or len(seat_key) > 64):
            raise Invalid("seat must be a string")
        while True:
            live = self._meetings.get(meeting.id)
            if live is None:
                live = self._meetings[meeting.id] = LiveMeeting(LiveRoom(meeting, self._limits))
            closing: list[str] = []
            try:
                async with live.lock:
                    if self._meetings.setdefault(meeting.id, live) is not live:
                        continue  # the room emptied and a new one began while we waited
                    if conn.meeting_id is not None:  # two joins raced on one connection
                        raise RoomError("already_joined", "this connection has already joined")
                    live.room.meeting = meeting
                    return await self._enter(sid, conn, live, visitor, personal, seat_key, closing)
            finally:
                self._forget_if_empty(live)
                await self._close(closing)

    async def _enter(
        self,
        sid: str,
        conn: Connection,
        live: LiveMeeting,
        visitor: Visitor,
        personal: bool,
        seat_key: str | None,
        closing: list[str],
    ) -> dict[str, Any]:
        """Seat the visitor, resume their seat, or queue them in the lobby (under the lock)."""
        seat = live.room.seat_by_key(seat_key)
        if seat is not None and seat.visitor.identity != visitor.identity:
            seat = None
        if seat is None and personal and visitor.identity is not None:
            seat = live.room.seat_of(visitor.identity)
            if seat is not None and seat.id in live.outside:
                raise RoomError(
                    "already_joined",
                    "you are in this meeting through a WHIP publisher (e.g. OBS); stop it first",
                )
            if seat is not None and seat.id in live.sids:
                raise RoomError(
                    "already_joined",
                    "you are already in this meeting in another window; "
                    "close it or rejoin from there",
                )
            if seat is None and live.room.waiting_of(visitor.identity) is not None:
                raise RoomError("already_joined", "you are already waiting in the lobby")
        if seat is not None:
            await self._resume(sid, conn, live, seat, closing)
            return {"ok": True, "status": "joined"}
        place, events = live.room.arrive(visitor)
        conn.meeting_id = live.room.meeting.id
        if isinstance(place, Participant):
            await self._seat(sid, conn, live, place.id)
            await self._apply(live, events, closing)
            self._spawn(self._welcome(sid, live, place.id))
            return {"ok": True, "status": "joined"}
        conn.entry_id = place.id
        live.waiting[place.id] = sid
        await self._apply(live, events, closing)
        return {"ok": True, "status": "lobby", "position": live.room.position(place.id)}

    async def _resume(
        self, sid: str, conn: Connection, live: LiveMeeting, seat: Participant, closing: list[str]
    ) -> None:
        """Give a seat kept for the grace period (or held by another connection) to `sid`."""
        timer = live.timers.pop(seat.id, None)
        if timer is not None:
            timer.cancel()
        old_sid = live.sids.get(seat.id)
        if old_sid is not None:
            old = await self._connection(old_sid)
            old.detach()
            await self._leave_rooms(old_sid, live)
            await self._tell(old_sid, "replaced", {"message": REPLACED_MESSAGE})
            closing.append(old_sid)
        conn.meeting_id = live.room.meeting.id
        conn.seat_id = seat.id
        live.sids[seat.id] = sid
        await self._apply(live, live.room.resume(seat.id), closing)
        self._spawn(self._welcome(sid, live, seat.id))

    async def _welcome(self, sid: str, live: LiveMeeting, seat_id: str) -> None:
        """Send `joined` after the join's ack, then let room events reach the newcomer."""
        await asyncio.sleep(0)
        async with live.lock:
            if live.sids.get(seat_id) != sid:
                return
            await self._stage(live).enter(seat_id)
            await self._enter_rooms(sid, live, seat_id)
            await self._tell(sid, "joined", self._snapshot(live, seat_id))
            self._stage(live).offer_soon(seat_id)

    # events of joined participants

    async def _in_room(
        self,
        conn: Connection,
        change: Callable[[LiveRoom, str], list[Event]],
        *,
        lobby_ok: bool = False,
    ) -> dict[str, Any]:
        """Run one change on the caller's room under its lock and tell everyone."""
        live = self._meetings.get(conn.meeting_id or "")
        if live is None or (conn.seat_id is None and not lobby_ok):
            raise RoomError("not_joined", "join the meeting first")
        closing: list[str] = []
        try:
            async with live.lock:
                if conn.seat_id is None and not lobby_ok:
                    raise RoomError("not_joined", "join the meeting first")
                events = change(live.room, conn.seat_id or "")
                await self._apply(live, events, closing)
            return {"ok": True}
        finally:
            self._forget_if_empty(live)
            await self._close(closing)

    async def _leave(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        live = self._meetings.get(conn.meeting_id or "")
        if live is None:
            raise RoomError("not_joined", "join the meeting first")
        try:
            async with live.lock:
                if conn.entry_id is not None:
                    live.waiting.pop(conn.entry_id, None)
                    events = live.room.withdraw(conn.entry_id)
                elif conn.seat_id is not None and conn.seat_id.startswith(HIDDEN_SEATS):
                    events = await self._hidden_gone(sid, live, conn.seat_id)
                elif conn.seat_id is not None:
                    events = live.room.leave(conn.seat_id, "left")
                else:
                    raise RoomError("not_joined", "join the meeting first")
                await self._apply(live, events, [])
                conn.detach()
            return {"ok": True}
        finally:
            self._forget_if_empty(live)

    async def _admit(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        entry = required_ident(p)
        return await self._in_room(conn, lambda room, me: room.admit(me, entry))

    async def _deny(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        entry = required_ident(p)
        return await self._in_room(conn, lambda room, me: room.deny(me, entry))

    async def _admit_all(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        return await self._in_room(conn, lambda room, me: room.admit_all(me))

    async def _chat(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        text = p.get("text")
        return await self._in_room(conn, lambda room, me: room.chat(me, text))

    async def _hand(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        raised = bool(flag(p, "raised"))
        target = ident(p, required=False)
        return await self._in_room(conn, lambda room, me: room.hand(me, raised, target))

    async def _state(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        changes: dict[str, bool] = {}
        for name in ("mic", "camera", "screen"):
            value = flag(p, name, required=False)
            if value is not None:
                changes[name] = value
        ack = await self._in_room(conn, lambda room, me: room.set_state(me, changes))
        if changes.get("mic"):  # turning the mic on ends a moderator's mute
            live, seat_id = self._seated(conn)
            await self._stage(live).unmute(seat_id)
        return ack

    async def _remove(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        target = required_ident(p)
        return await self._in_room(conn, lambda room, me: room.remove(me, target))

    async def _lock(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        locked = bool(flag(p, "locked"))
        return await self._in_room(conn, lambda room, me: room.lock(me, locked))

    async def _set_role(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        target = required_ident(p)
        role = parse_role(p.get("role"))
        return await self._in_room(conn, lambda room, me: room.set_role(me, target, role))

    async def _ask_mute(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        target = required_ident(p)
        return await self._in_room(conn, lambda room, me: room.ask_mute(me, target))

    async def _end(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        return await self._in_room(conn, lambda room, me: room.end(me))

    # media (docs/protocol.md, "Media"): one connection's media events run in order

    def _seated(self, conn: Connection) -> tuple[LiveMeeting, str]:
        live = self._meetings.get(conn.meeting_id or "")
        if live is None or conn.seat_id is None:
            raise RoomError("not_joined", "join the meeting first")
        return live, conn.seat_id

    async def _publish(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        async with conn.media:
            live, seat_id = self._seated(conn)
            seat = live.room.participant(seat_id)

            def current() -> Participant | None:
                if conn.seat_id != seat_id or live.sids.get(seat_id) != sid:
                    return None
                return next((s for s in live.room.participants() if s.id == seat_id), None)

            answer = await self._stage(live).publish(seat, p.get("sdp"), p.get("sources"), current)
            return {"ok": True, "sdp": answer}

    async def _unpublish(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        async with conn.media:
            live, seat_id = self._seated(conn)
            await self._stage(live).unpublish(seat_id)
            return {"ok": True}

    async def _subscribe_answer(
        self, sid: str, conn: Connection, p: dict[str, Any]
    ) -> dict[str, Any]:
        async with conn.media:
            live, seat_id = self._seated(conn)
            await self._stage(live).answer(seat_id, p.get("sdp"), p.get("version"))
            return {"ok": True}

    async def _ice(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        async with conn.media:
            live, seat_id = self._seated(conn)
            await self._stage(live).candidate(
                seat_id, p.get("pc"), p.get("candidate"), p.get("sdpMid"), p.get("sdpMLineIndex")
            )
            return {"ok": True}

    async def _video(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        track = ident(p, "track", required=True) or ""
        on = bool(flag(p, "on"))
        live, seat_id = self._seated(conn)
        self._stage(live).video(seat_id, track, on)
        return {"ok": True}

    async def _audio_only(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        on = bool(flag(p, "on"))
        live, seat_id = self._seated(conn)
        self._stage(live).audio_only(seat_id, on)
        return {"ok": True}

    async def _mute(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        target = required_ident(p)
        return await self._in_room(conn, lambda room, me: room.mute(me, target))

    # recording (server/recordings.py): the service starts the egress and tells the room

    def _may_record(self, conn: Connection) -> tuple[LiveMeeting, RecordingControl]:
        live, seat_id = self._seated(conn)
        if seat_id.startswith(HIDDEN_SEATS) or not live.room.participant(seat_id).can(
            Permission.RECORD
        ):
            raise Forbidden("only moderators may start or stop the recording")
        if self.recordings is None:
            raise RoomError("recording_failed", "recording is not available on this server")
        return live, self.recordings

    async def _recording_start(
        self, sid: str, conn: Connection, p: dict[str, Any]
    ) -> dict[str, Any]:
        live, recordings = self._may_record(conn)
        started = await recordings.start(live.room.meeting)
        return {"ok": True, "recording": recordings.as_json(started)}

    async def _recording_stop(
        self, sid: str, conn: Connection, p: dict[str, Any]
    ) -> dict[str, Any]:
        live, recordings = self._may_record(conn)
        stopped = await recordings.stop(live.room.meeting.id)
        return {"ok": True, "recording": recordings.as_json(stopped)}

    # the broadcast's stage: moderators spotlight a participant or give the floor

    def _stage_moderator(self, conn: Connection) -> LiveMeeting:
        live, seat_id = self._seated(conn)
        seat = next((s for s in live.room.participants() if s.id == seat_id), None)
        if seat is None or not seat.can(Permission.MODERATE):
            raise Forbidden("only moderators choose what the broadcast shows")
        return live

    async def _spotlight(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        if "participant" not in p:
            raise Invalid("participant must be a participant id or null")
        participant = ident(p, "participant", required=False)
        live = self._stage_moderator(conn)
        async with live.lock:
            stage = self._stage(live)
            await stage.set_spotlight(participant)
            return {"ok": True, "stage": stage.stage()}

    async def _floor(self, sid: str, conn: Connection, p: dict[str, Any]) -> dict[str, Any]:
        participant = required_ident(p, "participant")
        on = bool(flag(p, "on"))
        live = self._stage_moderator(conn)
        async with live.lock:
            stage = self._stage(live)
            await stage.set_floor(participant, on)
            return {"ok": True, "stage": stage.stage()}

    # seats without a socket.io connection (server/whip.py)

    async def seat_outside(self, meeting: Meeting, visitor: Visitor) -> tuple[LiveMeeting, str]:
        """Seat a roster member who publishes over WHIP: no lobby and no connection; `conflict`
        while that person is in the room or its lobby already."""
        while True:
            live = self._meetings.get(meeting.id)
            if live is None:
                live = self._meetings[meeting.id] = LiveMeeting(LiveRoom(meeting, self._limits))
            try:
                async with live.lock:
                    if self._meetings.setdefault(meeting.id, live) is not live:
                        continue
                    live.room.meeting = meeting
                    identity = visitor.identity
                    if identity is not None and (
                        live.room.seat_of(identity) or live.room.waiting_of(identity)
                    ):
                        raise RoomError(
                            "conflict",
                            f"{visitor.name} is already in this meeting; leave it first",
                        )
                    seat, events = live.room.seat_directly(visitor)
                    live.outside.add(seat.id)
                    await self._open_stay(live, seat.id)
                    await self._apply(live, events, [])
                    return live, seat.id
            finally:
                self._forget_if_empty(live)

    async def change_outside(
        self, live: LiveMeeting, seat_id: str, change: Callable[[LiveRoom, str], list[Event]]
    ) -> None:
        """Make a change for a seat without a connection (its presence, its leaving)."""
        try:
            async with live.lock:
                gone = self._meetings.get(live.room.meeting.id) is not live
                if gone or seat_id not in live.outside:
                    return
                await self._apply(live, change(live.room, seat_id), [])
        finally:
            self._forget_if_empty(live)

    def stage_of(self, live: LiveMeeting) -> Stage:
        return self._stage(live)

    def live_meeting(self, meeting_id: str) -> LiveMeeting | None:
        return self._meetings.get(meeting_id)

    async def media_tick(self, links: bool, seconds: float) -> None:
        """The media clock (server/signaling.py): speaking, and weak links every second."""
        for live in list(self._meetings.values()):
            if live.stage is None or live.stage.closed:
                continue
            await live.stage.tick_speakers()
            if links:
                await live.stage.tick_links(seconds)

    # shutdown

    async def stop(self) -> None:
        """Tell everyone the server is stopping, give them a moment, then close every stay."""
        await self.emit("server_stopping", {"message": STOPPING_MESSAGE}, ignore_queue=True)
        if self._connected:
            self._all_gone.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._all_gone.wait(), self._settings.shutdown_notice)
        at = now()
        for live in list(self._meetings.values()):
            async with live.lock:
                for stay in live.stays.values():
                    await self._store().record_leave(stay, at)
                live.stays.clear()
        for task in list(self._tasks):
            task.cancel()
        for sid in list(self._connected):
            await self._detach(sid)
            with contextlib.suppress(Exception):
                await self.disconnect(sid)
        self._meetings.clear()
