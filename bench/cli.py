"""`python -m bench`: the load tool's command line."""

import argparse
import asyncio
import contextlib
import json
import logging
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from socketio import exceptions as socketio_errors

from bench import clip, impairment, proc, servers, stats, whip
from bench.run import Plan, Progress, measure
from bench.soak import SoakResult, soak
from bench.stats import Result
from bench.targets import Target, WhipTarget

SERVERS = ("baseline", "janus", "veche", "whip")


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--server",
        choices=SERVERS,
        default="whip",
        help="baseline/janus/veche: start that server here (veche with --url: a running one); "
        "whip: an external WHIP/WHEP server",
    )
    common.add_argument("--url", help="a running Veche server's base URL (--server veche)")
    common.add_argument("--api-key", help="that server's VECHE_API_KEY (--server veche --url)")
    common.add_argument("--whip", help="WHIP URL template, {stream} = p0, p1, ... (--server whip)")
    common.add_argument("--whep", help="WHEP URL template, {stream} as in --whip")
    common.add_argument("--whip-token", help="Bearer token for WHIP")
    common.add_argument("--whep-token", help="Bearer token for WHEP")
    common.add_argument("--server-pid", type=int, help="an external server's pid, for its CPU")
    common.add_argument(
        "--veche-whip",
        action="store_true",
        help="--server veche: publish over WHIP and watch over WHEP (POST /whip|/whep/MEETING) "
        "instead of socket.io; broadcast and sweep only",
    )
    common.add_argument(
        "--impair",
        metavar="SPEC",
        help="--server veche started here: the main process's clients reach it through an "
        "impaired link, e.g. loss=5%%,delay=100ms,rate=300kbit (docs/bench.md)",
    )
    common.add_argument("--codec", choices=clip.CODECS, default="vp8")
    common.add_argument("--bitrate", type=int, default=1_000_000, help="clip video bit/s")
    common.add_argument("--seconds", type=float, default=10, help="steady window per run")
    common.add_argument("--settle", type=float, default=2, help="seconds before the window")
    common.add_argument("--server-cpu", type=int, help="pin a started server to this CPU")
    common.add_argument("--tool-cpu", type=int, help="pin the tool to this CPU")
    common.add_argument("--json", action="store_true", help="also print one JSON line")
    common.add_argument("--no-progress", action="store_true")
    common.add_argument(
        "--no-probe",
        action="store_true",
        help="publish from the main process and measure delay at the load viewers "
        "(by default a source process publishes and its probe viewers measure delay)",
    )

    p = argparse.ArgumentParser(prog="python -m bench", description="Veche's load tool.")
    sub = p.add_subparsers(dest="scenario", required=True)
    b = sub.add_parser("broadcast", parents=[common], help="1 publisher -> M viewers")
    b.add_argument("-m", "--viewers", type=int, default=10)
    b.add_argument(
        "--hls",
        action="store_true",
        help="one HLS player too (Veche): the broadcast programme process's CPU and the time "
        "from the first playlist request to a segment are reported",
    )
    m = sub.add_parser("meeting", parents=[common], help="N participants, all see all")
    m.add_argument("-n", "--participants", type=int, default=4)
    m.add_argument(
        "--record",
        action="store_true",
        help="record the meeting during the window (Veche): the recording process's CPU "
        "and the time from the stop to a playable MP4 are reported",
    )
    s = sub.add_parser("sweep", parents=[common], help="raise M until a broadcast breaks")
    s.add_argument("--start", type=int, default=10)
    s.add_argument("--step", type=int, default=10)
    s.add_argument("--max", type=int, default=100)
    s.add_argument("--max-loss", type=float, default=1.0, help="% of packets")
    s.add_argument("--min-fps", type=float, default=0.95, help="fraction of the clip's rate")
    k = sub.add_parser(
        "soak",
        help="a Veche meeting's life for N minutes; the server's RSS, open files and tasks",
    )
    k.add_argument("--minutes", type=float, default=10.0)
    k.add_argument("--interval", type=float, default=60.0, help="seconds between samples")
    k.add_argument("--url", help="a running Veche server's base URL (default: start one)")
    k.add_argument("--api-key", help="that server's VECHE_API_KEY")
    k.add_argument("--server-pid", type=int, help="that server's pid (same machine)")
    k.add_argument("--codec", choices=clip.CODECS, default="vp8")
    k.add_argument("--json", action="store_true", help="also print one JSON line")
    return p


