"""People in real Chromium pages see and hear each other through the SFU: the host admits a
participant, each plays the other's camera and hears the other's microphone, a third person
joining late sees both at once, a muted microphone goes quiet at the other end, the speaking
ring, a screen share shown large, tiles out of view and "audio only" pausing video, a device
switch, a moderator's "Mute", a broken connection rebuilt, a role change, the viewer page, and
the click a browser that blocks autoplay asks for. Fake camera and microphone; the server's
candidates on loopback. With VECHE_SCREENSHOTS=<dir>
the room, a screen share and the viewer page are saved as PNGs."""

import asyncio
import math
import os
import re
import struct
import wave
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from server.config import Settings
from tests.browser import Tab, chromium, open_tab, wait_until
from tests.conftest import LiveServer
from tests.sio_client import invite, make_meeting

pytestmark = pytest.mark.browser

# What the page receives, summed per kind over the subscribe connection's inbound streams;
# `codecs` are the received video codecs.
RECEIVED = """async () => {
  const sub = window.VecheRoom.state.subscriber;
  const out = {frames: 0, video: 0, audio: 0, codecs: []};
  if (!sub) return out;
  const stats = await sub.pc.getStats();
  for (const s of stats.values()) {
    if (s.type !== "inbound-rtp") continue;
    if (s.kind === "video") {
      out.frames += s.framesDecoded || 0;
      out.video += 1;
      const codec = s.codecId && stats.get(s.codecId);
      if (codec) out.codecs.push(codec.mimeType);
    } else {
      out.audio += s.packetsReceived || 0;
    }
  }
  return out;
}"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The server gathers its WebRTC candidates on loopback, where the browsers are."""
    return replace(settings, rtc_addresses="127.0.0.1")


@pytest.fixture
def voice(tmp_path: Path) -> list[str]:
    """Chromium's fake microphone playing a steady loud tone (its own beep is too short to
    count as speech): the arguments that make it do so."""
    path = tmp_path / "tone.wav"
    rate = 48000
    samples = (int(12000 * math.sin(2 * math.pi * 220 * n / rate)) for n in range(rate))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", s) for s in samples))
    return [f"--use-file-for-fake-audio-capture={path}"]


async def snapshot(page: Page, name: str) -> None:
    folder = os.environ.get("VECHE_SCREENSHOTS")
    if folder:
        await page.screenshot(path=str(Path(folder) / name))


