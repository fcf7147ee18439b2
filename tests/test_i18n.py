"""Every string a page shows is translated into Russian, and the language is chosen as promised."""

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from web.i18n import (
    JS_KEYWORDS,
    LANGUAGES,
    STATIC_DIR,
    TRANSLATIONS_DIR,
    Catalogs,
    choose_language,
    from_accept_language,
)

WEB = Path(__file__).resolve().parent.parent / "web"
METHODS = [
    ("**.py", "python"),
    ("templates/**.html", "jinja2"),
    ("static/**.js", "javascript"),
]


def used_msgids() -> set[str]:
    """What babel's extractors find in web/: _() and N_() in Python and templates, t() in JS."""
    keywords = {"_": None, "N_": None, "gettext": None, **JS_KEYWORDS}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        WEB, method_map=METHODS, keywords=keywords
    ):
        if isinstance(message, str):
            found.add(message)
    return found


def catalog(lang: str) -> dict[str, str]:
    with (TRANSLATIONS_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as source:
        return {m.id: str(m.string) for m in read_po(source) if isinstance(m.id, str) and m.id}


def test_every_string_the_pages_use_is_translated_into_russian() -> None:
    used = used_msgids()
    assert len(used) > 100, "the extractors found the pages' strings"
    ru = catalog("ru")
    missing = sorted(m for m in used if not ru.get(m))
    assert not missing, f"untranslated in ru (update web/translations): {missing}"
    en = catalog("en")
    assert not sorted(used - set(en)), "every msgid is in the en catalog too"


def test_catalogs_compile_in_memory_and_feed_the_scripts() -> None:
    catalogs = Catalogs.load()
    assert catalogs.gettext("ru", "Join") == "Войти"
    assert catalogs.gettext("en", "Join") == "Join"
    assert catalogs.js_strings["ru"]["The meeting has ended"] == "Встреча завершена"
    assert set(catalogs.js_strings["ru"]) == set(catalogs.js_strings["en"])
    assert "Raise hand" in catalogs.js_strings["en"]
    # Only .po sources are kept: compiled catalogs are built at start, never committed.
    assert not list(TRANSLATIONS_DIR.rglob("*.mo"))
    assert list(STATIC_DIR.glob("*.js"))


@pytest.mark.parametrize(
    ("query", "cookie", "header", "expected"),
    [
        ("ru", "en", "en", "ru"),
        (None, "ru", "en-US", "ru"),
        ("xx", None, "ru-RU,ru;q=0.9", "ru"),
        (None, None, "de-DE, en;q=0.5, ru;q=0.7", "ru"),
        (None, None, "fr, de", "en"),
        (None, None, "ru;q=0, en;q=0.1", "en"),
        (None, None, "ru;q=bad", "en"),
        (None, None, None, "en"),
    ],
)
def test_language_choice(
    query: str | None, cookie: str | None, header: str | None, expected: str
) -> None:
    assert choose_language(query, cookie, header) == expected
    assert expected in LANGUAGES


def test_accept_language_keeps_the_browser_order_on_equal_quality() -> None:
    assert from_accept_language("en, ru") == "en"
    assert from_accept_language("ru, en") == "ru"
