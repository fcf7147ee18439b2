"""A participant in a real Chromium: invite link, join page, lobby, admitted by a moderator (a
python-socketio client), chat both ways with the moderator's HTML shown as plain text."""

import pytest
from playwright.async_api import expect

from rooms.roles import Role
from tests.browser import chromium, open_tab, wait_until
from tests.conftest import LiveServer
from tests.sio_client import Client, invite, make_meeting

pytestmark = pytest.mark.browser

EVIL = "<b>x</b><script>window.pwned = 1</script>"


async def test_participant_waits_in_the_lobby_is_admitted_and_chats(
    live_server: LiveServer,
) -> None:
    meeting = await make_meeting(live_server, title="Совещание директоров")
    host_token = await invite(live_server, meeting, "Ольга Иванова", "host")
    token = await invite(live_server, meeting, "Анна Петрова", "participant", school="Школа 12")
    host = await Client.open(live_server.url)
    try:
        assert (await host.join(token=host_token))["status"] == "joined"
        async with chromium() as browser:
            tab = await open_tab(browser)
            page = tab.page
            await page.goto(f"{live_server.url}/j/{token}?lang=en")
            await expect(page.locator("#name")).to_have_value("Анна Петрова")
            await expect(page.locator("#name")).to_have_attribute("readonly", "")
            # The fake camera plays in the preview and the microphone meter is fed.
            await wait_until(page, "document.getElementById('preview').videoWidth > 0")
            await page.get_by_role("button", name="Join").click()

            await page.wait_for_url(f"**/j/{token}/room")
            lobby = page.locator("#lobby-view")
            await expect(lobby).to_be_visible()
            await expect(lobby).to_contain_text("Waiting for a moderator to let you in")

            waiting = await host.until("lobby_updated", lambda data: bool(data["lobby"]))
            assert waiting["lobby"][0]["name"] == "Анна Петрова"
            assert (await host.call("admit", {"id": waiting["lobby"][0]["id"]}))["ok"]

            await expect(lobby).to_be_hidden()
            people = page.locator("#people")
            await expect(people).to_contain_text("Анна Петрова")
            await expect(people).to_contain_text("Ольга Иванова")
            await expect(page.locator("#connection")).to_have_text("Connected")

            await page.locator("#chat-input").fill("Добрый день, коллеги")
            await page.locator("#chat-input").press("Enter")
            said = await host.until("chat", lambda m: m["text"] == "Добрый день, коллеги")
            assert said["name"] == "Анна Петрова"

            assert (await host.call("chat", {"text": EVIL}))["ok"]
            shown = page.locator(".chat-text", has_text="window.pwned")
            await expect(shown).to_have_text(EVIL)  # the markup arrives as literal text
            assert await page.locator("#chat-log b").count() == 0
            assert await page.locator("#chat-log script").count() == 0
            assert await page.evaluate("window.pwned") is None

            # A reload (or a dropped link) takes the same seat back: no second trip to the lobby.
            seat_before = await page.evaluate(f"sessionStorage.getItem('veche:seat:{token}')")
            assert seat_before
            host.drain()
            await page.reload()
            await expect(page.locator("#connection")).to_have_text("Connected")
            await expect(people).to_contain_text("Ольга Иванова")
            await expect(lobby).to_be_hidden()
            assert not [d for d in host.unread("lobby_updated") if d["lobby"]]
            tab.assert_clean()
    finally:
        await host.close()


async def test_the_page_says_when_it_is_refused_removed_or_the_meeting_ends(
    live_server: LiveServer,
) -> None:
    meeting = await make_meeting(live_server, title="Совещание")
    host_token = await invite(live_server, meeting, "Ольга Иванова", "host")
    first = await invite(live_server, meeting, "Анна Петрова", "participant")
    second = await invite(live_server, meeting, "Пётр Смирнов", "participant")
    host = await Client.open(live_server.url)
    try:
        assert (await host.join(token=host_token))["status"] == "joined"
        async with chromium() as browser:
            anna = (await open_tab(browser)).page
            petr_tab = await open_tab(browser)
            petr = petr_tab.page
            await anna.goto(f"{live_server.url}/j/{first}/room?lang=en")
            await petr.goto(f"{live_server.url}/j/{second}/room?lang=ru")
            waiting = await host.until("lobby_updated", lambda data: len(data["lobby"]) == 2)
            ids = {entry["name"]: entry["id"] for entry in waiting["lobby"]}

            assert (await host.call("deny", {"id": ids["Анна Петрова"]}))["ok"]
            await expect(anna.locator("#end-view")).to_be_visible()
            await expect(anna.locator("#end-title")).to_have_text(
                "The moderator did not let you in"
            )

            assert (await host.call("admit", {"id": ids["Пётр Смирнов"]}))["ok"]
            await expect(petr.locator("#people")).to_contain_text("Ольга Иванова")
            assert (await host.call("end", {}))["ok"]
            await expect(petr.locator("#end-title")).to_have_text("Встреча завершена")
            await expect(petr.locator("#connection")).to_have_text("Отключено")
            petr_tab.assert_clean()
    finally:
        await host.close()


async def test_a_guest_link_asks_for_a_name_and_the_room_uses_it(live_server: LiveServer) -> None:
    meeting = await make_meeting(live_server, title="Совещание")
    host_token = await invite(live_server, meeting, "Ольга Иванова", "host")
    guest = live_server.tokens.guest(meeting.id, Role.PARTICIPANT)
    host = await Client.open(live_server.url)
    try:
        assert (await host.join(token=host_token))["status"] == "joined"
        async with chromium() as browser:
            tab = await open_tab(browser)
            page = tab.page
            # Straight to the room: a guest without a name is sent to the join page first.
            await page.goto(f"{live_server.url}/j/{guest}/room?lang=en")
            await page.wait_for_url(f"**/j/{guest}")
            await page.locator("#name").fill("Гость из Твери")
            await page.get_by_role("button", name="Join").click()
            waiting = await host.until("lobby_updated", lambda data: bool(data["lobby"]))
            assert waiting["lobby"][0]["name"] == "Гость из Твери"
            assert waiting["lobby"][0]["roster"] is False
            assert (await host.call("admit", {"id": waiting["lobby"][0]["id"]}))["ok"]
            await expect(page.locator("#people")).to_contain_text("Гость из Твери (you)")
            tab.assert_clean()
    finally:
        await host.close()
