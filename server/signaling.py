"""socket.io signaling: the /meeting namespace attached to the app (protocol: docs/protocol.md)."""

import asyncio
import contextlib
from collections.abc import AsyncIterator

import socketio
from aiohttp import web

from server.context import LIVE, METRICS, SETTINGS, STORE, TOKENS
from server.namespace import MeetingNamespace
from server.payloads import MAX_PAYLOAD

# Engine.IO drops a connection whose message exceeds this; payloads between MAX_PAYLOAD and this
# get a `too_large` reply instead, which a client can act on.
ENGINE_BUFFER = 4 * MAX_PAYLOAD

SIO = web.AppKey("sio", socketio.AsyncServer)


def setup_signaling(app: web.Application) -> None:
    settings = app[SETTINGS]
    manager = socketio.AsyncRedisManager(settings.redis_url) if settings.redis_url else None
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        client_manager=manager,
        cors_allowed_origins=[settings.base_url],
        max_http_buffer_size=ENGINE_BUFFER,
        logger=False,
        engineio_logger=False,
    )
    namespace = MeetingNamespace(settings, lambda: app[STORE], app[TOKENS], app[METRICS])
    sio.register_namespace(namespace)
    sio.attach(app)
    app[SIO] = sio
    app[LIVE] = namespace

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
