"""A live meeting's media: who publishes which tracks from which source, each seat's
subscription, and the one-at-a-time offer/answer loop per subscriber.

media/ forwards and knows no people; rooms/ decides who may do what; this module ties the two
for one meeting. Publication names are seat ids, so a track id is "<seat id>/<mid>" and the
msid stream id a browser sees is the publishing seat's id.

Who receives what: a seat that may publish (and a hidden recorder seat) receives every track
but its own; a seat that may not (a viewer) receives only the broadcast's stage (rooms/onstage.py),
re-offered as the stage changes, and so does the hidden seat of the broadcast's programme
(server/programmes.py); a projector seat receives every track but its hall's.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from media import sdp
from media.errors import MediaError
from media.forwarder import Forwarder
from media.levels import ActiveSpeakers
from media.links import LinkGuard
from media.publisher import MAX_PUBLISHED_MEDIA, Publication
from media.sfu import Sfu
from media.subscriber import Subscription
from rooms.errors import Forbidden, Invalid, NotFound, RoomError
from rooms.onstage import OnStage, Published
from rooms.participant import Participant
from rooms.roles import Permission

log = logging.getLogger(__name__)

# source -> (media kind, the permission it needs)
SOURCES: dict[str, tuple[str, Permission]] = {
    "microphone": ("audio", Permission.PUBLISH_AUDIO),
    "camera": ("video", Permission.PUBLISH_VIDEO),
    "screen": ("video", Permission.PUBLISH_SCREEN),
}
PUBLISHING = frozenset(permission for _, permission in SOURCES.values())
# An auto stage follows a new active speaker at most this often: in a quick exchange every
# switch would re-offer to every viewer (and restart their video at a keyframe).
SPEAKER_HOLD = 1.5
# A subscribe_offer unanswered this long is given up and offered again (the client's answer was
# lost, or it could not apply the offer); each further loss in a row waits twice as long.
ANSWER_TIMEOUT = 15.0
# Offers given up in a row after which an unchanged one is no longer sent again (a client that
# never answers, such as the hall station's page): the next change is still offered.
REOFFERS = 3
# A receiving connection closed by the client's side is most often a client leaving (a tab
# closed): its seat is given this long to go before it is offered a new connection.
LOST_GRACE = 1.0

Tell = Callable[[str, str, dict[str, Any]], Awaitable[None]]  # seat id, event, data
Announce = Callable[[str, dict[str, Any]], Awaitable[None]]  # event, data to the whole room
Spawn = Callable[[Awaitable[None]], object]
Seats = Callable[[str], Participant | None]  # a seat of the room by id (None: not in it)


class Follower(Protocol):
    """A receive-only connection that cannot be renegotiated (a WHEP player, server/whep.py):
    told the stage on each change, it moves what it can."""

    closed: bool

    def follow(
        self, tracks: list[dict[str, Any]], active: str | None, find: Callable[[str], Forwarder]
    ) -> None: ...


@dataclass(frozen=True)
class Track:
    """A published track as the protocol shows it."""

    id: str
    participant: str
    source: str
    kind: str
    muted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "participant": self.participant,
            "source": self.source,
            "kind": self.kind,
            "muted": self.muted,
        }


@dataclass
class Receiver:
    """One seat's receiving connection and where its negotiation stands."""

    subscription: Subscription
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    offered: dict[str, Track] | None = None  # mid -> Track of the offer awaiting an answer
    version: int = 0  # of the last subscribe_offer; an answer names the one it answers
    unanswered: int = 0  # offers given up in a row (no answer in time, or answer refused)
    # When the outstanding offer is given up on; cancelled by its answer or the seat's leaving
    # (a sleeping task per offer would keep every departed seat's connection alive meanwhile).
    overdue: asyncio.TimerHandle | None = None

    def settle(self) -> None:
        """No offer is waited on any more: drop its deadline."""
        if self.overdue is not None:
            self.overdue.cancel()
            self.overdue = None

    negotiated: bool = False
    dirty: bool = False  # the tracks changed since the last offer was made
    audio_only: bool = False
    hidden: set[str] = field(default_factory=set)  # video the client paused (`video`)
    guard: LinkGuard = field(default_factory=LinkGuard)
    apart: str | None = None  # a projector's hall: tracks of this roster entry's seat not sent
    stage_only: bool = False  # a hidden seat that gets what viewers get (the HLS programme)
    # The recorder: every published track, whatever the stage or its link does; a track it
    # records ends only when its publisher stops it (a paused feed would cut the track file).
    whole: bool = False

    def wants(self, track: Track) -> bool:
        """Whether the client wants this track's media now (bandwidth aside)."""
        return track.kind != "video" or not (self.audio_only or track.id in self.hidden)


