"""Shared fixtures: settings in a temporary data directory and a real server on loopback."""

import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from rooms.store import Store
from server.app import create_app
from server.auth import Tokens
from server.config import Settings, with_secrets
from server.context import STORE, TOKENS
from tests.media_clip import Clip, clip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    port = free_port()
    base = Settings(host="127.0.0.1", port=port, data_dir=tmp_path / "data")
    # A small live programme keeps recording tests light on two cores; the default
    # (1280x720, 30 fps) is what the load tool measures (README, "Performance"). No standby
    # egress process per test server (hundreds of them, most never recording): the tests of
    # the standby turn it on.
    return replace(
        with_secrets(base),
        reconnect_grace=2.0,
        programme_size="640x360",
        programme_fps=25,
        egress_standby=False,
    )


@dataclass
class LiveServer:
    """A running Veche server: its URL, app and the parts tests reach into for set-up."""

    url: str
    app: web.Application
    settings: Settings

    @property
    def store(self) -> Store:
        return self.app[STORE]

    @property
    def tokens(self) -> Tokens:
        return self.app[TOKENS]

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.api_key}"}

    async def api(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """Call the REST API as the admin; returns (status, parsed JSON or text)."""
        headers = {**self.admin_headers(), **kwargs.pop("headers", {})}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, self.url + path, headers=headers, **kwargs) as response,
        ):
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.text()


async def start_server(settings: Settings) -> tuple[LiveServer, web.AppRunner]:
    app = create_app(settings)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    return LiveServer(url=settings.base_url, app=app, settings=settings), runner


@pytest.fixture
async def live_server(settings: Settings) -> AsyncIterator[LiveServer]:
    server, runner = await start_server(settings)
    yield server
    await runner.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Under CI=true a skipped test is a failure: CI must prove everything it claims."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which is not allowed: {report.longrepr}"


@pytest.fixture(scope="session")
def media_clip() -> Clip:
    """The pre-encoded VP8 + Opus clip test publishers send (made once, cached on disk)."""
    return clip()
