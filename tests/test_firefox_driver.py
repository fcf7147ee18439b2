"""The Firefox driver of the browser tests (tests/firefox.py) works: a page of the server loads
beside a Chromium page in the same event loop, scripts return values, fake devices capture,
script errors and failed requests are caught, tabs keep their sessions apart, and Firefox and
its profile are gone afterwards, even when the test fails inside."""

import asyncio
from pathlib import Path

import pytest

from tests.browser import chromium, open_tab
from tests.conftest import LiveServer
from tests.firefox import BiDiError, firefox

pytestmark = [pytest.mark.browser, pytest.mark.firefox]


async def test_firefox_loads_a_page_beside_chromium_and_reports_what_went_wrong(
    live_server: LiveServer,
) -> None:
    async with firefox() as browser, chromium() as other:
        tab, second = await browser.new_tab(), await browser.new_tab()
        chromium_tab = await open_tab(other)
        await asyncio.gather(
            tab.goto(f"{live_server.url}/?lang=en"),
            chromium_tab.page.goto(f"{live_server.url}/?lang=en"),
        )
        title = await tab.evaluate("document.title")
        assert title and title == await chromium_tab.page.title()
        assert await tab.evaluate("([a, b]) => ({sum: a + b, list: [a, null, 's']})", [1, 2]) == {
            "sum": 3,
            "list": [1, None, "s"],
        }
        assert await tab.evaluate("new Promise((r) => setTimeout(() => r(7), 50))") == 7
        assert await tab.evaluate("(() => 8)()") == 8  # an expression, though it starts as one

        # Fake camera and microphone, no prompt.
        kinds = await tab.evaluate(
            "navigator.mediaDevices.getUserMedia({video: true, audio: true})"
            ".then((s) => s.getTracks().map((t) => t.kind).sort())"
        )
        assert kinds == ["audio", "video"]

        # Separate user contexts: sessionStorage set in one tab is not seen in the other.
        await second.goto(f"{live_server.url}/?lang=en")
        await tab.evaluate("sessionStorage.setItem('seat', 'mine')")
        assert await second.evaluate("sessionStorage.getItem('seat')") is None

        # A script that throws raises here; errors of the page and failed requests are kept.
        with pytest.raises(BiDiError, match="no such thing"):
            await tab.evaluate("(() => { throw new Error('no such thing') })()")
        tab.assert_clean()
        await tab.evaluate("setTimeout(() => { throw new Error('broken page') }, 0)")
        await tab.evaluate("fetch('/no-such-page')")
        for _ in range(40):  # the browser reports them as events, a moment later
            if len(tab.errors) >= 2:
                break
            await asyncio.sleep(0.05)
        assert any("broken page" in error for error in tab.errors), tab.errors
        assert any(error.startswith("404 ") for error in tab.errors), tab.errors
        with pytest.raises(AssertionError):
            tab.assert_clean()
        second.assert_clean()
        chromium_tab.assert_clean()


def running(group: int) -> list[int]:
    """The processes of a process group still running (zombies left to a container's init
    that does not reap them are ended, not running)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


async def test_firefox_and_its_profile_are_gone_after_a_failing_test() -> None:
    with pytest.raises(RuntimeError, match="the test failed"):
        async with firefox() as browser:
            pid = browser.process.pid
            profile = browser.profile
            assert (profile / "user.js").exists()
            raise RuntimeError("the test failed")
    assert browser.process.returncode is not None
    assert not running(pid), "processes of Firefox's group are still running"
    assert not profile.exists()


async def test_a_missing_firefox_skips_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.firefox.FIREFOX", Path("/nonexistent/firefox-esr"))
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="apt-get install firefox-esr"):
        async with firefox():
            pass
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="firefox-esr is missing"):
        async with firefox():
            pass
