"""One published track fanned out to its subscribers as rewritten RTP, never decoded.

The publisher's receiver hands each packet (RTX already unwrapped) to `Forwarder.on_packet`,
which hands it once to media._fanout (C): for each `Feed` (the track as one subscriber gets it)
that rewrites SSRC, sequence number, timestamp, payload type and header extensions,
SRTP-protects the bytes and sends them straight to the subscriber's socket. A Feed is a
`_fanout.Wire` (its wire state, read and set from here) plus the control side in Python.
Feeds keep a history to answer NACKs and send their own sender reports (media/reports.py).
"""

import asyncio
import logging
import random
import struct
import time
from typing import Any, NamedTuple

import pylibsrtp
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSrPacket,
    RtpPacket,
    unpack_remb_fci,
)

from media import _fanout, hooks, reports, rtp
from media.keyframes import KeyframeRequests

logger = logging.getLogger(__name__)

HISTORY_SIZE = _fanout.HISTORY_SIZE  # packets kept per video feed for NACKs (~2-4 s at 1 Mbit/s)
_NTP_EPOCH = 2208988800


def _ntp(seconds: float) -> int:
    return int((seconds + _NTP_EPOCH) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


class SenderReport(NamedTuple):
    """The publisher's last NTP/RTP mapping for a track, and when it arrived (time.time())."""

    ntp: int
    rtp: int
    arrived: float


def translate_report(
    report: SenderReport, now: float, clock_rate: int, ts_offset: int
) -> tuple[int, int]:
    """(NTP, RTP timestamp) for a feed's sender report now, from the publisher's own mapping
    moved forward by the time since it arrived and into the feed's timestamp space."""
    elapsed = now - report.arrived
    ntp = (report.ntp + int(elapsed * (1 << 32))) & 0xFFFFFFFFFFFFFFFF
    rtp_ts = (report.rtp + ts_offset + int(elapsed * clock_rate)) & 0xFFFFFFFF
    return ntp, rtp_ts


class Forwarder:
    """A published track: received once, sent to every feed."""

    def __init__(self, track_id: str, kind: str, codec: Any, receiver: RTCRtpReceiver) -> None:
        self.track_id = track_id
        self.kind = kind
        self.codec = codec
        self.payload_type: int = codec.payloadType
        self.clock_rate: int = codec.clockRate
        self.is_keyframe_start = rtp.keyframe_start_detector(codec.name)
        self.feeds: list[Feed] = []
        self.media_ssrc: int | None = None
        self.report: SenderReport | None = None
        self.packets = 0
        self.octets = 0
        # Set while the track must reach nobody (a moderator's mute): packets are still read.
        self.muted = False
        # RFC 6464 levels (-dBov, 0 loudest, 127 silence) summed since the last read_level().
        self.level_sum = 0
        self.level_count = 0
        self._rate_mark = 0  # octets at the last take_rate()
        self.closed = False
        self._receiver = receiver
        self._video = kind == "video"
        self._tasks: set[asyncio.Future[None]] = set()
        self.keyframes = KeyframeRequests(self._send_pli, waiting=self._feed_waits)
        hooks.tap_receiver(receiver, self.on_packet)
        hooks.on_sender_report(receiver, self._on_sender_report)

    def on_packet(self, packet: RtpPacket) -> None:
        """Called by the receiver for every packet, in order of arrival."""
        if packet.payload_type != self.payload_type:
            return
        if packet.ssrc != self.media_ssrc:
            if self.media_ssrc is not None:
                self._source_changed()
            self.media_ssrc = packet.ssrc
        payload = packet.payload
        self.packets += 1
        self.octets += len(payload)
        if self.muted:
            return
        level = None if self._video else packet.extensions.audio_level
        if level is not None:
            self.level_sum += level[1]
            self.level_count += 1
        feeds = self.feeds
        if not feeds:
            return
        now = time.time()
        # The one extension value every feed carries (-1: none), computed once for all of them.
        if self._video:
            # abs-send-time: seconds in 6.18 fixed point, 24 bits (NTP epoch is a multiple of 64 s).
            value = int(now * 262144) & 0xFFFFFF
        else:  # the RFC 6464 octet: voice activity bit, then the level
            value = -1 if level is None else (level[0] << 7) | level[1]
        # Rewrite, protect and send to every feed in one call (media/_fanout.c); the keyframe
        # detector runs only if a feed waits for a keyframe.
        _fanout.fanout(
            feeds,
            payload,
            packet.sequence_number,
            packet.timestamp,
            packet.marker,
            packet.padding_size,
            value,
            self.is_keyframe_start,
            now,
        )

    def _on_sender_report(self, packet: RtcpSrPacket) -> None:
        if packet.ssrc == self.media_ssrc:
            info = packet.sender_info
            self.report = SenderReport(info.ntp_timestamp, info.rtp_timestamp, time.time())

    def _source_changed(self) -> None:
        """The publisher started a new RTP stream (new SSRC, sequence and timestamp spaces):
        every feed restarts at its next keyframe, continuing its own numbering."""
        self.report = None
        for feed in self.feeds:
            feed.new_source()

    def read_level(self) -> int | None:
        """The mean RFC 6464 level (-dBov: 0 loudest, 127 silence) since the last call, or
        None when no packet carried one (or the track is muted)."""
        total, count = self.level_sum, self.level_count
        self.level_sum = self.level_count = 0
        return None if count == 0 else total // count

    def take_rate(self, seconds: float) -> int:
        """Bits per second received over the last `seconds` (since the previous call)."""
        octets, self._rate_mark = self.octets - self._rate_mark, self.octets
        return int(octets * 8 / seconds) if seconds > 0 else 0

    def mute(self) -> None:
        """Forward nothing (for every subscriber) until `unmute`."""
        self.muted = True

    def unmute(self) -> None:
        if self.muted:
            self.muted = False
            for feed in self.feeds:  # re-based at the next packet: no sequence gap
                feed.restart()

    def request_keyframe(self, starting: bool = False) -> None:
        """Ask the publisher for a keyframe; `starting`: for a feed with no picture yet, which
        waits for it (throttled less than requests for loss recovery: media/keyframes.py)."""
        if self._video and not self.closed:
            self.keyframes.request(starting)

    def _feed_waits(self) -> bool:
        """Whether a subscriber that should see this track still waits for its keyframe."""
        return any(f.waiting and f.ready and not f.paused for f in self.feeds)

    def _send_pli(self) -> bool:
        if self.media_ssrc is None:
            return False
        task = asyncio.ensure_future(hooks.send_pli(self._receiver, self.media_ssrc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    # Feeds are replaced, never mutated, so a feed closing during a fan-out is harmless.
    def attach(self, feed: "Feed") -> None:
        self.feeds = [*self.feeds, feed]

    def detach(self, feed: "Feed") -> None:
        self.feeds = [f for f in self.feeds if f is not feed]

    def close(self) -> None:
        self.closed = True
        self.keyframes.close()
        for feed in self.feeds:
            feed.ready = False
        self.feeds = []


class Feed(_fanout.Wire):
    """One forwarded track as one subscriber receives it, over that subscriber's sender.

    The wire state (ssrc, payload_type, next_seq, rtx_seq, ts_offset, last_ts, last_time,
    packets, octets, retransmitted, ready, paused, waiting, ...) lives in the `_fanout.Wire`
    base, where `_fanout.fanout` reads and updates it for every packet.
    """

    __slots__ = (
        "_dtls",
        "_reports",
        "_socket",
        "closed",
        "cname",
        "ext",
        "forwarder",
        "loss",
        "remb",
        "reports",
        "rtcp_received",
        "rtx_payload_type",
        "sender",
    )

    def __init__(self, forwarder: Forwarder, sender: RTCRtpSender) -> None:
        self.forwarder = forwarder
        self.sender = sender
        self.ssrc, self.rtx_ssrc = hooks.sender_ssrcs(sender)
        self.ready = False  # negotiated and connected
        self.closed = False
        self.paused = False
        self.waiting = True  # for the next keyframe start
        self.payload_type = 0
        self.rtx_payload_type: int | None = None
        self.ext = rtp.Extensions(0, "", 0, 0)
        self.next_seq = random.randrange(0x8000)  # low half: no early wrap (SRTP ROC)
        self.rtx_seq = random.randrange(0x8000)
        self.ts_offset = random.randrange(1 << 32)
        self.last_ts = self.ts_offset
        # After a new source, continue one frame (at 50 per second) after the last timestamp.
        self.rebase_step = forwarder.clock_rate // 50
        self._socket: hooks.Socket | None = None
        self._dtls: RTCDtlsTransport | None = None
        self.remb: int | None = None
        self.loss: float | None = None  # the worst fraction lost reported since take_loss()
        self.rtcp_received = 0
        self.reports = 0
        hooks.on_sender_start(sender, self._started)
        hooks.intercept_sender_rtcp(sender, self._on_rtcp)
        self.cname = b""
        self._reports = reports.ReportLoop(self)
        hooks.replace_rtcp_loop(sender, self._reports.run)

    # --- the socket the packets go to -------------------------------------------------------

    @property
    def socket(self) -> hooks.Socket | None:
        """The subscriber's SRTP session and UDP socket (None: nothing is sent, not yet or
        no more; set None when the connection fails)."""
        return self._socket

    @socket.setter
    def socket(self, socket: hooks.Socket | None) -> None:
        self._socket = socket
        if socket is None:
            self.drop_socket()
        else:
            self.use_socket(*socket)

    def _connect(self) -> hooks.Socket | None:
        """Look for the socket; _fanout calls this for a ready feed that has none."""
        self.socket = None if self._dtls is None else hooks.direct_socket(self._dtls)
        return self._socket

    # --- control --------------------------------------------------------------------------

    def _started(self, parameters: Any) -> None:
        """The subscriber's answer is in and DTLS is up: learn what was negotiated."""
        if self.closed:
            return
        codecs = parameters.codecs
        self.payload_type = codecs[0].payloadType
        self.rtx_payload_type = next(
            (
                c.payloadType
                for c in codecs
                if c.name == "rtx" and c.parameters.get("apt") == self.payload_type
            ),
            None,
        )
        self.cname = (parameters.rtcp.cname or "").encode()
        ids = {e.uri: e.id for e in parameters.headerExtensions}
        if self.forwarder.kind == "video":
            self.ext = rtp.Extensions(
                ids.get(rtp.MID_URI, 0),
                parameters.muxId or "",
                ids.get(rtp.ABS_SEND_TIME_URI, 0),
                3,
            )
            nack = any(fb.type == "nack" and not fb.parameter for fb in codecs[0].rtcpFeedback)
            self.keep_history(nack)
        else:
            self.ext = rtp.Extensions(
                ids.get(rtp.MID_URI, 0), parameters.muxId or "", ids.get(rtp.AUDIO_LEVEL_URI, 0), 1
            )
            self.keep_history(False)
        ext = self.ext
        self.set_extensions(ext.head, ext.tail, ext.plain, ext.value_size)
        self._dtls = self.sender.transport
        # The subscriber's RTCP (NACK, PLI, REMB, reports) reaches _on_rtcp without a queue.
        hooks.receive_inline(self._dtls)
        self.socket = None
        if not self.ready:
            self.ready = True
            self.restart()

    def restart(self) -> None:
        """Start again at the next keyframe (a new subscriber or a resume) and ask for one."""
        # Audio starts on any packet; either way sequence numbers are re-based to stay contiguous.
        self.waiting = True
        self.forwarder.request_keyframe(starting=True)

    def new_source(self) -> None:
        self.rebase_ts = self.packets > 0
        if self.ready and not self.paused:
            self.restart()
        else:
            self.waiting = True

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self.restart()

    def close(self) -> None:
        self.closed = True
        self.ready = False
        self.socket = None
        self.keep_history(False)  # its packets are no longer needed
        self.forwarder.detach(self)

    def continue_from(self, previous: "Feed") -> None:
        """Take over a reused section's sequence numbers so the subscriber sees no jump."""
        self.next_seq = previous.next_seq
        self.rtx_seq = previous.rtx_seq
        previous._reports.feed = self  # the section's RTCP task, if it runs, reports for us

    # --- RTCP from the subscriber ---------------------------------------------------------

    def _on_rtcp(self, packet: AnyRtcpPacket) -> bool:
        if self.closed:
            return True
        self.rtcp_received += 1
        if isinstance(packet, RtcpRtpfbPacket):
            if packet.fmt == RTCP_RTPFB_NACK:
                for seq in packet.lost:
                    self._retransmit(seq)
            return False
        if isinstance(packet, RtcpPsfbPacket):
            if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                self.forwarder.request_keyframe()
            elif packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, ssrcs = unpack_remb_fci(packet.fci)
                except (ValueError, struct.error):  # aiortc: a REMB counting more SSRCs than it has
                    return False
                if self.ssrc in ssrcs:
                    self.remb = bitrate
            return False
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == self.ssrc:
                    lost = report.fraction_lost / 256
                    self.loss = lost if self.loss is None else max(self.loss, lost)
        # Not to aiortc: its statistics of receiver reports (a stats object and a datetime per
        # report and sender) are read by nobody here, and its round-trip time needs its own
        # sender reports, which the feed replaced (media/reports.py).
        return False

    def take_loss(self) -> float | None:
        """The worst loss the subscriber reported since the previous call (None: no report)."""
        loss, self.loss = self.loss, None
        return loss

    def _retransmit(self, seq: int) -> None:
        rtx = self.rtx_payload_type
        self.retransmit(seq, -1 if rtx is None else rtx)

    # --- sender reports ---------------------------------------------------------------------

    def sender_report(self) -> bytes:
        """This feed's RTCP sender report (and SDES) as of now."""
        self.reports += 1
        now = time.time()
        published = self.forwarder.report
        if published is not None and self.packets:
            # Keep the publisher's own audio/video timing (lip sync across its tracks).
            ntp, rtp_ts = translate_report(
                published, now, self.forwarder.clock_rate, self.ts_offset
            )
        else:
            elapsed = now - self.last_time if self.packets else 0.0
            ntp = _ntp(now)
            rtp_ts = self.last_ts + int(elapsed * self.forwarder.clock_rate)
        return reports.sender_report(self.ssrc, ntp, rtp_ts, self.packets, self.octets, self.cname)

    def send_report(self) -> None:
        if not self.closed:
            socket = self._socket if self.connected else self._connect()
            if socket is not None:
                self._send_rtcp(self.sender_report(), socket)

    def send_bye(self) -> None:
        # Usually closed by now (its socket dropped): the transport may still be up.
        connected = self.connected and not self.closed
        socket = self._socket if connected else None
        if socket is None and self._dtls is not None:
            socket = hooks.direct_socket(self._dtls)
        self._send_rtcp(reports.bye(self.ssrc), socket)

    def _send_rtcp(self, data: bytes, socket: hooks.Socket | None) -> None:
        if socket is None:
            return
        try:
            socket.sendto(socket.session.protect_rtcp(data), socket.addr)
        except (pylibsrtp.Error, OSError, RuntimeError):
            self.send_errors += 1  # a closing transport: the next report looks again
