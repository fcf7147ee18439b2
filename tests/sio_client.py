"""A real python-socketio client for tests: connects to /meeting, calls events, collects what
the server sends."""

import asyncio
from collections import defaultdict
from typing import Any

import socketio

NAMESPACE = "/meeting"


class Client:
    """One browser's worth of signaling: `await Client.open(url)`, then `call` and `next`."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.received: dict[str, list[Any]] = defaultdict(list)  # every event, in order
        self._unread: dict[str, list[Any]] = defaultdict(list)
        self._arrived = asyncio.Condition()
        self.closed = asyncio.Event()
        self.sio.on("*", self._collect, namespace=NAMESPACE)
        self.sio.on("disconnect", self._disconnected, namespace=NAMESPACE)
        self.ack: dict[str, Any] = {}  # the last join's ack
        self.snapshot: dict[str, Any] = {}  # the last `joined`

    @classmethod
    async def open(cls, url: str) -> "Client":
        client = cls()
        await client.sio.connect(url, namespaces=[NAMESPACE], transports=["websocket"])
        return client

    async def _collect(self, event: str, data: Any = None) -> None:
        async with self._arrived:
            self.received[event].append(data)
            self._unread[event].append(data)
            self._arrived.notify_all()

    async def _disconnected(self, reason: Any = None) -> None:
        self.closed.set()

    async def call(self, event: str, *payload: Any, wait: float = 5) -> Any:
        """Send an event and return its ack."""
        data: Any = payload[0] if len(payload) == 1 else (payload if payload else None)
        if len(payload) == 0:
            return await self.sio.call(event, namespace=NAMESPACE, timeout=wait)
        return await self.sio.call(event, data, namespace=NAMESPACE, timeout=wait)

    async def next(self, event: str, wait: float = 5) -> Any:
        """The oldest not yet read `event`, waiting for it if needed."""

        def ready() -> bool:
            return bool(self._unread[event])

        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(ready), wait)
            return self._unread[event].pop(0)

    async def until(self, event: str, check: Any, wait: float = 5) -> Any:
        """Read `event`s until one satisfies `check(data)`; returns it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            data = await self.next(event, max(deadline - loop.time(), 0.01))
            if check(data):
                return data

    def unread(self, event: str) -> list[Any]:
        return list(self._unread[event])

    def drain(self) -> None:
        self._unread.clear()

    async def join(self, **payload: Any) -> dict[str, Any]:
        """Join; when seated at once, wait for `joined` too."""
        self.ack = await self.call("join", payload)
        if self.ack.get("status") == "joined":
            self.snapshot = await self.next("joined")
        return self.ack

    @property
    def id(self) -> str:
        return str(self.snapshot["self"]["id"])

    async def close(self) -> None:
        await self.sio.shutdown()
        # After the server closes the namespace the transport may still be open: close it too.
        if self.sio.eio.state == "connected":
            await self.sio.eio.disconnect()


async def make_meeting(server: Any, **fields: Any) -> Any:
    """A meeting in the server's store; `fields` as the REST API takes them."""
    from rooms.meeting import new_meeting

    meeting = new_meeting({"title": "Expanded meeting", **fields})
    await server.store.create_meeting(meeting)
    return meeting


async def invite(server: Any, meeting: Any, name: str, role: str, **fields: Any) -> str:
    """A roster entry and its personal invite token."""
    from rooms.roster import new_entry

    entry = new_entry(meeting.id, {"name": name, "role": role, **fields})
    await server.store.add_entry(entry)
    return str(server.tokens.invite(meeting.id, entry.id))