async def run_soak(args: argparse.Namespace) -> SoakResult:
    """The soak (bench/soak.py) against a Veche server started here or given by --url."""
    media = clip.load(clip.ClipSpec(codec=args.codec, seconds=4.0))
    async with contextlib.AsyncExitStack() as stack:
        if args.url:
            if not args.api_key or not args.server_pid:
                raise SystemExit("soak --url needs --api-key and --server-pid")
            url, key, pid = args.url, args.api_key, args.server_pid
        else:
            key = secrets.token_urlsafe(24)
            started = await stack.enter_async_context(servers.veche(None, key))
            url, pid = started.url, started.pid
        from bench.veche import VecheTarget

        target = VecheTarget(url, key)
        stack.push_async_callback(target.close)
        await target.create_meeting()
        return await soak(target, pid, media, args.minutes * 60, args.interval)


@dataclass
class Running:
    target: Target
    pid: int | None
    relay: impairment.Relay | None = None  # --impair


@contextlib.asynccontextmanager
async def server(args: argparse.Namespace, plan: Plan) -> AsyncIterator[Running]:
    if args.impair and (args.server != "veche" or args.url or args.veche_whip):
        raise SystemExit("--impair: --server veche started here, over socket.io")
    if args.impair and plan.scenario == "meeting" and not args.no_probe:
        # The source process holds every participant of a probed meeting: none would cross.
        raise SystemExit("--impair with a meeting needs --no-probe")
    if args.server == "baseline":
        async with servers.baseline(args.server_cpu) as started:
            endpoint = f"{started.url}/{{kind}}/{{stream}}"
            target = WhipTarget(
                "baseline",
                whip.Endpoint(endpoint.replace("{kind}", "whip")),
                whip.Endpoint(endpoint.replace("{kind}", "whep")),
            )
            try:
                yield Running(target, started.pid)
            finally:
                await target.close()
    elif args.server == "janus":
        from bench.janus import launch

        async with launch.janus(args.server_cpu) as started:
            client = await launch.client(started, plan.publishers, args.codec)
            try:
                yield Running(client, started.pid)
            finally:
                await client.close()
    elif args.server == "veche":
        async with _veche(args, plan) as running:
            yield running
    else:
        if not args.whip or not args.whep:
            raise SystemExit("--server whip needs --whip and --whep URL templates")
        target = WhipTarget(
            "whip",
            whip.Endpoint(args.whip, args.whip_token),
            whip.Endpoint(args.whep, args.whep_token),
        )
        try:
            yield Running(target, args.server_pid)
        finally:
            await target.close()


@contextlib.asynccontextmanager
async def _veche(args: argparse.Namespace, plan: Plan) -> AsyncIterator[Running]:
    from bench.veche import VecheTarget

    link = impairment.parse(args.impair) if args.impair else None
    connections = 2 * (plan.publishers + len(plan.watches()))
    ports = impairment.free_port_range(impairment.ports_for(connections)) if link else None
    async with contextlib.AsyncExitStack() as stack:
        if args.url:
            if not args.api_key:
                raise SystemExit("--server veche --url needs --api-key")
            url, key, pid = args.url, args.api_key, args.server_pid
        else:
            key = secrets.token_urlsafe(24)
            started = await stack.enter_async_context(servers.veche(args.server_cpu, key, ports))
            url, pid = started.url, started.pid
        target = VecheTarget(url, key)
        stack.push_async_callback(target.close)
        await target.create_meeting()
        relay = None
        if link is not None and ports is not None:
            relay = await stack.enter_async_context(impairment.open_relay(ports, link))
            target.detour = impairment.Detour()
        if args.veche_whip:
            if args.scenario == "meeting":
                raise SystemExit("--veche-whip: broadcast and sweep only (one WHIP publisher)")
            # The hall's way in: a speaker's roster token for WHIP, a viewer link for WHEP.
            publish, watch = await target.whip_whep_endpoints()
            whip_target = WhipTarget("veche-whip", publish, watch)
            stack.push_async_callback(whip_target.close)
            yield Running(whip_target, pid)
            return
        yield Running(target, pid, relay)


