"""`veche meeting ...` and `veche attendance`: work on the data directory, server running or not."""

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from rooms.attendance import to_csv
from rooms.errors import NotFound
from rooms.meeting import Meeting, new_meeting, now
from rooms.roster import new_entry
from rooms.sqlite_store import SqliteStore
from rooms.store import Store
from server.api.links import guest_link, invite_link, meeting_urls, parse_guest_role
from server.auth import Tokens
from server.config import Settings

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
