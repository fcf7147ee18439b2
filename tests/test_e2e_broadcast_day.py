"""Issue 6's "done when", with real parts: a public meeting; the hall publishes over WHIP from an
aiortc stand-in for OBS (pre-encoded H.264 + Opus, every candidate in the offer); two remote
heads of schools join as speakers from Chromium (fake camera, a steady tone as microphone) and
speak; the hall's projector page plays both with their names and never the hall; a viewer page
watches the stage, raises a hand, the host (a room page with camera and microphone off) makes
the viewer a speaker from the people list, the viewer's camera and microphone reach the host,
and the host makes them a viewer again: their sending stops and the page is a viewer's again."""

import asyncio
from dataclasses import replace

import aiohttp
import pytest
from playwright.async_api import Page, expect

from server.config import Settings
from tests.browser import chromium, open_tab, wait_until
from tests.conftest import LiveServer
from tests.media_clients import ClientPublisher
from tests.media_clip import clip
from tests.sio_client import invite, make_meeting
from tests.test_browser_media import enter, voice  # noqa: F401 (a fixture)

pytestmark = pytest.mark.browser

HALL, ANNA, BORIS, SERGEY = "Зал 1", "Анна Петрова", "Борис Соколов", "Зритель Сергей"

# JS: how far the video in `name`'s tile has played (-1 without a shown video).
PLAYED = """(name) => {
  const tile = [...document.querySelectorAll('#tiles .tile')]
    .find(t => t.querySelector('.tile-name').textContent === name);
  const video = tile && tile.querySelector('video');
  return video && !video.hidden && video.videoWidth > 0 ? video.currentTime : -1;
}"""

# JS: the names on the tiles of the page.
NAMES = """() => [...document.querySelectorAll('#tiles .tile .tile-name')]
  .map(n => n.textContent).sort()"""

# JS (room and viewer pages): the received track `name` sends of `kind`, as the browser knows
# it (its MediaStreamTrack id), or null.
TRACK_OF = """([name, kind]) => {
  const state = window.VecheRoom.state;
  const person = [...state.participants.values()].find(p => p.name === name);
  const info = person && state.tracks.find(t => t.participant === person.id && t.kind === kind);
  const track = info && state.media.get(info.id);
  return track ? track.id : null;
}"""

# JS: frames decoded (video) or packets received (audio) on the subscribe connection for one
# received MediaStreamTrack id; -1 when no such stream is there.
COUNT = """async (track) => {
  const sub = window.VecheRoom.state.subscriber;
  if (!sub) return -1;
  let n = -1;
  for (const s of (await sub.pc.getStats()).values())
    if (s.type === "inbound-rtp" && s.trackIdentifier === track)
      n = s.kind === "video" ? (s.framesDecoded || 0) : (s.packetsReceived || 0);
  return n;
}"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The server gathers its WebRTC candidates on loopback, where the browsers are."""
    return replace(settings, rtc_addresses="127.0.0.1")


async def plays(page: Page, name: str, seconds: float = 8.0) -> None:
    """`name`'s video is shown on `page` and plays: its time moves on by half a second."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    start = -1.0
    while True:
        now = float(await page.evaluate(PLAYED, name))
        if start < 0:
            start = now
        elif now >= start + 0.5:
            return
        if loop.time() > deadline:
            names = await page.evaluate(NAMES)
            raise AssertionError(f"{name}'s video did not play within {seconds} s ({names})")
        await asyncio.sleep(0.1)


async def arrives(page: Page, track: str, more: int, seconds: float = 8.0) -> None:
    """At least `more` further frames (or packets) of one received track arrive on `page`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    start = await page.evaluate(COUNT, track)
    while (now := await page.evaluate(COUNT, track)) < max(start, 0) + more:
        if loop.time() > deadline:
            raise AssertionError(f"{track}: {start} -> {now} in {seconds} s")
        await asyncio.sleep(0.1)


async def stops(page: Page, track: str, seconds: float = 5.0) -> None:
    """Nothing more of one received track arrives on `page` (gone, or its count stands still
    for half a second once what was on the way has come)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    before = await page.evaluate(COUNT, track)
    while True:
        await asyncio.sleep(0.5)
        now = await page.evaluate(COUNT, track)
        if now == -1 or now == before:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{track} still arrives after {seconds} s: {before} -> {now}")
        before = now


async def publish_hall(
    http: aiohttp.ClientSession, server: LiveServer, meeting_id: str, token: str
) -> tuple[ClientPublisher, str]:
    """OBS's WHIP output, played by aiortc: one offer with every candidate, H.264 + Opus."""
    obs = ClientPublisher(clip(codec="h264"), video_codec="video/H264")
    headers = {"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"}
    async with http.post(
        f"{server.url}/whip/{meeting_id}", data=await obs.offer(), headers=headers
    ) as response:
        answer = await response.text()
        assert response.status == 201, answer
        assert "H264/90000" in answer and "packetization-mode=1" in answer
        await obs.accept(answer)
        return obs, response.headers["Location"]


