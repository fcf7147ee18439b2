"""One published track fanned out to its subscribers as rewritten RTP, never decoded.

The publisher's receiver hands each packet (RTX already unwrapped) to `Forwarder.on_packet`;
each `Feed` (the track as one subscriber gets it) rewrites SSRC, sequence number, timestamp,
payload type and header extensions, SRTP-protects the bytes and sends them straight to the
subscriber's socket. Feeds keep a history to answer NACKs and fill their sender reports.
"""

import asyncio
import logging
import random
import struct
import time
from typing import Any, NamedTuple

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

from media import hooks, rtp
from media.keyframes import KeyframeRequests

logger = logging.getLogger(__name__)

HISTORY_SIZE = 512  # packets kept per video feed for NACKs (~2-4 s at 1 Mbit/s)
_HISTORY_MASK = HISTORY_SIZE - 1
# After a (re)start, packets older than the start point are dropped for this many packets.
_START_GUARD = 512
_LEVEL_OCTETS = tuple(bytes([i]) for i in range(256))
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
        self.keyframes = KeyframeRequests(self._send_pli)
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
        self.packets += 1
        self.octets += len(packet.payload)
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
        value: bytes | None
        if self._video:
            # abs-send-time: seconds in 6.18 fixed point, 24 bits (NTP epoch is a multiple of 64 s).
            value = struct.pack("!I", int(now * 262144) & 0xFFFFFF)[1:]
        else:
            value = None if level is None else _LEVEL_OCTETS[(level[0] << 7) | level[1]]
        for feed in feeds:
            feed.send(packet, value, now)

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

    def request_keyframe(self) -> None:
        if self._video and not self.closed:
            self.keyframes.request()

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


