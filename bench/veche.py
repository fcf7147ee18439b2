"""Veche as the load tool's target: its REST API sets up a meeting, its socket.io signaling
(namespace /meeting, docs/protocol.md) carries each client's join and media negotiation.

Every client is one python-socketio connection that `join`s with a token, as a browser does.
A publisher `publish`es the tool's offer with its sections labelled (microphone, camera); every
client answers each `subscribe_offer` the server sends it with its receive-only viewer, so a
viewer sees every track in the room and a meeting participant every other participant's.
"""

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Any

import aiohttp
import socketio
from aiortc.sdp import SessionDescription
from socketio import exceptions as socketio_errors

from bench import whip
from bench.impairment import Detour
from bench.peers import Publisher, SendTimes, Viewer
from bench.targets import Feed, Leave, TargetSpec

log = logging.getLogger(__name__)

NAMESPACE = "/meeting"
SIGNAL_TIMEOUT = 30.0
RECORDING_READY_LIMIT = 60.0
HLS_START_LIMIT = 20.0  # s from the first playlist request to a listed segment
SOURCES = {"audio": "microphone", "video": "camera"}


class VecheError(RuntimeError):
    pass


class Client:
    """One socket.io connection to /meeting: joins a seat and answers every subscribe_offer
    with `viewer` (none: offers are left unanswered; a publisher in a broadcast gets none)."""

    def __init__(
        self,
        url: str,
        viewer: Viewer | None,
        restart_clock: bool = False,
        senders: dict[str, SendTimes] | None = None,
        detour: Detour | None = None,
    ) -> None:
        self.url = url
        self.viewer = viewer
        self.detour = detour  # through an impaired link (bench/impairment.py)
        # Publishers' send times by seat id: a meeting's subscribe connection carries several
        # publishers' streams, told apart by the SSRCs the server's offer announces.
        self._senders = senders
        # In a meeting the first frame can only come once another participant publishes:
        # the join clock then starts at the first subscribe_offer, not at the connect.
        self._restart_clock = restart_clock
        self.sio = socketio.AsyncClient(reconnection=False)
        self.seat = ""
        self._joined: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._offers: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._answering: asyncio.Task[None] | None = None
        self.sio.on("joined", self._on_joined, namespace=NAMESPACE)
        self.sio.on("subscribe_offer", self._on_offer, namespace=NAMESPACE)

    async def _on_joined(self, data: dict[str, Any]) -> None:
        if not self._joined.done():
            self._joined.set_result(data)

    async def _on_offer(self, data: dict[str, Any]) -> None:
        # Answered from a task of our own: a handler awaiting its own ack could block the
        # client's packet handling.
        self._offers.put_nowait(data)

    async def join(self, token: str, name: str | None = None) -> None:
        await self.sio.connect(
            self.url, namespaces=[NAMESPACE], transports=["websocket"], wait_timeout=10
        )
        payload: dict[str, Any] = {"token": token}
        if name:
            payload["name"] = name
        ack = await self.call("join", payload)
        if ack.get("status") != "joined":
            raise VecheError(f"join: not seated at once ({ack}); is the lobby on?")
        snapshot = await asyncio.wait_for(self._joined, SIGNAL_TIMEOUT)
        self.seat = str(snapshot["self"]["id"])
        if self.viewer is not None:
            self._answering = asyncio.create_task(self._answer_offers(self.viewer))

    async def call(self, event: str, payload: dict[str, Any]) -> dict[str, Any]:
        ack = await self.sio.call(event, payload, namespace=NAMESPACE, timeout=SIGNAL_TIMEOUT)
        if not isinstance(ack, dict) or "error" in ack:
            raise VecheError(f"{event}: {ack}")
        return ack

    async def publish(self, publisher: Publisher) -> None:
        offer = await publisher.offer()
        sources = {
            t.mid: SOURCES[t.kind] for t in publisher.pc.getTransceivers() if t.mid is not None
        }
        answer = await self._sdp_call("publish", {"sdp": offer, "sources": sources})
        await publisher.accept(answer)

    async def _sdp_call(self, event: str, payload: dict[str, Any]) -> str:
        """`event` with our SDP, returning the server's (both through the detour if any)."""
        if self.detour is not None:
            payload["sdp"] = self.detour.toward_server(str(payload["sdp"]))
        ack = await self.call(event, payload)
        sdp = str(ack.get("sdp", ""))
        return self.detour.toward_client(sdp) if self.detour is not None else sdp

    async def _answer_offers(self, viewer: Viewer) -> None:
        first = True
        while True:
            offer = await self._offers.get()
            if first and self._restart_clock and viewer.first_frame_at is None:
                viewer.joined_at = time.monotonic()
            first = False
            try:
                if self._senders is not None:
                    self._match_senders(viewer, offer)
                sdp = str(offer["sdp"])
                if self.detour is not None:
                    sdp = self.detour.toward_client(sdp)
                answer = await viewer.answer(sdp)
                await self._sdp_call("subscribe_answer", {"sdp": answer})
            except Exception as exc:  # the viewer then lacks those tracks: shown in the results
                log.warning("subscribe_offer not answered: %s: %s", type(exc).__name__, exc)

    def _match_senders(self, viewer: Viewer, offer: dict[str, Any]) -> None:
        assert self._senders is not None
        tracks: dict[str, dict[str, Any]] = offer.get("tracks") or {}
        for media in SessionDescription.parse(str(offer["sdp"])).media:
            track = tracks.get(media.rtp.muxId or "")
            times = self._senders.get(str(track.get("participant"))) if track else None
            if times is not None:
                for ssrc in media.ssrc:
                    viewer.by_ssrc[ssrc.ssrc.to_bytes(4, "big")] = times

    async def close(self) -> None:
        if self._answering is not None:
            self._answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._answering
        if self.sio.connected:
            with contextlib.suppress(socketio_errors.SocketIOError, TimeoutError):
                await self.sio.call("leave", {}, namespace=NAMESPACE, timeout=5)
            await self.sio.disconnect()


