"""A recording's processes never outlive the server that started them, and never write a
recording directory two at a time.

After a server is killed, a new one recovers its recordings at once: an egress or a render of
the old server still writing there would tear the files the recovery reads. So each such
process asks the kernel to signal it when its parent dies (Linux's PR_SET_PDEATHSIG: the egress
closes its tracks and leaves, a render is killed), and holds an exclusive lock on the directory
while it writes; the recovery's render waits for the lock.
"""

import contextlib
import ctypes
import ctypes.util
import fcntl
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(signum: int = signal.SIGKILL) -> bool:
    """Have the kernel send `signum` to this process when its parent dies (Linux); exit now
    if the parent is already gone. False where the platform cannot (the parent check of the
    egress still ends it within a second there)."""
    parent = os.getppid()
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_PDEATHSIG): %s", os.strerror(ctypes.get_errno()))
            return False
    except (OSError, AttributeError) as error:
        logger.warning("cannot ask to die with the parent: %s", error)
        return False
    if os.getppid() != parent:  # it died before the request: nobody would kill us later
        os._exit(1)
    return True


class Busy(Exception):
    """Another process holds the directory's lock."""


@contextlib.contextmanager
def holding(directory: Path, wait: float = 0.0) -> Iterator[None]:
    """The directory's exclusive lock while the block runs, waiting up to `wait` seconds
    for it (Busy when it stays taken). The kernel releases it when the process dies."""
    fd = os.open(Path(directory) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    name = Path(directory).name
                    raise Busy(f"{name} is being written by another process") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock
