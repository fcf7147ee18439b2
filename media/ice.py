"""ICE for the SFU's connections: servers, host addresses, TURN REST credentials."""

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass

import aioice.ice
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer, RTCPeerConnection
from aiortc.sdp import candidate_from_sdp

from media import hooks
from media.errors import MediaError

MAX_CANDIDATE_SIZE = 512


@dataclass(frozen=True)
class IceServer:
    urls: tuple[str, ...]
    username: str | None = None
    credential: str | None = None


@dataclass(frozen=True)
class IceSettings:
    """What the server's connections gather and announce.

    `host_addresses` empty means aioice's default (every interface but loopback); tests use
    ("127.0.0.1",), a deployment its public address.
    """

    servers: tuple[IceServer, ...] = ()
    host_addresses: tuple[str, ...] = ()
    # The public address of a 1:1 NAT in front of the server: each host candidate is also
    # offered at this address with the same port.
    announce_address: str = ""
    # (low, high): host candidates bind UDP ports in this range (a firewall's opening).
    port_range: tuple[int, int] | None = None


def configuration(settings: IceSettings) -> RTCConfiguration:
    """An RTCConfiguration with exactly the configured servers (aiortc adds a public STUN
    server when given none) and every track on one transport."""
    servers = [
        RTCIceServer(urls=list(s.urls), username=s.username, credential=s.credential)
        for s in settings.servers
    ]
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def restrict_candidates(pc: RTCPeerConnection, settings: IceSettings) -> None:
    """Apply `host_addresses`, `announce_address` and `port_range`; call before
    setLocalDescription."""
    if settings.host_addresses or settings.announce_address or settings.port_range:
        # aioice's own choice of addresses when none are given (it leaves out loopback).
        addresses = list(settings.host_addresses) or aioice.ice.get_host_addresses(
            use_ipv4=True, use_ipv6=True
        )
        hooks.restrict_host_addresses(pc, addresses, settings.announce_address, settings.port_range)


def turn_credentials(secret: str, user: str, ttl: int = 86400) -> tuple[str, str]:
    """coturn's `use-auth-secret` scheme: username "expiry:user", password HMAC-SHA1, base64."""
    username = f"{int(time.time()) + ttl}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


async def add_remote_candidate(
    pc: RTCPeerConnection, candidate: object, sdp_mid: object, sdp_mline_index: object
) -> None:
    """Add a trickled candidate ("candidate:..." as in RTCIceCandidate.candidate); an empty
    candidate means the remote's gathering is complete."""
    if candidate is None or candidate == "":
        await pc.addIceCandidate(None)
        return
    if not isinstance(candidate, str) or len(candidate) > MAX_CANDIDATE_SIZE:
        raise MediaError("bad_candidate", "a candidate is a string of at most 512 characters")
    if not (isinstance(sdp_mid, str) or isinstance(sdp_mline_index, int)):
        raise MediaError("bad_candidate", "a candidate needs sdpMid or sdpMLineIndex")
    text = candidate.removeprefix("a=").removeprefix("candidate:")
    try:
        parsed = candidate_from_sdp(text)
    except Exception:
        raise MediaError("bad_candidate", f"cannot parse candidate {candidate[:80]!r}") from None
    parsed.sdpMid = sdp_mid if isinstance(sdp_mid, str) else None
    parsed.sdpMLineIndex = sdp_mline_index if isinstance(sdp_mline_index, int) else None
    try:
        await pc.addIceCandidate(parsed)
    except Exception as exc:
        raise MediaError("bad_candidate", f"candidate refused: {exc}") from None
