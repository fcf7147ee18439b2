"""The egress's signaling: a socket.io client of the server's `/meeting` namespace.

It speaks the protocol any client speaks (docs/protocol.md): `join` with a token, then the
room's events arrive in order. Events are queued with their arrival time, so that the
timeline keeps when something happened even while the egress is busy answering an offer.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import socketio

logger = logging.getLogger(__name__)

NAMESPACE = "/meeting"
DISCONNECTED = "disconnect"  # the queue's event when the connection is gone


class Refused(Exception):
    """The server refused an event (its ack was an error)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Received:
    """One server event, as it came."""

    event: str
    data: Any
    at: float  # time.time() on arrival


class MeetingLink:
    """One connection to `/meeting`: `open`, `join`, then `next()` for each event."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self._token = token
        self._sio = socketio.AsyncClient(reconnection=False)
        self._sio.on("*", self._collect, namespace=NAMESPACE)
        self._sio.on("disconnect", self._disconnected, namespace=NAMESPACE)
        self._events: asyncio.Queue[Received] = asyncio.Queue()
        self.closed = False

    async def _collect(self, event: str, data: Any = None) -> None:
        await self._events.put(Received(event, data, time.time()))

    async def _disconnected(self, reason: Any = None) -> None:
        await self._events.put(Received(DISCONNECTED, str(reason or ""), time.time()))

    async def join(self, wait: float = 10.0) -> dict[str, Any]:
        """Connect and join with the token; returns the `joined` snapshot. Raises Refused
        when the server says no, OSError/TimeoutError when it cannot be reached."""
        try:
            await self._sio.connect(
                self.url, namespaces=[NAMESPACE], transports=["websocket"], wait_timeout=wait
            )
        except socketio.exceptions.ConnectionError as error:
            raise OSError(f"cannot connect to {self.url}: {error}") from None
        await self.call("join", {"token": self._token}, wait)
        while True:
            received = await asyncio.wait_for(self._events.get(), wait)
            if received.event == "joined" and isinstance(received.data, dict):
                return received.data
            if received.event == DISCONNECTED:
                raise OSError("the server closed the connection while joining")

    async def call(self, event: str, data: dict[str, Any], wait: float = 10.0) -> Any:
        """Send an event and return its ack; Refused for an error ack."""
        ack = await self._sio.call(event, data, namespace=NAMESPACE, timeout=wait)
        if isinstance(ack, dict) and isinstance(ack.get("error"), dict):
            error = ack["error"]
            raise Refused(str(error.get("code", "")), str(error.get("message", "")))
        return ack

    async def next(self) -> Received:
        """The next event the server sent (DISCONNECTED once the connection is gone)."""
        return await self._events.get()

    async def close(self, leave: bool = True) -> None:
        """Leave (no grace period for a recorder; not when the meeting is over) and
        disconnect."""
        if self.closed:
            return
        self.closed = True
        if leave and self._sio.connected:
            with contextlib.suppress(Exception):
                await self._sio.call("leave", {}, namespace=NAMESPACE, timeout=2)
        with contextlib.suppress(Exception):
            await self._sio.disconnect()
        with contextlib.suppress(Exception):
            await self._sio.shutdown()
