"""The aiortc/aioice internals the load tool hooks still exist and still work.

Private names fail silently when they move; these checks make an aiortc or aioice upgrade fail
here, loudly, instead of producing numbers that count nothing.
"""

import asyncio
import threading

from aiortc import RTCPeerConnection

from bench import loopback
from bench.clip import ClipSpec, load
from bench.peers import Publisher, Viewer, decoder_threads


async def test_loopback_candidates_only() -> None:
    pc = RTCPeerConnection(loopback.configuration())
    pc.addTransceiver("video", direction="recvonly")
    loopback.restrict(pc)
    await pc.setLocalDescription(await pc.createOffer())
    candidates = [
        line for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate")
    ]
    await pc.close()
    assert candidates
    assert all(" 127.0.0.1 " in line for line in candidates)


async def test_publisher_to_viewer_without_decoders() -> None:
    """A publisher and a viewer connected directly: the tap counts frames, matches send times,
    and no aiortc decoder thread survives."""
    clip = load(ClipSpec(codec="vp8", seconds=10.0))
    publisher = Publisher(clip)
    viewer = Viewer(publisher.times, "vp8")
    try:
        offer = await publisher.offer()
        answer = await viewer.answer(offer)
        await publisher.accept(answer)
        for _ in range(50):
            if viewer.snapshot("video").frames >= 10 and viewer.snapshot("audio").packets >= 10:
                break
            await asyncio.sleep(0.1)
        assert viewer.snapshot("video").frames >= 10
        assert viewer.snapshot("audio").packets >= 10
        assert viewer.first_frame_at is not None
        assert viewer.delays, "no frame matched its send time"
        assert max(viewer.delays) < 0.5
        assert decoder_threads() == 0, [t.name for t in threading.enumerate()]
        # The viewer reports back like a browser: the publisher's senders see its receiver
        # reports (one block per stream, nothing lost).
        remote: list[object] = []
        for _ in range(40):
            stats = await publisher.pc.getStats()
            remote = [s for s in stats.values() if s.type == "remote-inbound-rtp"]
            if {s.kind for s in remote} == {"audio", "video"}:
                break
            await asyncio.sleep(0.1)
        assert {s.kind for s in remote} == {"audio", "video"}, remote
        assert all(s.packetsLost == 0 and s.fractionLost == 0 for s in remote), remote
    finally:
        await viewer.close()
        await publisher.close()
