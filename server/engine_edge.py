"""The edge of socket.io's transport: what Engine.IO and python-socketio must not be left to do
alone with a hostile or broken client (docs/security.md, "Limits and settings — HTTP and API").

Frames python-socketio cannot dispatch close their connection with one log line; Engine.IO's
own complaints become one line a second; a polling body must announce a bounded length."""

import logging
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from aiohttp import web

from server.context import METRICS
from server.metrics import Metrics
from web.pages import SOCKETIO_PATH

# The largest Engine.IO message (websocket) or polling body accepted.
ENGINE_BUFFER = 64 * 1024

__all__ = ["ENGINE_BUFFER", "SOCKETIO_PATH", "EngineLog", "SignalingServer", "engine_edges"]

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class SignalingServer(socketio.AsyncServer):  # type: ignore[misc]
    """socket.io with a check on every frame before it is dispatched: python-socketio raises
    on a frame it cannot decode, and Engine.IO then logs two tracebacks and keeps the
    connection. Here such a frame closes its connection with one short log line."""

    def __init__(self, metrics: Metrics, **options: Any) -> None:
        super().__init__(**options)
        self._metrics = metrics

    async def _handle_eio_message(self, eio_sid: str, data: object) -> None:
        # A binary attachment announced by an earlier (checked) frame passes through.
        if eio_sid not in self._binary_packet:
            problem = self._malformed(eio_sid, data)
            if problem:
                request = self.environ.get(eio_sid, {}).get("aiohttp.request")
                address = getattr(request, "remote", None) or "unknown"
                log.warning(
                    "closed a signaling connection from %s: malformed socket.io frame (%s)",
                    address,
                    problem,
                )
                self._metrics.error("malformed_frame")
                transport = self.eio.sockets.get(eio_sid)
                await self.eio.disconnect(eio_sid)
                if transport is not None:
                    # Engine.IO sends its close packet but keeps the websocket open until the
                    # client answers or the ping timeout (45 s): end its writer, which closes it.
                    await transport.queue.put(None)
                return
        await super()._handle_eio_message(eio_sid, data)

    def _malformed(self, eio_sid: str, data: object) -> str:
        """Why python-socketio could not dispatch `data` ('' when it can)."""
        if not isinstance(data, str):
            return "binary data that no frame announced"
        try:
            frame = self.packet_class(encoded_packet=data)
        except Exception as error:  # whatever the decoder raises, the frame is unreadable
            return f"{type(error).__name__}"[:80]
        kind = frame.packet_type
        if kind in (socketio.packet.CONNECT, socketio.packet.DISCONNECT):
            return ""
        if kind not in _DISPATCHED:
            return f"packet type {kind}"
        if kind in (socketio.packet.BINARY_EVENT, socketio.packet.BINARY_ACK) and not (
            self.manager.sid_from_eio_sid(eio_sid, frame.namespace or "/")
        ):
            return "binary frame outside a namespace"
        if not isinstance(frame.data, list):
            return "the data is not an array"
        if kind in (socketio.packet.EVENT, socketio.packet.BINARY_EVENT) and not (
            frame.data and isinstance(frame.data[0], str)
        ):
            return "an event without a name"
        return ""


class EngineLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Engine.IO's log. What a client's bad input makes Engine.IO log with a traceback (an
    unknown packet type, a payload it cannot decode) becomes one warning line, at most one a
    second, the others counted; its chatter below warnings is dropped."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(logging.getLogger(__name__ + ".engine"), {})
        self._metrics = metrics
        self._last = -1.0
        self._quiet = 0

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if level < logging.WARNING:
            return
        kwargs.pop("exc_info", None)
        super().log(level, msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self._metrics.error("malformed_frame")
        now = time.monotonic()
        if now - self._last < 1.0:
            self._quiet += 1
            return
        self._last = now
        error = sys.exc_info()[1]
        quiet, self._quiet = self._quiet, 0
        self.logger.warning(
            "engine.io: %s (%s: %.80s)%s",
            str(msg) % args if args else msg,
            type(error).__name__,
            error,
            f"; {quiet} more in the last seconds" if quiet else "",
        )


_DISPATCHED = (
    socketio.packet.EVENT,
    socketio.packet.ACK,
    socketio.packet.BINARY_EVENT,
    socketio.packet.BINARY_ACK,
)


@web.middleware
async def engine_edges(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What the Engine.IO endpoint must not be left to do alone.

    Its long-polling POST reads the body it is told (Content-Length) and can be left waiting on
    a body that never ends: a body without a length, or longer than the engine accepts, is
    refused before it is read, and the connection is closed. And a websocket message it cannot
    decode raises out of its handler after the upgrade: the connection is closed with one log
    line (an HTTP error answer would be written into the websocket)."""
    if request.path != SOCKETIO_PATH:
        return await handler(request)
    if request.method == "POST":
        length = request.content_length
        if length is None or length > ENGINE_BUFFER:
            request.app[METRICS].error("too_large")
            response = web.json_response(
                {
                    "error": {
                        "code": "too_large",
                        "message": f"a polling body needs a Content-Length of at most "
                        f"{ENGINE_BUFFER} bytes",
                    }
                },
                status=413,
            )
            response.force_close()
            return response
    try:
        return await handler(request)
    except Exception as error:  # whatever the engine's decoder raises: the client's input
        log.warning(
            "closed a signaling connection from %s: malformed Engine.IO packet (%s: %.80s)",
            request.remote,
            type(error).__name__,
            error,
        )
        request.app[METRICS].error("malformed_frame")
        if request.transport is not None:
            request.transport.close()
        response = web.Response(status=400)
        response.force_close()
        return response
