"""Server CPU per forwarded packet, 1 publisher -> N subscribers (a first measurement).

The SFU runs in this process; the publisher and the N viewers (aiortc test clients) run in a
child process, so the server's CPU time (time.process_time) is its own. Signaling is JSON
lines over the child's stdin/stdout.

    .venv/bin/python -m tests.media_cost 1 10 20 40 --seconds 5
"""

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from media import hooks
from media.forwarder import Forwarder
from media.sfu import Sfu
from tests.media_clients import LOOPBACK, ClientPublisher, ClientViewer
from tests.media_clip import clip


async def _clients() -> None:
    """Child: a publisher and viewers, driven by JSON lines on stdin."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    publisher = ClientPublisher(clip())
    viewers: list[ClientViewer] = []

    def say(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    say({"offer": await publisher.offer()})
    while line := await reader.readline():
        message = json.loads(line)
        if "answer" in message:
            await publisher.accept(message["answer"])
        elif "view" in message:
            viewer = ClientViewer()
            viewers.append(viewer)
            say({"answer": await viewer.answer(message["view"])})
        elif "count" in message:
            say({"received": sum(r.packets for v in viewers for r in v.received.values())})
        elif "stop" in message:
            break
    for viewer in viewers:
        await viewer.close()
    await publisher.close()


async def _measure(subscribers: int, seconds: float) -> dict[str, float]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.media_cost",
        "--clients",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    stdin, stdout = child.stdin, child.stdout

    async def ask(message: dict[str, Any]) -> Any:
        stdin.write((json.dumps(message) + "\n").encode())
        await stdin.drain()
        return json.loads(await stdout.readline())

    sfu = Sfu(LOOPBACK)
    try:
        offer = json.loads(await stdout.readline())["offer"]
        publication, answer = await sfu.publish("pub", offer)
        stdin.write((json.dumps({"answer": answer}) + "\n").encode())
        track_ids = [t.track_id for t in publication.tracks]
        for _ in range(subscribers):
            subscription = sfu.subscribe()
            for track_id in track_ids:
                subscription.add(track_id)
            reply = await ask({"view": await subscription.offer()})
            await subscription.accept(reply["answer"])
        await asyncio.sleep(2.0)  # connections up, first keyframes through

        feeds = [feed for f in sfu.forwarders.values() for feed in f.feeds]
        forwarders = list(sfu.forwarders.values())
        fanout = [_time_fanout(f) for f in forwarders]
        sent_before = sum(feed.packets for feed in feeds)
        in_before = sum(f.packets for f in forwarders)
        received_before = (await ask({"count": True}))["received"]
        cpu_before, wall_before = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        cpu = time.process_time() - cpu_before
        wall = time.monotonic() - wall_before
        forwarded = sum(feed.packets for feed in feeds) - sent_before
        incoming = sum(f.packets for f in forwarders) - in_before
        received = (await ask({"count": True}))["received"] - received_before
        stdin.write(b'{"stop": true}\n')
        await stdin.drain()
    finally:
        await sfu.close()
        await child.wait()
    return {
        "subscribers": subscribers,
        "incoming_per_s": incoming / wall,
        "forwarded_per_s": forwarded / wall,
        "server_cpu_share": cpu / wall,
        "us_per_forwarded": 1e6 * cpu / forwarded if forwarded else float("nan"),
        "delivered": received / forwarded if forwarded else float("nan"),
        "fanout_us": 1e6 * sum(t[0] for t in fanout) / forwarded if forwarded else float("nan"),
    }


def _time_fanout(forwarder: Forwarder) -> list[float]:
    """Accumulate the time spent in the forwarder's fan-out (rewrite, SRTP, sendto)."""
    total = [0.0]
    tap = getattr(forwarder._receiver, hooks.RECEIVER_JITTER_BUFFER)
    inner = tap.on_packet
    clock = time.perf_counter

    def timed(packet: Any) -> None:
        start = clock()
        inner(packet)
        total[0] += clock() - start

    tap.on_packet = timed
    return total


async def _main(counts: list[int], seconds: float) -> None:
    """Print one row per subscriber count; "marginal" is against the run with no subscribers."""
    base = await _measure(0, seconds)
    print(f"no subscribers: server CPU {100 * base['server_cpu_share']:.1f} % (receiving only)")
    print("subs  in/s  fwd/s  server-cpu  us/fwd  marginal us/fwd  fan-out us/fwd  delivered")
    for count in counts:
        r = await _measure(count, seconds)
        extra = r["server_cpu_share"] - base["server_cpu_share"]
        marginal = 1e6 * extra / r["forwarded_per_s"]
        print(
            f"{count:4d} {r['incoming_per_s']:5.0f} {r['forwarded_per_s']:6.0f}"
            f"  {100 * r['server_cpu_share']:8.1f} %  {r['us_per_forwarded']:6.1f}"
            f"  {marginal:15.1f}  {r['fanout_us']:14.1f}  {100 * r['delivered']:8.1f} %"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("subscribers", nargs="*", type=int, default=[1, 5, 10, 20])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients:
        asyncio.run(_clients())
    else:
        asyncio.run(_main(args.subscribers, args.seconds))


if __name__ == "__main__":
    main()
