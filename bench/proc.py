"""CPU time and memory of a process tree, from /proc; CPU pinning with taskset."""

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Usage:
    cpu_seconds: float  # utime + stime of every process in the tree, all threads
    rss_bytes: int
    root_cpu_seconds: float = 0.0  # the root process alone (without its children)


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, utime+stime in seconds); None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def tree(root: int) -> list[int]:
    """`root` and its live descendants."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents.setdefault(stat[0], []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def usage(root: int) -> Usage:
    cpu = root_cpu = 0.0
    rss = 0
    for pid in tree(root):
        stat = _stat(pid)
        if stat is None:
            continue
        cpu += stat[1]
        if pid == root:
            root_cpu = stat[1]
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    return Usage(cpu, rss, root_cpu)


def own_cpu() -> float:
    """This process's CPU seconds (all threads)."""
    times = os.times()
    return times.user + times.system


def pin_command(command: list[str], cpu: int | None) -> list[str]:
    """`command` run under `taskset -c cpu` when a CPU is given."""
    if cpu is None:
        return command
    taskset = shutil.which("taskset")
    if taskset is None:
        raise RuntimeError("--server-cpu needs taskset (util-linux)")
    return [taskset, "-c", str(cpu), *command]


def pin_self(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
