"""Every error leaves the HTTP API as JSON {error: {code, message}} with a 4xx/5xx status."""

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rooms.errors import RoomError
from server.context import METRICS

log = logging.getLogger(__name__)

STATUS = {
    "not_found": 404,
    "forbidden": 403,
    "unauthorized": 401,
    "bad_token": 401,
    "invalid": 400,
    "bad_json": 400,
    "too_large": 413,
    "unsupported_media_type": 415,
    "conflict": 409,
    "full": 409,
    "rate_limited": 429,
}


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def read_json(request: web.Request, *, limit: int = 64 * 1024) -> Any:
    """The request body as JSON, refusing wrong types, oversize bodies and bad JSON."""
    if request.content_type != "application/json":
        raise RoomError("unsupported_media_type", "send the body as application/json")
    if request.content_length is not None and request.content_length > limit:
        raise RoomError("too_large", f"the body is larger than {limit} bytes")
    # read(n) returns what has arrived so far: a body sent in small chunks needs the loop.
    body = b""
    while len(body) <= limit:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        raise RoomError("too_large", f"the body is larger than {limit} bytes")
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise RoomError("bad_json", "the body is not valid JSON") from None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS]
    try:
        response = await handler(request)
    except RoomError as exc:
        metrics.error(exc.code)
        response = error_response(STATUS.get(exc.code, 400), exc.code, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400 or not _is_api(request):
            raise
        code = exc.reason.lower().replace(" ", "_")
        metrics.error(code)
        response = error_response(exc.status, code, exc.reason)
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        metrics.error("internal")
        response = error_response(500, "internal", "internal server error")
    metrics.http_requests.labels(status=f"{response.status // 100}xx").inc()
    return response


def _is_api(request: web.Request) -> bool:
    return request.path.startswith(("/api/", "/whip/", "/whep/"))
