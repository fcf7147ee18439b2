"""A publisher's connection: it offers, the server answers and forwards what it sends."""

import logging
from dataclasses import dataclass

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import OperationError

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
        self._offer: sdp.Offer | None = None  # the last offer taken

    @property
    def tracks(self) -> list[PublishedTrack]:
        return [
            PublishedTrack(f.track_id, f.kind, track_mid(f.track_id), f.codec.mimeType)
            for f in self.forwarders.values()
        ]

    async def renegotiate(self, offer: str) -> str:
        """Apply a new offer from the publisher (a track added, stopped or resumed); returns
        the answer.

        An offer that would change a running track's codec, offers no codec aiortc can take,
        or that aiortc refuses while reading it is answered with MediaError and changes nothing:
        the running tracks go on. Only a failure after aiortc took the offer (which it cannot
        roll back) closes the publication.
        """
        if self.closed:
            raise MediaError("closed", "the publication is closed")
        if self.pc.signalingState != "stable":
            raise MediaError("negotiation_pending", "the previous offer is still being answered")
        checked = sdp.check(offer, MAX_PUBLISHED_MEDIA)
        self._check_sections_kept(checked)
        self._check_running_codecs(checked)
        try:
            return await _apply(self, checked)
        except MediaError:
            if self.pc.signalingState == "stable":
                raise  # aiortc did not take the offer: the old state stands
            await self.close()
            raise
        except BaseException:
            await self.close()
            raise

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

    def _check_sections_kept(self, offer: sdp.Offer) -> None:
        """A section keeps its place and kind in every later offer (JSEP): aiortc matches
        sections by line as well as by mid and would fail half-way through one that moved."""
        if self._offer is None:
            return
        before = {s.mid: s for s in self._offer.sections}
        for section in offer.sections:
            previous = before.get(section.mid)
            if previous is None:
                continue
            if (previous.index, previous.kind) != (section.index, section.kind):
                raise MediaError("bad_sdp", f"media section {section.mid!r} moved or changed kind")

    def _check_running_codecs(self, offer: sdp.Offer) -> None:
        for section, media in zip(offer.sections, offer.description.media, strict=True):
            forwarder = self.forwarders.get(track_id(self.name, section.mid))
            if forwarder is None or not section.sends:
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


async def answer(name: str, offer: str, settings: ice.IceSettings) -> tuple[Publication, str]:
    """Accept a publisher's offer; MediaError (and nothing kept) if it cannot be served."""
    checked = sdp.check(offer, MAX_PUBLISHED_MEDIA)
    publication = Publication(name, RTCPeerConnection(ice.configuration(settings)), settings)
    try:
        answer_sdp = await _apply(publication, checked)
        if not publication.forwarders:
            raise MediaError("nothing_published", "the offer sends no audio or video")
    except BaseException:
        await publication.close()
        raise
    return publication, answer_sdp


async def _apply(publication: Publication, offer: sdp.Offer) -> str:
    """Give aiortc the offer as it can read it, follow its sections (a forwarder per sending
    section), and return the answer as the offer needs it (media/sdp.py)."""
    unsupported = sdp.unsupported(offer)
    if unsupported:
        kinds = ", ".join(s.kind for s in unsupported)
        raise MediaError("unsupported_codec", f"no supported codec offered for {kinds}")
    pc = publication.pc
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.for_aiortc(), type="offer"))
    except OperationError as exc:
        raise MediaError("unsupported_codec", f"no supported codec offered: {exc}") from None
    except Exception as exc:
        raise MediaError("bad_sdp", f"offer refused: {exc}") from None
    # A stopped section's m-line taken by a new mid: the old transceiver goes.
    await hooks.retire_transceivers(pc, {s.mid for s in offer.sections})
    sending = offer.sending
    for tid in [t for t in publication.forwarders if track_mid(t) not in sending]:
        publication.forwarders.pop(tid).close()  # the publisher stopped this track
    for transceiver in pc.getTransceivers():
        mid = transceiver.mid
        if mid is None:
            continue
        if transceiver.receiver.transport is not None:
            # The publisher's RTP reaches the forwarder in the socket's callback.
            hooks.receive_inline(transceiver.receiver.transport)
        if mid not in sending or transceiver.receiver.track is None:
            continue
        tid = track_id(publication.name, mid)
        running = publication.forwarders.get(tid)
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
    publication._offer = offer
    return offer.answer(str(pc.localDescription.sdp))
