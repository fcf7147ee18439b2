"""Checks on what a socket.io client sends: one bounded JSON object with typed fields."""

import json
from typing import Any

from rooms.errors import Invalid, RoomError

MAX_PAYLOAD = 16 * 1024
# Events carrying SDP (publish, subscribe_answer) may be larger: a browser's SDP for many
# tracks passes 16 KiB. Below the Engine.IO buffer (server/signaling.py), which closes
# connections instead.
MAX_SDP_PAYLOAD = 60 * 1024
ID_MAX = 64


def payload_object(args: tuple[Any, ...], limit: int = MAX_PAYLOAD) -> dict[str, Any]:
    """The single JSON object an event carries, or invalid / too_large."""
    if len(args) != 1:
        raise Invalid("send exactly one JSON object")
    payload = args[0]
    if isinstance(payload, bytes | bytearray):
        if len(payload) > limit:
            raise RoomError("too_large", f"the payload is larger than {limit} bytes")
        raise Invalid("the payload must be a JSON object")
    try:
        size = len(json.dumps(payload, ensure_ascii=False).encode())
    except (TypeError, ValueError):
        raise Invalid("the payload must be a JSON object") from None
    if size > limit:
        raise RoomError("too_large", f"the payload is larger than {limit} bytes")
    if not isinstance(payload, dict):
        raise Invalid("the payload must be a JSON object")
    return payload


def ident(payload: dict[str, Any], name: str = "id", *, required: bool = True) -> str | None:
    value = payload.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= ID_MAX:
        raise Invalid(f"{name} must be a string of 1-{ID_MAX} characters")
    return value


def required_ident(payload: dict[str, Any], name: str = "id") -> str:
    value = ident(payload, name)
    assert value is not None
    return value


def flag(payload: dict[str, Any], name: str, *, required: bool = True) -> bool | None:
    value = payload.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, bool):
        raise Invalid(f"{name} must be true or false")
    return value
