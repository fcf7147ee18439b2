"""Typing for media/_fanout.c: the forwarder's per-packet path (see its comments)."""

from collections.abc import Callable, Sequence
from typing import Any

HISTORY_SIZE: int
START_GUARD: int

class Wire:
    """One feed's wire state: what fanout() rewrites, counts, keeps and sends."""

    ssrc: int
    rtx_ssrc: int
    payload_type: int
    next_seq: int
    rtx_seq: int
    seq_offset: int
    ts_offset: int
    last_ts: int
    rebase_step: int
    last_time: float
    packets: int
    octets: int
    retransmitted: int
    send_errors: int
    ready: bool
    paused: bool
    waiting: bool
    rebase_ts: bool
    @property
    def connected(self) -> bool: ...
    @property
    def keeps_history(self) -> bool: ...
    def set_extensions(self, head: bytes, tail: bytes, plain: bytes, value_size: int) -> None: ...
    def keep_history(self, enabled: bool) -> None: ...
    def use_socket(
        self,
        session: object,
        srtp: int,
        protect: int,
        sock: object | None,
        addr: Any,
        sendto: Callable[[bytes, Any], object],
    ) -> None: ...
    def drop_socket(self) -> None: ...
    def retransmit(self, seq: int, rtx_payload_type: int) -> bool: ...

def fanout(
    feeds: Sequence[Wire],
    payload: bytes,
    seq: int,
    ts: int,
    marker: int,
    padding: int,
    value: int,
    keyframe_start: Callable[[bytes], bool] | None,
    now: float,
) -> int: ...
