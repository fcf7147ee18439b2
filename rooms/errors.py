"""Errors the domain reports to whoever asked; `code` is stable and documented in docs/."""


class RoomError(Exception):
    """A request the rules refuse. Nothing was changed when this is raised."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class NotFound(RoomError):
    def __init__(self, what: str) -> None:
        super().__init__("not_found", f"{what} not found")


class Forbidden(RoomError):
    def __init__(self, message: str = "not allowed for your role") -> None:
        super().__init__("forbidden", message)


class Invalid(RoomError):
    def __init__(self, message: str) -> None:
        super().__init__("invalid", message)
