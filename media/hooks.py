"""Every private aiortc/aioice/pylibsrtp name media/ relies on, in one place.

aiortc 1.16 decodes whatever a receiver gets and encodes whatever a sender sends; an SFU needs
neither. Each function here touches one internal and raises HookError (naming it) when it is
missing instead of silently doing nothing. tests/test_media_hooks.py checks every name in NAMES
exists and that each hook is still reached by aiortc's own code paths.
"""

import asyncio
import asyncio.trsock
import importlib
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import aioice
import aioice.candidate
import aioice.ice
import aioice.turn
import pylibsrtp
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import AnyRtcpPacket, RtcpSrPacket, RtpPacket, is_rtcp

from media.errors import HookError

logger = logging.getLogger(__name__)

# aiortc.rtcrtpreceiver.RTCRtpReceiver: the jitter buffer its _handle_rtp_packet feeds after RTX
# unwrapping, NACK generation and REMB; replacing it taps packets and starves the decoder thread,
# so no decoder is ever created.
RECEIVER_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"
# RTCRtpReceiver: the REMB estimator its _handle_rtp_packet feeds for video; a receiver whose
# bandwidth is not a constraint (the recording process, on the server's machine) drops it.
RECEIVER_BITRATE_ESTIMATOR = "_RTCRtpReceiver__remote_bitrate_estimator"
# Sends a PLI for a media SSRC on the publisher's connection (keyframe relay).
RECEIVER_SEND_PLI = "_send_rtcp_pli"
# Where the DTLS transport routes a publisher's sender reports: their NTP/RTP mapping is kept so
# subscribers get the publisher's own audio/video timing.
RECEIVER_HANDLE_RTCP = "_handle_rtcp_packet"
# RTCRtpSender: the msid stream id its SDP announces; one per publication, so a browser keeps
# each publisher's audio and video in one sync group.
SENDER_STREAM_ID = "_stream_id"
# RTCRtpSender: SSRCs the SDP announces; forwarded packets are rewritten to them.
SENDER_SSRC = "_ssrc"
SENDER_RTX_SSRC = "_rtx_ssrc"
# Where the DTLS transport routes a subscriber's RTCP (NACK, PLI/FIR, REMB, RR).
SENDER_HANDLE_RTCP = "_handle_rtcp_packet"
# RTCRtpSender: its RTCP task (sender reports) and the events its stop() waits for; a feed's
# own loop replaces it (media/reports.py says why).
SENDER_RUN_RTCP = "_run_rtcp"
SENDER_RTCP_STARTED = "_RTCRtpSender__rtcp_started"
SENDER_RTCP_EXITED = "_RTCRtpSender__rtcp_exited"
# Where a sender's PLI/FIR ends up (it only flags the encoder): test publishers answer it.
SENDER_SEND_KEYFRAME = "_send_keyframe"
# RTCRtpTransceiver: negotiated codecs; trimmed so a publisher sends exactly one codec.
TRANSCEIVER_CODECS = "_codecs"
# RTCDtlsTransport: the outbound SRTP session (pylibsrtp.Session), set once DTLS is connected.
DTLS_TX_SRTP = "_tx_srtp"
# pylibsrtp.Session: its srtp_t, and the cffi binding's srtp_protect, for media._fanout to
# protect in C without pylibsrtp's per-call checks and allocations.
SRTP_SESSION = "_srtp"
SRTP_BINDING = "pylibsrtp._binding"
# RTCIceTransport / RTCIceGatherer: the aioice Connection.
ICE_CONNECTION = "_connection"
# Where a DTLS transport hands decrypted RTP; tests drop packets here to simulate loss.
DTLS_HANDLE_RTP = "_handle_rtp_data"
# RTCDtlsTransport: the inbound SRTP session, and where decrypted RTCP goes (receive_inline).
DTLS_RX_SRTP = "_rx_srtp"
DTLS_HANDLE_RTCP = "_handle_rtcp_data"
# aioice.StunProtocol: what the socket's transport calls for every datagram (receive_inline).
PROTOCOL_DATAGRAM_RECEIVED = "datagram_received"
# aioice.Connection: nominated candidate pairs by component; a pair's protocol owns the socket.
ICE_NOMINATED = "_nominated"
# aioice.Connection: its host sockets (StunProtocols); with a port range we bind them ourselves.
ICE_PROTOCOLS = "_protocols"
# asyncio.trsock.TransportSocket (what a transport's get_extra_info("socket") gives): the
# socket it wraps; media._fanout asks a socket's fileno() before every send, and the wrapper's
# is a Python method.
TRANSPORT_SOCKET = "_sock"
# aioice.Connection: gathering state, written by our gather_candidates replacement.
ICE_GATHER_STATE = ("_local_candidates_start", "_local_candidates", "_local_candidates_end")
ICE_COMPONENTS = "_components"
# RTCPeerConnection: its transceivers. When an offer reuses a stopped section's m-line for a
# new mid, aiortc keeps the stopped transceiver at that line index and its setLocalDescription
# would give the new mid to the old transceiver: the stopped one is taken out first.
PC_TRANSCEIVERS = "_RTCPeerConnection__transceivers"
# aiortc.rtcpeerconnection.find_common_codecs and aiortc.codecs.CODECS: how setRemoteDescription
# matches an offer's codecs against its own (it fails half-way through an offer without one).
COMMON_CODECS = ("aiortc.rtcpeerconnection", "find_common_codecs")
LOCAL_CODECS = ("aiortc.codecs", "CODECS")


