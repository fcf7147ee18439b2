"""NOT YET IN THE SUITE (issue 10, item 4): it fails today, and is kept here, outside pytest's
collection, as the reproduction of what is still open. Run it by hand:
    .venv/bin/pytest tests/scenarios/meeting_day.py -s -o log_cli=true --log-cli-level=WARNING
(VECHE_DAY_BUSY=1 adds the busy process during the recording). Seen on 2026-12-07: subscribe
connections "closed by itself" (aiortc's DTLS ended; ICE consent expired on several connections
at once) in a six-browser meeting on this 2-core machine, and the host's view of a presenter's
camera stalling 3-6 s around a share; with the busy process, a presenter's page reconnecting.

Issue 10's "meeting day as one test": a public expanded meeting run as people run it, with
two browser engines in one room and a busy machine while it is recorded.

The host and a moderator (Chromium) enter without waiting; two heads of schools, one in
Chromium and one in Firefox, knock and are admitted by the moderator; the hall station
(Chromium) sends the hall; a member of the public watches. They chat across engines, a head
raises a hand, the moderator spotlights the Firefox head (the viewer then sees them), the
moderator records while a busy process takes a core, both heads share and stop sharing (Firefox
shares a canvas: headless Firefox cannot capture a screen) while the cameras keep flowing, a head
switches camera, the viewer is made a speaker and back, and the host ends the meeting. Then the
recording: ready within a minute of the stop, its own check says (almost) no second lacked a
picture, and the MP4, decoded frame by frame, shows pictures where cameras were sending."""

import asyncio
import logging
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import ImageChops
from playwright.async_api import Page, expect

from recording.renderer import CARD
from server.config import Settings
from server.recordings import programme_path
from tests.browser import Tab, chromium, open_tab, wait_until
from tests.conftest import LiveServer
from tests.firefox import Tab as FirefoxTab
from tests.firefox import firefox
from tests.sio_client import invite, make_meeting

pytestmark = [pytest.mark.browser, pytest.mark.firefox, pytest.mark.timeout(300)]

HOST, MODERATOR = "Ольга Иванова", "Мария Кузнецова"
ANNA, BORIS = "Анна Петрова", "Борис Соколов"  # Chromium, Firefox
HALL, VIEWER = "Зал 1", "Зритель Сергей"
READY_WITHIN = 60.0  # issue 10: a recording is ready within a minute of its stop
PICTURES = 0.99  # issue 10: at least this share of the frames show the pictures that arrived

# Every 20 ms on this page: the decoded frames of `name`'s `source` video; window.flow[key]
# keeps the longest stall since it was first seen (a gap of the sender's pictures).
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
      if (s.type === "inbound-rtp" && s.trackIdentifier === track.id) count = s.framesDecoded || 0;
    const now = performance.now();
    if (count > flow.count) {
      if (flow.seen) flow.gap = Math.max(flow.gap, now - flow.last);
      flow.count = count; flow.last = now; flow.seen = count > 0;
    }
  }, 20);
}"""
GAP = "(key) => Math.max(window.flow[key].gap, performance.now() - window.flow[key].last)"

# Every toast a page shows from now on (an error the person would read).
TOASTS = """() => { window.toasts = [];
  new MutationObserver((changes) => { for (const c of changes) for (const n of c.addedNodes)
    if (n.classList && n.classList.contains('toast')) window.toasts.push(n.textContent); })
  .observe(document.body, {childList: true, subtree: true}); }"""

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

# JS: `name`'s video tile plays on this page (its time moves), -1 without one.
PLAYED = """(name) => {
  const tile = [...document.querySelectorAll('#tiles .tile')]
    .find(t => t.querySelector('.tile-name').textContent === name);
  const video = tile && tile.querySelector('video');
  return video && !video.hidden && video.videoWidth > 0 ? video.currentTime : -1;
}"""
SCREEN_SHOWN = "(document.querySelector('#screen video') || {}).videoWidth > 0"
CONNECTED = "document.getElementById('connection').textContent === 'Connected'"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The server gathers its WebRTC candidates on loopback, where the browsers are."""
    return replace(settings, rtc_addresses="127.0.0.1")


async def plays(page: Page, name: str, seconds: float = 10.0) -> None:
    """`name`'s video is shown on `page` and its time moves on by half a second."""
    deadline = time.monotonic() + seconds
    start = -1.0
    while True:
        now = float(await page.evaluate(PLAYED, name))
        if start < 0:
            start = now
        elif now >= start + 0.5:
            return
        assert time.monotonic() < deadline, f"{name}'s video did not play within {seconds} s"
        await asyncio.sleep(0.1)


