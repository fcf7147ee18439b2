"""A subscriber's receive-only connection: the server offers, and re-offers as tracks change."""

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from media import hooks, ice, sdp
from media.errors import MediaError
from media.forwarder import Feed, Forwarder

logger = logging.getLogger(__name__)

MAX_SUBSCRIBED_MEDIA = 64


class SilentTrack(MediaStreamTrack):
    """A sender's track that never yields a frame: the forwarder writes its RTP instead,
    so aiortc's sender loop waits here and never creates an encoder."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:
        await asyncio.Future()


class _Slot:
    __slots__ = ("feed", "track_id", "transceiver")

    def __init__(self, track_id: str, transceiver: RTCRtpTransceiver, feed: Feed) -> None:
        self.track_id = track_id
        self.transceiver = transceiver
        self.feed = feed


class Subscription:
    """Receive-only connection to one subscriber; `add`/`remove` then `offer`/`accept`."""

    def __init__(self, settings: ice.IceSettings, find: Callable[[str], Forwarder]) -> None:
        self._settings = settings
        self._find = find
        self.pc = RTCPeerConnection(ice.configuration(settings))
        self.pc.on("connectionstatechange", self._connection_changed)
        self._slots: dict[str, _Slot] = {}
        # Removed tracks' sections, with their last feed, for reuse by a later track.
        self._idle: list[tuple[RTCRtpTransceiver, Feed]] = []
        self._retired = (0, 0)  # packets and payload bytes of feeds removed
        # Tracks whose section the subscriber rejected in its last answer: nothing is sent.
        self.refused: set[str] = set()
        self.closed = False
        # Called once if aiortc closes the connection itself (`lost`).
        self.on_lost: Callable[[], object] | None = None

    @property
    def track_ids(self) -> list[str]:
        return list(self._slots)

    def add(self, track_id: str) -> None:
        """Forward `track_id` to this subscriber from the next accepted offer on."""
        self._check_open()
        if track_id in self._slots:
            return
        forwarder = self._find(track_id)
        if len(self.pc.getTransceivers()) >= MAX_SUBSCRIBED_MEDIA and not self._reusable(
            forwarder.kind
        ):
            raise MediaError("too_many_tracks", f"at most {MAX_SUBSCRIBED_MEDIA} tracks")
        preferences = codec_preferences(forwarder)
        reused = self._reuse(forwarder.kind)
        if reused is None:
            transceiver = self.pc.addTransceiver(SilentTrack(forwarder.kind), direction="sendonly")
        else:
            transceiver = reused[0]
            transceiver.direction = "sendonly"
            transceiver.sender.replaceTrack(SilentTrack(forwarder.kind))
        transceiver.setCodecPreferences(preferences)
        hooks.set_stream_id(transceiver.sender, stream_id(track_id))
        feed = Feed(forwarder, transceiver.sender)
        if reused is not None:
            feed.continue_from(reused[1])
        forwarder.attach(feed)
        self._slots[track_id] = _Slot(track_id, transceiver, feed)

    def remove(self, track_id: str) -> None:
        """Stop forwarding `track_id`; its section goes inactive at the next offer."""
        slot = self._slots.pop(track_id, None)
        if slot is None:
            return
        self.refused.discard(track_id)
        slot.feed.close()
        self._retire(slot.feed)
        slot.transceiver.direction = "inactive"
        self._idle.append((slot.transceiver, slot.feed))

    def pause(self, track_id: str) -> None:
        self._slot(track_id).feed.pause()

    def resume(self, track_id: str) -> None:
        """Forward again from the next keyframe (one is requested)."""
        self._slot(track_id).feed.resume()

    def forwarded(self) -> tuple[int, int]:
        """Packets and payload bytes forwarded to this subscriber so far."""
        packets, octets = self._retired
        for slot in self._slots.values():
            packets += slot.feed.packets
            octets += slot.feed.octets
        return packets, octets

    def _retire(self, feed: Feed) -> None:
        packets, octets = self._retired
        self._retired = (packets + feed.packets, octets + feed.octets)

    def mid(self, track_id: str) -> str | None:
        """The media section `track_id` arrives on, once offered."""
        return self._slot(track_id).transceiver.mid

    def feed(self, track_id: str) -> Feed:
        return self._slot(track_id).feed

    async def offer(self, replace: bool = False) -> str:
        """An offer describing the current tracks (ICE candidates included); with `replace`,
        one that replaces an earlier offer still waiting for its answer (it was lost, or its
        answer refused: JSEP allows a new local offer in have-local-offer), else
        MediaError("negotiation_pending"). MediaError("offer_failed") if aiortc makes none."""
        self._check_open()
        state = self.pc.signalingState
        if state != "stable" and not (replace and state == "have-local-offer"):
            raise MediaError("negotiation_pending", "the previous offer has no answer yet")
        ice.restrict_candidates(self.pc, self._settings)
        try:
            await self.pc.setLocalDescription(await self.pc.createOffer())
        except Exception as exc:
            raise MediaError("offer_failed", f"offer not made: {exc!r}") from None
        return str(self.pc.localDescription.sdp)

    @property
    def lost(self) -> bool:
        """aiortc closed the connection itself: it does so when every DTLS transport has
        ended (ICE consent lost on a starved machine, or the subscriber's close_notify).
        Nothing can be offered on it again: the subscriber needs a new connection."""
        return not self.closed and self.pc.signalingState == "closed"

    @property
    def awaiting_answer(self) -> bool:
        """An offer was made that no answer has completed yet."""
        return self.pc.signalingState == "have-local-offer"

    async def accept(self, answer: object) -> None:
        """Apply the subscriber's answer to the last offer. A section the subscriber rejected
        (a codec it cannot decode) stays offered but carries nothing (`refused`)."""
        self._check_open()
        if self.pc.signalingState != "have-local-offer":
            raise MediaError("no_offer", "there is no offer to answer")
        checked = sdp.check_answer(answer, str(self.pc.localDescription.sdp), MAX_SUBSCRIBED_MEDIA)
        try:
            await self.pc.setRemoteDescription(
                RTCSessionDescription(sdp=checked.for_aiortc(), type="answer")
            )
        except Exception as exc:
            raise MediaError("bad_sdp", f"answer refused: {exc}") from None
        self.refused = {
            tid for tid, slot in self._slots.items() if slot.transceiver.mid in checked.rejected
        }
        for tid in self.refused:
            # aiortc leaves a rejected section's sender unstarted; one that ran before (a
            # reused section) must stop writing too.
            feed = self._slots[tid].feed
            feed.ready = False
            feed.socket = None

    async def add_ice_candidate(
        self, candidate: object, sdp_mid: object = None, sdp_mline_index: object = None
    ) -> None:
        """A candidate the subscriber trickled; MediaError("bad_candidate") if unusable."""
        self._check_open()
        await ice.add_remote_candidate(self.pc, candidate, sdp_mid, sdp_mline_index)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for slot in self._slots.values():
            slot.feed.close()
            self._retire(slot.feed)
        self._slots.clear()
        await self.pc.close()

    def _connection_changed(self) -> None:
        # A failed connection's socket is closed: stop writing to it (nothing restarts it).
        if self.pc.connectionState in ("failed", "closed"):
            for slot in self._slots.values():
                slot.feed.ready = False
                slot.feed.socket = None
        if self.lost and self.on_lost is not None:
            lost, self.on_lost = self.on_lost, None
            lost()

    def _slot(self, track_id: str) -> _Slot:
        slot = self._slots.get(track_id)
        if slot is None:
            raise MediaError("unknown_track", f"not subscribed to {track_id!r}")
        return slot

    def _check_open(self) -> None:
        if self.closed:
            raise MediaError("closed", "the subscription is closed")

    def _reusable(self, kind: str) -> bool:
        return any(t.kind == kind for t, _ in self._idle)

    def _reuse(self, kind: str) -> tuple[RTCRtpTransceiver, Feed] | None:
        for entry in self._idle:
            if entry[0].kind == kind:
                self._idle.remove(entry)
                return entry
        return None


_TOKEN_PUNCTUATION = frozenset("-._~!#$%&'*+^`{|}")


def stream_id(track_id: str) -> str:
    """The msid stream id of a track: its publication's name as an SDP token (RFC 8830);
    a name with other characters gets a hash suffix so different names stay different."""
    name = track_id.rpartition("/")[0] or track_id
    token = "".join(
        c if c.isascii() and (c.isalnum() or c in _TOKEN_PUNCTUATION) else "-" for c in name
    )
    if token != name or len(token) > 64:
        token = token[:55] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return token


def codec_preferences(forwarder: Forwarder) -> list[Any]:
    """The publisher's codec (and its RTX) from aiortc's capabilities: the subscriber gets
    exactly what the publisher sends."""
    codec = forwarder.codec
    capabilities = RTCRtpSender.getCapabilities(forwarder.kind).codecs
    main = [
        c
        for c in capabilities
        if c.mimeType.lower() == codec.mimeType.lower()
        and c.clockRate == codec.clockRate
        and _same_format(c.parameters, codec.parameters)
    ]
    if not main:
        raise MediaError("unsupported_codec", f"cannot forward {codec.mimeType}")
    rtx = [c for c in capabilities if c.mimeType.lower() == f"{forwarder.kind}/rtx"]
    return [main[0], *rtx[:1]] if forwarder.kind == "video" else [main[0]]


def _same_format(a: dict[str, Any], b: dict[str, Any]) -> bool:
    # H.264: the profile (first two octets of profile-level-id) and packetization mode.
    if "profile-level-id" in a or "profile-level-id" in b:
        return str(a.get("profile-level-id", ""))[:4].lower() == str(b.get("profile-level-id", ""))[
            :4
        ].lower() and str(a.get("packetization-mode", "0")) == str(b.get("packetization-mode", "0"))
    return True
