"""An impaired link on loopback: a UDP relay between clients and a server that loses, delays
and rate-limits packets, per direction, with settings that may change while it runs.

The kernel here has no netem, so a weak regional link is modelled in user space. The relay
listens on a second loopback address (127.0.0.2 by default) at the same port numbers as the
server's ICE port range; each client 5-tuple gets an upstream socket of its own, so the server
sees one peer-reflexive address per client. A client is routed through it by a `Detour`:
the server's candidates it is given point at the relay, and the candidates it gives the server
are left out (the server learns the relay's address from the first connectivity check), so no
candidate pair can bypass the relay in either direction.
"""

import asyncio
import collections
import contextlib
import ipaddress
import logging
import random
import re
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

log = logging.getLogger(__name__)

RELAY_HOST = "127.0.0.2"
MAX_FLOWS = 256  # client 5-tuples at once
MAX_IN_FLIGHT = 20_000  # packets held for delay in one direction
MAX_PENDING = 64  # packets of a flow whose upstream socket is still opening


@dataclass(frozen=True)
class Impairment:
    """What one direction of the link does to packets.

    `loss` is a fraction; with `burst` > 1 losses come in bursts of that mean length
    (a Gilbert-Elliott chain whose bad state loses everything), else independently. `rate`
    (bit/s, 0 = unlimited) serializes packets through a drop-tail queue holding `queue`
    seconds at that rate. `delay` plus a uniform ±`jitter` is added after the queue, keeping
    the order (jitter of a real link comes from queues, which do not reorder).
    """

    loss: float = 0.0
    burst: float = 1.0
    delay: float = 0.0
    jitter: float = 0.0
    rate: int = 0
    queue: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError("loss is a fraction in [0, 1]")
        if self.burst < 1.0 or self.delay < 0 or self.jitter < 0 or self.rate < 0:
            raise ValueError("burst >= 1; delay, jitter and rate >= 0")
        if self.queue <= 0:
            raise ValueError("queue is a positive number of seconds")


CLEAN = Impairment()


@dataclass(frozen=True)
class LinkSpec:
    """Both directions: `down` is server -> client, `up` client -> server."""

    down: Impairment = CLEAN
    up: Impairment = CLEAN


_NUMBER = re.compile(r"^([0-9]*\.?[0-9]+)\s*([a-z%/]*)$")
_SECONDS = {"": 0.001, "ms": 0.001, "s": 1.0}  # a bare number of a time is milliseconds
_BITS = {"": 1, "bit": 1, "bps": 1, "k": 1e3, "kbit": 1e3, "kbps": 1e3, "m": 1e6, "mbit": 1e6}
_BITS["mbps"] = 1e6


def _quantity(key: str, text: str, units: dict[str, float]) -> float:
    match = _NUMBER.match(text.strip().lower())
    if match is None or match.group(2) not in units:
        raise ValueError(f"{key}={text!r}: expected a number with one of {sorted(units)}")
    return float(match.group(1)) * units[match.group(2)]


