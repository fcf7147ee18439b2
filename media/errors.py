"""Errors media/ reports to its caller; `code` is stable and documented in docs/media.md."""


class MediaError(Exception):
    """A request media/ refuses. Nothing was kept when this is raised."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class HookError(RuntimeError):
    """An aiortc/aioice internal that media/hooks.py relies on is missing or changed."""

    def __init__(self, name: str, detail: str = "") -> None:
        message = f"aiortc/aioice internal {name!r} is missing or changed"
        if detail:
            message += f": {detail}"
        message += " (media/hooks.py; aiortc must be the pinned version)"
        super().__init__(message)
        self.name = name
