"""Where each picture goes in the programme: pure functions of who is there, who speaks, and
whether a screen is shared. No media here; the renderer and the live compositor draw it."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Content = Literal["video", "card", "screen"]
ASPECT = (16, 9)
STRIP_SHARE = 0.2  # of the canvas height, for the strip of small tiles
GAP = 4  # pixels between strip tiles, at 720 lines (scaled with the canvas)


@dataclass(frozen=True, slots=True)
class Participant:
    """Someone on the programme: `has_video` when their camera shows a live picture now."""

    id: str
    name: str
    has_video: bool = True


@dataclass(frozen=True, slots=True)
class Box:
    x: int
    y: int
    width: int
    height: int

    def contains(self, x: int, y: int) -> bool:
        return self.x <= x < self.x + self.width and self.y <= y < self.y + self.height

    @property
    def centre(self) -> tuple[int, int]:
        return self.x + self.width // 2, self.y + self.height // 2


@dataclass(frozen=True, slots=True)
class Tile:
    """One picture on the canvas: a camera ("video"), a shared screen ("screen"), or a card
    (the name on a plain background) for a participant without a live picture. `label` is where
    the name goes."""

    participant: str
    name: str
    content: Content
    box: Box
    label: Box
    large: bool


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def fit(width: int, height: int, x: int = 0, y: int = 0) -> Box:
    """The largest 16:9 box (even sizes) centred in the given area."""
    w = min(width, height * ASPECT[0] // ASPECT[1])
    h = min(height, w * ASPECT[1] // ASPECT[0])
    w, h = _even(w), _even(h)
    return Box(x + (width - w) // 2 // 2 * 2, y + (height - h) // 2 // 2 * 2, w, h)


def _label(box: Box, content: Content) -> Box:
    height = _even(max(12, box.height // 8))
    if content == "card":  # the name is the card: centred
        return Box(box.x, box.y + (box.height - height) // 2 // 2 * 2, box.width, height)
    return Box(box.x, box.y + box.height - height, box.width, height)


def _tile(person: Participant, box: Box, large: bool, screen: bool = False) -> Tile:
    content: Content = "screen" if screen else ("video" if person.has_video else "card")
    return Tile(person.id, person.name, content, box, _label(box, content), large)


def layout(
    participants: Sequence[Participant],
    active: str | None = None,
    screen: str | None = None,
    width: int = 1280,
    height: int = 720,
) -> list[Tile]:
    """Tiles for a `width` x `height` canvas: a shared screen (`screen` = the sharer's id) large
    with everyone in a strip below; else the active speaker (or the first participant) large with
    the others in the strip. The large tile comes first."""
    if width < 64 or height < 36:
        raise ValueError(f"canvas {width}x{height} is too small")
    people = list(participants)
    if not people:
        return []
    ids = [p.id for p in people]
    if len(set(ids)) != len(ids):
        raise ValueError("participant ids must be unique")
    sharer = next((p for p in people if p.id == screen), None)
    if sharer is not None:
        main_tile = sharer
        others = people
    else:
        main_tile = next((p for p in people if p.id == active), people[0])
        others = [p for p in people if p is not main_tile]
    if not others:
        return [_tile(main_tile, fit(width, height), True, sharer is not None)]
    strip_height = _even(height * STRIP_SHARE)
    main_box = fit(width, height - strip_height)
    tiles = [_tile(main_tile, main_box, True, sharer is not None)]
    return tiles + [
        _tile(p, box, False)
        for p, box in zip(others, _strip(len(others), width, height, strip_height), strict=True)
    ]


def _strip(count: int, width: int, height: int, strip_height: int) -> list[Box]:
    """`count` 16:9 boxes side by side, centred, along the bottom `strip_height` pixels."""
    gap = max(2, GAP * height // 720 // 2 * 2)
    tile_h = strip_height - 2 * gap
    tile_w = tile_h * ASPECT[0] // ASPECT[1]
    if count * tile_w + (count + 1) * gap > width:
        tile_w = (width - (count + 1) * gap) // count
        tile_h = tile_w * ASPECT[1] // ASPECT[0]
    tile_w, tile_h = _even(tile_w), _even(tile_h)
    total = count * tile_w + (count - 1) * gap
    x = (width - total) // 2 // 2 * 2
    y = height - strip_height + (strip_height - tile_h) // 2 // 2 * 2
    return [Box(x + i * (tile_w + gap), y, tile_w, tile_h) for i in range(count)]