def media_error(exc: MediaError) -> RoomError:
    return RoomError(exc.code, exc.message)


class Stage:
    """The media side of one live meeting."""

    def __init__(
        self, sfu: Sfu, tell: Tell, announce: Announce, spawn: Spawn, seats: Seats | None = None
    ) -> None:
        self._sfu = sfu
        self._seats = seats or (lambda seat_id: None)
        self._tell = tell
        self._announce = announce
        self._spawn = spawn
        self._tracks: dict[str, Track] = {}  # track id -> Track
        self._publications: dict[str, Publication] = {}  # seat id -> its publish connection
        self._seat_locks: dict[str, asyncio.Lock] = {}  # serialises one seat's publishing
        self._receivers: dict[str, Receiver] = {}  # seat id -> its receive connection
        self._muted: set[str] = set()  # seats whose audio a moderator stopped
        self.speakers = ActiveSpeakers()
        self.onstage = OnStage()
        self._stage_ids: list[str] = []  # track ids on stage now
        self._stage_told: dict[str, Any] | None = None  # the last `stage` event sent
        self._lead_told: str | None = None  # the lead the followers last got
        self._followers: set[Follower] = set()
        self._speaker_moved = False  # a new active speaker the stage has not followed yet
        self._restaged_at = -SPEAKER_HOLD  # time.monotonic() of the last change of the stage
        self.closed = False

    # reading

    def tracks(self) -> list[dict[str, Any]]:
        return [t.as_dict() for t in self._tracks.values()]

    def stage(self) -> dict[str, Any]:
        """The `stage` event and snapshot entry: mode, spotlight, floor, tracks on stage."""
        return self.onstage.as_dict(self._stage_ids)

    def lead(self) -> str | None:
        """Who the broadcast shows first: the spotlit participant, else the active speaker."""
        return self.onstage.spotlight or self.speakers.active

    def stage_tracks(self) -> list[dict[str, Any]]:
        """The tracks on stage (what viewers and WHEP players get)."""
        return [self._tracks[tid].as_dict() for tid in self._stage_ids if tid in self._tracks]

    def publication(self, seat_id: str) -> Publication | None:
        """The seat's publish connection, if any (server/whip.py watches its state)."""
        return self._publications.get(seat_id)

    # publishing

    async def publish(
        self,
        seat: Participant,
        offer: object,
        sources: object,
        current: Callable[[], Participant | None],
    ) -> str:
        """Answer the seat's publish offer (the first creates the connection, later ones
        renegotiate); every sending section must be labelled with a source it may publish.
        `current` gives the seat as it is now (None once gone): checked again after aiortc's
        work, as the seat may have left or lost its role meanwhile."""
        if not any(seat.can(p) for p in PUBLISHING):
            raise Forbidden("your role may not publish")
        if not isinstance(sources, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in sources.items()
        ):
            raise Invalid("sources must be an object of mid: source")
        try:
            sending = sdp.sending(sdp.check(offer, MAX_PUBLISHED_MEDIA))
        except MediaError as exc:
            raise media_error(exc) from None
        labels: dict[str, str] = {}
        for mid, kind in sending.items():
            source = sources.get(mid)
            if source not in SOURCES:
                raise Invalid(f"label media section {mid!r} with microphone, camera or screen")
            need_kind, permission = SOURCES[source]
            if kind != need_kind:
                raise Invalid(f"media section {mid!r} is {kind}, not a {source}")
            if not seat.can(permission):
                raise Forbidden(f"your role may not publish a {source}")
            labels[mid] = source
        if not labels:
            raise RoomError("nothing_published", "the offer sends no audio or video")
        if "screen" in labels.values() and any(
            t.source == "screen" and t.participant != seat.id for t in self._tracks.values()
        ):
            # One screen at a time: the room, the projector and the programme show one share,
            # and a second would silently hide the first (as in most meeting products).
            raise RoomError("screen_busy", "someone else is sharing the screen; ask them to stop")
        async with self._seat_lock(seat.id):
            if self.closed or current() is None:
                raise RoomError("not_joined", "join the meeting first")
            publication = self._publications.get(seat.id)
            try:
                if publication is None:
                    publication, answer = await self._sfu.publish(seat.id, str(offer))
                    self._publications[seat.id] = publication
                else:
                    answer = await publication.renegotiate(str(offer))
            except MediaError as exc:
                # A refused offer leaves the running tracks as they were; only a publication
                # aiortc could not go on with is gone, and the room is told its tracks went.
                if publication is None or not publication.closed:
                    raise media_error(exc) from None
                await self._unpublish_locked(seat.id)
                lost: MediaError | None = exc
            else:
                lost = None
            now = current()
            if self.closed or now is None:  # left while aiortc worked: keep nothing
                await self._unpublish_locked(seat.id)
                raise RoomError("not_joined", "join the meeting first")
            if lost is None:
                if not all(now.can(SOURCES[source][1]) for source in labels.values()):
                    await self._unpublish_locked(seat.id)  # demoted meanwhile
                    await self._changed()
                    raise Forbidden("your role may no longer publish this")
                self._set_tracks(seat.id, publication, labels)
        await self._changed()
        if lost is not None:
            raise media_error(lost)
        return answer

    def _set_tracks(self, seat_id: str, publication: Publication, labels: dict[str, str]) -> None:
        old = {tid for tid, t in self._tracks.items() if t.participant == seat_id}
        muted = seat_id in self._muted
        for published in publication.tracks:
            previous = self._tracks.get(published.track_id)
            source = labels.get(published.mid) or (previous.source if previous else "")
            if source not in SOURCES:
                continue
            track = Track(
                published.track_id,
                seat_id,
                source,
                published.kind,
                muted and published.kind == "audio",
            )
            self._tracks[track.id] = track
            old.discard(track.id)
            if track.muted:
                publication.forwarders[track.id].mute()
        for tid in old:
            del self._tracks[tid]

    async def unpublish(self, seat_id: str) -> None:
        async with self._seat_lock(seat_id):
            if seat_id not in self._publications and not any(
                t.participant == seat_id for t in self._tracks.values()
            ):
                return
            await self._unpublish_locked(seat_id)
        await self._changed()

    async def _unpublish_locked(self, seat_id: str) -> None:
        self._publications.pop(seat_id, None)
        for tid in [tid for tid, t in self._tracks.items() if t.participant == seat_id]:
            del self._tracks[tid]
        await self._sfu.unpublish(seat_id)

    def _seat_lock(self, seat_id: str) -> asyncio.Lock:
        return self._seat_locks.setdefault(seat_id, asyncio.Lock())

    async def permissions_changed(self, seat: Participant) -> None:
        """A new role: a publication with a source the role may not publish is closed."""
        sources = {t.source for t in self._tracks.values() if t.participant == seat.id}
        if any(not seat.can(SOURCES[s][1]) for s in sources):
            await self.unpublish(seat.id)
        await self._restage()  # on_stage may have come or gone
        if seat.id in self._receivers:  # a viewer given a publishing role gets everything
            self._spawn(self._sync(seat.id))

    # moderation

    async def mute(self, seat_id: str) -> None:
        """Stop forwarding the seat's audio to everyone until they turn their mic on."""
        self._muted.add(seat_id)
        await self._set_muted(seat_id, True)

    async def unmute(self, seat_id: str) -> None:
        if seat_id in self._muted:
            self._muted.discard(seat_id)
            await self._set_muted(seat_id, False)

    async def _set_muted(self, seat_id: str, muted: bool) -> None:
        publication = self._publications.get(seat_id)
        changed = False
        for tid, track in list(self._tracks.items()):
            if track.participant != seat_id or track.kind != "audio" or publication is None:
                continue
            forwarder = publication.forwarders.get(tid)
            if forwarder is not None:
                forwarder.mute() if muted else forwarder.unmute()
            self._tracks[tid] = replace(track, muted=muted)
            changed = True
        if changed:
            await self._announce("tracks", {"tracks": self.tracks()})

    # the stage (moderators: `spotlight`, `floor`)

    async def set_spotlight(self, participant: str | None) -> None:
        """Show one participant on the stage (None: back to the floor or auto mode)."""
        if participant is not None and self._seats(participant) is None:
            raise NotFound("participant")
        if self.onstage.set_spotlight(participant):
            await self._restage()

    async def set_floor(self, participant: str, on: bool) -> None:
        """Give (on) or take the floor: on stage while they have it."""
        if on and self._seats(participant) is None:
            raise NotFound("participant")
        if self.onstage.set_floor(participant, on):
            await self._restage()

    def _audience(self, seat_id: str) -> bool:
        """A seat that may not publish watches the broadcast: it gets only the stage."""
        seat = self._seats(seat_id)
        return seat is not None and not any(seat.can(p) for p in PUBLISHING)

    def _choose_stage(self) -> list[str]:
        published = [Published(t.id, t.participant, t.source) for t in self._tracks.values()]
        featured = []
        for seat_id in dict.fromkeys(t.participant for t in published):
            seat = self._seats(seat_id)
            if seat is not None and seat.can(Permission.ON_STAGE):
                featured.append(seat_id)
        return self.onstage.tracks(published, featured, self.speakers.active)

    async def _restage(self) -> None:
        """Work out the stage again; if it changed, tell the room and re-offer to viewers."""
        chosen = self._choose_stage()
        moved = chosen != self._stage_ids
        self._stage_ids = chosen
        self._speaker_moved = False
        if moved:
            self._restaged_at = time.monotonic()
        state = self.stage()
        if state != self._stage_told:
            self._stage_told = state
            await self._announce("stage", state)
        if moved:
            for seat_id, receiver in list(self._receivers.items()):
                if receiver.stage_only or self._audience(seat_id):
                    self._spawn(self._sync(seat_id))
        if moved or self.lead() != self._lead_told:
            self._lead_told = self.lead()
            self._tell_followers()

    def follow(self, follower: Follower) -> None:
        """Keep `follower` on the stage as it changes (until it closes)."""
        self._followers.add(follower)

    def _tell_followers(self) -> None:
        tracks, lead = self.stage_tracks(), self.lead()
        for follower in list(self._followers):
            if follower.closed:
                self._followers.discard(follower)
                continue
            try:
                follower.follow(tracks, lead, self._sfu.track)
            except Exception:  # one player's trouble must not stop the stage
                log.exception("a WHEP player could not follow the stage")

    def _wanted(self, seat_id: str, receiver: Receiver) -> dict[str, Track]:
        """The tracks this seat receives now."""
        if receiver.stage_only or self._audience(seat_id):
            return {tid: self._tracks[tid] for tid in self._stage_ids if tid in self._tracks}
        wanted = {tid: t for tid, t in self._tracks.items() if t.participant != seat_id}
        if receiver.apart is not None:
            for tid, track in list(wanted.items()):
                seat = self._seats(track.participant)
                if seat is not None and seat.visitor.roster_id == receiver.apart:
                    del wanted[tid]
        return wanted

    # receiving

    async def enter(
        self,
        seat_id: str,
        apart: str | None = None,
        stage_only: bool = False,
        whole: bool = False,
    ) -> None:
        """A seat (re)joined on a connection: the old peer connections, from before a
        reconnect, are closed and a fresh receiving one is made (offered by `offer_soon`).
        `apart`: a projector's roster entry, whose own tracks it does not receive;
        `stage_only`: a hidden seat that receives the stage, as viewers do; `whole`: the
        recorder, whose tracks are never paused."""
        old = self._receivers.pop(seat_id, None)
        if old is not None:
            old.settle()
            await self._sfu.unsubscribe(old.subscription)
        if seat_id in self._publications:
            await self.unpublish(seat_id)
        if self.closed:
            return
        receiver = Receiver(
            self._subscribe(seat_id), apart=apart, stage_only=stage_only, whole=whole
        )
        self._receivers[seat_id] = receiver

    def _subscribe(self, seat_id: str) -> Subscription:
        """A new receiving connection for the seat; if aiortc ever closes it on its own, a
        seat still here is offered a new one (`_sync`)."""
        subscription = self._sfu.subscribe()
        subscription.on_lost = lambda: self._spawn(self._renew(seat_id, subscription))
        return subscription

    async def _renew(self, seat_id: str, subscription: Subscription) -> None:
        await asyncio.sleep(LOST_GRACE)
        receiver = self._receivers.get(seat_id)
        if receiver is not None and receiver.subscription is subscription:
            await self._sync(seat_id)

    def offer_soon(self, seat_id: str) -> None:
        """Send the seat its first subscribe_offer (after `joined`) when there is anything."""
        self._spawn(self._sync(seat_id))

    async def answer(self, seat_id: str, answer: object, version: object = None) -> None:
        """The seat's answer to its outstanding subscribe_offer (`version`, if given, names
        the offer answered: an answer to an earlier one is refused as stale)."""
        receiver = self._receivers.get(seat_id)
        if receiver is None or receiver.offered is None:
            raise RoomError("no_offer", "there is no subscribe_offer to answer")
        async with receiver.lock:
            if receiver.offered is None:
                raise RoomError("no_offer", "there is no subscribe_offer to answer")
            if version is not None and version != receiver.version:
                raise RoomError("stale_answer", "a later subscribe_offer replaced this one")
            try:
                await receiver.subscription.accept(answer)
            except MediaError as exc:
                # The client does not answer the same offer twice: a fresh offer, not a wait.
                log.warning(
                    "answer of %s to subscribe_offer %d refused (%s): offering again",
                    seat_id,
                    receiver.version,
                    exc.message,
                )
                lost: int | None = receiver.version
                error = exc
            else:
                lost = None
                receiver.offered = None
                receiver.negotiated = True
                receiver.unanswered = 0
                receiver.settle()
        if lost is not None:
            self._spawn(self._sync(seat_id, lost=lost))
            raise media_error(error) from None
        if receiver.dirty:
            self._spawn(self._sync(seat_id))

    async def candidate(
        self, seat_id: str, pc: object, candidate: object, mid: object, index: object
    ) -> None:
        """A candidate the client trickled for one of its connections."""
        try:
            if pc == "publish":
                async with self._seat_lock(seat_id):
                    publication = self._publications.get(seat_id)
                    if publication is None:
                        raise NotFound("publish connection")
                    await publication.add_ice_candidate(candidate, mid, index)
            elif pc == "subscribe":
                receiver = self._receivers.get(seat_id)
                if receiver is None or not (receiver.negotiated or receiver.offered):
                    raise NotFound("subscribe connection")
                async with receiver.lock:
                    await receiver.subscription.add_ice_candidate(candidate, mid, index)
            else:
                raise Invalid('pc must be "publish" or "subscribe"')
        except MediaError as exc:
            raise media_error(exc) from None

    def video(self, seat_id: str, track_id: str, on: bool) -> None:
        """Pause or resume one video track for this subscriber (`video`)."""
        receiver = self._receiver(seat_id)
        track = self._tracks.get(track_id)
        if track is None or track.kind != "video" or track.participant == seat_id:
            raise NotFound("video track")
        if on:
            receiver.hidden.discard(track_id)
        else:
            receiver.hidden.add(track_id)
        self._apply_wishes(receiver)

    def audio_only(self, seat_id: str, on: bool) -> None:
        receiver = self._receiver(seat_id)
        receiver.audio_only = on
        self._apply_wishes(receiver)

    def _receiver(self, seat_id: str) -> Receiver:
        receiver = self._receivers.get(seat_id)
        if receiver is None:
            raise RoomError("not_joined", "join the meeting first")
        return receiver

    def _apply_wishes(self, receiver: Receiver) -> None:
        """Pause or resume each subscribed video feed as the client and its link want."""
        subscription = receiver.subscription
        for tid in subscription.track_ids:
            track = self._tracks.get(tid)
            if track is None or track.kind != "video":
                continue
            feed = subscription.feed(tid)
            run = receiver.wants(track) and tid not in receiver.guard.paused
            if run and feed.paused:
                subscription.resume(tid)
            elif not run and not feed.paused:
                subscription.pause(tid)

    async def _changed(self) -> None:
        """The published tracks changed: tell the room, re-offer to every subscriber."""
        await self._announce("tracks", {"tracks": self.tracks()})
        await self._restage()
        self._tell_followers()  # a track may have come back on a new forwarder, same id
        for seat_id in self._receivers:
            self._spawn(self._sync(seat_id))

    async def _sync(self, seat_id: str, lost: int | None = None) -> None:
        """Bring a subscriber's connection in line with the published tracks: one offer at
        a time; changes made while an offer waits for its answer go in the next one.
        `lost`: the version of an outstanding offer given up on (unanswered in time, or its
        answer refused): the connection is offered again even if nothing changed."""
        receiver = self._receivers.get(seat_id)
        if receiver is None:
            return
        receiver.dirty = True
        async with receiver.lock:
            if lost is not None:
                if receiver.offered is None or receiver.version != lost:
                    return  # answered, or replaced, meanwhile
                receiver.offered = None
                receiver.unanswered += 1
            elif receiver.offered is not None or not receiver.dirty:
                return
            if self._receivers.get(seat_id) is not receiver or receiver.subscription.closed:
                return
            receiver.dirty = False
            fresh = receiver.subscription.lost
            if fresh:
                # Its DTLS ended without the client noticing (a browser does not count that
                # as failed): a new connection, which the client takes in place of its own.
                log.warning(
                    "subscribe connection of %s closed by itself: offering a new one", seat_id
                )
                await self._sfu.unsubscribe(receiver.subscription)
                receiver.subscription = self._subscribe(seat_id)
                receiver.offered, receiver.negotiated = None, False
            subscription = receiver.subscription
            wanted = self._wanted(seat_id, receiver)
            current = set(subscription.track_ids)
            changed = False
            for tid in current - wanted.keys():
                subscription.remove(tid)
                receiver.hidden.discard(tid)
                receiver.guard.forget(tid)
                changed = True
            for tid in sorted(wanted.keys() - current):
                try:
                    subscription.add(tid)
                except MediaError as exc:
                    log.warning("cannot forward %s to %s: %s", tid, seat_id, exc.message)
                    continue
                changed = True
                if not receiver.wants(wanted[tid]):
                    subscription.pause(tid)
            stray = subscription.awaiting_answer and lost is None
            if stray:
                # An offer of aiortc's that was never sent (its making was cut short).
                log.warning("subscribe connection of %s waits for no offer: offering", seat_id)
            again = lost is not None and receiver.unanswered <= REOFFERS
            if not (changed or stray or fresh or again):
                return
            try:
                offer = await subscription.offer(replace=True)
            except MediaError as exc:
                # The changes are not lost: the next change (or answer) offers them all.
                receiver.dirty = True
                log.warning("cannot offer to %s: %s", seat_id, exc.message)
                return
            offered = {}
            for tid in subscription.track_ids:
                mid = subscription.mid(tid)
                track = self._tracks.get(tid) or wanted.get(tid)
                if mid is not None and track is not None:
                    offered[mid] = track
            receiver.offered = offered
            receiver.version += 1
            data = {
                "sdp": offer,
                "tracks": {mid: t.as_dict() for mid, t in offered.items()},
                "version": receiver.version,
            }
            if fresh:
                data["fresh"] = True
            receiver.settle()
            receiver.overdue = asyncio.get_running_loop().call_later(
                ANSWER_TIMEOUT * 2 ** min(receiver.unanswered, 3),
                self._overdue,
                seat_id,
                receiver,
                receiver.version,
            )
            await self._tell(seat_id, "subscribe_offer", data)

    def _overdue(self, seat_id: str, receiver: Receiver, version: int) -> None:
        """Subscribe_offer `version` got no answer in time: give up on it, offer again."""
        receiver.overdue = None
        if self._receivers.get(seat_id) is not receiver or receiver.offered is None:
            return
        if receiver.version == version:
            then = "offering again" if receiver.unanswered < REOFFERS else "until the next change"
            log.warning("no answer from %s to subscribe_offer %d: %s", seat_id, version, then)
            self._spawn(self._sync(seat_id, lost=version))

    # leaving

    async def leave(self, seat_id: str) -> None:
        """The seat is gone (left, removed, timed out): close both its connections."""
        self._muted.discard(seat_id)
        receiver = self._receivers.pop(seat_id, None)
        if receiver is not None:
            receiver.settle()
            await self._sfu.unsubscribe(receiver.subscription)
        await self.unpublish(seat_id)  # waits for a publish in progress
        self._seat_locks.pop(seat_id, None)
        self.speakers.forget(seat_id)
        self.onstage.forget(seat_id)
        if not self.closed:
            await self._restage()

    async def close(self) -> None:
        """The meeting is over: every connection closes."""
        self.closed = True
        self._followers.clear()
        receivers = list(self._receivers.values())
        self._receivers.clear()
        for receiver in receivers:
            receiver.settle()
            await self._sfu.unsubscribe(receiver.subscription)
        for seat_id in list(self._publications):
            self._publications.pop(seat_id, None)
            with contextlib.suppress(Exception):
                await self._sfu.unpublish(seat_id)
        self._tracks.clear()

    # periodic work (the app's media clock)

    def speaking_levels(self) -> dict[str, int | None]:
        """Each publishing seat's microphone level since the last call."""
        levels: dict[str, int | None] = {}
        for seat_id, publication in self._publications.items():
            for tid, forwarder in publication.forwarders.items():
                track = self._tracks.get(tid)
                if track is not None and track.source == "microphone":
                    levels[seat_id] = forwarder.read_level()
        return levels

    async def tick_speakers(self) -> None:
        active = self.speakers.active
        if self.speakers.update(self.speaking_levels()):
            await self._announce("speaking", self.speakers.as_dict())
            if self.speakers.active != active:
                self._speaker_moved = True
        if self._speaker_moved and time.monotonic() - self._restaged_at >= SPEAKER_HOLD:
            await self._restage()

    async def tick_links(self, seconds: float) -> None:
        """Pause video for subscribers whose link is too slow for it; resume when it recovers."""
        rates = {
            tid: f.take_rate(seconds)
            for p in self._publications.values()
            for tid, f in p.forwarders.items()
            if f.kind == "video"
        }
        for seat_id, receiver in list(self._receivers.items()):
            if receiver.whole:  # a loaded recorder reports loss: pausing it loses the track
                continue
            subscription = receiver.subscription
            needs = {}
            estimate: int | None = None
            loss: float | None = None
            for tid in subscription.track_ids:
                track = self._tracks.get(tid)
                if track is None or track.kind != "video" or not receiver.wants(track):
                    continue
                needs[tid] = rates.get(tid, 0)
                feed = subscription.feed(tid)
                if feed.remb is not None:
                    estimate = feed.remb if estimate is None else min(estimate, feed.remb)
                lost = feed.take_loss()
                if lost is not None:
                    loss = lost if loss is None else max(loss, lost)
            before = set(receiver.guard.paused)
            receiver.guard.update(estimate, needs, loss)
            if receiver.guard.paused != before:
                self._apply_wishes(receiver)
                paused = sorted(receiver.guard.paused)
                await self._tell(seat_id, "video_paused", {"tracks": paused, "reason": "bandwidth"})
