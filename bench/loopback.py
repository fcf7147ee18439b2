"""Keep the tool's peer connections on 127.0.0.1.

aioice's `Connection.gather_candidates` takes host addresses from every interface but skips
127.0.0.1; on a loopback-only benchmark that leaves nothing to connect with. This module (the
only one touching aioice internals) replaces `gather_candidates` on each connection of one
peer connection, not aioice's module function, so nothing else in the process is affected.
Written against aioice 0.13: `_require` fails loudly if a name moves.
"""

import contextlib
import socket
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection

ADDRESS = "127.0.0.1"
# A viewer's socket holds what arrives while the tool's core runs something else: with the
# default ~200 KiB, a stall of a few hundred ms on a shared machine overflows it and shows up
# as the server's loss. The kernel caps it at net.core.rmem_max (and doubles it).
RECEIVE_BUFFER = 4 << 20
_GATHER_STATE = ("_local_candidates_start", "_local_candidates", "_local_candidates_end")
_COMPONENTS = "_components"
_PROTOCOLS = "_protocols"


def configuration() -> RTCConfiguration:
    """No ICE servers at all (aiortc would otherwise add a public STUN server)."""
    return RTCConfiguration(iceServers=[])


def restrict(pc: RTCPeerConnection) -> None:
    """Gather only a 127.0.0.1 host candidate; call after adding transceivers and before
    setLocalDescription."""
    for transceiver in pc.getTransceivers():
        gatherer = transceiver.sender.transport.transport.iceGatherer
        _replace(_require(gatherer, "_connection"))


def _replace(connection: Any) -> None:
    for name in (*_GATHER_STATE, _COMPONENTS, _PROTOCOLS, "get_component_candidates"):
        _require(connection, name)
    started, local, ended = _GATHER_STATE

    async def gather_candidates() -> None:
        if getattr(connection, started):
            return
        setattr(connection, started, True)
        candidates: list[Any] = getattr(connection, local)
        for component in sorted(getattr(connection, _COMPONENTS)):
            candidates += await connection.get_component_candidates(
                component=component, addresses=[ADDRESS]
            )
        setattr(connection, ended, True)
        for protocol in getattr(connection, _PROTOCOLS):
            sock = protocol.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)

    connection.gather_candidates = gather_candidates


def _require(obj: object, name: str) -> Any:
    if not hasattr(obj, name):
        raise RuntimeError(
            f"{type(obj).__name__} has no {name}: aioice/aiortc changed, update bench/loopback.py"
        )
    return getattr(obj, name)
