"""Servers the tool starts itself: a subprocess on a free loopback port, stopped at the end."""

import asyncio
import contextlib
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from bench import proc


@dataclass
class Started:
    pid: int
    port: int
    url: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for_port(port: int, process: asyncio.subprocess.Process, limit: float) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"the server did not listen on port {port} within {limit:.0f} s")


def _tail(log: Path | None) -> str:
    if log is None or not log.exists():
        return ""
    return log.read_text(errors="replace")[-2000:]


@contextlib.asynccontextmanager
async def subprocess(
    command: list[str],
    port: int,
    cpu: int | None,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    limit: float = 20,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run `command` (pinned to `cpu`), wait until `port` accepts, stop it (SIGTERM) after."""
    out = log.open("wb") if log else None
    process = await asyncio.create_subprocess_exec(
        *proc.pin_command(command, cpu),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=out or asyncio.subprocess.DEVNULL,
        stderr=out or asyncio.subprocess.DEVNULL,
        env=env,
    )
    try:
        try:
            await wait_for_port(port, process, limit)
        except RuntimeError as exc:
            tail = _tail(log)
            raise RuntimeError(f"{command[0]}: {exc}\n{tail}".rstrip()) from None
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        if out:
            out.close()


@contextlib.asynccontextmanager
async def baseline(cpu: int | None) -> AsyncIterator[Started]:
    port = free_port()
    command = [sys.executable, "-m", "bench.baseline", "--port", str(port)]
    async with subprocess(command, port, cpu) as process:
        yield Started(process.pid, port, f"http://127.0.0.1:{port}")


# `veche serve` without depending on the venv's script being on PATH.
VECHE_SERVE = "import sys; from server.cli import main; sys.exit(main())"


@contextlib.asynccontextmanager
async def veche(
    cpu: int | None, api_key: str, rtc_ports: range | None = None
) -> AsyncIterator[Started]:
    """`veche serve` on a free port with a temporary data directory, admin key `api_key`, and
    its ICE candidates on 127.0.0.1 (VECHE_RTC_ADDRESSES), in `rtc_ports` if given."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="veche-bench-") as data:
        env = {
            **os.environ,
            "VECHE_API_KEY": api_key,
            "VECHE_RTC_ADDRESSES": "127.0.0.1",
            "VECHE_LOG_LEVEL": "WARNING",
        }
        if rtc_ports is not None:
            env["VECHE_RTC_MIN_PORT"] = str(rtc_ports[0])
            env["VECHE_RTC_MAX_PORT"] = str(rtc_ports[-1])
        command = [sys.executable, "-c", VECHE_SERVE, "serve", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--data-dir", data]
        log = Path(data) / "server.log"
        async with subprocess(command, port, cpu, log=log, env=env) as process:
            yield Started(process.pid, port, f"http://127.0.0.1:{port}")
