"""Bad input from a real socket.io client: every event gets a clear reply, a refusal changes
nothing, and the server keeps serving everyone else.

Every event the server handles is fuzzed with Hypothesis-generated payloads (40 examples per
event by default). A longer run: VECHE_FUZZ_EXAMPLES=500 (examples per event; docs/security.md,
"Fuzzing")."""

import asyncio
import os
import string
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.context import LIVE
from server.signaling import NAMESPACE
from tests.conftest import LiveServer
from tests.sio_client import Client, invite, make_meeting

CODES = {
    "invalid",
    "too_large",
    "unknown_event",
    "bad_token",
    "not_found",
    "not_joined",
    "already_joined",
    "forbidden",
    "locked",
    "viewers_not_allowed",
    "rate_limited",
    "full",
    # media, recording and the stage
    "bad_sdp",
    "bad_candidate",
    "unsupported_codec",
    "unsupported_media",
    "too_many_media",
    "too_many_tracks",
    "unknown_track",
    "no_offer",
    "negotiation_pending",
    "already_publishing",
    "nothing_published",
    "screen_busy",
    "not_live",
    "not_recording",
    "busy",
}

FIELDS: dict[str, list[str]] = {
    "join": ["token", "meeting", "name", "seat"],
    "admit": ["id"],
    "deny": ["id"],
    "chat": ["text"],
    "hand": ["raised", "id"],
    "state": ["mic", "camera", "screen"],
    "remove": ["id"],
    "lock": ["locked"],
    "set_role": ["id", "role"],
    "ask_mute": ["id"],
    "admit_all": [],
    "leave": [],
    "end": [],
    # media (server/stage.py)
    "publish": ["sdp", "sources"],
    "unpublish": [],
    "subscribe_answer": ["sdp"],
    "ice": ["pc", "candidate", "sdpMid", "sdpMLineIndex"],
    "video": ["track", "on"],
    "audio_only": ["on"],
    "mute": ["id"],
    # recording: any object starts or stops one, so only what is not an object is thrown
    "recording_start": [],
    "recording_stop": [],
    # the broadcast's stage
    "spotlight": ["participant"],
    "floor": ["participant", "on"],
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
not_objects = scalars | st.lists(json_values, max_size=4)
# ASCII keeps a huge payload above 16 KiB but below the engine's limit, so it gets a reply.
huge_text = st.builds(lambda n, c: c * n, st.integers(16_500, 40_000), st.sampled_from("ab< "))


# Values of the right type (mostly), to get past the type checks to the rules behind them.
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "id": st.text(min_size=1, max_size=70),
    "text": st.text(max_size=1100) | st.just(" \x00\x07 ") | st.just("a\ud800b\x85"),
    "raised": st.booleans(),
    "locked": st.booleans(),
    "mic": st.booleans(),
    "camera": st.booleans(),
    "screen": st.booleans(),
    "role": st.sampled_from(["host", "moderator", "speaker", "participant", "viewer", "boss"]),
    "token": st.text(max_size=100),
    "meeting": st.text(max_size=70),
    "name": st.text(max_size=120) | st.just("\ud800\x00"),
    "seat": st.text(max_size=70),
    "sdp": st.text(max_size=300)
    | st.just(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    )
    | st.builds(lambda n: "v=0\r\n" + "a=x\r\n" * n, st.integers(0, 9000)),
    "sources": st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4)
    | st.lists(st.text(max_size=10), max_size=4),
    "pc": st.sampled_from(["publish", "subscribe", "other", ""]),
    "candidate": st.text(max_size=200)
    | st.just("candidate:1 1 UDP 2122260223 127.0.0.1 5000 typ host"),
    "sdpMid": st.text(max_size=10) | st.integers(),
    "sdpMLineIndex": st.integers(-5, 70000) | st.none(),
    "track": st.text(min_size=1, max_size=70),
    "on": st.booleans(),
    "participant": st.text(min_size=1, max_size=70),
}


