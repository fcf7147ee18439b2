"""Two people in real Chromium tabs: the host admits a participant from the lobby panel, the
participant chats and raises a hand, and the host sees both. With VECHE_SCREENSHOTS=<dir> the
test also saves the join and admin pages as PNGs (docs/screenshots/; the room with live video
comes from test_browser_media.py)."""

import os
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.browser import chromium, open_tab, wait_until
from tests.conftest import LiveServer
from tests.sio_client import invite, make_meeting

pytestmark = pytest.mark.browser


async def snapshot(page: Page, name: str) -> None:
    folder = os.environ.get("VECHE_SCREENSHOTS")
    if folder:
        await page.screenshot(path=str(Path(folder) / name))  # creates the folder


async def test_host_admits_from_the_lobby_and_sees_chat_and_hands(
    live_server: LiveServer,
) -> None:
    meeting = await make_meeting(live_server, title="Expanded meeting of school heads")
    host_token = await invite(
        live_server, meeting, "Ольга Иванова", "host", school="Школа № 1", region="Тверь"
    )
    token = await invite(
        live_server, meeting, "Анна Петрова", "participant", school="Школа № 12", region="Ржев"
    )
    async with chromium() as browser:
        host_tab = await open_tab(browser)
        host = host_tab.page
        await host.goto(f"{live_server.url}/j/{host_token}/room?lang=en")
        await expect(host.locator("#people")).to_contain_text("Ольга Иванова")
        await expect(host.locator(".moderation")).to_be_visible()

        guest_tab = await open_tab(browser)
        guest = guest_tab.page
        await guest.goto(f"{live_server.url}/j/{token}?lang=en")
        await wait_until(guest, "document.getElementById('preview').videoWidth > 0")
        await wait_until(
            guest, "parseFloat(document.getElementById('meter-level').style.width) > 0"
        )
        await snapshot(guest, "join.png")
        await guest.get_by_role("button", name="Join").click()
        await expect(guest.locator("#lobby-view")).to_be_visible()

        lobby = host.locator("#lobby-list")
        await expect(lobby).to_contain_text("Анна Петрова")
        await lobby.get_by_role("button", name="Admit").click()
        await expect(guest.locator("#lobby-view")).to_be_hidden()
        await expect(host.locator("#people .person")).to_have_count(2)
        await expect(host.locator("#tiles .tile")).to_have_count(2)

        await guest.locator("#chat-input").fill("Good afternoon! Can you hear me?")
        await guest.get_by_role("button", name="Send").click()
        await expect(host.locator(".chat-text")).to_have_text("Good afternoon! Can you hear me?")
        await host.locator("#chat-input").fill("Yes, Anna, go ahead after the first item.")
        await host.locator("#chat-input").press("Enter")
        await expect(guest.locator(".chat-text")).to_have_count(2)

        await guest.locator("#hand-toggle").click()
        await expect(guest.locator("#hand-toggle")).to_have_attribute("aria-pressed", "true")
        anna = host.locator("#people .person", has_text="Анна Петрова")
        await expect(anna.get_by_role("img", name="Hand raised")).to_be_visible()
        await expect(anna.get_by_role("button", name="Lower hand")).to_be_visible()
        await expect(host.locator(".tile.hand")).to_have_count(1)

        admin_tab = await open_tab(browser)
        admin = admin_tab.page
        await admin.goto(f"{live_server.url}/meetings/{meeting.id}?token={host_token}&lang=en")
        await expect(admin.locator("#live")).to_contain_text("Анна Петрова")
        await snapshot(admin, "admin.png")

        for tab in (host_tab, guest_tab, admin_tab):
            tab.assert_clean()