class Name(NamedTuple):
    owner: str
    name: str


# What tests/test_media_hooks.py checks on live objects.
NAMES = (
    Name("RTCRtpReceiver", RECEIVER_JITTER_BUFFER),
    Name("RTCRtpReceiver", RECEIVER_SEND_PLI),
    Name("RTCRtpReceiver", RECEIVER_BITRATE_ESTIMATOR),
    Name("RTCRtpReceiver", RECEIVER_HANDLE_RTCP),
    Name("RTCRtpSender", SENDER_STREAM_ID),
    Name("RTCRtpSender", SENDER_SSRC),
    Name("RTCRtpSender", SENDER_RTX_SSRC),
    Name("RTCRtpSender", SENDER_HANDLE_RTCP),
    Name("RTCRtpSender", SENDER_RUN_RTCP),
    Name("RTCRtpSender", SENDER_RTCP_STARTED),
    Name("RTCRtpSender", SENDER_RTCP_EXITED),
    Name("RTCRtpSender", SENDER_SEND_KEYFRAME),
    Name("RTCRtpTransceiver", TRANSCEIVER_CODECS),
    Name("RTCDtlsTransport", DTLS_TX_SRTP),
    Name("RTCDtlsTransport", DTLS_HANDLE_RTP),
    Name("RTCDtlsTransport", DTLS_RX_SRTP),
    Name("RTCDtlsTransport", DTLS_HANDLE_RTCP),
    Name("aioice.StunProtocol", PROTOCOL_DATAGRAM_RECEIVED),
    Name("pylibsrtp.Session", SRTP_SESSION),
    Name("RTCIceGatherer", ICE_CONNECTION),
    Name("aioice.Connection", ICE_NOMINATED),
    Name("aioice.Connection", ICE_COMPONENTS),
    *(Name("aioice.Connection", n) for n in ICE_GATHER_STATE),
    Name("aioice.Connection", "get_component_candidates"),
    Name("aioice.Connection", ICE_PROTOCOLS),
    Name("aioice.CandidatePair", "protocol"),
    Name("aioice.CandidatePair", "remote_addr"),
    Name("asyncio.TransportSocket", TRANSPORT_SOCKET),
)


def _require(obj: object, name: str) -> Any:
    try:
        return getattr(obj, name)
    except AttributeError:
        raise HookError(name, f"not found on {type(obj).__name__}") from None


class _Tap:
    """Stands in for the receiver's jitter buffer: hands each packet on, never a frame."""

    __slots__ = ("on_packet",)

    def __init__(self, on_packet: Callable[[RtpPacket], None]) -> None:
        self.on_packet = on_packet

    def add(self, packet: RtpPacket) -> tuple[bool, None]:
        self.on_packet(packet)
        return False, None


def tap_receiver(receiver: RTCRtpReceiver, on_packet: Callable[[RtpPacket], None]) -> None:
    """Route a receiver's packets (RTX unwrapped, after its NACKs) to `on_packet`; no decoding."""
    buffer = _require(receiver, RECEIVER_JITTER_BUFFER)
    if not callable(getattr(buffer, "add", None)):
        raise HookError(RECEIVER_JITTER_BUFFER, "has no add()")
    setattr(receiver, RECEIVER_JITTER_BUFFER, _Tap(on_packet))


