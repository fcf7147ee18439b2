"""Front-end packages from npm (socket.io's browser client, hls.js), found in node_modules."""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
SOCKETIO_FILE = Path("socket.io-client") / "dist" / "socket.io.min.js"
HLS_FILE = Path("hls.js") / "dist" / "hls.min.js"
INSTALL_HINT = "run `npm ci` in the repository root"


@dataclass(frozen=True)
class Assets:
    """Where the npm packages' files are; `socketio` (and `hls`) is None when not installed."""

    node_modules: Path
    socketio: Path | None
    hls: Path | None = None  # the viewer page's HLS player; without it the page keeps WebRTC

    @property
    def ready(self) -> bool:
        return self.socketio is not None


def find_assets(assets_dir: str | Path | None = None) -> Assets:
    """Look in `assets_dir` (VECHE_ASSETS_DIR: a node_modules folder) or next to the repo root."""
    node_modules = Path(assets_dir) if assets_dir else REPO_ROOT / "node_modules"
    player = node_modules / HLS_FILE
    hls = player if player.is_file() else None
    if hls is None:
        log.warning(
            "hls.js not found at %s: viewers cannot watch over HLS; %s", player, INSTALL_HINT
        )
    script = node_modules / SOCKETIO_FILE
    if script.is_file():
        return Assets(node_modules=node_modules, socketio=script, hls=hls)
    log.warning(
        "socket.io client not found at %s: meeting pages cannot connect; %s",
        script,
        INSTALL_HINT,
    )
    return Assets(node_modules=node_modules, socketio=None, hls=hls)


def vendor_script(
    path: Path | None, package: str
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler serving one npm package's browser build (`path`), or saying it is missing."""

    async def serve(request: web.Request) -> web.StreamResponse:
        if path is None:
            return web.Response(
                status=404,
                text=f"// {package} is not installed: {INSTALL_HINT}\n",
                content_type="application/javascript",
            )
        return web.FileResponse(path, headers={"Cache-Control": "public, max-age=3600"})

    return serve
