"""Errors recording/ reports to its caller; `code` is stable and documented in docs/recording.md."""


class RecordingError(Exception):
    """A recording step that failed or was refused; other tracks and the meeting go on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}