async def test_the_hall_two_remote_speakers_the_projector_and_a_viewer_given_the_floor(
    live_server: LiveServer,
    voice: list[str],  # noqa: F811 (the fixture)
) -> None:
    meeting = await make_meeting(live_server, title="Расширенное совещание", visibility="public")
    host_token = await invite(live_server, meeting, "Ольга Иванова", "host")
    hall_token = await invite(live_server, meeting, HALL, "speaker")
    anna_token = await invite(live_server, meeting, ANNA, "speaker")
    boris_token = await invite(live_server, meeting, BORIS, "speaker")
    url = live_server.url
    async with aiohttp.ClientSession() as http, chromium(voice) as browser:
        host_tab, anna_tab, boris_tab, projector_tab, viewer_tab = [
            await open_tab(browser) for _ in range(5)
        ]
        tabs = [host_tab, anna_tab, boris_tab, projector_tab, viewer_tab]
        host, projector, viewer = host_tab.page, projector_tab.page, viewer_tab.page

        # The host runs the meeting from the hall's control desk: camera and microphone off.
        await host.goto(f"{url}/j/{host_token}?lang=en")
        await host.locator("#camera-on").uncheck()
        await host.locator("#mic-on").uncheck()
        await host.get_by_role("button", name="Join").click()
        await expect(host.locator("#connection")).to_have_text("Connected")

        # OBS publishes the hall; the host sees and plays it as the roster entry "Зал 1".
        obs, location = await publish_hall(http, live_server, meeting.id, hall_token)
        try:
            await plays(host, HALL)

            # Two heads of schools join from afar as speakers (the host admits them) and speak.
            await enter(anna_tab, f"{url}/j/{anna_token}/room?lang=en", host, "Анна")
            await enter(boris_tab, f"{url}/j/{boris_token}/room?lang=en", host, "Борис")
            # They listen with "Audio only" (a school's thin link; it also spares this machine
            # two video decodes per page, which the test does not look at).
            for tab in (anna_tab, boris_tab):
                await tab.page.locator("#audio-only-toggle").click()
                await expect(tab.page.locator("#audio-only-toggle")).to_have_attribute(
                    "aria-pressed", "true"
                )
            for name in (ANNA, BORIS):
                await plays(host, name)
            for name in (ANNA, BORIS):
                tile = host.locator("#tiles .tile.speaking", has_text=name)
                await expect(tile).to_have_count(1, timeout=8000)

            # The projector plays the two remote speakers with their names and sound, both
            # speaking; never the hall itself.
            await projector.goto(f"{url}/j/{hall_token}/projector")
            # It waits in the lobby as the hall's entry (a speaker) would: the host lets it in.
            waiting = host.locator("#lobby-list .person", has_text="Projector")
            await waiting.get_by_role("button", name="Admit").click()
            await expect(projector.locator("#tiles .tile .tile-name")).to_have_text(
                sorted([ANNA, BORIS])
            )
            for name in (ANNA, BORIS):
                await plays(projector, name)
            await expect(projector.locator("#sounds audio")).to_have_count(2)
            await expect(projector.locator("#tiles .tile.speaking")).to_have_count(2)

            # A viewer watches the stage without a link: the hall and both speakers play.
            await viewer.goto(f"{url}/watch/{meeting.id}?lang=en")
            await viewer.locator("#viewer-name").fill(SERGEY)
            await viewer.get_by_role("button", name="Watch").click()
            for name in (HALL, ANNA, BORIS):
                await plays(viewer, name)
            await expect(viewer.locator("#sounds audio")).to_have_count(3)
            stage = sorted([HALL, ANNA, BORIS])  # the host sends nothing: no tile
            await expect(viewer.locator("#tiles .tile")).to_have_count(3)
            assert await viewer.evaluate(NAMES) == stage
            for control in ("#mic-toggle", "#camera-toggle"):
                await expect(viewer.locator(control)).to_have_count(0)

            # The viewer raises a hand; the host sees it in the people list and gives the floor
            # by making them a speaker.
            await viewer.get_by_role("button", name="Raise hand").click()
            row = host.locator("#people .person", has_text=SERGEY)
            await expect(row.get_by_role("img", name="Hand raised")).to_be_visible()
            await expect(row.locator(".person-role")).to_have_text("Viewer")
            await row.get_by_role("combobox").select_option("speaker")
            await expect(row.locator(".person-role")).to_have_text("Speaker")
            # Given the floor, the raised hand is answered: it comes down by itself.
            await expect(row.get_by_role("img", name="Hand raised")).to_have_count(0)

            # The viewer is told, turns on camera and microphone: the host receives both, and
            # the projector shows them as a remote speaker too (still not the hall).
            await expect(viewer.locator("#speak-notice")).to_be_visible()
            await viewer.get_by_role("button", name="Camera", exact=True).click()
            await viewer.get_by_role("button", name="Microphone", exact=True).click()
            await plays(host, SERGEY)
            await wait_until(host, f"({TRACK_OF})({[SERGEY, 'audio']!r})", 5)
            video = await host.evaluate(TRACK_OF, [SERGEY, "video"])
            audio = await host.evaluate(TRACK_OF, [SERGEY, "audio"])
            await arrives(host, video, 10)
            await arrives(host, audio, 20)
            await expect(row.get_by_role("img", name="Microphone on")).to_be_visible()
            await plays(projector, SERGEY)
            assert await projector.evaluate(NAMES) == sorted([ANNA, BORIS, SERGEY])

            # Made a viewer again: nothing of theirs reaches the host any more, and the page
            # is a viewer's again (no controls, nothing captured), still watching the stage.
            await row.get_by_role("combobox").select_option("viewer")
            await expect(host.locator("#tiles .tile", has_text=SERGEY)).to_have_count(0)
            await stops(host, video)
            await stops(host, audio)
            await expect(row.locator(".person-role")).to_have_text("Viewer")
            await expect(viewer.locator("#speak-notice")).to_have_count(0)
            for control in ("#mic-toggle", "#camera-toggle", "#screen-toggle"):
                await expect(viewer.locator(control)).to_have_count(0)
            local = "window.VecheRoom.state.local"
            assert await viewer.evaluate(f"!{local}.audio && !{local}.video")
            await expect(viewer.get_by_role("button", name="Raise hand")).to_be_visible()
            await expect(viewer.locator("#tiles .tile")).to_have_count(3)
            assert await viewer.evaluate(NAMES) == stage
            await plays(viewer, HALL)
            await expect(projector.locator("#tiles .tile .tile-name")).to_have_text(
                sorted([ANNA, BORIS])
            )
            for tab in tabs:
                tab.assert_clean()
        finally:
            # OBS's "Stop Streaming": the DELETE ends the hall's session.
            bearer = {"Authorization": f"Bearer {hall_token}"}
            async with http.delete(url + location, headers=bearer) as response:
                stopped = response.status
            await obs.close()
        assert stopped == 204


