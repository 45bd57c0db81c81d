"""The console's catalogues: every string the templates and code mark is translated
into English (French is the source), and nothing stale lingers in the catalogue."""

from __future__ import annotations

from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from conftest import ROOT

from relais.console import i18n

CONSOLE = ROOT / "relais" / "console"
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2")]


def marked() -> set[str]:
    return {message for _file, _line, message, _comments, _context
            in extract_from_dir(str(CONSOLE), METHODS, keywords={"_": None})
            if isinstance(message, str)}


def test_english_catalogue_is_complete_and_current():
    with i18n.catalogue_path("en").open("rb") as fh:
        catalogue = {m.id: m.string for m in read_po(fh) if m.id}
    strings = marked()
    assert len(strings) > 50
    untranslated = sorted(s for s in strings if not catalogue.get(s))
    assert not untranslated, f"add to locale/en/LC_MESSAGES/messages.po: {untranslated}"
    stale = sorted(set(catalogue) - strings)
    assert not stale, f"no longer used, remove from the catalogue: {stale}"


def test_translations_switch_with_the_language():
    assert i18n.translations("en").gettext("Se connecter") == "Sign in"
    assert i18n.translations("fr").gettext("Se connecter") == "Se connecter"
    assert i18n.translations("fr").gettext("urgent") == "urgente"
    assert i18n.pick("de") == "fr" and i18n.pick("en") == "en"
