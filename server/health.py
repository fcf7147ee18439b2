"""/livez, /readyz and /metrics for operators and orchestrators."""

import asyncio

from aiohttp import hdrs, web

from server.auth import same_secret
from server.context import METRICS, SETTINGS, STORE
from server.metrics import CONTENT_TYPE
from server.open_files import head_room

READY = web.AppKey("ready", dict)


async def livez(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    if not request.app[READY].get("ready"):
        return web.json_response({"status": "starting or stopping"}, status=503)
    try:
        await request.app[STORE].get_meeting("readyz-probe")
    except Exception as exc:  # the store is what readiness means here
        return web.json_response({"status": f"store unavailable: {exc}"}, status=503)
    # The open-file head-room (server/open_files.py): each WebRTC session holds sockets.
    # And the tasks of its event loop: the load tool's soak watches both come back down.
    tasks = len(asyncio.all_tasks())
    return web.json_response({"status": "ready", "open_files": head_room(), "tasks": tasks})


async def metrics(request: web.Request) -> web.Response:
    token = request.app[SETTINGS].metrics_token
    if token:
        scheme, _, given = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if scheme.lower() != "bearer" or not same_secret(given.strip(), token):
            # The figures tell who is in which meeting and when: only the scraper reads them.
            return web.json_response(
                {"error": {"code": "unauthorized", "message": "Authorization: Bearer <token>"}},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def setup_health(app: web.Application) -> None:
    app[READY] = {"ready": False}
    app.router.add_get("/livez", livez, name="livez")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.router.add_get("/metrics", metrics, name="metrics")
