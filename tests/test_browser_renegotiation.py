"""Renegotiation in real Chromium pages never breaks what runs: a presenter shares and stops
ten times, turns the camera and microphone off and on, switches devices and shares with the
camera off, and the others keep receiving every running track without a gap; the presenter
sees no error; a second sharer is refused with a clear message while the first goes on.

Prints the figure of docs/media.md: the longest gap of the presenter's camera frames at the
other end across ten share cycles (and asserts it is at most 1 s)."""

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from playwright.async_api import Page, expect

from server.config import Settings
from tests.browser import Tab, chromium, open_tab, wait_until
from tests.conftest import LiveServer
from tests.firefox import firefox
from tests.sio_client import invite, make_meeting

pytestmark = pytest.mark.browser

# Watches `name`'s `source` track at this page: every 20 ms, the decoded frames (video) or
# received packets (audio) of its inbound stream; window.flow[key] keeps the longest time
# without progress since the last reset and whether the track was ever received.
WATCH = """([key, name, source]) => {
  window.flow = window.flow || {};
  const flow = window.flow[key] = {gap: 0, last: 0, count: -1, seen: false};
  setInterval(async () => {
    const state = window.VecheRoom.state;
    const person = [...state.participants.values()].find(p => p.name === name);
    const info = person &&
      state.tracks.find(t => t.participant === person.id && t.source === source);
    const track = info && state.media.get(info.id);
    if (!track || !state.subscriber) return;
    let count = 0;
    for (const s of (await state.subscriber.pc.getStats()).values())
      if (s.type === "inbound-rtp" && s.trackIdentifier === track.id)
        count = s.kind === "video" ? (s.framesDecoded || 0) : (s.packetsReceived || 0);
    const now = performance.now();
    if (count > flow.count) {
      if (flow.seen) flow.gap = Math.max(flow.gap, now - flow.last);
      flow.count = count; flow.last = now; flow.seen = count > 0;
    }
  }, 20);
}"""

FLOW = """(key) => { const f = window.flow[key];
  return {gap: Math.max(f.gap, performance.now() - f.last), seen: f.seen}; }"""

# Every toast the page shows from now on.
TOASTS = """() => { window.toasts = [];
  new MutationObserver((changes) => { for (const c of changes) for (const n of c.addedNodes)
    if (n.classList && n.classList.contains('toast')) window.toasts.push(n.textContent); })
  .observe(document.body, {childList: true, subtree: true}); }"""

SCREEN_SHOWN = "(document.querySelector('#screen video') || {}).videoWidth > 0"
SECTIONS = "window.VecheRoom.state.publisher.pc.getTransceivers().length"

# The screen's transceiver stopped, and an offer that says so.
STOP_TRANSCEIVER = """async () => {
  const publisher = window.VecheRoom.state.publisher;
  const transceiver = publisher.sections.get("screen");
  publisher.sections.delete("screen");
  for (const track of window.VecheRoom.state.local.screen.getTracks()) track.stop();
  transceiver.stop();
  await publisher.negotiate(() => {});
}"""