# JS run before the page's own: every capture is kept and comes 0.3 s late, as a slow camera's.
SLOW_CAPTURE = """(() => {
  const devices = navigator.mediaDevices;
  const original = devices.getUserMedia.bind(devices);
  window.captured = [];
  devices.getUserMedia = async (constraints) => {
    const stream = await original(constraints);
    await new Promise((resolve) => setTimeout(resolve, 300));
    window.captured.push(stream);
    return stream;
  };
})()"""


async def test_the_join_page_stops_a_capture_that_was_turned_off_while_it_opened(
    live_server: LiveServer,
) -> None:
    """The host above turns camera and microphone off on the join page as it opens them: the
    captures that come back afterwards must not keep running (once they did, and the level
    meter's loop threw on every frame after "Join")."""
    meeting = await make_meeting(live_server, title="Расширенное совещание")
    token = await invite(live_server, meeting, "Ольга Иванова", "host")
    async with chromium() as browser:
        tab = await open_tab(browser)
        page = tab.page
        await tab.context.add_init_script(SLOW_CAPTURE)
        await page.goto(f"{live_server.url}/j/{token}?lang=en")
        await page.locator("#camera-on").uncheck()  # while the first capture is on its way
        await page.locator("#mic-on").uncheck()
        await wait_until(page, "window.captured.length === 2")  # on opening; the microphone
        await page.wait_for_timeout(100)
        tracks = "window.captured.flatMap((s) => s.getTracks())"
        assert await page.evaluate(f"{tracks}.every((t) => t.readyState === 'ended')")
        assert await page.evaluate("document.getElementById('preview').srcObject === null")
        assert await page.evaluate("document.getElementById('meter-level').style.width") == "0%"
        await page.get_by_role("button", name="Join").click()
        await expect(page.locator("#connection")).to_have_text("Connected")
        local = "window.VecheRoom.state.local"
        assert await page.evaluate(f"!{local}.audio && !{local}.video")
        tab.assert_clean()