async def watch(page: Page, key: str, name: str, source: str = "camera") -> None:
    await page.evaluate(WATCH, [key, name, source])
    await wait_until(page, f"window.flow[{key!r}].seen", 10)


async def gap(page: Page, key: str) -> float:
    return float(await page.evaluate(GAP, key)) / 1000


async def admit(moderator: Page, name: str) -> None:
    entry = moderator.locator("#lobby-list .person", has_text=name)
    await entry.get_by_role("button", name="Admit").click()


async def chromium_shares(presenter: Page, others: list[Page], name: str) -> None:
    await presenter.locator("#screen-toggle").click()
    await expect(presenter.locator("#screen-toggle")).to_have_text("Stop sharing")
    for page in others:
        await expect(page.locator("#screen")).to_contain_text(
            f"{name} is sharing the screen", timeout=10000
        )
        await wait_until(page, SCREEN_SHOWN, 10)
    await presenter.locator("#screen-toggle").click()
    await expect(presenter.locator("#screen-toggle")).to_have_text("Share screen")
    for page in others:
        await expect(page.locator("#screen")).to_be_hidden(timeout=10000)


async def firefox_shares(presenter: FirefoxTab, others: list[Page]) -> None:
    label = "document.querySelector('#screen-toggle span').textContent"
    await presenter.click("#screen-toggle")
    await presenter.wait_for(f"{label} === 'Stop sharing'", 10)
    for page in others:
        await wait_until(page, SCREEN_SHOWN, 10)
    await presenter.click("#screen-toggle")
    await presenter.wait_for(f"{label} === 'Share screen'", 10)
    for page in others:
        await expect(page.locator("#screen")).to_be_hidden(timeout=10000)


def busy_core(seconds: float) -> subprocess.Popen[bytes]:
    """A process that keeps one core busy for at most `seconds` (the test also stops it)."""
    loop = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
    return subprocess.Popen([sys.executable, "-c", loop])


def carded_share(path: Path, after: float, step: int = 3) -> tuple[float, int]:
    """The share of the programme's frames past `after` seconds (every `step`th decoded) that
    show a name card (recording/renderer.py's CARD colour over at least half of the smallest
    tile a meeting of this size gets), and how many frames were looked at."""
    smallest = 0.5 * 208 * 116 / (1280 * 720)  # a strip tile beside a shared screen
    frames = carded = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for n, frame in enumerate(container.decode(stream)):
            if n % step or frame.time is None or frame.time < after:
                continue
            picture = frame.reformat(width=320, height=180, format="rgb24").to_image()
            masks = [
                channel.point(lambda v, c=c: 255 if abs(v - c) <= 6 else 0)
                for channel, c in zip(picture.split(), CARD, strict=True)
            ]
            both = ImageChops.multiply(ImageChops.multiply(masks[0], masks[1]), masks[2])
            frames += 1
            if both.histogram()[255] > smallest * 320 * 180:
                carded += 1
    assert frames, f"{path} has no frames past {after} s"
    return carded / frames, frames


