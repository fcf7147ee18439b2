"""A WHEP viewer's connection: the viewer offers receive-only sections, the server answers
with the room's published tracks in them, forwarded like any subscriber's (no decoding).

WHEP has no renegotiation, so the tracks are chosen once, when the offer comes: each offered
section gets one track of its kind (video: the active speaker's camera first, then other
cameras, then screens; audio: the active speaker's microphone first, then the others).
Sections left over are answered inactive.
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
        description = sdp.check(offer, MAX_SUBSCRIBED_MEDIA)
        if sdp.sending(description):
            raise MediaError("bad_sdp", "a WHEP offer receives only (recvonly sections)")
        kinds = [m.kind for m in description.media if m.port != 0 and m.direction != "inactive"]
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

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for feed in self.feeds:
            feed.close()
        await self.pc.close()
