"""Headless Firefox (Debian's firefox-esr) for the browser tests, driven over WebDriver BiDi
straight from Python: one aiohttp websocket, no browser download, no extra package. It runs
beside Playwright's Chromium in the same asyncio loop.

    async with firefox() as browser:
        tab = await browser.new_tab()
        await tab.goto(url)
        assert await tab.evaluate("document.title") == "..."
        tab.assert_clean()
"""

import asyncio
import base64
import contextlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

FIREFOX = Path("/usr/bin/firefox-esr")

# Fake camera and microphone without a prompt, 127.0.0.1 candidates (without this pref Firefox
# ignores loopback candidates and ICE stays "checking"), plain host candidates for a page that
# captures nothing (a viewer's would be mDNS names), sound without a gesture; the rest keeps a
# test's Firefox quiet and fast: no updates, telemetry, first-run pages or plugin downloads.
PREFS: dict[str, bool | int | str] = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "media.peerconnection.ice.loopback": True,
    "media.peerconnection.ice.obfuscate_host_addresses": False,
    "media.autoplay.default": 0,
    "media.autoplay.blocking_policy": 0,
    "media.gmp-manager.updateEnabled": False,
    "media.gmp-manager.url": "",
    "app.update.auto": False,
    "app.update.enabled": False,
    "app.normandy.enabled": False,
    "browser.aboutwelcome.enabled": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.newtabpage.enabled": False,
    "browser.sessionstore.resume_from_crash": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.tabs.warnOnClose": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "datareporting.healthreport.uploadEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "toolkit.startup.max_resumed_crashes": -1,
    "extensions.update.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "dom.disable_open_during_load": False,
}
STARTUP_SECONDS = 30.0
COMMAND_SECONDS = 30.0
LISTENING = re.compile(r"WebDriver BiDi listening on (ws://\S+)")
NOTHING: Any = object()  # no argument given to a script (None is passed as null)
# A script that is a function (called, with its argument) rather than an expression.
FUNCTION = re.compile(r"^\s*(async\s+)?(function\b|\([^()]*\)\s*=>|\w+\s*=>)")


class BiDiError(Exception):
    """A WebDriver BiDi command failed, or a script threw in the page."""


class Firefox:
    """One Firefox process and its BiDi session; tabs opened with `new_tab`."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        profile: Path,
        socket: aiohttp.ClientWebSocketResponse,
    ) -> None:
        self.process = process
        self.profile = profile
        self._socket = socket
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._tabs: dict[str, Tab] = {}
        self._reader = asyncio.create_task(self._read())

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run one BiDi command; its result, or BiDiError with the browser's message."""
        command_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        message = {"id": command_id, "method": method, "params": params or {}}
        try:
            await self._socket.send_str(json.dumps(message))
            return await asyncio.wait_for(future, COMMAND_SECONDS)
        finally:
            self._pending.pop(command_id, None)

    async def _read(self) -> None:
        try:
            async for message in self._socket:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(message.data)
                future = self._pending.get(data.get("id", -1))
                if data.get("type") == "event":
                    self._dispatch(data["method"], data["params"])
                elif future is not None and not future.done():
                    if data.get("type") == "error":
                        error = f"{data.get('error')}: {data.get('message')}"
                        future.set_exception(BiDiError(error))
                    else:
                        future.set_result(data.get("result", {}))
        finally:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BiDiError("the connection to Firefox closed"))

    def _dispatch(self, method: str, params: dict[str, Any]) -> None:
        for listener in self._listeners:
            listener(method, params)
        context = params.get("source", {}).get("context") or params.get("context")
        tab = self._tabs.get(context or "")
        if tab is None:
            return
        if method == "log.entryAdded" and params.get("level") == "error":
            tab.errors.append(params.get("text") or json.dumps(params))
        elif method == "network.responseCompleted":
            status = params["response"]["status"]
            if status >= 400:
                tab.errors.append(f"{status} {params['request']['url']}")

    def on_event(self, listener: Callable[[str, dict[str, Any]], None]) -> None:
        """Call `listener(method, params)` for every BiDi event (log entries, network)."""
        self._listeners.append(listener)

    async def new_tab(self) -> "Tab":
        """A tab in a user context of its own: its own cookies and sessionStorage."""
        user_context = (await self.send("browser.createUserContext"))["userContext"]
        created = await self.send(
            "browsingContext.create", {"type": "tab", "userContext": user_context}
        )
        tab = Tab(browser=self, context=created["context"])
        self._tabs[tab.context] = tab
        return tab

    async def close(self) -> None:
        with contextlib.suppress(BiDiError, ConnectionError, asyncio.TimeoutError):
            await asyncio.wait_for(self.send("browser.close"), 5)
        await self._socket.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@dataclass
