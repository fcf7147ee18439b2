"""Bad SDP gets a MediaError with a code; nothing is kept and other sessions keep flowing."""

import asyncio
import re
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from media.errors import MediaError
from media.subscriber import Subscription
from tests.media_clients import ClientPublisher, ClientViewer, Harness, received, wait_for
from tests.media_clip import Clip


@pytest.fixture
async def room(media_clip: Clip) -> AsyncIterator[Harness]:
    harness = Harness(media_clip)
    yield harness
    await harness.close()


@pytest.fixture(scope="module")
def offer_text(media_clip: Clip) -> str:
    """A real aiortc publisher's offer, made once (in its own event loop)."""
    return asyncio.run(_client_offer(media_clip))


@pytest.fixture
def memo() -> dict[str, str]:
    return {}


async def _client_offer(media_clip: Clip) -> str:
    """A real offer from an aiortc publisher (never answered)."""
    client = ClientPublisher(media_clip)
    try:
        return await client.offer()
    finally:
        await client.close()


async def _still_flowing(subscription: Subscription, viewer: ClientViewer, track: str) -> None:
    got = received(subscription, viewer, track)
    before = got.packets
    await wait_for(lambda: got.packets > before + 10, within=2)


def _many_sections(offer: str, count: int) -> str:
    head, _, rest = offer.partition("m=")
    section = "m=" + rest.split("m=")[0]
    sections = [re.sub(r"a=mid:\S+", f"a=mid:{i}", section) for i in range(count)]
    return head + "".join(sections)


def _unsupported_codecs(offer: str) -> str:
    return (
        offer.replace("opus/48000", "x-secret/48000")
        .replace("VP8/90000", "x-vp13/90000")
        .replace("H264/90000", "x-h266/90000")
        .replace("PCMU/8000", "x-pcmz/8000")
        .replace("PCMA/8000", "x-pcmy/8000")
        .replace("G722/8000", "x-g7/8000")
    )


async def test_bad_offers_raise_media_errors_and_leave_others_working(
    room: Harness, media_clip: Clip
) -> None:
    ann = await room.publish("ann")
    subscription, viewer = await room.watch(ann.track_ids())
    video = ann.track_id("video")
    await wait_for(lambda: received(subscription, viewer, video).frames > 3, within=5)
    offer = await _client_offer(media_clip)

    cases = {
        "bad_sdp": ["", "hello", "v=0\r\nm=audio\r\n", "v=0\r\n" + "a=x\r\n" * 5, offer[:200]],
        "too_many_media": [_many_sections(offer, 100)],
        "unsupported_codec": [_unsupported_codecs(offer)],
    }
    for code, offers in cases.items():
        for bad in offers:
            with pytest.raises(MediaError) as caught:
                await room.sfu.publish("mallory", bad)
            assert caught.value.code == code, (bad[:80], caught.value.message)
            assert caught.value.message
    with pytest.raises(MediaError) as not_text:
        await room.sfu.publish("mallory", None)  # type: ignore[arg-type]
    assert not_text.value.code == "bad_sdp"

    # Nothing of mallory was kept, and ann's viewer still receives.
    assert sorted(room.sfu.forwarders) == sorted(ann.track_ids())
    await _still_flowing(subscription, viewer, video)
    # The name is free: a good offer under it works.
    await room.publish("mallory")


async def test_subscription_refuses_bad_requests(room: Harness) -> None:
    ann = await room.publish("ann")
    subscription, viewer = await room.watch([ann.track_id("video")])
    with pytest.raises(MediaError) as unknown:
        subscription.add("nobody/0")
    assert unknown.value.code == "unknown_track"
    with pytest.raises(MediaError) as no_offer:
        await subscription.accept(str(viewer.pc.localDescription.sdp))
    assert no_offer.value.code == "no_offer"
    with pytest.raises(MediaError) as not_subscribed:
        subscription.pause(ann.track_id("audio"))
    assert not_subscribed.value.code == "unknown_track"

    subscription.add(ann.track_id("audio"))
    await subscription.offer()
    with pytest.raises(MediaError) as pending:
        await subscription.offer()
    assert pending.value.code == "negotiation_pending"
    with pytest.raises(MediaError) as bad_answer:
        await subscription.accept("v=0\r\nbroken")
    assert bad_answer.value.code == "bad_sdp"
    with pytest.raises(MediaError) as duplicate:
        await room.sfu.publish("ann", await _client_offer(room.clip))
    assert duplicate.value.code == "already_publishing"
    # The pending offer can still be answered after the bad one.
    await subscription.accept(await viewer.answer(str(subscription.pc.localDescription.sdp)))
    await _still_flowing(subscription, viewer, ann.track_id("video"))
    await _still_flowing(subscription, viewer, ann.track_id("audio"))


