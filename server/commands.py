"""`veche meeting ...`, `veche attendance` and `veche recording list|show|keep|delete` work on
the data directory, server running or not; `veche recording start|stop|render` ask the running
server through its REST API with the admin key."""

import argparse
import asyncio
import json
import shutil
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import aiohttp

from rooms.attendance import to_csv
from rooms.errors import NotFound, RoomError
from rooms.meeting import Meeting, new_meeting, now
from rooms.recordings import ACTIVE, Recording
from rooms.roster import new_entry
from rooms.sqlite_store import SqliteStore
from rooms.store import Store
from server.api.links import guest_link, invite_link, meeting_urls, parse_guest_role
from server.auth import Tokens
from server.config import Settings
from server.recorder import local_url
from server.recordings import directory_of

Command = Callable[[argparse.Namespace, Settings, Store, Tokens], Awaitable[None]]


def out(line: str = "") -> None:
    print(line, flush=True)


def out_json(value: Any) -> None:
    out(json.dumps(value, ensure_ascii=False, indent=2))


async def run(command: Command, args: argparse.Namespace, settings: Settings) -> None:
    """Open the store in data_dir, run `command`, close the store (RoomError passes through)."""
    tokens = Tokens(settings.secret_key, timedelta(days=settings.invite_ttl_days))
    store = await SqliteStore.open(settings.database_path)
    try:
        await command(args, settings, store, tokens)
    finally:
        await store.close()


async def _meeting(store: Store, meeting_id: str) -> Meeting:
    meeting = await store.get_meeting(meeting_id)
    if meeting is None:
        raise NotFound(f"meeting {meeting_id!r}")
    return meeting


def _described(settings: Settings, meeting: Meeting) -> dict[str, Any]:
    urls = meeting_urls(settings, meeting)
    return {**meeting.as_dict(), **urls, "url": urls["admin_url"]}


async def create(args: argparse.Namespace, settings: Settings, store: Store, _: Tokens) -> None:
    fields: dict[str, Any] = {"title": args.title}
    if args.public:
        fields["visibility"] = "public"
    if args.starts_at is not None:
        fields["starts_at"] = args.starts_at
    meeting = new_meeting(fields)
    await store.create_meeting(meeting)
    described = _described(settings, meeting)
    if args.json:
        out_json(described)
        return
    out(f"Created meeting {meeting.id}: {meeting.title}")
    out(f"Admin page:  {described['admin_url']}")
    out(f"Viewer page: {described['watch_url']}")


async def list_(args: argparse.Namespace, settings: Settings, store: Store, _: Tokens) -> None:
    meetings = await store.list_meetings()
    if args.json:
        out_json({"meetings": [_described(settings, m) for m in meetings]})
        return
    if not meetings:
        out("No meetings yet: veche meeting create --title TITLE")
        return
    for m in meetings:
        out(f"{m.id}  {m.as_dict()['starts_at']}  {m.visibility.value:<7} {m.title}")


async def invite(
    args: argparse.Namespace, settings: Settings, store: Store, tokens: Tokens
) -> None:
    meeting = await _meeting(store, args.meeting)
    fields = {"name": args.name, "role": args.role}
    fields.update({k: getattr(args, k) for k in ("school", "region") if getattr(args, k)})
    entry = new_entry(meeting.id, fields)
    await store.add_entry(entry)
    link = invite_link(settings, tokens, entry)
    if args.json:
        out_json({**entry.as_dict(), **link})
        return
    out(f"Invited {entry.name} as {entry.role.value} (entry {entry.id}); personal link:")
    out(link["url"])


async def link(args: argparse.Namespace, settings: Settings, store: Store, tokens: Tokens) -> None:
    role = parse_guest_role(args.role)
    meeting = await _meeting(store, args.meeting)
    made = guest_link(settings, tokens, meeting.id, role)
    if args.json:
        out_json(made)
        return
    out(f"Guest link for {role.value}s, valid until {made['expires_at']}:")
    out(made["url"])


async def delete(args: argparse.Namespace, _: Settings, store: Store, __: Tokens) -> None:
    if not await store.delete_meeting(args.meeting):
        raise NotFound(f"meeting {args.meeting!r}")
    out(f"Deleted meeting {args.meeting}")


async def attendance(args: argparse.Namespace, _: Settings, store: Store, __: Tokens) -> None:
    meeting = await _meeting(store, args.meeting)
    stays = await store.list_attendance(meeting.id)
    if args.csv:
        sys.stdout.write(to_csv(stays, now()))
        sys.stdout.flush()
    elif args.json:
        out_json({"attendance": [s.as_dict() for s in stays]})
    elif not stays:
        out(f"Nobody has joined {meeting.title} yet")
    else:
        until = now()
        for s in stays:
            row = s.as_dict()
            span = f"{row['joined_at']} - {row['left_at'] or '(still there)'}"
            out(f"{s.name}  {s.school}  {s.role}  {span}  {round(s.seconds(until) / 60, 1)} min")


