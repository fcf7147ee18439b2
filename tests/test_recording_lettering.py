"""Names on the programme's tiles: Pillow draws them in DejaVu Sans (or $VECHE_FONT)."""

import logging
import shutil
from pathlib import Path

import pytest

from recording.lettering import (
    DEFAULT_FONT,
    ELLIPSIS,
    FONT_ENV,
    LABEL_Y,
    TEXT_Y,
    Label,
    Lettering,
    fit,
)


def _shades(label: Label) -> tuple[int, int]:
    pixels = b"".join(label.rows)
    return min(pixels), max(pixels)


@pytest.fixture(autouse=True)
def _no_font_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FONT_ENV, raising=False)


def test_cyrillic_names_are_drawn_in_dejavu_sans() -> None:
    lettering = Lettering()
    assert lettering.path == DEFAULT_FONT and lettering.warning is None
    anna, other = lettering.label("Анна", 200, 24), lettering.label("Бнна", 200, 24)
    for label in (anna, other):
        assert len(label.rows) == 24 and all(len(row) == label.width for row in label.rows)
        assert label.width % 2 == 0 and label.width < 200  # the bar ends after the name
        assert _shades(label) == (LABEL_Y, TEXT_Y)  # white letters on the dark bar
    # Missing glyphs would all be the same box: different letters give different pixels.
    assert anna.rows != other.rows
    assert lettering.label("Анна", 200, 24) is anna  # made once, then reused


def test_a_long_name_is_cut_with_an_ellipsis_to_fit_its_box() -> None:
    lettering = Lettering()
    name = "Александра Константиновна Преображенская-Кузнецова"
    label = lettering.label(name, 120, 20)
    assert label.width <= 120 and len(label.rows) == 20
    font = lettering.font(13)
    cut = fit(font, name, 100)
    assert cut.endswith(ELLIPSIS) and name.startswith(cut[:-1])
    assert font.getlength(cut) <= 100 < font.getlength(name)
    assert fit(font, "Анна", 100) == "Анна"
    assert fit(font, " Ан\nна\x00 ", 100) == "Анна"  # control characters are dropped
    assert fit(font, name, 1) == ELLIPSIS


def test_veche_font_chooses_the_font_and_an_explicit_one_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = tmp_path / "chosen.ttf"
    shutil.copyfile(DEFAULT_FONT, chosen)
    monkeypatch.setenv(FONT_ENV, str(chosen))
    assert Lettering().path == chosen
    assert Lettering(DEFAULT_FONT).path == DEFAULT_FONT


def test_a_file_that_is_not_a_font_falls_back_to_pillows_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.ttf"
    for data in (b"", b"\x00\x01\x00\x00" + bytes(40), b"not a font at all" * 10):
        bad.write_bytes(data)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="recording.lettering"):
            lettering = Lettering(bad)
        assert lettering.path is None and lettering.warning is not None
        assert str(bad) in lettering.warning and "Cyrillic may not show" in lettering.warning
        assert [r.getMessage() for r in caplog.records] == [lettering.warning]
        # Latin names still show, in Pillow's own font.
        assert _shades(lettering.label("Boris", 200, 24)) == (LABEL_Y, TEXT_Y)
    monkeypatch.setenv(FONT_ENV, str(tmp_path / "missing.ttf"))
    assert "missing.ttf" in (Lettering().warning or "")