class Tab:
    """A page in Firefox, with the script errors and failed requests it met (as tests/browser.py's
    Tab), driven by scripts: JS values come back as Python values."""

    browser: Firefox
    context: str
    errors: list[str] = field(default_factory=list)

    async def goto(self, url: str) -> None:
        await self.browser.send(
            "browsingContext.navigate", {"context": self.context, "url": url, "wait": "complete"}
        )

    async def evaluate(self, script: str, arg: Any = NOTHING) -> Any:
        """The value of a JS expression, or of a function called with `arg` (a JSON-like value,
        as Playwright's page.evaluate takes it, so that one script serves both browsers); a
        promise is awaited. A script that throws raises BiDiError."""
        common = {
            "target": {"context": self.context},
            "awaitPromise": True,
            "resultOwnership": "none",
            "serializationOptions": {"maxObjectDepth": 32},
        }
        if arg is not NOTHING or FUNCTION.match(script):
            arguments = [] if arg is NOTHING else [local_value(arg)]
            params = {"functionDeclaration": script, "arguments": arguments, **common}
            result = await self.browser.send("script.callFunction", params)
        else:
            result = await self.browser.send("script.evaluate", {"expression": script, **common})
        if result["type"] == "exception":
            details = result["exceptionDetails"]
            raise BiDiError(f"{details.get('text')} in: {script[:200]}")
        return python_value(result["result"])

    async def wait_for(self, predicate: str, seconds: float = 5.0, arg: Any = NOTHING) -> Any:
        """Poll a JS expression (or function of `arg`) until it is truthy; its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            value = await self.evaluate(predicate, arg)
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"still false after {seconds} s: {predicate}")
            await asyncio.sleep(0.05)

    async def click(self, selector: str) -> None:
        await self.evaluate(
            "(selector) => { const e = document.querySelector(selector);"
            " if (!e) throw new Error('nothing matches ' + selector); e.click(); }",
            selector,
        )

    async def fill(self, selector: str, value: str) -> None:
        """Type `value` into an input (or choose it in a select), as the page's listeners see."""
        await self.evaluate(
            "([selector, value]) => { const e = document.querySelector(selector);"
            " if (!e) throw new Error('nothing matches ' + selector); e.value = value;"
            " e.dispatchEvent(new Event('input', {bubbles: true}));"
            " e.dispatchEvent(new Event('change', {bubbles: true})); }",
            [selector, value],
        )

    async def screenshot(self, path: Path) -> None:
        """The visible part of the page, as a PNG."""
        shot = await self.browser.send(
            "browsingContext.captureScreenshot", {"context": self.context}
        )
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))

    def assert_clean(self) -> None:
        assert not self.errors, f"the page had script errors: {self.errors}"


def local_value(value: Any) -> dict[str, Any]:
    """A Python value as a BiDi LocalValue (an argument to script.callFunction)."""
    if value is None:
        return {"type": "null"}
    if isinstance(value, bool):
        return {"type": "boolean", "value": value}
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            special = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            return {"type": "number", "value": special}
        return {"type": "number", "value": value}
    if isinstance(value, str):
        return {"type": "string", "value": value}
    if isinstance(value, list | tuple):
        return {"type": "array", "value": [local_value(item) for item in value]}
    if isinstance(value, dict):
        pairs = [[str(key), local_value(item)] for key, item in value.items()]
        return {"type": "object", "value": pairs}
    raise TypeError(f"cannot pass {type(value).__name__} to a page")


