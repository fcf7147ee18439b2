"""Translations (ru, en): .po catalogs compiled in memory at start, and the language choice."""

import io
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from babel.messages.extract import extract_from_file
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "veche_lang"
JS_KEYWORDS = {"t": None}  # the JS pages look their strings up with t("...")

HERE = Path(__file__).parent
TRANSLATIONS_DIR = HERE / "translations"
STATIC_DIR = HERE / "static"


def compile_catalog(po_path: Path, language: str) -> Translations:
    """A .po file compiled to gettext's binary form in memory (no .mo files on disk)."""
    with po_path.open("rb") as source:
        catalog = read_po(source, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(fp=buffer)


def js_msgids(static_dir: Path) -> list[str]:
    """Every string the page scripts pass to t(), in file order, without duplicates."""
    found: dict[str, None] = {}
    for script in sorted(static_dir.glob("*.js")):
        for _lineno, message, _comments, _context in extract_from_file(
            "javascript", script, keywords=JS_KEYWORDS
        ):
            if isinstance(message, str):
                found[message] = None
    return list(found)


@dataclass(frozen=True)
class Catalogs:
    """The compiled catalogs and, per language, the strings the scripts need."""

    translations: Mapping[str, Translations]
    js_strings: Mapping[str, Mapping[str, str]]

    @classmethod
    def load(
        cls, translations_dir: Path = TRANSLATIONS_DIR, static_dir: Path = STATIC_DIR
    ) -> "Catalogs":
        translations = {
            lang: compile_catalog(translations_dir / lang / "LC_MESSAGES" / "messages.po", lang)
            for lang in LANGUAGES
        }
        msgids = js_msgids(static_dir)
        js = {
            lang: {msgid: str(translations[lang].gettext(msgid)) for msgid in msgids}
            for lang in LANGUAGES
        }
        return cls(translations=translations, js_strings=js)

    def gettext(self, language: str, message: str) -> str:
        return str(self.translations[language].gettext(message))


def choose_language(query: str | None, cookie: str | None, accept_language: str | None) -> str:
    """?lang= first, then the veche_lang cookie, then Accept-Language, else English."""
    for given in (query, cookie):
        if given in LANGUAGES:
            return given
    return from_accept_language(accept_language or "")


def from_accept_language(header: str) -> str:
    """The supported language the browser prefers most (by q-value, then order)."""
    choices: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        pieces = part.strip().split(";")
        tag = pieces[0].strip().lower()
        quality = 1.0
        for param in pieces[1:]:
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.split("-")[0]
        if primary in LANGUAGES and quality > 0:
            choices.append((-quality, index, primary))
    return min(choices)[2] if choices else DEFAULT_LANGUAGE
