"""The host's pages in a real Chromium: sign in, create a meeting, add people to the roster and
get their personal links; and the same page opened with a host's invite link."""

import re

import aiohttp
import pytest
from playwright.async_api import expect

from tests.browser import chromium, open_tab
from tests.conftest import LiveServer
from tests.sio_client import invite, make_meeting

pytestmark = pytest.mark.browser


async def test_admin_signs_in_creates_a_meeting_and_adds_a_roster_entry(
    live_server: LiveServer,
) -> None:
    async with chromium() as browser:
        tab = await open_tab(browser, locale="ru-RU")
        page = tab.page
        await page.goto(f"{live_server.url}/meetings")
        await page.wait_for_url("**/login?next=/meetings")
        await page.locator("input[name=key]").fill("wrong")
        await page.get_by_role("button", name="Вход").click()
        await expect(page.get_by_role("alert")).to_have_text("Неверный API-ключ.")
        tab.errors.clear()  # that page's 401 was the point
        await page.locator("input[name=key]").fill(live_server.settings.api_key)
        await page.get_by_role("button", name="Вход").click()
        await page.wait_for_url("**/meetings")

        await page.locator("#create-meeting input[name=title]").fill("Педсовет округа")
        await page.get_by_role("button", name="Создать встречу").click()
        await page.wait_for_url("**/meetings/*")
        await expect(page.locator(".topbar-title")).to_have_text("Педсовет округа")
        [meeting] = await live_server.store.list_meetings()
        assert meeting.title == "Педсовет округа"

        form = page.locator("#add-entry")
        await form.locator("input[name=name]").fill("Иван <Сидоров>")
        await form.locator("select[name=role]").select_option("moderator")
        await form.locator("input[name=school]").fill("Лицей 2")
        await form.get_by_role("button", name="Добавить").click()
        row = page.locator("#roster-rows tr", has_text="Иван <Сидоров>")
        await expect(row).to_have_count(1)
        link = await row.locator("input.link").input_value()
        assert link.startswith(f"{live_server.url}/j/")
        [entry] = await live_server.store.list_roster(meeting.id)
        assert (entry.name, entry.role.value, entry.school) == (
            "Иван <Сидоров>",
            "moderator",
            "Лицей 2",
        )

        # The link it shows is the person's working invitation.
        async with aiohttp.ClientSession() as http, http.get(link + "?lang=en") as response:
            assert response.status == 200
            assert "Иван &lt;Сидоров&gt;" in await response.text()
        tab.assert_clean()


async def test_host_link_opens_the_admin_page_and_adds_people(live_server: LiveServer) -> None:
    meeting = await make_meeting(live_server, title="Expanded meeting")
    host = await invite(live_server, meeting, "Olga Ivanova", "host")
    async with chromium() as browser:
        tab = await open_tab(browser)
        page = tab.page
        await page.goto(f"{live_server.url}/meetings/{meeting.id}?token={host}&lang=en")
        await expect(page.locator("#roster-rows")).to_contain_text("Olga Ivanova")
        form = page.locator("#add-entry")
        await form.locator("input[name=name]").fill("Anna Petrova")
        await form.get_by_role("button", name="Add").click()
        row = page.locator("#roster-rows tr", has_text="Anna Petrova")
        await expect(row.locator("input.link")).to_have_value(
            re.compile(rf"^{live_server.url}/j/[\w.-]+$")
        )
        names = {e.name for e in await live_server.store.list_roster(meeting.id)}
        assert names == {"Olga Ivanova", "Anna Petrova"}

        await row.locator("select").select_option("speaker")
        await expect(page.locator("#notice")).to_have_text("Saved")
        [anna] = [
            e for e in await live_server.store.list_roster(meeting.id) if e.role.value != "host"
        ]
        assert anna.role.value == "speaker"

        page.on("dialog", lambda dialog: dialog.accept())  # "remove from the roster?"
        await row.get_by_role("button", name="Delete").click()
        await expect(row).to_have_count(0)
        names = {e.name for e in await live_server.store.list_roster(meeting.id)}
        assert names == {"Olga Ivanova"}

        await page.get_by_role("button", name="New viewer link").click()
        guest_link = page.locator("#guest-links input.link")
        await expect(guest_link).to_have_value(re.compile(rf"^{live_server.url}/j/"))
        tab.assert_clean()