# Headless Firefox cannot capture a screen: its share path gets a changing canvas instead.
CANVAS_SCREEN = """() => {
  navigator.mediaDevices.getDisplayMedia = async () => {
    const canvas = Object.assign(document.createElement("canvas"), {width: 640, height: 360});
    const paint = canvas.getContext("2d");
    let n = 0;
    const timer = setInterval(() => {
      paint.fillStyle = `hsl(${(n += 7) % 360}, 80%, 50%)`;
      paint.fillRect(0, 0, 640, 360);
    }, 40);
    const stream = canvas.captureStream(25);
    stream.getVideoTracks()[0].addEventListener("ended", () => clearInterval(timer));
    return stream;
  };
}"""


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The server gathers its WebRTC candidates on loopback, where the browsers are."""
    return replace(settings, rtc_addresses="127.0.0.1")


async def enter(tab: Tab, url: str, host: Page | None, name: str) -> None:
    await tab.page.goto(url)
    if host is not None:
        entry = host.locator("#lobby-list .person", has_text=name)
        await entry.get_by_role("button", name="Admit").click()
    await expect(tab.page.locator("#connection")).to_have_text("Connected")


async def flow(page: Page, key: str) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(FLOW, key)
    return result


async def watch(page: Page, key: str, name: str, source: str) -> None:
    await page.evaluate(WATCH, [key, name, source])
    await wait_until(page, f"window.flow[{key!r}].seen", 5)


async def meeting_of_two(live_server: LiveServer) -> tuple[str, str]:
    meeting = await make_meeting(live_server, title="Expanded meeting of school heads")
    host = await invite(live_server, meeting, "Ольга Иванова", "host")
    anna = await invite(live_server, meeting, "Анна Петрова", "participant")
    return f"{live_server.url}/j/{host}/room?lang=en", f"{live_server.url}/j/{anna}/room?lang=en"


async def share(presenter: Page, viewer: Page, name: str) -> None:
    await presenter.locator("#screen-toggle").click()
    await expect(presenter.locator("#screen-toggle")).to_have_text("Stop sharing")
    await expect(viewer.locator("#screen")).to_contain_text(f"{name} is sharing the screen")
    await wait_until(viewer, SCREEN_SHOWN, 5)


async def stop_sharing(presenter: Page, viewer: Page) -> None:
    await presenter.locator("#screen-toggle").click()
    await expect(presenter.locator("#screen-toggle")).to_have_text("Share screen")
    await expect(viewer.locator("#screen")).to_be_hidden()


async def test_ten_share_cycles_never_stop_the_others_frames(live_server: LiveServer) -> None:
    host_url, anna_url = await meeting_of_two(live_server)
    async with chromium() as browser:
        host_tab, anna_tab = await open_tab(browser), await open_tab(browser)
        host, anna = host_tab.page, anna_tab.page
        await enter(host_tab, host_url, None, "")
        await enter(anna_tab, anna_url, host, "Анна")
        await watch(host, "camera", "Анна Петрова", "camera")
        await watch(host, "mic", "Анна Петрова", "microphone")
        await anna.evaluate(TOASTS)
        for _ in range(10):
            await share(anna, host, "Анна Петрова")
            await stop_sharing(anna, host)
        camera, mic = await flow(host, "camera"), await flow(host, "mic")
        print(
            f"\n10 share cycles: longest gap of the presenter's camera frames at the other end "
            f"{camera['gap'] / 1000:.2f} s, of her microphone packets {mic['gap'] / 1000:.2f} s"
        )
        assert camera["gap"] <= 1000 and mic["gap"] <= 1000
        assert await anna.evaluate("window.toasts") == []
        # The stopped share's section waits for the next one: the m-lines do not pile up.
        assert await anna.evaluate(SECTIONS) == 3
        # No dead tile: the host sees Anna's camera and no screen.
        await expect(host.locator("#tiles .tile[data-track]")).to_have_count(1)

        # A page that stops its share's transceiver (as this one did before, and other
        # clients may): the server answers the stopped section with port 0 outside the
        # BUNDLE group, which the browser takes, and the next share reuses its m-line.
        await share(anna, host, "Анна Петрова")
        await anna.evaluate(STOP_TRANSCEIVER)
        await expect(host.locator("#screen")).to_be_hidden()
        await anna.evaluate("window.VecheRoom.state.on.screen = false")
        await anna.evaluate("window.VecheRoom.state.local.screen = null")
        await share(anna, host, "Анна Петрова")
        # A section stopped and its m-line taken by a new mid is the rarer path (pages that stop
        # transceivers): the camera goes on, within 2 s (1.4 s seen once in CI on 2 cores).
        assert (await flow(host, "camera"))["gap"] <= 2000
        assert await anna.evaluate("window.toasts") == []
        for tab in (host_tab, anna_tab):
            tab.assert_clean()


async def test_camera_microphone_devices_and_a_share_with_the_camera_off(
    live_server: LiveServer,
) -> None:
    host_url, anna_url = await meeting_of_two(live_server)
    async with chromium() as browser:
        host_tab, anna_tab = await open_tab(browser), await open_tab(browser)
        host, anna = host_tab.page, anna_tab.page
        await enter(host_tab, host_url, None, "")
        await enter(anna_tab, anna_url, host, "Анна")
        await watch(host, "mic", "Анна Петрова", "microphone")
        await anna.evaluate(TOASTS)
        camera, mic = anna.locator("#camera-toggle"), anna.locator("#mic-toggle")

        # The camera off, a share, the share stopped, the camera on again.
        await camera.click()
        await expect(camera).to_have_attribute("aria-pressed", "false")
        await share(anna, host, "Анна Петрова")
        await stop_sharing(anna, host)
        await camera.click()
        await expect(camera).to_have_attribute("aria-pressed", "true")
        await watch(host, "camera", "Анна Петрова", "camera")

        # The microphone off and on; the camera switched in Devices, then the microphone.
        await mic.click()
        await expect(mic).to_have_attribute("aria-pressed", "false")
        await mic.click()
        await expect(mic).to_have_attribute("aria-pressed", "true")
        await watch(host, "mic", "Анна Петрова", "microphone")
        await anna.locator("#devices-toggle").click()
        for kind in ("video", "audio"):
            select = anna.locator(f"#devices-menu select[data-kind={kind}]")
            options = await select.locator("option").evaluate_all("(os) => os.map(o => o.value)")
            chosen = await select.input_value()
            others = [o for o in options if o != chosen]
            if others:
                await select.select_option(others[0])
        await anna.keyboard.press("Escape")
        # A share after all that still goes out, with the camera and microphone beside it.
        await share(anna, host, "Анна Петрова")
        await asyncio.sleep(1.0)
        for key in ("camera", "mic"):
            now = await flow(host, key)
            assert now["gap"] <= 1000, (key, now)
        await stop_sharing(anna, host)
        assert await anna.evaluate("window.toasts") == []
        assert await anna.evaluate(SECTIONS) == 3
        for tab in (host_tab, anna_tab):
            tab.assert_clean()


async def test_a_second_sharer_is_refused_with_a_clear_message(live_server: LiveServer) -> None:
    host_url, anna_url = await meeting_of_two(live_server)
    async with chromium() as browser:
        host_tab, anna_tab = await open_tab(browser), await open_tab(browser)
        host, anna = host_tab.page, anna_tab.page
        await enter(host_tab, host_url, None, "")
        await enter(anna_tab, anna_url, host, "Анна")
        await watch(host, "camera", "Анна Петрова", "camera")
        await share(host, anna, "Ольга Иванова")
        await anna.locator("#screen-toggle").click()
        await expect(anna.locator(".toast", has_text="Someone else is sharing")).to_be_visible()
        await expect(anna.locator("#screen-toggle")).to_have_text("Share screen")
        # The first share goes on; Anna's camera never stopped.
        await expect(anna.locator("#screen")).to_contain_text("Ольга Иванова is sharing")
        assert (await flow(host, "camera"))["gap"] <= 1000
        # Once the host stops, Anna's share goes out on the section she had.
        await stop_sharing(host, anna)
        await share(anna, host, "Анна Петрова")
        assert await anna.evaluate(SECTIONS) == 3
        host_tab.assert_clean()


async def test_the_hall_station_mutes_switches_devices_and_sends_again(
    live_server: LiveServer,
) -> None:
    meeting = await make_meeting(live_server, title="Совещание", settings={"lobby": False})
    host_token = await invite(live_server, meeting, "Ольга Иванова", "host")
    hall_token = await invite(live_server, meeting, "Зал 1", "speaker")
    async with chromium() as browser:
        host_tab, station_tab = await open_tab(browser), await open_tab(browser)
        host, station = host_tab.page, station_tab.page
        await enter(host_tab, f"{live_server.url}/j/{host_token}/room?lang=en", None, "")
        await station.goto(f"{live_server.url}/j/{hall_token}/hall?lang=en")
        send = station.locator("#send-toggle")
        await expect(send).to_be_enabled()
        await wait_until(station, "document.getElementById('preview').videoWidth > 0")
        await station.evaluate(TOASTS)
        await send.click()
        await watch(host, "camera", "Зал 1", "camera")
        await watch(host, "mic", "Зал 1", "microphone")

        # Muted and unmuted; another camera and microphone chosen: the hall's camera never
        # stops at the other end, its microphone comes back.
        mute = station.locator("#mute-toggle")
        await mute.click()
        await asyncio.sleep(0.3)
        await mute.click()
        for kind in ("camera", "mic"):
            select = station.locator(f"#{kind}-select")
            options = await select.locator("option").evaluate_all("(os) => os.map(o => o.value)")
            chosen = await select.input_value()
            others = [o for o in options if o != chosen]
            if others:
                await select.select_option(others[0])
        await asyncio.sleep(1.0)
        assert (await flow(host, "camera"))["gap"] <= 1000
        await watch(host, "mic", "Зал 1", "microphone")

        # Stop and send again: the hall comes back on a new connection.
        await send.click()
        await expect(host.locator("#tiles .tile", has_text="Зал 1").locator("video")).to_be_hidden()
        await send.click()
        await watch(host, "camera", "Зал 1", "camera")
        assert await station.evaluate("window.toasts") == []
        for tab in (host_tab, station_tab):
            tab.assert_clean()


@pytest.mark.firefox
async def test_firefox_shares_stops_and_stops_a_transceiver_without_a_gap(
    live_server: LiveServer,
) -> None:
    """Firefox's offers (bundle-only sections; a stopped section without ICE, setup or
    rtcp-mux) keep its camera going to a Chromium host through share cycles."""
    host_url, anna_url = await meeting_of_two(live_server)
    async with chromium() as browser, firefox() as fox:
        host_tab = await open_tab(browser)
        host = host_tab.page
        anna = await fox.new_tab()
        await enter(host_tab, host_url, None, "")
        await anna.goto(anna_url)
        await anna.wait_for("!document.getElementById('lobby-view').hidden", 5)
        await (
            host.locator("#lobby-list .person", has_text="Анна")
            .get_by_role("button", name="Admit")
            .click()
        )
        await anna.wait_for("document.getElementById('connection').textContent === 'Connected'")
        await anna.evaluate(CANVAS_SCREEN)
        await anna.evaluate(TOASTS)
        await watch(host, "camera", "Анна Петрова", "camera")
        toggle = "document.querySelector('#screen-toggle span').textContent"
        for _ in range(2):
            await anna.click("#screen-toggle")
            await anna.wait_for(f"{toggle} === 'Stop sharing'")
            await wait_until(host, SCREEN_SHOWN, 5)
            await anna.click("#screen-toggle")
            await anna.wait_for(f"{toggle} === 'Share screen'")
            await expect(host.locator("#screen")).to_be_hidden()
        # A stopped transceiver, then a share on its m-line under a new mid.
        await anna.click("#screen-toggle")
        await wait_until(host, SCREEN_SHOWN, 5)
        await anna.evaluate(STOP_TRANSCEIVER)
        await expect(host.locator("#screen")).to_be_hidden()
        await anna.evaluate("window.VecheRoom.state.on.screen = false")
        await anna.evaluate("window.VecheRoom.state.local.screen = null")
        await anna.click("#screen-toggle")
        await wait_until(host, SCREEN_SHOWN, 5)
        camera = await flow(host, "camera")
        print(f"\nFirefox share cycles: longest camera gap at the host {camera['gap'] / 1e3:.2f} s")
        assert camera["gap"] <= 1000
        assert await anna.evaluate("window.toasts") == []
        host_tab.assert_clean()
        anna.assert_clean()
