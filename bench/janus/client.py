"""Janus's HTTP API with the VideoRoom plugin, as the load tool's target.

One Janus session for the whole run, one long poll receiving its events, one plugin handle
(and so one peer connection) per publisher and per viewer, as WHIP/WHEP would have. Janus
offers to subscribers; the tool's viewer answers.
"""

import asyncio
import contextlib
import secrets
from typing import Any

import aiohttp

from bench.peers import Publisher, Viewer
from bench.targets import Feed, Leave, TargetSpec

PLUGIN = "janus.plugin.videoroom"
KEEPALIVE = 20.0


class JanusError(RuntimeError):
    pass


class JanusClient:
    name = "janus"

    def __init__(self, url: str, room: int = 0) -> None:
        self.url = url
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self._session: int | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._room = room or secrets.randbelow(1 << 30) + 1
        self._owns_room = False
        self._admin: int | None = None
        self._codec = "vp8"

    def spec(self) -> TargetSpec:
        return TargetSpec(
            "janus", self.name, janus_url=self.url, room=self._room, codec=self._codec
        )

    async def start(self, publishers: int, codec: str = "vp8", create_room: bool = True) -> None:
        self._codec = codec
        created = await self._post(self.url, {"janus": "create"})
        self._session = int(created["data"]["id"])
        self._tasks = [asyncio.create_task(self._poll()), asyncio.create_task(self._keepalive())]
        if not create_room:
            return
        self._admin = await self._attach()
        self._owns_room = True
        await self._message(
            self._admin,
            {
                "request": "create",
                "room": self._room,
                "publishers": max(publishers, 3),
                "audiocodec": "opus",
                "videocodec": codec,
                "bitrate": 0,
                "fir_freq": 0,
                "notify_joining": False,
            },
        )

    @property
    def _session_url(self) -> str:
        return f"{self.url}/{self._session}"

    async def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": body.get("transaction") or secrets.token_hex(8)}
        async with self._http.post(url, json=body) as response:
            reply: dict[str, Any] = await response.json(content_type=None)
        if reply.get("janus") == "error":
            raise JanusError(f"{body.get('janus')}: {reply.get('error')}")
        return reply

    async def _attach(self) -> int:
        reply = await self._post(self._session_url, {"janus": "attach", "plugin": PLUGIN})
        return int(reply["data"]["id"])

    async def _message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, str] | None = None
    ) -> tuple[dict[str, Any], dict[str, str] | None]:
        """Send a plugin request; (plugin data, jsep) of its synchronous or asynchronous reply."""
        transaction = secrets.token_hex(8)
        request: dict[str, Any] = {"janus": "message", "body": body, "transaction": transaction}
        if jsep is not None:
            request["jsep"] = jsep
        waiter = asyncio.get_running_loop().create_future()
        self._pending[transaction] = waiter
        try:
            reply = await self._post(f"{self._session_url}/{handle}", request)
            if reply.get("janus") != "ack":
                event = reply
            else:
                event = await asyncio.wait_for(waiter, 30)
        finally:
            self._pending.pop(transaction, None)
        data: dict[str, Any] = event.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise JanusError(f"{body.get('request')}: {data['error']}")
        return data, event.get("jsep")

    async def _poll(self) -> None:
        while True:
            try:
                async with self._http.get(self._session_url, params={"maxev": "16"}) as response:
                    events = await response.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(0.2)
                continue
            for event in events if isinstance(events, list) else [events]:
                waiter = self._pending.get(event.get("transaction", ""))
                if waiter is not None and not waiter.done() and event.get("janus") == "event":
                    waiter.set_result(event)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE)
            with contextlib.suppress(aiohttp.ClientError, JanusError, TimeoutError):
                await self._post(self._session_url, {"janus": "keepalive"})

    def _leave(self, handle: int) -> Leave:
        async def leave() -> None:
            await self._post(f"{self._session_url}/{handle}", {"janus": "detach"})

        return leave

    async def publish(self, stream: str, publisher: Publisher) -> tuple[Feed, Leave]:
        handle = await self._attach()
        joined, _ = await self._message(
            handle, {"request": "join", "ptype": "publisher", "room": self._room, "display": stream}
        )
        offer = await publisher.offer()
        _, answer = await self._message(
            handle, {"request": "publish"}, {"type": "offer", "sdp": offer}
        )
        if answer is None:
            raise JanusError("publish: no SDP answer")
        await publisher.accept(answer["sdp"])
        return Feed(stream, int(joined["id"])), self._leave(handle)

    async def watch(self, feed: Feed, viewer: Viewer) -> Leave:
        handle = await self._attach()
        _, offer = await self._message(
            handle,
            {
                "request": "join",
                "ptype": "subscriber",
                "room": self._room,
                "streams": [{"feed": feed.feed_id}],
            },
        )
        if offer is None:
            raise JanusError("subscribe: no SDP offer")
        answer = await viewer.answer(offer["sdp"])
        await self._message(
            handle, {"request": "start", "room": self._room}, {"type": "answer", "sdp": answer}
        )
        return self._leave(handle)

    async def close(self) -> None:
        with contextlib.suppress(aiohttp.ClientError, JanusError, TimeoutError):
            if self._admin is not None and self._owns_room:
                await self._message(self._admin, {"request": "destroy", "room": self._room})
            if self._session is not None:
                await self._post(self._session_url, {"janus": "destroy"})
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.close()
