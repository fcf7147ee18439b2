"""A participant in real Chromium receives the host through the impaired-link relay
(bench/impairment.py): on a clean link it hears and sees the host as on a direct one; on a
weak link (300 kbit/s, 5 % loss, 100 ms each way) the concealed audio and the video's frame
rate are measured and printed (issue 12's first figure)."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from playwright.async_api import Page, expect

from bench.impairment import Detour, Impairment, LinkSpec, Relay, free_port_range, open_relay
from server.config import Settings
from tests.browser import chromium, open_tab, wait_until
from tests.conftest import LiveServer
from tests.sio_client import invite, make_meeting

pytestmark = pytest.mark.browser

WEAK = LinkSpec(
    down=Impairment(loss=0.05, delay=0.1, rate=300_000),
    up=Impairment(loss=0.05, delay=0.1),
)
WINDOW = 6.0  # seconds measured per link
SETTLE = 3.0  # seconds for the link's change to take hold before the window

# What the page's subscribe connection received so far, summed over its inbound streams.
INBOUND = """async () => {
  const sub = window.VecheRoom.state.subscriber;
  const out = {concealed: 0, samples: 0, packets: 0, frames: 0, width: 0};
  if (!sub) return out;
  for (const s of (await sub.pc.getStats()).values()) {
    if (s.type !== "inbound-rtp") continue;
    if (s.kind === "audio") {
      out.concealed += s.concealedSamples || 0;
      out.samples += s.totalSamplesReceived || 0;
      out.packets += s.packetsReceived || 0;
    } else {
      out.frames += s.framesDecoded || 0;
      out.width = Math.max(out.width, s.frameWidth || 0);
    }
  }
  return out;
}"""


@dataclass
class Figures:
    concealed: float  # fraction of the audio samples
    audio: float  # audio packets per second
    fps: float
    width: int
    dropped: float  # fraction of what the relay was given, server -> participant

    def __str__(self) -> str:
        return (
            f"concealed audio {100 * self.concealed:.1f} % ({self.audio:.0f} packets/s), "
            f"video {self.fps:.1f} fps "
            f"{self.width} wide, relay dropped {100 * self.dropped:.0f} %"
        )


@pytest.fixture
def ports() -> range:
    return free_port_range(32)


@pytest.fixture
def settings(settings: Settings, ports: range) -> Settings:
    """Candidates on 127.0.0.1 in a fixed range: the relay listens at the same ports on
    127.0.0.2 (docs/media.md, "Testing on an impaired link")."""
    return replace(
        settings, rtc_addresses="127.0.0.1", rtc_min_port=ports[0], rtc_max_port=ports[-1]
    )


@pytest.fixture
async def relay(ports: range) -> AsyncIterator[Relay]:
    async with open_relay(ports) as running:
        yield running


async def inbound(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(INBOUND)
    return result


async def measure(page: Page, relay: Relay) -> Figures:
    before, counters = await inbound(page), relay.down.counters
    offered, dropped = counters.offered, counters.lost + counters.overflowed
    await asyncio.sleep(WINDOW)
    after = await inbound(page)
    samples = after["samples"] - before["samples"]
    given = counters.offered - offered
    return Figures(
        concealed=(after["concealed"] - before["concealed"]) / samples if samples else 1.0,
        audio=(after["packets"] - before["packets"]) / WINDOW,
        fps=(after["frames"] - before["frames"]) / WINDOW,
        width=int(after["width"]),
        dropped=(counters.lost + counters.overflowed - dropped) / given if given else 0.0,
    )


async def test_a_participant_on_a_weak_link_hears_and_sees_the_host(
    live_server: LiveServer, relay: Relay
) -> None:
    meeting = await make_meeting(live_server, title="Expanded meeting")
    host_token = await invite(live_server, meeting, "Ольга Иванова", "host")
    anna_token = await invite(live_server, meeting, "Анна Петрова", "participant")
    async with chromium() as browser:
        host_tab, anna_tab = await open_tab(browser), await open_tab(browser)
        host, anna = host_tab.page, anna_tab.page
        await anna_tab.context.add_init_script(Detour().browser_script())
        await host.goto(f"{live_server.url}/j/{host_token}/room?lang=en")
        await expect(host.locator("#connection")).to_have_text("Connected")
        await anna.goto(f"{live_server.url}/j/{anna_token}/room?lang=en")
        entry = host.locator("#lobby-list .person", has_text="Анна")
        await entry.get_by_role("button", name="Admit").click()
        await expect(anna.locator("#connection")).to_have_text("Connected")
        await wait_until(anna, "(async () => (await (" + INBOUND + ")()).frames > 0)()", 10)
        await asyncio.sleep(SETTLE)
        clean = await measure(anna, relay)
        # Everything Anna receives crossed the relay: ICE, DTLS and media.
        assert relay.down.counters.passed > WINDOW * 50 and relay.up.counters.passed > 0
        relay.set(WEAK)
        await asyncio.sleep(SETTLE)
        weak = await measure(anna, relay)
        print(f"\nclean link: {clean}\nweak link (300 kbit/s, 5 % loss, 100 ms): {weak}")
        print(relay.summary())

        # The server's answer asked the host's Opus encoder for in-band FEC.
        answer = "window.VecheRoom.state.publisher.pc.remoteDescription.sdp"
        assert "useinbandfec=1" in await host.evaluate(answer)
        assert clean.concealed < 0.05
        assert clean.fps >= 10
        assert clean.dropped == 0
        # Audio is never paused for a weak link (Opus sends 50 packets a second).
        assert weak.audio > 25
        for tab in (host_tab, anna_tab):
            tab.assert_clean()
