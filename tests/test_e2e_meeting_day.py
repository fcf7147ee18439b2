"""Issue 2's "done when", as people do it in browsers: the admin signs in, creates a meeting and
invites a host and two heads of schools; all three open their links; the host admits both from the
lobby; they chat and raise hands; the host promotes one and removes the other; the admin exports
attendance as CSV, which names all three and closes the removed person's stay."""

import csv
import io
from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.browser import Tab, chromium, open_tab
from tests.conftest import LiveServer

pytestmark = pytest.mark.browser


async def add_to_roster(admin: Page, name: str, role: str, school: str) -> str:
    form = admin.locator("#add-entry")
    await form.locator("input[name=name]").fill(name)
    await form.locator("select[name=role]").select_option(role)
    await form.locator("input[name=school]").fill(school)
    await form.get_by_role("button", name="Add").click()
    row = admin.locator("#roster-rows tr", has_text=name)
    await expect(row).to_have_count(1)
    return await row.locator("input.link").input_value()


async def enter_through_lobby(tab: Tab, link: str) -> None:
    await tab.page.goto(link + "?lang=en")
    await tab.page.get_by_role("button", name="Join").click()
    await expect(tab.page.locator("#lobby-view")).to_be_visible()


async def test_a_meeting_from_invitation_to_attendance(
    live_server: LiveServer, tmp_path: Path
) -> None:
    async with chromium() as browser:
        admin_tab = await open_tab(browser)
        admin = admin_tab.page
        await admin.goto(f"{live_server.url}/login?lang=en")
        await admin.locator("input[name=key]").fill(live_server.settings.api_key)
        await admin.get_by_role("button", name="Sign in").click()
        await admin.wait_for_url("**/meetings")
        await admin.locator("#create-meeting input[name=title]").fill("Expanded meeting")
        await admin.get_by_role("button", name="Create meeting").click()
        await admin.wait_for_url("**/meetings/*")

        host_link = await add_to_roster(admin, "Olga Ivanova", "host", "School 1")
        anna_link = await add_to_roster(admin, "Anna Petrova", "participant", "School 12")
        boris_link = await add_to_roster(admin, "Boris Orlov", "participant", "Lyceum 3")

        host_tab, anna_tab, boris_tab = [await open_tab(browser) for _ in range(3)]
        host, anna, boris = host_tab.page, anna_tab.page, boris_tab.page
        await host.goto(host_link + "/room?lang=en")  # a host never waits
        await expect(host.locator("#people")).to_contain_text("Olga Ivanova")
        await enter_through_lobby(anna_tab, anna_link)
        await enter_through_lobby(boris_tab, boris_link)

        lobby = host.locator("#lobby-list")
        await expect(lobby.locator("li")).to_have_count(2)
        for name in ("Anna Petrova", "Boris Orlov"):
            await lobby.locator("li", has_text=name).get_by_role("button", name="Admit").click()
        for page in (anna, boris):
            await expect(page.locator("#lobby-view")).to_be_hidden()
        await expect(host.locator("#people .person")).to_have_count(3)

        await anna.locator("#chat-input").fill("Report on item 2 is ready")
        await anna.locator("#chat-input").press("Enter")
        for page in (host, boris):
            await expect(page.locator(".chat-text")).to_have_text(["Report on item 2 is ready"])

        await boris.locator("#hand-toggle").click()
        await anna.locator("#hand-toggle").click()
        # The participants panel lists raised hands first, in the order they were raised.
        people = host.locator("#people .person .person-name")
        await expect(people).to_have_text(["Olga Ivanova (you)", "Boris Orlov", "Anna Petrova"])

        row = host.locator("#people .person", has_text="Anna Petrova")
        await row.get_by_role("combobox").select_option("speaker")
        await expect(
            anna.locator("#people .person", has_text="Anna Petrova (you)")
        ).to_contain_text("Speaker")

        host.once("dialog", lambda dialog: dialog.accept())
        row = host.locator("#people .person", has_text="Boris Orlov")
        await row.get_by_role("button", name="Remove").click()
        await expect(boris.locator("#end-view")).to_be_visible()
        await expect(host.locator("#people .person")).to_have_count(2)
        await expect(anna.locator("#people .person")).to_have_count(2)

        await admin.reload()
        await expect(admin.locator("#attendance")).to_contain_text("Boris Orlov")
        async with admin.expect_download() as download_info:
            await admin.locator("#attendance-csv").click()
        download = await download_info.value
        saved = tmp_path / "attendance.csv"
        await download.save_as(saved)
        rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8-sig"))))
        stays = {row["name"]: row for row in rows}
        assert set(stays) == {"Olga Ivanova", "Anna Petrova", "Boris Orlov"}
        assert stays["Boris Orlov"]["left_at"], "the removed person's stay is closed"
        assert not stays["Anna Petrova"]["left_at"], "Anna is still in the meeting"
        assert stays["Anna Petrova"]["school"] == "School 12"

        for tab in (admin_tab, host_tab, anna_tab, boris_tab):
            tab.assert_clean()
