"""/livez, /readyz and /metrics for operators and orchestrators."""

from aiohttp import web

from server.context import METRICS, STORE
from server.metrics import CONTENT_TYPE

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
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def setup_health(app: web.Application) -> None:
    app[READY] = {"ready": False}
    app.router.add_get("/livez", livez, name="livez")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.router.add_get("/metrics", metrics, name="metrics")