def python_value(remote: dict[str, Any]) -> Any:
    """A BiDi RemoteValue as a Python value; nodes, functions and the like as the raw dict."""
    kind = remote["type"]
    value = remote.get("value")
    if kind in ("undefined", "null"):
        return None
    if kind == "number":
        specials = {"NaN": math.nan, "-0": -0.0, "Infinity": math.inf, "-Infinity": -math.inf}
        return specials.get(value, value) if isinstance(value, str) else value
    if kind in ("string", "boolean"):
        return value
    if kind == "bigint":
        return int(value or 0)
    if kind in ("array", "set"):
        return [python_value(item) for item in value or []]
    if kind in ("object", "map"):
        return {
            key if isinstance(key, str) else str(python_value(key)): python_value(item)
            for key, item in value or []
        }
    return remote


def write_profile(folder: Path) -> None:
    lines = [f"user_pref({json.dumps(name)}, {json.dumps(v)});" for name, v in PREFS.items()]
    (folder / "user.js").write_text("\n".join(lines) + "\n")


@asynccontextmanager
async def firefox() -> AsyncIterator[Firefox]:
    """A Firefox for one test; without /usr/bin/firefox-esr the test skips, or fails under CI.
    Firefox is stopped and its profile removed at the end, whatever happened."""
    if not os.path.exists(FIREFOX):  # noqa: ASYNC240 (one stat before a browser starts)
        message = f"{FIREFOX} is missing (apt-get install firefox-esr)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    profile = Path(tempfile.mkdtemp(prefix="veche-firefox-"))
    process: asyncio.subprocess.Process | None = None
    browser: Firefox | None = None
    drain: asyncio.Task[None] | None = None
    log: deque[str] = deque(maxlen=40)
    try:
        write_profile(profile)
        # A session of its own, so that the content processes are stopped with the parent.
        process = await asyncio.create_subprocess_exec(
            str(FIREFOX),
            "--headless",
            "--no-remote",
            "--profile",
            str(profile),
            "--remote-debugging-port=0",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            env={**os.environ, "MOZ_CRASHREPORTER_DISABLE": "1"},
        )
        assert process.stderr is not None
        try:
            address = await asyncio.wait_for(listening(process.stderr, log), STARTUP_SECONDS)
        except TimeoutError as error:
            raise RuntimeError("Firefox did not start: " + "\n".join(log)) from error
        # Firefox keeps writing to stderr: it must be read, or Firefox blocks on a full pipe.
        drain = asyncio.create_task(keep_reading(process.stderr, log))
        http = aiohttp.ClientSession()
        try:
            socket = await http.ws_connect(address + "/session", max_msg_size=0)
            browser = Firefox(process, profile, socket)
            await browser.send("session.new", {"capabilities": {}})
            await browser.send(
                "session.subscribe", {"events": ["log.entryAdded", "network.responseCompleted"]}
            )
            yield browser
        finally:
            if browser is not None:
                await browser.close()
            await http.close()
    finally:
        if process is not None:
            await stop(process)
        if drain is not None:
            drain.cancel()
        shutil.rmtree(profile, ignore_errors=True)


async def listening(stderr: asyncio.StreamReader, log: deque[str]) -> str:
    while line := await stderr.readline():
        text = line.decode(errors="replace").rstrip()
        log.append(text)
        if found := LISTENING.search(text):
            return found.group(1)
    raise RuntimeError("Firefox exited: " + "\n".join(log))


async def keep_reading(stderr: asyncio.StreamReader, log: deque[str]) -> None:
    while line := await stderr.readline():
        log.append(line.decode(errors="replace").rstrip())


async def stop(process: asyncio.subprocess.Process) -> None:
    """Wait a little for Firefox to quit (browser.close), then end what is left of its process
    group (the group is this Firefox's own: it was started in a session of its own)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(process.wait(), 5)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        if process.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 5)
