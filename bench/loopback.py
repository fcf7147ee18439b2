"""Keep the tool's peer connections on 127.0.0.1.

aioice's `Connection.gather_candidates` takes host addresses from every interface but skips
127.0.0.1; on a loopback-only benchmark that leaves nothing to connect with. This module (the
only one touching aioice internals) replaces `gather_candidates` on each connection of one
peer connection, not aioice's module function, so nothing else in the process is affected.
Written against aioice 0.13: `_require` fails loudly if a name moves.
"""

from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection

ADDRESS = "127.0.0.1"
_GATHER_STATE = ("_local_candidates_start", "_local_candidates", "_local_candidates_end")
_COMPONENTS = "_components"


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
    for name in (*_GATHER_STATE, _COMPONENTS, "get_component_candidates"):
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

    connection.gather_candidates = gather_candidates


def _require(obj: object, name: str) -> Any:
    if not hasattr(obj, name):
        raise RuntimeError(
            f"{type(obj).__name__} has no {name}: aioice/aiortc changed, update bench/loopback.py"
        )
    return getattr(obj, name)
