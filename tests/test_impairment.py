"""The impaired-link relay (bench/impairment.py) with real UDP sockets on loopback: what a
weak link does to packets is what the settings say, in each direction, and while it runs."""

import asyncio
import socket
import statistics
import struct
import time
from collections.abc import AsyncIterator
from typing import cast

import pytest

from bench.impairment import (
    RELAY_HOST,
    Detour,
    Impairment,
    LinkSpec,
    Relay,
    free_port_range,
    open_relay,
    parse,
)


class Endpoint(asyncio.DatagramProtocol):
    """A socket that records (arrival time, payload) and may echo what it gets."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.arrivals: list[tuple[float, bytes]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.arrivals.append((time.monotonic(), data))
        if self.echo and self.transport is not None:
            self.transport.sendto(data, addr)

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)


async def endpoint(host: str, port: int, echo: bool = False) -> Endpoint:
    protocol = Endpoint(echo)
    await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: protocol, local_addr=(host, port)
    )
    return protocol


class Link:
    """A server socket on 127.0.0.1:P, the relay at 127.0.0.2:P, a client socket."""

    def __init__(self, relay: Relay, server: Endpoint, client: Endpoint, port: int) -> None:
        self.relay = relay
        self.server = server
        self.client = client
        self.port = port

    def send_up(self, payload: bytes) -> None:
        self.client.send(payload, (RELAY_HOST, self.port))


@pytest.fixture
async def link() -> AsyncIterator[Link]:
    ports = free_port_range(1)
    server = await endpoint("127.0.0.1", ports[0], echo=True)
    client = await endpoint("127.0.0.1", 0)
    async with open_relay(ports, seed=7) as relay:
        yield Link(relay, server, client, ports[0])
    for side in (server, client):
        assert side.transport is not None
        side.transport.close()
    await asyncio.sleep(0)


def stamped(n: int, size: int = 100) -> bytes:
    return struct.pack("!Id", n, time.monotonic()).ljust(size, b"x")


async def settle(seconds: float = 0.1) -> None:
    await asyncio.sleep(seconds)


async def send_many(link: Link, count: int) -> None:
    """`count` packets up, in batches the relay has taken before the next (the sockets'
    buffers would drop a burst on a busy machine, which is not the relay's loss)."""
    for start in range(0, count, 20):
        for n in range(start, min(start + 20, count)):
            link.send_up(stamped(n))
        for _ in range(1000):
            if link.relay.up.counters.offered >= min(start + 20, count):
                break
            await asyncio.sleep(0.001)


def test_a_spec_string_reads_as_the_load_tool_writes_it() -> None:
    spec = parse("loss=5%,delay=100ms,rate=300kbit")
    assert spec.down == Impairment(loss=0.05, delay=0.1, rate=300_000)
    assert spec.up == Impairment()
    both = parse("loss=0.1, burst=3, jitter=5ms, queue=0.5s, rate=2mbit, dir=both")
    assert (
        both.up
        == both.down
        == Impairment(loss=0.1, burst=3, jitter=0.005, queue=0.5, rate=2_000_000)
    )
    assert parse("delay=40,dir=up").up.delay == pytest.approx(0.04)
    for bad in (
        "loss=5",
        "loss=150%",
        "delay=fast",
        "rate=3 furlongs",
        "colour=red",
        "dir=sideways",
        "loss",
    ):
        with pytest.raises(ValueError):
            parse(bad)


async def test_a_clean_link_passes_everything_both_ways(link: Link) -> None:
    for n in range(200):
        link.send_up(stamped(n))
    await settle()
    assert len(link.server.arrivals) == 200
    assert len(link.client.arrivals) == 200  # the echoes, down through the relay
    assert [a[1][:4] for a in link.client.arrivals] == [struct.pack("!I", n) for n in range(200)]
    assert link.relay.up.counters.passed == link.relay.down.counters.passed == 200


async def test_delay_is_added_per_direction(link: Link) -> None:
    link.relay.set(LinkSpec(down=Impairment(delay=0.02), up=Impairment(delay=0.04)))
    for n in range(20):
        link.send_up(stamped(n))
        await asyncio.sleep(0.005)
    await settle(0.15)
    sent = {data[:4]: struct.unpack("!d", data[4:12])[0] for _, data in link.client.arrivals}
    one_way = [at - sent[data[:4]] for at, data in link.server.arrivals]
    round_trip = [at - sent[data[:4]] for at, data in link.client.arrivals]
    assert len(round_trip) == 20
    # Never early; the median within a few ms: each delayed hop waits for a timer, which a
    # machine shared with other work wakes late by a millisecond or more.
    assert min(one_way) >= 0.0395 and statistics.median(one_way) <= 0.046, one_way
    assert min(round_trip) >= 0.0595 and statistics.median(round_trip) <= 0.070, round_trip


async def test_jitter_spreads_arrivals_but_keeps_their_order(link: Link) -> None:
    link.relay.set(LinkSpec(up=Impairment(delay=0.03, jitter=0.02)))
    for n in range(50):
        link.send_up(stamped(n))
        await asyncio.sleep(0.004)
    await settle(0.15)
    delays = [at - struct.unpack("!d", data[4:12])[0] for at, data in link.server.arrivals]
    order = [struct.unpack("!I", data[:4])[0] for _, data in link.server.arrivals]
    assert order == list(range(50))
    assert max(delays) - min(delays) > 0.01
    assert min(delays) >= 0.0095 and statistics.median(delays) <= 0.045, delays


async def test_the_rate_cap_holds_and_a_full_queue_drops_the_tail(link: Link) -> None:
    rate = 400_000
    link.relay.set(LinkSpec(down=Impairment(rate=rate, queue=0.1)))
    # 1.6 Mbit/s offered for 0.6 s: four times what the link carries.
    for n in range(120):
        link.send_up(stamped(n, 1000))
        await asyncio.sleep(0.005)
    await settle(0.2)
    arrivals = link.client.arrivals
    measured = 8 * sum(len(d) for _, d in arrivals[1:]) / (arrivals[-1][0] - arrivals[0][0])
    print(f"rate cap {rate} bit/s: measured {measured:.0f} bit/s")
    assert rate * 0.85 <= measured <= rate * 1.15
    down = link.relay.down.counters
    assert down.overflowed > 40 and down.lost == 0
    assert down.passed == len(arrivals)
    assert link.relay.up.counters.passed == 120


async def test_random_loss_is_within_statistical_bounds(link: Link) -> None:
    link.relay.set(LinkSpec(up=Impairment(loss=0.1)))
    await send_many(link, 2000)
    await settle()
    up = link.relay.up.counters
    assert up.offered == 2000 and len(link.server.arrivals) == up.passed
    # Three standard deviations of a binomial(2000, 0.1): ±0.02.
    assert 0.08 <= up.lost / 2000 <= 0.12


async def test_bursty_loss_comes_in_runs_of_the_mean_length(link: Link) -> None:
    link.relay.set(LinkSpec(up=Impairment(loss=0.1, burst=4)))
    await send_many(link, 3000)
    await settle()
    got = {struct.unpack("!I", data[:4])[0] for _, data in link.server.arrivals}
    runs: list[int] = []
    run = 0
    for n in range(3000):
        if n in got:
            if run:
                runs.append(run)
            run = 0
        else:
            run += 1
    mean_run = sum(runs) / len(runs)
    print(f"bursty loss: {1 - len(got) / 3000:.3f} lost, mean run {mean_run:.2f}")
    assert 0.06 <= 1 - len(got) / 3000 <= 0.14
    assert 3.0 <= mean_run <= 5.5


async def test_a_link_degrades_and_recovers_while_running(link: Link) -> None:
    for n in range(50):
        link.send_up(stamped(n))
    await settle()
    link.relay.set(LinkSpec(down=Impairment(loss=1.0)))
    for n in range(50, 100):
        link.send_up(stamped(n))
    await settle()
    link.relay.set(LinkSpec())
    for n in range(100, 150):
        link.send_up(stamped(n))
    await settle()
    echoed = [struct.unpack("!I", data[:4])[0] for _, data in link.client.arrivals]
    assert echoed == list(range(50)) + list(range(100, 150))
    assert link.relay.down.counters.lost == 50
    assert len(link.server.arrivals) == 150


async def test_the_relay_stays_on_loopback_and_frees_its_ports() -> None:
    with pytest.raises(ValueError):
        Relay(range(20000, 20001), host="10.0.0.1")
    ports = free_port_range(4)
    async with open_relay(ports) as relay:
        server = await endpoint("127.0.0.1", ports[0])
        client = await endpoint("127.0.0.1", 0)
        client.send(b"hello", (RELAY_HOST, ports[0]))
        await settle(0.05)
        assert [d for _, d in server.arrivals] == [b"hello"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken, pytest.raises(OSError):
            taken.bind((RELAY_HOST, ports[1]))
    for side in (server, client):
        assert side.transport is not None
        side.transport.close()
    await asyncio.sleep(0)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((RELAY_HOST, port))
    assert relay.up.counters.passed == 1


def test_a_detour_points_the_client_at_the_relay_and_hides_its_candidates() -> None:
    server_sdp = (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=candidate:1 1 udp 2130706431 127.0.0.1 20001 typ host\r\n"
        "a=candidate:2 1 udp 1694498815 127.0.0.3 20001 typ srflx raddr 127.0.0.1 rport 20001\r\n"
        "a=end-of-candidates\r\n"
    )
    detour = Detour()
    seen = detour.toward_client(server_sdp)
    assert f"{RELAY_HOST} 20001 typ host" in seen and "127.0.0.1 20001 typ host" not in seen
    assert "127.0.0.3 20001 typ srflx" in seen
    told = detour.toward_server(server_sdp)
    assert "a=candidate" not in told and "end-of-candidates" not in told
    assert told.startswith("v=0\r\nm=audio 9")


async def test_the_load_tool_takes_an_impaired_link_for_a_veche_it_starts() -> None:
    from bench import cli

    args = cli.parser().parse_args(["broadcast", "--server", "veche", "--impair", "loss=5%"])
    assert parse(args.impair).down.loss == pytest.approx(0.05)
    for refused in (
        ["broadcast", "--server", "baseline"],
        ["broadcast", "--server", "veche", "--url", "http://x"],
        ["meeting", "--server", "veche"],  # its participants are all in the source process
    ):
        args = cli.parser().parse_args([*refused, "--impair", "loss=5%"])
        with pytest.raises(SystemExit):
            async with cli.server(args, cli.plans(args)[0]):
                pass
