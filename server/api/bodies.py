"""Request bodies: always a JSON object (server.errors.read_json does the parsing)."""

from typing import Any

from aiohttp import web

from rooms.errors import Invalid
from server.errors import read_json


async def json_object(request: web.Request) -> dict[str, Any]:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    return body


async def optional_object(request: web.Request, allowed: frozenset[str]) -> dict[str, Any]:
    """A body that may be absent; when present, a JSON object with only `allowed` fields."""
    if not request.body_exists:
        return {}
    body = await json_object(request)
    unknown = set(body) - allowed
    if unknown:
        raise Invalid(f"unknown fields: {', '.join(sorted(unknown))}")
    return body