# recordings

SERVER_TIMEOUT = 60.0  # seconds; starting the recording process takes a moment


async def _ask_server(
    args: argparse.Namespace, settings: Settings, method: str, path: str
) -> dict[str, Any]:
    """One call to the running server's REST API as the admin; its JSON error as RoomError."""
    url = (args.url or local_url(settings)).rstrip("/")
    headers = {"Authorization": f"Bearer {settings.api_key}"}
    timeout = aiohttp.ClientTimeout(total=SERVER_TIMEOUT)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.request(method, url + path, headers=headers) as response,
        ):
            body = await response.json(content_type=None)
            status = response.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as error:
        raise RoomError(
            "unreachable", f"cannot reach the server at {url} ({error}); is `veche serve` running?"
        ) from None
    if status >= 400:
        problem = body.get("error", {}) if isinstance(body, dict) else {}
        raise RoomError(str(problem.get("code", status)), str(problem.get("message", status)))
    return body if isinstance(body, dict) else {}


def _recording_line(rec: dict[str, Any]) -> str:
    status = rec["status"]
    if status == "rendering" and rec["progress"] is not None:
        status = f"rendering {rec['progress']}%"
    size = f"{rec['size'] / 1_000_000:.1f} MB"
    kept = "  keep" if rec["keep"] else ""
    return (
        f"{rec['id']}  {rec['started_at']}  {status:<14} {rec['duration']:7.1f} s  {size:>9}"
        f"  {rec['title']}{kept}"
    )


async def recording_start(
    args: argparse.Namespace, settings: Settings, _: Store, __: Tokens
) -> None:
    path = f"/api/meetings/{args.meeting}/recording"
    await _on_server(args, settings, "POST", path, "Recording {meeting}: recording {id} started")


async def recording_stop(
    args: argparse.Namespace, settings: Settings, _: Store, __: Tokens
) -> None:
    path = f"/api/meetings/{args.meeting}/recording"
    said = "Stopped recording {id}; it is {status} (veche recording show {id})"
    await _on_server(args, settings, "DELETE", path, said)


async def recording_render(
    args: argparse.Namespace, settings: Settings, _: Store, __: Tokens
) -> None:
    path = f"/api/recordings/{args.recording}/render"
    said = "Rendering {id} again from its tracks (veche recording show {id})"
    await _on_server(args, settings, "POST", path, said)


async def _on_server(
    args: argparse.Namespace, settings: Settings, method: str, path: str, said: str
) -> None:
    """Ask the running server; print its recording as JSON or `said` filled from it."""
    rec = await _ask_server(args, settings, method, path)
    if args.json:
        out_json(rec)
        return
    out(said.format(**rec))


def _retention(settings: Settings) -> timedelta | None:
    days = settings.recording_retention_days
    return timedelta(days=days) if days > 0 else None


async def _recording(store: Store, recording_id: str) -> Recording:
    rec = await store.get_recording(recording_id)
    if rec is None:
        raise NotFound(f"recording {recording_id!r}")
    return rec


async def recording_list(
    args: argparse.Namespace, settings: Settings, store: Store, _: Tokens
) -> None:
    found = await store.list_recordings(args.meeting)
    described = [rec.as_dict(_retention(settings)) for rec in found]
    if args.json:
        out_json({"recordings": described})
        return
    if not found:
        out("No recordings yet: veche recording start MEETING (while the meeting is live)")
        return
    for rec in described:
        out(_recording_line(rec))


async def recording_show(
    args: argparse.Namespace, settings: Settings, store: Store, _: Tokens
) -> None:
    rec = await _recording(store, args.recording)
    described = rec.as_dict(_retention(settings))
    if args.json:
        out_json(described)
        return
    for key, value in described.items():
        if key not in ("file", "page"):
            out(f"{key + ':':<12} {'' if value is None else value}")
    out(f"{'programme:':<12} {directory_of(settings, rec.id) / 'programme.mp4'}")
    out(f"{'page:':<12} {settings.base_url}{described['page']}")


async def recording_keep(args: argparse.Namespace, _: Settings, store: Store, __: Tokens) -> None:
    rec = await _recording(store, args.recording)
    await store.update_recording(replace(rec, keep=not args.off))
    if args.off:
        out(f"Recording {rec.id} expires with retention again")
    else:
        out(f"Recording {rec.id} is kept: retention will not delete it")


async def recording_delete(
    args: argparse.Namespace, settings: Settings, store: Store, _: Tokens
) -> None:
    rec = await _recording(store, args.recording)
    if rec.status in ACTIVE:
        raise RoomError("busy", f"recording {rec.id} is {rec.status.value}; wait until it ends")
    await store.delete_recording(rec.id)
    await asyncio.to_thread(shutil.rmtree, directory_of(settings, rec.id), True)
    out(f"Deleted recording {rec.id} and its files")
