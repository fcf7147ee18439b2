"""A WHIP/WHEP relay built the way aiortc's examples build one: MediaRelay.

Each published track is decoded once by aiortc's receiver; MediaRelay hands the decoded frames
to every viewer's sender, which encodes them again for that viewer. This is what the SFU avoids;
the load tool measures it like any other WHIP/WHEP server.
"""

import argparse
import asyncio
import logging
import uuid
from dataclasses import dataclass, field

from aiohttp import web
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

from bench import loopback

SDP = "application/sdp"
MAX_SDP = 64 * 1024


@dataclass
class Published:
    pc: RTCPeerConnection
    tracks: dict[str, MediaStreamTrack] = field(default_factory=dict)


@dataclass
class Relay:
    relay: MediaRelay = field(default_factory=MediaRelay)
    streams: dict[str, Published] = field(default_factory=dict)
    sessions: dict[str, RTCPeerConnection] = field(default_factory=dict)


RELAY = web.AppKey("relay", Relay)


async def _read_offer(request: web.Request) -> str:
    if request.content_type != SDP:
        raise web.HTTPUnsupportedMediaType(text=f"the offer must be {SDP}")
    if (request.content_length or 0) > MAX_SDP:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_SDP, actual_size=request.content_length or 0
        )
    return await request.text()


def _created(state: Relay, pc: RTCPeerConnection, request: web.Request) -> web.Response:
    session = uuid.uuid4().hex
    state.sessions[session] = pc
    location = str(request.app.router["resource"].url_for(session=session))
    return web.Response(
        status=201, text=pc.localDescription.sdp, content_type=SDP, headers={"Location": location}
    )


async def whip(request: web.Request) -> web.Response:
    state = request.app[RELAY]
    name = request.match_info["stream"]
    offer = await _read_offer(request)
    pc = RTCPeerConnection(loopback.configuration())
    published = Published(pc)

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        published.tracks[track.kind] = track

    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    loopback.restrict(pc)
    await pc.setLocalDescription(await pc.createAnswer())
    old = state.streams.pop(name, None)
    if old is not None:
        await old.pc.close()
    state.streams[name] = published
    return _created(state, pc, request)


async def whep(request: web.Request) -> web.Response:
    state = request.app[RELAY]
    published = state.streams.get(request.match_info["stream"])
    if published is None or not published.tracks:
        raise web.HTTPNotFound(text="nothing is published on this stream")
    offer = await _read_offer(request)
    pc = RTCPeerConnection(loopback.configuration())
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    for track in published.tracks.values():
        pc.addTrack(state.relay.subscribe(track))
    loopback.restrict(pc)
    await pc.setLocalDescription(await pc.createAnswer())
    return _created(state, pc, request)


async def delete(request: web.Request) -> web.Response:
    state = request.app[RELAY]
    pc = state.sessions.pop(request.match_info["session"], None)
    if pc is None:
        raise web.HTTPNotFound()
    for name, published in list(state.streams.items()):
        if published.pc is pc:
            del state.streams[name]
    await pc.close()
    return web.Response(status=204)


async def _close_all(app: web.Application) -> None:
    state = app[RELAY]
    await asyncio.gather(*(pc.close() for pc in state.sessions.values()))
    state.sessions.clear()
    state.streams.clear()


def create_app() -> web.Application:
    app = web.Application(client_max_size=MAX_SDP)
    app[RELAY] = Relay()
    app.router.add_post("/whip/{stream}", whip)
    app.router.add_post("/whep/{stream}", whep)
    app.router.add_delete("/resource/{session}", delete, name="resource")
    app.on_shutdown.append(_close_all)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8088)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    web.run_app(create_app(), host=args.host, port=args.port, print=None)
