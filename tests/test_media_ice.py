"""ICE settings: exactly the configured servers, coturn REST credentials."""

import base64
import hashlib
import hmac
import time

from aiortc import RTCBundlePolicy

from media import ice
from media.sfu import Sfu
from tests.media_clients import publish, received, wait_for, watch
from tests.media_clip import Clip


def test_configuration_has_exactly_the_configured_servers() -> None:
    # aiortc adds a public STUN server when iceServers is left out: never here.
    assert ice.configuration(ice.IceSettings()).iceServers == []
    settings = ice.IceSettings(
        servers=(
            ice.IceServer(("stun:stun.example.org:3478",)),
            ice.IceServer(("turn:turn.example.org:3478?transport=udp",), "u", "p"),
        )
    )
    servers = ice.configuration(settings).iceServers
    assert servers is not None
    assert [s.urls for s in servers] == [
        ["stun:stun.example.org:3478"],
        ["turn:turn.example.org:3478?transport=udp"],
    ]
    assert (servers[1].username, servers[1].credential) == ("u", "p")
    assert ice.configuration(settings).bundlePolicy == RTCBundlePolicy.MAX_BUNDLE


def test_turn_credentials_follow_coturn_use_auth_secret() -> None:
    before = int(time.time())
    username, password = ice.turn_credentials("s3cret", "alice", ttl=600)
    expiry, user = username.split(":")
    assert user == "alice"
    assert before + 600 <= int(expiry) <= int(time.time()) + 600
    expected = hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest()
    assert base64.b64decode(password) == expected


async def test_a_port_range_and_an_announced_address_show_in_the_answer(
    media_clip: Clip,
) -> None:
    settings = ice.IceSettings(
        host_addresses=("127.0.0.1",), announce_address="203.0.113.7", port_range=(42000, 42009)
    )
    sfu = Sfu(settings)
    clients = [await publish(sfu, name, media_clip) for name in ("ann", "bob")]
    try:
        answers = [str(c.pc.remoteDescription.sdp) for c in clients]
        for answer in answers:
            # (every bundled section repeats the transport's candidates)
            candidates = {
                (c[7], c[4], c[5])
                for c in (line.split() for line in answer.splitlines())
                if c[0].startswith("a=candidate")
            }
            (kind, host, port), announced = sorted(candidates)
            assert (kind, host) == ("host", "127.0.0.1")
            assert 42000 <= int(port) <= 42009
            assert announced == ("srflx", "203.0.113.7", port)
        # Each connection has a port of its own, and media flows over it.
        assert len({a.split("127.0.0.1 ")[1].split()[0] for a in answers}) == 2
        subscription, viewer = await watch(sfu, clients[0].track_ids())
        video = clients[0].track_id("video")
        await wait_for(lambda: received(subscription, viewer, video).frames > 3, within=5)
        await viewer.close()
    finally:
        await sfu.close()
        for client in clients:
            await client.close()
