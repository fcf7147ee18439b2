"""File names inside a recording directory: chosen from a small alphabet, never a path."""

import re
from pathlib import Path

from recording.errors import RecordingError

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_name(name: str) -> str:
    """`name` if it is a plain file name (letters, digits, `._-`, at most 100), else bad_name."""
    if not isinstance(name, str) or not _SAFE.fullmatch(name) or ".." in name:
        raise RecordingError("bad_name", f"not a plain file name: {name!r}")
    return name


def inside(directory: Path, name: str) -> Path:
    """The path of file `name` in `directory`, after checking the name."""
    return directory / check_name(name)


def track_file_name(label: str, codec: str) -> str:
    """A file name for a track: `label` made safe, with the container's suffix for `codec`."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", label).strip("_")[:80] or "track"
    return check_name(f"{stem}.{'mkv' if codec.lower() == 'h264' else 'webm'}")
