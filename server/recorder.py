"""The recording process of one recording (and the broadcast's programme process, which is the
same program with `--stage`): `python -m recording.egress`, started and stopped here.

The egress is a client of the meeting like any other (it joins `/meeting` with a recorder
token), so it runs apart from the forwarding process: the SFU never waits for it. Its output
goes to `<directory>/egress.log`; its own state is in `<directory>/egress.json`.
"""

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from server.auth import Tokens
from server.config import Settings

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "VECHE_RECORDER_TOKEN"  # the token goes by environment, not on `ps` output
LOG_NAME = "egress.log"


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
    ) -> "Egress":
        """Start recording `meeting_id` into `directory` (created if missing)."""
        token = tokens.recorder(meeting_id, recording_id)
        egress = await cls.launch(settings, token, directory)
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
    ) -> "Egress":
        """Start `python -m recording.egress` with `token` and `extra` arguments (`--stage`
        for the broadcast's programme: server/programmes.py), writing into `directory`;
        `canvas`: the programme's size and rate (default: the recording's settings)."""
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        size, fps = canvas or (settings.programme_size, settings.programme_fps)
        args = [sys.executable, "-m", "recording.egress", "--url", local_url(settings)]
        args += ["--dir", str(directory), *extra, "--size", size, "--fps", str(fps)]
        if settings.rtc_addresses:
            # The egress reaches the SFU on the addresses the SFU gathers on (same machine).
            args += ["--rtc-addresses", settings.rtc_addresses]
        environment = {**os.environ, TOKEN_VARIABLE: token}
        with (directory / LOG_NAME).open("ab") as output:
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                env=environment,
                # Its own session: a Ctrl-C meant for the server does not cut the recording
                # short; the server stops it with stop() and the finished files.
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
