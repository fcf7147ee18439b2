"""The recording process: `python -m recording.egress --url URL --token TOKEN --dir DIR`.

With `--stage` it is the broadcast's programme process instead (server/programmes.py): it joins
with a programme token, receives the stage as viewers do, captures no track, and its programme
(HLS while live, an MP4 at the end) shows who is on the stage.

A client of the meeting like any other: it joins `/meeting` with a recorder token, answers
the server's offers for every published track, writes each track as it arrives without
re-encoding (recording.capture), writes the timeline from the room's events, and feeds the
decoded frames to the live programme (recording.compositor). It stops on SIGTERM, when the
recording is switched off, when the meeting ends, or when it cannot get back in: every track is
closed, the programme finished (programme.mp4, fast start), and `egress.json` says `done`.

`egress.json` is the process's own state: {"state": "starting|recording|finishing|done|failed",
"error": str}. Exit status 0 when done, 1 on a fatal error (the reason in egress.json).
"""

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from media import ice
from recording import lifeline
from recording.capture import Capture
from recording.compositor import Compositor
from recording.errors import RecordingError
from recording.meeting_link import DISCONNECTED, MeetingLink, Received, Refused
from recording.receiving import Programme, Receiving, TrackInfo
from recording.timeline import Timeline

logger = logging.getLogger("recording.egress")

STATE_FILE = "egress.json"
TOKEN_VARIABLE = "VECHE_RECORDER_TOKEN"
REJOIN_FOR = 60.0  # seconds to get back into the meeting after the connection dropped
REJOIN_EVERY = 1.0
PARENT_CHECK = 1.0  # seconds between checks that the server that started us is alive
SAID = 6  # problems egress.json lists at most


class LiveProgramme(Programme, Protocol):
    """What the egress drives of the live compositor (recording.compositor.Compositor)."""

    def join(self, participant: str, name: str) -> None: ...
    def leave(self, participant: str) -> None: ...
    def speaking(self, participant: str | None) -> None: ...
    def screen(self, participant: str, on: bool) -> None: ...
    def camera(self, participant: str, on: bool) -> None: ...
    def begin(self) -> None: ...
    def stop(self) -> None: ...
    async def run(self) -> None: ...
    async def finish(self) -> Path: ...


