"""Front-end packages from npm (socket.io's browser client), found in node_modules."""

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
SOCKETIO_FILE = Path("socket.io-client") / "dist" / "socket.io.min.js"
INSTALL_HINT = "run `npm ci` in the repository root"


@dataclass(frozen=True)
class Assets:
    """Where the npm packages' files are; `socketio` is None when they are not installed."""

    node_modules: Path
    socketio: Path | None

    @property
    def ready(self) -> bool:
        return self.socketio is not None


def find_assets(assets_dir: str | Path | None = None) -> Assets:
    """Look in `assets_dir` (VECHE_ASSETS_DIR: a node_modules folder) or next to the repo root."""
    node_modules = Path(assets_dir) if assets_dir else REPO_ROOT / "node_modules"
    script = node_modules / SOCKETIO_FILE
    if script.is_file():
        return Assets(node_modules=node_modules, socketio=script)
    log.warning(
        "socket.io client not found at %s: meeting pages cannot connect; %s",
        script,
        INSTALL_HINT,
    )
    return Assets(node_modules=node_modules, socketio=None)
