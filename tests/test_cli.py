"""The real `veche` console script in a subprocess, on a temporary data directory."""

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp

from server.auth import Tokens
from server.config import Settings, with_secrets
from tests.apiclient import bearer, call
from tests.conftest import LiveServer, free_port


def veche_script() -> str:
    beside = Path(sys.executable).parent / "veche"
    found = str(beside) if beside.exists() else shutil.which("veche")
    assert found, "the veche console script is not installed (pip install -e .)"
    return found


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VECHE_")}
    return {**env, **extra}


def veche(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [veche_script(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or clean_env(),
    )


def veche_json(*args: str, env: dict[str, str] | None = None) -> Any:
    done = veche(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def tokens_of(data_dir: Path) -> Tokens:
    return Tokens(with_secrets(Settings(data_dir=data_dir)).secret_key, timedelta(days=1))


def test_meeting_commands(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    created = veche_json("meeting", "create", "--title", "Совет школ", "--public", *d)
    mid = created["id"]
    assert created["url"] == f"http://127.0.0.1:8080/meetings/{mid}"
    assert created["title"] == "Совет школ" and created["visibility"] == "public"
    listed = veche_json("meeting", "list", *d)
    assert [m["id"] for m in listed["meetings"]] == [mid]
    text = veche("meeting", "list", *d)
    assert mid in text.stdout and "Совет школ" in text.stdout

    entry = veche_json(
        "meeting", "invite", mid, "--name", "Olga", "--role", "host", "--school", "No. 5", *d
    )
    assert entry["url"].endswith("/j/" + entry["token"])
    grant = tokens_of(tmp_path).check(entry["token"])
    assert (grant.kind, grant.meeting_id, grant.entry_id) == ("invite", mid, entry["id"])
    guest = veche_json("meeting", "link", mid, "--role", "viewer", *d)
    grant = tokens_of(tmp_path).check(guest["token"])
    assert (grant.kind, grant.meeting_id, str(grant.role)) == ("guest", mid, "viewer")

    csv = veche("attendance", mid, "--csv", *d)
    assert csv.returncode == 0
    assert csv.stdout.lstrip("\ufeff").startswith("name,school,region,role,joined_at")
    assert veche_json("attendance", mid, *d) == {"attendance": []}

    deleted = veche("meeting", "delete", mid, *d)
    assert deleted.returncode == 0, deleted.stderr
    assert veche_json("meeting", "list", *d) == {"meetings": []}


def test_errors_exit_1_and_bad_arguments_exit_2(tmp_path: Path) -> None:
    d = ["--data-dir", str(tmp_path)]
    mid = veche_json("meeting", "create", "--title", "T", *d)["id"]
    for args, message in [
        (["meeting", "invite", mid, "--name", "O", "--role", "king"], "role"),
        (["meeting", "invite", "nope", "--name", "O", "--role", "viewer"], "not found"),
        (["meeting", "link", mid, "--role", "host"], "role"),
        (["meeting", "delete", "nope"], "not found"),
        (["attendance", "nope"], "not found"),
        (["meeting", "create", "--title", "T", "--starts-at", "soon"], "starts_at"),
    ]:
        done = veche(*args, *d)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert message in done.stderr and done.stdout == ""
    for args in (
        [],
        ["meeting"],
        ["meeting", "create"],
        ["meeting", "invite", mid, "--name", "O"],
        ["serve", "--port", "eighty"],
        ["serve", "--port", "70000"],
        ["attendance", mid, "--csv", "--json"],
    ):
        done = veche(*args, *d)
        assert done.returncode == 2, (args, done.stderr)
        assert "usage: veche" in done.stderr
    assert veche("serve", "--port", "1", env=clean_env(VECHE_LOG_FORMAT="xml")).returncode == 2
    # Nothing the refused commands asked for was written.
    meetings = veche_json("meeting", "list", *d)["meetings"]
    assert [m["id"] for m in meetings] == [mid]
    assert veche_json("meeting", "list", *d)["meetings"][0]["title"] == "T"


async def test_cli_works_beside_a_running_server(live_server: LiveServer) -> None:
    settings = live_server.settings
    env = clean_env(VECHE_DATA_DIR=str(settings.data_dir), VECHE_PORT=str(settings.port))
    created = await asyncio.to_thread(veche_json, "meeting", "create", "--title", "Live", env=env)
    assert created["url"] == f"{settings.base_url}/meetings/{created['id']}"
    status, got = await live_server.api("GET", f"/api/meetings/{created['id']}")
    assert status == 200 and got["title"] == "Live"
    args = ("meeting", "invite", created["id"], "--name", "H", "--role", "host")
    host = await asyncio.to_thread(veche_json, *args, env=env)
    status, _, _ = await call(
        live_server.url,
        "GET",
        f"/api/meetings/{created['id']}/roster",
        headers=bearer(host["token"]),
    )
    assert status == 200


async def read_until(stream: asyncio.StreamReader, marker: str, seen: list[str]) -> None:
    while not any(marker in line for line in seen):
        line = await stream.readline()
        assert line, f"output ended before {marker!r}: {seen}"
        seen.append(line.decode())


async def serve_once(data_dir: Path, stop: signal.Signals) -> list[str]:
    """Start `veche serve --demo`, check it answers, stop it with `stop`; its printed lines."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        veche_script(),
        "serve",
        "--demo",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env=clean_env(),
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        await asyncio.wait_for(read_until(proc.stdout, "Host link:", seen), 30)
        assert f"Veche is running at http://127.0.0.1:{port}" in seen[0]
        assert str(data_dir / "api_key") in "".join(seen)
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/livez") as response,
        ):
            assert response.status == 200
        proc.send_signal(stop)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        seen += (await proc.stdout.read()).decode().splitlines(keepends=True)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return seen


def demo_id(lines: list[str]) -> str:
    line = next(x for x in lines if x.startswith("Demo meeting"))
    return line.rsplit("[", 1)[1].split("]", 1)[0]


async def test_serve_demo_starts_stops_and_reuses_the_demo(tmp_path: Path) -> None:
    first = await serve_once(tmp_path, signal.SIGTERM)
    mid = demo_id(first)
    assert "(created)" in "".join(first)
    host_url = next(x for x in first if "Host link:" in x).split()[-1]
    grant = tokens_of(tmp_path).check(host_url.rsplit("/j/", 1)[1])
    assert grant.kind == "invite" and grant.meeting_id == mid
    # Closed cleanly: SQLite removes the write-ahead log when the last connection closes.
    assert not (tmp_path / "veche.sqlite3-wal").exists()

    second = await serve_once(tmp_path, signal.SIGINT)
    assert demo_id(second) == mid and "(reused)" in "".join(second)
    meetings = await asyncio.to_thread(veche_json, "meeting", "list", "--data-dir", str(tmp_path))
    assert [m["id"] for m in meetings["meetings"]] == [mid]
