"""How the tool talks to a server: publish a clip, watch a published stream, leave."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from bench import whip
from bench.peers import Publisher, Viewer

Leave = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Feed:
    """A published stream as a viewer asks for it: a WHEP stream name or a Janus feed id."""

    stream: str
    feed_id: int = 0


@dataclass(frozen=True)
class TargetSpec:
    """Enough to reach the same server from another process (the source process)."""

    kind: str  # "whip", "janus" or "veche"
    name: str
    whip: str = ""
    whep: str = ""
    whip_token: str | None = None
    whep_token: str | None = None
    janus_url: str = ""
    room: int = 0
    codec: str = "vp8"
    veche_url: str = ""
    api_key: str = ""
    meeting: str = ""


class Target(Protocol):
    name: str

    def spec(self) -> TargetSpec: ...

    async def publish(self, stream: str, publisher: Publisher) -> tuple[Feed, Leave]: ...

    async def watch(self, feed: Feed, viewer: Viewer) -> Leave: ...

    async def close(self) -> None: ...


class WhipTarget:
    """Any WHIP/WHEP server: the baseline, Veche, another SFU."""

    def __init__(self, name: str, publish: whip.Endpoint, watch: whip.Endpoint) -> None:
        self.name = name
        self._publish = publish
        self._watch = watch
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    def spec(self) -> TargetSpec:
        return TargetSpec(
            "whip",
            self.name,
            whip=self._publish.template,
            whep=self._watch.template,
            whip_token=self._publish.token,
            whep_token=self._watch.token,
        )

    async def publish(self, stream: str, publisher: Publisher) -> tuple[Feed, Leave]:
        answer, resource = await whip.exchange(
            self._http, self._publish, stream, await publisher.offer()
        )
        await publisher.accept(answer)
        return Feed(stream), self._leave(resource)

    async def watch(self, feed: Feed, viewer: Viewer) -> Leave:
        viewer.add_receivers()
        answer, resource = await whip.exchange(
            self._http, self._watch, feed.stream, await viewer.offer()
        )
        await viewer.accept(answer)
        return self._leave(resource)

    def _leave(self, resource: whip.Resource) -> Leave:
        async def leave() -> None:
            await resource.delete(self._http)

        return leave

    async def close(self) -> None:
        await self._http.close()


async def open_target(spec: TargetSpec) -> Target:
    """A client for `spec`; for Janus it joins the existing room."""
    if spec.kind == "janus":
        from bench.janus.client import JanusClient

        client = JanusClient(spec.janus_url, room=spec.room)
        await client.start(0, spec.codec, create_room=False)
        return client
    if spec.kind == "veche":
        from bench.veche import VecheTarget

        return VecheTarget(spec.veche_url, spec.api_key, spec.meeting)
    return WhipTarget(
        spec.name,
        whip.Endpoint(spec.whip, spec.whip_token),
        whip.Endpoint(spec.whep, spec.whep_token),
    )
