"""The recording process of one recording (and the broadcast's programme process, which is the
same program with `--stage`): `python -m recording.egress`, started and stopped here.

The egress is a client of the meeting like any other (it joins `/meeting` with a recorder
token), so it runs apart from the forwarding process: the SFU never waits for it. Its output
goes to `<directory>/egress.log`; its own state is in `<directory>/egress.json`.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from server.auth import Tokens
from server.config import Settings

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "VECHE_RECORDER_TOKEN"  # the token goes by environment, not on `ps` output
LOG_NAME = "egress.log"
EGRESS = (sys.executable, "-m", "recording.egress")
STANDBY_LOG = "egress-standby.log"


class Standby:
    """One egress process started ahead (`--standby`), its imports done, waiting for a job on
    stdin: a recording or a programme then starts 1-2 s sooner (the first seconds after the
    click are recorded). Taking it starts the next one. It exits when the server's end of its
    stdin closes (`close`, or the server's exit), so nothing outlives the server."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._process: asyncio.subprocess.Process | None = None
        self._starting: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The waiting process's (None: none is ready)."""
        process = self._process
        return None if process is None or process.returncode is not None else process.pid

    def warm(self) -> None:
        """Have one ready (started in the background)."""
        if self._process is None and self._starting is None and not self._closed:
            self._starting = asyncio.ensure_future(self._start())

    async def _start(self) -> None:
        directory = self._settings.data_dir
        try:
            await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
            with (directory / STANDBY_LOG).open("ab") as output:
                self._process = await asyncio.create_subprocess_exec(
                    *EGRESS,
                    "--standby",
                    stdin=asyncio.subprocess.PIPE,
                    stdout=output,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
        except OSError as error:
            log.warning("no standby egress: %s", error)
        finally:
            self._starting = None

    async def take(self) -> asyncio.subprocess.Process | None:
        """The waiting process (None: none is alive; start one the usual way), and the next
        one started."""
        if self._starting is not None:
            with contextlib.suppress(Exception):
                await self._starting
        process, self._process = self._process, None
        self.warm()
        if process is None or process.returncode is not None:
            return None
        return process

    async def close(self) -> None:
        """The waiting process reads the end of its stdin and exits."""
        self._closed = True
        if self._starting is not None:
            with contextlib.suppress(Exception):
                await self._starting
        process, self._process = self._process, None
        if process is not None and process.stdin is not None:
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                # Still starting up (a busy machine): it must not outlive the server's exit.
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()


STANDBY = web.AppKey("egress_standby", Standby)  # on the app when VECHE_EGRESS_STANDBY is on


def local_url(settings: Settings) -> str:
    """This server's own address (not the public URL, which may be a proxy far away)."""
    host = settings.host
    if host in ("0.0.0.0", "", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


class Egress:
    """The recording process of one recording (python -m recording.egress)."""

    def __init__(self, process: asyncio.subprocess.Process, directory: Path) -> None:
        self._process = process
        self.directory = directory

    @classmethod
    async def start(
        cls,
        settings: Settings,
        tokens: Tokens,
        meeting_id: str,
        recording_id: str,
        directory: Path,
        standby: Standby | None = None,
    ) -> "Egress":
        """Start recording `meeting_id` into `directory` (created if missing), in the
        `standby` process if one waits."""
        token = tokens.recorder(meeting_id, recording_id)
        egress = await cls.launch(settings, token, directory, standby=standby)
        log.info("recording %s of %s: egress pid %d", recording_id, meeting_id, egress.pid)
        return egress

    @classmethod
    async def launch(
        cls,
        settings: Settings,
        token: str,
        directory: Path,
        extra: Sequence[str] = (),
        canvas: tuple[str, int] | None = None,
        standby: Standby | None = None,
    ) -> "Egress":
        """Start `python -m recording.egress` with `token` and `extra` arguments (`--stage`
        for the broadcast's programme: server/programmes.py), writing into `directory`;
        `canvas`: the programme's size and rate (default: the recording's settings)."""
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        size, fps = canvas or (settings.programme_size, settings.programme_fps)
        argv = ["--url", local_url(settings), "--dir", str(directory), *extra]
        argv += ["--size", size, "--fps", str(fps)]
        if settings.rtc_addresses:
            # The egress reaches the SFU on the addresses the SFU gathers on (same machine).
            argv += ["--rtc-addresses", settings.rtc_addresses]
        log_path = directory / LOG_NAME
        process = await standby.take() if standby is not None else None
        if process is not None and process.stdin is not None:
            job = {"argv": argv, "token": token, "log": str(log_path)}
            process.stdin.write(json.dumps(job).encode() + b"\n")
            with contextlib.suppress(ConnectionError):
                await process.stdin.drain()
            process.stdin.close()
        else:
            environment = {**os.environ, TOKEN_VARIABLE: token}
            with log_path.open("ab") as output:
                process = await asyncio.create_subprocess_exec(
                    *EGRESS,
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=output,
                    stderr=asyncio.subprocess.STDOUT,
                    env=environment,
                    # Its own session: a Ctrl-C meant for the server does not cut the
                    # recording short; the server stops it with stop() and the finished files.
                    start_new_session=True,
                )
        return cls(process, directory)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.returncode is None

    async def wait(self) -> int:
        """Until the process exits by itself (the meeting ended, a fatal error)."""
        return await self._process.wait()

    async def stop(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109 (the contract's)
        """SIGTERM: the egress closes its tracks and makes programme.mp4 (fast start), then
        exits. Killed after `timeout` seconds. Returns the exit code (-9 when killed)."""
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self._process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self._process.wait(), timeout)
            except TimeoutError:
                log.warning("egress pid %d did not stop in %.0f s: killed", self.pid, timeout)
                with contextlib.suppress(ProcessLookupError):
                    self._process.kill()
        return await self._process.wait()