def plans(args: argparse.Namespace) -> list[Plan]:
    window = {"seconds": args.seconds, "settle": args.settle}
    if args.scenario == "broadcast":
        return [Plan("broadcast", 1, args.viewers, hls=args.hls, **window)]
    if args.scenario == "meeting":
        n = args.participants
        return [Plan("meeting", n, n - 1, record=args.record, **window)]
    return [Plan("broadcast", 1, m, **window) for m in range(args.start, args.max + 1, args.step)]


async def run(args: argparse.Namespace) -> list[Result]:
    media = clip.load(clip.ClipSpec(codec=args.codec, bitrate=args.bitrate))
    results: list[Result] = []
    for plan in plans(args):
        result = await _measure(args, plan, media)
        sweep = args.scenario == "sweep"
        if sweep and not result.held(args.max_loss, args.min_fps) and result.disturbed():
            # A step lost to other work on the tool's core says nothing of the server: once
            # more before the sweep stops there.
            first = result
            result = await _measure(args, plan, media)
            result.notes.insert(
                0,
                f"second try: the first ({first.loss_percent:.2f}% loss, "
                f"{first.video_fps_min:.1f} fps min) was disturbed on the tool's side",
            )
        results.append(result)
        if sweep and not result.held(args.max_loss, args.min_fps):
            break
    return results


async def _measure(args: argparse.Namespace, plan: Plan, media: clip.Clip) -> Result:
    label = f"{args.server} {plan.scenario} {plan.publishers}->{len(plan.watches())}"
    progress = Progress(label, enabled=not args.no_progress)
    async with server(args, plan) as running:
        result = await measure(
            running.target, plan, media, running.pid, progress, probe=not args.no_probe
        )
        if running.relay is not None:
            result.notes.append(running.relay.summary())
    result.server = running.target.name
    return result


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.scenario == "soak":
        return _soak_main(args)
    proc.pin_self(args.tool_cpu)
    try:
        results = asyncio.run(run(args))
    except (
        OSError,
        RuntimeError,
        ValueError,
        aiohttp.ClientError,
        whip.WhipError,
        socketio_errors.SocketIOError,
    ) as exc:
        # JanusError, VecheError, JanusMissing and start-up failures are among these.
        print(f"python -m bench: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(stats.table(results))
    extra = {}
    if args.scenario == "sweep":
        held = [r.viewers for r in results if r.held(args.max_loss, args.min_fps)]
        largest = max(held, default=0)
        extra["largest_m_held"] = largest
        print(f"largest M held: {largest}")
        best = next((r for r in results if r.viewers == largest), None)
        if best is not None and best.server_cpu_percent_per_viewer:
            per_core = 100 / best.server_cpu_percent_per_viewer
            extra["viewers_per_core_implied"] = round(per_core)
            print(f"viewers per core implied by the cost per viewer at M={largest}: {per_core:.0f}")
    if args.json:
        print(stats.json_line(results, **extra))
    return 0


def _soak_main(args: argparse.Namespace) -> int:
    try:
        result = asyncio.run(run_soak(args))
    except (OSError, RuntimeError, ValueError, aiohttp.ClientError) as exc:
        print(f"python -m bench soak: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.as_json()))
    return 0 if result.held() else 1


if __name__ == "__main__":
    sys.exit(main())
