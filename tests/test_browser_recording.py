"""Recording as people meet it in a real Chromium: the playback page plays the programme and a
chapter click seeks there; a moderator starts recording from the room, and the room and the
viewer page show the REC indicator and the meeting's notice until it stops.
With VECHE_SCREENSHOTS=<dir> the playback page and the recorded room are saved as PNGs."""

from dataclasses import replace
from pathlib import Path

import pytest
from playwright.async_api import expect

from rooms.meeting import MeetingSettings
from rooms.recordings import RecordingStatus
from server.config import Settings
from tests.browser import chromium, open_tab, wait_until
from tests.conftest import LiveServer
from tests.sio_client import invite, make_meeting
from tests.test_browser_media import snapshot
from tests.test_pages import admin_cookie
from tests.test_recording_pages import add_recording, recorded_programme

pytestmark = pytest.mark.browser

VIDEO = "document.getElementById('programme')"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The server gathers its WebRTC candidates on loopback, where the browser is."""
    return replace(settings, rtc_addresses="127.0.0.1")


async def test_the_playback_page_plays_and_a_chapter_click_seeks_there(
    live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    meeting = await make_meeting(live_server, title="Открытое заседание", visibility="public")
    rec = await add_recording(live_server, meeting, recorded_programme(tmp_path_factory))
    async with chromium() as browser:
        tab = await open_tab(browser, locale="ru-RU")
        page = tab.page
        ranges: list[int] = []
        page.on(
            "response",
            lambda response: ranges.append(response.status) if "/file" in response.url else None,
        )
        await page.goto(f"{live_server.url}/recordings/{rec.id}")
        await wait_until(page, f"{VIDEO}.readyState >= 1 && {VIDEO}.videoWidth === 640")
        chapters = page.locator("#chapter-list button.chapter")
        await expect(chapters).to_have_count(3)
        await expect(chapters.nth(0)).to_contain_text("0:00")
        await expect(chapters.nth(0)).to_contain_text("Анна")

        # It plays: the clock advances (muted, as a page may not start sound by itself).
        await page.evaluate(f"{VIDEO}.muted = true; {VIDEO}.play()")
        await wait_until(page, f"{VIDEO}.currentTime > 0.5")

        # A chapter click seeks there and keeps playing; the chapter is marked as current.
        vera = chapters.filter(has_text="Vera")
        await vera.click()
        await wait_until(page, f"{VIDEO}.currentTime >= 4.4 && !{VIDEO}.seeking")
        assert await page.evaluate(f"{VIDEO}.currentTime") < 6.0
        await expect(vera).to_have_attribute("aria-current", "true")
        await wait_until(page, f"!{VIDEO}.paused && {VIDEO}.currentTime > 4.6")
        assert 206 in ranges, "the browser fetched the programme in ranges"

        boris = chapters.filter(has_text="Boris")
        await boris.click()
        await wait_until(page, f"{VIDEO}.currentTime >= 2.5 && !{VIDEO}.seeking")
        await page.evaluate(f"{VIDEO}.pause()")
        await expect(boris).to_have_attribute("aria-current", "true")
        await expect(page.get_by_role("link", name="Скачать MP4")).to_have_attribute(
            "href", f"/api/recordings/{rec.id}/file?download=1"
        )
        await snapshot(page, "recording-playback.png")
        tab.assert_clean()


async def test_the_room_and_the_viewer_page_show_that_the_meeting_is_recorded(
    live_server: LiveServer, tmp_path: Path
) -> None:
    notice = "Заседание записывается и будет опубликовано на сайте сети школ."
    meeting = await make_meeting(live_server, title="Расширенное совещание", visibility="public")
    meeting = replace(meeting, settings=MeetingSettings(recording_notice=notice))
    await live_server.store.update_meeting(meeting)
    host_token = await invite(live_server, meeting, "Ольга Иванова", "host")
    async with chromium() as browser:
        host_tab, viewer_tab = await open_tab(browser, locale="ru-RU"), await open_tab(browser)
        host, viewer = host_tab.page, viewer_tab.page
        await host.goto(f"{live_server.url}/j/{host_token}/room?lang=ru")
        await expect(host.locator("#connection")).to_have_text("Подключено")
        await viewer.goto(f"{live_server.url}/watch/{meeting.id}?lang=en")
        await viewer.locator("#viewer-name").fill("Viewer Sergey")
        await viewer.get_by_role("button", name="Watch").click()
        await expect(viewer.locator("#connection")).to_have_text("Connected")
        await expect(viewer.locator("#rec-indicator")).to_be_hidden()
        await expect(viewer.locator("#record-toggle")).to_be_hidden()  # viewers do not record

        start = host.get_by_role("button", name="Начать запись")
        await start.click()
        for page, indicator in ((host, "● Запись"), (viewer, "● REC")):
            await expect(page.locator("#rec-indicator")).to_be_visible()
            await expect(page.locator("#rec-indicator")).to_have_text(indicator)
            await expect(page.locator("#recording-banner")).to_contain_text(notice)
        stop = host.get_by_role("button", name="Остановить запись")
        await expect(stop).to_have_attribute("aria-pressed", "true")
        await snapshot(host, "room-recording.png")

        # The notice can be closed; the indicator stays while recording goes on.
        await viewer.get_by_role("button", name="Hide").click()
        await expect(viewer.locator("#recording-banner")).to_be_hidden()
        await expect(viewer.locator("#rec-indicator")).to_be_visible()

        # Someone who joins while it records is told too (the `joined` snapshot).
        late_tab = await open_tab(browser)
        await late_tab.page.goto(f"{live_server.url}/watch/{meeting.id}?lang=en")
        await late_tab.page.locator("#viewer-name").fill("Late Viewer")
        await late_tab.page.get_by_role("button", name="Watch").click()
        await expect(late_tab.page.locator("#rec-indicator")).to_be_visible()
        await expect(late_tab.page.locator("#recording-banner")).to_contain_text(notice)

        # Starting again while it records is refused with the server's reason (the ack).
        started = await host.evaluate(
            "new Promise((done) => VecheRoom.socket.emit('recording_start', {}, done))"
        )
        assert started["error"]["code"] == "already_recording"

        host.on("dialog", lambda dialog: dialog.accept())
        await stop.click()
        for page in (host, viewer, late_tab.page):
            await expect(page.locator("#rec-indicator")).to_be_hidden(timeout=15000)
        await expect(start).to_be_visible()
        for tab in (host_tab, viewer_tab, late_tab):
            tab.assert_clean()


async def test_the_recordings_list_keeps_deletes_and_follows_a_render(
    live_server: LiveServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    meeting = await make_meeting(live_server, title="Педсовет")
    ready = await add_recording(live_server, meeting, recorded_programme(tmp_path_factory))
    rendering = await add_recording(
        live_server, meeting, status=RecordingStatus.RENDERING, progress=40
    )
    failed = await add_recording(
        live_server, meeting, status=RecordingStatus.FAILED, error="no readable track"
    )
    async with chromium() as browser:
        tab = await open_tab(browser)
        page = tab.page
        cookie = await admin_cookie(live_server)
        await tab.context.add_cookies(
            [{"name": k, "value": v, "url": live_server.url} for k, v in cookie.items()]
        )
        await page.goto(f"{live_server.url}/meetings/{meeting.id}?lang=en")
        await page.locator("#recordings-link").click()
        rows = page.locator("#recording-rows tr")
        await expect(rows).to_have_count(3)
        row = rows.filter(has=page.locator(f'a[href="/recordings/{rendering.id}"]'))
        await expect(row.locator(".status")).to_have_text("Rendering 40 %")

        # The page follows an unfinished recording until it is ready.
        await live_server.store.update_recording(
            replace(
                rendering,
                status=RecordingStatus.READY,
                progress=None,
                duration=65.0,
                size=2_500_000,
            )
        )
        await expect(row.locator(".status")).to_have_text("Ready", timeout=6000)
        await expect(row.locator(".rec-duration")).to_have_text("1:05")
        await expect(row.locator(".rec-size")).to_have_text("2.5 MB")

        first = rows.filter(has=page.locator(f'a[href="/recordings/{ready.id}"]'))
        await expect(first.locator(".rec-expires")).to_contain_text("until Dec 20, 2026")
        await first.locator("input.rec-keep").check()
        await expect(first.locator(".rec-expires")).to_be_empty()  # kept: it does not expire
        kept = await live_server.store.get_recording(ready.id)
        assert kept is not None and kept.keep
        await snapshot(page, "recordings.png")

        broken = rows.filter(has=page.locator(f'a[href="/recordings/{failed.id}"]'))
        await expect(broken.locator(".rec-error")).to_have_text("no readable track")
        await expect(broken.get_by_role("button", name="Render again")).to_be_visible()
        page.on("dialog", lambda dialog: dialog.accept())
        await broken.get_by_role("button", name="Delete").click()
        await expect(rows).to_have_count(2)
        assert await live_server.store.get_recording(failed.id) is None
        tab.assert_clean()
