"""ICE settings: exactly the configured servers, coturn REST credentials."""

import base64
import hashlib
import hmac
import time

from aiortc import RTCBundlePolicy

from media import ice


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