class _Tee:
    """Stands in for the receiver's jitter buffer: each packet to `on_packet`, then on to the
    real buffer, whose frames aiortc decodes."""

    __slots__ = ("buffer", "on_packet")

    def __init__(self, buffer: Any, on_packet: Callable[[RtpPacket], None]) -> None:
        self.buffer = buffer
        self.on_packet = on_packet

    def add(self, packet: RtpPacket) -> Any:
        self.on_packet(packet)
        return self.buffer.add(packet)


def tee_receiver(receiver: RTCRtpReceiver, on_packet: Callable[[RtpPacket], None]) -> None:
    """Hand each of a receiver's packets (RTX unwrapped) to `on_packet` and still decode them
    (the recording process writes the packets and composes the decoded pictures)."""
    buffer = _require(receiver, RECEIVER_JITTER_BUFFER)
    if not callable(getattr(buffer, "add", None)):
        raise HookError(RECEIVER_JITTER_BUFFER, "has no add()")
    setattr(receiver, RECEIVER_JITTER_BUFFER, _Tee(buffer, on_packet))


def no_bandwidth_estimate(receiver: RTCRtpReceiver) -> None:
    """Stop a receiver's REMB: aiortc sends one whenever its estimate moves, which costs the
    recording process a tenth of its main thread and tells the SFU nothing it needs."""
    _require(receiver, RECEIVER_BITRATE_ESTIMATOR)
    setattr(receiver, RECEIVER_BITRATE_ESTIMATOR, None)


def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> Awaitable[None]:
    """Ask the remote sender of `media_ssrc` for a keyframe."""
    send: Callable[[int], Awaitable[None]] = _require(receiver, RECEIVER_SEND_PLI)
    return send(media_ssrc)


def on_sender_report(receiver: RTCRtpReceiver, report: Callable[[RtcpSrPacket], None]) -> None:
    """Call `report(packet)` for each sender report the remote sends this receiver."""
    original: Callable[[AnyRtcpPacket], Awaitable[None]] = _require(receiver, RECEIVER_HANDLE_RTCP)

    async def handle(packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpSrPacket):
            report(packet)
        await original(packet)

    setattr(receiver, RECEIVER_HANDLE_RTCP, handle)


def set_stream_id(sender: RTCRtpSender, stream_id: str) -> None:
    """The msid stream id the next offer announces for this sender."""
    _require(sender, SENDER_STREAM_ID)
    setattr(sender, SENDER_STREAM_ID, stream_id)


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """The (media, RTX) SSRCs the sender's SDP announces."""
    return int(_require(sender, SENDER_SSRC)), int(_require(sender, SENDER_RTX_SSRC))


def intercept_sender_rtcp(sender: RTCRtpSender, handler: Callable[[AnyRtcpPacket], bool]) -> None:
    """Give each RTCP packet for this sender to `handler`; it returns True to let aiortc see it."""
    original: Callable[[AnyRtcpPacket], Awaitable[None]] = _require(sender, SENDER_HANDLE_RTCP)

    async def handle(packet: AnyRtcpPacket) -> None:
        if handler(packet):
            await original(packet)

    setattr(sender, SENDER_HANDLE_RTCP, handle)


def replace_rtcp_loop(sender: RTCRtpSender, loop: Callable[[], Awaitable[None]]) -> None:
    """Run `loop()` as the sender's RTCP task instead of aiortc's report loop; the sender's
    stop() cancels it as it cancelled aiortc's. Call before the sender starts."""
    started: asyncio.Event = _require(sender, SENDER_RTCP_STARTED)
    exited: asyncio.Event = _require(sender, SENDER_RTCP_EXITED)
    _require(sender, SENDER_RUN_RTCP)

    async def run_rtcp() -> None:
        started.set()
        try:
            await loop()
        finally:
            exited.set()

    setattr(sender, SENDER_RUN_RTCP, run_rtcp)


def on_keyframe_request(sender: RTCRtpSender, requested: Callable[[], None]) -> None:
    """Call `requested()` when the remote asks this sender for a keyframe (PLI/FIR)."""
    original: Callable[[], None] = _require(sender, SENDER_SEND_KEYFRAME)

    def send_keyframe() -> None:
        original()
        requested()

    setattr(sender, SENDER_SEND_KEYFRAME, send_keyframe)


def on_sender_start(sender: RTCRtpSender, started: Callable[[Any], None]) -> None:
    """Call `started(parameters)` each time the connection starts the sender (after answers)."""
    original = sender.send

    async def send(parameters: Any) -> None:
        await original(parameters)
        started(parameters)

    sender.send = send  # type: ignore[method-assign]


