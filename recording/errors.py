"""Errors recording/ reports to its caller; `code` is stable and documented in docs/recording.md."""

import re


class RecordingError(Exception):
    """A recording step that failed or was refused; other tracks and the meeting go on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def as_dict(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


# An absolute path in a message (after a space, a quote, a bracket or the start): the part
# before its last component goes.
_PATH = re.compile(r"(?:^|(?<=[\s'\"(\[=:]))/(?:[^\s'\"/]+/)*(?=[^\s'\"/]*)")


def without_paths(message: str) -> str:
    """`message` with every absolute path cut to its last component: a reason shown to the
    people in a meeting or over the API says which file, never where the server keeps it."""
    return _PATH.sub("", message)