class Stopped(Exception):
    """The recording ends normally (`reason`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def write_state(directory: Path, state: str, error: str = "") -> None:
    """egress.json, replaced atomically (a reader never sees half of it)."""
    path = directory / STATE_FILE
    part = path.with_suffix(".json.part")
    try:
        part.write_text(json.dumps({"state": state, "error": error}), encoding="utf-8")
        os.replace(part, path)
    except OSError as error:  # a full disk must not stop the recording for this
        logger.warning("cannot write %s: %s", path, error)


class Recorder:
    """One recording of one meeting: the connection, the capture and the programme."""

    def __init__(
        self,
        url: str,
        token: str,
        directory: Path,
        ice_settings: ice.IceSettings,
        programme: LiveProgramme | None = None,
        on_start: Callable[[], None] | None = None,
        stage_only: bool = False,
    ) -> None:
        self.url = url
        # The broadcast's programme: no track files, no timeline; the layout is the stage.
        self.stage_only = stage_only
        self._on_stage: set[str] = set()  # participants with a track on the stage
        # Called once the timeline says recording_started: the live programme's clock starts
        # then, so that its time 0, a re-render's and the chapters' are the same moment.
        self._on_start = on_start
        self._token = token
        self.directory = directory
        self._ice = ice_settings
        self.programme = programme
        self.capture: Capture | None = None
        self._link: MeetingLink | None = None
        self._receiving: Receiving | None = None
        self._present: dict[str, str] = {}  # participant id -> name
        self._shown: set[str] = set()  # in the programme's layout
        self._cameras: dict[str, bool] = {}  # participant -> camera on, as the room says
        self._roles: dict[str, str] = {}  # participant -> role, as the timeline last said
        self._speaking: set[str] = set()
        self._active: str | None = None
        self._stop = asyncio.Event()
        self._stop_reason = "stopped"
        self.errors: list[str] = []

    def stop(self, reason: str = "stopped") -> None:
        """Finish the recording soon (signal handlers call this)."""
        self._stop_reason = reason
        self._stop.set()
        self._end_programme()

    def _end_programme(self) -> None:
        # The programme ends at the stop, not when the files are closed a moment later: by
        # then the pictures have stopped coming and the last frames would be empty cards.
        if self.programme is not None:
            self.programme.stop()

    # the run

    async def run(self) -> str:
        """Record until stopped; returns the reason. Raises Refused/OSError when the first
        join fails (nothing recorded then)."""
        write_state(self.directory, "starting")
        snapshot = await self._join()
        if not self.stage_only:
            self.capture = Capture(
                self.directory,
                meeting=str(snapshot.get("meeting", {}).get("id", "")),
                title=str(snapshot.get("meeting", {}).get("title", "")),
            )
        if self._on_start is not None:
            self._on_start()
        write_state(self.directory, "recording", self.said())
        reason = ""
        while not reason:
            reason = await self._session(snapshot)
            if reason:
                break
            try:
                snapshot = await self._rejoin()
            except Stopped as stopped:
                reason = stopped.reason
        return reason

    async def _join(self) -> dict[str, Any]:
        self._link = MeetingLink(self.url, self._token)
        try:
            return await self._link.join()
        except BaseException:
            await self._link.close()
            raise

    async def _rejoin(self) -> dict[str, Any]:
        """Back into the meeting after the connection dropped, for up to REJOIN_FOR s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REJOIN_FOR
        while True:
            if self._stop.is_set():
                raise Stopped(self._stop_reason)
            try:
                return await self._join()
            except Refused as refused:
                if refused.code != "not_live":
                    raise Stopped(f"refused: {refused.code}") from None
                if self.stage_only:  # the broadcast's programme starts anew when wanted
                    raise Stopped("meeting_gone") from None
            except (OSError, TimeoutError) as error:
                logger.info("cannot rejoin yet: %s", error)
            if loop.time() > deadline:
                raise Stopped("meeting_gone")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), REJOIN_EVERY)

    async def _session(self, snapshot: dict[str, Any]) -> str:
        """One stay in the meeting; returns a reason to stop, or "" to rejoin."""
        assert self._link is not None
        self._receiving = Receiving(
            self.capture, self._ice, self.programme, self._track_changed, self.failed
        )
        self._take_snapshot(snapshot)
        stopping = asyncio.ensure_future(self._stop.wait())
        reason = ""
        try:
            while True:
                next_event = asyncio.ensure_future(self._link.next())
                await asyncio.wait({next_event, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not next_event.done():
                    next_event.cancel()
                    return self._stop_reason
                received = next_event.result()
                if received.event == DISCONNECTED:
                    logger.info("disconnected from the meeting: %s", received.data)
                    return ""
                reason = await self._handle(received)
                if reason == "retry":
                    return ""
                if reason:
                    return reason
                if not self._present:
                    # The server forgets an empty room (and stops its recording).
                    reason = "empty"
                    return reason
        finally:
            stopping.cancel()
            if reason and reason != "retry":
                self._end_programme()
            await self._link.close(leave=reason != "ended")  # the server closes it then
            receiving, self._receiving = self._receiving, None
            await receiving.close()

    # what the room says

    def _take_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Who is there on (re)joining: joined/left for the differences, all now."""
        at = time.time()
        people = {
            str(p["id"]): p
            for p in snapshot.get("participants", [])
            if isinstance(p, dict) and isinstance(p.get("id"), str)
        }
        for participant in [p for p in self._present if p not in people]:
            self._left(participant, at)
        for participant, person in people.items():
            if participant not in self._present:
                self._joined(participant, str(person.get("name", "")), at)
            self._show(participant, person)
        speaking = snapshot.get("speaking")
        if isinstance(speaking, dict):
            self._speakers(speaking, at)
        if isinstance(snapshot.get("stage"), dict):
            self._stage(snapshot["stage"])

    async def _handle(self, received: Received) -> str:
        event, data, at = received.event, received.data, received.at
        if not isinstance(data, dict):
            return ""
        if event == "subscribe_offer":
            try:
                await self._answer(data)
            except Exception as error:  # the offer is left unanswered: start over afresh
                logger.exception("cannot answer the server's offer")
                self.failed(f"cannot answer the server's offer: {error}")
                return "retry"
        elif event == "participant_joined" and isinstance(data.get("id"), str):
            self._joined(data["id"], str(data.get("name", "")), at)
            self._show(data["id"], data)
        elif event == "participant_updated" and isinstance(data.get("id"), str):
            if data["id"] not in self._present:  # a viewer given the floor: news to us
                self._joined(data["id"], str(data.get("name", "")), at)
            self._show(data["id"], data)
        elif event == "participant_left" and isinstance(data.get("id"), str):
            self._left(data["id"], at)
        elif event == "speaking":
            self._speakers(data, at)
        elif event == "chat" and isinstance(data.get("from"), str):
            text = str(data.get("text", ""))
            self._timeline(lambda t: t.chat(data["from"], str(data.get("name", "")), text, at))
        elif event == "stage":
            self._stage(data)
        elif event == "recording" and data.get("on") is False and not self.stage_only:
            return "stopped"
        elif event == "ended":
            return "ended"
        return ""

    async def _answer(self, data: dict[str, Any]) -> None:
        assert self._receiving is not None and self._link is not None
        tracks = data.get("tracks")
        if not isinstance(data.get("sdp"), str) or not isinstance(tracks, dict):
            return
        answer = await self._receiving.answer(data["sdp"], tracks)
        await self._link.call("subscribe_answer", {"sdp": answer})

    def _joined(self, participant: str, name: str, at: float) -> None:
        self._present[participant] = name
        self._timeline(lambda t: t.joined(participant, name, at))

    def _stage(self, data: dict[str, Any]) -> None:
        """The stage changed: the broadcast's programme shows whoever has a track on it."""
        tracks = data.get("tracks")
        ids = [t for t in tracks if isinstance(t, str)] if isinstance(tracks, list) else []
        self._on_stage = {t.partition("/")[0] for t in ids}
        if self.stage_only:
            for participant, name in list(self._present.items()):
                self._show(participant, {"name": name})

    def _show(self, participant: str, person: dict[str, Any]) -> None:
        """In the programme's layout: everyone but broadcast viewers (who have no picture to
        show) — a viewer given the floor appears when their role changes; in the broadcast's
        programme, those on the stage."""
        if self.stage_only:
            shown = participant in self._on_stage and participant in self._present
        else:
            shown = person.get("role") != "viewer" and participant in self._present
        if shown and participant not in self._shown:
            self._shown.add(participant)
            name = self._present[participant]
            self._program(lambda p: p.join(participant, name))
        elif not shown and participant in self._shown:
            self._shown.discard(participant)
            self._program(lambda p: p.leave(participant))
        role = person.get("role")
        if isinstance(role, str) and participant in self._present:
            before = self._roles.get(participant)
            self._roles[participant] = role
            if before != role and (before is not None or role == "viewer"):
                # A re-render leaves viewers out, as the live programme does.
                self._timeline(lambda t: t.role(participant, role))
        camera = person.get("camera")
        if isinstance(camera, bool):
            # Only a change counts: a publisher that never tells its state (OBS, a tool)
            # says "off" from the start while its pictures come.
            was = self._cameras.get(participant)
            self._cameras[participant] = camera
            if was is not None and was != camera:
                self._program(lambda p: p.camera(participant, camera))

    def _left(self, participant: str, at: float) -> None:
        if self._present.pop(participant, None) is None:
            return
        self._cameras.pop(participant, None)
        self._roles.pop(participant, None)
        if participant in self._speaking:
            self._speaking.discard(participant)
            self._timeline(lambda t: t.speaking(participant, False, at))
        self._timeline(lambda t: t.left(participant, at))
        if participant in self._shown:
            self._shown.discard(participant)
            self._program(lambda p: p.leave(participant))

    def _speakers(self, data: dict[str, Any], at: float) -> None:
        names = data.get("speaking")
        now = {s for s in names if isinstance(s, str)} if isinstance(names, list) else set()
        changes = [(p, True) for p in sorted(now - self._speaking)]
        changes += [(p, False) for p in sorted(self._speaking - now)]
        for participant, on in changes:
            self._timeline(partial(Timeline.speaking, participant=participant, on=on, t=at))
        self._speaking = now
        active = data.get("active")
        active = active if isinstance(active, str) else None
        if active != self._active:
            self._active = active
            self._program(lambda p: p.speaking(active))

    def _track_changed(self, track: TrackInfo, on: bool) -> None:
        if track.source == "camera":
            self._program(lambda p: p.camera(track.participant, on))
        if track.source == "screen":
            self._timeline(lambda t: t.screen(track.participant, on))
            self._program(lambda p: p.screen(track.participant, on))

    # errors that stop a part, not the recording

    def failed(self, message: str) -> None:
        """A track (or the timeline, or the programme) failed: shown in egress.json."""
        logger.warning("%s", message)
        self.errors.append(message)
        write_state(self.directory, "recording", self.said())

    def said(self, last: str = "") -> str:
        """What failed, for egress.json: every distinct problem (the first ones and the
        latest when there are many), then `last`; the server shows it through any render."""
        problems = list(dict.fromkeys([*self.errors, last] if last else self.errors))
        if len(problems) > SAID:
            problems = [*problems[: SAID // 2], "…", *problems[-(SAID - SAID // 2) :]]
        return "; ".join(problems)

    def _timeline(self, write: Callable[[Timeline], object]) -> None:
        if self.capture is None:
            return
        try:
            write(self.capture.timeline)
        except RecordingError as error:
            self.failed(f"timeline: {error.message}")

    def _program(self, change: Callable[[LiveProgramme], object]) -> None:
        if self.programme is None:
            return
        try:
            change(self.programme)
        except Exception as error:
            logger.exception("the programme failed")
            self.failed(f"programme: {error}")

    def close(self, reason: str) -> None:
        """Close every track file and the timeline (recording_stopped)."""
        if self.capture is not None:
            capture, self.capture = self.capture, None
            try:
                capture.close(reason)
            except RecordingError as error:
                self.failed(error.message)


async def record(args: argparse.Namespace) -> int:
    """The process's work, holding the directory's lock: record, finish, and say how it went
    in egress.json."""
    directory = Path(args.dir)
    try:
        await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        with lifeline.holding(directory, wait=2.0):
            return await _record(args, directory)
    except lifeline.Busy as busy:
        write_state(directory, "failed", str(busy))
        return 1
    except OSError as error:
        write_state(directory, "failed", f"cannot write the recording: {_plain(error)}")
        return 1


def _plain(error: OSError) -> str:
    """An OS error without the server's paths (they reach the people in the room)."""
    name = Path(str(error.filename)).name if error.filename else ""
    reason = os.strerror(error.errno) if error.errno else str(error)
    return f"{reason} ({name})" if name else reason


async def _record(args: argparse.Namespace, directory: Path) -> int:
    token = args.token or os.environ.get(TOKEN_VARIABLE, "")
    if not token:
        write_state(directory, "failed", "no recorder token (--token or $VECHE_RECORDER_TOKEN)")
        return 1
    addresses = tuple(a.strip() for a in args.rtc_addresses.split(",") if a.strip())
    programme = make_programme(directory, args)
    composing: asyncio.Future[Any] | None = None

    def start_programme() -> None:
        nonlocal composing
        if programme is not None and composing is None:
            if not args.stage:  # a recording's time 0 is its timeline's recording_started
                programme.begin()  # (the broadcast's starts at once: players are waiting)
            composing = asyncio.ensure_future(programme.run())
            composing.add_done_callback(lambda done: _programme_stopped(recorder, done))

    recorder = Recorder(
        args.url,
        token,
        directory,
        ice.IceSettings(host_addresses=addresses),
        programme,
        on_start=start_programme,
        stage_only=args.stage,
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, recorder.stop, "stopped")
    # SIGHUP is the kernel's word that the server died (lifeline.die_with_parent).
    loop.add_signal_handler(signal.SIGHUP, recorder.stop, "server_gone")
    watch = asyncio.ensure_future(_watch_parent(recorder, os.getppid()))
    if programme is None:
        recorder.errors.append("the live programme could not be started")
    try:
        reason = await recorder.run()
    except (Refused, OSError, TimeoutError) as error:
        message = error.message if isinstance(error, Refused) else str(error) or "timed out"
        write_state(directory, "failed", f"cannot join the meeting: {message}")
        await _abandon(programme, composing)
        return 1
    except Exception as error:
        logger.exception("the recording failed")
        recorder.close("failed")
        await _abandon(programme, composing)
        write_state(directory, "failed", recorder.said(f"{type(error).__name__}: {error}"))
        return 1
    finally:
        watch.cancel()
    write_state(directory, "finishing", recorder.said())
    recorder.close(reason)
    if reason == "server_gone":
        # The tracks are closed, whole; the next server renders the programme from them at
        # once, so the live one is not finished: this process leaves now, lock and all.
        write_state(directory, "failed", recorder.said("the server stopped while recording"))
        logger.info("the server is gone: tracks closed, programme left to the recovery")
        return 1
    if programme is not None and composing is not None:
        try:
            await programme.finish()
            await composing
        except Exception as error:
            logger.exception("the programme could not be finished")
            write_state(directory, "failed", recorder.said(f"programme: {error}"))
            return 1
    write_state(directory, "done", recorder.said())
    logger.info("recording done (%s)", reason)
    return 0


def make_programme(directory: Path, args: argparse.Namespace) -> LiveProgramme | None:
    """The live compositor; None (tracks only) when it cannot even open its files: the tracks
    are the source of truth, and the programme can be rendered from them later."""
    try:
        return Compositor(directory, size=args.size, fps=args.fps, hls=not args.no_hls)
    except RecordingError as error:
        logger.error("no live programme: %s", error.message)
        return None


def _programme_stopped(recorder: Recorder, done: "asyncio.Future[Any]") -> None:
    """The programme's clock stopped before the end (a write error): the tracks go on."""
    if not done.cancelled() and done.exception() is not None:
        recorder.failed(f"programme: {done.exception()}")


async def _abandon(programme: Any, composing: "asyncio.Future[Any] | None") -> None:
    if programme is not None and composing is not None:
        with contextlib.suppress(Exception):
            await programme.finish()
        with contextlib.suppress(BaseException):
            await composing


async def _watch_parent(recorder: Recorder, parent: int) -> None:
    """The server that started us is gone (killed): finish the files rather than record on
    alone; the server finds the recording when it starts again."""
    while True:
        await asyncio.sleep(PARENT_CHECK)
        if os.getppid() != parent:
            recorder.stop("server_gone")
            return


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("size is WIDTHxHEIGHT, e.g. 640x360") from None
    if not (16 <= width <= 3840 and 16 <= height <= 2160) or width % 2 or height % 2:
        raise argparse.ArgumentTypeError("size must be even, 16x16 to 3840x2160")
    return width, height


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m recording.egress", description=__doc__)
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--token", default="", help=f"recorder token (or ${TOKEN_VARIABLE})")
    parser.add_argument("--dir", required=True, help="the recording directory")
    parser.add_argument("--size", type=_size, default=(640, 360), help="programme WxH")
    parser.add_argument("--fps", type=int, default=25, choices=range(1, 61), metavar="1-60")
    parser.add_argument("--no-hls", action="store_true", help="no HLS segments")
    parser.add_argument(
        "--stage", action="store_true", help="the broadcast's programme: the stage, no tracks"
    )
    parser.add_argument(
        "--rtc-addresses", default="", help="local addresses for ICE (comma-separated)"
    )
    return parser.parse_args(argv)


def standby() -> list[str]:
    """`--standby`: started ahead by the server with everything imported (1-2 s of a busy
    machine's time), wait for the job: one JSON line on stdin, {"argv": [...], "token": str,
    "log": path}. The output then goes to the job's log. Returns the job's arguments; exits when
    stdin closes without a job (the server stopped)."""
    line = sys.stdin.readline()
    if not line.strip():
        sys.exit(0)
    job = json.loads(line)
    os.environ[TOKEN_VARIABLE] = str(job["token"])
    log = os.open(str(job["log"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for fd in (1, 2):
        os.dup2(log, fd)
    os.close(log)
    return [str(arg) for arg in job["argv"]]


def main(argv: Sequence[str] | None = None) -> int:
    # Told (SIGHUP) when the server that started us dies: a new server may recover this very
    # recording; the tracks are closed within a moment, under the directory's lock.
    lifeline.die_with_parent(signal.SIGHUP)
    argv = sys.argv[1:] if argv is None else argv
    if list(argv) == ["--standby"]:
        argv = standby()
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return asyncio.run(record(args))


if __name__ == "__main__":
    sys.exit(main())