def keep_one_codec(transceiver: RTCRtpTransceiver, payload_type: int | None = None) -> Any:
    """Trim negotiated codecs to one (the first, or `payload_type`) and its RTX, so the remote
    sends only that; returns the codec kept, or None if there is none."""
    codecs: list[Any] = _require(transceiver, TRANSCEIVER_CODECS)
    main = next(
        (c for c in codecs if c.name != "rtx" and payload_type in (None, c.payloadType)),
        None,
    )
    if main is None:
        return None
    kept = [main] + [
        c for c in codecs if c.name == "rtx" and c.parameters.get("apt") == main.payloadType
    ]
    setattr(transceiver, TRANSCEIVER_CODECS, kept)
    return main


def _module_name(where: tuple[str, str]) -> Any:
    module, name = where
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise HookError(f"{module}.{name}", "not found") from None


def common_codecs(kind: str, offered: list[Any]) -> list[Any]:
    """The offered codecs aiortc would negotiate for a `kind` section (empty: it refuses it)."""
    local: dict[str, list[Any]] = _module_name(LOCAL_CODECS)
    if kind not in local:
        return []
    find: Callable[[list[Any], list[Any]], list[Any]] = _module_name(COMMON_CODECS)
    return find(local[kind], offered)


def default_codec(kind: str) -> Any:
    """aiortc's own first codec for `kind` (stands in for a stopped section's unknown one)."""
    local: dict[str, list[Any]] = _module_name(LOCAL_CODECS)
    return local[kind][0]


async def retire_transceivers(pc: RTCPeerConnection, mids: set[str]) -> list[str]:
    """Stop and forget the transceivers whose mid is no longer in the remote offer (`mids`):
    their m-line went to a new mid. Returns the mids retired."""
    transceivers: list[RTCRtpTransceiver] = _require(pc, PC_TRANSCEIVERS)
    gone = [t for t in transceivers if t.mid is not None and t.mid not in mids]
    for transceiver in gone:
        transceivers.remove(transceiver)
        try:
            await transceiver.stop()
        except Exception:  # a receiver that never started: nothing to stop
            logger.debug("stopping retired transceiver %s", transceiver.mid, exc_info=True)
    return [str(t.mid) for t in gone]


def negotiated_codecs(transceiver: RTCRtpTransceiver) -> list[Any]:
    return list(_require(transceiver, TRANSCEIVER_CODECS))


class Socket(NamedTuple):
    """Where a connection's SRTP packets go (media._fanout.Wire.use_socket's arguments)."""

    session: pylibsrtp.Session  # keeps the libsrtp context alive
    srtp: int  # address of its srtp_t
    protect: int  # address of libsrtp's srtp_protect
    sock: Any  # the UDP socket (its fileno()), or None: a transport without one (a TURN relay)
    addr: Any
    sendto: Callable[[bytes, Any], None]


def direct_socket(dtls: RTCDtlsTransport) -> Socket | None:
    """The SRTP session and UDP socket under a connected DTLS transport, or None if not yet.

    Sending straight to them skips aiortc's coroutine chain (_send_rtp -> ICE -> aioice)
    for every forwarded packet.
    """
    if dtls.state != "connected":
        return None
    srtp = _require(dtls, DTLS_TX_SRTP)
    connection = _require(dtls.transport, ICE_CONNECTION)
    pair = _require(connection, ICE_NOMINATED).get(1)
    if srtp is None or pair is None:
        return None
    transport = _require(_require(pair, "protocol"), "transport")
    if transport is None or transport.is_closing():
        return None
    context, protect = srtp_pointers(srtp)
    sock = transport.get_extra_info("socket")
    if isinstance(sock, asyncio.trsock.TransportSocket):
        sock = _require(sock, TRANSPORT_SOCKET)
    return Socket(
        srtp,
        context,
        protect,
        sock,
        _require(pair, "remote_addr"),
        transport.sendto,
    )


def srtp_pointers(session: pylibsrtp.Session) -> tuple[int, int]:
    """The addresses of a session's libsrtp context and of libsrtp's srtp_protect (from
    pylibsrtp's own cffi binding), for media._fanout to protect in C."""
    context = _require(session, SRTP_SESSION)[0]
    try:
        binding = importlib.import_module(SRTP_BINDING)
        ffi, lib = binding.ffi, binding.lib
        protect = ffi.addressof(lib, "srtp_protect")
    except (ImportError, AttributeError) as exc:
        raise HookError(SRTP_BINDING, str(exc)) from None
    return int(ffi.cast("uintptr_t", context)), int(ffi.cast("uintptr_t", protect))


