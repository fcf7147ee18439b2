"""The `veche` command: run the server, and manage meetings on the data directory."""

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from rooms.errors import RoomError
from server import commands
from server.config import Settings, from_env, with_secrets

# How long a stop waits for open HTTP connections before closing them.
SHUTDOWN_TIMEOUT = 5.0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, not {port}")
    return port


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir", type=Path, help="data directory (VECHE_DATA_DIR; default ./data)"
    )
    parser = argparse.ArgumentParser(
        prog="veche", description="Hybrid meetings with a live broadcast."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", parents=[common], help="run the server")
    serve.add_argument("--host", help="address to listen on (VECHE_HOST; default 127.0.0.1)")
    serve.add_argument("--port", type=_port, help="port to listen on (VECHE_PORT; default 8080)")
    serve.add_argument("--demo", action="store_true", help="create (once) and print a demo meeting")

    meeting = sub.add_parser("meeting", help="create, list, invite, link, delete meetings")
    msub = meeting.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = msub.add_parser("create", parents=[common], help="schedule a meeting")
    create.add_argument("--title", required=True)
    create.add_argument("--public", action="store_true", help="anyone may watch without a link")
    create.add_argument("--starts-at", metavar="ISO", help="e.g. 2026-12-01T10:00:00+03:00")
    create.add_argument("--json", action="store_true", help="print one JSON object")
    listing = msub.add_parser("list", parents=[common], help="list meetings")
    listing.add_argument("--json", action="store_true")
    invite = msub.add_parser("invite", parents=[common], help="add someone to the roster")
    invite.add_argument("meeting", metavar="MEETING", help="meeting id")
    invite.add_argument("--name", required=True)
    invite.add_argument(
        "--role", required=True, help="host, moderator, speaker, participant or viewer"
    )
    invite.add_argument("--school")
    invite.add_argument("--region")
    invite.add_argument("--json", action="store_true")
    link = msub.add_parser("link", parents=[common], help="a guest link without a roster entry")
    link.add_argument("meeting", metavar="MEETING", help="meeting id")
    link.add_argument("--role", required=True, metavar="viewer|participant")
    link.add_argument("--json", action="store_true")
    delete = msub.add_parser("delete", parents=[common], help="delete a meeting")
    delete.add_argument("meeting", metavar="MEETING", help="meeting id")

    _recording_parser(sub, common)

    attendance = sub.add_parser("attendance", parents=[common], help="who was in a meeting")
    attendance.add_argument("meeting", metavar="MEETING", help="meeting id")
    form = attendance.add_mutually_exclusive_group()
    form.add_argument("--csv", action="store_true", help="CSV for a spreadsheet")
    form.add_argument("--json", action="store_true")
    return parser


def _recording_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """`veche recording ...` (server/commands.py): start, stop and render ask the running
    server (its REST API with the admin key); the rest work on the data directory."""
    server = argparse.ArgumentParser(add_help=False, parents=[common])
    server.add_argument("--url", help="the running server (default: http://VECHE_HOST:VECHE_PORT)")
    server.add_argument("--json", action="store_true", help="print one JSON object")
    recording = sub.add_parser("recording", help="record meetings; list, keep, delete recordings")
    rsub = recording.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = rsub.add_parser("start", parents=[server], help="start recording a live meeting")
    start.add_argument("meeting", metavar="MEETING", help="meeting id")
    stop = rsub.add_parser("stop", parents=[server], help="stop a meeting's recording")
    stop.add_argument("meeting", metavar="MEETING", help="meeting id")
    render = rsub.add_parser("render", parents=[server], help="render again from the tracks")
    render.add_argument("recording", metavar="RECORDING", help="recording id")
    listing = rsub.add_parser("list", parents=[common], help="list recordings, newest first")
    listing.add_argument("--meeting", metavar="MEETING", help="only this meeting's")
    listing.add_argument("--json", action="store_true")
    show = rsub.add_parser("show", parents=[common], help="one recording")
    show.add_argument("recording", metavar="RECORDING", help="recording id")
    show.add_argument("--json", action="store_true")
    keep = rsub.add_parser("keep", parents=[common], help="exempt a recording from retention")
    keep.add_argument("recording", metavar="RECORDING", help="recording id")
    keep.add_argument("--off", action="store_true", help="let retention delete it again")
    delete = rsub.add_parser("delete", parents=[common], help="delete a recording and its files")
    delete.add_argument("recording", metavar="RECORDING", help="recording id")


COMMANDS: dict[str, commands.Command] = {
    "create": commands.create,
    "list": commands.list_,
    "invite": commands.invite,
    "link": commands.link,
    "delete": commands.delete,
}
RECORDING_COMMANDS: dict[str, commands.Command] = {
    "start": commands.recording_start,
    "stop": commands.recording_stop,
    "render": commands.recording_render,
    "list": commands.recording_list,
    "show": commands.recording_show,
    "keep": commands.recording_keep,
    "delete": commands.recording_delete,
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {"data_dir": args.data_dir}
    if args.command == "serve":
        overrides.update(host=args.host, port=args.port)
    try:
        given = from_env(**overrides)
        settings = with_secrets(given)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    if args.command == "serve":
        return serve(settings, demo=args.demo, key_from_env=bool(given.api_key))
    command: commands.Command
    if args.command == "attendance":
        command = commands.attendance
    elif args.command == "recording":
        command = RECORDING_COMMANDS[args.action]
    else:
        command = COMMANDS[args.action]
    try:
        asyncio.run(commands.run(command, args, settings))
    except RoomError as exc:
        print(f"veche: {exc.message}", file=sys.stderr, flush=True)
        return 1
    return 0


def serve(settings: Settings, *, demo: bool, key_from_env: bool) -> int:
    """Run until SIGTERM or SIGINT; both stop gracefully (shutdown handlers, store closed)."""
    # Imported here: the whole server (media, signaling, pages) is slow to import, and the
    # data-directory commands need none of it.
    from aiohttp import web

    from server.app import create_app
    from server.context import STORE, TOKENS
    from server.demo import ensure_demo
    from server.logs import configure

    try:
        configure(settings.log_format, settings.log_level)
    except ValueError as exc:
        print(f"veche: VECHE_LOG_LEVEL: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings)
    lines: list[str] = []
    if demo:

        async def demo_meeting(app: web.Application) -> AsyncIterator[None]:
            # Runs after create_app's own contexts, so the store is open.
            made = await ensure_demo(app[STORE], settings)
            lines.extend(made.lines(settings, app[TOKENS]))
            yield

        app.cleanup_ctx.append(demo_meeting)
    key = "VECHE_API_KEY" if key_from_env else str(settings.data_dir / "api_key")

    def announce(_: str) -> None:
        # Called by run_app once the port is listening.
        commands.out(f"Veche is running at {settings.base_url}")
        commands.out(f"Admin: open {settings.base_url}/login and enter the API key from {key}")
        for line in lines:
            commands.out(line)
        commands.out("Press Ctrl+C to stop.")

    try:
        web.run_app(
            app,
            host=settings.host,
            port=settings.port,
            print=announce,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            handle_signals=True,
        )
    except OSError as exc:
        print(f"veche: cannot listen on {settings.host}:{settings.port}: {exc}", file=sys.stderr)
        return 1
    commands.out("Veche stopped.")
    return 0
