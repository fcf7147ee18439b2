"""The programme layout as pure functions."""

import pytest

from recording.layout import Box, Participant, Tile, fit, layout

A, B, C = Participant("a", "Анна"), Participant("b", "Boris", False), Participant("c", "Vera")


def _inside(tile: Tile, width: int, height: int) -> bool:
    box = tile.box
    return box.x >= 0 and box.y >= 0 and box.x + box.width <= width and box.y + box.height <= height


def _overlap(one: Box, two: Box) -> bool:
    return not (
        one.x + one.width <= two.x
        or two.x + two.width <= one.x
        or one.y + one.height <= two.y
        or two.y + two.height <= one.y
    )


def test_nobody_means_an_empty_programme() -> None:
    assert layout([]) == []


def test_one_person_fills_the_canvas() -> None:
    (tile,) = layout([A], width=1280, height=720)
    assert tile.box == Box(0, 0, 1280, 720) and tile.large and tile.content == "video"
    assert tile.name == "Анна" and tile.label.y + tile.label.height == 720


def test_the_active_speaker_is_large_and_the_others_make_a_strip() -> None:
    tiles = layout([A, B, C], active="c", width=1280, height=720)
    assert [t.participant for t in tiles] == ["c", "a", "b"]
    main, *strip = tiles
    assert main.large and main.box.width * 9 == main.box.height * 16
    assert main.box.height >= 720 * 0.75
    assert all(not t.large and t.box.y >= main.box.y + main.box.height for t in strip)
    assert strip[0].box.x < strip[1].box.x and strip[0].box.height == strip[1].box.height
    # Centred, nothing overlaps, everything on the canvas, sizes even (for 4:2:0 video).
    assert main.box.x * 2 + main.box.width == 1280
    for tile in tiles:
        assert _inside(tile, 1280, 720)
        assert all(v % 2 == 0 for v in (tile.box.x, tile.box.y, tile.box.width, tile.box.height))
        assert all(not _overlap(tile.box, o.box) for o in tiles if o is not tile)


def test_without_an_active_speaker_the_first_is_large() -> None:
    assert layout([A, B, C], active=None)[0].participant == "a"
    assert layout([A, B, C], active="gone")[0].participant == "a"


def test_a_participant_without_video_gets_a_card_with_the_name() -> None:
    tiles = layout([A, B], active="b")
    card = tiles[0]
    assert card.participant == "b" and card.content == "card" and card.name == "Boris"
    # On a card the name is in the middle, not along the bottom edge.
    assert (
        card.box.y < card.label.y
        and card.label.y + card.label.height < card.box.y + card.box.height
    )
    assert tiles[1].content == "video"


def test_a_shared_screen_is_large_and_everyone_is_in_the_strip() -> None:
    tiles = layout([A, B, C], active="a", screen="c", width=1280, height=720)
    assert tiles[0].content == "screen" and tiles[0].participant == "c" and tiles[0].large
    assert [t.participant for t in tiles[1:]] == ["a", "b", "c"]
    assert [t.content for t in tiles[1:]] == ["video", "card", "video"]
    alone = layout([C], screen="c")
    assert [t.content for t in alone] == ["screen", "video"]


def test_any_canvas_and_many_people_fit() -> None:
    people = [Participant(str(i), f"P{i}") for i in range(24)]
    for width, height in ((1280, 720), (640, 360), (1920, 1080), (720, 720), (320, 180)):
        tiles = layout(people, active="5", width=width, height=height)
        assert len(tiles) == 24 and tiles[0].participant == "5"
        for tile in tiles:
            assert _inside(tile, width, height) and tile.box.width > 0
            assert all(not _overlap(tile.box, o.box) for o in tiles if o is not tile)


def test_bad_layout_input_is_refused() -> None:
    with pytest.raises(ValueError):
        layout([A, A])
    with pytest.raises(ValueError):
        layout([A], width=10, height=10)


def test_fit_keeps_16_by_9_inside_the_area() -> None:
    assert fit(1280, 576) == Box(128, 0, 1024, 576)
    assert fit(400, 400, 10, 20) == Box(10, 20 + 88, 400, 224)
