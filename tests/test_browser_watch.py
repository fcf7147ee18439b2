"""The viewer page in a real Chromium: a public meeting watched without a link, by name, with a
raised hand the moderator (a python-socketio client) sees, and chat shown read-only."""

import pytest
from playwright.async_api import expect

from tests.browser import chromium, open_tab
from tests.conftest import LiveServer
from tests.sio_client import Client, invite, make_meeting

pytestmark = pytest.mark.browser


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
