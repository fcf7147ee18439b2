"""Headless Chromium (Debian's, driven by Playwright) for the browser tests."""

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--use-fake-device-for-media-stream",  # a test pattern and a beep instead of real devices
    "--use-fake-ui-for-media-stream",  # grant camera and microphone without a prompt
    "--allow-loopback-in-peer-connection",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 800}


@asynccontextmanager
async def chromium(extra_args: Sequence[str] = ()) -> AsyncIterator[Browser]:
    """A browser for one test; without /usr/bin/chromium the test skips, or fails under CI.
    `extra_args` add to ARGS, e.g. a sound file for the fake microphone."""
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240 (one stat before a browser starts)
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=[*ARGS, *extra_args]
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Tab:
    """A page in a context of its own (its own cookies and sessionStorage), with the script
    errors it met, so a test can check the page ran cleanly."""

    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.errors, f"the page had script errors: {self.errors}"


async def open_tab(browser: Browser, locale: str = "en-US") -> Tab:
    context = await browser.new_context(viewport=VIEWPORT, locale=locale)  # type: ignore[arg-type]
    page = await context.new_page()
    page.set_default_timeout(5000)
    tab = Tab(context=context, page=page)
    page.on("pageerror", lambda error: tab.errors.append(str(error)))
    page.on(
        "console",
        lambda message: tab.errors.append(message.text) if message.type == "error" else None,
    )
    page.on(
        "response",
        lambda response: (
            tab.errors.append(f"{response.status} {response.url}")
            if response.status >= 400
            else None
        ),
    )
    return tab


async def wait_until(page: Page, expression: str, seconds: float = 5.0) -> None:
    """Poll a JS expression until it is truthy. (page.wait_for_function evaluates strings with
    eval, which the pages' Content-Security-Policy refuses; page.evaluate is not affected.)"""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await page.evaluate(expression):
        if loop.time() > deadline:
            raise AssertionError(f"still false after {seconds} s: {expression}")
        await asyncio.sleep(0.05)
