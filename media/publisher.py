"""A publisher's connection: it offers, the server answers and forwards what it sends."""

import logging
from dataclasses import dataclass

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import OperationError
from aiortc.sdp import SessionDescription

from media import hooks, ice, sdp
from media.errors import MediaError
from media.forwarder import Forwarder

logger = logging.getLogger(__name__)

MAX_PUBLISHED_MEDIA = 8


@dataclass(frozen=True)
class PublishedTrack:
    track_id: str
    kind: str
    mid: str
    codec: str  # MIME type, e.g. "video/VP8"


class Publication:
    """One publisher's peer connection and the tracks it sends."""

    def __init__(self, name: str, pc: RTCPeerConnection, settings: ice.IceSettings) -> None:
        self.name = name
        self.pc = pc
        self.forwarders: dict[str, Forwarder] = {}
        self.closed = False
        self._settings = settings

    @property
    def tracks(self) -> list[PublishedTrack]:
        return [
            PublishedTrack(f.track_id, f.kind, track_mid(f.track_id), f.codec.mimeType)
            for f in self.forwarders.values()
        ]

    async def renegotiate(self, offer: str) -> str:
        """Apply a new offer from the publisher (a track added or stopped); returns the answer.

        Offers that would change a running track's codec are refused unchanged; an offer aiortc
        itself refuses closes the publication (aiortc cannot roll back) and raises MediaError.
        """
        if self.closed:
            raise MediaError("closed", "the publication is closed")
        if self.pc.signalingState != "stable":
            raise MediaError("negotiation_pending", "the previous offer is still being answered")
        description = sdp.check(offer, MAX_PUBLISHED_MEDIA)
        self._check_running_codecs(description)
        try:
            await _apply(self, offer, description)
        except BaseException:
            await self.close()
            raise
        return str(self.pc.localDescription.sdp)

    async def add_ice_candidate(
        self, candidate: object, sdp_mid: object = None, sdp_mline_index: object = None
    ) -> None:
        """A candidate the publisher trickled; MediaError("bad_candidate") if unusable."""
        if self.closed:
            raise MediaError("closed", "the publication is closed")
        await ice.add_remote_candidate(self.pc, candidate, sdp_mid, sdp_mline_index)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for forwarder in self.forwarders.values():
            forwarder.close()
        try:
            await self.pc.close()
        except Exception:  # aiortc left in a state it cannot close cleanly: log, go on
            logger.exception("closing publication %r", self.name)

    def _check_running_codecs(self, description: SessionDescription) -> None:
        for media in description.media:
            forwarder = self.forwarders.get(track_id(self.name, media.rtp.muxId or ""))
            if forwarder is None or not _sends(media):
                continue
            offered = {c.payloadType: c.name.lower() for c in media.rtp.codecs}
            if offered.get(forwarder.payload_type) != forwarder.codec.name.lower():
                raise MediaError(
                    "codec_changed",
                    f"{forwarder.track_id} must keep sending {forwarder.codec.mimeType}",
                )


def track_id(name: str, mid: str) -> str:
    return f"{name}/{mid}"


def track_mid(track: str) -> str:
    return track.rsplit("/", 1)[-1]


def _sends(media: object) -> bool:
    return getattr(media, "port", 0) != 0 and getattr(media, "direction", None) in (
        "sendonly",
        "sendrecv",
        None,  # no direction attribute means sendrecv
    )


async def answer(name: str, offer: str, settings: ice.IceSettings) -> tuple[Publication, str]:
    """Accept a publisher's offer; MediaError (and nothing kept) if it cannot be served."""
    description = sdp.check(offer, MAX_PUBLISHED_MEDIA)
    publication = Publication(name, RTCPeerConnection(ice.configuration(settings)), settings)
    try:
        await _apply(publication, offer, description)
        if not publication.forwarders:
            raise MediaError("nothing_published", "the offer sends no audio or video")
    except BaseException:
        await publication.close()
        raise
    return publication, str(publication.pc.localDescription.sdp)


async def _apply(publication: Publication, offer: str, description: SessionDescription) -> None:
    pc = publication.pc
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    except OperationError as exc:
        raise MediaError("unsupported_codec", f"no supported codec offered: {exc}") from None
    except Exception as exc:
        raise MediaError("bad_sdp", f"offer refused: {exc}") from None
    sections = {m.rtp.muxId: m for m in description.media}
    for transceiver in pc.getTransceivers():
        mid = transceiver.mid
        if mid is None:
            continue
        if transceiver.receiver.transport is not None:
            # The publisher's RTP reaches the forwarder in the socket's callback.
            hooks.receive_inline(transceiver.receiver.transport)
        tid = track_id(publication.name, mid)
        running = publication.forwarders.get(tid)
        if not _sends(sections.get(mid)) or transceiver.receiver.track is None:
            if running is not None:  # the publisher stopped this track
                running.close()
                del publication.forwarders[tid]
            continue
        if running is not None:
            # aiortc re-negotiated every codec: keep the one this track is forwarded as.
            hooks.keep_one_codec(transceiver, running.payload_type)
            continue
        codec = hooks.keep_one_codec(transceiver)
        if codec is None:
            raise MediaError("unsupported_codec", f"no codec for {transceiver.kind}")
        publication.forwarders[tid] = Forwarder(tid, transceiver.kind, codec, transceiver.receiver)
    ice.restrict_candidates(pc, publication._settings)
    try:
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:
        raise MediaError("bad_sdp", f"cannot answer this offer: {exc}") from None