class VecheTarget:
    """A meeting on a Veche server: one roster entry per publisher, viewers on a guest link."""

    name = "veche"

    def __init__(self, url: str, api_key: str, meeting: str = "") -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.meeting = meeting
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=SIGNAL_TIMEOUT),
            headers={"Authorization": f"Bearer {api_key}"},
        )
        self._viewer_token = ""
        self._count = 0
        self.senders: dict[str, SendTimes] = {}  # publishers' send times by seat id
        self._recording = ""  # the recording this target started and has not stopped
        # This process's clients reach the server through an impaired link (--impair).
        self.detour: Detour | None = None

    def spec(self) -> TargetSpec:
        return TargetSpec(
            "veche", self.name, veche_url=self.url, api_key=self.api_key, meeting=self.meeting
        )

    async def _api(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        async with self._http.request(method, f"{self.url}/api{path}", json=body) as response:
            reply: dict[str, Any] = await response.json(content_type=None)
            if response.status >= 300:
                raise VecheError(f"{method} /api{path}: HTTP {response.status}: {reply}")
        return reply

    async def create_meeting(self) -> str:
        """A meeting with the lobby off, so every client is seated at once."""
        created = await self._api(
            "POST",
            "/meetings",
            {"title": f"bench {secrets.token_hex(3)}", "settings": {"lobby": False}},
        )
        self.meeting = str(created["id"])
        return self.meeting

    async def _seat(self, client: Client, role: str, name: str) -> None:
        if role == "viewer":
            if not self._viewer_token:
                link = await self._api(
                    "POST", f"/meetings/{self.meeting}/links", {"role": "viewer"}
                )
                self._viewer_token = str(link["token"])
            await client.join(self._viewer_token, name)
        else:
            entry = await self._api(
                "POST", f"/meetings/{self.meeting}/roster", {"name": name, "role": role}
            )
            await client.join(str(entry["token"]))

    async def publish(self, stream: str, publisher: Publisher) -> tuple[Feed, Leave]:
        """A speaker that publishes and watches nothing (a broadcast's source)."""
        return await self.participate(stream, publisher, None)

    async def participate(
        self, stream: str, publisher: Publisher, viewer: Viewer | None
    ) -> tuple[Feed, Leave]:
        """A participant that publishes and, with `viewer`, watches everyone else."""
        client = Client(
            self.url, viewer, restart_clock=True, senders=self.senders, detour=self.detour
        )
        try:
            await self._seat(client, "participant", f"Bench {stream}")
            self.senders[client.seat] = publisher.times
            await client.publish(publisher)
        except BaseException:
            await client.close()
            raise
        return Feed(stream), client.close

    async def watch(self, feed: Feed, viewer: Viewer) -> Leave:
        """A viewer on the meeting's guest link; it is offered every published track."""
        self._count += 1
        client = Client(self.url, viewer, detour=self.detour)
        try:
            await self._seat(client, "viewer", f"Viewer {self._count}")
        except BaseException:
            await client.close()
            raise
        return client.close

    async def whip_whep_endpoints(self) -> tuple[whip.Endpoint, whip.Endpoint]:
        """The meeting's WHIP endpoint with a speaker's roster token (the hall from OBS) and
        its WHEP endpoint with a viewer link's token (players watching the stage)."""
        entry = await self._api(
            "POST", f"/meetings/{self.meeting}/roster", {"name": "Hall", "role": "speaker"}
        )
        link = await self._api("POST", f"/meetings/{self.meeting}/links", {"role": "viewer"})
        return (
            whip.Endpoint(f"{self.url}/whip/{self.meeting}", str(entry["token"])),
            whip.Endpoint(f"{self.url}/whep/{self.meeting}", str(link["token"])),
        )

    async def forwarded_mark(self) -> tuple[float, float]:
        """(time, count) of the server's own count of forwarded RTP packets, taken the moment
        it changes: the server adds to it once a second, so a read between two updates
        would be up to a second stale."""
        first = await self._forwarded()
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            now = await self._forwarded()
            if now != first:
                return time.monotonic(), now
        return time.monotonic(), first

    async def _forwarded(self) -> float:
        async with self._http.get(f"{self.url}/metrics") as response:
            text = await response.text()
        for line in text.splitlines():
            if line.startswith("veche_forwarded_packets_total "):
                return float(line.split()[1])
        raise VecheError("/metrics has no veche_forwarded_packets_total")

    async def start_recording(self) -> None:
        """Start recording the meeting, as a moderator's "Record" would."""
        reply = await self._api("POST", f"/meetings/{self.meeting}/recording", {})
        self._recording = str(reply["id"])

    async def stop_recording(self) -> float:
        """Stop it; the seconds until the recording is ready to play (a VecheError if it
        failed or took longer than RECORDING_READY_LIMIT)."""
        stopped = time.monotonic()
        await self._api("DELETE", f"/meetings/{self.meeting}/recording", None)
        deadline = stopped + RECORDING_READY_LIMIT
        while time.monotonic() < deadline:
            state = await self._api("GET", f"/recordings/{self._recording}", None)
            if state["status"] == "ready":
                self._recording = ""
                return time.monotonic() - stopped
            if state["status"] == "failed":
                raise VecheError(f"the recording failed: {state.get('error')}")
            await asyncio.sleep(0.1)
        raise VecheError(f"the recording was not ready {RECORDING_READY_LIMIT:.0f} s after stop")

    async def abandon_recording(self) -> None:
        """Stop a recording a failed run left on (nothing if none)."""
        if self._recording:
            self._recording = ""
            with contextlib.suppress(VecheError, aiohttp.ClientError, TimeoutError):
                await self._api("DELETE", f"/meetings/{self.meeting}/recording", None)

    async def start_hls(self) -> float:
        """Ask for the meeting's HLS playlist as a player would (it starts the broadcast
        programme); the seconds until the playlist listed a segment."""
        started = time.monotonic()
        while time.monotonic() - started < HLS_START_LIMIT:
            text = await self._hls_playlist()
            if "#EXTINF" in text:
                return time.monotonic() - started
            await asyncio.sleep(0.5)
        raise VecheError(f"no HLS segment {HLS_START_LIMIT:.0f} s after the first request")

    async def hls_player(self) -> None:
        """A player: the playlist every 2 s and each new segment, until cancelled."""
        fetched: set[str] = set()
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, VecheError):
                text = await self._hls_playlist()
                for line in text.splitlines():
                    if line and not line.startswith("#") and line not in fetched:
                        fetched.add(line)
                        url = f"{self.url}/hls/{self.meeting}/{line}"
                        async with self._http.get(url) as response:
                            await response.read()
            await asyncio.sleep(2.0)

    async def _hls_playlist(self) -> str:
        url = f"{self.url}/hls/{self.meeting}/index.m3u8"
        async with self._http.get(url) as response:
            text = await response.text()
            if response.status != 200:
                raise VecheError(f"GET {url}: HTTP {response.status}: {text}")
            return text

    async def close(self) -> None:
        await self._http.close()