async def test_the_meeting_day_two_engines_a_busy_recording_and_the_audience(
    live_server: LiveServer,
) -> None:
    meeting = await make_meeting(live_server, title="Расширенное совещание", visibility="public")
    tokens = {
        name: await invite(live_server, meeting, name, role)
        for name, role in (
            (HOST, "host"),
            (MODERATOR, "moderator"),
            (ANNA, "participant"),
            (BORIS, "participant"),
            (HALL, "speaker"),
        )
    }
    url = live_server.url
    room = {name: f"{url}/j/{token}/room?lang=en" for name, token in tokens.items()}
    busy: subprocess.Popen[bytes] | None = None
    lags: list[tuple[float, float]] = []

    async def lagmon() -> None:
        t0 = time.monotonic()
        while True:
            a = time.monotonic()
            await asyncio.sleep(0.1)
            lag = time.monotonic() - a - 0.1
            if lag > 0.3:
                lags.append((round(a - t0, 1), round(lag, 2)))

    monitor = asyncio.create_task(lagmon())
    transitions: list[str] = []

    class Transitions(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if "State." in text and ("CLOSED" in text or "FAILED" in text):
                transitions.append(f"{time.monotonic():.1f} {record.name} {text[:160]}")

    watcher = Transitions()
    for name in ("aiortc.rtcdtlstransport", "aiortc.rtcicetransport"):
        logging.getLogger(name).addHandler(watcher)
        logging.getLogger(name).setLevel(
            logging.DEBUG
        )  # the event loop's stalls, printed on failure
    async with chromium() as browser, firefox() as fox:
        host_tab, moderator_tab, anna_tab, hall_tab, viewer_tab = [
            await open_tab(browser) for _ in range(5)
        ]
        chromium_tabs: list[Tab] = [host_tab, moderator_tab, anna_tab, hall_tab, viewer_tab]
        host, moderator, anna = host_tab.page, moderator_tab.page, anna_tab.page
        hall, viewer = hall_tab.page, viewer_tab.page
        boris = await fox.new_tab()
        try:
            # The crew never waits; the heads knock and the moderator lets them in.
            for page, name in ((host, HOST), (moderator, MODERATOR)):
                await page.goto(room[name])
                await expect(page.locator("#connection")).to_have_text("Connected")
            await anna.goto(room[ANNA])
            await boris.goto(room[BORIS])
            await expect(moderator.locator("#lobby-list .person")).to_have_count(2)
            await admit(moderator, "Анна")
            await admit(moderator, "Борис")
            await expect(anna.locator("#connection")).to_have_text("Connected")
            await boris.wait_for(CONNECTED, 10)
            for page in (host, moderator, anna):
                await page.evaluate(TOASTS)
            await boris.evaluate(TOASTS)

            # Each engine sees and plays the other's camera.
            await plays(host, BORIS)
            await plays(anna, BORIS)
            await boris.wait_for(f"({PLAYED})({ANNA!r}) > 0", 10)

            # The hall station sends the hall; like its entry (a speaker), it knocks first.
            await hall.goto(f"{url}/j/{tokens[HALL]}/hall?lang=en")
            await admit(moderator, HALL)
            await expect(hall.locator("#send-toggle")).to_be_enabled()
            await hall.locator("#send-toggle").click()
            await plays(host, HALL)

            # The public watches without a link.
            await viewer.goto(f"{url}/watch/{meeting.id}?lang=en")
            await viewer.locator("#viewer-name").fill(VIEWER)
            await viewer.get_by_role("button", name="Watch").click()
            await expect(viewer.locator("#connection")).to_have_text("Connected")

            # Chat across engines; a raised hand reaches the moderator.
            await boris.fill("#chat-input", "Доклад по пункту 2 готов")
            await boris.evaluate("document.getElementById('chat-form').requestSubmit()")
            for page in (host, anna):
                await expect(page.locator(".chat-text")).to_have_text(["Доклад по пункту 2 готов"])
            await anna.locator("#hand-toggle").click()
            row = moderator.locator("#people .person", has_text=ANNA)
            await expect(row.get_by_role("img", name="Hand raised")).to_be_visible()

            # The moderator spotlights the Firefox head: the viewer sees them on the stage.
            boris_row = moderator.locator("#people .person", has_text=BORIS)
            await boris_row.get_by_role("button", name="Spotlight").click()
            await plays(viewer, BORIS)
            # The moderator runs the meeting with "Audio only", as a desk on a school's link
            # would (it also spares this 2-core machine five video decodes).
            await moderator.locator("#audio-only-toggle").click()
            await expect(moderator.locator("#audio-only-toggle")).to_have_attribute(
                "aria-pressed", "true"
            )

            # A viewer raises a hand, is made a speaker, sends, and is made a viewer again.
            await viewer.get_by_role("button", name="Raise hand").click()
            viewer_row = host.locator("#people .person", has_text=VIEWER)
            await expect(viewer_row.get_by_role("img", name="Hand raised")).to_be_visible()
            await viewer_row.get_by_role("combobox").select_option("speaker")
            await expect(viewer.locator("#speak-notice")).to_be_visible()
            await viewer.get_by_role("button", name="Camera", exact=True).click()
            await plays(host, VIEWER)
            await viewer_row.get_by_role("combobox").select_option("viewer")
            await expect(host.locator("#tiles .tile", has_text=VIEWER)).to_have_count(0)

            # Recording while a busy process takes a core.
            await watch(host, "anna", ANNA)
            await watch(host, "boris", BORIS)
            busy = busy_core(90) if os.environ.get("VECHE_DAY_BUSY") else None
            await moderator.get_by_role("button", name="Start recording").click()
            await expect(host.locator("#rec-indicator")).to_be_visible(timeout=10000)
            await boris.wait_for("!document.getElementById('rec-indicator').hidden", 10)
            recorded_from = time.monotonic()

            steps: dict[str, dict[str, float]] = {}

            async def step(name: str) -> None:
                steps[name] = {key: await gap(host, key) for key in ("anna", "boris")}
                await host.evaluate("Object.values(window.flow).forEach(f => { f.gap = 0; })")

            await step("recording started")
            # Two share cycles, one per engine, while others keep their cameras going.
            try:
                await chromium_shares(anna, [host], ANNA)
            except AssertionError:
                print("DEBUG lags", lags)
                print("DEBUG transitions", *transitions, sep="\n")
                print(
                    "DEBUG people",
                    await host.evaluate(
                        "[...window.VecheRoom.state.participants.values()].map(p => [p.id, p.name])"
                    ),
                )
                print(
                    "DEBUG host",
                    await host.evaluate("""() => { const s = window.VecheRoom.state;
                  return {sub: s.subscriber && s.subscriber.pc.connectionState,
                   ice: s.subscriber && s.subscriber.pc.iceConnectionState,
                   sig: s.subscriber && s.subscriber.pc.signalingState,
                   me: s.me, tracks: s.tracks.map(t => t.participant + '/' + t.source),
                   media: [...s.media.keys()],
                   conn: document.getElementById('connection').textContent}; }"""),
                )
                print(
                    "DEBUG anna",
                    await anna.evaluate("""() => { const s = window.VecheRoom.state;
                  return {pub: s.publisher && s.publisher.pc.connectionState, me: s.me,
                   on: s.on, conn: document.getElementById('connection').textContent,
                   toasts: window.toasts}; }"""),
                )
                raise
            await step("anna shared")
            await boris.evaluate(CANVAS_SCREEN)
            await firefox_shares(boris, [host, anna])
            await step("boris shared")

            # A head switches camera in Devices: her camera keeps reaching the host.
            await anna.locator("#devices-toggle").click()
            select = anna.locator("#devices-menu select[data-kind=video]")
            options = await select.locator("option").evaluate_all("(os) => os.map(o => o.value)")
            chosen = await select.input_value()
            for other in (o for o in options if o != chosen):
                await select.select_option(other)
                break
            await anna.keyboard.press("Escape")
            await asyncio.sleep(1.0)
            await step("anna switched camera")
            print("gaps by step", steps)
            gaps = {key: await gap(host, key) for key in ("anna", "boris")}
            print(f"\nlongest camera gaps at the host during shares and a switch: {gaps}")
            print("transport ends:", *transitions, sep="\n")
            print(
                "people",
                await host.evaluate(
                    "[...window.VecheRoom.state.participants.values()].map(p => [p.id, p.name])"
                ),
            )
            assert all(g <= 1.0 for g in gaps.values()), gaps

            # Recorded for a while; then stopped, and the busy process ends.
            await asyncio.sleep(max(0.0, 20 - (time.monotonic() - recorded_from)))
            moderator.on("dialog", lambda dialog: dialog.accept())
            await moderator.get_by_role("button", name="Stop recording").click()
            stopped = time.monotonic()
            if busy is not None:
                busy.terminate()
                await asyncio.to_thread(busy.wait, 5)

            # The host ends the meeting: every page says so.
            host.on("dialog", lambda dialog: dialog.accept())
            await host.locator("#end-meeting").click()
            for page in (moderator, anna, viewer):
                await expect(page.locator("#end-view")).to_be_visible(timeout=10000)
            await boris.wait_for("!document.getElementById('end-view').hidden", 10)

            for page in (host, moderator, anna):
                assert await page.evaluate("window.toasts") == [], page.url
            assert await boris.evaluate("window.toasts") == []
            for tab in chromium_tabs:
                tab.assert_clean()
            boris.assert_clean()
        finally:
            monitor.cancel()
            if busy is not None and busy.poll() is None:
                busy.kill()
                busy.wait()

    # The recording: ready within a minute of the stop, checked against its tracks.
    recording: dict[str, Any] = {}
    while time.monotonic() - stopped < READY_WITHIN:
        _, listed = await live_server.api("GET", f"/api/recordings?meeting={meeting.id}")
        recording = listed["recordings"][0]
        if recording["status"] in ("ready", "failed"):
            break
        await asyncio.sleep(0.5)
    print(f"recording {recording.get('status')} {time.monotonic() - stopped:.1f} s after the stop")
    assert recording["status"] == "ready", recording
    # The live programme may have fallen short on this busy machine; then the recording was
    # made again from its tracks before it was called ready, and says so.
    quality = recording["quality"]
    print(f"the live programme's check: {quality}")
    assert quality is not None, recording
    assert quality["share"] <= 1 - PICTURES or quality["re_rendered"], quality

    # Frame by frame, the MP4 shows no flat grey card where everyone sends a camera.
    stored = await live_server.store.get_recording(recording["id"])
    assert stored is not None
    path = programme_path(live_server.settings, stored)
    # Everyone recorded sends a camera the whole time (the viewer was a speaker before the
    # recording): past the recorder's first keyframes, no frame may show a card.
    share, frames = await asyncio.to_thread(carded_share, path, 2.0)
    print(f"frames showing a name card: {share:.1%} of {frames}")
    assert share <= 1 - PICTURES, share
