"""Chromium publishes its fake camera and microphone through the SFU; another Chromium page
receives and decodes them. Checks the forwarded RTP is right for a browser, not just aiortc."""

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from media.sfu import Sfu
from media.subscriber import Subscription
from tests.browser import chromium, open_tab, wait_until
from tests.media_clients import LOOPBACK

pytestmark = pytest.mark.browser

_GATHERED = """
async function gathered(pc) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise(done => pc.addEventListener("icegatheringstatechange",
    () => pc.iceGatheringState === "complete" && done()));
}
"""

PUBLISH_PAGE = f"""<!doctype html><meta charset="utf-8"><title>publish</title><script>
{_GATHERED}
window.published = (async () => {{
  const pc = new RTCPeerConnection();
  const stream = await navigator.mediaDevices.getUserMedia(
    {{video: {{width: 640, height: 360}}, audio: true}});
  const codec = new URLSearchParams(location.search).get("codec");
  for (const track of stream.getTracks()) {{
    const transceiver = pc.addTransceiver(track, {{direction: "sendonly"}});
    if (codec && track.kind === "video") {{
      const codecs = RTCRtpSender.getCapabilities("video").codecs;
      const first = codecs.filter(c => c.mimeType === "video/" + codec &&
        (codec !== "H264" || /packetization-mode=1/.test(c.sdpFmtpLine || "") &&
         /profile-level-id=42e01f/.test(c.sdpFmtpLine || "")));
      transceiver.setCodecPreferences([...first, ...codecs.filter(c => !first.includes(c))]);
    }}
  }}
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc);
  const answer = await fetch("/publish", {{method: "POST", body: pc.localDescription.sdp}});
  await pc.setRemoteDescription({{type: "answer", sdp: await answer.text()}});
  window.pc = pc;
  return true;
}})();
async function outbound(kind) {{
  const stats = await window.pc.getStats();
  for (const s of stats.values())
    if (s.type === "outbound-rtp" && s.kind === kind) return s;
  return null;
}}
</script>"""

VIEW_PAGE = f"""<!doctype html><meta charset="utf-8"><title>view</title><body><script>
{_GATHERED}
window.viewed = (async () => {{
  const pc = new RTCPeerConnection();
  pc.ontrack = event => {{
    const element = document.createElement(event.track.kind);
    element.muted = true;
    element.autoplay = true;
    element.srcObject = new MediaStream([event.track]);
    document.body.appendChild(element);
  }};
  const offer = await fetch("/offer");
  await pc.setRemoteDescription({{type: "offer", sdp: await offer.text()}});
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  await fetch("/answer", {{method: "POST", body: pc.localDescription.sdp}});
  window.pc = pc;
  return true;
}})();
async function inbound(kind) {{
  const stats = await window.pc.getStats();
  for (const s of stats.values())
    if (s.type === "inbound-rtp" && s.kind === kind) return s;
  return null;
}}
</script>"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Pages:
    """Just enough signaling over HTTP for one publisher and one viewer."""

    def __init__(self, sfu: Sfu) -> None:
        self.sfu = sfu
        self.subscription: Subscription | None = None

    async def publish_page(self, request: web.Request) -> web.Response:
        return web.Response(text=PUBLISH_PAGE, content_type="text/html")

    async def view_page(self, request: web.Request) -> web.Response:
        return web.Response(text=VIEW_PAGE, content_type="text/html")

    async def no_icon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def publish(self, request: web.Request) -> web.Response:
        _, answer = await self.sfu.publish("cam", await request.text())
        return web.Response(text=answer)

    async def offer(self, request: web.Request) -> web.Response:
        self.subscription = self.sfu.subscribe()
        for track_id in self.sfu.forwarders:
            self.subscription.add(track_id)
        return web.Response(text=await self.subscription.offer())

    async def answer(self, request: web.Request) -> web.Response:
        assert self.subscription is not None
        await self.subscription.accept(await request.text())
        return web.Response(text="ok")


@pytest.fixture
async def pages() -> AsyncIterator[str]:
    sfu = Sfu(LOOPBACK)
    handlers = _Pages(sfu)
    app = web.Application()
    app.router.add_get("/", handlers.publish_page)
    app.router.add_get("/view", handlers.view_page)
    app.router.add_get("/favicon.ico", handlers.no_icon)
    app.router.add_post("/publish", handlers.publish)
    app.router.add_get("/offer", handlers.offer)
    app.router.add_post("/answer", handlers.answer)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await sfu.close()
    await runner.cleanup()


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_chromium_decodes_what_another_chromium_published(pages: str, codec: str) -> None:
    async with chromium() as browser:
        publisher, viewer = await open_tab(browser), await open_tab(browser)
        await publisher.page.goto(pages + "/?codec=" + codec)
        assert await publisher.page.evaluate("window.published")
        await viewer.page.goto(pages + "/view")
        assert await viewer.page.evaluate("window.viewed")
        await wait_until(
            viewer.page, "window.pc && inbound('video').then(s => s && s.framesDecoded > 20)", 8
        )
        video = await viewer.page.evaluate("inbound('video')")
        mime = await viewer.page.evaluate(
            "window.pc.getStats().then(r => [...r.values()]"
            ".find(s => s.type === 'codec' && s.mimeType.startsWith('video/')).mimeType)"
        )
        assert mime == "video/" + codec
        audio = await viewer.page.evaluate("inbound('audio')")
        assert video["keyFramesDecoded"] >= 1
        assert video["frameWidth"] == 640 and video["frameHeight"] == 360
        assert audio["packetsReceived"] > 20 and audio["bytesReceived"] > 0
        assert video.get("packetsLost", 0) == 0
        # The viewer's arrival reached the browser publisher as a keyframe request.
        sent = await publisher.page.evaluate("outbound('video')")
        assert sent["pliCount"] >= 1
        # The forwarded audio's sender reports reach the browser with the forwarded counts.
        await wait_until(
            viewer.page,
            "window.pc.getStats().then(r => [...r.values()].some(s =>"
            " s.type === 'remote-outbound-rtp' && s.kind === 'audio' && s.packetsSent > 0))",
            4,
        )
        publisher.assert_clean()
        viewer.assert_clean()
