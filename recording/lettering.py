"""Names for the programme's tiles, drawn by Pillow (FreeType): white text on a dark bar, cut
with an ellipsis to fit, made once per name and size as rows of luma octets."""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_ENV = "VECHE_FONT"
# Debian's fonts-dejavu-core (scripts/lib.sh installs it): Latin, Cyrillic, Greek and more.
DEFAULT_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
LABEL_Y, TEXT_Y = 24, 235  # a dark grey bar, white text: both neutral (U = V = 128)
ELLIPSIS = "…"

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Label:
    """A name on its bar: `rows` of `width` luma octets (`width` even, for the chroma planes)."""

    width: int
    rows: list[bytes]


def font_path(font: Path | None = None) -> Path:
    """The font asked for: `font`, else $VECHE_FONT, else DejaVu Sans."""
    if font is not None:
        return Path(font)
    return Path(os.environ.get(FONT_ENV) or DEFAULT_FONT)


class Lettering:
    """Labels in one font (see font_path). A font Pillow cannot open is replaced by Pillow's
    own default font, which has no Cyrillic: `warning` then says so."""

    def __init__(self, font: Path | None = None) -> None:
        self.path: Path | None = font_path(font)
        self.warning: str | None = None
        try:
            ImageFont.truetype(str(self.path), 12)
        except (OSError, ValueError) as error:
            self.warning = (
                f"no readable font ({self.path}: {error}): names are drawn in Pillow's "
                "default font, where Cyrillic may not show"
            )
            log.warning("%s", self.warning)
            self.path = None
        self._fonts: dict[int, Font] = {}
        self._labels: dict[tuple[str, int, int], Label] = {}

    def font(self, size: int) -> Font:
        made = self._fonts.get(size)
        if made is None:
            if self.path is None:
                made = ImageFont.load_default(size)
            else:
                made = ImageFont.truetype(str(self.path), size)
            self._fonts[size] = made
        return made

    def label(self, name: str, width: int, height: int) -> Label:
        """`name` on a bar at most `width` x `height` (cached per name and size)."""
        key = (name, width, height)
        made = self._labels.get(key)
        if made is None:
            made = self._labels[key] = self._make(name, width, height)
        return made

    def _make(self, name: str, width: int, height: int) -> Label:
        pad = max(2, height // 3)
        font = self.font(max(6, height * 2 // 3))
        text = fit(font, name, max(1, width - 2 * pad))
        bar = max(2, min(width, (int(font.getlength(text)) + 2 * pad + 2)) // 2 * 2)
        picture = Image.new("L", (bar, height), LABEL_Y)
        # "lm": the pen at the left, vertically midway between ascender and descender.
        ImageDraw.Draw(picture).text((pad, height / 2), text, fill=TEXT_Y, font=font, anchor="lm")
        data = picture.tobytes()
        return Label(bar, [data[r * bar : (r + 1) * bar] for r in range(height)])


def fit(font: Font, text: str, width: float) -> str:
    """`text` on one line (unprintable characters dropped), cut and ended with an ellipsis
    when it is wider than `width` pixels."""
    text = "".join(c for c in text if c.isprintable()).strip()
    if font.getlength(text) <= width:
        return text
    low, high = 0, len(text)  # the longest prefix that fits with the ellipsis: binary search
    while low < high:
        middle = (low + high + 1) // 2
        if font.getlength(text[:middle].rstrip() + ELLIPSIS) <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip() + ELLIPSIS