async def received(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(RECEIVED)
    return result


async def grows(page: Page, key: str, seconds: float = 0.4) -> bool:
    before = (await received(page))[key]
    await asyncio.sleep(seconds)
    return bool((await received(page))[key] > before)


def tile_video(name: str) -> str:
    """A JS expression: the width of the video playing in `name`'s tile (0 if none)."""
    return (
        "[...document.querySelectorAll('#tiles .tile')].filter(t => t.querySelector("
        f"'.tile-name').textContent === {name!r}).map(t => t.querySelector('video'))"
        ".filter(v => v && !v.hidden).map(v => v.videoWidth)[0] || 0"
    )


async def enter(tab: Tab, url: str, host: Page | None, name: str) -> None:
    """Open the room; a moderator's page admits the newcomer from the lobby."""
    await tab.page.goto(url)
    if host is not None:
        entry = host.locator("#lobby-list .person", has_text=name)
        await entry.get_by_role("button", name="Admit").click()
    await expect(tab.page.locator("#connection")).to_have_text("Connected")


async def test_two_people_see_and_hear_each_other_and_a_late_joiner_sees_both(
    live_server: LiveServer, voice: list[str]
) -> None:
    meeting = await make_meeting(live_server, title="Expanded meeting of school heads")
    host_token = await invite(live_server, meeting, "Ольга Иванова", "host")
    anna_token = await invite(live_server, meeting, "Анна Петрова", "participant")
    petr_token = await invite(live_server, meeting, "Пётр Смирнов", "participant")
    async with chromium(voice) as browser:
        host_tab, anna_tab, petr_tab = [await open_tab(browser) for _ in range(3)]
        host, anna, petr = host_tab.page, anna_tab.page, petr_tab.page
        await enter(host_tab, f"{live_server.url}/j/{host_token}/room?lang=en", None, "")
        await enter(anna_tab, f"{live_server.url}/j/{anna_token}/room?lang=en", host, "Анна")

        # Each plays the other's camera and receives the other's microphone.
        await wait_until(host, tile_video("Анна Петрова"), 5)
        await wait_until(anna, tile_video("Ольга Иванова"), 5)
        for page in (host, anna):
            assert await grows(page, "frames")
            assert await grows(page, "audio")
            assert (await received(page))["codecs"] == ["video/VP8"]
        await expect(host.locator("#sounds audio")).to_have_count(1)
        await expect(host.locator("#tiles .tile.speaking")).to_have_count(2)  # the tone
        await snapshot(host, "room.png")

        # A third person joins late and sees both within a second of being let in (0.2-0.3 s
        # measured here).
        await petr.goto(f"{live_server.url}/j/{petr_token}/room?lang=en")
        entry = host.locator("#lobby-list .person", has_text="Пётр")
        await entry.get_by_role("button", name="Admit").click()
        started = asyncio.get_running_loop().time()
        await wait_until(petr, tile_video("Ольга Иванова"), 1.0)
        await wait_until(petr, tile_video("Анна Петрова"), 1.0)
        assert asyncio.get_running_loop().time() - started < 1.0
        await expect(petr.locator("#sounds audio")).to_have_count(2)
        await expect(host.locator("#tiles .tile.speaking")).to_have_count(3)

        # Anna mutes: her microphone sends nothing, and the others see her muted marker.
        await anna.locator("#mic-toggle").click()
        await expect(anna.locator("#mic-toggle")).to_have_attribute("aria-pressed", "false")
        annas_tile = host.locator("#tiles .tile", has_text="Анна Петрова")
        await expect(annas_tile.get_by_role("img", name="Microphone off")).to_be_visible()
        assert await quiet(host, "Анна Петрова")
        assert await grows(host, "audio")  # Petr's microphone still comes through

        # Video lasts: a healthy link's bandwidth estimate sits at the incoming rate, which
        # must not read as a slow link (once it paused every video after about 5 s).
        await asyncio.sleep(max(0.0, started + 9 - asyncio.get_running_loop().time()))
        for page in (host, anna, petr):
            assert await grows(page, "frames")
            await expect(page.locator("#tiles .tile-note", has_text="slow")).to_have_count(0)
        for tab in (host_tab, anna_tab, petr_tab):
            tab.assert_clean()


STREAM_PACKETS = """async ([name, kind]) => {
  const state = window.VecheRoom.state;
  const person = [...state.participants.values()].find(p => p.name === name);
  const ids = new Set(state.tracks.filter(t => t.participant === person.id && t.kind === kind)
    .map(t => state.media.get(t.id) && state.media.get(t.id).id));
  const stats = await state.subscriber.pc.getStats();
  let n = 0;
  for (const s of stats.values())
    if (s.type === "inbound-rtp" && s.kind === kind && ids.has(s.trackIdentifier))
      n += s.packetsReceived;
  return n;
}"""


async def quiet(page: Page, name: str, kind: str = "audio") -> bool:
    """Whether `name`'s stream of `kind`, received before, no longer brings packets (after
    those already on the way have arrived)."""
    await asyncio.sleep(0.3)
    before = await page.evaluate(STREAM_PACKETS, [name, kind])
    await asyncio.sleep(0.5)
    after = await page.evaluate(STREAM_PACKETS, [name, kind])
    return bool(before > 0 and after == before)


async def test_a_screen_share_is_shown_large_and_a_moderator_mutes_in_h264(
    live_server: LiveServer, voice: list[str]
) -> None:
    meeting = await make_meeting(live_server, title="Expanded meeting of school heads")
    host_token = await invite(live_server, meeting, "Ольга Иванова", "host")
    anna_token = await invite(live_server, meeting, "Анна Петрова", "participant")
    async with chromium(voice) as browser:
        host_tab, anna_tab = await open_tab(browser), await open_tab(browser)
        host, anna = host_tab.page, anna_tab.page
        await enter(host_tab, f"{live_server.url}/j/{host_token}/room?lang=en", None, "")
        # Anna's browser prefers H.264: the host receives it as she sends it.
        url = f"{live_server.url}/j/{anna_token}/room?lang=en&codec=H264"
        await enter(anna_tab, url, host, "Анна")
        await wait_until(host, tile_video("Анна Петрова"), 5)
        assert (await received(host))["codecs"] == ["video/H264"]

        await anna.locator("#screen-toggle").click()
        await expect(anna.locator("#screen-toggle")).to_have_text("Stop sharing")
        screen = host.locator("#screen")
        await expect(screen).to_be_visible()
        await expect(screen).to_contain_text("Анна Петрова is sharing the screen")
        await wait_until(host, "document.querySelector('#screen video').videoWidth > 0", 5)
        assert await host.evaluate("document.querySelector('.stage').classList.contains('sharing')")
        # Her camera stays in the strip next to the share.
        await wait_until(host, tile_video("Анна Петрова"), 5)
        await snapshot(host, "screenshare.png")

        await anna.locator("#screen-toggle").click()
        await expect(screen).to_be_hidden()

        # Both speak (the tone): Anna's tile gets the speaking ring, and one is the active speaker.
        annas_tile = host.locator("#tiles .tile", has_text="Анна Петрова")
        await expect(annas_tile).to_have_class(re.compile(r"\bspeaking\b"))
        await expect(host.locator("#tiles .tile.active")).to_have_count(1)

        # Her tile out of view: the server stops sending its video; back in view, it resumes.
        hide = "(d) => { document.querySelector('#tiles .tile[data-track]').style.display = d; }"
        await host.evaluate(hide, "none")
        assert await quiet(host, "Анна Петрова", "video")
        await host.evaluate(hide, "")
        assert await grows(host, "frames")
        # "Audio only" stops all video and shows initials; switched off, video comes back.
        await host.locator("#audio-only-toggle").click()
        await expect(host.locator("#tiles .tile.has-video")).to_have_count(1)  # her own camera
        assert await quiet(host, "Анна Петрова", "video")
        await host.locator("#audio-only-toggle").click()
        await wait_until(host, tile_video("Анна Петрова"), 5)
        assert await grows(host, "frames")

        # Anna picks another microphone from the device menu; the host still hears her.
        await anna.locator("#devices-toggle").click()
        mics = anna.locator("#devices-menu select[data-kind=audio]")
        await expect(mics).to_be_visible()
        options = await mics.locator("option").evaluate_all("(os) => os.map((o) => o.value)")
        assert len(options) >= 2
        chosen = await mics.input_value()
        await mics.select_option(next(o for o in options if o != chosen))
        await anna.keyboard.press("Escape")
        await expect(mics).to_be_hidden()
        await asyncio.sleep(0.5)
        assert not await quiet(host, "Анна Петрова")

        # The host mutes Anna from her tile: her microphone stops at the server at once.
        await annas_tile.hover()
        await annas_tile.get_by_role("button", name="Mute", exact=True).click()
        await expect(anna.locator(".toast", has_text="muted your microphone")).to_be_visible()
        await expect(anna.locator("#mic-toggle")).to_have_attribute("aria-pressed", "false")
        assert await quiet(host, "Анна Петрова")
        # She unmutes herself: the server forwards her microphone again.
        await anna.locator("#mic-toggle").click()
        await expect(annas_tile.get_by_role("img", name="Microphone on")).to_be_visible()
        assert not await quiet(host, "Анна Петрова")
        for tab in (host_tab, anna_tab):
            tab.assert_clean()


async def test_a_broken_link_is_rebuilt_and_a_new_role_changes_what_is_published(
    live_server: LiveServer,
) -> None:
    meeting = await make_meeting(live_server, title="Открытое заседание")
    host_token = await invite(live_server, meeting, "Ольга Иванова", "host")
    anna_token = await invite(live_server, meeting, "Анна Петрова", "participant")
    async with chromium() as browser:
        host_tab, anna_tab = await open_tab(browser), await open_tab(browser)
        host, anna = host_tab.page, anna_tab.page
        await enter(host_tab, f"{live_server.url}/j/{host_token}/room?lang=en", None, "")
        await enter(anna_tab, f"{live_server.url}/j/{anna_token}/room?lang=en", host, "Анна")
        await wait_until(host, tile_video("Анна Петрова"), 5)

        # Anna's publish connection fails: the page says it reconnects, takes its seat back
        # and both see each other again on new connections.
        shown = await anna.evaluate(
            "window.VecheRoom.state.publisher.broken(),"
            " document.getElementById('connection').textContent"
        )
        assert shown == "Reconnecting…"
        await expect(anna.locator("#connection")).to_have_text("Connected")
        await wait_until(anna, tile_video("Ольга Иванова"), 5)
        await wait_until(host, tile_video("Анна Петрова"), 5)
        assert await grows(host, "frames") and await grows(anna, "frames")
        await expect(host.locator("#people .person")).to_have_count(2)

        # Her socket drops (the transport closes): socket.io reconnects, the seat is taken back
        # and new peer connections carry her camera again.
        await anna.evaluate(
            "window.oldSubscriber = window.VecheRoom.state.subscriber,"
            " window.VecheRoom.socket.io.engine.close()"
        )
        fresh = "window.VecheRoom.state.subscriber"
        await wait_until(anna, f"{fresh} && {fresh} !== window.oldSubscriber", 5)
        await wait_until(anna, tile_video("Ольга Иванова"), 5)
        await wait_until(host, tile_video("Анна Петрова"), 5)
        await expect(host.locator("#people .person")).to_have_count(2)

        # Made a viewer, Anna's camera and microphone stop and her controls go; made a
        # participant again, she turns them on (a new role never does it for her).
        roles = host.locator("#people .person", has_text="Анна Петрова").locator("select")
        await roles.select_option("viewer")
        await expect(anna.locator("#mic-toggle")).to_be_hidden()
        await expect(anna.locator("#camera-toggle")).to_be_hidden()
        await expect(host.locator("#tiles .tile")).to_have_count(1)
        await expect(host.locator("#sounds audio")).to_have_count(0)
        await roles.select_option("participant")
        await expect(anna.locator("#camera-toggle")).to_have_attribute("aria-pressed", "false")
        await anna.locator("#camera-toggle").click()
        await anna.locator("#mic-toggle").click()
        await wait_until(host, tile_video("Анна Петрова"), 5)
        await expect(host.locator("#sounds audio")).to_have_count(1)
        assert await grows(host, "audio")
        for tab in (host_tab, anna_tab):
            tab.assert_clean()


async def test_the_viewer_page_plays_the_room(live_server: LiveServer) -> None:
    meeting = await make_meeting(live_server, title="Открытое заседание", visibility="public")
    host_token = await invite(live_server, meeting, "Ольга Иванова", "host")
    # Viewers receive the stage (docs/protocol.md): a speaker is on it by role, as the host is.
    anna_token = await invite(live_server, meeting, "Анна Петрова", "speaker")
    async with chromium() as browser:
        host_tab, anna_tab, viewer_tab = [await open_tab(browser) for _ in range(3)]
        host, viewer = host_tab.page, viewer_tab.page
        await enter(host_tab, f"{live_server.url}/j/{host_token}/room?lang=en", None, "")
        await enter(anna_tab, f"{live_server.url}/j/{anna_token}/room?lang=en", host, "Анна")

        # A viewer of the public meeting receives both, with no publish controls.
        await viewer.goto(f"{live_server.url}/watch/{meeting.id}?lang=en")
        await expect(viewer.locator("#broadcast")).to_be_visible()
        await viewer.locator("#viewer-name").fill("Зритель Сергей")
        await viewer.get_by_role("button", name="Watch").click()
        await wait_until(viewer, tile_video("Ольга Иванова"), 5)
        await wait_until(viewer, tile_video("Анна Петрова"), 5)
        await expect(viewer.locator("#broadcast")).to_be_hidden()
        await expect(viewer.locator("#sounds audio")).to_have_count(2)
        for control in ("#mic-toggle", "#camera-toggle", "#screen-toggle", "#devices-toggle"):
            assert await viewer.locator(control).count() == 0
        assert await grows(viewer, "audio") and await grows(viewer, "frames")
        await snapshot(viewer, "watch.png")
        for tab in (host_tab, anna_tab, viewer_tab):
            tab.assert_clean()


async def test_a_viewer_the_browser_keeps_silent_is_asked_for_a_click(
    live_server: LiveServer,
) -> None:
    meeting = await make_meeting(live_server, title="Expanded meeting")
    host_token = await invite(live_server, meeting, "Ольга Иванова", "host")
    viewer_token = await invite(live_server, meeting, "Сергей Зрителев", "viewer")
    # Sound only after a gesture on the page, as browsers do for sites not yet trusted. (A page
    # that captures a camera or microphone may play anyway; a viewer's page captures nothing.)
    async with chromium(["--autoplay-policy=user-gesture-required"]) as browser:
        host_tab, viewer_tab = await open_tab(browser), await open_tab(browser)
        host, viewer = host_tab.page, viewer_tab.page
        await enter(host_tab, f"{live_server.url}/j/{host_token}/room?lang=en", None, "")
        await viewer.goto(f"{live_server.url}/j/{viewer_token}?lang=en")  # to /watch, no form
        # Nothing may touch the viewer's page until its sound is refused: Playwright's
        # evaluate() and locators count as user gestures. The host's page says when it joined.
        await expect(host.locator("#people")).to_contain_text("Сергей Зрителев")
        await asyncio.sleep(2)
        notice = viewer.locator("#sound-notice")
        await expect(notice).to_be_visible()
        await expect(notice).to_have_text(
            "The browser has paused the sound. Click to hear the meeting."
        )
        assert await viewer.evaluate("document.querySelector('#sounds audio').paused")
        await notice.click()
        await expect(notice).to_be_hidden()
        await wait_until(viewer, "!document.querySelector('#sounds audio').paused", 2)
        assert await grows(viewer, "audio")
        for tab in (host_tab, viewer_tab):
            tab.assert_clean()
