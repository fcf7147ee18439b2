"""The source process: the publishers and one probe viewer per publisher, apart from the load.

A hundred viewers in one event loop take milliseconds to go through each frame's copies, and a
datagram arriving meanwhile waits in its socket: measured there, "added delay" is mostly the
tool's. The publishers and one probe viewer of each run here instead, in a process of their own
that is idle between packets, so the probe's delay is the server's (plus the kernel's). The load
viewers stay in the main process and only count packets.

The main process starts `python -m bench.source CONFIG` and talks JSON lines over stdin/stdout:
the source prints `{"feeds": [...]}` once published, then `{"ready": ...}` once the probes
receive video; it answers `window` (start counting) with `{"ok": true}` and `report` with the
probes' counts and delays since `window`; end of input makes it leave and exit.
"""

import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench import clip, proc
from bench.peers import Publisher, Snapshot, Viewer, decoder_threads
from bench.targets import Feed, Leave, TargetSpec, open_target
from bench.veche import VecheTarget

READY_TIMEOUT = 15.0
REPORT_LIMIT = 1 << 24  # bytes in one line from the source process


@dataclass(frozen=True)
class Config:
    target: TargetSpec
    codec: str
    bitrate: int
    publishers: int
    together: bool = False  # each publisher also watches all others (a Veche meeting)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "Config":
        data = json.loads(text)
        return cls(TargetSpec(**data.pop("target")), **data)


@dataclass
class Report:
    probes: int
    # per probe, what it received since `window`: {"video": Snapshot, "audio": Snapshot} as dicts
    received: list[dict[str, dict[str, int]]]
    delays_ms: list[float]
    unmatched: int
    lag_ms_max: float  # the source process's own worst event-loop stall
    decoder_threads: int
    seconds: float = 0.0  # from `window` to `report` as the source process saw it
    cpu_seconds: float = 0.0  # the source process's CPU time in that span


class SourceProcess:
    """The main process's handle on the source process."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self.feeds: list[Feed] = []
        self.join_ms: list[float] = []

    @classmethod
    async def start(cls, config: Config) -> "SourceProcess":
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.source",
            config.to_json(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            # a report holds every probe's delays: a meeting's run well above 64 KiB
            limit=REPORT_LIMIT,
        )
        source = cls(process)
        try:
            feeds = await source._read(60)
            source.feeds = [Feed(f["stream"], f["feed_id"]) for f in feeds["feeds"]]
        except BaseException:
            await source.close()
            raise
        return source

    async def ready(self) -> None:
        self.join_ms = list((await self._read(READY_TIMEOUT + 30))["ready"])

    async def window(self) -> None:
        await self._ask("window")

    async def report(self) -> Report:
        return Report(**await self._ask("report"))

    async def _ask(self, command: str) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(command.encode() + b"\n")
        await self._process.stdin.drain()
        return await self._read(10)

    async def _read(self, limit: float) -> dict[str, Any]:
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), limit)
        if not line:
            code = await self._process.wait()
            raise RuntimeError(f"the source process exited with code {code}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"the source process failed: {reply['error']}")
        return reply

    async def close(self) -> None:
        if self._process.stdin is not None and not self._process.stdin.is_closing():
            self._process.stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), 15)
        except TimeoutError:
            self._process.kill()
            await self._process.wait()


async def serve(config: Config) -> None:
    media = clip.load(clip.ClipSpec(codec=config.codec, bitrate=config.bitrate))
    target = await open_target(config.target)
    publishers = [Publisher(media) for _ in range(config.publishers)]
    probes: list[Viewer] = []
    leaves: list[Leave] = []
    lags: list[float] = []
    watcher = asyncio.create_task(_watch_lag(lags))
    try:
        try:
            feeds: list[Feed] = []
            for index, publisher in enumerate(publishers):
                if isinstance(target, VecheTarget) and config.together:
                    probes.append(Viewer(None, media.codec))
                    feed, leave = await target.participate(f"p{index}", publisher, probes[-1])
                else:
                    feed, leave = await target.publish(f"p{index}", publisher)
                feeds.append(feed)
                leaves.append(leave)
            _say({"feeds": [asdict(f) for f in feeds]})
            await asyncio.sleep(0.5)
            for publisher, feed in zip(publishers, feeds, strict=True):
                if config.together:
                    break
                probe = Viewer(publisher.times, media.codec)
                probes.append(probe)
                leaves.append(await target.watch(feed, probe))
        except Exception as exc:
            _say({"error": f"{type(exc).__name__}: {exc}"})
            return
        for _ in range(round(READY_TIMEOUT / 0.05)):
            if all(p.first_frame_at for p in probes):
                break
            await asyncio.sleep(0.05)
        joins = [(p.first_frame_at - p.joined_at) * 1000 for p in probes if p.first_frame_at]
        _say({"ready": joins})
        await _commands(probes, lags)
    finally:
        watcher.cancel()
        await asyncio.gather(*(leave() for leave in leaves), return_exceptions=True)
        await asyncio.gather(*(p.close() for p in probes), return_exceptions=True)
        await asyncio.gather(*(p.close() for p in publishers), return_exceptions=True)
        await target.close()


async def _commands(probes: list[Viewer], lags: list[float]) -> None:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    start = [_count(p) for p in probes]
    since, cpu = time.monotonic(), proc.own_cpu()
    while line := (await reader.readline()).strip():
        if line == b"window":
            for probe in probes:
                probe.delays.clear()
                probe.unmatched = 0
            lags.clear()
            start = [_count(p) for p in probes]
            since, cpu = time.monotonic(), proc.own_cpu()
            _say({"ok": True})
        elif line == b"report":
            end = [_count(p) for p in probes]
            report = Report(
                probes=len(probes),
                received=[
                    {kind: _minus(e[kind], s[kind]) for kind in ("video", "audio")}
                    for s, e in zip(start, end, strict=True)
                ],
                delays_ms=[round(d * 1000, 3) for p in probes for d in p.delays],
                unmatched=sum(p.unmatched for p in probes),
                lag_ms_max=max(lags, default=0.0),
                decoder_threads=decoder_threads(),
                seconds=time.monotonic() - since,
                cpu_seconds=proc.own_cpu() - cpu,
            )
            _say(asdict(report))
        else:
            _say({"error": f"unknown command {line[:40]!r}"})


def _count(viewer: Viewer) -> dict[str, Snapshot]:
    return {"video": viewer.snapshot("video"), "audio": viewer.snapshot("audio")}


def _minus(end: Snapshot, start: Snapshot) -> dict[str, int]:
    # counters since `window`; `streams` is a count of streams, not a counter
    return {k: v if k == "streams" else v - getattr(start, k) for k, v in asdict(end).items()}


async def _watch_lag(lags: list[float]) -> None:
    while True:
        start = time.monotonic()
        await asyncio.sleep(0.01)
        lags.append((time.monotonic() - start - 0.01) * 1000)


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.source CONFIG-JSON (started by python -m bench)")
    asyncio.run(serve(Config.from_json(sys.argv[1])))


if __name__ == "__main__":
    main()