def parse(spec: str) -> LinkSpec:
    """`loss=5%,burst=3,delay=100ms,jitter=10ms,rate=300kbit,queue=200ms,dir=down` ->
    LinkSpec. `dir` is down (the default: what the server sends), up or both."""
    fields: dict[str, float] = {}
    direction = "down"
    for item in filter(None, (part.strip() for part in spec.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep:
            raise ValueError(f"{item!r}: expected key=value")
        if key == "dir":
            direction = value.strip().lower()
            if direction not in ("down", "up", "both"):
                raise ValueError("dir is down, up or both")
        elif key == "loss":
            fields["loss"] = _quantity(key, value, {"%": 0.01, "": 1.0})
        elif key == "burst":
            fields["burst"] = _quantity(key, value, {"": 1.0})
        elif key in ("delay", "jitter", "queue"):
            fields[key] = _quantity(key, value, _SECONDS)
        elif key == "rate":
            fields["rate"] = _quantity(key, value, _BITS)
        else:
            known = "loss, burst, delay, jitter, rate, queue, dir"
            raise ValueError(f"unknown impairment {key!r} ({known})")
    rate = int(fields.pop("rate", 0))
    impairment = replace(CLEAN, rate=rate, **fields)
    return LinkSpec(
        down=impairment if direction in ("down", "both") else CLEAN,
        up=impairment if direction in ("up", "both") else CLEAN,
    )


@dataclass
class Counters:
    """What one direction did with the packets it was given."""

    passed: int = 0
    lost: int = 0  # to `loss`
    overflowed: int = 0  # to the full queue (or the bound on packets in flight)
    bytes_passed: int = 0

    @property
    def offered(self) -> int:
        return self.passed + self.lost + self.overflowed

    @property
    def dropped_fraction(self) -> float:
        return (self.lost + self.overflowed) / self.offered if self.offered else 0.0


class Lane:
    """One direction of the link: loss, then the rate-limited queue, then delay and jitter;
    `deliver` is called with each surviving packet at its time, in order."""

    def __init__(self, impairment: Impairment, rng: random.Random) -> None:
        self.impairment = impairment  # replaced while running to degrade or restore the link
        self.counters = Counters()
        self._rng = rng
        self._bad = False  # Gilbert-Elliott state
        self._busy_until = 0.0  # when the queue's last packet has left
        self._last_arrival = 0.0
        self._in_flight: collections.deque[tuple[float, bytes, Callable[[bytes], None]]]
        self._in_flight = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def _lose(self) -> bool:
        setting = self.impairment
        if setting.loss <= 0:
            self._bad = False
            return False
        if setting.loss >= 1:
            return True  # the link is down
        if setting.burst <= 1:
            return self._rng.random() < setting.loss
        # Bad -> good with 1/burst (mean stay `burst` packets); good -> bad chosen so that
        # the stationary share of bad packets is `loss`.
        leave = 1.0 / setting.burst
        enter = setting.loss * leave / (1.0 - setting.loss)
        self._bad = self._rng.random() >= leave if self._bad else self._rng.random() < enter
        return self._bad

    def send(self, packet: bytes, deliver: Callable[[bytes], None]) -> None:
        setting = self.impairment
        if self._lose():
            self.counters.lost += 1
            return
        now = self._loop.time()
        leaves = now
        if setting.rate:
            queued_bits = max(0.0, self._busy_until - now) * setting.rate
            if queued_bits + 8 * len(packet) > max(setting.queue * setting.rate, 8 * 1500):
                self.counters.overflowed += 1
                return
            leaves = max(now, self._busy_until) + 8 * len(packet) / setting.rate
            self._busy_until = leaves
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            self.counters.overflowed += 1
            return
        spread = self._rng.uniform(-setting.jitter, setting.jitter) if setting.jitter else 0.0
        arrives = max(self._last_arrival, leaves + max(0.0, setting.delay + spread))
        self._last_arrival = arrives
        self.counters.passed += 1
        self.counters.bytes_passed += len(packet)
        if arrives <= now and not self._in_flight:
            deliver(packet)
            return
        self._in_flight.append((arrives, packet, deliver))
        if self._timer is None:
            self._timer = self._loop.call_at(arrives, self._release)

    def _release(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._in_flight and self._in_flight[0][0] <= now:
            _, packet, deliver = self._in_flight.popleft()
            deliver(packet)
        if self._in_flight:
            self._timer = self._loop.call_at(self._in_flight[0][0], self._release)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._in_flight.clear()


def _require_loopback(host: str) -> None:
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the relay stays on loopback: {host} is not")


class _Door(asyncio.DatagramProtocol):
    """The relay's socket at one server port: clients send here."""

    def __init__(self, relay: "Relay", port: int) -> None:
        self.relay = relay
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay._from_client(self, data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("relay door %d: %s", self.port, exc)


class _Flow(asyncio.DatagramProtocol):
    """One client 5-tuple's upstream socket toward the server."""

    def __init__(self, relay: "Relay", door: _Door, client: tuple[str, int]) -> None:
        self.relay = relay
        self.door = door
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        if self.relay.closed:
            self.transport.close()
            return
        for packet in self.pending:
            self.to_server(packet)
        self.pending.clear()

    def to_server(self, packet: bytes) -> None:
        if self.transport is None:
            if len(self.pending) < MAX_PENDING:
                self.pending.append(packet)
        elif not self.transport.is_closing():
            self.transport.sendto(packet, (self.relay.server_host, self.door.port))

    def to_client(self, packet: bytes) -> None:
        door = self.door.transport
        if door is not None and not door.is_closing():
            door.sendto(packet, self.client)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if addr == (self.relay.server_host, self.door.port):
            self.relay.down.send(data, self.to_client)

    def error_received(self, exc: Exception) -> None:
        log.debug("relay flow %s: %s", self.client, exc)


def _factory(door: _Door) -> Callable[[], _Door]:
    return lambda: door


@dataclass
class Relay:
    """The impaired link for a server whose ICE ports are `ports` on `server_host`: it listens
    at `host` on the same port numbers. Use `open_relay`; change `down`/`up`.impairment (or
    `set`) while it runs."""

    ports: range
    server_host: str = "127.0.0.1"
    host: str = RELAY_HOST
    link: LinkSpec = field(default_factory=LinkSpec)
    seed: int | None = None
    down: Lane = field(init=False)
    up: Lane = field(init=False)
    _doors: list[_Door] = field(init=False, default_factory=list)
    _flows: dict[tuple[int, tuple[str, int]], _Flow] = field(init=False, default_factory=dict)
    closed: bool = field(init=False, default=False)
    _opening: set["asyncio.Future[Any]"] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        _require_loopback(self.host)
        _require_loopback(self.server_host)
        rng = random.Random(self.seed)
        self.down = Lane(self.link.down, rng)
        self.up = Lane(self.link.up, rng)

    def set(self, link: LinkSpec) -> None:
        """Change both directions at once (a link that degrades or recovers)."""
        self.link = link
        self.down.impairment = link.down
        self.up.impairment = link.up

    def summary(self) -> str:
        """One line of what each direction passed and dropped (the load tool's note)."""
        parts = []
        for name, lane in (("down", self.down), ("up", self.up)):
            c = lane.counters
            parts.append(
                f"{name} {c.passed} passed, {c.lost} lost, {c.overflowed} over the queue "
                f"({100 * c.dropped_fraction:.1f} % dropped)"
            )
        return "impaired link: " + "; ".join(parts)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for port in self.ports:
                door = _Door(self, port)
                await loop.create_datagram_endpoint(_factory(door), local_addr=(self.host, port))
                self._doors.append(door)
        except BaseException:
            self.close()
            raise

    def _from_client(self, door: _Door, data: bytes, client: tuple[str, int]) -> None:
        flow = self._flows.get((door.port, client))
        if flow is None:
            if len(self._flows) >= MAX_FLOWS:
                return
            flow = self._flows[(door.port, client)] = _Flow(self, door, client)
            loop = asyncio.get_running_loop()
            opening = loop.create_datagram_endpoint(
                lambda: flow, local_addr=(self.server_host, 0), family=socket.AF_INET
            )
            task = asyncio.ensure_future(opening)
            self._opening.add(task)
            task.add_done_callback(self._opened)
        self.up.send(data, flow.to_server)

    def _opened(self, task: "asyncio.Future[Any]") -> None:
        self._opening.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("relay: no upstream socket: %s", task.exception())

    def close(self) -> None:
        self.closed = True
        for task in self._opening:
            task.cancel()
        self.down.close()
        self.up.close()
        for flow in self._flows.values():
            if flow.transport is not None:
                flow.transport.close()
        self._flows.clear()
        for door in self._doors:
            if door.transport is not None:
                door.transport.close()
        self._doors.clear()


@contextlib.asynccontextmanager
async def open_relay(
    ports: range,
    link: LinkSpec | None = None,
    server_host: str = "127.0.0.1",
    host: str = RELAY_HOST,
    seed: int | None = None,
) -> AsyncIterator[Relay]:
    """A running relay for `ports`, closed on exit."""
    relay = Relay(ports, server_host, host, link or LinkSpec(), seed)
    await relay.start()
    try:
        yield relay
    finally:
        relay.close()
        await asyncio.sleep(0)  # the sockets close on the loop's next turn


@dataclass(frozen=True)
class Detour:
    """Routes one client through the relay by editing the SDP it exchanges with the server."""

    server_host: str = "127.0.0.1"
    relay_host: str = RELAY_HOST

    def toward_client(self, sdp: str) -> str:
        """The server's candidates at the relay's address (same ports)."""
        pattern = re.compile(
            rf"^(a=candidate:\S+ \d+ udp \d+ ){re.escape(self.server_host)}( \d+ typ )",
            re.MULTILINE | re.IGNORECASE,
        )
        return pattern.sub(rf"\g<1>{self.relay_host}\g<2>", sdp)

    @staticmethod
    def toward_server(sdp: str) -> str:
        """The client's SDP without its candidates nor end-of-candidates: the server must
        reach it only at the address the relay's first check comes from, and keep waiting
        for that check."""
        lines = sdp.split("\r\n")
        kept = [x for x in lines if not x.startswith(("a=candidate:", "a=end-of-candidates"))]
        return "\r\n".join(kept)

    def browser_script(self) -> str:
        """The same for a browser page (a Playwright init script): the remote descriptions it
        is given are rewritten, its own candidates are never told to the server."""
        server = re.escape(self.server_host)  # into a JS regular expression literal
        return BROWSER_SCRIPT.replace("SERVER", server).replace("RELAY", self.relay_host)


BROWSER_SCRIPT = r"""
(() => {
  const Native = window.RTCPeerConnection;
  const pattern = /^(a=candidate:\S+ \d+ udp \d+ )SERVER( \d+ typ )/gim;
  const toClient = (sdp) => sdp.replace(pattern, "$1RELAY$2");
  const toServer = (sdp) => sdp.split("\r\n")
    .filter((l) => !l.startsWith("a=candidate:") && !l.startsWith("a=end-of-candidates"))
    .join("\r\n");
  class Detoured extends Native {
    setRemoteDescription(d) {
      return super.setRemoteDescription(d && d.sdp ? { type: d.type, sdp: toClient(d.sdp) } : d);
    }
    addIceCandidate(c) {
      if (c && c.candidate) {
        c = { ...(c.toJSON ? c.toJSON() : c), candidate: toClient("a=" + c.candidate).slice(2) };
      }
      return super.addIceCandidate(c);
    }
    get localDescription() {
      const d = super.localDescription;
      return d && { type: d.type, sdp: toServer(d.sdp), toJSON() { return this; } };
    }
    addEventListener(type, listener, options) {
      // Trickled candidates (and their end) stay in the page: see toServer.
      if (type === "icecandidate") return;
      return super.addEventListener(type, listener, options);
    }
    set onicecandidate(_) {}
  }
  window.RTCPeerConnection = Detoured;
})();
"""


def ports_for(connections: int) -> int:
    """Server ports to relay for `connections` peer connections (each bundles to one port),
    with room for the server's own seats (recorder, programme)."""
    return connections + 16


def free_port_range(count: int, hosts: tuple[str, ...] = ("127.0.0.1", RELAY_HOST)) -> range:
    """`count` consecutive UDP ports free on every host, below the ephemeral range (so that
    the relay's own upstream sockets cannot take one)."""
    rng = random.Random()
    for _ in range(200):
        low = rng.randrange(20_000, 32_000 - count)
        sockets: list[socket.socket] = []
        try:
            for host in hosts:
                for port in range(low, low + count):
                    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    sockets.append(s)
                    s.bind((host, port))
            return range(low, low + count)
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {count} consecutive free UDP ports on {hosts}")
