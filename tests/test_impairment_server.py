"""An aiortc viewer reaches the real server through the impaired-link relay: every packet it
gets (ICE checks, DTLS, media) crossed the relay, the relay's loss shows as loss at the viewer,
and a link that degrades and recovers carries media again."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from bench import clip
from bench.impairment import Detour, Impairment, LinkSpec, Relay, free_port_range, open_relay
from bench.peers import Publisher, Viewer
from bench.veche import VecheTarget
from server.config import Settings
from tests.conftest import LiveServer

PORTS = 24


@pytest.fixture
def ports() -> range:
    return free_port_range(PORTS)


@pytest.fixture
def settings(settings: Settings, ports: range) -> Settings:
    """The server's candidates on 127.0.0.1 in a fixed range: the relay sits at the same ports
    on 127.0.0.2."""
    return replace(
        settings, rtc_addresses="127.0.0.1", rtc_min_port=ports[0], rtc_max_port=ports[-1]
    )


@pytest.fixture
async def relay(ports: range) -> AsyncIterator[Relay]:
    async with open_relay(ports, seed=3) as running:
        yield running


async def until(condition: object, within: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    assert callable(condition)
    while not condition():
        assert loop.time() < deadline, "not within the time limit"
        await asyncio.sleep(0.05)


async def test_an_aiortc_viewer_through_the_relay_gets_media_and_its_losses(
    live_server: LiveServer, relay: Relay
) -> None:
    media = clip.load(clip.ClipSpec(seconds=2.0, bitrate=300_000))
    target = VecheTarget(live_server.url, live_server.settings.api_key)
    publisher, viewer = Publisher(media), Viewer(None)
    leaves = []
    try:
        await target.create_meeting()
        feed, leave = await target.publish("p0", publisher)
        leaves.append(leave)
        assert relay.up.counters.offered == 0  # the publisher went straight to the server
        target.detour = Detour()
        leaves.append(await target.watch(feed, viewer))

        await until(lambda: viewer.snapshot("video").frames > 10, 10)
        down, up = relay.down.counters, relay.up.counters
        assert up.passed > 0 and down.passed > 0  # ICE, DTLS and RTCP up; media down
        got = viewer.snapshot("video").packets + viewer.snapshot("audio").packets
        assert 0 < got <= down.passed

        relay.set(LinkSpec(down=Impairment(loss=0.2)))
        lost_before, offered_before = down.lost, down.offered
        await asyncio.sleep(1.5)
        lost = (down.lost - lost_before) / (down.offered - offered_before)
        print(f"relay down: {down}, lost while impaired {lost:.3f}")
        assert 0.12 <= lost <= 0.28

        relay.set(LinkSpec())
        frames = viewer.snapshot("video").frames
        await until(lambda: viewer.snapshot("video").frames > frames + 15, 5)
    finally:
        for leave in leaves:
            await leave()
        await viewer.close()
        await publisher.close()
        await target.close()
