"""A WHEP viewer's connection: the viewer offers receive-only sections, the server answers
with the tracks on the broadcast's stage in them (rooms/onstage.py), forwarded like any
subscriber's (no decoding).

WHEP has no renegotiation, so the tracks are chosen once, when the offer comes, from those on
stage then: each offered section gets one track of its kind (video: the active speaker's
camera first, then other cameras, then screens; audio: the active speaker's microphone first,
then the others). Sections left over are answered inactive.

As the stage moves on, `follow` moves a filled section to the stage's new choice without
renegotiation when the new track has the section's codec: the section's feed is taken off one
forwarder and put on the other, and restarts at the new track's next keyframe (the timestamps
and sequence numbers continue, so the player sees one stream).
"""

from collections.abc import Callable
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import OperationError

from media import hooks, ice, sdp
from media.errors import MediaError
from media.forwarder import Feed, Forwarder
from media.subscriber import MAX_SUBSCRIBED_MEDIA, SilentTrack, codec_preferences, stream_id

# The order in which a section of each kind takes tracks (by source).
ORDER = {"video": ("camera", "screen"), "audio": ("microphone",)}


def choose(tracks: list[dict[str, Any]], active: str | None, kinds: list[str]) -> list[str | None]:
    """For each offered section's kind, the track id it carries (None: nothing left)."""

    def rank(track: dict[str, Any]) -> tuple[int, int]:
        order = ORDER.get(track["kind"], ())
        source = order.index(track["source"]) if track["source"] in order else len(order)
        return (source, 0 if track["participant"] == active else 1)

    left = {kind: sorted((t for t in tracks if t["kind"] == kind), key=rank) for kind in ORDER}
    chosen: list[str | None] = []
    for kind in kinds:
        queue = left.get(kind, [])
        chosen.append(queue.pop(0)["id"] if queue else None)
    return chosen


class Viewer:
    """One WHEP viewer's receive-only connection."""

    def __init__(self, settings: ice.IceSettings) -> None:
        self._settings = settings
        self.pc = RTCPeerConnection(ice.configuration(settings))
        self.feeds: list[Feed] = []
        self.track_ids: list[str] = []
        self.moves = 0  # sections moved to another track by `follow`
        self.closed = False

    async def answer(
        self,
        offer: str,
        tracks: list[dict[str, Any]],
        active: str | None,
        find: Callable[[str], Forwarder],
    ) -> str:
        """Answer a recvonly offer with the chosen tracks; MediaError (and closed) if not."""
        try:
            return await self._answer(offer, tracks, active, find)
        except BaseException:
            await self.close()
            raise

    async def _answer(
        self,
        offer: str,
        tracks: list[dict[str, Any]],
        active: str | None,
        find: Callable[[str], Forwarder],
    ) -> str:
        checked = sdp.check(offer, MAX_SUBSCRIBED_MEDIA)
        if checked.sending:
            raise MediaError("bad_sdp", "a WHEP offer receives only (recvonly sections)")
        kinds = [s.kind for s in checked.sections if s.accepted and s.direction != "inactive"]
        # Transceivers added before the offer is applied take its sections in order, by kind.
        for track_id in choose(tracks, active, kinds):
            if track_id is None:
                continue
            forwarder = find(track_id)
            transceiver = self.pc.addTransceiver(SilentTrack(forwarder.kind), direction="sendonly")
            transceiver.setCodecPreferences(codec_preferences(forwarder))
            hooks.set_stream_id(transceiver.sender, stream_id(track_id))
            feed = Feed(forwarder, transceiver.sender)
            forwarder.attach(feed)
            self.feeds.append(feed)
            self.track_ids.append(track_id)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        except OperationError as exc:
            raise MediaError("unsupported_codec", f"codec missing: {exc}") from None
        except Exception as exc:
            raise MediaError("bad_sdp", f"offer refused: {exc}") from None
        ice.restrict_candidates(self.pc, self._settings)
        try:
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        except Exception as exc:
            raise MediaError("bad_sdp", f"cannot answer this offer: {exc}") from None
        return str(self.pc.localDescription.sdp)

    def follow(
        self, tracks: list[dict[str, Any]], active: str | None, find: Callable[[str], Forwarder]
    ) -> None:
        """Give each filled section the track the stage would give it now, where the codec
        allows; a section whose choice has another codec, or none, keeps its track."""
        if self.closed:
            return
        kinds = [feed.forwarder.kind for feed in self.feeds]
        for index, track_id in enumerate(choose(tracks, active, kinds)):
            feed = self.feeds[index]
            if track_id is None:
                continue
            try:
                forwarder = find(track_id)
                # The same track id may be a new forwarder: its publisher published again.
                if forwarder is feed.forwarder:
                    continue
                if codec_preferences(forwarder) != codec_preferences(feed.forwarder):
                    continue
            except MediaError:
                continue
            _move(feed, forwarder)
            self.track_ids[index] = track_id
            self.moves += 1

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for feed in self.feeds:
            feed.close()
        await self.pc.close()


def _move(feed: Feed, forwarder: Forwarder) -> None:
    """Feed `forwarder`'s packets to the feed's subscriber from its next keyframe on."""
    feed.forwarder.detach(feed)
    feed.forwarder = forwarder
    # A forwarder that closed (its publisher left) turned its feeds off; a feed whose sender
    # had started (its codec is negotiated) may run again.
    if not feed.ready and not feed.closed and feed.payload_type:
        feed.ready = True
    forwarder.attach(feed)
    feed.new_source()
