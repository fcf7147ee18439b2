"""Audio first: every answer the SFU gives a publisher asks its Opus encoder for in-band FEC
(`useinbandfec=1`), for Chromium's and Firefox's real offers, at the first answer and at each
renegotiation; the subscribers' offers stay as they were."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiortc import sdp as aiortc_sdp

from tests.media_clients import Harness
from tests.media_clip import Clip

FIXTURES = Path(__file__).parent / "fixtures" / "sdp"
STEPS = ("offer_initial", "offer_share", "offer_share_stopped", "offer_share_again")


def _offer(browser: str, step: str) -> str:
    text = (FIXTURES / f"{browser}_{step}.sdp").read_text()
    return "".join(line for line in text.splitlines(True) if not line.startswith("a=candidate"))


def opus_parameters(sdp: str) -> list[dict[str, object]]:
    return [
        dict(codec.parameters)
        for media in aiortc_sdp.SessionDescription.parse(sdp).media
        if media.kind == "audio" and media.port != 0
        for codec in media.rtp.codecs
        if codec.mimeType.lower() == "audio/opus"
    ]


@pytest.fixture
async def room(media_clip: Clip) -> AsyncIterator[Harness]:
    harness = Harness(media_clip)
    yield harness
    await harness.close()


@pytest.mark.parametrize("browser", ["chromium", "firefox"])
async def test_each_answer_asks_the_publisher_for_opus_fec(room: Harness, browser: str) -> None:
    publication, answer = await room.sfu.publish("ann", _offer(browser, STEPS[0]))
    answers = [answer]
    for step in STEPS[1:]:
        answers.append(await publication.renegotiate(_offer(browser, step)))
    for step, text in zip(STEPS, answers, strict=True):
        found = opus_parameters(text)
        assert found, step
        for parameters in found:
            assert parameters.get("useinbandfec") == 1, (step, parameters)
            assert parameters.get("minptime") == 10, (step, parameters)