async def test_trickled_candidates_are_checked(room: Harness) -> None:
    ann = await room.publish("ann")
    assert ann.publication is not None
    subscription, viewer = await room.watch(ann.track_ids())
    for target in (ann.publication, subscription):
        for candidate, mid, index in [
            ("garbage", "0", None),
            ("candidate:1 1 udp", "0", None),
            ("candidate:1 1 udp 1 127.0.0.1 notaport typ host", "0", None),
            ("candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", None, None),
            (12, "0", None),
            ("x" * 600, "0", None),
        ]:
            with pytest.raises(MediaError) as caught:
                await target.add_ice_candidate(candidate, mid, index)
            assert caught.value.code == "bad_candidate", candidate
        # Well-formed candidates and the end-of-candidates marker are accepted.
        await target.add_ice_candidate("candidate:1 1 udp 2130706431 127.0.0.1 9 typ host", "0")
        await target.add_ice_candidate("a=candidate:2 1 udp 1 127.0.0.1 10 typ host", None, 0)
        await target.add_ice_candidate("", "0")
    await _still_flowing(subscription, viewer, ann.track_id("video"))


async def test_a_renegotiation_that_changes_a_running_codec_is_refused(room: Harness) -> None:
    ann = await room.publish("ann")
    assert ann.publication is not None
    subscription, viewer = await room.watch(ann.track_ids())
    video = ann.track_id("video")
    running = room.sfu.track(video).payload_type
    offer = await ann.offer()  # a re-offer of the same tracks ...
    changed = offer.replace(f"a=rtpmap:{running} VP8/90000", f"a=rtpmap:{running} H264/90000")
    with pytest.raises(MediaError) as caught:
        await ann.publication.renegotiate(changed)
    assert caught.value.code == "codec_changed"
    assert not ann.publication.closed
    await _still_flowing(subscription, viewer, video)
    # ... which, unchanged, is accepted.
    await ann.accept(await ann.publication.renegotiate(offer))
    await _still_flowing(subscription, viewer, video)


def _mangle(text: str, data: st.DataObject) -> str:
    """A few line-level edits of a real SDP: drop, duplicate, truncate, replace, swap lines,
    or reject a media section (port 0)."""
    lines = text.split("\r\n")
    actions = st.sampled_from(["drop", "dup", "cut", "junk", "swap", "reject"])
    edits = data.draw(st.lists(st.tuples(actions, st.integers(0, 200)), min_size=1, max_size=4))
    for action, index in edits:
        index %= len(lines)
        if action == "drop" and len(lines) > 1:
            del lines[index]
        elif action == "dup":
            lines.insert(index, lines[index])
        elif action == "cut":
            lines[index] = lines[index][: len(lines[index]) // 2]
        elif action == "junk":
            lines[index] = data.draw(st.text(max_size=20))
        elif action == "reject":  # port 0 on some media section
            sections = [i for i, line in enumerate(lines) if line.startswith("m=")]
            if sections:
                i = sections[index % len(sections)]
                lines[i] = re.sub(r"^(m=\w+) \d+", r"\1 0", lines[i])
        else:
            other = data.draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
    return "\r\n".join(lines)


FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(data=st.data())
async def test_mangled_offers_only_ever_raise_media_errors(
    room: Harness, offer_text: str, data: st.DataObject
) -> None:
    name = f"m{data.draw(st.integers(0, 10**9))}"
    try:
        await room.sfu.publish(name, _mangle(offer_text, data))
    except MediaError as error:
        assert error.code and error.message
        assert name not in {t.rpartition("/")[0] for t in room.sfu.forwarders}
    else:
        await room.sfu.unpublish(name)


@FUZZ
@given(data=st.data())
async def test_mangled_answers_only_ever_raise_media_errors(
    room: Harness, memo: dict[str, str], data: st.DataObject
) -> None:
    if "answer" not in memo:  # the fixtures live across examples: publish and answer once
        ann = await room.publish("ann")
        _, viewer = await room.watch(ann.track_ids())
        memo["answer"] = str(viewer.pc.localDescription.sdp)
    subscription = room.sfu.subscribe()
    for track_id in sorted(room.sfu.forwarders):
        subscription.add(track_id)
    await subscription.offer()
    try:
        await subscription.accept(_mangle(memo["answer"], data))
    except MediaError as error:
        assert error.code and error.message
    finally:
        await room.sfu.unsubscribe(subscription)
