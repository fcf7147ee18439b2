"""The rules on top of what the forwarder sees: active speakers from RFC 6464 levels, and which
video a slow link cannot carry. Pure functions of their inputs: no network."""

from media.levels import ActiveSpeakers
from media.links import (
    HEADROOM,
    LOSS_HIGH,
    LOSS_SOME,
    PAUSE_AFTER,
    PAUSE_BELOW,
    RELAPSE_WITHIN,
    RESUME_AFTER,
    RETRY_FIRST,
    RETRY_MAX,
    WARMUP,
    LinkGuard,
)


def test_speaking_needs_a_level_held_and_ends_with_hysteresis() -> None:
    speakers = ActiveSpeakers()
    # One loud interval among silence is not speech yet (smoothing) ...
    assert not speakers.update({"ann": 20, "bob": None})
    assert speakers.speaking == []
    # ... a held level is.
    assert speakers.update({"ann": 20, "bob": None})
    assert speakers.as_dict() == {"active": "ann", "speaking": ["ann"]}
    # Between the thresholds the state holds (no flicker) ...
    for _ in range(5):
        assert not speakers.update({"ann": 60, "bob": 127})
    assert speakers.speaking == ["ann"]
    # ... quiet ends it, and ann stays the active speaker until someone else speaks.
    for _ in range(3):
        speakers.update({"ann": 127, "bob": 127})
    assert speakers.as_dict() == {"active": "ann", "speaking": []}
    for _ in range(2):
        speakers.update({"ann": 127, "bob": 30})
    assert speakers.as_dict() == {"active": "bob", "speaking": ["bob"]}


def test_the_active_speaker_keeps_the_floor_while_speaking() -> None:
    speakers = ActiveSpeakers()
    for _ in range(3):
        speakers.update({"ann": 40})
    for _ in range(3):
        speakers.update({"ann": 40, "bob": 10})  # bob is louder but ann still speaks
    assert speakers.as_dict() == {"active": "ann", "speaking": ["ann", "bob"]}
    speakers.update({"bob": 10})  # ann's track is gone
    assert speakers.as_dict() == {"active": "bob", "speaking": ["bob"]}
    speakers.forget("bob")
    assert speakers.as_dict() == {"active": None, "speaking": []}


def test_an_estimate_that_tracks_the_incoming_rate_is_not_congestion() -> None:
    # Chromium's REMB sits at about what arrives: 300 kbit/s of video plus audio estimated at
    # 301-343 kbit/s must never pause anything.
    guard = LinkGuard()
    for estimate in [301_000, 343_000, 310_000, 299_000] * 10:
        guard.update(estimate, {"cam": 320_000})
    assert guard.paused == set()


def settled(guard: LinkGuard, needs: dict[str, int]) -> None:
    """Past the first seconds in which a receiver settles."""
    for _ in range(WARMUP):
        guard.update(10_000_000, needs, 0.0)


def test_an_estimate_below_the_incoming_rate_without_loss_is_not_congestion() -> None:
    # Chromium's REMB ramps up from a low start and sits at about what arrives: a host taking
    # two 320 kbit/s cameras was estimated at 130-290 kbit/s for ten seconds with no loss.
    guard = LinkGuard()
    needs = {"anna": 320_000, "petr": 320_000}
    for estimate in range(130_000, 290_000, 10_000):
        guard.update(estimate, needs, 0.0)
    for _ in range(20):
        guard.update(290_000, needs, None)  # intervals without a receiver report
    assert guard.paused == set()


def test_a_new_stream_is_not_paused_while_the_receiver_settles() -> None:
    guard = LinkGuard()
    for _ in range(WARMUP):
        guard.update(100_000, {"cam": 800_000}, 0.5)
    assert guard.paused == set()
    for _ in range(PAUSE_AFTER):
        guard.update(100_000, {"cam": 800_000}, 0.5)
    assert guard.paused == {"cam"}


def test_a_lossy_link_pauses_the_most_expensive_video_then_resumes_it() -> None:
    guard = LinkGuard()
    needs = {"cam": 800_000, "screen": 1_200_000}
    settled(guard, needs)
    guard.update(None, needs, None)  # nothing reported: no change
    low = int(PAUSE_BELOW * 2_000_000) - 1
    for _ in range(PAUSE_AFTER):
        guard.update(low, needs, 0.0)  # a low estimate alone is not enough
    for _ in range(PAUSE_AFTER - 1):
        guard.update(low, needs, LOSS_SOME)
    assert guard.paused == set()  # a short dip is not enough
    guard.update(low, needs, LOSS_SOME)
    assert guard.paused == {"screen"}
    # The camera alone fits: the loss is gone and nothing more is paused.
    for _ in range(5):
        guard.update(low, {"cam": 800_000, "screen": 0}, 0.0)  # a paused track keeps its rate
    assert guard.paused == {"screen"}
    # Heavy loss whatever the estimate: the camera goes too.
    for _ in range(PAUSE_AFTER):
        guard.update(5_000_000, needs, LOSS_HIGH)
    assert guard.paused == {"cam", "screen"}
    # An estimate with room to spare for the cheapest, without loss, resumes it.
    fits_cam = int(800_000 * HEADROOM) + 1
    for _ in range(RESUME_AFTER - 1):
        guard.update(fits_cam, needs, 0.0)
    assert guard.paused == {"cam", "screen"}
    guard.update(fits_cam, needs, 0.0)
    assert guard.paused == {"screen"}
    for _ in range(RESUME_AFTER):
        guard.update(10_000_000, needs, 0.0)
    assert guard.paused == set()


def test_tracks_that_leave_are_forgotten() -> None:
    guard = LinkGuard()
    settled(guard, {"cam": 800_000})
    for _ in range(PAUSE_AFTER):
        guard.update(100_000, {"cam": 800_000}, LOSS_HIGH)
    assert guard.paused == {"cam"}
    guard.update(100_000, {}, 0.0)
    assert guard.paused == set()


def test_a_paused_track_is_retried_and_the_wait_doubles_while_the_link_stays_bad() -> None:
    # With the video paused the estimate tells only what audio carries.
    guard = LinkGuard()
    cam = {"cam": 800_000}
    settled(guard, cam)
    for _ in range(PAUSE_AFTER):
        guard.update(100_000, cam, LOSS_HIGH)
    assert guard.paused == {"cam"}
    waits = []
    for _ in range(4):
        waited = 0
        while guard.paused:
            guard.update(100_000, cam, 0.0)
            waited += 1
        waits.append(waited)
        for _ in range(PAUSE_AFTER):  # still too lossy: paused again at once
            guard.update(100_000, cam, LOSS_HIGH)
        assert guard.paused == {"cam"}
    assert waits == [RETRY_FIRST, 2 * RETRY_FIRST, 4 * RETRY_FIRST, RETRY_MAX]
    # A retry that holds brings the wait back to the first one.
    while guard.paused:
        guard.update(100_000, cam, 0.0)
    for _ in range(RELAPSE_WITHIN + 1):
        guard.update(900_000, cam, 0.0)
    assert guard.paused == set()
    for _ in range(PAUSE_AFTER):
        guard.update(100_000, cam, LOSS_HIGH)
    waited = 0
    while guard.paused:
        guard.update(100_000, cam, 0.0)
        waited += 1
    assert waited == RETRY_FIRST
