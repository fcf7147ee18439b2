"""The viewer page in a real Chromium: a public meeting watched without a link, by name, with a
raised hand the moderator (a python-socketio client) sees, and chat shown read-only; a viewer
given the floor from the host's room page speaks with camera and microphone, and is demoted.
With VECHE_SCREENSHOTS=<dir> the viewer's page with the floor is saved as a PNG."""

from dataclasses import replace

import pytest
from playwright.async_api import expect

from server.config import Settings
from tests.browser import chromium, open_tab, wait_until
from tests.conftest import LiveServer
from tests.sio_client import Client, invite, make_meeting
from tests.test_browser_media import enter, grows, snapshot, tile_video

pytestmark = pytest.mark.browser


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The server gathers its WebRTC candidates on loopback, where the browser is."""
    return replace(settings, rtc_addresses="127.0.0.1")


async def test_anonymous_viewer_watches_a_public_meeting_and_raises_a_hand(
    live_server: LiveServer,
) -> None:
    meeting = await make_meeting(live_server, title="Открытое заседание", visibility="public")
    host_token = await invite(live_server, meeting, "Ольга Иванова", "host")
    host = await Client.open(live_server.url)
    try:
        assert (await host.join(token=host_token))["status"] == "joined"
        assert (await host.call("chat", {"text": "Начинаем через минуту"}))["ok"]
        async with chromium() as browser:
            tab = await open_tab(browser, locale="ru-RU")
            page = tab.page
            await page.goto(f"{live_server.url}/watch/{meeting.id}")
            await page.locator("#viewer-name").fill("Зритель Сергей")
            await page.get_by_role("button", name="Смотреть").click()
            await expect(page.locator("#people")).to_contain_text("Ольга Иванова")
            await expect(page.locator(".chat-text")).to_have_text("Начинаем через минуту")
            await expect(page.locator("#chat-form")).to_be_hidden()  # viewers do not chat
            await expect(page.locator(".broadcast")).to_contain_text("Трансляция")

            await page.get_by_role("button", name="Поднять руку").click()
            hands = await host.until("hands", lambda data: bool(data["hands"]))
            viewer = await host.until("participant_joined", lambda p: p["name"] == "Зритель Сергей")
            assert hands["hands"] == [viewer["id"]] and viewer["role"] == "viewer"
            await expect(page.get_by_role("button", name="Опустить руку")).to_be_visible()
            tab.assert_clean()
    finally:
        await host.close()


async def test_a_viewer_given_the_floor_speaks_and_is_demoted(live_server: LiveServer) -> None:
    meeting = await make_meeting(live_server, title="Открытое заседание", visibility="public")
    host_token = await invite(live_server, meeting, "Ольга Иванова", "host")
    async with chromium() as browser:
        host_tab, viewer_tab = await open_tab(browser), await open_tab(browser, locale="ru-RU")
        host, viewer = host_tab.page, viewer_tab.page
        await enter(host_tab, f"{live_server.url}/j/{host_token}/room?lang=en", None, "")
        await viewer.goto(f"{live_server.url}/watch/{meeting.id}")
        await viewer.locator("#viewer-name").fill("Зритель Сергей")
        await viewer.get_by_role("button", name="Смотреть").click()
        await viewer.get_by_role("button", name="Поднять руку").click()

        # The host sees the raised hand in the participants panel and makes the viewer a speaker.
        row = host.locator("#people .person", has_text="Зритель Сергей")
        await expect(row.get_by_role("img", name="Hand raised")).to_be_visible()
        await expect(row.locator(".person-role")).to_have_text("Viewer")
        await row.get_by_role("combobox").select_option("speaker")

        # The viewer is told and gets the controls; nothing is captured before a click.
        notice = viewer.locator("#speak-notice")
        await expect(notice).to_have_text(
            "Вам дали слово. Включите микрофон или камеру, когда будете готовы."
        )
        camera = viewer.get_by_role("button", name="Камера", exact=True)
        mic = viewer.get_by_role("button", name="Микрофон", exact=True)
        await expect(camera).to_have_attribute("aria-pressed", "false")
        local = "window.VecheRoom.state.local"
        assert await viewer.evaluate(f"!{local}.audio && !{local}.video")
        await camera.click()
        await mic.click()
        await expect(camera).to_have_attribute("aria-pressed", "true")
        await expect(mic).to_have_attribute("aria-pressed", "true")

        # The host plays the new speaker's camera and receives their microphone.
        await wait_until(host, tile_video("Зритель Сергей"), 5)
        await expect(host.locator("#sounds audio")).to_have_count(1)
        assert await grows(host, "frames") and await grows(host, "audio")
        await expect(row.get_by_role("img", name="Microphone on")).to_be_visible()
        await snapshot(viewer, "watch-speaker.png")

        # Demoted: the tracks leave the host's page, the viewer's controls and notice go.
        await row.get_by_role("combobox").select_option("viewer")
        await expect(host.locator("#tiles .tile")).to_have_count(1)  # the host's own
        await expect(host.locator("#sounds audio")).to_have_count(0)
        await expect(notice).to_have_count(0)
        for control in ("#mic-toggle", "#camera-toggle", "#screen-toggle", "#devices-toggle"):
            await expect(viewer.locator(control)).to_have_count(0)
        assert await viewer.evaluate(f"!{local}.audio && !{local}.video")
        for tab in (host_tab, viewer_tab):
            tab.assert_clean()