def restrict_host_addresses(
    pc: RTCPeerConnection,
    addresses: list[str],
    announce: str = "",
    ports: tuple[int, int] | None = None,
) -> None:
    """Gather host candidates on exactly `addresses` (aioice skips 127.0.0.1 otherwise); with
    `announce`, also offer each as a server-reflexive candidate at that address and the same
    port (a 1:1 NAT in front of the server); with `ports` (low, high), bind host sockets in that
    range (STUN server-reflexive candidates are then not gathered: announce the address).

    Call after the transceivers exist and before setLocalDescription. STUN/TURN candidates
    are still gathered from the configured servers.
    """
    for transceiver in pc.getTransceivers():
        if transceiver.sender.transport is None:
            continue  # a section aiortc failed to bundle: nothing to gather for
        gatherer = transceiver.sender.transport.transport.iceGatherer
        connection = _require(gatherer, ICE_CONNECTION)
        _replace_gathering(connection, list(addresses), announce, ports)


def _replace_gathering(
    connection: Any,
    addresses: list[str],
    announce: str = "",
    ports: tuple[int, int] | None = None,
) -> None:
    for name in (*ICE_GATHER_STATE, ICE_COMPONENTS, "get_component_candidates"):
        _require(connection, name)
    started, local, ended = ICE_GATHER_STATE

    async def gather_candidates() -> None:
        if getattr(connection, started):
            return
        setattr(connection, started, True)
        candidates: list[Any] = getattr(connection, local)
        for component in sorted(getattr(connection, ICE_COMPONENTS)):
            if ports is None:
                found = await connection.get_component_candidates(
                    component=component, addresses=addresses
                )
            else:
                found = await _bind_in_range(connection, component, addresses, ports)
                # TURN relays, if configured (no host sockets of aioice's own).
                found += await connection.get_component_candidates(
                    component=component, addresses=[]
                )
            candidates += found
            if announce:
                candidates += [_announced(c, announce) for c in found if c.type == "host"]
        setattr(connection, ended, True)

    connection.gather_candidates = gather_candidates


async def _bind_in_range(
    connection: Any, component: int, addresses: list[str], ports: tuple[int, int]
) -> list[Any]:
    """Host candidates on `addresses`, each on a free UDP port in `ports` (as aioice's own
    gathering does, but not on an ephemeral port)."""
    loop = asyncio.get_running_loop()
    protocols: list[Any] = _require(connection, ICE_PROTOCOLS)
    low, high = ports
    count = high - low + 1
    found = []
    for address in addresses:
        start = random.randrange(count)
        for step in range(count):
            port = low + (start + step) % count
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: aioice.ice.StunProtocol(connection), local_addr=(address, port)
                )
            except OSError:
                continue
            break
        else:
            logger.warning("no free UDP port in %d-%d on %s", low, high, address)
            continue
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE)
        host, bound = transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = aioice.Candidate(
            foundation=aioice.candidate.candidate_foundation("host", "udp", host),
            component=component,
            transport="udp",
            priority=aioice.candidate.candidate_priority(component, "host"),
            host=host,
            port=bound,
            type="host",
        )
        protocols.append(protocol)
        found.append(protocol.local_candidate)
    return found


def _announced(host: Any, address: str) -> Any:
    """A host candidate as seen through a 1:1 NAT: checks sent to it reach the host socket."""
    return aioice.Candidate(
        foundation=aioice.candidate.candidate_foundation("srflx", "udp", host.host),
        component=host.component,
        transport=host.transport,
        priority=aioice.candidate.candidate_priority(host.component, "srflx"),
        host=address,
        port=host.port,
        type="srflx",
        related_address=host.host,
        related_port=host.port,
    )


def drop_received_rtp(dtls: RTCDtlsTransport, drop: Callable[[bytes], bool]) -> None:
    """Discard decrypted RTP packets for which `drop(data)` is true (a lossy link, in tests)."""
    original: Callable[[bytes, int], Awaitable[None]] = _require(dtls, DTLS_HANDLE_RTP)

    async def handle(data: bytes, arrival_time_ms: int) -> None:
        if not drop(data):
            await original(data, arrival_time_ms)

    setattr(dtls, DTLS_HANDLE_RTP, handle)


