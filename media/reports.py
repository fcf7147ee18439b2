"""RTCP sender reports for forwarded streams, composed and sent without aiortc's objects.

aiortc's sender loop sends a report (SR and SDES) every 0.5-1.5 s per sender through RTCP
packet objects, their serialisation and its coroutine chain to the socket: with two senders
per viewer that was a tenth of the server's time at 40 viewers. A forwarded stream needs
reports only for the receiver's audio/video sync and its stats; RFC 3550 (6.2) sets a
5 s minimum interval, and libwebrtc sends video reports every second and audio ones every
5 s. Here the first report goes out as soon as aiortc's would and the next ones every
1.5-4.5 s.
"""

import asyncio
import random
import struct
from typing import Protocol

FIRST_INTERVAL = (0.5, 1.5)  # seconds before the first report (as aiortc)
INTERVAL = (1.5, 4.5)  # seconds between the next ones (randomised, RFC 3550 6.3.5)

_SR = struct.Struct("!BBHIQIII")  # V=2, RC=0 | PT=200 | length | SSRC | sender info
_RTCP_SR = 200
_RTCP_SDES = 202
_RTCP_BYE = 203
_SDES_CNAME = 1


def sender_report(
    ssrc: int, ntp: int, rtp_ts: int, packets: int, octets: int, cname: bytes
) -> bytes:
    """A compound RTCP packet: the sender report, then the SDES CNAME (RFC 3550 6.1)."""
    report = _SR.pack(
        0x80,
        _RTCP_SR,
        6,
        ssrc,
        ntp & 0xFFFFFFFFFFFFFFFF,
        rtp_ts & 0xFFFFFFFF,
        packets & 0xFFFFFFFF,
        octets & 0xFFFFFFFF,
    )
    if not cname:
        return report
    cname = cname[:255]
    # One chunk: SSRC, the CNAME item, then a null item padded to a 32-bit boundary.
    items = bytes((_SDES_CNAME, len(cname))) + cname
    items += b"\x00" * (4 - len(items) % 4)
    words = (4 + len(items)) // 4
    return report + struct.pack("!BBHI", 0x81, _RTCP_SDES, words, ssrc) + items


def bye(ssrc: int) -> bytes:
    """RTCP BYE for one source (the stream ends)."""
    return struct.pack("!BBHI", 0x81, _RTCP_BYE, 1, ssrc)


class Reporting(Protocol):
    """What a ReportLoop reports for (media.forwarder.Feed)."""

    def send_report(self) -> None: ...

    def send_bye(self) -> None: ...


class ReportLoop:
    """A sender's RTCP task (hooks.replace_rtcp_loop): the reports of the feed its sender
    carries now. aiortc starts a sender's task once, so a section reused for another track
    keeps its loop and the new feed takes it over (`feed` is set again)."""

    def __init__(self, feed: Reporting) -> None:
        self.feed = feed

    async def run(self) -> None:
        try:
            await asyncio.sleep(random.uniform(*FIRST_INTERVAL))
            while True:
                self.feed.send_report()
                await asyncio.sleep(random.uniform(*INTERVAL))
        except asyncio.CancelledError:
            # The sender stops (its section or the connection ends): say so, as aiortc did.
            self.feed.send_bye()
            raise
