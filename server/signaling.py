"""socket.io signaling: the /meeting namespace attached to the app (protocol: docs/protocol.md)."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import socketio
from aiohttp import web

from media.sfu import Sfu
from server.context import LIVE, METRICS, SETTINGS, STORE, TOKENS
from server.engine_edge import (
    ENGINE_BUFFER,
    SOCKETIO_PATH,
    EngineLog,
    SignalingServer,
    engine_edges,
)
from server.namespace import MeetingNamespace
from server.payloads import MAX_SDP_PAYLOAD
from server.rtc import ice_settings

# Engine.IO drops a connection whose message exceeds ENGINE_BUFFER (server/engine_edge.py);
# payloads between MAX_PAYLOAD and it get a `too_large` reply instead, which a client can act on.
assert ENGINE_BUFFER > MAX_SDP_PAYLOAD

# The media clock: speaking detection every tick, links and traffic figures every LINK_TICKS.
TICK = 0.2
LINK_TICKS = 5

log = logging.getLogger(__name__)

SIO = web.AppKey("sio", socketio.AsyncServer)
SFU = web.AppKey("sfu", Sfu)
NAMESPACE = web.AppKey("namespace", MeetingNamespace)


def setup_signaling(app: web.Application) -> None:
    settings = app[SETTINGS]
    manager = socketio.AsyncRedisManager(settings.redis_url) if settings.redis_url else None
    sio = SignalingServer(
        app[METRICS],
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins=[settings.base_url],
        max_http_buffer_size=ENGINE_BUFFER,
        logger=False,
        engineio_logger=EngineLog(app[METRICS]),
    )
    namespace = MeetingNamespace(
        settings, lambda: app[STORE], app[TOKENS], app[METRICS], lambda: app[SFU]
    )
    sio.register_namespace(namespace)
    sio.attach(app, socketio_path=SOCKETIO_PATH)
    app.middlewares.append(engine_edges)
    app[SIO] = sio
    app[LIVE] = namespace
    app[NAMESPACE] = namespace

    metrics = app[METRICS]
    metrics.watch(metrics.meetings_live, namespace.meetings_live)
    metrics.watch(metrics.participants.labels(state="room"), namespace.seated)
    metrics.watch(metrics.participants.labels(state="lobby"), namespace.waiting)

    async def stop(app: web.Application) -> None:
        await namespace.stop()
        # Close the transports too: once aiohttp is shutting down it no longer reads from them,
        # so clients would otherwise wait for a close handshake that cannot finish.
        for transport in list(sio.eio.sockets.values()):
            await transport.close(wait=False)
        await sio.shutdown()

    app.on_shutdown.append(stop)
    app.cleanup_ctx.append(_manager_lifetime)
    app.cleanup_ctx.append(_sfu_lifetime)


async def _sfu_lifetime(app: web.Application) -> AsyncIterator[None]:
    """The process's SFU and its clock; at shutdown (after the rooms have closed) every peer
    connection is closed."""
    sfu = app[SFU] = Sfu(ice_settings(app[SETTINGS]))
    metrics = app[METRICS]
    metrics.watch(metrics.tracks, lambda: sfu.track_count)
    clock = asyncio.ensure_future(_media_clock(app[NAMESPACE], sfu, app))
    yield
    clock.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await clock
    await sfu.close()


async def _media_clock(namespace: MeetingNamespace, sfu: Sfu, app: web.Application) -> None:
    metrics = app[METRICS]
    counted = (0, 0)
    ticks = 0
    loop = asyncio.get_running_loop()
    last_links = loop.time()
    while True:
        await asyncio.sleep(TICK)
        ticks += 1
        links = ticks % LINK_TICKS == 0
        now = loop.time()
        try:
            await namespace.media_tick(links, now - last_links)
        except Exception:  # one bad tick must not stop speaking detection for good
            log.exception("media clock tick failed")
        if links:
            last_links = now
            packets, octets = sfu.forwarded()
            metrics.forwarded_packets.inc(max(packets - counted[0], 0))
            metrics.forwarded_bytes.inc(max(octets - counted[1], 0))
            counted = (packets, octets)


async def _manager_lifetime(app: web.Application) -> AsyncIterator[None]:
    yield
    # The Redis manager listens in a task of its own and holds connections: end them with the app.
    manager = app[SIO].manager
    task = getattr(manager, "thread", None)
    if isinstance(task, asyncio.Task):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for name in ("pubsub", "redis"):
        connection = getattr(manager, name, None)
        if connection is not None:
            await connection.aclose()
