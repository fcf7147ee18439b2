"""The SFU reads every media section of a real Chromium and Firefox offer as JSEP means it
(bundle-only is live; port 0 outside the BUNDLE group is rejected or stopped) and answers
each offer of a share cycle with an answer that mirrors it, keeping the running tracks.

The offers in tests/fixtures/sdp were captured from Debian's Chromium and Firefox ESR 153
(headless, max-bundle, a microphone and camera, then a screen share added, stopped, added
again on the stopped section's m-line, and made inactive).
"""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiortc import RTCPeerConnection
from aiortc import sdp as aiortc_sdp

from media import hooks, sdp
from media.errors import MediaError
from tests.media_clients import Harness, received, wait_for
from tests.media_clip import Clip

FIXTURES = Path(__file__).parent / "fixtures" / "sdp"
BROWSERS = ("chromium", "firefox")
# Each step of the captured cycle: (fixture, mids that send, mids rejected or stopped).
CYCLE = [
    ("offer_initial", {"0": "audio", "1": "video"}, set()),
    ("offer_share", {"0": "audio", "1": "video", "2": "video"}, set()),
    ("offer_share_stopped", {"0": "audio", "1": "video"}, {"2"}),
    ("offer_share_again", {"0": "audio", "1": "video", "3": "video"}, set()),
    ("offer_share_inactive", {"0": "audio", "1": "video"}, set()),
]


def _offer(browser: str, step: str) -> str:
    """A captured offer without its host candidates (mDNS names of a browser long gone)."""
    text = (FIXTURES / f"{browser}_{step}.sdp").read_text()
    return "".join(line for line in text.splitlines(True) if not line.startswith("a=candidate"))


@pytest.fixture
async def room(media_clip: Clip) -> AsyncIterator[Harness]:
    harness = Harness(media_clip)
    yield harness
    await harness.close()


@pytest.mark.parametrize("browser", BROWSERS)
@pytest.mark.parametrize(("step", "sends", "rejected"), CYCLE)
def test_each_section_of_a_real_offer_is_read_as_jsep_means_it(
    browser: str, step: str, sends: dict[str, str], rejected: set[str]
) -> None:
    offer = sdp.check(_offer(browser, step))
    assert offer.sending == sends
    assert offer.rejected == rejected


def test_firefox_bundle_only_sections_are_live_and_its_stopped_one_is_not() -> None:
    first = sdp.check(_offer("firefox", "offer_initial"))
    assert [(s.mid, s.bundle_only, s.accepted) for s in first.sections] == [
        ("0", False, True),
        ("1", True, True),
    ]
    stopped = sdp.check(_offer("firefox", "offer_share_stopped")).sections[2]
    assert (stopped.bundle_only, stopped.accepted, stopped.sends) == (False, False, False)


@pytest.mark.parametrize("browser", BROWSERS)
async def test_every_answer_of_a_share_cycle_mirrors_its_offer(room: Harness, browser: str) -> None:
    publication = None
    for step, sends, rejected in CYCLE:
        offer = _offer(browser, step)
        if publication is None:
            publication, answer = await room.sfu.publish("ann", offer)
        else:
            answer = await publication.renegotiate(offer)
        offered = aiortc_sdp.SessionDescription.parse(offer)
        answered = aiortc_sdp.SessionDescription.parse(answer)
        assert [m.rtp.muxId for m in answered.media] == [m.rtp.muxId for m in offered.media], step
        bundle = next(g.items for g in offered.group if g.semantic == "BUNDLE")
        assert [g.items for g in answered.group if g.semantic == "BUNDLE"] == [bundle], step
        for media in answered.media:
            if media.rtp.muxId in rejected:
                assert (media.port, media.direction) == (0, "inactive"), step
            else:
                assert media.port != 0, step
        assert {t.mid: t.kind for t in publication.tracks} == sends, step
        assert not publication.closed
        # A stopped section's m-line taken by a new mid: aiortc keeps one transceiver a line.
        mids = [t.mid for t in publication.pc.getTransceivers()]
        assert mids == [m.rtp.muxId for m in offered.media], step


async def test_a_refused_renegotiation_keeps_the_running_tracks(room: Harness) -> None:
    ann = await room.publish("ann")
    assert ann.publication is not None
    subscription, viewer = await room.watch(ann.track_ids())
    video = ann.track_id("video")
    offer = await ann.offer()
    # A new section whose only codec the SFU cannot take: aiortc would fail half-way.
    head, _, rest = offer.partition("m=video")
    section = "m=video" + rest
    extra = section.replace("a=mid:1", "a=mid:7").replace("VP8/90000", "x-vp13/90000")
    extra = extra.replace("H264/90000", "x-h266/90000")
    bad = head.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0 1 7") + section + extra
    with pytest.raises(MediaError) as caught:
        await ann.publication.renegotiate(bad)
    assert caught.value.code == "unsupported_codec"
    assert not ann.publication.closed
    got = received(subscription, viewer, video)
    before = got.packets
    await wait_for(lambda: got.packets > before + 10, within=2)
    # The same offer without the bad section is taken afterwards.
    await ann.accept(await ann.publication.renegotiate(offer))
    assert sorted(ann.track_ids()) == sorted([video, ann.track_id("audio")])


async def test_a_re_offer_whose_sections_swap_places_is_refused_and_changes_nothing(
    room: Harness,
) -> None:
    ann = await room.publish("ann")
    assert ann.publication is not None
    subscription, viewer = await room.watch(ann.track_ids())
    video = ann.track_id("video")
    offer = await ann.offer()
    swapped = offer.replace("a=mid:0", "a=mid:x").replace("a=mid:1", "a=mid:0")
    swapped = swapped.replace("a=mid:x", "a=mid:1")
    with pytest.raises(MediaError) as caught:
        await ann.publication.renegotiate(swapped)
    assert caught.value.code == "bad_sdp"
    assert not ann.publication.closed
    got = received(subscription, viewer, video)
    before = got.packets
    await wait_for(lambda: got.packets > before + 10, within=2)


def test_the_aiortc_internals_the_sdp_model_uses_are_there() -> None:
    assert hooks.common_codecs("audio", []) == []
    assert hooks.default_codec("video").mimeType == "video/VP8"
    assert isinstance(getattr(RTCPeerConnection(), hooks.PC_TRANSCEIVERS), list)