# --- receiving without aiortc's queue ---------------------------------------------------------

_INLINE = "_veche_inline"  # set on a DTLS transport once receive_inline() watches it
_NTP_EPOCH = 2208988800  # seconds from 1900 to 1970


def receive_inline(dtls: RTCDtlsTransport) -> None:
    """Once `dtls` is connected, handle its SRTP and SRTCP datagrams in the socket's own
    callback instead of queueing them for its task.

    aiortc hands every datagram that is not STUN (found by a failed STUN parse, an exception)
    to an asyncio.Queue, whose getter, the DTLS transport's task, wakes up on a later loop
    turn and walks a chain of coroutines before the packet reaches a receiver or a sender.
    Here an SRTP datagram is unprotected and given to the same `_handle_rtp_data` /
    `_handle_rtcp_data` at once (NACKs, REMB, stats, RTX, sender reports: all as before);
    DTLS and anything else still take aiortc's path. Idempotent.
    """
    if getattr(dtls, _INLINE, False):
        return
    _require(dtls, DTLS_RX_SRTP)
    _require(dtls, DTLS_HANDLE_RTP)
    _require(dtls, DTLS_HANDLE_RTCP)
    connection = _require(dtls.transport, ICE_CONNECTION)
    setattr(dtls, _INLINE, True)

    def install() -> None:
        if dtls.state == "connected":
            for protocol in _require(connection, ICE_PROTOCOLS):
                _inline_protocol(dtls, protocol)

    dtls.on("statechange", install)
    install()


def _inline_protocol(dtls: RTCDtlsTransport, protocol: Any) -> None:
    original: Callable[[bytes, Any], None] = _require(protocol, PROTOCOL_DATAGRAM_RECEIVED)
    if getattr(original, _INLINE, False):
        return
    pending: set[asyncio.Future[None]] = set()

    def datagram_received(data: bytes, addr: Any) -> None:
        # RFC 7983: 128-191 is RTP/RTCP; STUN (0-3) and DTLS (20-63) go on as before.
        srtp = dtls._rx_srtp
        if not data or not 127 < data[0] < 192 or srtp is None or dtls.state != "connected":
            original(data, addr)  # a closed transport's task no longer reads them either
            return
        try:
            if is_rtcp(data):
                handling = dtls._handle_rtcp_data(srtp.unprotect_rtcp(data))
            else:
                # aiortc's clock.current_ms() (milliseconds since 1900), without datetimes.
                arrival_time_ms = int((time.time() + _NTP_EPOCH) * 1000)
                handling = dtls._handle_rtp_data(
                    srtp.unprotect(data), arrival_time_ms=arrival_time_ms
                )
        except pylibsrtp.Error:
            return  # not ours, replayed or damaged: aiortc drops these too
        run_now(handling, pending)

    setattr(datagram_received, _INLINE, True)
    setattr(protocol, PROTOCOL_DATAGRAM_RECEIVED, datagram_received)


def run_now(coroutine: Any, pending: set[asyncio.Future[None]]) -> None:
    """Run a coroutine now, as far as it goes without waiting (aiortc's packet handlers
    send their NACKs and reports without ever suspending); if it does wait, a task takes
    it from there (kept in `pending` until done). An error is logged, never raised: one bad
    packet must not stop the socket's other packets (in aiortc it stopped the transport)."""
    try:
        waited = coroutine.send(None)
    except StopIteration:
        return
    except Exception:
        logger.debug("packet handler failed", exc_info=True)
        return
    task = asyncio.ensure_future(_resume(coroutine, waited))
    pending.add(task)
    task.add_done_callback(pending.discard)


async def _resume(coroutine: Any, waited: Any) -> None:
    """Go on with a coroutine suspended on `waited` (the future it yielded to its driver, or
    None for a bare yield), as an asyncio Task would have."""
    while True:
        error: BaseException | None = None
        try:
            if waited is None:
                await asyncio.sleep(0)
            else:
                waited._asyncio_future_blocking = False  # as a Task does before waiting
                await waited
        except BaseException as exc:
            if waited is None or not waited.done():
                error = exc  # this task was cancelled: so is the coroutine
            # else the future failed: the coroutine gets its error when it resumes
        try:
            waited = coroutine.send(None) if error is None else coroutine.throw(error)
        except StopIteration:
            return
        except Exception:
            logger.debug("packet handler failed", exc_info=True)
            return
