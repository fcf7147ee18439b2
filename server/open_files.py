"""The process's open-file limit: raised at start, its head-room reported by /readyz.

Every WebRTC connection holds UDP sockets and every socket.io client a TCP one; the usual soft
limit (1024) is reached long before the CPU is, and past it accept() and socket() fail for
everyone. The hard limit is what the operator allows: the soft one is raised to it.
"""

import logging
import os
import resource

log = logging.getLogger(__name__)

FD_DIRECTORY = "/proc/self/fd"


def raise_open_file_limit() -> int:
    """Raise the soft limit to the hard one; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as exc:  # a container may forbid it: say so, keep going
        log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
        return soft
    return hard


def open_files() -> int:
    """Descriptors this process holds now (-1 where /proc is not mounted)."""
    try:
        return len(os.listdir(FD_DIRECTORY))
    except OSError:
        return -1


def head_room() -> dict[str, int]:
    """For /readyz: the limit, the descriptors in use, and how many are left."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    used = open_files()
    return {"limit": soft, "open": used, "free": soft - used if used >= 0 else -1}