def payloads(event: str) -> st.SearchStrategy[Any]:
    fields = FIELDS[event]
    huge = huge_text | st.builds(lambda t: {"junk": t}, huge_text)
    if fields:
        typed = st.fixed_dictionaries({}, optional={f: json_values for f in fields})
        plausible = st.fixed_dictionaries({}, optional={f: PLAUSIBLE[f] for f in fields})
        huge = huge | st.builds(lambda f, t: {f: t}, st.sampled_from(fields), huge_text)
        anything = st.dictionaries(st.text(max_size=8), json_values)
        return not_objects | typed | plausible | plausible | anything | huge
    # Any object is a valid `end`, `leave` or `recording_start`: only what is not one may be
    # thrown at them.
    return not_objects | huge


def test_every_event_the_server_handles_is_fuzzed(live_server: LiveServer) -> None:
    assert set(live_server.app[NAMESPACE]._handlers) == set(FIELDS)


EXAMPLES = int(os.environ.get("VECHE_FUZZ_EXAMPLES") or 40)


def run_examples(
    loop: asyncio.AbstractEventLoop,
    strategy: st.SearchStrategy[Any],
    check: Callable[[Any], Awaitable[None]],
    examples: int = EXAMPLES,
) -> None:
    """Hypothesis drives from this thread; each example runs on the server's event loop."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def property_(value: Any) -> None:
        asyncio.run_coroutine_threadsafe(check(value), loop).result(timeout=30)  # type: ignore[arg-type]

    property_()


class Room:
    """A live meeting with a host, an observer, and fresh moderators to throw input from."""

    def __init__(self, server: LiveServer) -> None:
        self.server = server
        self.clients: list[Client] = []

    async def open(self) -> Client:
        client = await Client.open(self.server.url)
        self.clients.append(client)
        return client

    async def start(self) -> None:
        self.meeting = await make_meeting(self.server, visibility="public")
        self.host = await self.open()
        await self.host.join(token=await invite(self.server, self.meeting, "Host", "host"))
        self.observer = await self.open()
        await self.observer.join(
            token=await invite(self.server, self.meeting, "Observer", "participant")
        )
        lobby = await self.host.until("lobby_updated", lambda d: len(d["lobby"]) == 1)
        await self.host.call("admit", {"id": lobby["lobby"][0]["id"]})
        self.observer.snapshot = await self.observer.next("joined")

    async def moderator(self) -> Client:
        client = await self.open()
        await client.join(token=await invite(self.server, self.meeting, "Mod", "moderator"))
        return client

    def state(self) -> Any:
        live = self.server.app[LIVE].live(self.meeting.id)
        return live

    async def chat_goes_through(self, text: str) -> None:
        self.host.drain()
        self.observer.drain()
        assert await self.observer.call("chat", {"text": text}) == {"ok": True}
        assert (await self.host.until("chat", lambda m: m["text"] == text))["from"] == (
            self.observer.id
        )

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


@pytest.fixture
async def room(live_server: LiveServer) -> AsyncIterator[Room]:
    room = Room(live_server)
    await room.start()
    yield room
    await room.close()


def assert_reply(ack: Any) -> bool:
    """True for a refusal (checked for shape), False for an ok."""
    assert isinstance(ack, dict), ack
    if "error" in ack:
        assert ack["error"]["code"] in CODES, ack
        assert isinstance(ack["error"]["message"], str) and ack["error"]["message"]
        return True
    assert ack.get("ok") is True, ack
    return False


@pytest.mark.parametrize("event", list(FIELDS))
async def test_random_payloads_get_replies_and_change_nothing(room: Room, event: str) -> None:
    # A fresh sender every 20 examples keeps the per-connection event limit out of the way.
    senders: list[Client] = []
    sent = [0]
    accepted = [0]

    async def check(payload: Any) -> None:
        if not senders or sent[0] % 20 == 0:
            senders.append(await room.moderator())
        sent[0] += 1
        before = room.state()
        ack = await senders[-1].call(event, payload)
        if assert_reply(ack):
            # Chat has its own, tighter limit; the per-connection one must not be reached.
            assert ack["error"]["code"] != "rate_limited" or event == "chat"
            assert room.state() == before
        else:
            accepted[0] += 1

    await asyncio.to_thread(run_examples, asyncio.get_running_loop(), payloads(event), check)
    await room.chat_goes_through(f"after {event}")
    if event == "chat":  # a refused message never reaches anyone
        assert len(room.observer.received["chat"]) == accepted[0] + 1


async def test_random_joins_from_outside(room: Room) -> None:
    outsider = await room.open()
    count = [0]

    async def check(payload: Any) -> None:
        count[0] += 1
        if count[0] % 25 == 0:
            await asyncio.sleep(1)  # let the per-connection limit refill
        before = room.state()
        ack = await outsider.call("join", payload)
        assert assert_reply(ack)
        assert room.state() == before

    strategy = payloads("join") | st.fixed_dictionaries(
        {"token": st.text(alphabet=string.ascii_letters + ".-_", max_size=300)}
    )
    await asyncio.to_thread(run_examples, asyncio.get_running_loop(), strategy, check)
    await room.chat_goes_through("after joins")


async def test_unknown_events_and_wrong_arity(room: Room) -> None:
    sender = await room.moderator()
    before = room.state()
    # Every event the server handles is known, not only those FIELDS lists: Hypothesis also
    # tries string constants it finds in the code ("recording_stop" once did).
    known = set(room.server.app[NAMESPACE]._handlers)
    names = st.text(min_size=1, max_size=30).filter(
        lambda n: n not in known and n not in ("connect", "disconnect", "message", "*")
    )

    async def check(name: str) -> None:
        ack = await sender.call(name, {"id": "x"})
        assert ack["error"]["code"] in ("unknown_event", "rate_limited")

    await asyncio.to_thread(run_examples, asyncio.get_running_loop(), names, check, 25)
    await asyncio.sleep(1)
    assert (await sender.sio.call("chat", namespace="/meeting"))["error"]["code"] == "invalid"
    two = await sender.sio.call("chat", ({"text": "a"}, {"text": "b"}), namespace="/meeting")
    assert two["error"]["code"] == "invalid"
    assert room.state() == before
    await room.chat_goes_through("after unknown events")


async def test_floods_are_rate_limited(room: Room) -> None:
    for i in range(5):
        assert await room.observer.call("chat", {"text": f"burst {i}"}) == {"ok": True}
    ack = await room.observer.call("chat", {"text": "one too many"})
    assert ack["error"]["code"] == "rate_limited"
    sender = await room.moderator()
    acks = await asyncio.gather(*(sender.call("lock", {"locked": "no"}) for _ in range(45)))
    codes = [a["error"]["code"] for a in acks]
    assert "rate_limited" in codes and "invalid" in codes
    assert room.state()["locked"] is False
    await room.host.call("chat", {"text": "host still talks"})
    assert (await room.observer.until("chat", lambda m: m["from"] == room.host.id))["text"] == (
        "host still talks"
    )


async def test_payload_beyond_the_engine_limit_drops_only_that_connection(room: Room) -> None:
    sender = await room.moderator()
    before = room.state()
    await sender.sio.emit("chat", {"text": "x" * 200_000}, namespace="/meeting")
    await asyncio.wait_for(sender.closed.wait(), 5)
    after = room.state()
    # Its seat waits out the grace period (or is gone already); nobody else is touched.
    assert all(not p["connected"] for p in after["participants"] if p["name"] == "Mod")
    assert [p["id"] for p in after["participants"] if p["name"] != "Mod"] == [
        p["id"] for p in before["participants"] if p["name"] != "Mod"
    ]
    await room.chat_goes_through("after a huge payload")