class Feed:
    """One forwarded track as one subscriber receives it, over that subscriber's sender."""

    __slots__ = (
        "_dtls",
        "_guard",
        "_rebase_ts",
        "_start_seq",
        "closed",
        "ext",
        "forwarder",
        "history",
        "last_time",
        "last_ts",
        "loss",
        "next_seq",
        "octets",
        "packets",
        "paused",
        "payload_type",
        "ready",
        "remb",
        "reports",
        "retransmitted",
        "rtcp_received",
        "rtx_payload_type",
        "rtx_seq",
        "rtx_ssrc",
        "sender",
        "seq_offset",
        "socket",
        "ssrc",
        "ts_offset",
        "waiting",
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
        self.seq_offset = 0
        self.ts_offset = random.randrange(1 << 32)
        self._start_seq = 0
        self._guard = 0
        self._rebase_ts = False
        self.history: list[bytes | None] | None = None
        self.socket: hooks.Socket | None = None
        self._dtls: RTCDtlsTransport | None = None
        self.packets = 0
        self.octets = 0
        self.last_ts = self.ts_offset
        self.last_time = 0.0
        self.remb: int | None = None
        self.loss: float | None = None  # the worst fraction lost reported since take_loss()
        self.retransmitted = 0
        self.rtcp_received = 0
        self.reports = 0
        hooks.on_sender_start(sender, self._started)
        hooks.intercept_sender_rtcp(sender, self._on_rtcp)
        hooks.rewrite_sender_reports(sender, self._fill_report)

    # --- the per-packet path -------------------------------------------------------------

    def send(self, packet: RtpPacket, value: bytes | None, now: float) -> None:
        if not self.ready or self.paused:
            return
        in_seq = packet.sequence_number
        if self.waiting:
            if not self.forwarder.is_keyframe_start(packet.payload):
                return
            self.waiting = False
            self.seq_offset = (self.next_seq - in_seq) & 0xFFFF
            if self._rebase_ts:
                # A new source: continue from the last timestamp sent, one frame later.
                self._rebase_ts = False
                self.ts_offset = (
                    self.last_ts + self.forwarder.clock_rate // 50 - packet.timestamp
                ) & 0xFFFFFFFF
            self._start_seq = in_seq
            self._guard = _START_GUARD
        elif self._guard:
            self._guard -= 1
            if (in_seq - self._start_seq) & 0x8000:
                return  # reordered from before this feed's start
        seq = (in_seq + self.seq_offset) & 0xFFFF
        if not (seq - self.next_seq) & 0x8000:
            self.next_seq = (seq + 1) & 0xFFFF
        ts = (packet.timestamp + self.ts_offset) & 0xFFFFFFFF
        payload = packet.payload
        first = 0x80
        if packet.padding_size:  # rare: keep the publisher's padding (bandwidth probes)
            first |= rtp.PADDING
            payload = payload + rtp.padding(packet.padding_size)
        second = (packet.marker << 7) | self.payload_type
        ext = self.ext
        if value is not None and ext.value_size:
            header = rtp.HEADER.pack(first | rtp.EXTENSION, second, seq, ts, self.ssrc)
            data = b"".join((header, ext.head, value, ext.tail, payload))
        elif ext.plain:
            header = rtp.HEADER.pack(first | rtp.EXTENSION, second, seq, ts, self.ssrc)
            data = b"".join((header, ext.plain, payload))
        else:
            data = rtp.HEADER.pack(first, second, seq, ts, self.ssrc) + payload
        if self.history is not None:
            self.history[seq & _HISTORY_MASK] = data
        self.packets += 1
        self.octets += len(packet.payload)
        self.last_ts = ts
        self.last_time = now
        sock = self.socket or self._connect()
        if sock is not None:
            try:
                sock.sendto(sock.protect(data), sock.addr)
            except Exception as exc:  # a closing socket must not stop the other feeds
                logger.debug("feed send failed: %s", exc)
                self.socket = None

    def _connect(self) -> hooks.Socket | None:
        if self._dtls is not None:
            self.socket = hooks.direct_socket(self._dtls)
        return self.socket

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
        ids = {e.uri: e.id for e in parameters.headerExtensions}
        if self.forwarder.kind == "video":
            self.ext = rtp.Extensions(
                ids.get(rtp.MID_URI, 0),
                parameters.muxId or "",
                ids.get(rtp.ABS_SEND_TIME_URI, 0),
                3,
            )
            nack = any(fb.type == "nack" and not fb.parameter for fb in codecs[0].rtcpFeedback)
            self.history = [None] * HISTORY_SIZE if nack else None
        else:
            self.ext = rtp.Extensions(
                ids.get(rtp.MID_URI, 0), parameters.muxId or "", ids.get(rtp.AUDIO_LEVEL_URI, 0), 1
            )
        self._dtls = self.sender.transport
        self.socket = None
        if not self.ready:
            self.ready = True
            self.restart()

    def restart(self) -> None:
        """Start again at the next keyframe (a new subscriber or a resume) and ask for one."""
        # Audio starts on any packet; either way sequence numbers are re-based to stay contiguous.
        self.waiting = True
        self.forwarder.request_keyframe()

    def new_source(self) -> None:
        self._rebase_ts = self.packets > 0
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
        self.forwarder.detach(self)

    def continue_from(self, previous: "Feed") -> None:
        """Take over a reused section's sequence numbers so the subscriber sees no jump."""
        self.next_seq = previous.next_seq
        self.rtx_seq = previous.rtx_seq

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
                except ValueError:
                    return False
                if self.ssrc in ssrcs:
                    self.remb = bitrate
            return False
        if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):
            for report in packet.reports:
                if report.ssrc == self.ssrc:
                    lost = report.fraction_lost / 256
                    self.loss = lost if self.loss is None else max(self.loss, lost)
        return True  # receiver reports: aiortc keeps the stats

    def take_loss(self) -> float | None:
        """The worst loss the subscriber reported since the previous call (None: no report)."""
        loss, self.loss = self.loss, None
        return loss

    def _retransmit(self, seq: int) -> None:
        history = self.history
        if history is None:
            return
        data = history[seq & _HISTORY_MASK]
        if data is None or ((data[2] << 8) | data[3]) != seq:
            return
        if self.rtx_payload_type is not None:
            data = rtp.wrap_rtx(data, self.rtx_payload_type, self.rtx_seq, self.rtx_ssrc)
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
        sock = self.socket or self._connect()
        if sock is not None:
            try:
                sock.sendto(sock.protect(data), sock.addr)
                self.retransmitted += 1
            except Exception as exc:
                logger.debug("feed retransmit failed: %s", exc)

    def _fill_report(self, report: RtcpSrPacket) -> None:
        if self.closed or report.ssrc != self.ssrc:
            return
        self.reports += 1
        now = time.time()
        info = report.sender_info
        published = self.forwarder.report
        if published is not None and self.packets:
            # Keep the publisher's own audio/video timing (lip sync across its tracks).
            info.ntp_timestamp, info.rtp_timestamp = translate_report(
                published, now, self.forwarder.clock_rate, self.ts_offset
            )
        else:
            elapsed = now - self.last_time if self.packets else 0.0
            info.ntp_timestamp = _ntp(now)
            rtp_ts = self.last_ts + int(elapsed * self.forwarder.clock_rate)
            info.rtp_timestamp = rtp_ts & 0xFFFFFFFF
        info.packet_count = self.packets & 0xFFFFFFFF
        info.octet_count = self.octets & 0xFFFFFFFF
